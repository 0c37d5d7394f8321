//! The pickle audit: every global a checkpoint's pickles name, classified
//! the way `torch.load(weights_only=True)` would treat it (allowed, refused,
//! or known to be dangerous), so a report can say whether the file loads
//! safely without anything being imported. Allowlist:
//! torch/_weights_only_unpickler.py.

use super::pickle::{Object, Pickle, Value};
use super::torch_dtype;
use crate::checkpoint::{GlobalUse, GlobalVerdict, PickleAudit};

/// Modules whose every name can run code or reach the system: a global
/// from one (or a submodule) is dangerous whatever the name.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "sys",
    "subprocess",
    "shutil",
    "socket",
    "pty",
    "runpy",
    "importlib",
    "pickle",
    "_pickle",
    "marshal",
    "ctypes",
    "webbrowser",
    "code",
    "commands",
    "multiprocessing",
    "asyncio",
    "tempfile",
    "signal",
    "requests",
    "urllib",
    "http",
    "ftplib",
    "telnetlib",
    "pdb",
    "timeit",
    "cProfile",
    "profile",
    "trace",
    "venv",
    "ensurepip",
    "pip",
    "platform",
    // Code-execution gadgets from the scanners' suites (picklescan,
    // modelscan, fickling): pagers and debuggers that run commands, file
    // and stream handles, code objects, name resolvers, other picklers.
    "pydoc",
    "bdb",
    "idlelib",
    "doctest",
    "_io",
    "io",
    "logging",
    "pkgutil",
    "imaplib",
    "cloudpickle",
    "dill",
    // joblib: its loaders read other files; its array wrappers (below)
    // are the only names a joblib.dump file needs.
    "joblib",
    "functools",
    "operator",
    "_posixsubprocess",
    "_winapi",
    "smtplib",
    "nntplib",
    "poplib",
    "xmlrpc",
    "zipimport",
];
/// Dotted module prefixes whose names reach code execution or the network
/// (torch's own: `torch.utils.collect_env.run` runs a command,
/// `torch._inductor.codecache.compile_file` a compiler, `torch.hub` downloads
/// and runs code).
const DANGEROUS_MODULE_PREFIXES: &[&str] = &[
    "torch.utils.collect_env",
    "torch._inductor",
    "torch.hub",
    "torch.utils.cpp_extension",
    "torch.jit",
    "numpy.testing",
    "numpy.distutils",
];
/// Single names elsewhere that load or run things.
const DANGEROUS_NAMES: &[(&str, &str)] = &[
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("torch.serialization", "_load"),
    ("uuid", "_get_command_stdout"),
    ("uuid", "_popen"),
    ("numpy", "load"),
    ("numpy", "loadtxt"),
    ("numpy", "fromfile"),
    // types: code objects and functions built from them (SimpleNamespace
    // is not dangerous, and hyper-parameter pickles use it).
    ("types", "CodeType"),
    ("types", "FunctionType"),
    ("types", "LambdaType"),
    ("types", "MethodType"),
    ("types", "ModuleType"),
];
/// Builtins that evaluate code, open files or reach any attribute.
const DANGEROUS_BUILTINS: &[&str] = &[
    "eval",
    "exec",
    "compile",
    "open",
    "__import__",
    "getattr",
    "setattr",
    "delattr",
    "globals",
    "locals",
    "vars",
    "input",
    "breakpoint",
    "memoryview",
    "type",
    "object",
    "exit",
    "quit",
    // Python 2's __builtin__.
    "apply",
    "execfile",
    "reload",
    "file",
];

/// The classes every `joblib.dump` file names for its numpy arrays: plain
/// data holders built with NEWOBJ and BUILD, which run nothing.
const JOBLIB_ARRAY_WRAPPERS: &[(&str, &str)] = &[
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
    ("joblib.numpy_pickle_compat", "ZNDArrayWrapper"),
];

/// Classify a global the way `torch.load(weights_only=True)` would
/// (torch/_weights_only_unpickler.py), plus a list of known-dangerous names.
pub fn classify_global(module: &str, name: &str) -> GlobalVerdict {
    let root_module = module.split('.').next().unwrap_or(module);
    if JOBLIB_ARRAY_WRAPPERS.contains(&(module, name)) {
        return GlobalVerdict::NotAllowlisted;
    }
    if DANGEROUS_MODULES.contains(&root_module) {
        return GlobalVerdict::Dangerous;
    }
    // A dotted name is an attribute chain the unpickler follows with
    // getattr (protocol 4): `pathlib.os.system`, `builtins.eval.__call__`.
    // It can reach anything its module holds, so it fails closed.
    if name.contains('.') {
        return GlobalVerdict::Dangerous;
    }
    let within = |prefix: &str| {
        module == prefix
            || module
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    if DANGEROUS_MODULE_PREFIXES
        .iter()
        .any(|prefix| within(prefix))
        || DANGEROUS_NAMES.contains(&(module, name))
    {
        return GlobalVerdict::Dangerous;
    }
    if (module == "builtins" || module == "__builtin__") && DANGEROUS_BUILTINS.contains(&name) {
        return GlobalVerdict::Dangerous;
    }
    let allowed = match module {
        "collections" => matches!(name, "OrderedDict" | "Counter"),
        "_codecs" => name == "encode",
        "builtins" | "__builtin__" => matches!(name, "bytearray" | "set" | "complex"),
        "torch._utils" => name.starts_with("_rebuild_"),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch.nn.parameter" => name == "Parameter",
        "torch.serialization" => name == "_get_layout",
        "torch.storage" => matches!(name, "TypedStorage" | "UntypedStorage"),
        "torch" => {
            name.ends_with("Storage")
                || name.ends_with("Tensor")
                || matches!(name, "Size" | "device")
                || torch_dtype(name).is_some()
                || name.starts_with("per_tensor_")
                || name.starts_with("per_channel_")
                || name.starts_with("float8_")
                || name.starts_with("uint")
                || name.starts_with("int")
                || name.starts_with("complex")
        }
        "torch.cuda" => name.ends_with("Storage") || name.ends_with("Tensor"),
        _ => false,
    };
    if allowed {
        GlobalVerdict::Allowed
    } else {
        GlobalVerdict::NotAllowlisted
    }
}

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
    let dangerous = uses
        .iter()
        .filter(|u| u.verdict == GlobalVerdict::Dangerous)
        .map(|u| format!("{}.{}", u.module, u.name))
        .collect();
    let calls = dangerous_calls(pickles);
    let unsupported_opcodes = unsupported_opcodes(pickles);
    let weights_only_loads =
        uses.iter().all(|u| u.verdict == GlobalVerdict::Allowed) && unsupported_opcodes.is_empty();
    PickleAudit {
        globals: uses,
        weights_only_loads,
        unsupported_opcodes,
        dangerous,
        calls,
    }
}

/// Calls listed at most, and characters of one argument shown.
const MAX_CALLS: usize = 32;
const MAX_ARGUMENT_CHARS: usize = 200;

/// A pickled value as a Python literal, when it is one (`'id'`, `3`,
/// `None`, a tuple of literals); `…` for anything else.
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
        Value::Object(_) if depth < 2 => match pickle.object(value) {
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

/// Every call of a dangerous global the pickles record, as Python would
/// write it.
fn dangerous_calls(pickles: &[&Pickle]) -> Vec<String> {
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
        for object in &pickle.objects {
            let Object::Call { func, args, .. } = object else {
                continue;
            };
            let Some((module, name)) = pickle.global_name(func) else {
                continue;
            };
            if classify_global(module, name) != GlobalVerdict::Dangerous {
                continue;
            }
            let arguments = match pickle.object(args) {
                Some(Object::Tuple(items)) => items
                    .iter()
                    .take(8)
                    .map(|v| literal(pickle, v, 1))
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "…".to_string(),
            };
            let call = format!("{module}.{name}({arguments})");
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
        .filter(|g| g.verdict == GlobalVerdict::NotAllowlisted)
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
        assert_eq!(
            classify_global("torch.jitter", "x"),
            GlobalVerdict::NotAllowlisted
        );
    }
}
