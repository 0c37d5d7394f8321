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
use std::rc::Rc;

/// The element type and key of a storage as a persistent id describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// `FloatStorage`, `HalfStorage`, `UntypedStorage` ... The three names
    /// share the pickle's own strings (a memoized `"cpu"` is one string for
    /// every storage).
    pub storage_type: Rc<str>,
    pub key: Rc<str>,
    pub location: Rc<str>,
    /// Elements of the storage's own type, as the id declares it.
    pub numel: u64,
    /// Legacy format only: `(view_key, offset, size)` when this is a view.
    pub view: Option<(String, u64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Shared with the storage object and every other view of it.
    pub storage: Option<Rc<StorageRef>>,
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
    Storage(Rc<StorageRef>),
    /// Boxed: a tensor is the largest thing a pickle's object table holds,
    /// and one object in eight.
    Tensor(Box<TensorRef>),
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
                tensor.storage.as_deref().map_or(0, storage_heap)
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
                    Object::Native(TorchObject::Tensor(Box::new(TensorRef {
                        storage: None,
                        dtype_override: Some(dtype),
                        storage_offset: 0,
                        size,
                        stride,
                        quantized: false,
                    }))),
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
        // Read in place (the id tuple is not copied); the copy it used to
        // be is still charged.
        let (Some(Object::Tuple(items)) | Some(Object::List(items))) = machine.object(pid) else {
            return Ok(None);
        };
        if !(matches!(items.first(), Some(Value::Str(kind)) if &**kind == "storage")
            && items.len() >= 5)
        {
            return Ok(None);
        }
        let copied = 24 * items.len() as u64;
        let storage_type: Rc<str> = match &items[1] {
            global @ Value::Global(_) => machine
                .global_short_name(global)
                .unwrap_or_else(|| Rc::from("")),
            Value::Str(name) => name.clone(),
            _ => Rc::from(""),
        };
        let key: Rc<str> = match &items[2] {
            Value::Str(s) => s.clone(),
            Value::Int(i) => Rc::from(i.to_string()),
            _ => return Err(bad("storage id has no key", offset)),
        };
        let location: Rc<str> = match &items[3] {
            Value::Str(s) => s.clone(),
            _ => Rc::from(""),
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
        let view_value = match items.get(5) {
            Some(value @ Value::Object(_)) => Some(value.clone()),
            _ => None,
        };
        machine.charge(copied, offset)?;
        let view = match view_value {
            Some(value) => {
                let view = machine.tuple_items(&value, offset)?.unwrap_or_default();
                match (view.first(), view.get(1), view.get(2)) {
                    (Some(Value::Str(view_key)), Some(Value::Int(o)), Some(Value::Int(s)))
                        if *o >= 0 && *s >= 0 =>
                    {
                        Some((view_key.to_string(), *o as u64, *s as u64))
                    }
                    _ => return Err(bad("malformed storage view metadata", offset)),
                }
            }
            None => None,
        };
        let storage = machine.alloc(
            Object::Native(TorchObject::Storage(Rc::new(StorageRef {
                storage_type,
                key,
                location,
                numel,
                view,
            }))),
            offset,
        )?;
        Ok(Some(storage))
    }
}

/// The storage a value refers to, shared (the tensor's heap size still
/// counts its storage's strings, so the budget is as before).
fn storage_of(machine: &Machine<TorchObject>, value: &Value) -> Option<Rc<StorageRef>> {
    match machine.object(value) {
        Some(Object::Native(TorchObject::Storage(storage))) => Some(storage.clone()),
        _ => None,
    }
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
    let storage = storage_of(machine, storage).ok_or_else(|| {
        bad(
            "tensor rebuilt from something that is not a storage",
            offset,
        )
    })?;
    machine.alloc(
        Object::Native(TorchObject::Tensor(Box::new(TensorRef {
            storage: Some(storage),
            dtype_override: None,
            storage_offset,
            size,
            stride,
            quantized,
        }))),
        offset,
    )
}
