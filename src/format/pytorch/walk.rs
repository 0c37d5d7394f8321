//! Walks the object graph a pickle built and lists what a checkpoint holds:
//! every tensor with the keys that lead to it (`["state_dict",
//! "module.visual.proj"]`), every plain value (epoch, step, ...), and the
//! `_metadata` of state dicts. The walk is depth-first in insertion order
//! (the order PyTorch iterates dicts), depth-capped and node-capped so a
//! hostile graph of shared references cannot make it run forever, and the
//! listing it builds (key paths are copied into every tensor) is charged to
//! `MAX_LISTING_BYTES`, so long keys shared by many tensors cannot make it
//! allocate without bound.

use super::pickle::{Object, Pickle, RecordedCall, TorchObject, Value};
use super::{locate, StorageLocation};
use crate::checkpoint::{Checkpoint, StateDictMetadata, TensorInfo, ValueInfo};
use crate::error::{err, ErrorKind, Result};
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

pub const MAX_DEPTH: usize = 64;
pub const MAX_NODES: usize = 5_000_000;
/// Plain values listed at most (optimizer states hold thousands).
pub const MAX_VALUES: usize = 2_000;
/// Bytes of key text and listing entries the walk may produce.
pub const MAX_LISTING_BYTES: u64 = 512 * 1024 * 1024;
/// Charged per key and per listed tensor: 64-bit sizes, fixed so that the
/// budget is the same on every platform.
const STRING_COST: u64 = 24;
const TENSOR_INFO_COST: u64 = 256;

struct Walker<'p> {
    pickle: &'p Pickle,
    storages: &'p HashMap<String, StorageLocation>,
    nodes: usize,
    on_path: Vec<usize>,
    /// Bytes charged against `MAX_LISTING_BYTES`.
    listed: u64,
}

pub fn walk(
    pickle: &Pickle,
    storages: &HashMap<String, StorageLocation>,
    checkpoint: &mut Checkpoint,
) -> Result<()> {
    let mut walker = Walker {
        pickle,
        storages,
        nodes: 0,
        on_path: Vec::new(),
        listed: 0,
    };
    let mut path = Vec::new();
    let tensors = pickle
        .objects
        .iter()
        .filter(|object| matches!(object, Object::Native(TorchObject::Tensor(_))))
        .count();
    checkpoint.tensors.reserve(tensors.min(MAX_NODES));
    walker.visit(&pickle.root, &mut path, checkpoint)?;
    // The root dict's keys in order: what `load_state_dict(torch.load(f))`
    // would see when the weights are nested one level down.
    if let Value::Object(id) = &pickle.root {
        if let Some(Object::Dict { entries, .. }) = pickle.objects.get(*id) {
            checkpoint.root_keys = entries
                .iter()
                .take(MAX_VALUES)
                .map(|(key, _)| key_text(pickle, key))
                .collect();
        }
    }
    if checkpoint.values.len() >= MAX_VALUES {
        checkpoint.notes.push(format!(
            "only the first {MAX_VALUES} non-tensor values are listed"
        ));
    }
    Ok(())
}

/// A dict key as the text PyTorch users see (`str(key)`).
pub fn key_text(pickle: &Pickle, key: &Value) -> String {
    match key {
        Value::Str(s) => String::from(&**s),
        Value::Int(i) => i.to_string(),
        Value::BigInt(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Float(f) => f.to_string(),
        Value::None => "None".to_string(),
        Value::Bytes(b) => format!("b{:?}", String::from_utf8_lossy(b)),
        Value::Global(_) => pickle
            .global_name(key)
            .map(|(m, n)| format!("{m}.{n}"))
            .unwrap_or_default(),
        Value::Object(_) => "<object>".to_string(),
    }
}

fn scalar_json(pickle: &Pickle, value: &Value) -> Option<serde_json::Value> {
    Some(match value {
        Value::None => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::BigInt(s) => serde_json::Value::String(s.clone()),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| serde_json::Value::String(f.to_string())),
        Value::Str(s) => serde_json::Value::String(s.chars().take(1000).collect()),
        Value::Bytes(b) => serde_json::Value::String(format!("<{} bytes>", b.len())),
        Value::Global(_) => {
            let (m, n) = pickle.global_name(value)?;
            serde_json::Value::String(format!("<global {m}.{n}>"))
        }
        Value::Object(_) => return None,
    })
}

/// Python's name for the type of a pickled value, as torch's messages
/// print it.
fn python_type(value: &Value) -> &'static str {
    match value {
        Value::None => "NoneType",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::BigInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Global(_) => "type",
        Value::Object(_) => "object",
    }
}

fn path_bytes(path: &[String]) -> u64 {
    path.iter().map(|key| key.len() as u64 + STRING_COST).sum()
}

impl Walker<'_> {
    fn charge(&mut self, bytes: u64) -> Result<()> {
        self.listed = self.listed.saturating_add(bytes);
        if self.listed > MAX_LISTING_BYTES {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!(
                    "listing this pickle's tensors would take more than {} MiB (keys too long or too many)",
                    MAX_LISTING_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    fn push_key(&mut self, path: &mut Vec<String>, key: String) -> Result<()> {
        self.charge(key.len() as u64)?;
        path.push(key);
        Ok(())
    }

    fn visit(
        &mut self,
        value: &Value,
        path: &mut Vec<String>,
        checkpoint: &mut Checkpoint,
    ) -> Result<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!("pickle object graph has more than {MAX_NODES} nodes"),
            ));
        }
        if path.len() > MAX_DEPTH {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!("pickle nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let Value::Object(id) = value else {
            if checkpoint.values.len() < MAX_VALUES {
                self.charge(path_bytes(path) + 1024)?;
                if let Some(json) = scalar_json(self.pickle, value) {
                    checkpoint.values.push(ValueInfo {
                        path: path.clone(),
                        value: json,
                    });
                }
            }
            return Ok(());
        };
        if self.on_path.contains(id) {
            // A container that contains itself: Python allows it, we stop.
            return Ok(());
        }
        let Some(object) = self.pickle.objects.get(*id) else {
            return Err(err(ErrorKind::BadPickle, "dangling object reference"));
        };
        self.on_path.push(*id);
        let result = self.visit_object(object, path, checkpoint);
        self.on_path.pop();
        result
    }

    fn visit_object(
        &mut self,
        object: &Object,
        path: &mut Vec<String>,
        checkpoint: &mut Checkpoint,
    ) -> Result<()> {
        match object {
            Object::Native(TorchObject::Tensor(tensor)) => {
                self.charge(
                    2 * path_bytes(path) + 16 * tensor.size.len() as u64 + TENSOR_INFO_COST,
                )?;
                let located =
                    locate(tensor, self.storages).map_err(|e| e.for_tensor(&path.join("/")))?;
                checkpoint.tensors.push(TensorInfo {
                    path: path.clone(),
                    name: path.last().cloned().unwrap_or_default(),
                    dtype: located.dtype.to_string(),
                    shape: tensor.size.clone(),
                    offset: located.offset,
                    nbytes: located.nbytes,
                    ggml_dims: None,
                    stride: Some(tensor.stride.clone()),
                    storage: tensor.storage.as_ref().map(|s| String::from(&*s.key)),
                    file: None,
                    predicted_offset: located.predicted,
                });
            }
            Object::Dict { entries, state } => {
                if let Some(state) = state {
                    self.record_metadata(state, path, checkpoint)?;
                }
                for (key, value) in entries {
                    self.push_key(path, key_text(self.pickle, key))?;
                    self.visit(value, path, checkpoint)?;
                    path.pop();
                }
            }
            Object::List(items) | Object::Tuple(items) | Object::Set(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.push_key(path, index.to_string())?;
                    self.visit(item, path, checkpoint)?;
                    path.pop();
                }
            }
            Object::Call(call) => {
                let RecordedCall {
                    func, state, items, ..
                } = &**call;
                if checkpoint.values.len() < MAX_VALUES {
                    self.charge(path_bytes(path) + 1024)?;
                    let name = self
                        .pickle
                        .global_name(func)
                        .map(|(m, n)| format!("{m}.{n}"))
                        .unwrap_or_else(|| "<call>".to_string());
                    checkpoint.values.push(ValueInfo {
                        path: path.clone(),
                        value: serde_json::json!({ "object": name }),
                    });
                }
                if let Some(state) = state {
                    self.visit(state, path, checkpoint)?;
                }
                for (index, item) in items.iter().enumerate() {
                    self.push_key(path, index.to_string())?;
                    self.visit(item, path, checkpoint)?;
                    path.pop();
                }
            }
            Object::Native(TorchObject::Storage(storage)) => {
                if checkpoint.values.len() < MAX_VALUES {
                    self.charge(path_bytes(path) + storage.key.len() as u64 + 1024)?;
                    checkpoint.values.push(ValueInfo {
                        path: path.clone(),
                        value: serde_json::json!({ "storage": &*storage.key, "type": &*storage.storage_type }),
                    });
                }
            }
            Object::Persistent { id, offset } => self.persistent_id(id, *offset)?,
        }
        Ok(())
    }

    /// A persistent id the torch reducer did not turn into a storage:
    /// torch.load fails on it (its `persistent_load` asserts a
    /// `("storage", ...)` tuple), so the file is not an empty checkpoint
    /// but a broken one. Legacy files' `("module", ...)` ids (an
    /// `nn.Module` class saved with its source) are not storages and load.
    fn persistent_id(&self, id: &Value, offset: u64) -> Result<()> {
        let items = match self.pickle.object(id) {
            Some(Object::Tuple(items)) => Some(items),
            _ => None,
        };
        let first = items.and_then(|items| items.first());
        if matches!(first, Some(Value::Str(kind)) if &**kind == "module") {
            return Ok(());
        }
        let (described, torch_says) = match (items, first) {
            (Some(_), Some(first)) => (
                format!("a tuple starting with {}", key_text(self.pickle, first)),
                format!(
                    "UnpicklingError: Only persistent_load of storage is allowed, but got <class '{}'>",
                    python_type(first)
                ),
            ),
            _ => (
                format!("{} ({})", key_text(self.pickle, id), python_type(id)),
                format!(
                    "AssertionError: saved_id must be a tuple, got {}",
                    python_type(id)
                ),
            ),
        };
        Err(err(
            ErrorKind::BadPickle,
            format!(
                "persistent id {described} is not a torch storage (\"storage\", type, key, location, size): torch.load fails on it ({torch_says}); the pickle was not written by torch.save"
            ),
        )
        .at(offset))
    }

    /// `OrderedDict` state `{"_metadata": OrderedDict(prefix -> {"version": n})}`.
    fn record_metadata(
        &mut self,
        state: &Value,
        path: &[String],
        checkpoint: &mut Checkpoint,
    ) -> Result<()> {
        let Some(Object::Dict { entries, .. }) = self.pickle.object(state) else {
            return Ok(());
        };
        let Some((_, metadata)) = entries
            .iter()
            .find(|(k, _)| *k == Value::Str("_metadata".into()))
        else {
            return Ok(());
        };
        let Some(Object::Dict {
            entries: modules, ..
        }) = self.pickle.object(metadata)
        else {
            return Ok(());
        };
        let mut versions = BTreeMap::new();
        for (prefix, info) in modules {
            let version = match self.pickle.object(info) {
                Some(Object::Dict { entries, .. }) => {
                    entries.iter().find_map(|(k, v)| match (k, v) {
                        (Value::Str(k), Value::Int(v)) if &**k == "version" => Some(*v),
                        _ => None,
                    })
                }
                _ => None,
            };
            let prefix = key_text(self.pickle, prefix);
            self.charge(prefix.len() as u64 + 64)?;
            versions.insert(prefix, version);
        }
        self.charge(path_bytes(path))?;
        checkpoint.state_dict_metadata.push(StateDictMetadata {
            path: path.to_vec(),
            versions,
        });
        Ok(())
    }
}
