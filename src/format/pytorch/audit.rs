//! The pickle audit: every global a checkpoint's pickles name, classified
//! the way `torch.load(weights_only=True)` would treat it (allowed, refused,
//! or known to be dangerous), so a report can say whether the file loads
//! safely without anything being imported. Allowlist:
//! torch/_weights_only_unpickler.py.

use super::pickle::Pickle;
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

/// Classify a global the way `torch.load(weights_only=True)` would
/// (torch/_weights_only_unpickler.py), plus a list of known-dangerous names.
pub fn classify_global(module: &str, name: &str) -> GlobalVerdict {
    let root_module = module.split('.').next().unwrap_or(module);
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

/// Every global the pickles name (merged across the pickles of one file),
/// with its verdict and how often it is used.
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
    let weights_only_loads = uses.iter().all(|u| u.verdict == GlobalVerdict::Allowed);
    PickleAudit {
        globals: uses,
        weights_only_loads,
        dangerous,
    }
}

/// When a pickle needs code to load (globals off torch's allowlist, none of
/// them dangerous): which modules it needs, that `torch.load` refuses it by
/// default, and the fix. Dangerous files get the unsafe verdict instead,
/// never advice to allow their globals.
pub fn needs_code_note(audit: &PickleAudit) -> Option<String> {
    if audit.weights_only_loads || !audit.dangerous.is_empty() {
        return None;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
