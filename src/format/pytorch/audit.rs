//! The pickle audit: every global a file's pickles name, with its verdict
//! (`verdicts.rs`: allowed, harmless but not allowlisted, suspicious,
//! dangerous), the opcodes torch's weights_only unpickler refuses, the calls
//! the pickle would make, the file's severity and what to do about it, so a
//! report can say whether the file loads safely and whether loading it could
//! run code, without anything being imported.

use super::pickle::{Object, Pickle, Value};
pub use super::verdicts::classify_global;
use crate::checkpoint::{GlobalUse, GlobalVerdict, PickleAudit, PickleSeverity};

/// The opcodes torch's weights_only unpickler executes
/// (torch/_weights_only_unpickler.py, `Unpickler.load`, torch 2.15): it
/// raises "Unsupported operand N" on any other, whatever the globals.
/// tests/fixtures/pickle_opcodes holds files torch itself judged.
const WEIGHTS_ONLY_OPCODES: &[u8] = &[
    b'c', 0x81, b'R', b'b', b'a', b'e', b's', b'u', b'(', b't', 0x85, 0x86, 0x87, b'N', 0x89, 0x88,
    b')', b']', b'}', 0x8f, b'J', b'K', b'M', b'G', b'X', b'U', b'Q', b'h', b'j', b'q', b'r', 0x8a,
    0x80, b'.',
];

/// pickletools' name of an opcode.
pub fn opcode_name(opcode: u8) -> &'static str {
    match opcode {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

/// Opcodes of these pickles that torch's weights_only unpickler refuses,
/// as `NAME (0xNN)`, in byte order.
fn unsupported_opcodes(pickles: &[&Pickle]) -> Vec<String> {
    let mut used: Vec<u8> = pickles.iter().flat_map(|p| p.opcodes_used()).collect();
    used.sort_unstable();
    used.dedup();
    used.into_iter()
        .filter(|op| !WEIGHTS_ONLY_OPCODES.contains(op))
        .map(|op| format!("{} (0x{op:02x})", opcode_name(op)))
        .collect()
}

/// Every global the pickles name (merged across the pickles of one file),
/// with its verdict and how often it is used, and the opcodes torch's
/// weights_only unpickler would refuse.
pub fn audit(pickles: &[&Pickle]) -> PickleAudit {
    let mut uses: Vec<GlobalUse> = Vec::new();
    for pickle in pickles {
        for ((module, name), count) in pickle.globals.iter().zip(&pickle.global_counts) {
            if let Some(existing) = uses
                .iter_mut()
                .find(|u| &u.module == module && &u.name == name)
            {
                existing.count += count;
            } else {
                uses.push(GlobalUse {
                    module: module.clone(),
                    name: name.clone(),
                    verdict: classify_global(module, name),
                    count: *count,
                });
            }
        }
    }
    let unsupported_opcodes = unsupported_opcodes(pickles);
    let weights_only_loads =
        uses.iter().all(|u| u.verdict == GlobalVerdict::Allowed) && unsupported_opcodes.is_empty();
    finish(
        uses,
        unsupported_opcodes,
        unsafe_calls(pickles),
        weights_only_loads,
    )
}

/// The audit of these globals: the names that make it unsafe, its
/// severity and its fix.
fn finish(
    globals: Vec<GlobalUse>,
    unsupported_opcodes: Vec<String>,
    calls: Vec<String>,
    weights_only_loads: bool,
) -> PickleAudit {
    let named = |verdict: GlobalVerdict| -> Vec<String> {
        globals
            .iter()
            .filter(|u| u.verdict == verdict)
            .map(|u| format!("{}.{}", u.module, u.name))
            .collect()
    };
    let dangerous = named(GlobalVerdict::Dangerous);
    let suspicious = named(GlobalVerdict::Suspicious);
    let severity = if !dangerous.is_empty() {
        PickleSeverity::Dangerous
    } else if !suspicious.is_empty() {
        PickleSeverity::Suspicious
    } else if !weights_only_loads {
        PickleSeverity::NotAllowlisted
    } else {
        PickleSeverity::Safe
    };
    let mut audit = PickleAudit {
        globals,
        weights_only_loads,
        unsupported_opcodes,
        severity,
        dangerous,
        suspicious,
        calls,
        fix: None,
    };
    audit.fix = audit_fix(&audit);
    audit
}

/// The audit of globals a pickle named before it broke off (cut short or
/// malformed): CPython has imported them by then, and called any whose
/// `REDUCE` came before the break. torch refuses such a file.
pub fn audit_reached(globals: &[(String, String)]) -> PickleAudit {
    let uses = globals
        .iter()
        .map(|(module, name)| GlobalUse {
            module: module.clone(),
            name: name.clone(),
            verdict: classify_global(module, name),
            count: 1,
        })
        .collect();
    finish(uses, Vec::new(), Vec::new(), false)
}

/// Fold the audit of one more file (a shard) into `merged`: the union of
/// their globals, names and opcodes, the worse severity, and the fix for
/// the whole.
pub fn merge_audit(merged: &mut PickleAudit, audit: PickleAudit) {
    merged.weights_only_loads &= audit.weights_only_loads;
    let union = |into: &mut Vec<String>, from: Vec<String>| {
        for item in from {
            if !into.contains(&item) {
                into.push(item);
            }
        }
    };
    union(&mut merged.unsupported_opcodes, audit.unsupported_opcodes);
    union(&mut merged.dangerous, audit.dangerous);
    union(&mut merged.suspicious, audit.suspicious);
    union(&mut merged.calls, audit.calls);
    merged.globals.extend(audit.globals);
    merged.severity = merged.severity.max(audit.severity);
    merged.fix = audit_fix(merged);
}

/// What to do about a file the audit did not find safe: for harmless
/// globals, the `add_safe_globals` line that lets torch's weights_only
/// unpickler load it; for anything that could run code, not to load it.
fn audit_fix(audit: &PickleAudit) -> Option<String> {
    match audit.severity {
        PickleSeverity::Safe => None,
        PickleSeverity::Suspicious | PickleSeverity::Dangerous => Some(
            "do not load it (torch.load with weights_only=False, pickle.load or joblib.load would import and call what it names); if it is a checkpoint, `ckptcheck convert` writes its tensors as safetensors without running the pickle"
                .to_string(),
        ),
        PickleSeverity::NotAllowlisted => {
            let harmless: Vec<&GlobalUse> = audit
                .globals
                .iter()
                .filter(|g| g.verdict == GlobalVerdict::NotAllowlisted)
                .collect();
            let mut steps = Vec::new();
            if !harmless.is_empty() {
                let imports: Vec<String> = harmless
                    .iter()
                    .map(|g| format!("from {} import {}", g.module, g.name))
                    .collect();
                let names: Vec<&str> = harmless.iter().map(|g| g.name.as_str()).collect();
                steps.push(format!(
                    "{}; torch.serialization.add_safe_globals([{}]) before torch.load (these globals run no code of the file's choosing)",
                    imports.join("; "),
                    names.join(", ")
                ));
            }
            if !audit.unsupported_opcodes.is_empty() {
                steps.push("save it again with torch.save's default pickle protocol (torch's weights_only unpickler does not execute protocol 4 and 5 opcodes), or `ckptcheck convert` it to safetensors".to_string());
            }
            Some(steps.join("; and "))
        }
    }
}

/// Calls listed at most, and characters of one argument shown.
const MAX_CALLS: usize = 32;
const MAX_ARGUMENT_CHARS: usize = 200;

/// Depth to which nested tuples and calls are written out.
const MAX_LITERAL_DEPTH: usize = 4;

/// A pickled value as Python would write it, when it is a literal (`'id'`,
/// `3`, `None`, a tuple of literals), a global (`posix.system`) or a call
/// of those (`builtins.__import__('os')`); `…` for anything else.
fn literal(pickle: &Pickle, value: &Value, depth: usize) -> String {
    match value {
        Value::None => "None".to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::BigInt(text) => text.clone(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(text) => {
            let shown: String = text.chars().take(MAX_ARGUMENT_CHARS).collect();
            let more = if text.chars().count() > MAX_ARGUMENT_CHARS {
                "…"
            } else {
                ""
            };
            format!("{}{more}", python_str(&shown))
        }
        Value::Bytes(bytes) => format!("b<{} bytes>", bytes.len()),
        Value::Global(_) => pickle
            .global_name(value)
            .map(|(m, n)| format!("{m}.{n}"))
            .unwrap_or_else(|| "…".to_string()),
        Value::Object(_) if depth < MAX_LITERAL_DEPTH => match pickle.object(value) {
            Some(Object::Call(call)) => call_text(pickle, &call.func, &call.args, depth + 1),
            Some(Object::Tuple(items)) => {
                let inner: Vec<String> = items
                    .iter()
                    .take(8)
                    .map(|v| literal(pickle, v, depth + 1))
                    .collect();
                if items.len() == 1 {
                    format!("({},)", inner[0])
                } else {
                    format!("({})", inner.join(", "))
                }
            }
            _ => "…".to_string(),
        },
        Value::Object(_) => "…".to_string(),
    }
}

/// A string as Python's `repr` writes it: single quotes unless it holds
/// one and no double quote, control characters escaped.
fn python_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Every call of a dangerous or suspicious global the pickles record, as
/// Python would write it.
fn unsafe_calls(pickles: &[&Pickle]) -> Vec<String> {
    let mut calls = Vec::new();
    // Nested pickles (joblib object arrays) after their parents.
    let mut all: Vec<&Pickle> = pickles.to_vec();
    let mut next = 0;
    while next < all.len() {
        let nested: Vec<&Pickle> = all[next].nested.iter().collect();
        all.extend(nested);
        next += 1;
    }
    for pickle in all {
        // A call that is the callee or an argument of another call is
        // written inside that one: `builtins.getattr(builtins.__import__(
        // 'os'), 'system')('id')` is one chain, listed once.
        let mut inner = vec![false; pickle.objects.len()];
        for object in &pickle.objects {
            let Object::Call(call) = object else {
                continue;
            };
            let mut mark = |value: &Value| {
                if let Value::Object(id) = value {
                    if matches!(pickle.objects.get(*id), Some(Object::Call(_))) {
                        inner[*id] = true;
                    }
                }
            };
            mark(&call.func);
            if let Some(Object::Tuple(items)) = pickle.object(&call.args) {
                items.iter().for_each(&mut mark);
            }
        }
        for (id, object) in pickle.objects.iter().enumerate() {
            let Object::Call(recorded) = object else {
                continue;
            };
            if inner[id] || !reaches_unsafe(pickle, &recorded.func, 0) {
                continue;
            }
            let call = call_text(pickle, &recorded.func, &recorded.args, 1);
            if !calls.contains(&call) {
                calls.push(call);
            }
            if calls.len() >= MAX_CALLS {
                return calls;
            }
        }
    }
    calls
}

/// A call as Python writes it: the callee, then the arguments.
fn call_text(pickle: &Pickle, func: &Value, args: &Value, depth: usize) -> String {
    let arguments = match pickle.object(args) {
        Some(Object::Tuple(items)) => items
            .iter()
            .take(8)
            .map(|v| literal(pickle, v, depth))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "…".to_string(),
    };
    format!("{}({arguments})", literal(pickle, func, depth))
}

/// Whether a callee is, or is the result of calling, a dangerous or
/// suspicious global (a chain such as `getattr(...)(...)`).
fn reaches_unsafe(pickle: &Pickle, func: &Value, depth: usize) -> bool {
    if let Some((module, name)) = pickle.global_name(func) {
        return matches!(
            classify_global(module, name),
            GlobalVerdict::Dangerous | GlobalVerdict::Suspicious
        );
    }
    match pickle.object(func) {
        Some(Object::Call(call)) if depth < MAX_LITERAL_DEPTH => {
            reaches_unsafe(pickle, &call.func, depth + 1)
        }
        _ => false,
    }
}

/// Why `torch.load(weights_only=True)` refuses a file that is not
/// dangerous: the globals off its allowlist and the opcodes it does not
/// execute, in a few words (the CLI's line, the writer's note).
pub fn weights_only_refusal(audit: &PickleAudit) -> Option<String> {
    if audit.weights_only_loads {
        return None;
    }
    let globals: Vec<String> = audit
        .globals
        .iter()
        .filter(|g| g.verdict != GlobalVerdict::Allowed)
        .map(|g| format!("{}.{}", g.module, g.name))
        .collect();
    let mut reasons = Vec::new();
    if !globals.is_empty() {
        reasons.push(format!("globals {}", globals.join(", ")));
    }
    if !audit.unsupported_opcodes.is_empty() {
        reasons.push(format!("opcodes {}", audit.unsupported_opcodes.join(", ")));
    }
    Some(reasons.join("; "))
}

/// When a pickle needs code to load (globals off torch's allowlist, none of
/// them dangerous): which modules it needs, that `torch.load` refuses it by
/// default, and the fix. Dangerous files get the unsafe verdict instead,
/// never advice to allow their globals.
pub fn needs_code_note(audit: &PickleAudit) -> Option<String> {
    if audit.weights_only_loads || !audit.dangerous.is_empty() {
        return None;
    }
    let opcodes = (!audit.unsupported_opcodes.is_empty()).then(|| format!(
        "the pickle uses opcodes torch's weights_only unpickler does not execute: {} (pickle protocol 4 and 5 write them: torch.save(..., pickle_protocol=4)); torch.load(weights_only=True), the default since torch 2.6, refuses it with \"Unsupported operand\". For a file you trust: torch.load(f, weights_only=False), then torch.save it again with the default protocol; to share the weights, `ckptcheck convert` writes them as safetensors without running the pickle",
        audit.unsupported_opcodes.join(", ")
    ));
    if audit
        .globals
        .iter()
        .all(|g| g.verdict == GlobalVerdict::Allowed)
    {
        return opcodes;
    }
    let needed: Vec<&GlobalUse> = audit
        .globals
        .iter()
        .filter(|g| {
            matches!(
                g.verdict,
                GlobalVerdict::NotAllowlisted | GlobalVerdict::Suspicious
            )
        })
        .collect();
    let mut packages: Vec<&str> = needed
        .iter()
        .map(|g| g.module.split('.').next().unwrap_or(&g.module))
        .collect();
    packages.dedup();
    let names: Vec<String> = needed
        .iter()
        .map(|g| format!("{}.{}", g.module, g.name))
        .collect();
    let imports: Vec<String> = needed
        .iter()
        .take(8)
        .map(|g| format!("from {} import {}", g.module, g.name))
        .collect();
    let classes: Vec<&str> = needed.iter().take(8).map(|g| g.name.as_str()).collect();
    Some(format!(
        "the pickle needs code to load: {} (module{} `{}`); torch.load(weights_only=True), the default since torch 2.6, refuses it. For a file you trust: `{}; torch.serialization.add_safe_globals([{}])` before torch.load, or torch.load(f, weights_only=False) with `{}` importable; to share weights, save model.state_dict() instead",
        names.join(", "),
        if packages.len() == 1 { "" } else { "s" },
        packages.join("`, `"),
        imports.join("; "),
        classes.join(", "),
        packages.join("`, `"),
    ))
    .map(|note| match opcodes {
        Some(opcodes) => format!("{note}. Also, {opcodes}"),
        None => note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_chain_is_written_as_one_python_expression() {
        // getattr(__import__('os'), 'system')('id'), protocol 0.
        let bytes =
            b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'id'\ntR.";
        let source = crate::source::SliceSource::new("chain.pkl", bytes);
        let pickle = super::super::pickle::interpret(&mut crate::source::Cursor::new(&source, 0))
            .expect("pickle");
        let audit = audit(&[&pickle]);
        assert_eq!(
            audit.calls,
            vec!["builtins.getattr(builtins.__import__('os'), 'system')('id')"]
        );
        assert_eq!(audit.severity, PickleSeverity::Dangerous);
    }

    #[test]
    fn strings_are_written_as_python_writes_them() {
        let cases = [
            ("id", "'id'"),
            ("it's", "\"it's\""),
            ("a'b\"c", "'a\\'b\"c'"),
            ("x\ny\\", "'x\\ny\\\\'"),
            ("\u{7}", "'\\x07'"),
        ];
        for (text, repr) in cases {
            assert_eq!(python_str(text), repr, "{text:?}");
        }
    }

    #[test]
    fn gadgets_from_the_scanners_suites_are_dangerous() {
        // (module, name) pairs from picklescan, modelscan and fickling.
        let dangerous = [
            ("torch.utils.collect_env", "run"),
            ("torch._inductor.codecache", "compile_file"),
            ("functools", "partial"),
            ("torch.serialization", "load"),
            ("pydoc", "pipepager"),
            ("bdb", "Bdb"),
            ("idlelib.pyshell", "ModifiedInterpreter"),
            ("doctest", "debug_script"),
            ("_io", "FileIO"),
            ("logging", "FileHandler"),
            ("types", "CodeType"),
            ("operator", "methodcaller"),
            ("pkgutil", "resolve_name"),
            ("uuid", "_get_command_stdout"),
            ("imaplib", "IMAP4_stream"),
            ("cloudpickle.cloudpickle", "_make_function"),
            ("builtins", "eval.__call__"),
            ("pathlib", "os.system"),
            ("__builtin__", "apply"),
        ];
        for (module, name) in dangerous {
            assert_eq!(
                classify_global(module, name),
                GlobalVerdict::Dangerous,
                "{module}.{name}"
            );
        }
        // What torch's weights_only unpickler allows stays allowed.
        for (module, name) in [
            ("collections", "OrderedDict"),
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch", "FloatStorage"),
            ("torch.serialization", "_get_layout"),
        ] {
            assert_eq!(
                classify_global(module, name),
                GlobalVerdict::Allowed,
                "{module}.{name}"
            );
        }
        // Classes that need code but run none are not called dangerous.
        assert_eq!(
            classify_global("argparse", "Namespace"),
            GlobalVerdict::NotAllowlisted
        );
        // Anything else is unsafe by default: importing its module and
        // calling it can run code.
        for (module, name) in [
            ("torch.jitter", "x"),
            ("mylib.client", "Session"),
            ("__main__", "Config"),
        ] {
            assert_eq!(
                classify_global(module, name),
                GlobalVerdict::Suspicious,
                "{module}.{name}"
            );
        }
    }
}
