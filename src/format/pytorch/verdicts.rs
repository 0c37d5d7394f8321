//! What loading each global would do: allowed by torch's weights_only
//! unpickler, innocuous (refused by it, but importing and calling it runs
//! nothing of the file's choosing), dangerous (known to run code or reach
//! files, processes or the network: the scanners' gadget lists), or
//! suspicious (anything else: a `weights_only=False` load imports its
//! module and calls it, so it is unsafe by default). Allowlist:
//! torch/_weights_only_unpickler.py.

use super::torch_dtype;
use crate::checkpoint::GlobalVerdict;

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
    // More of picklescan's and modelscan's gadgets: network clients, the
    // build and test helpers that spawn processes, eval-based parsers.
    "aiohttp",
    "httplib",
    "ssl",
    "distutils",
    "setuptools",
    "test",
    "lib2to3",
    "_osx_support",
    "_aix_support",
    "_pyrepl",
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
    "numpy.f2py",
    "numpy.ctypeslib",
    "torch.utils.bottleneck",
    "torch.utils.data.datapipes",
    "torch.utils._config_module",
    "torch._dynamo",
    "torch.fx",
    "torch.package",
    "torch.distributed",
    "torch.multiprocessing",
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
    if DANGEROUS_MODULE_PREFIXES
        .iter()
        .any(|prefix| within(module, prefix))
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
    } else if innocuous(module, name) {
        GlobalVerdict::NotAllowlisted
    } else {
        GlobalVerdict::Suspicious
    }
}

/// Names known to run nothing of the caller's choosing when imported and
/// called with any arguments: data holders whose constructor and
/// `__setstate__` only store what they are given (any class or callable
/// they are handed is itself a global, audited on its own). torch's
/// weights_only unpickler still refuses them; a `weights_only=False` load
/// of a file naming only these runs no code of the file's choosing.
/// Everything not here, not allowlisted and not known dangerous is
/// `Suspicious`: the default is unsafe.
const INNOCUOUS: &[(&str, &[&str])] = &[
    (
        "builtins",
        &[
            "set",
            "frozenset",
            "bytearray",
            "complex",
            "slice",
            "range",
            "int",
            "float",
            "bool",
            "str",
            "bytes",
            "dict",
            "list",
            "tuple",
            "object",
            // Pure functions: any callable they are handed is a global of
            // its own (fickling's SAFE_BUILTINS).
            "len",
            "abs",
            "sum",
            "min",
            "max",
            "round",
            "pow",
            "divmod",
            "sorted",
            "reversed",
            "enumerate",
            "zip",
            "map",
            "filter",
            "iter",
            "next",
            "all",
            "any",
            "hash",
            "id",
            "repr",
            "ascii",
            "bin",
            "hex",
            "oct",
            "ord",
            "chr",
            "isinstance",
            "issubclass",
            "callable",
            "format",
        ],
    ),
    // Protocol 0 and 1 object reconstruction: the class it is handed is
    // a separate global.
    (
        "copyreg",
        &["_reconstructor", "__newobj__", "__newobj_ex__"],
    ),
    ("collections", &["defaultdict", "deque"]),
    ("argparse", &["Namespace"]),
    ("types", &["SimpleNamespace"]),
    (
        "datetime",
        &["date", "time", "datetime", "timedelta", "timezone"],
    ),
    ("decimal", &["Decimal"]),
    ("fractions", &["Fraction"]),
    ("uuid", &["UUID"]),
    (
        "pathlib",
        &[
            "PurePath",
            "PurePosixPath",
            "PureWindowsPath",
            "Path",
            "PosixPath",
            "WindowsPath",
        ],
    ),
    ("numpy", &["dtype", "ndarray"]),
    ("numpy.core.multiarray", &["_reconstruct", "scalar"]),
    ("numpy._core.multiarray", &["_reconstruct", "scalar"]),
    (
        "numpy.random._pickle",
        &[
            "__randomstate_ctor",
            "__bit_generator_ctor",
            "__generator_ctor",
        ],
    ),
    ("numpy.random", &["__RandomState_ctor"]),
    ("torch.torch_version", &["TorchVersion"]),
    ("torch._utils", &["_rebuild_parameter_with_state"]),
];

/// Modules whose classes (capitalised names) are plain containers of
/// tensors and numbers: numpy's dtype classes, torch's layers and
/// optimizers (a whole `torch.save(model)` names them).
const INNOCUOUS_CLASS_MODULES: &[&str] = &["numpy.dtypes", "torch.nn.modules", "torch.optim"];

fn innocuous(module: &str, name: &str) -> bool {
    // Feature flags: every name is an inert `_Feature` (or its class).
    if module == "__future__" {
        return true;
    }
    if INNOCUOUS
        .iter()
        .any(|(m, names)| *m == module && names.contains(&name))
    {
        return true;
    }
    let is_class = name.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    is_class
        && INNOCUOUS_CLASS_MODULES
            .iter()
            .any(|prefix| within(module, prefix))
}

/// Whether `module` is `package` or one of its submodules.
fn within(module: &str, package: &str) -> bool {
    module == package
        || module
            .strip_prefix(package)
            .is_some_and(|rest| rest.starts_with('.'))
}
