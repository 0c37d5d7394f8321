//! The one data model every format reader produces: a `Checkpoint` with its
//! tensors (`TensorInfo`), the non-tensor values found beside them, format
//! metadata and, for pickles, the audit of what the pickle would call. The
//! JSON of `ckptcheck inspect --json` is this structure serialized; README
//! documents the field names, so rename nothing without updating it.

use serde::Serialize;
use std::collections::BTreeMap;

/// Element types, named as safetensors names them (F32, BF16, I64, BOOL ...),
/// extended with PyTorch-only and GGUF block types (C128, Q4_0, IQ2_XXS ...).
pub type Dtype = String;

/// Size in bytes of one element of a plain (non-block) dtype; `None` for
/// block-quantized GGUF types and unknown names.
pub fn dtype_size_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ"
        | "F8_E5M2FNUZ" | "QI8" | "QU8" => 8,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" | "QI32" => 32,
        "C64" | "F64" | "I64" | "U64" => 64,
        "C128" => 128,
        _ => return None,
    })
}

/// One tensor as the file describes it. `offset`/`nbytes` locate its bytes in
/// the file when the format stores them contiguously.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    /// Keys from the root object to this tensor, e.g.
    /// `["state_dict", "module.visual.proj"]`.
    pub path: Vec<String>,
    /// The state-dict key (the last element of `path` for pickles).
    pub name: String,
    pub dtype: Dtype,
    /// Outermost dimension first, as PyTorch and NumPy print it.
    pub shape: Vec<u64>,
    /// Absolute byte offset of the tensor's first byte in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Bytes the tensor spans in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbytes: Option<u64>,
    /// GGUF's own innermost-first dimensions, kept for people who read ggml.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ggml_dims: Option<Vec<u64>>,
    /// Element strides for pickled tensors (views and tied weights differ
    /// from contiguous ones here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<Vec<u64>>,
    /// Storage key for pickled tensors; tensors sharing one are tied or views.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Which file of a sharded checkpoint holds the tensor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Set when `offset` is a prediction (torch's 64-byte alignment rule)
    /// and not read from the zip local header in front of the bytes: JSON
    /// says `"offset_predicted": true`. Whoever reads the bytes confirms the
    /// offset first (`format::confirmed_offset`).
    #[serde(
        rename = "offset_predicted",
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_as_true"
    )]
    pub predicted_offset: Option<PredictedOffset>,
}

/// A zip entry whose data offset was predicted, with what it takes to check
/// the prediction: the entry's local header position and the predicted
/// start of its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictedOffset {
    pub entry_name: String,
    pub header_offset: u64,
    pub entry_size: u64,
    pub predicted_data_offset: u64,
}

fn serialize_as_true<S: serde::Serializer>(
    _: &Option<PredictedOffset>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_bool(true)
}

impl TensorInfo {
    pub fn new(name: impl Into<String>, dtype: impl Into<String>, shape: Vec<u64>) -> Self {
        let name = name.into();
        TensorInfo {
            path: vec![name.clone()],
            name,
            dtype: dtype.into(),
            shape,
            offset: None,
            nbytes: None,
            ggml_dims: None,
            stride: None,
            storage: None,
            file: None,
            predicted_offset: None,
        }
    }

    /// Number of elements, saturating (shapes come from untrusted files and
    /// are validated by the readers; this is for display and totals).
    pub fn numel(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |acc, d| acc.saturating_mul(*d))
    }
}

/// A non-tensor value next to the tensors (epoch, step, name, ...), rendered
/// as JSON so any pickle value can be shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueInfo {
    pub path: Vec<String>,
    pub value: serde_json::Value,
}

/// What PyTorch's `weights_only=True` unpickler would think of one global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalVerdict {
    /// On PyTorch's allowlist.
    Allowed,
    /// Not on the allowlist: `weights_only=True` refuses the file, though
    /// the global is known to be harmless (argparse.Namespace, numpy
    /// arrays): innocuous, the peers' lowest level.
    NotAllowlisted,
    /// Neither allowlisted nor known to be harmless (a training library's
    /// class, a module of the file's choosing): a `weights_only=False` load
    /// imports its module and calls it, which can run code, so the file is
    /// unsafe by default.
    Suspicious,
    /// Known to run code or touch the system (os.system, builtins.eval,
    /// the scanners' gadgets): the file is unsafe.
    Dangerous,
}

/// The audit's verdict on a whole file, from the worst of its globals and
/// opcodes, in the peers' levels: `safe` (torch's weights_only unpickler
/// accepts it), `not_allowlisted` (it refuses it, but nothing in it can
/// run code), `suspicious` and `dangerous` (a `weights_only=False` load
/// could run code: exit 2, kind `unsafe_pickle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PickleSeverity {
    #[default]
    Safe,
    NotAllowlisted,
    Suspicious,
    Dangerous,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GlobalUse {
    pub module: String,
    pub name: String,
    pub verdict: GlobalVerdict,
    /// How many times the pickle references it.
    pub count: u64,
}

/// Every global a pickle references. Nothing is ever called.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PickleAudit {
    pub globals: Vec<GlobalUse>,
    /// True when `torch.load(weights_only=True)` would accept the file:
    /// every global on its allowlist and every opcode one its unpickler
    /// executes.
    pub weights_only_loads: bool,
    /// Opcodes the pickles use that torch's weights_only unpickler refuses
    /// ("Unsupported operand N"), as `FRAME (0x95)`; protocol 4 and 5
    /// pickles and hand-made ones have them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsupported_opcodes: Vec<String>,
    /// The worst level among the globals (and `not_allowlisted` for
    /// opcodes torch refuses).
    pub severity: PickleSeverity,
    /// Names (`module.name`) of dangerous globals; non-empty means unsafe.
    pub dangerous: Vec<String>,
    /// Names of globals neither allowlisted nor known harmless; non-empty
    /// also means unsafe (the default is unsafe).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suspicious: Vec<String>,
    /// The calls of dangerous globals the pickle would make, with their
    /// literal arguments (`posix.system('id')`; `…` for a non-literal).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
    /// What to do: nothing (safe), the `add_safe_globals` line for a file
    /// whose globals are all harmless, or not to load it and convert the
    /// tensors instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl PickleAudit {
    /// True when a `weights_only=False` load could run code: a dangerous
    /// or suspicious global.
    pub fn is_unsafe(&self) -> bool {
        self.severity >= PickleSeverity::Suspicious
    }

    /// The names of the globals that make the file unsafe, dangerous ones
    /// first.
    pub fn unsafe_names(&self) -> Vec<String> {
        self.dangerous
            .iter()
            .chain(&self.suspicious)
            .cloned()
            .collect()
    }

    /// The globals that make the file unsafe, dangerous ones first, each
    /// marked with its level: `posix.system (dangerous)`.
    pub fn unsafe_globals(&self) -> String {
        let dangerous = self.dangerous.iter().map(|n| format!("{n} (dangerous)"));
        let suspicious = self
            .suspicious
            .iter()
            .map(|n| format!("{n} (not known to be harmless)"));
        dangerous.chain(suspicious).collect::<Vec<_>>().join(", ")
    }
}

/// Everything read from one checkpoint (one file, or the shards of one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checkpoint {
    /// File name as given (for shards: the index file).
    pub file: String,
    /// `safetensors`, `safetensors-sharded`, `pytorch-zip`, `pytorch-legacy`,
    /// `pytorch-tar`, `pytorch-sharded`, `gguf`.
    pub format: String,
    pub file_bytes: u64,
    pub bytes_read: u64,
    pub tensors: Vec<TensorInfo>,
    pub values: Vec<ValueInfo>,
    /// Format metadata: safetensors `__metadata__`, GGUF key/values (as JSON
    /// strings), torch `byteorder` and `version`.
    pub metadata: BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickle_audit: Option<PickleAudit>,
    /// Things worth saying that are not errors.
    pub notes: Vec<String>,
    /// `_metadata` of pickled dicts, as `Module.state_dict()` leaves it: for
    /// the dict at `path`, each module prefix and its version. PyTorch's
    /// BatchNorm reads it when loading, so the check needs it.
    #[serde(skip)]
    pub state_dict_metadata: Vec<StateDictMetadata>,
    /// The keys of the root dict of a pickle, in order (what a
    /// `load_state_dict` of the whole file would see).
    #[serde(skip)]
    pub root_keys: Vec<String>,
    /// A PEFT adapter's `adapter_config.json` found beside the weights (in
    /// the folder given, or next to the file): what `PeftModel` reads first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateDictMetadata {
    pub path: Vec<String>,
    pub versions: BTreeMap<String, Option<i64>>,
}

impl Checkpoint {
    pub fn new(file: &str, format: &str, file_bytes: u64) -> Self {
        Checkpoint {
            file: file.to_string(),
            format: format.to_string(),
            file_bytes,
            bytes_read: 0,
            tensors: Vec::new(),
            values: Vec::new(),
            metadata: BTreeMap::new(),
            pickle_audit: None,
            notes: Vec::new(),
            state_dict_metadata: Vec::new(),
            root_keys: Vec::new(),
            adapter_config: None,
        }
    }

    pub fn total_parameters(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |total, t| total.saturating_add(t.numel()))
    }

    /// Parameters per dtype, for the inspect summary.
    pub fn parameters_by_dtype(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for tensor in &self.tensors {
            let count = out.entry(tensor.dtype.clone()).or_insert(0u64);
            *count = count.saturating_add(tensor.numel());
        }
        out
    }
}
