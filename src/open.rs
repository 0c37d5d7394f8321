//! Opening what a person names, natively: local files, folders (the files
//! in them), and URLs (`src/remote.rs`), and the model a checkpoint is
//! checked against (a preset, config JSONs, a model dump or a reference
//! checkpoint). The CLI and the Python package both go through here, so a
//! name means the same thing to both and their JSON agrees.

use crate::error::{err, Error, ErrorKind, Result};
use crate::source::{ByteSource, FileSource};
use crate::{arch, diagnosis, format, Checkpoint};
use std::path::{Path, PathBuf};

/// An opened file: local or at a URL, readable from several threads.
pub type Opened = Box<dyn ByteSource + Send + Sync>;

/// Largest config JSON read (the page's worker uses the same cap).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Whether `path` names a URL rather than a local file.
pub fn is_url(path: &Path) -> bool {
    #[cfg(feature = "remote")]
    {
        path.to_str().is_some_and(crate::remote::is_url)
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = path;
        false
    }
}

/// Files given, with folders expanded to the files they hold (URLs are
/// kept as they are).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if !is_url(path) && path.is_dir() {
            out.extend(list_folder(path)?.into_iter().filter(|p| p.is_file()));
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// What a folder holds, sorted by name.
fn list_folder(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            err(ErrorKind::Io, format!("cannot list folder: {e}"))
                .in_file(&dir.display().to_string())
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// Open one file or URL.
pub fn open(path: &Path) -> Result<Opened> {
    if is_url(path) {
        #[cfg(feature = "remote")]
        return Ok(Box::new(crate::remote::RemoteSource::open(
            path.to_str().unwrap_or_default(),
        )?));
    }
    Ok(Box::new(FileSource::open(path)?))
}

/// Open every file given, folders expanded; URLs are opened side by side
/// (one HEAD request each). A single URL that is a shard index brings its
/// shards, named relative to it, as a folder brings its files.
pub fn open_all(paths: &[PathBuf]) -> Result<Vec<Opened>> {
    use rayon::prelude::*;
    let paths = expand(paths)?;
    // Local files open in microseconds: starting the thread pool for them
    // would cost more than it saves (`inspect` is timed as a process).
    let mut opened: Vec<Opened> = if paths.iter().any(|p| is_url(p)) {
        paths
            .par_iter()
            .map(|path| open(path))
            .collect::<Result<_>>()?
    } else {
        paths.iter().map(|path| open(path)).collect::<Result<_>>()?
    };
    if let ([path], [index]) = (paths.as_slice(), opened.as_slice()) {
        let named_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if is_url(path)
            && named_json
            && matches!(
                format::detect(index.as_ref()),
                Ok(format::Format::ShardIndex)
            )
        {
            let shards = shard_urls(index.as_ref())?;
            let mut shards: Vec<Opened> = shards
                .par_iter()
                .map(|url| open(Path::new(url)))
                .collect::<Result<_>>()?;
            opened.append(&mut shards);
        }
    }
    Ok(opened)
}

/// The URLs of the shards a remote index names, beside the index.
fn shard_urls(index: &dyn ByteSource) -> Result<Vec<String>> {
    let bytes = crate::source::read_vec(index, 0, index.len())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        err(ErrorKind::BadShards, format!("index is not JSON: {e}")).in_file(index.name())
    })?;
    let mut shards: Vec<&str> = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .map(|m| m.values().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    shards.sort_unstable();
    shards.dedup();
    let base = index.name().rsplit_once('/').map_or("", |(base, _)| base);
    shards
        .into_iter()
        .map(|shard| {
            if shard.contains("..") || shard.starts_with('/') || shard.contains("://") {
                return Err(err(
                    ErrorKind::BadShards,
                    format!("shard name {shard:?} leaves the index's folder"),
                )
                .in_file(index.name()));
            }
            Ok(format!("{base}/{shard}"))
        })
        .collect()
}

/// The files that are checkpoints or a shard index. In a folder, config
/// JSONs and other files sit next to the shards and are left out; a single
/// file must be readable.
pub fn checkpoint_sources(files: &[Opened]) -> Result<Vec<&dyn ByteSource>> {
    Ok(choose_checkpoints(files, |file| file.as_ref())?
        .into_iter()
        .map(|file| file.as_ref() as &dyn ByteSource)
        .collect())
}

/// `checkpoint_sources` over any kind of opened file (the writer keeps
/// its local files as such, to copy their ranges inside the kernel).
pub fn choose_checkpoints<T>(
    files: &[T],
    source: impl Fn(&T) -> &dyn ByteSource,
) -> Result<Vec<&T>> {
    let mut chosen = Vec::new();
    for file in files {
        match format::detect(source(file)) {
            Ok(format::Format::Json) if files.len() > 1 => {}
            Ok(_) => chosen.push(file),
            Err(e) if files.len() > 1 && e.kind == ErrorKind::UnsupportedFormat => {}
            Err(e) => return Err(e),
        }
    }
    Ok(chosen)
}

/// The checkpoint the files make up, with a PEFT adapter's
/// `adapter_config.json` when one is among them or beside the one file.
pub fn read(paths: &[PathBuf]) -> Result<Checkpoint> {
    let files = open_all(paths)?;
    read_opened(paths, &files)
}

/// `read`, over files already opened.
pub fn read_opened(paths: &[PathBuf], files: &[Opened]) -> Result<Checkpoint> {
    let mut checkpoint = format::read_files(&checkpoint_sources(files)?)?;
    checkpoint.adapter_config = adapter_config_beside(paths, files)?;
    Ok(checkpoint)
}

/// A PEFT adapter's adapter_config.json: among the files given (a folder's
/// files), else next to the one file given (PEFT reads it from the
/// adapter's folder).
fn adapter_config_beside(paths: &[PathBuf], files: &[Opened]) -> Result<Option<serde_json::Value>> {
    for file in files {
        if let Some(config) = format::adapter_config(file.as_ref())? {
            return Ok(Some(config));
        }
    }
    if let [one] = paths {
        let beside = one.with_file_name("adapter_config.json");
        if !is_url(one) && one.is_file() && beside.is_file() && beside != *one {
            return format::adapter_config(&FileSource::open(&beside)?);
        }
    }
    Ok(None)
}

/// The model `--config` names: one preset, or config JSONs (two for a
/// Chinese-CLIP vision + text pair).
pub fn model_from_configs(configs: &[String]) -> Result<arch::ModelSpec> {
    match configs {
        [] => Err(err(
            ErrorKind::BadArgument,
            "check needs --config PRESET, --config PATH or --model PATH (a diffusers pipeline folder needs none)",
        )),
        [one] if !Path::new(one).exists() => arch::model_from_preset(one),
        several => {
            let mut texts = Vec::new();
            for path in several {
                texts.push((path.clone(), read_config_text(Path::new(path))?));
            }
            arch::model_from_config_json(&texts)
        }
    }
}

/// A config's text. Configs are a few KiB; a huge "config" is refused
/// before it is read (the page applies the same cap).
pub fn read_config_text(path: &Path) -> Result<String> {
    let name = path.display().to_string();
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len > MAX_CONFIG_BYTES {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!("config of {len} bytes; configs are read up to {MAX_CONFIG_BYTES}"),
        )
        .in_file(&name));
    }
    std::fs::read_to_string(path)
        .map_err(|e| err(ErrorKind::Io, format!("cannot read config: {e}")).in_file(&name))
}

/// `--model`: a model dump (JSON), or a reference checkpoint whose
/// tensors are the model.
pub fn any_model(path: &Path) -> Result<arch::ModelSpec> {
    let source = open(path)?;
    if let Ok(format::Format::Json) = format::detect(source.as_ref()) {
        return arch::dump::read_dump(source.as_ref());
    }
    let reference = read(&[path.to_path_buf()])?;
    Ok(diagnosis::model_from_reference(&reference))
}

/// Requests and bytes fetched for each file read from a URL, as the JSON
/// reports carry them (`"remote"`), or `None` when every file was local.
pub fn remote_stats(files: &[Opened]) -> Option<serde_json::Value> {
    let stats: Vec<serde_json::Value> = files
        .iter()
        .filter_map(|file| {
            file.remote_stats().map(|stats| {
                serde_json::json!({
                    "file": file.name(),
                    "requests": stats.requests,
                    "bytes_fetched": stats.bytes_fetched,
                })
            })
        })
        .collect();
    (!stats.is_empty()).then_some(serde_json::Value::Array(stats))
}

/// The `unsafe_pickle` error for a checkpoint whose pickle could run code:
/// `inspect` prints the listing and exits 2 with it.
pub fn unsafe_pickle_error(checkpoint: &Checkpoint) -> Option<Error> {
    let audit = checkpoint.pickle_audit.as_ref().filter(|a| a.is_unsafe())?;
    Some(
        err(
            ErrorKind::UnsafePickle,
            format!(
                "unsafe pickle: references {}, which torch.load(weights_only=False) would import and call{} (torch.load(weights_only=True) refuses it; never evaluated)",
                audit.unsafe_globals(),
                if audit.calls.is_empty() {
                    String::new()
                } else {
                    format!(": {}", audit.calls.join(", "))
                }
            ),
        )
        .in_file(&checkpoint.file)
        .because(
            "unsafe-pickle",
            "do not load it with weights_only=False; `ckptcheck convert` writes its tensors as safetensors without running the pickle",
        ),
    )
}

/// A report as JSON, with `"remote"` added when files were read from
/// URLs (`check`, `scan`; `inspect_json` for `inspect`).
pub fn report_json<T: serde::Serialize>(report: &T, files: &[Opened]) -> Result<serde_json::Value> {
    let mut json = serde_json::to_value(report)
        .map_err(|e| err(ErrorKind::Io, format!("cannot write the JSON: {e}")))?;
    if let Some(remote) = remote_stats(files) {
        json["remote"] = remote;
    }
    Ok(json)
}

/// The JSON `inspect --json` prints: the checkpoint, with the unsafe
/// pickle error riding along when there is one and the remote figures
/// when files were read from URLs.
pub fn inspect_json(checkpoint: &Checkpoint, files: &[Opened]) -> Result<serde_json::Value> {
    let mut json = report_json(checkpoint, files)?;
    if let Some(error) = unsafe_pickle_error(checkpoint) {
        json["error"] = serde_json::json!(error);
    }
    Ok(json)
}

/// The model a checkpoint is checked against, however it was named.
pub enum ModelChoice {
    /// `--config`: one preset name, or config JSON paths.
    Configs(Vec<String>),
    /// `--model`: a model dump, or a reference checkpoint.
    Model(PathBuf),
    /// Config JSON texts, with a name for each (Python: a config dict).
    ConfigTexts(Vec<(String, String)>),
    /// A model dump's JSON (Python: built from a live `nn.Module`).
    Dump(serde_json::Value),
    /// A name that is a preset, a config JSON, a model dump or a reference
    /// checkpoint, told apart by what the file holds (Python's `model=`).
    Named(String),
}

/// The model `choice` stands for.
pub fn model_for(choice: &ModelChoice) -> Result<arch::ModelSpec> {
    match choice {
        ModelChoice::Configs(configs) => model_from_configs(configs),
        ModelChoice::Model(path) => any_model(path),
        ModelChoice::ConfigTexts(texts) => arch::model_from_config_json(texts),
        ModelChoice::Dump(dump) => arch::dump::model_from_dump("model dump", dump),
        ModelChoice::Named(name) => {
            let path = Path::new(name);
            if !path.exists() && !is_url(path) {
                return arch::model_from_preset(name);
            }
            // A JSON is a model dump or a config, told apart by its
            // `format` field; anything else is a reference checkpoint.
            let source = open(path)?;
            if !matches!(format::detect(source.as_ref()), Ok(format::Format::Json)) {
                return Ok(diagnosis::model_from_reference(&read(&[
                    path.to_path_buf()
                ])?));
            }
            if source.len() > arch::dump::MAX_DUMP_BYTES {
                // Refused there, with the cap in the error.
                return arch::dump::read_dump(source.as_ref());
            }
            let bytes = crate::source::read_vec(source.as_ref(), 0, source.len())?;
            let text = String::from_utf8_lossy(&bytes);
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(value) if arch::dump::is_dump(&value) => {
                    arch::dump::model_from_dump(name, &value)
                }
                _ => arch::model_from_config_json(&[(name.clone(), text.into_owned())]),
            }
        }
    }
}

/// The report of `checkpoint` against `model` with `loader`, the weights
/// at `state_dict_path` when given (keys from the checkpoint's root).
pub fn check_against(
    checkpoint: &Checkpoint,
    model: &arch::ModelSpec,
    loader: crate::loader::Loader,
    state_dict_path: Option<&[String]>,
) -> Result<diagnosis::CheckReport> {
    match state_dict_path {
        Some(path) => diagnosis::check_at(checkpoint, model, loader, path),
        None => Ok(diagnosis::check(checkpoint, model, loader)),
    }
}

/// A diffusers pipeline folder (`model_index.json` and a subfolder per
/// component), every file in it and one level down opened and checked
/// component by component.
pub fn check_pipeline_folder(
    folder: &Path,
    variant: Option<&str>,
) -> Result<crate::pipeline::PipelineReport> {
    let name = folder.display().to_string();
    let mut relative = Vec::new();
    for entry in list_folder(folder)? {
        let Some(top) = entry
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if entry.is_file() {
            relative.push((top, entry));
        } else if entry.is_dir() {
            for inner in list_folder(&entry)? {
                if let (true, Some(file)) =
                    (inner.is_file(), inner.file_name().and_then(|n| n.to_str()))
                {
                    relative.push((format!("{top}/{file}"), inner.clone()));
                }
            }
        }
    }
    let opened: Vec<(String, FileSource)> = relative
        .into_iter()
        .map(|(path, full)| Ok((path, FileSource::open(&full)?)))
        .collect::<Result<_>>()?;
    let files: Vec<crate::pipeline::PipelineFile> = opened
        .iter()
        .map(|(path, source)| crate::pipeline::PipelineFile {
            path: path.clone(),
            source,
        })
        .collect();
    crate::pipeline::check_pipeline(&name, &files, variant)
}
