//! The pickle opcode loop: reads protocols 0 to 5 from a cursor, one opcode
//! at a time, and drives the machine in `vm.rs`; also the text and length
//! readers the opcodes need. Every length is checked against the bytes that
//! remain before anything is read or allocated, and nothing recurses on file
//! data. Opcode reference: CPython `Lib/pickletools.py`.

use super::joblib;
use super::vm::{bad, Machine, Object, Pickle, Reduce, Value, MAX_STRING, MAX_WORK};
use crate::error::{err, Error, ErrorKind, Result};
use crate::source::Cursor;
use std::rc::Rc;

fn read_line(cursor: &mut Cursor) -> Result<String> {
    let mut line = read_name_line(cursor)?;
    if line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

/// A GLOBAL or INST name line as CPython reads it: up to the newline, a
/// carriage return kept (`os\nsystem\r\n` names `system\r`, not `system`).
fn read_name_line(cursor: &mut Cursor) -> Result<String> {
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
    String::from_utf8(bytes).map_err(|_| bad("pickle text line is not UTF-8", start))
}

fn take_len<'c>(cursor: &'c mut Cursor, len: u64) -> Result<&'c [u8]> {
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
    cursor.take_slice(len)
}

/// Skip `len` bytes of the stream (joblib's inline array data: never
/// copied, so not capped like a value, only checked against what remains).
fn take_len_unbounded(cursor: &mut Cursor, len: u64) -> Result<()> {
    if len > cursor.remaining() {
        return Err(err(
            ErrorKind::Truncated,
            format!("joblib array of {len} bytes runs past the end of the data"),
        )
        .at(cursor.position()));
    }
    cursor.seek(cursor.position() + len);
    Ok(())
}

/// A string value straight from the cursor's buffer: one allocation, the
/// shared `Rc<str>` itself.
fn utf8(bytes: &[u8], offset: u64) -> Result<Value> {
    std::str::from_utf8(bytes)
        .map(|text| Value::Str(Rc::from(text)))
        .map_err(|_| bad("pickle string is not valid UTF-8", offset))
}

/// Python 2 `str` bytes read as Latin-1 (each byte one code point).
fn latin1(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) if bytes.is_ascii() => Value::Str(Rc::from(text)),
        _ => Value::Str(bytes.iter().map(|b| *b as char).collect::<String>().into()),
    }
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
/// `MAX_WORK`, with `R` giving meaning to the callables it knows.
pub fn interpret<R: Reduce>(cursor: &mut Cursor) -> Result<Pickle<R>> {
    let mut budget = MAX_WORK;
    interpret_within(cursor, &mut budget)
}

/// Run one pickle drawing on `budget`, the work left for the pickles of one
/// file (a legacy file holds five, a tar file one per record): what it
/// charges is taken off, so all of them together stay within it.
pub fn interpret_within<R: Reduce>(cursor: &mut Cursor, budget: &mut u64) -> Result<Pickle<R>> {
    interpret_reaching_as(cursor, budget, false).map_err(|broken| broken.error)
}

/// A pickle that failed, and the globals it named before failing.
#[derive(Debug)]
pub struct BrokenPickle {
    pub error: Error,
    pub reached: Vec<(String, String)>,
}

/// As `interpret_within`, but a pickle that fails also gives the globals it
/// named before it failed: CPython's unpickler runs opcodes as it reads
/// them, so a stream cut short or broken after `GLOBAL os system` and a
/// `REDUCE` has already run them. With `plain`, as CPython's own
/// `pickle.load` reads the stream, which knows nothing of joblib's inline
/// arrays and reads their bytes as opcodes.
pub fn interpret_reaching_as<R: Reduce>(
    cursor: &mut Cursor,
    budget: &mut u64,
    plain: bool,
) -> std::result::Result<Pickle<R>, Box<BrokenPickle>> {
    let mut machine = Machine::new(*budget);
    machine.plain = plain;
    machine.reserve_for(cursor.remaining());
    let name = cursor.source_name().to_string();
    let result = run(&mut machine, cursor);
    *budget = budget.saturating_sub(machine.work());
    if let Err(error) = result {
        return Err(Box::new(BrokenPickle {
            error: error.in_file(&name),
            reached: machine.globals_reached().to_vec(),
        }));
    }
    machine.finish(cursor.position()).map_err(|error| {
        Box::new(BrokenPickle {
            error,
            reached: Vec::new(),
        })
    })
}

fn run<R: Reduce>(m: &mut Machine<R>, cursor: &mut Cursor) -> Result<()> {
    // Where the current FRAME ends, and where the opcode before this one
    // started. An opcode whose bytes cross a frame's end, or a frame opened
    // inside another, is read one way by CPython's C unpickler and another
    // by its Python one (and by fickling): exploits hide a GLOBAL there, so
    // such a stream is malformed, as the Python unpickler says.
    let mut frame_end: Option<u64> = None;
    let mut previous = 0u64;
    loop {
        let offset = cursor.position();
        if let Some(end) = frame_end {
            if offset > end {
                return Err(bad(
                    format!("the opcode at byte {previous} runs past the end of its frame (byte {end}); CPython's C and Python unpicklers read such a stream differently"),
                    previous,
                ));
            }
            if offset == end {
                frame_end = None;
            }
        }
        previous = offset;
        let opcode = cursor.u8()?;
        m.saw(opcode);
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
                let length = cursor.u64_le()?;
                if let Some(end) = frame_end {
                    return Err(bad(
                        format!(
                            "a frame begins at byte {offset} inside the one ending at byte {end}"
                        ),
                        offset,
                    ));
                }
                frame_end = Some(cursor.position().saturating_add(length));
            }
            b'(' => m.push_mark(offset)?,
            b'0' => m.discard_top(offset)?,
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
                let value = decode_long(cursor.take_slice(n)?);
                m.push(value, offset)?;
            }
            0x8b => {
                let n = cursor.i32_le()?;
                if n < 0 {
                    return Err(bad("LONG4 with a negative length", offset));
                }
                let value = decode_long(take_len(cursor, n as u64)?);
                m.push(value, offset)?;
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
                let value = latin1(take_len(cursor, n as u64)?);
                m.push(value, offset)?;
            }
            b'U' => {
                let n = cursor.u8()? as u64;
                let value = latin1(cursor.take_slice(n)?);
                m.push(value, offset)?;
            }
            b'X' => {
                let n = cursor.u32_le()? as u64;
                let value = utf8(take_len(cursor, n)?, offset)?;
                m.push(value, offset)?;
            }
            0x8c => {
                let n = cursor.u8()? as u64;
                let value = utf8(cursor.take_slice(n)?, offset)?;
                m.push(value, offset)?;
            }
            0x8d => {
                let n = cursor.u64_le()?;
                let value = utf8(take_len(cursor, n)?, offset)?;
                m.push(value, offset)?;
            }
            b'B' => {
                let n = cursor.u32_le()? as u64;
                let value = Value::Bytes(Rc::from(take_len(cursor, n)?));
                m.push(value, offset)?;
            }
            b'C' => {
                let n = cursor.u8()? as u64;
                let value = Value::Bytes(Rc::from(cursor.take_slice(n)?));
                m.push(value, offset)?;
            }
            0x8e | 0x96 => {
                let n = cursor.u64_le()?;
                let value = Value::Bytes(Rc::from(take_len(cursor, n)?));
                m.push(value, offset)?;
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
                m.memo_put(index, value, offset)?;
            }
            b'q' => {
                let index = cursor.u8()? as u64;
                let value = m.top(offset)?.clone();
                m.memo_put(index, value, offset)?;
            }
            b'r' => {
                let index = cursor.u32_le()? as u64;
                let value = m.top(offset)?.clone();
                m.memo_put(index, value, offset)?;
            }
            0x94 => {
                let index = m.memo_len();
                let value = m.top(offset)?.clone();
                m.memo_put(index, value, offset)?;
            }
            b'g' => {
                let line = read_line(cursor)?;
                let index: u64 = line.parse().map_err(|_| bad("invalid GET index", offset))?;
                m.memo_get(index, offset)?;
            }
            b'h' => {
                let index = cursor.u8()? as u64;
                m.memo_get(index, offset)?;
            }
            b'j' => {
                let index = cursor.u32_le()? as u64;
                m.memo_get(index, offset)?;
            }
            b'c' => {
                let module = read_name_line(cursor)?;
                let name = read_name_line(cursor)?;
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
                let module = read_name_line(cursor)?;
                let name = read_name_line(cursor)?;
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
                let inline = if m.plain {
                    None
                } else {
                    joblib::inline_after_build(m, &target, &state, offset)?
                };
                m.build(&target, state, offset)?;
                // joblib ends a frame with the BUILD of an array wrapper and
                // writes the array after it, outside any frame; its
                // unpickler reads it from the file there. Inline data inside
                // a frame still runs past the frame's end: malformed.
                if inline.is_some() && frame_end == Some(cursor.position()) {
                    frame_end = None;
                }
                match inline {
                    Some(joblib::Inline::Bytes {
                        count,
                        item,
                        aligned,
                    }) => {
                        let padding = if aligned { cursor.u8()? as u64 } else { 0 };
                        let bytes = count
                            .checked_mul(item)
                            .and_then(|n| n.checked_add(padding))
                            .ok_or_else(|| bad("joblib array size overflows", offset))?;
                        take_len_unbounded(cursor, bytes)?;
                    }
                    Some(joblib::Inline::Pickle) => {
                        let mut nested = m.nested().ok_or_else(|| {
                            err(ErrorKind::LimitExceeded, "pickles nested too deep").at(offset)
                        })?;
                        run(&mut nested, cursor)?;
                        m.absorb(nested, offset)?;
                    }
                    None => {}
                }
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
