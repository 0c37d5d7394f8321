//! The `#[wasm_bindgen]` facade the page's Web Worker calls, and the byte
//! source over a `Blob`/`File` read synchronously with `FileReaderSync` on
//! `blob.slice(start, end)` (only available in workers). Thin on purpose:
//! every decision lives in the core; errors cross once as `JsError`, results
//! as plain objects through serde-wasm-bindgen.

use crate::diagnosis::check;
use crate::error::{err, Error, ErrorKind, Result};
use crate::loader::Loader;
use crate::source::{check_range, ByteSource};
use crate::{arch, diagnosis, format};
use serde::Serialize;
use std::cell::Cell;
use wasm_bindgen::prelude::*;

/// A `Blob` read in byte ranges; counts what it read.
pub struct BlobSource {
    name: String,
    blob: web_sys::Blob,
    reader: web_sys::FileReaderSync,
    read: Cell<u64>,
}

impl BlobSource {
    pub fn new(name: String, blob: web_sys::Blob) -> Result<BlobSource> {
        let reader = web_sys::FileReaderSync::new().map_err(|_| {
            err(
                ErrorKind::Io,
                "FileReaderSync is unavailable (not in a Web Worker?)",
            )
        })?;
        Ok(BlobSource {
            name,
            blob,
            reader,
            read: Cell::new(0),
        })
    }
}

impl ByteSource for BlobSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.blob.size() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        let end = offset + buf.len() as u64;
        let slice = self
            .blob
            .slice_with_f64_and_f64(offset as f64, end as f64)
            .map_err(|_| {
                err(ErrorKind::Io, "Blob.slice failed")
                    .at(offset)
                    .in_file(&self.name)
            })?;
        let buffer = self.reader.read_as_array_buffer(&slice).map_err(|_| {
            err(ErrorKind::Io, "FileReaderSync could not read the file")
                .at(offset)
                .in_file(&self.name)
        })?;
        let array = js_sys::Uint8Array::new(&buffer);
        if array.length() as usize != buf.len() {
            return Err(err(ErrorKind::Truncated, "short read")
                .at(offset)
                .in_file(&self.name));
        }
        array.copy_to(buf);
        self.read.set(self.read.get() + buf.len() as u64);
        Ok(())
    }
    fn bytes_read(&self) -> u64 {
        self.read.get()
    }
}

fn js_error(error: Error) -> JsError {
    // The page shows the message and switches on the kind.
    let kind = serde_json::to_string(&error.kind).unwrap_or_default();
    JsError::new(&format!("{}|{}", kind.trim_matches('"'), error))
}

fn to_js<T: Serialize>(value: &T) -> std::result::Result<JsValue, JsError> {
    let failed =
        |e: &dyn std::fmt::Display| JsError::new(&format!("io|cannot convert the result: {e}"));
    let mut json = serde_json::to_value(value).map_err(|e| failed(&e))?;
    exact_in_javascript(&mut json);
    // One string across the boundary and the engine's own JSON.parse: a
    // checkpoint's listing is thousands of small objects, which
    // serde-wasm-bindgen built one property call at a time (half the
    // worker's time on a 783-tensor .pt). Same plain objects either way.
    let text = serde_json::to_string(&json).map_err(|e| failed(&e))?;
    js_sys::JSON::parse(&text).map_err(|_| failed(&"JSON.parse refused the result"))
}

/// A JavaScript number holds integers exactly only up to 2^53: larger ones
/// (GGUF metadata such as seeds and hashes) become decimal strings rather
/// than rounded numbers (or a conversion error).
fn exact_in_javascript(value: &mut serde_json::Value) {
    const SAFE: u64 = (1 << 53) - 1;
    match value {
        serde_json::Value::Number(number) => {
            let unsafe_integer = number.as_u64().is_some_and(|n| n > SAFE)
                || number.as_i64().is_some_and(|n| n.unsigned_abs() > SAFE);
            if unsafe_integer {
                *value = serde_json::Value::String(number.to_string());
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(exact_in_javascript),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(exact_in_javascript),
        _ => {}
    }
}

/// `File`s (or `Blob`s with a `name`) from a JS array.
fn sources(files: &js_sys::Array) -> Result<Vec<BlobSource>> {
    let mut out = Vec::new();
    for value in files.iter() {
        let blob: web_sys::Blob = value
            .clone()
            .dyn_into()
            .map_err(|_| err(ErrorKind::BadArgument, "expected File objects"))?;
        let name = js_sys::Reflect::get(&value, &JsValue::from_str("name"))
            .ok()
            .and_then(|n| n.as_string())
            .unwrap_or_else(|| "file".to_string());
        out.push(BlobSource::new(name, blob)?);
    }
    Ok(out)
}

/// Split dropped files into checkpoint files and config JSONs (by content)
/// or inference YAMLs (by name),
/// then read the checkpoint.
fn read_dropped(files: &js_sys::Array) -> Result<(crate::Checkpoint, Vec<(String, String)>)> {
    let sources = sources(files)?;
    let (checkpoint, configs, _) = read_sources(&sources)?;
    Ok((checkpoint, configs))
}

/// What dropped files hold: the checkpoint, the config JSONs `(name, text)`,
/// and the sources that hold tensors.
type Dropped<'a> = (
    crate::Checkpoint,
    Vec<(String, String)>,
    Vec<&'a dyn ByteSource>,
);

fn read_sources(sources: &[BlobSource]) -> Result<Dropped<'_>> {
    let mut checkpoint_sources: Vec<&dyn ByteSource> = Vec::new();
    let mut configs = Vec::new();
    let mut adapter_config = None;
    for source in sources {
        // A Stable Diffusion inference YAML is a config, read by name.
        let name = source.name().to_ascii_lowercase();
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            // The release YAMLs are 2-3 KB; a cap keeps a mis-named blob from
            // being read whole.
            const YAML_LIMIT: u64 = 1024 * 1024;
            if source.len() > YAML_LIMIT {
                return Err(Error::new(
                    ErrorKind::LimitExceeded,
                    format!(
                        "{}: {} bytes is too large for an inference YAML (limit {YAML_LIMIT})",
                        source.name(),
                        source.len()
                    ),
                ));
            }
            let bytes = crate::source::read_vec(source, 0, source.len())?;
            configs.push((
                source.name().to_string(),
                String::from_utf8_lossy(&bytes).to_string(),
            ));
            continue;
        }
        match format::detect(source)? {
            format::Format::Json => match format::adapter_config(source)? {
                // A PEFT adapter's config (the first): read once, kept apart.
                Some(config) if adapter_config.is_none() => adapter_config = Some(config),
                _ => {
                    let bytes =
                        crate::source::read_vec(source, 0, source.len().min(16 * 1024 * 1024))?;
                    configs.push((
                        source.name().to_string(),
                        String::from_utf8_lossy(&bytes).to_string(),
                    ));
                }
            },
            _ => checkpoint_sources.push(source),
        }
    }
    let mut checkpoint = format::read_files(&checkpoint_sources)?;
    checkpoint.adapter_config = adapter_config;
    Ok((checkpoint, configs, checkpoint_sources))
}

/// The model a check of dropped files is against: the user's own model
/// (the "model" slot, or a model dump dropped with the checkpoint), else a
/// named preset, else the config JSONs dropped with the checkpoint, else the
/// preset the checkpoint matches best.
fn model_for(
    checkpoint: &crate::Checkpoint,
    configs: &[(String, String)],
    preset: &str,
    reference: &js_sys::Array,
) -> Result<arch::ModelSpec> {
    let dump = |(name, text): &(String, String)| -> Option<Result<arch::ModelSpec>> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        arch::dump::is_dump(&value).then(|| arch::dump::model_from_dump(name, &value))
    };
    let own_model = if reference.length() > 0 {
        Some(reference_model(reference)?)
    } else {
        configs.iter().find_map(dump).transpose()?
    };
    // The user's own model wins; then a named preset; else config JSONs
    // dropped with the checkpoint (the person dropped them for a
    // reason); else inference.
    let use_preset = !preset.is_empty() && preset != "infer";
    let model = if let Some(model) = own_model {
        model
    } else if !use_preset && configs.is_empty() {
        let inferred = diagnosis::infer_checkpoint(checkpoint);
        let best = inferred
            .ranking
            .first()
            .map(|s| s.preset.clone())
            .ok_or_else(|| {
                err(
                    ErrorKind::BadConfig,
                    "cannot infer a model for this checkpoint: pick a preset or drop a config JSON",
                )
            })?;
        arch::model_from_preset(&best)?
    } else if !use_preset {
        arch::model_from_config_json(configs)?
    } else {
        arch::model_from_preset(preset)?
    };
    Ok(model)
}

/// The user's own model from the "model" slot: a dump, or a reference
/// checkpoint's tensors.
fn reference_model(files: &js_sys::Array) -> Result<arch::ModelSpec> {
    let sources = sources(files)?;
    if let [one] = sources.as_slice() {
        if let Ok(format::Format::Json) = format::detect(one) {
            return arch::dump::read_dump(one);
        }
    }
    let (reference, _, _) = read_sources(&sources)?;
    Ok(diagnosis::model_from_reference(&reference))
}

/// The Python snippet that dumps any model (`ckptcheck snippet`).
#[wasm_bindgen]
pub fn model_snippet() -> String {
    arch::dump::SNIPPET.to_string()
}

/// Every built-in preset: `[{name, family, description}]`.
#[wasm_bindgen]
pub fn presets() -> std::result::Result<JsValue, JsError> {
    let list: Vec<serde_json::Value> = arch::presets()
        .into_iter()
        .map(|(name, family, description)| serde_json::json!({"name": name, "family": family, "description": description}))
        .collect();
    to_js(&list)
}

/// Read dropped files and list what they hold (the `inspect` data model).
#[wasm_bindgen]
pub fn inspect_files(files: js_sys::Array) -> std::result::Result<JsValue, JsError> {
    let (checkpoint, _) = read_dropped(&files).map_err(js_error)?;
    to_js(&checkpoint)
}

/// Scan every weight of the dropped files once (`ckptcheck scan`): per
/// tensor NaN/Inf counts, all-zero, min/max/mean/std, and a summary
/// (`scan::ScanReport`). `progress(done, total)` is called with bytes done
/// and the total after every 4 MiB chunk; returning `false` (exactly) cancels
/// the scan, which then fails with a `cancelled|...` error. Config JSONs
/// among the files are ignored.
#[wasm_bindgen]
pub fn scan_files(
    files: js_sys::Array,
    progress: &js_sys::Function,
) -> std::result::Result<JsValue, JsError> {
    let sources = sources(&files).map_err(js_error)?;
    let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
    let report = crate::scan::scan_sources(&refs, &mut |done, total| {
        // A throwing callback cancels too.
        progress
            .call2(
                &JsValue::NULL,
                &JsValue::from_f64(done as f64),
                &JsValue::from_f64(total as f64),
            )
            .map(|answer| answer.as_bool() != Some(false))
            .unwrap_or(false)
    })
    .map_err(js_error)?;
    to_js(&report)
}

#[derive(Serialize)]
struct CheckOutput {
    checkpoint: crate::Checkpoint,
    report: crate::diagnosis::CheckReport,
    /// "Loads" or "Won't load: 0 missing, 144 unexpected, 153 size mismatches".
    verdict: String,
    markdown: String,
}

/// Check dropped files. `preset`: a preset name; or "" / "infer" to use the
/// config JSONs dropped with the checkpoint when there are any, else the
/// preset the checkpoint matches best.
/// `loader`: strict, cn-clip, cn-clip-resume, hf, peft, ldm or diffusers.
/// `reference`: the user's own model, when given: a model dump JSON (from
/// `model_snippet`) or a reference checkpoint (its files); it wins over
/// `preset`. A model dump dropped with the checkpoint counts as well.
#[wasm_bindgen]
pub fn check_files(
    files: js_sys::Array,
    preset: &str,
    loader: &str,
    reference: js_sys::Array,
) -> std::result::Result<JsValue, JsError> {
    let run = || -> Result<CheckOutput> {
        let loader = Loader::parse(loader)?;
        let (checkpoint, configs) = read_dropped(&files)?;
        let model = model_for(&checkpoint, &configs, preset, &reference)?;
        let report = check(&checkpoint, &model, loader);
        let markdown = diagnosis::to_markdown(&report);
        let verdict = diagnosis::verdict_line(&report);
        Ok(CheckOutput {
            checkpoint,
            report,
            verdict,
            markdown,
        })
    };
    to_js(&run().map_err(js_error)?)
}

/// A dropped diffusers pipeline folder, component by component: `files`
/// and `paths` (each file's path relative to the folder that holds
/// `model_index.json`) side by side; `folder` names it; `variant` is
/// from_pretrained's `variant=` or empty.
#[wasm_bindgen]
pub fn check_pipeline_files(
    files: js_sys::Array,
    paths: js_sys::Array,
    folder: &str,
    variant: &str,
) -> std::result::Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct PipelineOutput {
        pipeline: crate::pipeline::PipelineReport,
        text: String,
    }
    let run = || -> Result<PipelineOutput> {
        let sources = sources(&files)?;
        let paths: Vec<String> = paths.iter().filter_map(|p| p.as_string()).collect();
        if paths.len() != sources.len() {
            return Err(err(
                ErrorKind::BadArgument,
                "check_pipeline_files needs one path per file",
            ));
        }
        let pipeline_files: Vec<crate::pipeline::PipelineFile> = sources
            .iter()
            .zip(paths)
            .map(|(source, path)| crate::pipeline::PipelineFile {
                path,
                source: source as &dyn ByteSource,
            })
            .collect();
        let variant = (!variant.is_empty()).then_some(variant);
        let pipeline = crate::pipeline::check_pipeline(folder, &pipeline_files, variant)?;
        let text = crate::pipeline::to_text(&pipeline);
        Ok(PipelineOutput { pipeline, text })
    };
    to_js(&run().map_err(js_error)?)
}

/// `performance.now()` (a fraction of a millisecond, in workers too; the
/// stages of a small model take a few), else `Date.now()`.
fn now_ms() -> f64 {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &JsValue::from_str("performance"))
        .ok()
        .and_then(|performance| {
            let now: js_sys::Function =
                js_sys::Reflect::get(&performance, &JsValue::from_str("now"))
                    .ok()?
                    .dyn_into()
                    .ok()?;
            now.call0(&performance).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

/// The model a verify runs: a preset name, else dropped config JSONs, else
/// the preset the checkpoint matches exactly.
fn verify_model(
    preset: &str,
    configs: &[(String, String)],
    checkpoint: &crate::Checkpoint,
) -> Result<crate::reference::model::ModelDesc> {
    use crate::reference::model;
    if !preset.is_empty() && preset != "infer" {
        return model::from_preset(preset);
    }
    if !configs.is_empty() && preset.is_empty() {
        return model::from_config_texts(configs);
    }
    let best = diagnosis::infer_checkpoint(checkpoint)
        .preset
        .ok_or_else(|| {
            err(
                ErrorKind::BadConfig,
                "cannot tell which model this is: pick a preset or drop its config JSON",
            )
        })?;
    model::from_preset(&best)
}

/// Prove the checkpoint loads: run the model on its default deterministic
/// input and judge the output (the `verify::Verdict`, as JSON data).
/// `device`: "gpu" runs on WebGPU and compares with the CPU run (an
/// error starting `io|no GPU adapter` when the browser has none), "cpu" runs
/// the reference alone. `layers`: run only the first K blocks.
/// `progress(text, blocks_done, blocks)`, when given, is called as each
/// stage starts ("CPU: block 3 of 24", 2, 24); what it returns is ignored
/// (cancelling is terminating the worker).
#[wasm_bindgen]
pub async fn verify_files(
    files: js_sys::Array,
    preset: String,
    device: String,
    layers: Option<u32>,
    progress: Option<js_sys::Function>,
) -> std::result::Result<JsValue, JsError> {
    let sources = sources(&files).map_err(js_error)?;
    let (checkpoint, configs, tensor_sources) = read_sources(&sources).map_err(js_error)?;
    let desc = verify_model(&preset, &configs, &checkpoint).map_err(js_error)?;
    let layers = layers.map(|k| k as usize);
    let mut hook = |stage: &crate::verify::Stage| {
        if let Some(progress) = &progress {
            // A throwing callback must not stop the run: it only reports.
            let _ = progress.call3(
                &JsValue::NULL,
                &JsValue::from_str(&stage.text()),
                &JsValue::from_f64(stage.blocks_done as f64),
                &JsValue::from_f64(stage.blocks as f64),
            );
        }
    };
    let verdict = match crate::verify::Device::parse(&device).map_err(js_error)? {
        crate::verify::Device::Cpu => crate::verify::verify_cpu(
            &checkpoint,
            tensor_sources,
            &desc,
            None,
            layers,
            None,
            &now_ms,
            &mut hook,
        ),
        crate::verify::Device::Gpu => {
            verify_gpu(&checkpoint, tensor_sources, &desc, layers, &mut hook).await
        }
    }
    .map_err(js_error)?;
    let text = crate::verify::to_text(&verdict);
    to_js(&VerifyOutput { verdict, text })
}

#[derive(Serialize)]
struct VerifyOutput {
    verdict: crate::verify::Verdict,
    /// The verdict as the CLI prints it.
    text: String,
}

#[cfg(feature = "gpu")]
async fn verify_gpu(
    checkpoint: &crate::Checkpoint,
    sources: Vec<&dyn ByteSource>,
    desc: &crate::reference::model::ModelDesc,
    layers: Option<usize>,
    progress: &mut crate::verify::Progress<'_>,
) -> Result<crate::verify::Verdict> {
    let ctx = crate::gpu::Context::new()
        .await
        .map_err(|reason| err(ErrorKind::Io, format!("no GPU adapter: {reason}")))?;
    crate::gpu::verify::verify_gpu(
        &ctx, checkpoint, sources, desc, None, layers, &now_ms, true, progress,
    )
    .await
}

#[cfg(not(feature = "gpu"))]
async fn verify_gpu(
    _checkpoint: &crate::Checkpoint,
    _sources: Vec<&dyn ByteSource>,
    _desc: &crate::reference::model::ModelDesc,
    _layers: Option<usize>,
    _progress: &mut crate::verify::Progress<'_>,
) -> Result<crate::verify::Verdict> {
    Err(err(
        ErrorKind::Io,
        "no GPU adapter: this build has no GPU support (built without the gpu feature)",
    ))
}

/// `null` when a GPU adapter is available, else why not (for the page's
/// "Verify on GPU" button, which then offers the CPU).
#[wasm_bindgen]
pub async fn gpu_unavailable_reason() -> JsValue {
    #[cfg(feature = "gpu")]
    {
        match crate::gpu::Context::new().await {
            Ok(_) => JsValue::NULL,
            Err(reason) => JsValue::from_str(&reason),
        }
    }
    #[cfg(not(feature = "gpu"))]
    {
        JsValue::from_str("this build has no GPU support (built without the gpu feature)")
    }
}

/// What `plan_write` returns: the plan (headers as bytes, verbatim ranges
/// of the dropped files, tensors to convert), the dropped files its
/// `source` indices name, and for a fix the verdict before and the edits.
#[derive(Serialize)]
struct WritePlan {
    plan: crate::convert::Plan,
    sources: Vec<String>,
    before: Option<String>,
    edits: Option<crate::convert::Edits>,
}

/// Plan a safetensors file from dropped files. `mode`: "convert" (the
/// tensors as they are, `dtype` keep|f16|bf16|f32) or "fix" (the check's
/// remedies applied; `preset`, `loader` and `reference` as for
/// `check_files`). The page builds the file from the plan: `bytes` parts as
/// they are, `copy` parts as `File.slice`s (no copy in memory), `convert`
/// parts through `write_part`.
#[wasm_bindgen]
pub fn plan_write(
    files: js_sys::Array,
    mode: &str,
    dtype: &str,
    preset: &str,
    loader: &str,
    reference: js_sys::Array,
) -> std::result::Result<JsValue, JsError> {
    let run = || -> Result<WritePlan> {
        let sources = sources(&files)?;
        let (checkpoint, configs, checkpoint_sources) = read_sources(&sources)?;
        let names = checkpoint_sources
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        let mut options = crate::convert::ConvertOptions {
            target: crate::convert::Target::parse(dtype)?,
            ..Default::default()
        };
        let mut before = None;
        if mode == "fix" {
            let loader = Loader::parse(loader)?;
            let model = model_for(&checkpoint, &configs, preset, &reference)?;
            let report = check(&checkpoint, &model, loader);
            options.edits = crate::convert::edits_for(&report, &model, &[]);
            options.state_dict_path = Some(report.state_dict_path.clone());
            options.stem = "fixed".to_string();
            before = Some(diagnosis::verdict_line(&report));
        }
        let plan = crate::convert::plan(&checkpoint, &checkpoint_sources, &options)?;
        let edits = (mode == "fix").then(|| options.edits.clone());
        Ok(WritePlan {
            plan,
            sources: names,
            before,
            edits,
        })
    };
    to_js(&run().map_err(js_error)?)
}

/// The bytes of one `convert` part of a plan: its tensor read and rewritten
/// (dtype, byte order, a strided view). `file` is the dropped file the
/// job's `source` names in the plan's `sources`: only that file's bytes at
/// the job's offsets are read, nothing is parsed again.
#[wasm_bindgen]
pub fn write_part(
    file: js_sys::Array,
    job: JsValue,
) -> std::result::Result<js_sys::Uint8Array, JsError> {
    let run = || -> Result<Vec<u8>> {
        let mut job: crate::convert::TensorJob = serde_wasm_bindgen::from_value(job)
            .map_err(|e| err(ErrorKind::BadArgument, format!("not a tensor job: {e}")))?;
        let sources = sources(&file)?;
        let [source] = sources.as_slice() else {
            return Err(err(
                ErrorKind::BadArgument,
                "write_part takes the one file of its job",
            ));
        };
        job.source = 0;
        let mut out = Vec::new();
        crate::convert::write_part(
            &crate::convert::Part::Convert(job),
            &[source as &dyn ByteSource],
            &mut |bytes| {
                out.extend_from_slice(bytes);
                Ok(())
            },
        )?;
        Ok(out)
    };
    let bytes = run().map_err(js_error)?;
    Ok(js_sys::Uint8Array::from(bytes.as_slice()))
}
