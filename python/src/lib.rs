//! `ckptcheck._native`: the Rust core behind the Python package, thin on
//! purpose. Each function takes plain strings, runs the same library code
//! the command line runs (`ckptcheck::open`, `ckptcheck::write`) with the
//! GIL released (Dask and thread pools run files side by side), and
//! returns the JSON the command line prints with `--json`: the report, or
//! `{"error": {...}}`, which `ckptcheck/__init__.py` raises as
//! `ckptcheck.Error`. The Python layer owns the API's shape (the `Report`
//! class, reading a live `nn.Module`); this owns no logic.

use ckptcheck::open::{self, ModelChoice};
use ckptcheck::Error;
use pyo3::prelude::*;
use serde_json::{json, Value};
use std::path::PathBuf;

/// A result as the command line's JSON: the value, or `{"error": ...}`.
fn to_json(result: Result<Value, Error>) -> String {
    let value = result.unwrap_or_else(|error| json!({ "error": error }));
    serde_json::to_string(&value).unwrap_or_else(|e| {
        json!({"error": {"kind": "io", "message": format!("cannot write the JSON: {e}")}})
            .to_string()
    })
}

fn value_of<T: serde::Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| {
        Error::new(
            ckptcheck::ErrorKind::Io,
            format!("cannot write the JSON: {e}"),
        )
    })
}

fn paths_of(paths: &[String]) -> Vec<PathBuf> {
    paths.iter().map(PathBuf::from).collect()
}

fn inspect_value(paths: &[String], exact_offsets: bool) -> Result<Value, Error> {
    let paths = paths_of(paths);
    if paths.is_empty() {
        return Err(Error::new(
            ckptcheck::ErrorKind::BadArgument,
            "inspect needs a file",
        ));
    }
    let files = open::open_all(&paths)?;
    let sources = open::checkpoint_sources(&files)?;
    let mut checkpoint = ckptcheck::format::read_files(&sources)?;
    if exact_offsets {
        ckptcheck::format::confirm_offsets(&mut checkpoint, &sources)?;
    }
    open::inspect_json(&checkpoint, &files)
}

/// `ckptcheck inspect --json PATHS`.
#[pyfunction]
#[pyo3(signature = (paths, exact_offsets = false))]
fn inspect(py: Python<'_>, paths: Vec<String>, exact_offsets: bool) -> String {
    py.detach(|| to_json(inspect_value(&paths, exact_offsets)))
}

/// The model argument, as the Python layer passes it.
fn model_choice(kind: &str, values: Vec<String>) -> Result<ModelChoice, Error> {
    let bad = |why: &str| Error::new(ckptcheck::ErrorKind::BadArgument, why.to_string());
    Ok(match kind {
        "named" => match <[String; 1]>::try_from(values) {
            Ok([name]) => ModelChoice::Named(name),
            Err(_) => return Err(bad("one model name")),
        },
        "configs" => ModelChoice::Configs(values),
        "config_texts" => ModelChoice::ConfigTexts(
            values
                .into_iter()
                .enumerate()
                .map(|(i, text)| (format!("config {}", i + 1), text))
                .collect(),
        ),
        "dump" => {
            let text = values.into_iter().next().unwrap_or_default();
            let dump = serde_json::from_str(&text)
                .map_err(|e| bad(&format!("the model dump is not JSON: {e}")))?;
            ModelChoice::Dump(dump)
        }
        other => return Err(bad(&format!("unknown model kind {other:?}"))),
    })
}

fn check_value(
    paths: &[String],
    kind: &str,
    values: Vec<String>,
    loader: &str,
    state_dict_path: Option<String>,
) -> Result<Value, Error> {
    let checkpoint = open::read(&paths_of(paths))?;
    let loader = ckptcheck::loader::Loader::parse(loader)?;
    let model = open::model_for(&model_choice(kind, values)?)?;
    let path: Option<Vec<String>> =
        state_dict_path.map(|p| p.split('/').map(str::to_string).collect());
    let report = open::check_against(&checkpoint, &model, loader, path.as_deref())?;
    Ok(json!({
        "report": value_of(&report)?,
        "text": ckptcheck::diagnosis::to_text(&report),
    }))
}

/// `ckptcheck check --json PATHS` against a model: `kind` says what
/// `values` are ("named": a preset, config, dump or reference checkpoint;
/// "configs": `--config` values; "config_texts": config JSON texts;
/// "dump": a model dump's JSON text). Returns `{"report", "text"}`.
#[pyfunction]
#[pyo3(signature = (paths, kind, values, loader = "strict".to_string(), state_dict_path = None))]
fn check(
    py: Python<'_>,
    paths: Vec<String>,
    kind: String,
    values: Vec<String>,
    loader: String,
    state_dict_path: Option<String>,
) -> String {
    py.detach(|| to_json(check_value(&paths, &kind, values, &loader, state_dict_path)))
}

fn check_pipeline_value(folder: &str, variant: Option<&str>) -> Result<Value, Error> {
    let report = open::check_pipeline_folder(std::path::Path::new(folder), variant)?;
    Ok(json!({
        "pipeline": value_of(&report)?,
        "text": ckptcheck::pipeline::to_text(&report),
    }))
}

/// `ckptcheck check --json FOLDER` for a diffusers pipeline folder.
/// Returns `{"pipeline", "text"}`.
#[pyfunction]
#[pyo3(signature = (folder, variant = None))]
fn check_pipeline(py: Python<'_>, folder: String, variant: Option<String>) -> String {
    py.detach(|| to_json(check_pipeline_value(&folder, variant.as_deref())))
}

fn scan_value(paths: &[String]) -> Result<Value, Error> {
    let files = open::open_all(&paths_of(paths))?;
    let sources: Vec<&dyn ckptcheck::source::ByteSource> = files
        .iter()
        .map(|f| f.as_ref() as &dyn ckptcheck::source::ByteSource)
        .collect();
    let report = ckptcheck::scan::scan_sources(&sources, &mut |_, _| true)?;
    open::report_json(&report, &files)
}

/// `ckptcheck scan --json PATHS`.
#[pyfunction]
fn scan(py: Python<'_>, paths: Vec<String>) -> String {
    py.detach(|| to_json(scan_value(&paths)))
}

fn convert_value(
    paths: &[String],
    out: &str,
    dtype: &str,
    shard_size: Option<u64>,
    state_dict_path: Option<String>,
) -> Result<Value, Error> {
    let target = ckptcheck::convert::Target::parse(dtype)?;
    let path: Option<Vec<String>> =
        state_dict_path.map(|p| p.split('/').map(str::to_string).collect());
    let (plan, files) = ckptcheck::write::convert_files(
        &paths_of(paths),
        std::path::Path::new(out),
        target,
        shard_size,
        path,
        &mut |_, _| {},
    )?;
    value_of(&ckptcheck::write::Written {
        files,
        plan: ckptcheck::write::summary(&plan),
    })
}

/// `ckptcheck convert --json PATHS -o OUT`.
#[pyfunction]
#[pyo3(signature = (paths, out, dtype = "keep".to_string(), shard_size = None, state_dict_path = None))]
fn convert(
    py: Python<'_>,
    paths: Vec<String>,
    out: String,
    dtype: String,
    shard_size: Option<u64>,
    state_dict_path: Option<String>,
) -> String {
    py.detach(|| {
        to_json(convert_value(
            &paths,
            &out,
            &dtype,
            shard_size,
            state_dict_path,
        ))
    })
}

/// `ckptcheck presets --json`.
#[pyfunction]
fn presets() -> String {
    let list: Vec<Value> = ckptcheck::arch::presets()
        .iter()
        .map(|(name, family, description)| {
            json!({"name": name, "family": family, "description": description})
        })
        .collect();
    Value::Array(list).to_string()
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(inspect, module)?)?;
    module.add_function(wrap_pyfunction!(check, module)?)?;
    module.add_function(wrap_pyfunction!(check_pipeline, module)?)?;
    module.add_function(wrap_pyfunction!(scan, module)?)?;
    module.add_function(wrap_pyfunction!(convert, module)?)?;
    module.add_function(wrap_pyfunction!(presets, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The dump snippet the command line prints (`ckptcheck snippet`): the
    // Python layer runs the same code on a live module.
    module.add("DUMP_SNIPPET", ckptcheck::arch::dump::SNIPPET)?;
    Ok(())
}
