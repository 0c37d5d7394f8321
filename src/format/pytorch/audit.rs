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
];

/// Classify a global the way `torch.load(weights_only=True)` would
/// (torch/_weights_only_unpickler.py), plus a list of known-dangerous names.
pub fn classify_global(module: &str, name: &str) -> GlobalVerdict {
    let root_module = module.split('.').next().unwrap_or(module);
    if DANGEROUS_MODULES.contains(&root_module) {
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
