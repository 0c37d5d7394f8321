//! A symbolic pickle interpreter for protocols 0 to 5. It builds the object
//! graph a pickle describes without importing or calling anything: a GLOBAL is
//! a name, a REDUCE of an unknown global is a recorded call. The few callables
//! PyTorch checkpoints are made of (OrderedDict, the `_rebuild_*` helpers,
//! `_codecs.encode`) are interpreted by meaning. Every global is recorded for
//! the audit of what `torch.load(weights_only=True)` would refuse.
//!
//! Untrusted input: every length is checked against the bytes that remain,
//! the object arena, memo and stack are capped, and nothing recurses on file
//! data (the graph walk in `walk.rs` is depth-capped). Every byte the
//! interpreter allocates or copies (stack entries, objects, memo entries,
//! copies of argument tuples) is charged to a work budget (`MAX_WORK`), so a
//! small pickle that DUPs a long string a million times, or REDUCEs a huge
//! memoized tuple over and over, fails fast instead of exhausting memory or
//! time. Opcode reference: CPython `Lib/pickletools.py`.

use crate::error::{err, Error, ErrorKind, Result};
use crate::source::Cursor;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// Object arena cap: far above any real state dict (about ten objects per
/// tensor), far below what would exhaust memory.
pub const MAX_OBJECTS: usize = 20_000_000;
/// Cap on one text line (protocol 0 opcodes) and one string or bytes value.
pub const MAX_STRING: u64 = 64 * 1024 * 1024;
pub const MAX_STACK: usize = 1_000_000;
/// Bytes the interpreter may allocate or copy while running one pickle
/// (see the module docs). A real state dict costs about 1 KiB per tensor.
pub const MAX_WORK: u64 = 1 << 30;

/// An index into the interpreter's object arena.
pub type ObjectId = usize;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, kept as decimal text.
    BigInt(String),
    Float(f64),
    /// Strings and bytes are shared, not copied, when a pickle DUPs or GETs
    /// them: a memoized 64 MiB string fetched a million times costs one
    /// string, not a million.
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// A global reference `module.name` (index into `globals`).
    Global(usize),
    /// A container or recorded call in the arena.
    Object(ObjectId),
}

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

#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict {
        entries: Vec<(Value, Value)>,
        /// The state a BUILD gave it; an OrderedDict saved by
        /// `Module.state_dict()` carries `{"_metadata": ...}` here.
        state: Option<Value>,
    },
    Set(Vec<Value>),
    /// `func(*args)` that the interpreter did not evaluate.
    Call {
        func: Value,
        args: Value,
        state: Option<Value>,
        items: Vec<Value>,
    },
    /// A persistent id that is not a storage (the tar format uses these).
    Persistent(Value),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// Result of running one pickle to its STOP opcode.
pub struct Pickle {
    pub root: Value,
    pub objects: Vec<Object>,
    /// `(module, name)` pairs, indexed by `Value::Global`.
    pub globals: Vec<(String, String)>,
    /// How often each global was referenced.
    pub global_counts: Vec<u64>,
    /// Offset just past STOP (the next pickle of a legacy file starts here).
    pub end: u64,
    /// Bytes charged against `MAX_WORK` while interpreting it.
    pub work: u64,
}

impl Pickle {
    pub fn object(&self, value: &Value) -> Option<&Object> {
        match value {
            Value::Object(id) => self.objects.get(*id),
            _ => None,
        }
    }

    pub fn global_name(&self, value: &Value) -> Option<(&str, &str)> {
        match value {
            Value::Global(index) => self
                .globals
                .get(*index)
                .map(|(m, n)| (m.as_str(), n.as_str())),
            _ => None,
        }
    }
}

enum StackItem {
    Mark,
    Value(Value),
}

struct Machine {
    stack: Vec<StackItem>,
    /// Bytes charged so far, and the most this pickle may charge (what is
    /// left of its file's `MAX_WORK`).
    work: u64,
    max_work: u64,
    /// Entries of every dict by `(object, hash of key)`, so SETITEM finds a
    /// repeated key without scanning the dict (a scan made building an
    /// n-entry dict cost n^2/2 comparisons).
    dict_index: HashMap<(ObjectId, u64), Vec<usize>>,
    memo: HashMap<u64, Value>,
    objects: Vec<Object>,
    globals: Vec<(String, String)>,
    global_index: HashMap<(String, String), usize>,
    global_counts: Vec<u64>,
}

fn bad(message: impl Into<String>, offset: u64) -> Error {
    err(ErrorKind::BadPickle, message).at(offset)
}

/// What the work budget charges for each kind of allocation: the sizes on
/// 64-bit targets, fixed so that the budget, and which files exceed it, are
/// the same everywhere (wasm32's smaller pointers would otherwise let a
/// pickle through in the browser that fails natively).
const VALUE_COST: u64 = 24;
const STACK_COST: u64 = 24;
const OBJECT_COST: u64 = 208;
const DICT_ENTRY_COST: u64 = 48;
/// A memo entry plus hash-table overhead.
const MEMO_COST: u64 = 48;

/// Heap bytes a value owns alone (shared strings and bytes cost nothing
/// more when copied).
fn value_heap(value: &Value) -> u64 {
    match value {
        Value::BigInt(s) => s.len() as u64,
        _ => 0,
    }
}

fn values_size(values: &[Value]) -> u64 {
    let inline = values.len() as u64 * VALUE_COST;
    values
        .iter()
        .map(value_heap)
        .fold(inline, u64::saturating_add)
}

fn storage_heap(storage: &StorageRef) -> u64 {
    (storage.storage_type.len() + storage.key.len() + storage.location.len()) as u64
        + storage
            .view
            .as_ref()
            .map_or(0, |(key, _, _)| key.len() as u64)
}

/// What an object costs: its own size plus what it owns.
fn object_size(object: &Object) -> u64 {
    let own = OBJECT_COST;
    own + match object {
        Object::List(items) | Object::Tuple(items) | Object::Set(items) => values_size(items),
        Object::Dict { entries, .. } => entries.len() as u64 * DICT_ENTRY_COST,
        Object::Call { items, .. } => values_size(items),
        Object::Persistent(value) => value_heap(value),
        Object::Storage(storage) => storage_heap(storage),
        Object::Tensor(tensor) => {
            tensor.storage.as_ref().map_or(0, storage_heap)
                + 8 * (tensor.size.len() + tensor.stride.len()) as u64
        }
    }
}

/// A hash of a dict key that `Value`'s equality agrees with, for the keys
/// SETITEM deduplicates (objects never are, as before).
fn key_hash(key: &Value) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
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

impl Machine {
    /// Charge `bytes` of allocation or copying against `MAX_WORK`.
    fn charge(&mut self, bytes: u64, offset: u64) -> Result<()> {
        self.work = self.work.saturating_add(bytes);
        if self.work > self.max_work {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!(
                    "pickles need more than {} MiB of work to interpret (a decompression-bomb-like pickle)",
                    MAX_WORK >> 20
                ),
            )
            .at(offset));
        }
        Ok(())
    }

    fn push(&mut self, value: Value, offset: u64) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(err(ErrorKind::LimitExceeded, "pickle stack exceeds its limit").at(offset));
        }
        self.charge(STACK_COST + value_heap(&value), offset)?;
        self.stack.push(StackItem::Value(value));
        Ok(())
    }

    fn push_mark(&mut self, offset: u64) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(err(ErrorKind::LimitExceeded, "pickle stack exceeds its limit").at(offset));
        }
        self.charge(STACK_COST, offset)?;
        self.stack.push(StackItem::Mark);
        Ok(())
    }

    fn alloc(&mut self, object: Object, offset: u64) -> Result<Value> {
        self.charge(object_size(&object), offset)?;
        if self.objects.len() >= MAX_OBJECTS {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!("pickle builds more than {MAX_OBJECTS} objects"),
            )
            .at(offset));
        }
        self.objects.push(object);
        Ok(Value::Object(self.objects.len() - 1))
    }

    fn pop(&mut self, offset: u64) -> Result<Value> {
        match self.stack.pop() {
            Some(StackItem::Value(value)) => Ok(value),
            Some(StackItem::Mark) => Err(bad("unexpected MARK on the stack", offset)),
            None => Err(bad("pop from an empty stack", offset)),
        }
    }

    fn top(&self, offset: u64) -> Result<&Value> {
        match self.stack.last() {
            Some(StackItem::Value(value)) => Ok(value),
            _ => Err(bad("expected a value on top of the stack", offset)),
        }
    }

    fn pop_mark(&mut self, offset: u64) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                Some(StackItem::Mark) => break,
                Some(StackItem::Value(value)) => items.push(value),
                None => return Err(bad("no MARK on the stack", offset)),
            }
        }
        items.reverse();
        Ok(items)
    }

    fn global(&mut self, module: String, name: String) -> Value {
        // Protocol 2 pickles written by Python 3 store Python 2 module names;
        // Python 3 maps them back on load (Lib/_compat_pickle.py), and so do
        // we, so the audit names what would really be imported.
        let module = match module.as_str() {
            "__builtin__" | "exceptions" => "builtins".to_string(),
            "commands" => "subprocess".to_string(),
            "copy_reg" => "copyreg".to_string(),
            "cPickle" => "pickle".to_string(),
            "UserDict" | "UserList" | "UserString" => "collections".to_string(),
            "Queue" => "queue".to_string(),
            "urllib2" => "urllib.request".to_string(),
            "httplib" => "http.client".to_string(),
            _ => module,
        };
        let key = (module, name);
        let index = match self.global_index.get(&key) {
            Some(index) => *index,
            None => {
                let index = self.globals.len();
                self.globals.push(key.clone());
                self.global_counts.push(0);
                self.global_index.insert(key, index);
                index
            }
        };
        self.global_counts[index] += 1;
        Value::Global(index)
    }

    fn global_of(&self, value: &Value) -> Option<(&str, &str)> {
        match value {
            Value::Global(index) => self
                .globals
                .get(*index)
                .map(|(m, n)| (m.as_str(), n.as_str())),
            _ => None,
        }
    }

    /// A copy of a tuple's or list's items, charged to the work budget
    /// (REDUCE copies its argument tuple: without the charge, a memoized
    /// million-item tuple REDUCEd a million times would run for hours).
    fn tuple_items(&mut self, value: &Value, offset: u64) -> Result<Option<Vec<Value>>> {
        let items = match value {
            Value::Object(id) => match self.objects.get(*id) {
                Some(Object::Tuple(items)) | Some(Object::List(items)) => items,
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        let size = values_size(items);
        let items = items.clone();
        self.charge(size, offset)?;
        Ok(Some(items))
    }

    fn as_u64_list(&mut self, value: &Value, offset: u64) -> Result<Option<Vec<u64>>> {
        Ok(self.tuple_items(value, offset)?.and_then(|items| {
            items
                .iter()
                .map(|item| match item {
                    Value::Int(i) if *i >= 0 => Some(*i as u64),
                    _ => None,
                })
                .collect()
        }))
    }

    /// Interpret a persistent id. Storage ids (zip and legacy formats) become
    /// `Object::Storage`; anything else is kept as `Object::Persistent`.
    fn persistent(&mut self, pid: Value, offset: u64) -> Result<Value> {
        if let Some(items) = self.tuple_items(&pid, offset)? {
            if items.first() == Some(&Value::Str("storage".into())) && items.len() >= 5 {
                let storage_type = match &items[1] {
                    global @ Value::Global(_) => self
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
                        let view = self.tuple_items(value, offset)?.unwrap_or_default();
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
                return self.alloc(
                    Object::Storage(StorageRef {
                        storage_type,
                        key,
                        location,
                        numel,
                        view,
                    }),
                    offset,
                );
            }
        }
        self.alloc(Object::Persistent(pid), offset)
    }

    fn storage_of(&mut self, value: &Value, offset: u64) -> Result<Option<StorageRef>> {
        let storage = match value {
            Value::Object(id) => match self.objects.get(*id) {
                Some(Object::Storage(storage)) => storage.clone(),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        self.charge(storage_heap(&storage), offset)?;
        Ok(Some(storage))
    }

    fn tensor(
        &mut self,
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
            Some(v) => self.as_u64_list(v, offset)?,
            None => None,
        }
        .ok_or_else(|| bad("tensor with an invalid size", offset))?;
        let stride = match rest.get(2) {
            Some(v) => self.as_u64_list(v, offset)?,
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
        let storage = self.storage_of(storage, offset)?.ok_or_else(|| {
            bad(
                "tensor rebuilt from something that is not a storage",
                offset,
            )
        })?;
        self.alloc(
            Object::Tensor(TensorRef {
                storage: Some(storage),
                dtype_override: None,
                storage_offset,
                size,
                stride,
                quantized,
            }),
            offset,
        )
    }

    /// REDUCE and NEWOBJ: evaluate the callables checkpoints are made of by
    /// meaning, record everything else as a call.
    fn call(&mut self, func: Value, args: Value, offset: u64) -> Result<Value> {
        let name = self
            .global_of(&func)
            .map(|(m, n)| format!("{m}.{n}"))
            .unwrap_or_default();
        let items = self.tuple_items(&args, offset)?.unwrap_or_default();
        match name.as_str() {
            "collections.OrderedDict" | "builtins.dict" | "__builtin__.dict"
                if items.is_empty() =>
            {
                self.alloc(
                    Object::Dict {
                        entries: Vec::new(),
                        state: None,
                    },
                    offset,
                )
            }
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let storage = items.first().cloned().unwrap_or(Value::None);
                self.tensor(&storage, items.get(1..).unwrap_or(&[]), false, offset)
            }
            "torch._utils._rebuild_tensor_v3" => {
                // (storage, offset, size, stride, requires_grad, hooks, dtype):
                // an untyped storage whose dtype is given as `torch.<dtype>`.
                let storage = items.first().cloned().unwrap_or(Value::None);
                let dtype = items
                    .get(6)
                    .and_then(|v| self.global_of(v))
                    .map(|(_, n)| n.to_string());
                let value = self.tensor(&storage, items.get(1..).unwrap_or(&[]), false, offset)?;
                if let Value::Object(id) = &value {
                    if let Some(Object::Tensor(tensor)) = self.objects.get_mut(*id) {
                        tensor.dtype_override = dtype;
                    }
                }
                Ok(value)
            }
            "torch._utils._rebuild_qtensor" => {
                let storage = items.first().cloned().unwrap_or(Value::None);
                self.tensor(&storage, items.get(1..).unwrap_or(&[]), true, offset)
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
                    .and_then(|v| self.global_of(v))
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_default();
                let size = match items.get(1) {
                    Some(v) => self.as_u64_list(v, offset)?,
                    None => None,
                }
                .ok_or_else(|| bad("meta tensor with an invalid size", offset))?;
                let stride = match items.get(2) {
                    Some(v) => self.as_u64_list(v, offset)?,
                    None => None,
                }
                .unwrap_or_default();
                self.alloc(
                    Object::Tensor(TensorRef {
                        storage: None,
                        dtype_override: Some(dtype),
                        storage_offset: 0,
                        size,
                        stride,
                        quantized: false,
                    }),
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
                    self.global_of(&inner_func),
                    Some(("torch._tensor", "_rebuild_from_type_v2"))
                ) {
                    return Err(bad("_rebuild_from_type_v2 nested in itself", offset));
                }
                self.call(inner_func, inner_args, offset)
            }
            "_codecs.encode" => match items.first() {
                // Protocol 2 pickles bytes as _codecs.encode(text, "latin1").
                Some(Value::Str(text)) => {
                    // A new copy each call: charged, so one long memoized
                    // string encoded over and over cannot run away.
                    let text = text.clone();
                    self.charge(text.len() as u64, offset)?;
                    Ok(Value::Bytes(text.chars().map(|c| c as u32 as u8).collect()))
                }
                _ => self.alloc(
                    Object::Call {
                        func,
                        args,
                        state: None,
                        items: Vec::new(),
                    },
                    offset,
                ),
            },
            "torch.Size" | "builtins.tuple" => match items.first() {
                Some(inner) => Ok(inner.clone()),
                None => self.alloc(Object::Tuple(Vec::new()), offset),
            },
            "builtins.set" | "builtins.frozenset" => {
                let members = match items.first() {
                    Some(v) => self.tuple_items(v, offset)?,
                    None => None,
                }
                .unwrap_or_default();
                self.alloc(Object::Set(members), offset)
            }
            _ => self.alloc(
                Object::Call {
                    func,
                    args,
                    state: None,
                    items: Vec::new(),
                },
                offset,
            ),
        }
    }

    fn set_items(&mut self, target: &Value, pairs: Vec<Value>, offset: u64) -> Result<()> {
        if !pairs.len().is_multiple_of(2) {
            return Err(bad("SETITEMS with an odd number of items", offset));
        }
        let id = match target {
            Value::Object(id) => *id,
            _ => return Err(bad("SETITEM on something that is not a dict", offset)),
        };
        // Index entries cost about as much as the entries themselves.
        self.charge(pairs.len() as u64 / 2 * DICT_ENTRY_COST * 2, offset)?;
        let mut iterator = pairs.into_iter();
        let object = self
            .objects
            .get_mut(id)
            .ok_or_else(|| bad("dangling object", offset))?;
        match object {
            Object::Dict { entries, .. } => {
                while let (Some(key), Some(value)) = (iterator.next(), iterator.next()) {
                    // A repeated key replaces the value in place, as in Python.
                    let Some(hash) = key_hash(&key) else {
                        entries.push((key, value));
                        continue;
                    };
                    let slots = self.dict_index.entry((id, hash)).or_default();
                    let existing = slots
                        .iter()
                        .find(|&&slot| entries.get(slot).is_some_and(|(k, _)| *k == key));
                    match existing.and_then(|&slot| entries.get_mut(slot)) {
                        Some(entry) => entry.1 = value,
                        None => {
                            slots.push(entries.len());
                            entries.push((key, value));
                        }
                    }
                }
                Ok(())
            }
            Object::Call { items, .. } => {
                items.extend(iterator);
                Ok(())
            }
            _ => Err(bad("SETITEM on something that is not a dict", offset)),
        }
    }

    fn append_items(&mut self, target: &Value, values: Vec<Value>, offset: u64) -> Result<()> {
        let id = match target {
            Value::Object(id) => *id,
            _ => return Err(bad("APPEND on something that is not a list", offset)),
        };
        match self.objects.get_mut(id) {
            Some(Object::List(items))
            | Some(Object::Set(items))
            | Some(Object::Call { items, .. }) => {
                items.extend(values);
                Ok(())
            }
            _ => Err(bad("APPEND on something that is not a list", offset)),
        }
    }

    fn build(&mut self, target: &Value, state: Value, offset: u64) -> Result<()> {
        let id = match target {
            Value::Object(id) => *id,
            // BUILD on a global or scalar has no effect we need to model.
            _ => return Ok(()),
        };
        match self.objects.get_mut(id) {
            Some(Object::Dict { state: slot, .. }) | Some(Object::Call { state: slot, .. }) => {
                *slot = Some(state);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(bad("dangling object", offset)),
        }
    }
}

fn read_line(cursor: &mut Cursor) -> Result<String> {
    let start = cursor.position();
    let mut bytes = Vec::new();
    loop {
        let byte = cursor.u8()?;
        if byte == b'\n' {
            break;
        }
        bytes.push(byte);
        if bytes.len() as u64 > MAX_STRING {
            return Err(err(ErrorKind::LimitExceeded, "pickle text line too long").at(start));
        }
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    String::from_utf8(bytes).map_err(|_| bad("pickle text line is not UTF-8", start))
}

fn take_len(cursor: &mut Cursor, len: u64) -> Result<Vec<u8>> {
    // A length past the end is a truncated (or lying) file; only a length
    // the file could hold is judged against the cap.
    if len > cursor.remaining() {
        return Err(err(
            ErrorKind::Truncated,
            format!("pickle value of {len} bytes runs past the end of the data"),
        )
        .at(cursor.position()));
    }
    if len > MAX_STRING {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!("pickle value of {len} bytes exceeds the limit"),
        )
        .at(cursor.position()));
    }
    cursor.take(len)
}

fn utf8(bytes: Vec<u8>, offset: u64) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| bad("pickle string is not valid UTF-8", offset))
}

fn decode_long(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut array = if negative { [0xffu8; 8] } else { [0u8; 8] };
        array[..bytes.len()].copy_from_slice(bytes);
        return Value::Int(i64::from_le_bytes(array));
    }
    Value::BigInt(format!("<{}-byte integer>", bytes.len()))
}

/// Python string-literal unescaping for protocol 0 `STRING` (the common
/// escapes; anything exotic is kept verbatim).
fn unquote(text: &str) -> String {
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
        .unwrap_or(text);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(byte) => out.push(byte as char),
                    Err(_) => out.push_str(&hex),
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Run one pickle from the cursor's position to its STOP, within
/// `MAX_WORK`.
pub fn interpret(cursor: &mut Cursor) -> Result<Pickle> {
    let mut budget = MAX_WORK;
    interpret_within(cursor, &mut budget)
}

/// Run one pickle drawing on `budget`, the work left for the pickles of one
/// file (a legacy file holds five, a tar file one per record): what it
/// charges is taken off, so all of them together stay within it.
pub fn interpret_within(cursor: &mut Cursor, budget: &mut u64) -> Result<Pickle> {
    let mut machine = Machine {
        stack: Vec::new(),
        work: 0,
        max_work: *budget,
        dict_index: HashMap::new(),
        memo: HashMap::new(),
        objects: Vec::new(),
        globals: Vec::new(),
        global_index: HashMap::new(),
        global_counts: Vec::new(),
    };
    let name = cursor.source_name().to_string();
    let result = run(&mut machine, cursor);
    *budget = budget.saturating_sub(machine.work);
    result.map_err(|e| e.in_file(&name))?;
    let root = machine.pop(cursor.position())?;
    Ok(Pickle {
        root,
        objects: machine.objects,
        globals: machine.globals,
        global_counts: machine.global_counts,
        end: cursor.position(),
        work: machine.work,
    })
}

fn run(m: &mut Machine, cursor: &mut Cursor) -> Result<()> {
    loop {
        let offset = cursor.position();
        let opcode = cursor.u8()?;
        match opcode {
            b'.' => return Ok(()),
            0x80 => {
                let protocol = cursor.u8()?;
                if protocol > 5 {
                    return Err(bad(
                        format!("unsupported pickle protocol {protocol}"),
                        offset,
                    ));
                }
            }
            0x95 => {
                cursor.u64_le()?; // FRAME: a length hint, no semantics
            }
            b'(' => m.push_mark(offset)?,
            b'0' => {
                m.stack
                    .pop()
                    .ok_or_else(|| bad("POP from an empty stack", offset))?;
            }
            b'1' => {
                m.pop_mark(offset)?;
            }
            b'2' => {
                let value = m.top(offset)?.clone();
                m.push(value, offset)?;
            }
            b'N' => m.push(Value::None, offset)?,
            0x88 => m.push(Value::Bool(true), offset)?,
            0x89 => m.push(Value::Bool(false), offset)?,
            b'I' => {
                let line = read_line(cursor)?;
                let value = match line.as_str() {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    text => Value::Int(
                        text.parse()
                            .map_err(|_| bad(format!("invalid INT {text:?}"), offset))?,
                    ),
                };
                m.push(value, offset)?;
            }
            b'L' => {
                let line = read_line(cursor)?;
                let text = line.trim_end_matches('L');
                let value = text
                    .parse()
                    .map(Value::Int)
                    .unwrap_or_else(|_| Value::BigInt(text.to_string()));
                m.push(value, offset)?;
            }
            b'J' => {
                let v = cursor.i32_le()?;
                m.push(Value::Int(v as i64), offset)?
            }
            b'K' => {
                let v = cursor.u8()?;
                m.push(Value::Int(v as i64), offset)?
            }
            b'M' => {
                let v = cursor.u16_le()?;
                m.push(Value::Int(v as i64), offset)?
            }
            0x8a => {
                let n = cursor.u8()? as u64;
                let bytes = cursor.take(n)?;
                m.push(decode_long(&bytes), offset)?;
            }
            0x8b => {
                let n = cursor.i32_le()?;
                if n < 0 {
                    return Err(bad("LONG4 with a negative length", offset));
                }
                let bytes = take_len(cursor, n as u64)?;
                m.push(decode_long(&bytes), offset)?;
            }
            b'F' => {
                let line = read_line(cursor)?;
                let v: f64 = line
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("invalid FLOAT {line:?}"), offset))?;
                m.push(Value::Float(v), offset)?;
            }
            b'G' => {
                let v = f64::from_be_bytes(cursor.array()?);
                m.push(Value::Float(v), offset)?;
            }
            b'S' => {
                let line = read_line(cursor)?;
                m.push(Value::Str(unquote(&line).into()), offset)?;
            }
            b'V' => {
                let line = read_line(cursor)?;
                m.push(Value::Str(line.into()), offset)?;
            }
            b'T' => {
                let n = cursor.i32_le()?;
                if n < 0 {
                    return Err(bad("BINSTRING with a negative length", offset));
                }
                let bytes = take_len(cursor, n as u64)?;
                m.push(
                    Value::Str(bytes.iter().map(|b| *b as char).collect::<String>().into()),
                    offset,
                )?;
            }
            b'U' => {
                let n = cursor.u8()? as u64;
                let bytes = cursor.take(n)?;
                m.push(
                    Value::Str(bytes.iter().map(|b| *b as char).collect::<String>().into()),
                    offset,
                )?;
            }
            b'X' => {
                let n = cursor.u32_le()? as u64;
                let bytes = take_len(cursor, n)?;
                m.push(Value::Str(utf8(bytes, offset)?.into()), offset)?;
            }
            0x8c => {
                let n = cursor.u8()? as u64;
                let bytes = cursor.take(n)?;
                m.push(Value::Str(utf8(bytes, offset)?.into()), offset)?;
            }
            0x8d => {
                let n = cursor.u64_le()?;
                let bytes = take_len(cursor, n)?;
                m.push(Value::Str(utf8(bytes, offset)?.into()), offset)?;
            }
            b'B' => {
                let n = cursor.u32_le()? as u64;
                let bytes = take_len(cursor, n)?;
                m.push(Value::Bytes(bytes.into()), offset)?;
            }
            b'C' => {
                let n = cursor.u8()? as u64;
                let bytes = cursor.take(n)?;
                m.push(Value::Bytes(bytes.into()), offset)?;
            }
            0x8e | 0x96 => {
                let n = cursor.u64_le()?;
                let bytes = take_len(cursor, n)?;
                m.push(Value::Bytes(bytes.into()), offset)?;
            }
            0x97 | 0x98 => {
                return Err(bad(
                    "out-of-band pickle buffers are not used by checkpoints",
                    offset,
                ));
            }
            b')' => {
                let v = m.alloc(Object::Tuple(Vec::new()), offset)?;
                m.push(v, offset)?
            }
            b't' => {
                let items = m.pop_mark(offset)?;
                let v = m.alloc(Object::Tuple(items), offset)?;
                m.push(v, offset)?;
            }
            0x85..=0x87 => {
                let n = (opcode - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(m.pop(offset)?);
                }
                items.reverse();
                let v = m.alloc(Object::Tuple(items), offset)?;
                m.push(v, offset)?;
            }
            b']' => {
                let v = m.alloc(Object::List(Vec::new()), offset)?;
                m.push(v, offset)?
            }
            b'l' => {
                let items = m.pop_mark(offset)?;
                let v = m.alloc(Object::List(items), offset)?;
                m.push(v, offset)?;
            }
            b'}' => {
                let v = m.alloc(
                    Object::Dict {
                        entries: Vec::new(),
                        state: None,
                    },
                    offset,
                )?;
                m.push(v, offset)?
            }
            b'd' => {
                let items = m.pop_mark(offset)?;
                let v = m.alloc(
                    Object::Dict {
                        entries: Vec::new(),
                        state: None,
                    },
                    offset,
                )?;
                m.set_items(&v, items, offset)?;
                m.push(v, offset)?;
            }
            0x8f => {
                let v = m.alloc(Object::Set(Vec::new()), offset)?;
                m.push(v, offset)?
            }
            0x91 => {
                let items = m.pop_mark(offset)?;
                let v = m.alloc(Object::Set(items), offset)?;
                m.push(v, offset)?;
            }
            b'a' => {
                let value = m.pop(offset)?;
                let target = m.top(offset)?.clone();
                m.append_items(&target, vec![value], offset)?;
            }
            b'e' | 0x90 => {
                let items = m.pop_mark(offset)?;
                let target = m.top(offset)?.clone();
                m.append_items(&target, items, offset)?;
            }
            b's' => {
                let value = m.pop(offset)?;
                let key = m.pop(offset)?;
                let target = m.top(offset)?.clone();
                m.set_items(&target, vec![key, value], offset)?;
            }
            b'u' => {
                let items = m.pop_mark(offset)?;
                let target = m.top(offset)?.clone();
                m.set_items(&target, items, offset)?;
            }
            b'p' => {
                let line = read_line(cursor)?;
                let index: u64 = line.parse().map_err(|_| bad("invalid PUT index", offset))?;
                let value = m.top(offset)?.clone();
                memo_put(m, index, value, offset)?;
            }
            b'q' => {
                let index = cursor.u8()? as u64;
                let value = m.top(offset)?.clone();
                memo_put(m, index, value, offset)?;
            }
            b'r' => {
                let index = cursor.u32_le()? as u64;
                let value = m.top(offset)?.clone();
                memo_put(m, index, value, offset)?;
            }
            0x94 => {
                let index = m.memo.len() as u64;
                let value = m.top(offset)?.clone();
                memo_put(m, index, value, offset)?;
            }
            b'g' => {
                let line = read_line(cursor)?;
                let index: u64 = line.parse().map_err(|_| bad("invalid GET index", offset))?;
                memo_get(m, index, offset)?;
            }
            b'h' => {
                let index = cursor.u8()? as u64;
                memo_get(m, index, offset)?;
            }
            b'j' => {
                let index = cursor.u32_le()? as u64;
                memo_get(m, index, offset)?;
            }
            b'c' => {
                let module = read_line(cursor)?;
                let name = read_line(cursor)?;
                let v = m.global(module, name);
                m.push(v, offset)?;
            }
            0x93 => {
                let name = m.pop(offset)?;
                let module = m.pop(offset)?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => {
                        let v = m.global(module.to_string(), name.to_string());
                        m.push(v, offset)?;
                    }
                    _ => return Err(bad("STACK_GLOBAL needs two strings", offset)),
                }
            }
            b'i' => {
                let module = read_line(cursor)?;
                let name = read_line(cursor)?;
                let items = m.pop_mark(offset)?;
                let func = m.global(module, name);
                let args = m.alloc(Object::Tuple(items), offset)?;
                let v = m.call(func, args, offset)?;
                m.push(v, offset)?;
            }
            b'o' => {
                let mut items = m.pop_mark(offset)?;
                if items.is_empty() {
                    return Err(bad("OBJ without a class", offset));
                }
                let func = items.remove(0);
                let args = m.alloc(Object::Tuple(items), offset)?;
                let v = m.call(func, args, offset)?;
                m.push(v, offset)?;
            }
            b'R' | 0x81 => {
                let args = m.pop(offset)?;
                let func = m.pop(offset)?;
                let v = m.call(func, args, offset)?;
                m.push(v, offset)?;
            }
            0x92 => {
                let _kwargs = m.pop(offset)?;
                let args = m.pop(offset)?;
                let func = m.pop(offset)?;
                let v = m.call(func, args, offset)?;
                m.push(v, offset)?;
            }
            b'b' => {
                let state = m.pop(offset)?;
                let target = m.top(offset)?.clone();
                m.build(&target, state, offset)?;
            }
            b'P' => {
                let line = read_line(cursor)?;
                let v = m.persistent(Value::Str(line.into()), offset)?;
                m.push(v, offset)?;
            }
            b'Q' => {
                let pid = m.pop(offset)?;
                let v = m.persistent(pid, offset)?;
                m.push(v, offset)?;
            }
            0x82..=0x84 => {
                return Err(bad(
                    "pickle extension registry codes are not supported",
                    offset,
                ));
            }
            other => {
                return Err(err(
                    ErrorKind::UnknownOpcode,
                    format!("unknown pickle opcode 0x{other:02x}"),
                )
                .at(offset));
            }
        }
    }
}

fn memo_put(m: &mut Machine, index: u64, value: Value, offset: u64) -> Result<()> {
    if m.memo.len() >= MAX_OBJECTS && !m.memo.contains_key(&index) {
        return Err(err(ErrorKind::LimitExceeded, "pickle memo exceeds its limit").at(offset));
    }
    m.charge(MEMO_COST + value_heap(&value), offset)?;
    m.memo.insert(index, value);
    Ok(())
}

fn memo_get(m: &mut Machine, index: u64, offset: u64) -> Result<()> {
    let value = m
        .memo
        .get(&index)
        .cloned()
        .ok_or_else(|| bad(format!("memo key {index} was never stored"), offset))?;
    // `push` charges the copy.
    m.push(value, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SliceSource;

    fn run_bytes(bytes: &[u8]) -> Result<Pickle> {
        let source = SliceSource::new("p.pkl", bytes);
        interpret(&mut Cursor::new(&source, 0))
    }

    #[test]
    fn protocol_2_ordered_dict_with_memo() {
        // pickle.dumps(OrderedDict(a=1, b=[1.5]), protocol=2)
        let bytes = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aq\x02K\x01X\x01\x00\x00\x00bq\x03]q\x04G?\xf8\x00\x00\x00\x00\x00\x00au.";
        let pickle = run_bytes(bytes).unwrap();
        match pickle.object(&pickle.root) {
            Some(Object::Dict { entries, .. }) => {
                assert_eq!(entries.len(), 2);
                assert_eq!(entries[0], (Value::Str("a".into()), Value::Int(1)));
            }
            other => panic!("not a dict: {other:?}"),
        }
        assert_eq!(
            pickle.globals,
            vec![("collections".to_string(), "OrderedDict".to_string())]
        );
    }

    #[test]
    fn malformed_pickles_get_clear_errors() {
        let cases: &[(&[u8], ErrorKind)] = &[
            (b"\x80\x02\xff.", ErrorKind::UnknownOpcode),
            (b"\x80\x02h\x05.", ErrorKind::BadPickle),
            (b"\x80\x02X\xff\xff\xff\x7f", ErrorKind::Truncated),
            (b"\x80\x02X\x00\x10\x00\x00abc", ErrorKind::Truncated),
            (b"\x80\x02", ErrorKind::Truncated),
            (b"\x80\x02u.", ErrorKind::BadPickle),
            (b"\x80\x09.", ErrorKind::BadPickle),
        ];
        for (bytes, kind) in cases {
            let error = run_bytes(bytes).err().expect("must fail");
            assert_eq!(error.kind, *kind, "{bytes:?}: {error}");
            assert!(error.offset.is_some());
        }
    }

    #[test]
    fn hostile_stacks_and_dicts_stay_bounded() {
        // A MARK flood counts against the stack cap like any other push.
        let mut marks = b"\x80\x02".to_vec();
        marks.extend(std::iter::repeat_n(b'(', MAX_STACK + 1));
        let error = run_bytes(&marks).err().expect("must fail");
        assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error}");
        // A repeated key replaces its value in place, as in Python, through
        // the key index (200k SETITEMs would take minutes with a scan).
        let mut dict = b"\x80\x02}(".to_vec();
        for i in 0..200_000u32 {
            dict.extend_from_slice(b"J");
            dict.extend_from_slice(&(i % 100_000).to_le_bytes());
            dict.extend_from_slice(b"J");
            dict.extend_from_slice(&i.to_le_bytes());
        }
        dict.extend_from_slice(b"u.");
        let pickle = run_bytes(&dict).unwrap();
        match pickle.object(&pickle.root) {
            Some(Object::Dict { entries, .. }) => {
                assert_eq!(entries.len(), 100_000);
                assert_eq!(entries[7], (Value::Int(7), Value::Int(100_007)));
            }
            other => panic!("not a dict: {other:?}"),
        }
    }

    #[test]
    fn reduce_of_os_system_is_recorded_not_called() {
        // pickle.dumps of an object whose __reduce__ returns (os.system, ("echo",))
        let bytes = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.";
        let pickle = run_bytes(bytes).unwrap();
        assert_eq!(
            pickle.globals[0],
            ("posix".to_string(), "system".to_string())
        );
        assert!(matches!(
            pickle.object(&pickle.root),
            Some(Object::Call { .. })
        ));
    }
}
