//! What torch's globals mean when a checkpoint's pickle uses them, for the
//! machine in `vm.rs`: persistent ids `("storage", type, key, location,
//! numel[, view])` become storages (torch/serialization.py,
//! `persistent_load`), and the `_rebuild_*` helpers of torch/_utils.py,
//! `torch._tensor._rebuild_from_type_v2` and `torch.Size` become tensors and
//! shapes. Nothing is located or read here: a tensor is its storage key,
//! offset, shape and stride, and the pytorch module's `locate` finds its
//! bytes. Anything not named here is left to the machine, which records it.

use super::vm::{bad, Machine, Object, Reduce, Value};
use crate::error::{err, ErrorKind, Result};

/// The element type and key of a storage as a persistent id describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// `FloatStorage`, `HalfStorage`, `UntypedStorage` ...
    pub storage_type: String,
    pub key: String,
    pub location: String,
    /// Elements of the storage's own type, as the id declares it.
    pub numel: u64,
    /// Legacy format only: `(view_key, offset, size)` when this is a view.
    pub view: Option<(String, u64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: Option<StorageRef>,
    /// For storage-less meta tensors and `_rebuild_from_type_v2`.
    pub dtype_override: Option<String>,
    pub storage_offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
    pub quantized: bool,
}

/// What torch's reductions build that plain Python containers cannot
/// describe.
#[derive(Debug, Clone, PartialEq)]
pub enum TorchObject {
    Storage(StorageRef),
    Tensor(TensorRef),
}

fn storage_heap(storage: &StorageRef) -> u64 {
    (storage.storage_type.len() + storage.key.len() + storage.location.len()) as u64
        + storage
            .view
            .as_ref()
            .map_or(0, |(key, _, _)| key.len() as u64)
}

impl Reduce for TorchObject {
    fn heap_size(&self) -> u64 {
        match self {
            TorchObject::Storage(storage) => storage_heap(storage),
            TorchObject::Tensor(tensor) => {
                tensor.storage.as_ref().map_or(0, storage_heap)
                    + 8 * (tensor.size.len() + tensor.stride.len()) as u64
            }
        }
    }

    fn call(
        machine: &mut Machine<Self>,
        name: &str,
        items: &[Value],
        offset: u64,
    ) -> Result<Option<Value>> {
        let value = match name {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let storage = items.first().cloned().unwrap_or(Value::None);
                rebuild_tensor(
                    machine,
                    &storage,
                    items.get(1..).unwrap_or(&[]),
                    false,
                    offset,
                )
            }
            "torch._utils._rebuild_tensor_v3" => {
                // (storage, offset, size, stride, requires_grad, hooks, dtype):
                // an untyped storage whose dtype is given as `torch.<dtype>`.
                let storage = items.first().cloned().unwrap_or(Value::None);
                let dtype = items
                    .get(6)
                    .and_then(|v| machine.global_of(v))
                    .map(|(_, n)| n.to_string());
                let value = rebuild_tensor(
                    machine,
                    &storage,
                    items.get(1..).unwrap_or(&[]),
                    false,
                    offset,
                )?;
                if let Some(Object::Native(TorchObject::Tensor(tensor))) =
                    machine.object_mut(&value)
                {
                    tensor.dtype_override = dtype;
                }
                Ok(value)
            }
            "torch._utils._rebuild_qtensor" => {
                let storage = items.first().cloned().unwrap_or(Value::None);
                rebuild_tensor(
                    machine,
                    &storage,
                    items.get(1..).unwrap_or(&[]),
                    true,
                    offset,
                )
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                items
                    .first()
                    .cloned()
                    .ok_or_else(|| bad("_rebuild_parameter without a tensor", offset))
            }
            "torch._utils._rebuild_meta_tensor_no_storage" => {
                let dtype = items
                    .first()
                    .and_then(|v| machine.global_of(v))
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_default();
                let size = match items.get(1) {
                    Some(v) => machine.as_u64_list(v, offset)?,
                    None => None,
                }
                .ok_or_else(|| bad("meta tensor with an invalid size", offset))?;
                let stride = match items.get(2) {
                    Some(v) => machine.as_u64_list(v, offset)?,
                    None => None,
                }
                .unwrap_or_default();
                machine.alloc(
                    Object::Native(TorchObject::Tensor(TensorRef {
                        storage: None,
                        dtype_override: Some(dtype),
                        storage_offset: 0,
                        size,
                        stride,
                        quantized: false,
                    })),
                    offset,
                )
            }
            "torch._tensor._rebuild_from_type_v2" => {
                // _rebuild_from_type_v2(func, new_type, args, state): the
                // tensor is func(*args); the subclass does not change shapes.
                let inner_func = items
                    .first()
                    .cloned()
                    .ok_or_else(|| bad("_rebuild_from_type_v2 without a function", offset))?;
                let inner_args = items
                    .get(2)
                    .cloned()
                    .ok_or_else(|| bad("_rebuild_from_type_v2 without arguments", offset))?;
                if matches!(
                    machine.global_of(&inner_func),
                    Some(("torch._tensor", "_rebuild_from_type_v2"))
                ) {
                    return Err(bad("_rebuild_from_type_v2 nested in itself", offset));
                }
                machine.call(inner_func, inner_args, offset)
            }
            "torch.Size" => match items.first() {
                Some(inner) => Ok(inner.clone()),
                None => machine.alloc(Object::Tuple(Vec::new()), offset),
            },
            _ => return Ok(None),
        };
        value.map(Some)
    }

    /// Storage ids (zip and legacy formats) become storages; anything else
    /// is left to the machine.
    fn persistent(machine: &mut Machine<Self>, pid: &Value, offset: u64) -> Result<Option<Value>> {
        if let Some(items) = machine.tuple_items(pid, offset)? {
            if items.first() == Some(&Value::Str("storage".into())) && items.len() >= 5 {
                let storage_type = match &items[1] {
                    global @ Value::Global(_) => machine
                        .global_of(global)
                        .map(|(_, name)| name.to_string())
                        .unwrap_or_default(),
                    Value::Str(name) => name.to_string(),
                    _ => String::new(),
                };
                let key = match &items[2] {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(bad("storage id has no key", offset)),
                };
                let location = match &items[3] {
                    Value::Str(s) => s.to_string(),
                    _ => String::new(),
                };
                let numel = match &items[4] {
                    Value::Int(n) if *n >= 0 => *n as u64,
                    _ => {
                        return Err(bad(
                            format!("storage {key:?} has an invalid element count"),
                            offset,
                        ))
                    }
                };
                let view = match items.get(5) {
                    Some(value @ Value::Object(_)) => {
                        let view = machine.tuple_items(value, offset)?.unwrap_or_default();
                        match (view.first(), view.get(1), view.get(2)) {
                            (
                                Some(Value::Str(view_key)),
                                Some(Value::Int(o)),
                                Some(Value::Int(s)),
                            ) if *o >= 0 && *s >= 0 => {
                                Some((view_key.to_string(), *o as u64, *s as u64))
                            }
                            _ => return Err(bad("malformed storage view metadata", offset)),
                        }
                    }
                    _ => None,
                };
                let storage = machine.alloc(
                    Object::Native(TorchObject::Storage(StorageRef {
                        storage_type,
                        key,
                        location,
                        numel,
                        view,
                    })),
                    offset,
                )?;
                return Ok(Some(storage));
            }
        }
        Ok(None)
    }
}

/// A copy of the storage a value refers to, charged to the work budget.
fn storage_of(
    machine: &mut Machine<TorchObject>,
    value: &Value,
    offset: u64,
) -> Result<Option<StorageRef>> {
    let storage = match machine.object(value) {
        Some(Object::Native(TorchObject::Storage(storage))) => storage.clone(),
        _ => return Ok(None),
    };
    machine.charge(storage_heap(&storage), offset)?;
    Ok(Some(storage))
}

/// `_rebuild_tensor(storage, storage_offset, size, stride, ...)`: `rest` is
/// everything after the storage.
fn rebuild_tensor(
    machine: &mut Machine<TorchObject>,
    storage: &Value,
    rest: &[Value],
    quantized: bool,
    offset: u64,
) -> Result<Value> {
    let storage_offset = match rest.first() {
        Some(Value::Int(o)) if *o >= 0 => *o as u64,
        _ => return Err(bad("tensor with an invalid storage offset", offset)),
    };
    let size = match rest.get(1) {
        Some(v) => machine.as_u64_list(v, offset)?,
        None => None,
    }
    .ok_or_else(|| bad("tensor with an invalid size", offset))?;
    let stride = match rest.get(2) {
        Some(v) => machine.as_u64_list(v, offset)?,
        None => None,
    }
    .ok_or_else(|| bad("tensor with an invalid stride", offset))?;
    if size.len() != stride.len() {
        return Err(bad("tensor size and stride differ in length", offset));
    }
    if size.len() > 64 {
        return Err(err(
            ErrorKind::LimitExceeded,
            "tensor with more than 64 dimensions",
        )
        .at(offset));
    }
    let storage = storage_of(machine, storage, offset)?.ok_or_else(|| {
        bad(
            "tensor rebuilt from something that is not a storage",
            offset,
        )
    })?;
    machine.alloc(
        Object::Native(TorchObject::Tensor(TensorRef {
            storage: Some(storage),
            dtype_override: None,
            storage_offset,
            size,
            stride,
            quantized,
        })),
        offset,
    )
}
