//! What the pickle machine charges to its work budget for each allocation
//! and copy, and the hash that finds repeated dict keys (`vm.rs` uses
//! both). Sizes are fixed at their 64-bit values so that which hostile
//! files exceed the budget is the same natively and in wasm.

use super::vm::{Object, Reduce, Value};
use std::hash::{Hash, Hasher};

/// What the work budget charges for each kind of allocation: the sizes on
/// 64-bit targets, fixed so that the budget, and which files exceed it, are
/// the same everywhere (wasm32's smaller pointers would otherwise let a
/// pickle through in the browser that fails natively).
pub(super) const VALUE_COST: u64 = 24;
pub(super) const STACK_COST: u64 = 24;
pub(super) const OBJECT_COST: u64 = 208;
pub(super) const DICT_ENTRY_COST: u64 = 48;
/// A memo entry plus hash-table overhead.
pub(super) const MEMO_COST: u64 = 48;
/// What one key comparison in the dict index costs the budget (a hostile
/// pickle can make keys collide; see `vm.rs`).
pub(super) const COMPARE_COST: u64 = 8;
/// Memo keys up to this far past the dense vector's end extend it; others
/// go to the sparse map (a lone BINPUT 4000000000 must not allocate 4e9
/// slots).
pub(super) const DENSE_MEMO_SLACK: u64 = 4096;

/// Heap bytes a value owns alone (shared strings and bytes cost nothing
/// more when copied).
pub(super) fn value_heap(value: &Value) -> u64 {
    match value {
        Value::BigInt(s) => s.len() as u64,
        _ => 0,
    }
}

pub(super) fn values_size(values: &[Value]) -> u64 {
    let inline = values.len() as u64 * VALUE_COST;
    values
        .iter()
        .map(value_heap)
        .fold(inline, u64::saturating_add)
}

/// What an object costs: its own size plus what it owns.
pub(super) fn object_size<R: Reduce>(object: &Object<R>) -> u64 {
    let own = OBJECT_COST;
    own + match object {
        Object::List(items) | Object::Tuple(items) | Object::Set(items) => values_size(items),
        Object::Dict { entries, .. } => entries.len() as u64 * DICT_ENTRY_COST,
        Object::Call(call) => values_size(&call.items),
        Object::Persistent { id, .. } => value_heap(id),
        Object::Native(native) => native.heap_size(),
    }
}

/// A hash of a dict key that `Value`'s equality agrees with, for the keys
/// SETITEM deduplicates (objects never are, as before).
pub(super) fn key_hash(key: &Value) -> Option<u64> {
    let mut hasher = rustc_hash::FxHasher::default();
    match key {
        Value::None => 0u8.hash(&mut hasher),
        Value::Bool(b) => (1u8, b).hash(&mut hasher),
        Value::Int(i) => (2u8, i).hash(&mut hasher),
        Value::BigInt(s) => (3u8, s).hash(&mut hasher),
        Value::Float(f) => (4u8, f.to_bits()).hash(&mut hasher),
        Value::Str(s) => (5u8, s).hash(&mut hasher),
        Value::Bytes(b) => (6u8, b).hash(&mut hasher),
        Value::Global(g) => (7u8, g).hash(&mut hasher),
        Value::Object(_) => return None,
    }
    Some(hasher.finish())
}
