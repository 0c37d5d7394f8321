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
