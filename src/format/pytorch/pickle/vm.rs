//! The pickle virtual machine: the values and objects a pickle builds, the
//! stack, the memo, the object arena and the work budget, and the meaning of
//! the plain Python callables every pickle may use (dict, set, tuple,
//! `_codecs.encode`). It builds the object graph a pickle describes without
//! importing or calling anything: a GLOBAL is a name, a REDUCE of an unknown
//! global is a recorded call. It knows no library: the callables one kind of
//! file is made of are interpreted by a `Reduce` implementation, which the
//! machine asks first about every call and every persistent id. The opcode
//! loop that drives the machine is in `opcodes.rs`.
//!
//! Untrusted input: the object arena, memo and stack are capped, and every
//! byte the machine allocates or copies (stack entries, objects, memo
//! entries, copies of argument tuples) is charged to a work budget
//! (`MAX_WORK`), so a small pickle that DUPs a long string a million times,
//! or REDUCEs a huge memoized tuple over and over, fails fast instead of
//! exhausting memory or time.
//!
//! Speed: the memo is a vector indexed by memo key (pickles number their
//! memo entries 0, 1, 2, ...), with a hash map only for keys far past the
//! end; marks live on their own stack, so a MARK-delimited run of values is
//! moved off the stack in one piece; hash maps use FxHash. FxHash is not
//! keyed, so a hostile pickle can choose keys that collide. That costs it
//! nothing here: a collision can only make the dict index scan a longer
//! bucket, and every comparison of that scan is charged to the work budget,
//! so the worst case is bounded by `MAX_WORK` exactly as copying is.

use super::cost::*;
use crate::error::{err, Error, ErrorKind, Result};
use rustc_hash::FxHashMap as HashMap;
use std::fmt::Debug;
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

/// What the callables of one kind of pickle mean: the objects they build
/// that plain Python containers cannot describe, and how. The machine asks
/// the reducer first about every call and every persistent id, and does the
/// generic thing when it declines.
pub trait Reduce: Clone + Debug + PartialEq + Sized {
    /// Heap bytes this object owns beyond its arena slot, charged to the
    /// work budget when it is allocated.
    fn heap_size(&self) -> u64;

    /// Evaluate `name(*items)` (`name` is `module.name`, or empty when the
    /// callable is not a global; `items` are already copied and charged)
    /// when it is a callable this reducer knows; `Ok(None)` lets the machine
    /// evaluate or record it.
    fn call(
        machine: &mut Machine<Self>,
        name: &str,
        items: &[Value],
        offset: u64,
    ) -> Result<Option<Value>>;

    /// Interpret a persistent id this reducer knows; `Ok(None)` keeps it as
    /// `Object::Persistent`.
    fn persistent(machine: &mut Machine<Self>, pid: &Value, offset: u64) -> Result<Option<Value>>;
}

/// A node of the object graph; `R` is what the reducer builds (the
/// `Native` variant). Kept to 40 bytes (the rare or large parts are boxed):
/// a state dict makes about eight objects per tensor, and the table of them
/// is most of the memory an `inspect` touches.
#[derive(Debug, Clone, PartialEq)]
pub enum Object<R> {
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict {
        entries: Vec<(Value, Value)>,
        /// The state a BUILD gave it; an OrderedDict saved by
        /// `Module.state_dict()` carries `{"_metadata": ...}` here.
        state: Option<Box<Value>>,
    },
    Set(Vec<Value>),
    /// `func(*args)` that the interpreter did not evaluate.
    Call(Box<RecordedCall>),
    /// A persistent id the reducer did not interpret, and the byte offset
    /// of its opcode.
    Persistent {
        id: Value,
        offset: u64,
    },
    /// An object the reducer built from a callable or persistent id it knows.
    Native(R),
}

/// A call the interpreter recorded instead of evaluating: `func(*args)`,
/// and what BUILD, SETITEMS and APPENDS then gave the object it made.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub func: Value,
    pub args: Value,
    pub state: Option<Value>,
    pub items: Vec<Value>,
}

impl RecordedCall {
    /// An object for `func(*args)`, not yet built on.
    pub fn object<R>(func: Value, args: Value) -> Object<R> {
        Object::Call(Box::new(RecordedCall {
            func,
            args,
            state: None,
            items: Vec::new(),
        }))
    }
}

/// Result of running one pickle to its STOP opcode.
pub struct Pickle<R> {
    pub root: Value,
    pub objects: Vec<Object<R>>,
    /// `(module, name)` pairs, indexed by `Value::Global`.
    pub globals: Vec<(String, String)>,
    /// How often each global was referenced.
    pub global_counts: Vec<u64>,
    /// Offset just past STOP (the next pickle of a legacy file starts here).
    pub end: u64,
    /// Bytes charged against `MAX_WORK` while interpreting it.
    pub work: u64,
    /// Every opcode the stream executed, as a 256-bit set (torch's
    /// weights_only unpickler refuses all but a fixed set of them).
    pub opcodes: [u64; 4],
    /// Pickles nested in this one's stream (joblib's object arrays), whose
    /// globals are also counted in `globals`.
    pub nested: Vec<Pickle<R>>,
}

impl<R> Pickle<R> {
    /// The opcodes this pickle executed, in byte order.
    pub fn opcodes_used(&self) -> Vec<u8> {
        (0..=255u8)
            .filter(|op| self.opcodes[(op / 64) as usize] & (1 << (op % 64)) != 0)
            .collect()
    }
}

impl<R> Pickle<R> {
    pub fn object(&self, value: &Value) -> Option<&Object<R>> {
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

/// The state of one running pickle; `R` gives meaning to the callables it
/// knows.
pub struct Machine<R> {
    stack: Vec<Value>,
    /// Stack heights at which MARKs were pushed, innermost last.
    marks: Vec<usize>,
    /// Bytes charged so far, and the most this pickle may charge (what is
    /// left of its file's `MAX_WORK`).
    work: u64,
    max_work: u64,
    /// Entries of every dict by `(object, hash of key)`, so SETITEM finds a
    /// repeated key without scanning the dict (a scan made building an
    /// n-entry dict cost n^2/2 comparisons).
    dict_index: HashMap<(ObjectId, u64), usize>,
    /// Further entries whose key hashes the same (rare but for hostile
    /// files), so the common case allocates nothing per key.
    dict_collisions: HashMap<(ObjectId, u64), Vec<usize>>,
    /// Memo entries by key: dense for the keys pickles use (0, 1, 2, ...),
    /// a map for keys far past the end.
    memo: Vec<Option<Value>>,
    sparse_memo: HashMap<u64, Value>,
    memo_entries: u64,
    objects: Vec<Object<R>>,
    globals: Vec<(String, String)>,
    /// `module.name` of each global, as reducers are asked about it, and
    /// `name` alone, shared by every value that names it.
    qualified: Vec<Rc<str>>,
    short_names: Vec<Rc<str>>,
    global_index: HashMap<(String, String), usize>,
    global_counts: Vec<u64>,
    opcodes: [u64; 4],
    /// How deep inside other pickles this one is.
    depth: usize,
    /// Read as CPython's plain `pickle.load` does: no joblib inline data
    /// after an array wrapper's BUILD.
    pub(super) plain: bool,
    nested: Vec<Pickle<R>>,
}

/// Pickles nested in pickles (joblib object arrays) at most.
pub const MAX_NESTED_PICKLES: usize = 4;

pub(super) fn bad(message: impl Into<String>, offset: u64) -> Error {
    err(ErrorKind::BadPickle, message).at(offset)
}

impl<R: Reduce> Machine<R> {
    /// A machine that may charge at most `max_work` bytes.
    pub(super) fn new(max_work: u64) -> Self {
        Machine {
            stack: Vec::new(),
            marks: Vec::new(),
            work: 0,
            max_work,
            dict_index: HashMap::default(),
            dict_collisions: HashMap::default(),
            memo: Vec::new(),
            sparse_memo: HashMap::default(),
            memo_entries: 0,
            objects: Vec::new(),
            globals: Vec::new(),
            qualified: Vec::new(),
            short_names: Vec::new(),
            global_index: HashMap::default(),
            global_counts: Vec::new(),
            opcodes: [0; 4],
            depth: 0,
            plain: false,
            nested: Vec::new(),
        }
    }

    /// Room for the objects and memo entries a pickle of `bytes` bytes
    /// makes (torch's state dicts: one of each per ~17 bytes, so one per
    /// 16), so the tables do not grow by copying; capped, since `bytes` is
    /// only what the file declares.
    pub(super) fn reserve_for(&mut self, bytes: u64) {
        let expected = (bytes / 16).min(1 << 17) as usize;
        self.objects.reserve(expected);
        self.memo.reserve(expected);
    }

    /// Note an opcode as executed.
    #[inline]
    pub(super) fn saw(&mut self, opcode: u8) {
        self.opcodes[(opcode / 64) as usize] |= 1 << (opcode % 64);
    }

    /// A machine for a pickle nested in this one's stream (joblib's object
    /// arrays), with the work this one has left; `None` past
    /// `MAX_NESTED_PICKLES` levels.
    pub(super) fn nested(&self) -> Option<Machine<R>> {
        (self.depth < MAX_NESTED_PICKLES).then(|| {
            let mut nested = Machine::new(self.max_work.saturating_sub(self.work));
            nested.depth = self.depth + 1;
            nested
        })
    }

    /// Take in what a nested pickle referenced and cost.
    pub(super) fn absorb(&mut self, nested: Machine<R>, offset: u64) -> Result<()> {
        self.charge(nested.work, offset)?;
        let nested = nested.finish(offset)?;
        for ((module, name), count) in nested
            .globals
            .iter()
            .cloned()
            .zip(nested.global_counts.iter().copied())
        {
            if let Value::Global(index) = self.global(module, name) {
                // `global` counted one use; the nested pickle made `count`.
                self.global_counts[index] += count.saturating_sub(1);
            }
        }
        for (own, theirs) in self.opcodes.iter_mut().zip(nested.opcodes) {
            *own |= theirs;
        }
        self.nested.push(nested);
        Ok(())
    }

    /// Bytes charged so far.
    pub(super) fn work(&self) -> u64 {
        self.work
    }

    /// The pickle built so far, its root popped off the stack; `end` is the
    /// offset just past STOP.
    /// The globals this pickle has named so far: what CPython's unpickler
    /// would already have imported when a stream breaks off here.
    pub(super) fn globals_reached(&self) -> &[(String, String)] {
        &self.globals
    }

    pub(super) fn finish(mut self, end: u64) -> Result<Pickle<R>> {
        let root = self.pop(end)?;
        Ok(Pickle {
            root,
            objects: self.objects,
            globals: self.globals,
            global_counts: self.global_counts,
            end,
            work: self.work,
            opcodes: self.opcodes,
            nested: self.nested,
        })
    }

    /// Charge `bytes` of allocation or copying against `MAX_WORK`.
    #[inline]
    pub fn charge(&mut self, bytes: u64, offset: u64) -> Result<()> {
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

    #[inline]
    pub(super) fn push(&mut self, value: Value, offset: u64) -> Result<()> {
        if self.stack.len() + self.marks.len() >= MAX_STACK {
            return Err(err(ErrorKind::LimitExceeded, "pickle stack exceeds its limit").at(offset));
        }
        self.charge(STACK_COST + value_heap(&value), offset)?;
        self.stack.push(value);
        Ok(())
    }

    pub(super) fn push_mark(&mut self, offset: u64) -> Result<()> {
        if self.stack.len() + self.marks.len() >= MAX_STACK {
            return Err(err(ErrorKind::LimitExceeded, "pickle stack exceeds its limit").at(offset));
        }
        self.charge(STACK_COST, offset)?;
        self.marks.push(self.stack.len());
        Ok(())
    }

    /// Height of the stack above which values may be popped: a MARK on top
    /// stops a POP the way a `StackItem::Mark` did.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// Put an object in the arena, charged to the work budget.
    #[inline]
    pub fn alloc(&mut self, object: Object<R>, offset: u64) -> Result<Value> {
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

    #[inline]
    pub(super) fn pop(&mut self, offset: u64) -> Result<Value> {
        if self.stack.len() == self.floor() && !self.marks.is_empty() {
            return Err(bad("unexpected MARK on the stack", offset));
        }
        self.stack
            .pop()
            .ok_or_else(|| bad("pop from an empty stack", offset))
    }

    #[inline]
    pub(super) fn top(&self, offset: u64) -> Result<&Value> {
        match self.stack.last() {
            Some(value) if self.stack.len() > self.floor() || self.marks.is_empty() => Ok(value),
            _ => Err(bad("expected a value on top of the stack", offset)),
        }
    }

    /// The values above the innermost MARK, in order, and the MARK gone.
    pub(super) fn pop_mark(&mut self, offset: u64) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| bad("no MARK on the stack", offset))?;
        Ok(self.stack.split_off(mark))
    }

    pub(super) fn global(&mut self, module: String, name: String) -> Value {
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
                self.qualified.push(format!("{}.{}", key.0, key.1).into());
                self.short_names.push(key.1.as_str().into());
                self.globals.push(key.clone());
                self.global_counts.push(0);
                self.global_index.insert(key, index);
                index
            }
        };
        self.global_counts[index] += 1;
        Value::Global(index)
    }

    /// The `name` of a global reference, shared.
    pub fn global_short_name(&self, value: &Value) -> Option<Rc<str>> {
        match value {
            Value::Global(index) => self.short_names.get(*index).cloned(),
            _ => None,
        }
    }

    /// The `(module, name)` of a global reference.
    pub fn global_of(&self, value: &Value) -> Option<(&str, &str)> {
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
    pub fn tuple_items(&mut self, value: &Value, offset: u64) -> Result<Option<Vec<Value>>> {
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

    /// A tuple or list of non-negative ints (a shape or stride), copied
    /// and charged like `tuple_items`.
    pub fn as_u64_list(&mut self, value: &Value, offset: u64) -> Result<Option<Vec<u64>>> {
        let items = match self.object(value) {
            Some(Object::Tuple(items)) | Some(Object::List(items)) => items,
            _ => return Ok(None),
        };
        let size = values_size(items);
        let list = items
            .iter()
            .map(|item| match item {
                Value::Int(i) if *i >= 0 => Some(*i as u64),
                _ => None,
            })
            .collect();
        self.charge(size, offset)?;
        Ok(list)
    }

    /// The object a value refers to, if it is one.
    pub fn object(&self, value: &Value) -> Option<&Object<R>> {
        match value {
            Value::Object(id) => self.objects.get(*id),
            _ => None,
        }
    }

    pub fn object_mut(&mut self, value: &Value) -> Option<&mut Object<R>> {
        match value {
            Value::Object(id) => self.objects.get_mut(*id),
            _ => None,
        }
    }

    /// POP: drop whatever is on top, a mark included.
    pub(super) fn discard_top(&mut self, offset: u64) -> Result<()> {
        if !self.marks.is_empty() && self.stack.len() == self.floor() {
            self.marks.pop();
            return Ok(());
        }
        self.stack
            .pop()
            .ok_or_else(|| bad("POP from an empty stack", offset))?;
        Ok(())
    }

    /// Interpret a persistent id: what the reducer makes of it, or else an
    /// `Object::Persistent`.
    pub(super) fn persistent(&mut self, pid: Value, offset: u64) -> Result<Value> {
        if let Some(value) = R::persistent(self, &pid, offset)? {
            return Ok(value);
        }
        self.alloc(Object::Persistent { id: pid, offset }, offset)
    }

    /// REDUCE and NEWOBJ: the reducer evaluates the callables it knows by
    /// meaning, the machine the plain Python ones; everything else is
    /// recorded as a call.
    pub fn call(&mut self, func: Value, args: Value, offset: u64) -> Result<Value> {
        let name = match func {
            Value::Global(index) => self.qualified.get(index).cloned(),
            _ => None,
        }
        .unwrap_or_else(|| Rc::from(""));
        // The reducer reads the argument tuple's items in place: they are
        // moved out for the call and back after it (an argument tuple is
        // immutable, and a reducer that finds it empty meanwhile through
        // some other reference only sees less). The copy a REDUCE of a
        // memoized tuple used to make is still charged, so the budget, and
        // which hostile files exceed it, are as before.
        let items = match self.object_mut(&args) {
            Some(Object::Tuple(items)) | Some(Object::List(items)) => std::mem::take(items),
            _ => Vec::new(),
        };
        self.charge(values_size(&items), offset)?;
        let reduced = R::call(self, &name, &items, offset);
        let items = match self.object_mut(&args) {
            Some(Object::Tuple(slot)) | Some(Object::List(slot)) if slot.is_empty() => {
                *slot = items;
                None
            }
            _ => Some(items),
        };
        if let Some(value) = reduced? {
            return Ok(value);
        }
        // The plain callables below look at the first argument only.
        let (empty, first) = match items {
            Some(items) => (items.is_empty(), items.into_iter().next()),
            None => match self.object(&args) {
                Some(Object::Tuple(items)) | Some(Object::List(items)) => {
                    (items.is_empty(), items.first().cloned())
                }
                _ => (true, None),
            },
        };
        match &*name {
            "collections.OrderedDict" | "builtins.dict" | "__builtin__.dict" if empty => self
                .alloc(
                    Object::Dict {
                        entries: Vec::new(),
                        state: None,
                    },
                    offset,
                ),
            "_codecs.encode" => match &first {
                // Protocol 2 pickles bytes as _codecs.encode(text, "latin1").
                Some(Value::Str(text)) => {
                    // A new copy each call: charged, so one long memoized
                    // string encoded over and over cannot run away.
                    let text = text.clone();
                    self.charge(text.len() as u64, offset)?;
                    Ok(Value::Bytes(text.chars().map(|c| c as u32 as u8).collect()))
                }
                _ => self.alloc(RecordedCall::object(func, args), offset),
            },
            "builtins.tuple" => match first {
                Some(inner) => Ok(inner),
                None => self.alloc(Object::Tuple(Vec::new()), offset),
            },
            "builtins.set" | "builtins.frozenset" => {
                let members = match &first {
                    Some(v) => self.tuple_items(v, offset)?,
                    None => None,
                }
                .unwrap_or_default();
                self.alloc(Object::Set(members), offset)
            }
            _ => self.alloc(RecordedCall::object(func, args), offset),
        }
    }

    pub(super) fn set_items(
        &mut self,
        target: &Value,
        pairs: Vec<Value>,
        offset: u64,
    ) -> Result<()> {
        if !pairs.len().is_multiple_of(2) {
            return Err(bad("SETITEMS with an odd number of items", offset));
        }
        let id = match target {
            Value::Object(id) => *id,
            _ => return Err(bad("SETITEM on something that is not a dict", offset)),
        };
        // Index entries cost about as much as the entries themselves.
        self.charge(pairs.len() as u64 / 2 * DICT_ENTRY_COST * 2, offset)?;
        self.dict_index.reserve(pairs.len() / 2);
        let pairs_len = pairs.len();
        let mut compared = 0u64;
        let mut iterator = pairs.into_iter();
        let object = self
            .objects
            .get_mut(id)
            .ok_or_else(|| bad("dangling object", offset))?;
        match object {
            Object::Dict { entries, .. } => {
                entries.reserve(pairs_len / 2);
                while let (Some(key), Some(value)) = (iterator.next(), iterator.next()) {
                    // A repeated key replaces the value in place, as in Python.
                    let Some(hash) = key_hash(&key) else {
                        entries.push((key, value));
                        continue;
                    };
                    let Some(&first) = self.dict_index.get(&(id, hash)) else {
                        self.dict_index.insert((id, hash), entries.len());
                        entries.push((key, value));
                        continue;
                    };
                    // Keys that collide are compared one by one; the work
                    // budget pays for each comparison.
                    let more = self.dict_collisions.entry((id, hash)).or_default();
                    compared += 1 + more.len() as u64;
                    let existing = std::iter::once(&first)
                        .chain(more.iter())
                        .find(|&&slot| entries.get(slot).is_some_and(|(k, _)| *k == key));
                    match existing.and_then(|&slot| entries.get_mut(slot)) {
                        Some(entry) => entry.1 = value,
                        None => {
                            more.push(entries.len());
                            entries.push((key, value));
                        }
                    }
                }
                self.charge(compared.saturating_mul(COMPARE_COST), offset)
            }
            Object::Call(call) => {
                call.items.extend(iterator);
                Ok(())
            }
            _ => Err(bad("SETITEM on something that is not a dict", offset)),
        }
    }

    pub(super) fn append_items(
        &mut self,
        target: &Value,
        values: Vec<Value>,
        offset: u64,
    ) -> Result<()> {
        let id = match target {
            Value::Object(id) => *id,
            _ => return Err(bad("APPEND on something that is not a list", offset)),
        };
        match self.objects.get_mut(id) {
            Some(Object::List(items)) | Some(Object::Set(items)) => {
                items.extend(values);
                Ok(())
            }
            Some(Object::Call(call)) => {
                call.items.extend(values);
                Ok(())
            }
            _ => Err(bad("APPEND on something that is not a list", offset)),
        }
    }

    pub(super) fn build(&mut self, target: &Value, state: Value, offset: u64) -> Result<()> {
        let id = match target {
            Value::Object(id) => *id,
            // BUILD on a global or scalar has no effect we need to model.
            _ => return Ok(()),
        };
        match self.objects.get_mut(id) {
            Some(Object::Dict { state: slot, .. }) => {
                *slot = Some(Box::new(state));
                Ok(())
            }
            Some(Object::Call(call)) => {
                call.state = Some(state);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(bad("dangling object", offset)),
        }
    }

    /// Entries in the memo (MEMOIZE stores at this index).
    pub(super) fn memo_len(&self) -> u64 {
        self.memo_entries
    }

    /// A key lives in exactly one of the two: the sparse map once it went
    /// there, else the dense vector.
    fn memo_slot(&self, index: u64) -> Option<&Value> {
        match usize::try_from(index).ok().and_then(|i| self.memo.get(i)) {
            Some(Some(value)) => Some(value),
            _ if self.sparse_memo.is_empty() => None,
            _ => self.sparse_memo.get(&index),
        }
    }

    pub(super) fn memo_put(&mut self, index: u64, value: Value, offset: u64) -> Result<()> {
        // The common case: keys stored in order, none far out.
        if index == self.memo.len() as u64
            && self.sparse_memo.is_empty()
            && self.memo_entries < MAX_OBJECTS as u64
        {
            self.charge(MEMO_COST + VALUE_COST + value_heap(&value), offset)?;
            self.memo_entries += 1;
            self.memo.push(Some(value));
            return Ok(());
        }
        let present = self.memo_slot(index).is_some();
        if self.memo_entries >= MAX_OBJECTS as u64 && !present {
            return Err(err(ErrorKind::LimitExceeded, "pickle memo exceeds its limit").at(offset));
        }
        self.charge(MEMO_COST + value_heap(&value), offset)?;
        if !present {
            self.memo_entries += 1;
        }
        let dense_end = self.memo.len() as u64;
        if let Some(slot) = self.sparse_memo.get_mut(&index) {
            *slot = value;
        } else if index < dense_end {
            self.memo[index as usize] = Some(value);
        } else if index <= dense_end + DENSE_MEMO_SLACK {
            // Each slot the vector grows by is charged like an entry.
            self.charge((index + 1 - dense_end) * VALUE_COST, offset)?;
            self.memo.resize(index as usize, None);
            self.memo.push(Some(value));
        } else {
            self.sparse_memo.insert(index, value);
        }
        Ok(())
    }

    pub(super) fn memo_get(&mut self, index: u64, offset: u64) -> Result<()> {
        let value = self
            .memo_slot(index)
            .cloned()
            .ok_or_else(|| bad(format!("memo key {index} was never stored"), offset))?;
        // `push` charges the copy.
        self.push(value, offset)
    }
}
