//! A symbolic pickle interpreter for protocols 0 to 5, as PyTorch
//! checkpoints use it. It builds the object graph a pickle describes without
//! importing or calling anything, and records every global for the audit
//! (`../audit.rs`) of what `torch.load(weights_only=True)` would refuse.
//!
//! Three parts, with the arrows pointing one way: `vm.rs` is the machine
//! (values, objects, stack, memo, work budget) and knows no library;
//! `opcodes.rs` decodes the opcodes and drives it; `torch.rs` says what
//! torch's globals and persistent ids reduce to (storages, tensors), using
//! the machine's types. This module puts them together: every `Pickle` and
//! `Object` here is one the torch reduction built.

mod cost;
mod joblib;
pub mod opcodes;
pub mod torch;
pub mod vm;

use crate::error::Result;
use crate::source::Cursor;
pub use opcodes::BrokenPickle;
pub use torch::{StorageRef, TensorRef, TorchObject};
pub use vm::{ObjectId, RecordedCall, Value, MAX_OBJECTS, MAX_STACK, MAX_STRING, MAX_WORK};

/// A node of a checkpoint pickle's object graph.
pub type Object = vm::Object<TorchObject>;
/// A checkpoint pickle run to its STOP opcode.
pub type Pickle = vm::Pickle<TorchObject>;

/// Run one pickle from the cursor's position to its STOP, within
/// `MAX_WORK`.
pub fn interpret(cursor: &mut Cursor) -> Result<Pickle> {
    opcodes::interpret(cursor)
}

/// Run one pickle drawing on `budget`, the work left for the pickles of one
/// file (a legacy file holds five, a tar file one per record): what it
/// charges is taken off, so all of them together stay within it.
pub fn interpret_within(cursor: &mut Cursor, budget: &mut u64) -> Result<Pickle> {
    opcodes::interpret_within(cursor, budget)
}

/// Pickles read back to back from one stream at most (a loader that calls
/// `pickle.load` again runs an appended one).
pub const MAX_APPENDED_PICKLES: usize = 16;

/// Every pickle between `start` and `end`, back to back as a loader that
/// calls `pickle.load` again reads them, drawing on `budget`; and, when the
/// stream broke off, how, with the globals named before the break (CPython
/// has imported them by then). With `plain`, read as CPython's own
/// `pickle.load` reads it, which knows nothing of joblib's inline arrays
/// and reads their bytes as opcodes.
pub fn read_stream(
    source: &dyn crate::source::ByteSource,
    start: u64,
    end: u64,
    budget: &mut u64,
    plain: bool,
) -> (Vec<Pickle>, Option<Box<BrokenPickle>>) {
    let mut cursor = Cursor::with_limit(source, start, end);
    let mut pickles = Vec::new();
    while pickles.len() < MAX_APPENDED_PICKLES {
        match opcodes::interpret_reaching_as(&mut cursor, budget, plain) {
            Ok(one) => {
                let next = one.end;
                pickles.push(one);
                if next >= end {
                    break;
                }
                cursor.seek(next);
            }
            Err(broken) => return (pickles, Some(broken)),
        }
    }
    (pickles, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
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
    fn an_object_stays_at_most_five_words() {
        // A state dict makes about eight objects per tensor, and their table
        // is most of the memory an inspect touches (vm.rs boxes the large,
        // rare parts to keep it so).
        assert!(
            std::mem::size_of::<Object>() <= 5 * std::mem::size_of::<u64>(),
            "{} bytes",
            std::mem::size_of::<Object>()
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
    fn marks_and_memo_keys_behave_as_in_cpython() {
        // (pickle bytes after the protocol header, the root it leaves), each
        // checked against CPython's pickle.loads.
        let cases: &[(&[u8], Value)] = &[
            // POP on a MARK removes the mark; POP_MARK drops what is above it.
            (b"(0K\x01.", Value::Int(1)),
            (b"K\x02(K\x01K\x031.", Value::Int(2)),
            // Nested marks: the inner tuple takes only its own items.
            (b"(K\x01(K\x02tt.", Value::Object(1)),
            // Memo keys far apart, out of order, overwritten.
            (
                b"K\x07r\xa0\x86\x01\x000K\x08q\x030j\xa0\x86\x01\x00.",
                Value::Int(7),
            ),
            (b"K\x07q\x000K\x09q\x000h\x00.", Value::Int(9)),
        ];
        for (body, root) in cases {
            let mut bytes = b"\x80\x04".to_vec();
            bytes.extend_from_slice(body);
            let pickle = run_bytes(&bytes).unwrap_or_else(|e| panic!("{body:?}: {e}"));
            assert_eq!(&pickle.root, root, "{body:?}");
        }
        // A value popped past its MARK is an error, as CPython's underflow.
        for body in [&b"(."[..], b"K\x01(00.", b"(K\x01(1t0."] {
            let mut bytes = b"\x80\x04".to_vec();
            bytes.extend_from_slice(body);
            let error = run_bytes(&bytes).err().expect("must fail");
            assert_eq!(error.kind, ErrorKind::BadPickle, "{body:?}: {error}");
        }
    }

    #[test]
    fn a_sparse_memo_key_stays_one_entry_when_the_dense_memo_reaches_it() {
        // LONG_BINPUT 6000 before any other key (far past the dense end, so
        // it goes to the sparse map), then keys 0..7000 in order: key 6000
        // is overwritten, not duplicated, so MEMOIZE stores at 7000 (the
        // memo's length), which CPython does too.
        let mut bytes = b"\x80\x04K\x01r".to_vec();
        bytes.extend_from_slice(&6000u32.to_le_bytes());
        bytes.push(b'0');
        for key in 0..7000u32 {
            bytes.extend_from_slice(b"K\x02r");
            bytes.extend_from_slice(&key.to_le_bytes());
            bytes.push(b'0');
        }
        // MEMOIZE 3, then fetch keys 7000 and 6000 into a tuple.
        bytes.extend_from_slice(b"K\x03\x940(j");
        bytes.extend_from_slice(&7000u32.to_le_bytes());
        bytes.push(b'j');
        bytes.extend_from_slice(&6000u32.to_le_bytes());
        bytes.extend_from_slice(b"t.");
        let pickle = run_bytes(&bytes).unwrap();
        match pickle.object(&pickle.root) {
            Some(Object::Tuple(items)) => assert_eq!(items, &[Value::Int(3), Value::Int(2)]),
            other => panic!("not a tuple: {other:?}"),
        }
        // A lone huge key does not allocate the keys below it (CPython's
        // array memo raises MemoryError here; the audit still reads on).
        let pickle = run_bytes(b"\x80\x04K\x05r\xff\xff\xff\xff0j\xff\xff\xff\xff.").unwrap();
        assert_eq!(pickle.root, Value::Int(5));
        assert!(pickle.work < 1024, "work {}", pickle.work);
    }

    #[test]
    fn names_and_frames_are_read_as_cpython_reads_them() {
        // A GLOBAL line keeps its carriage return, as CPython's does.
        let pickle = run_bytes(b"cos\nsyste\r\n.").unwrap();
        assert_eq!(
            pickle.globals,
            vec![("os".to_string(), "syste\r".to_string())]
        );
        // An opcode across its FRAME's end, or a frame inside a frame, is
        // read one way by CPython's C unpickler and another by its Python
        // one: malformed.
        for bytes in [
            &b"\x80\x05\x95\x04\x00\x00\x00\x00\x00\x00\x00cos\nsystem\n."[..],
            b"\x80\x05\x95\x05\x00\x00\x00\x00\x00\x00\x00N\x95\x01\x00\x00\x00\x00\x00\x00\x00N.",
        ] {
            let error = run_bytes(bytes).err().expect("malformed");
            assert_eq!(error.kind, ErrorKind::BadPickle, "{error}");
            assert!(error.message.contains("frame"), "{error}");
        }
        // A frame read to its end, then the next one: well formed.
        let framed = b"\x80\x05\x95\x02\x00\x00\x00\x00\x00\x00\x00K\x07\x95\x01\x00\x00\x00\x00\x00\x00\x00.";
        assert_eq!(run_bytes(framed).unwrap().root, Value::Int(7));
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
        assert!(matches!(pickle.object(&pickle.root), Some(Object::Call(_))));
    }
}
