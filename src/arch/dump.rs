//! Any PyTorch model, from a model dump: the JSON that `ckptcheck_dump(model,
//! path)` (`dump_snippet.py`, printed by `ckptcheck snippet`) writes in the
//! user's own Python. It holds what `load_state_dict(strict=True)` depends
//! on: every `state_dict()` key in order with shape, dtype and whether it
//! is a parameter, the class name, and the module tree in
//! `named_modules(remove_duplicate=False)` order (modules without
//! parameters included, so keys under them are judged where PyTorch judges
//! them), with the BatchNorm-like modules marked.
//!
//! Schema, version 1 (documented in README.md):
//! `{"format": "ckptcheck-model-dump", "version": 1, "class": str,
//! "module": str, "state_dict": [{"key", "shape", "dtype", "kind",
//! "tied_to"?}],
//! "modules": [{"name", "class", "batchnorm", "non_persistent"?}], "transformers"?:
//! {"base_model_prefix", "model_type"}}`.

use super::{ExpectedTensor, ModelSpec};
use crate::error::{err, ErrorKind, Result};
use rustc_hash::FxHashSet as HashSet;
use serde_json::{json, Value};

/// The snippet users run, verbatim (`ckptcheck snippet`, the page's copy
/// button); the fixture script runs this same file.
pub const SNIPPET: &str = include_str!("dump_snippet.py");

pub const FORMAT: &str = "ckptcheck-model-dump";
pub const VERSION: u64 = 1;
/// Entries and modules read at most (the largest models have ~10^4).
const MAX_ENTRIES: usize = 1 << 20;
const MAX_DIMS: usize = 16;

/// Whether a JSON value is a model dump (by its `format` field).
pub fn is_dump(value: &Value) -> bool {
    value.get("format").and_then(Value::as_str) == Some(FORMAT)
}

fn bad(name: &str, field: &str, why: impl std::fmt::Display) -> crate::error::Error {
    err(
        ErrorKind::BadConfig,
        format!("model dump field {field:?}: {why}"),
    )
    .in_file(name)
}

/// Largest model dump read (the largest models' dumps are a few MiB).
pub const MAX_DUMP_BYTES: u64 = 64 * 1024 * 1024;

/// The model a dump file describes: read (capped), parsed, checked.
pub fn read_dump(source: &dyn crate::source::ByteSource) -> Result<ModelSpec> {
    if source.len() > MAX_DUMP_BYTES {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!(
                "model dump of {} bytes; dumps are read up to {MAX_DUMP_BYTES}",
                source.len()
            ),
        )
        .in_file(source.name()));
    }
    let bytes = crate::source::read_vec(source, 0, source.len())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        err(
            ErrorKind::BadConfig,
            format!("model dump is not valid JSON: {e}"),
        )
        .in_file(source.name())
    })?;
    model_from_dump(source.name(), &value)
}

/// The model a dump describes. `name` is the file's name, for errors.
pub fn model_from_dump(name: &str, dump: &Value) -> Result<ModelSpec> {
    if !is_dump(dump) {
        return Err(bad(name, "format", format!("expected {FORMAT:?}")));
    }
    match dump.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(other) => {
            return Err(bad(
                name,
                "version",
                format!("version {other} is not one this ckptcheck reads (it reads {VERSION}); run `ckptcheck snippet` for the current snippet"),
            ))
        }
        None => return Err(bad(name, "version", "missing or not an integer")),
    }
    let class_name = dump
        .get("class")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad(name, "class", "missing or empty"))?
        .to_string();
    let entries = dump
        .get("state_dict")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(name, "state_dict", "missing or not a list"))?;
    if entries.len() > MAX_ENTRIES {
        return Err(bad(
            name,
            "state_dict",
            format!("{} entries (at most {MAX_ENTRIES})", entries.len()),
        ));
    }
    let mut tensors = Vec::with_capacity(entries.len());
    let mut tied = Vec::new();
    let mut seen = HashSet::default();
    for (index, entry) in entries.iter().enumerate() {
        let field = |part: &str| format!("state_dict[{index}].{part}");
        let key = entry
            .get("key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad(name, &field("key"), "missing or empty"))?;
        if !seen.insert(key) {
            return Err(bad(name, &field("key"), format!("{key:?} appears twice")));
        }
        let shape = entry
            .get("shape")
            .and_then(Value::as_array)
            .filter(|dims| dims.len() <= MAX_DIMS)
            .ok_or_else(|| {
                bad(
                    name,
                    &field("shape"),
                    format!("not a list of at most {MAX_DIMS} sizes"),
                )
            })?
            .iter()
            .map(Value::as_u64)
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| bad(name, &field("shape"), "sizes must be non-negative integers"))?;
        let torch_dtype = entry
            .get("dtype")
            .and_then(Value::as_str)
            .unwrap_or("float32");
        let dtype = crate::format::pytorch::torch_dtype(torch_dtype).ok_or_else(|| {
            bad(
                name,
                &field("dtype"),
                format!("unknown dtype {torch_dtype:?}"),
            )
        })?;
        match entry.get("kind").and_then(Value::as_str) {
            Some("parameter" | "buffer") | None => {}
            Some(other) => {
                return Err(bad(
                    name,
                    &field("kind"),
                    format!("{other:?} is neither \"parameter\" nor \"buffer\""),
                ))
            }
        }
        if let Some(source) = entry.get("tied_to").and_then(Value::as_str) {
            tied.push(json!([key, source]));
        }
        tensors.push(ExpectedTensor {
            name: key.to_string(),
            shape,
            dtype: dtype.to_string(),
            depends_on: Vec::new(),
            exists_if: Vec::new(),
        });
    }
    let modules = dump
        .get("modules")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(name, "modules", "missing or not a list"))?;
    if modules.len() > MAX_ENTRIES {
        return Err(bad(
            name,
            "modules",
            format!("{} modules (at most {MAX_ENTRIES})", modules.len()),
        ));
    }
    let mut module_names = Vec::with_capacity(modules.len());
    let mut batchnorm_modules = Vec::new();
    let mut non_persistent = Vec::new();
    for (index, module) in modules.iter().enumerate() {
        let module_name = module
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(name, &format!("modules[{index}].name"), "missing"))?;
        if module.get("batchnorm").and_then(Value::as_bool) == Some(true) {
            batchnorm_modules.push(module_name.to_string());
        }
        if let Some(buffers) = module.get("non_persistent").and_then(Value::as_array) {
            for buffer in buffers.iter().filter_map(Value::as_str) {
                non_persistent.push(if module_name.is_empty() {
                    buffer.to_string()
                } else {
                    format!("{module_name}.{buffer}")
                });
            }
        }
        module_names.push(module_name.to_string());
    }
    let transformers = dump.get("transformers").filter(|t| t.is_object());
    let base_model_prefix = transformers
        .and_then(|t| t.get("base_model_prefix"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(ModelSpec {
        family: "dump".to_string(),
        class_name: class_name.clone(),
        preset: None,
        config: json!({
            "class": class_name,
            "module": dump.get("module").cloned().unwrap_or(Value::Null),
            "transformers": transformers.cloned().unwrap_or(Value::Null),
            "tied": tied,
        }),
        tensors,
        batchnorm_modules,
        base_model_prefix,
        tied_keys: tied
            .iter()
            .filter_map(|pair| pair[0].as_str().map(str::to_string))
            .collect(),
        module_kinds: Vec::new(),
        module_names,
        non_persistent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(state_dict: Value, modules: Value) -> Value {
        json!({"format": FORMAT, "version": 1, "class": "M", "module": "__main__",
               "state_dict": state_dict, "modules": modules})
    }

    #[test]
    fn a_dump_becomes_the_model_it_describes() {
        let value = dump(
            json!([{"key": "fc.weight", "shape": [3, 2], "dtype": "float32", "kind": "parameter"},
                   {"key": "bn.num_batches_tracked", "shape": [], "dtype": "int64", "kind": "buffer"}]),
            json!([{"name": "", "class": "M", "batchnorm": false},
                   {"name": "fc", "class": "Linear", "batchnorm": false},
                   {"name": "act", "class": "GELU", "batchnorm": false},
                   {"name": "bn", "class": "BatchNorm1d", "batchnorm": true}]),
        );
        let model = model_from_dump("m.json", &value).expect("model");
        assert_eq!(model.class_name, "M");
        assert_eq!(model.tensors[1].dtype, "I64");
        assert_eq!(model.tensors[1].shape, Vec::<u64>::new());
        assert_eq!(model.module_names, ["", "fc", "act", "bn"]);
        assert_eq!(model.batchnorm_modules, ["bn"]);
    }

    #[test]
    fn a_malformed_dump_names_the_field() {
        let cases = [
            (json!({"format": FORMAT, "version": 2}), "\"version\""),
            (
                json!({"format": FORMAT, "version": 1, "class": "M"}),
                "\"state_dict\"",
            ),
            (
                dump(json!([{"key": "w", "shape": [-1]}]), json!([])),
                "state_dict[0].shape",
            ),
            (
                dump(
                    json!([{"key": "w", "shape": [1], "dtype": "qint8"}]),
                    json!([]),
                ),
                "state_dict[0].dtype",
            ),
            (
                dump(
                    json!([{"key": "w", "shape": [1]}, {"key": "w", "shape": [1]}]),
                    json!([]),
                ),
                "state_dict[1].key",
            ),
            (dump(json!([]), json!(7)), "\"modules\""),
        ];
        for (value, field) in cases {
            let error = model_from_dump("m.json", &value).expect_err(field);
            assert_eq!(error.kind, ErrorKind::BadConfig);
            assert!(error.message.contains(field), "{field}: {error}");
            assert_eq!(error.file.as_deref(), Some("m.json"));
        }
    }

    #[test]
    fn the_snippet_writes_the_format_this_reads() {
        assert!(SNIPPET.contains(&format!("\"format\": \"{FORMAT}\"")));
        assert!(SNIPPET.contains(&format!("\"version\": {VERSION},")));
        assert!(SNIPPET.contains("def ckptcheck_dump(model, path"));
    }
}
