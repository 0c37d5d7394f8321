//! A diffusers pipeline folder (`model_index.json` beside one subfolder per
//! component, as `DiffusionPipeline.save_pretrained` writes it), checked
//! component by component the way `DiffusionPipeline.from_pretrained`
//! loads it: each model component's class comes from `model_index.json`,
//! its config from `<component>/config.json` and its weights from the file
//! the library picks (`diffusion_pytorch_model.safetensors` for diffusers
//! models, `model.safetensors` for transformers ones, sharded or `.bin`
//! when that is what is there). Each is judged by its library's loader.
//! Then the components are checked against each other where a mismatch
//! loads fine and fails at the first call: the UNet's cross-attention
//! width against the text encoders', its latent channels against the
//! VAE's. Pure: files come as (path relative to the folder, byte source),
//! so the CLI, Python and the page can share it.

use crate::diagnosis::{CheckReport, Verdict};
use crate::error::{err, ErrorKind, Result};
use crate::loader::Loader;
use crate::source::ByteSource;
use crate::{arch, diagnosis, format};
use serde::Serialize;
use serde_json::Value;

mod fit;

/// The file that makes a folder a pipeline.
pub const INDEX_NAME: &str = "model_index.json";

/// Each diffusers pipeline class's components, and the ones it may go
/// without (`_optional_components`), derived from the library by
/// src/arch/zoo/diffusers_pipelines.py.
const PIPELINE_CLASSES: &str = include_str!("../arch/zoo/diffusers_pipelines.json");

/// `(expected components, optional ones)` of a pipeline class diffusers
/// exports: the `__init__` parameters without a default, which
/// `DiffusionPipeline.from_pretrained` expects, and of those the ones it
/// may go without. `None` for a class diffusers does not export.
fn pipeline_components(class: &str) -> Option<(Vec<String>, Vec<String>)> {
    static DATA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let data = DATA.get_or_init(|| serde_json::from_str(PIPELINE_CLASSES).unwrap_or(Value::Null));
    let entry = data.get("pipelines")?.get(class)?;
    let names = |field: &str| -> Vec<String> {
        entry[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    Some((names("expected"), names("optional")))
}

/// The components `from_pretrained` needs and the folder leaves out
/// (`[null, null]` in model_index.json, or no entry): it loads every
/// other component, then raises ValueError, unless the caller passes them
/// (SD3 without T5: `text_encoder_3=None, tokenizer_3=None`). Returns the
/// components and the error's text.
fn required_but_absent(
    pipeline_class: &str,
    entries: &serde_json::Map<String, Value>,
) -> Option<(Vec<String>, String)> {
    let (expected, optional) = pipeline_components(pipeline_class)?;
    let absent: Vec<String> = expected
        .iter()
        .filter(|name| !optional.contains(name))
        .filter(|name| {
            entries
                .get(name.as_str())
                .and_then(Value::as_array)
                .and_then(|pair| pair.first())
                .is_none_or(Value::is_null)
        })
        .cloned()
        .collect();
    if absent.is_empty() {
        return None;
    }
    let quoted: Vec<String> = expected.iter().map(|name| format!("'{name}'")).collect();
    let passed: Vec<String> = absent.iter().map(|name| format!("{name}=None")).collect();
    let them = if absent.len() > 1 { "them" } else { "it" };
    let may_go_without = if optional.is_empty() {
        String::new()
    } else {
        format!(" (it may go without {})", optional.join(", "))
    };
    // `DiffusionPipeline.from_pretrained`'s list; the class's own
    // from_pretrained adds its optional components to it.
    let text = format!(
        "model_index.json saves {} as [null, null] (or leaves {them} out), and {pipeline_class} cannot go without {them}{may_go_without}: from_pretrained loads the other components, then raises \"ValueError: Pipeline <class '…{pipeline_class}'> expected [{}], but only {{…}} were passed.\" Pass {them} yourself: {pipeline_class}.from_pretrained(folder, {}), or save {them} in the folder",
        absent.join(", "),
        quoted.join(", "),
        passed.join(", "),
    );
    Some((absent, text))
}

/// Configs and the index are a few KiB; a larger one is refused unread.
const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// One file of the folder: its path relative to the folder, `/`-separated.
pub struct PipelineFile<'a> {
    pub path: String,
    pub source: &'a dyn ByteSource,
}

/// What became of one component.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum ComponentStatus {
    /// A model whose weights were checked against its config.
    Checked { report: Box<CheckReport> },
    /// Loaded from configs or vocabularies alone (schedulers, tokenizers,
    /// image processors): nothing to check.
    NoWeights,
    /// `model_index.json` gives `[null, null]`: the pipeline was saved
    /// without it (a safety checker left out).
    Absent,
    /// A model component ckptcheck cannot judge, with why; it does not
    /// make the verdict.
    NotChecked { reason: String },
    /// A model component that cannot load (no weights, no config), with
    /// what from_pretrained stops on.
    Fails { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// The key in `model_index.json`, which is also the subfolder.
    pub name: String,
    /// `diffusers`, `transformers`, or the pipeline module it comes from.
    pub library: Option<String>,
    pub class_name: Option<String>,
    /// The weight files read, relative to the folder.
    pub files: Vec<String>,
    #[serde(flatten)]
    pub status: ComponentStatus,
}

/// Components that load one by one and then disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub components: Vec<String>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// The folder, as the user named it.
    pub folder: String,
    pub pipeline_class: String,
    /// Every model component loads.
    pub loads: bool,
    /// The components fit each other (`loads` and no disagreement).
    pub consistent: bool,
    pub components: Vec<Component>,
    pub disagreements: Vec<Disagreement>,
    /// What from_pretrained raises for the folder as a whole: no file of
    /// the variant asked for, or a component the pipeline class needs left
    /// out.
    pub error: Option<String>,
    pub notes: Vec<String>,
}

fn read_json(file: &PipelineFile) -> Result<Value> {
    let len = file.source.len();
    if len > MAX_JSON_BYTES {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!("{len} bytes; pipeline JSONs are read up to {MAX_JSON_BYTES}"),
        )
        .in_file(file.source.name()));
    }
    let bytes = crate::source::read_vec(file.source, 0, len)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        err(ErrorKind::BadConfig, format!("not valid JSON: {e}")).in_file(file.source.name())
    })
}

/// Class names that hold no weights (loaded from configs or vocabularies).
fn holds_no_weights(class_name: &str) -> bool {
    ["Scheduler", "Tokenizer", "Processor", "FeatureExtractor"]
        .iter()
        .any(|kind| class_name.contains(kind))
}

/// The weight files from_pretrained takes from a component's folder, in
/// the library's order of preference: safetensors before `.bin`, a single
/// file before a shard index; with `variant` (`fp16`), the variant's names.
fn weight_files<'f, 'a>(
    files: &'f [PipelineFile<'a>],
    component: &str,
    library: &str,
    variant: Option<&str>,
) -> Result<Vec<&'f PipelineFile<'a>>> {
    let stems: &[&str] = if library == "transformers" {
        &["model.safetensors", "pytorch_model.bin"]
    } else {
        &[
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.bin",
        ]
    };
    let in_folder = |name: &str| {
        let path = format!("{component}/{name}");
        files.iter().find(|f| f.path == path)
    };
    // With a variant, its files first; a component without them loads its
    // plain files (from_pretrained falls back per component).
    let mut names: Vec<String> = Vec::new();
    if let Some(variant) = variant {
        for stem in stems {
            // `_add_variant`: the variant goes before the extension.
            if let Some((base, extension)) = stem.rsplit_once('.') {
                names.push(format!("{base}.{variant}.{extension}"));
            }
        }
    }
    names.extend(stems.iter().map(|s| s.to_string()));
    for name in names {
        if let Some(file) = in_folder(&name) {
            return Ok(vec![file]);
        }
        if let Some(index) = in_folder(&format!("{name}.index.json")) {
            let value = read_json(index)?;
            let map = value
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    err(ErrorKind::BadConfig, "shard index without a weight_map")
                        .in_file(index.source.name())
                })?;
            let mut shards: Vec<&str> = map.values().filter_map(Value::as_str).collect();
            shards.sort_unstable();
            shards.dedup();
            let mut out = vec![index];
            for shard in shards {
                out.push(in_folder(shard).ok_or_else(|| {
                    err(
                        ErrorKind::BadArgument,
                        format!("the shard index names {shard}, which is not in {component}/"),
                    )
                    .in_file(index.source.name())
                })?);
            }
            return Ok(out);
        }
    }
    Ok(Vec::new())
}

/// Variants present in a component's folder (`fp16` of
/// `diffusion_pytorch_model.fp16.safetensors`), for the error that names
/// them when only variants are there.
fn variants_in(files: &[PipelineFile], component: &str) -> Vec<String> {
    let prefix = format!("{component}/");
    let mut out: Vec<String> = files
        .iter()
        .filter_map(|f| f.path.strip_prefix(&prefix))
        .filter_map(|name| {
            let parts: Vec<&str> = name.split('.').collect();
            match parts.as_slice() {
                [base, variant, "safetensors" | "bin"]
                    if ["model", "pytorch_model", "diffusion_pytorch_model"].contains(base) =>
                {
                    Some(variant.to_string())
                }
                _ => None,
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The loader whose judgement from_pretrained of `library` follows.
fn loader_for(library: &str) -> Loader {
    if library == "transformers" {
        Loader::Hf
    } else {
        Loader::Diffusers
    }
}

/// Check a pipeline folder. `folder` names it in messages; `variant`
/// is from_pretrained's `variant=` (`fp16`).
pub fn check_pipeline(
    folder: &str,
    files: &[PipelineFile],
    variant: Option<&str>,
) -> Result<PipelineReport> {
    let index_file = files
        .iter()
        .find(|f| f.path == INDEX_NAME)
        .ok_or_else(|| err(ErrorKind::BadArgument, "no model_index.json").in_file(folder))?;
    let index = read_json(index_file)?;
    let entries = index.as_object().ok_or_else(|| {
        err(ErrorKind::BadConfig, "model_index.json is not an object")
            .in_file(index_file.source.name())
    })?;
    let pipeline_class = entries
        .get("_class_name")
        .and_then(Value::as_str)
        .unwrap_or("DiffusionPipeline")
        .to_string();
    // from_pretrained(variant=...) refuses a folder where no component
    // has the variant's files.
    if let Some(variant) = variant {
        let names: Vec<&str> = entries.keys().map(String::as_str).collect();
        if !names
            .iter()
            .any(|name| variants_in(files, name).iter().any(|v| v == variant))
        {
            return Ok(PipelineReport {
                folder: folder.to_string(),
                pipeline_class,
                loads: false,
                consistent: false,
                components: Vec::new(),
                disagreements: Vec::new(),
                error: Some(format!(
                    "You are trying to load the model files of the `variant={variant}`, but no such modeling files are available."
                )),
                notes: Vec::new(),
            });
        }
    }
    let mut components = Vec::new();
    let mut configs: Vec<(String, Value)> = Vec::new();
    for (name, entry) in entries {
        if name.starts_with('_') {
            continue;
        }
        // `[library, class]`; anything else is a pipeline argument
        // (`requires_safety_checker: true`), not a component.
        let Some([library, class_name]) = entry.as_array().map(Vec::as_slice) else {
            continue;
        };
        let library = library.as_str().map(str::to_string);
        let class_name = class_name.as_str().map(str::to_string);
        let mut component = Component {
            name: name.clone(),
            library: library.clone(),
            class_name: class_name.clone(),
            files: Vec::new(),
            status: ComponentStatus::Absent,
        };
        let (Some(library), Some(class_name)) = (library, class_name) else {
            components.push(component);
            continue;
        };
        if holds_no_weights(&class_name) {
            component.status = ComponentStatus::NoWeights;
            components.push(component);
            continue;
        }
        let weights = weight_files(files, name, &library, variant)?;
        component.files = weights.iter().map(|f| f.path.clone()).collect();
        let config_path = format!("{name}/config.json");
        let config_file = files.iter().find(|f| f.path == config_path);
        component.status = match (weights.is_empty(), config_file) {
            (true, _) => {
                let variants = variants_in(files, name);
                ComponentStatus::Fails {
                    error: match (variant, variants.is_empty()) {
                        (None, false) => format!(
                            "{name}/ holds only the {} variant's weights: load with variant=\"{}\" (--variant {})",
                            variants.join(", "),
                            variants[0],
                            variants[0]
                        ),
                        _ => format!(
                            "no weights for {class_name} in {name}/ (from_pretrained looks for {})",
                            if library == "transformers" {
                                "model.safetensors or pytorch_model.bin"
                            } else {
                                "diffusion_pytorch_model.safetensors or .bin"
                            }
                        ),
                    },
                }
            }
            (false, None) => ComponentStatus::Fails {
                error: format!("{name}/config.json is missing: {class_name} cannot be built"),
            },
            (false, Some(config_file)) => {
                let mut config = read_json(config_file)?;
                // The pipeline builds the class model_index.json names,
                // whatever the config's own `architectures` says.
                if let Some(object) = config.as_object_mut() {
                    if library == "transformers" {
                        object.insert("architectures".into(), serde_json::json!([class_name]));
                    } else if library == "diffusers" {
                        object.insert("_class_name".into(), serde_json::json!(class_name));
                    }
                }
                configs.push((name.clone(), config.clone()));
                check_component(&weights, &config, config_file, &library)
            }
        };
        components.push(component);
    }
    let mut error = None;
    if let Some((absent, text)) = required_but_absent(&pipeline_class, entries) {
        for name in &absent {
            let status = ComponentStatus::Fails {
                error: format!("not saved, and {pipeline_class} needs it (pass {name}=None to from_pretrained to go without it)"),
            };
            match components.iter_mut().find(|c| &c.name == name) {
                Some(component) => component.status = status,
                None => components.push(Component {
                    name: name.clone(),
                    library: None,
                    class_name: None,
                    files: Vec::new(),
                    status,
                }),
            }
        }
        error = Some(text);
    }
    let loads = components.iter().all(component_loads);
    let disagreements = disagreements(&configs);
    let mut notes = Vec::new();
    let unchecked: Vec<&str> = components
        .iter()
        .filter(|c| matches!(c.status, ComponentStatus::NotChecked { .. }))
        .map(|c| c.name.as_str())
        .collect();
    if !unchecked.is_empty() {
        notes.push(format!(
            "not checked: {} (classes ckptcheck does not describe)",
            unchecked.join(", ")
        ));
    }
    Ok(PipelineReport {
        folder: folder.to_string(),
        pipeline_class,
        consistent: loads && disagreements.is_empty(),
        loads,
        components,
        disagreements,
        error,
        notes,
    })
}

fn component_loads(component: &Component) -> bool {
    match &component.status {
        ComponentStatus::Checked { report } => report.verdict != Verdict::WontLoad,
        ComponentStatus::Fails { .. } => false,
        _ => true,
    }
}

fn check_component(
    weights: &[&PipelineFile],
    config: &Value,
    config_file: &PipelineFile,
    library: &str,
) -> ComponentStatus {
    let model = match arch::model_from_config_json(&[(
        config_file.source.name().to_string(),
        config.to_string(),
    )]) {
        Ok(model) => model,
        Err(e) => {
            return ComponentStatus::NotChecked {
                reason: e.to_string(),
            }
        }
    };
    // A shard index among the files is read by the sharded reader; a
    // single file alone.
    let sources: Vec<&dyn ByteSource> = weights.iter().map(|f| f.source).collect();
    match format::read_files(&sources) {
        Ok(checkpoint) => ComponentStatus::Checked {
            report: Box::new(diagnosis::check(&checkpoint, &model, loader_for(library))),
        },
        Err(e) => ComponentStatus::Fails {
            error: e.to_string(),
        },
    }
}

/// A config field as one number: an int, or a list whose entries agree
/// (diffusers allows `cross_attention_dim` per block).
fn one_number(config: &Value, field: &str) -> Option<u64> {
    match config.get(field)? {
        Value::Number(n) => n.as_u64(),
        Value::Array(items) => {
            let first = items.first()?.as_u64()?;
            items
                .iter()
                .all(|v| v.as_u64() == Some(first))
                .then_some(first)
        }
        _ => None,
    }
}

/// Components that each load but do not fit together (`fit.rs`).
fn disagreements(configs: &[(String, Value)]) -> Vec<Disagreement> {
    fit::disagreements(&|name: &str| configs.iter().find(|(n, _)| n == name).map(|(_, v)| v))
}

/// The report for people: one block per component, then what disagrees.
pub fn to_text(report: &PipelineReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} {} pipeline {}\n",
        if report.consistent { "OK " } else { "ERR" },
        report.pipeline_class,
        match (report.loads, report.consistent) {
            (true, true) => "loads, every component fits the others",
            (true, false) => "loads, but its components do not fit each other",
            _ => "won't load",
        }
    ));
    out.push_str(&format!("    {}\n", report.folder));
    if let Some(error) = &report.error {
        out.push_str(&format!("    {error}\n"));
    }
    for component in &report.components {
        let what = component.class_name.as_deref().unwrap_or("None");
        let line = match &component.status {
            ComponentStatus::Checked { report } => {
                let verdict = match report.verdict {
                    Verdict::Loads => "OK  loads".to_string(),
                    Verdict::LoadsWithWarnings => "OK  loads with warnings".to_string(),
                    Verdict::WontLoad => format!(
                        "ERR won't load: {} missing, {} unexpected, {} size mismatches",
                        report.missing_keys.len(),
                        report.unexpected_keys.len(),
                        report.size_mismatches.len()
                    ),
                };
                let why = report
                    .explanation
                    .first()
                    .map(|cause| format!("\n        why: {}", cause.text))
                    .unwrap_or_default();
                format!("{verdict} ({}){why}", component.files.join(", "))
            }
            ComponentStatus::NoWeights => "--  no weights".to_string(),
            ComponentStatus::Absent => "--  not saved".to_string(),
            ComponentStatus::NotChecked { reason } => format!("??  not checked: {reason}"),
            ComponentStatus::Fails { error } => format!("ERR {error}"),
        };
        out.push_str(&format!("  {:<16} {:<28} {line}\n", component.name, what));
    }
    for disagreement in &report.disagreements {
        out.push_str(&format!("disagree: {}\n", disagreement.text));
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
