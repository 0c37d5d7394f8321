//! The output plan: which tensors go where under which names and dtypes,
//! the safetensors headers, the shard index, and the per-tensor
//! conversion (`convert_tensor`) for the bytes that must change.
//!
//! safetensors' own rules are followed so that its loaders accept the file:
//! an 8-byte little-endian header length, a JSON header padded with spaces
//! to a multiple of 8, data offsets that tile the data area, tensors ordered
//! by element size (largest first) then name, as the `safetensors` crate
//! orders them, so every tensor is aligned to its element.

use super::numeric::{f32_to_bf16, f32_to_f16, swap_bytes};
use super::CHUNK;
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::dtype;
use crate::error::{err, ErrorKind, Result};
use crate::source::{read_vec, ByteSource};
use crate::state_dict::tensor_groups;
use crate::weights::is_contiguous;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Largest strided view materialised (elements of its storage span): the
/// span is read whole to gather from it.
const MAX_VIEW_ELEMENTS: u64 = 1 << 31;

/// The dtype floating tensors are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Keep,
    F16,
    Bf16,
    F32,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target> {
        Ok(match text {
            "keep" => Target::Keep,
            "f16" | "fp16" | "float16" => Target::F16,
            "bf16" | "bfloat16" => Target::Bf16,
            "f32" | "fp32" | "float32" => Target::F32,
            other => {
                return Err(err(
                    ErrorKind::BadArgument,
                    format!("unknown dtype {other:?}: use keep, f16, bf16 or f32"),
                ))
            }
        })
    }

    /// The dtype a tensor of `dtype` is written in: floating tensors take
    /// the target, integers and booleans stay as they are.
    fn for_dtype(self, dtype: &str) -> String {
        let floating = matches!(
            dtype,
            "F16" | "BF16" | "F32" | "F64" | "F8_E4M3" | "F8_E5M2"
        );
        match self {
            _ if !floating => dtype.to_string(),
            Target::Keep => dtype.to_string(),
            Target::F16 => "F16".to_string(),
            Target::Bf16 => "BF16".to_string(),
            Target::F32 => "F32".to_string(),
        }
    }
}

/// Key edits applied before writing (`ckptcheck fix`), in this order:
/// strip a prefix, add one, rename prefixes, drop keys, write re-tied
/// copies.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Edits {
    pub strip_prefix: Option<String>,
    pub add_prefix: Option<String>,
    /// `(old prefix, new prefix)`: the first that matches a key applies.
    pub renames: Vec<(String, String)>,
    /// Keys (as edited) left out.
    pub drop: Vec<String>,
    /// `(target, source)`: `source`'s data written again as `target` (a tied
    /// weight the file stores once, for a loader that does not re-tie).
    pub materialise: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConvertOptions {
    pub target: Target,
    /// Largest shard in bytes of tensor data; `None` writes one file.
    pub shard_size: Option<u64>,
    /// The weights to write (keys from the checkpoint's root); `None` picks
    /// the state dict as `check` does.
    pub state_dict_path: Option<Vec<String>>,
    pub edits: Edits,
    /// Output names: `{stem}.safetensors`, `{stem}-00001-of-0000N...`.
    pub stem: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            target: Target::Keep,
            shard_size: None,
            state_dict_path: None,
            edits: Edits::default(),
            stem: "model".to_string(),
        }
    }
}

/// How one tensor's bytes are produced when they are not a verbatim range.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TensorJob {
    pub name: String,
    pub source: usize,
    /// First byte of the tensor's storage view in the source.
    pub offset: u64,
    /// Bytes the view spans in its storage.
    pub span: u64,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Element strides; `None` for contiguous data.
    pub stride: Option<Vec<u64>>,
    pub big_endian: bool,
    pub target_dtype: String,
}

/// A piece of an output file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Bytes made here (a header, an index).
    Bytes(Vec<u8>),
    /// A byte range of source file `source`, verbatim.
    Copy {
        source: usize,
        offset: u64,
        len: u64,
    },
    /// A tensor whose bytes change (dtype, byte order, a strided view).
    Convert(TensorJob),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputFile {
    pub name: String,
    pub len: u64,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrittenTensor {
    pub name: String,
    /// The key it had in the source (before edits).
    pub source_key: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub file: String,
    /// Its bytes are rewritten (dtype, byte order, view), not copied.
    pub converted: bool,
}

/// What will be written, and what was left out, for people and for tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub files: Vec<OutputFile>,
    pub tensors: Vec<WrittenTensor>,
    /// `(name, written as)`: the same view of the same storage, written once.
    pub deduplicated: Vec<(String, String)>,
    /// Keys the edits left out.
    pub dropped: Vec<String>,
    /// The header's `__metadata__`.
    pub metadata: BTreeMap<String, String>,
    /// Non-tensor values that are not plain values (dicts, objects): not in
    /// the metadata.
    pub left_out_values: Vec<String>,
    /// Tensor data bytes written (the shard index's `total_size`).
    pub total_size: u64,
    pub notes: Vec<String>,
}

/// A tensor's view of its storage: source file, storage key, offset,
/// shape, strides, dtype. Two tensors with the same key are one tensor.
type ViewKey = (usize, String, u64, Vec<u64>, Option<Vec<u64>>, String);

/// One tensor to write.
struct Entry<'a> {
    name: String,
    tensor: &'a TensorInfo,
    source: usize,
    /// The tensor's first byte, confirmed (a predicted zip offset is
    /// checked against its local header before any byte is used).
    offset: u64,
    dtype: String,
    bytes: u64,
}

impl Edits {
    /// A key as these edits write it.
    pub fn apply(&self, key: &str) -> String {
        edited(key, self)
    }
}

fn edited(key: &str, edits: &Edits) -> String {
    let mut key = key.to_string();
    if let Some(prefix) = &edits.strip_prefix {
        if let Some(rest) = key.strip_prefix(prefix.as_str()) {
            key = rest.to_string();
        }
    }
    if let Some(prefix) = &edits.add_prefix {
        key = format!("{prefix}{key}");
    }
    if let Some((old, new)) = edits
        .renames
        .iter()
        .find(|(old, _)| key.starts_with(old.as_str()))
    {
        key = format!("{new}{}", &key[old.len()..]);
    }
    key
}

/// The plan for `checkpoint`, whose tensors live in `sources` (the files
/// it was read from, in order: one file, or the shards).
pub fn plan(
    checkpoint: &Checkpoint,
    sources: &[&dyn ByteSource],
    options: &ConvertOptions,
) -> Result<Plan> {
    if checkpoint.format == "gguf" {
        return Err(err(
            ErrorKind::UnsupportedFormat,
            "GGUF tensors are llama.cpp's (quantized blocks, ggml order), not PyTorch's: convert reads PyTorch and safetensors checkpoints",
        )
        .in_file(&checkpoint.file));
    }
    let groups = tensor_groups(checkpoint);
    let (path, members) = match &options.state_dict_path {
        Some(path) => groups
            .into_iter()
            .find(|(group, _)| group == path)
            .ok_or_else(|| {
                err(
                    ErrorKind::BadArgument,
                    format!("no dict of tensors at {:?}", path.join("/")),
                )
                .in_file(&checkpoint.file)
            })?,
        None => groups.into_iter().next().ok_or_else(|| {
            err(ErrorKind::BadArgument, "the checkpoint holds no tensors").in_file(&checkpoint.file)
        })?,
    };
    let big_endian = checkpoint.metadata.get("byteorder").and_then(Value::as_str) == Some("big");
    let edits = &options.edits;
    let mut notes = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut dropped = Vec::new();
    let mut deduplicated = Vec::new();
    let mut seen_views: HashMap<ViewKey, String> = HashMap::new();
    let mut names = HashSet::new();
    for index in members {
        let tensor = &checkpoint.tensors[index];
        let name = edited(&tensor.name, edits);
        if edits.drop.contains(&name) {
            dropped.push(name);
            continue;
        }
        let source = source_index(sources, tensor)?;
        // The same view of the same storage (tied weights): once.
        if let Some(storage) = &tensor.storage {
            let view = (
                source,
                storage.clone(),
                tensor.offset.unwrap_or(0),
                tensor.shape.clone(),
                tensor.stride.clone(),
                tensor.dtype.clone(),
            );
            if let Some(kept) = seen_views.get(&view) {
                deduplicated.push((name, kept.clone()));
                continue;
            }
            seen_views.insert(view, name.clone());
        }
        if !names.insert(name.clone()) {
            return Err(err(
                ErrorKind::BadArgument,
                format!("two tensors would both be written as {name:?}"),
            )
            .for_tensor(&tensor.name));
        }
        entries.push(entry(tensor, name, source, sources, options.target)?);
    }
    for (target, source_name) in &edits.materialise {
        let Some(found) = entries.iter().find(|e| &e.name == source_name) else {
            continue;
        };
        if names.insert(target.clone()) {
            let copy = entry(
                found.tensor,
                target.clone(),
                found.source,
                sources,
                options.target,
            )?;
            entries.push(copy);
            notes.push(format!(
                "`{target}` written as a copy of `{source_name}` (tied weights)"
            ));
        }
    }
    if let Some(audit) = &checkpoint.pickle_audit {
        if audit.is_unsafe() {
            notes.push(format!(
                "the pickle references {} (unsafe, never run): only its tensors are written, none of its code",
                audit.unsafe_globals()
            ));
        } else if !audit.weights_only_loads {
            let why = crate::format::pytorch::weights_only_refusal(audit).unwrap_or_default();
            notes.push(format!("torch.load(weights_only=True) refuses the pickle ({why}): its tensors are written, the objects around them are not"));
        }
    }
    if !deduplicated.is_empty() {
        notes.push(format!(
            "{} tensor(s) are the same storage view as another (tied weights) and are written once, as safetensors requires",
            deduplicated.len()
        ));
    }
    let (metadata, left_out_values) = metadata_of(checkpoint, &path);
    // safetensors' order: element size descending, then name.
    entries.sort_by(|a, b| {
        let size = |e: &Entry| dtype::element_bytes(&e.dtype).unwrap_or(1);
        size(b).cmp(&size(a)).then(a.name.cmp(&b.name))
    });
    let shards = shard(&entries, options.shard_size);
    let count = shards.len();
    let file_name = |index: usize| {
        if count == 1 {
            format!("{}.safetensors", options.stem)
        } else {
            format!(
                "{}-{:05}-of-{count:05}.safetensors",
                options.stem,
                index + 1
            )
        }
    };
    let mut files = Vec::new();
    let mut written = Vec::new();
    let mut weight_map = BTreeMap::new();
    let mut total_size = 0u64;
    for (index, shard) in shards.iter().enumerate() {
        let name = file_name(index);
        let mut header = Map::new();
        header.insert("__metadata__".to_string(), json!(metadata));
        let mut parts = Vec::new();
        let mut at = 0u64;
        for entry in shard {
            let job = job_of(entry, big_endian);
            header.insert(
                entry.name.clone(),
                json!({"dtype": entry.dtype, "shape": entry.tensor.shape, "data_offsets": [at, at + entry.bytes]}),
            );
            at += entry.bytes;
            let converted = matches!(job, Part::Convert(_));
            parts.push(job);
            weight_map.insert(entry.name.clone(), name.clone());
            written.push(WrittenTensor {
                name: entry.name.clone(),
                source_key: entry.tensor.name.clone(),
                dtype: entry.dtype.clone(),
                shape: entry.tensor.shape.clone(),
                file: name.clone(),
                converted,
            });
        }
        total_size += at;
        let mut header_bytes = serde_json::to_vec(&Value::Object(header)).map_err(|e| {
            err(
                ErrorKind::BadArgument,
                format!("cannot write the header: {e}"),
            )
        })?;
        while (header_bytes.len() + 8) % 8 != 0 {
            header_bytes.push(b' ');
        }
        let mut head = (header_bytes.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(&header_bytes);
        let len = head.len() as u64 + at;
        parts.insert(0, Part::Bytes(head));
        files.push(OutputFile { name, len, parts });
    }
    if count > 1 {
        let index = json!({"metadata": {"total_size": total_size}, "weight_map": weight_map});
        let mut text = serde_json::to_string_pretty(&index).unwrap_or_default();
        text.push('\n');
        files.push(OutputFile {
            name: format!("{}.safetensors.index.json", options.stem),
            len: text.len() as u64,
            parts: vec![Part::Bytes(text.into_bytes())],
        });
    }
    Ok(Plan {
        files,
        tensors: written,
        deduplicated,
        dropped,
        metadata,
        left_out_values,
        total_size,
        notes,
    })
}

fn source_index(sources: &[&dyn ByteSource], tensor: &TensorInfo) -> Result<usize> {
    crate::format::source_index_for_tensor(sources, tensor).ok_or_else(|| match &tensor.file {
        Some(file) => err(ErrorKind::BadShards, format!("shard {file} was not given"))
            .for_tensor(&tensor.name),
        None => err(ErrorKind::BadArgument, "no checkpoint file given"),
    })
}

fn entry<'a>(
    tensor: &'a TensorInfo,
    name: String,
    source: usize,
    sources: &[&dyn ByteSource],
    target: Target,
) -> Result<Entry<'a>> {
    if dtype::element_bytes(&tensor.dtype).is_none()
        || matches!(
            tensor.dtype.as_str(),
            "QI8" | "QU8" | "QI32" | "C128" | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" | "F8_E8M0"
        )
    {
        return Err(err(
            ErrorKind::UnknownDtype,
            format!("dtype {} has no safetensors equivalent", tensor.dtype),
        )
        .for_tensor(&tensor.name));
    }
    let dtype = target.for_dtype(&tensor.dtype);
    let element = dtype::element_bytes(&dtype).unwrap_or(1) as u64;
    let bytes = tensor.numel().checked_mul(element).ok_or_else(|| {
        err(ErrorKind::LimitExceeded, "tensor size overflows").for_tensor(&tensor.name)
    })?;
    let file = sources.get(source).copied().ok_or_else(|| {
        err(ErrorKind::BadArgument, "no checkpoint file given").for_tensor(&tensor.name)
    })?;
    let offset =
        crate::format::confirmed_offset(file, tensor).map_err(|e| e.for_tensor(&tensor.name))?;
    let (Some(offset), Some(_)) = (offset, tensor.nbytes) else {
        return Err(err(
            ErrorKind::InvalidOffsets,
            "the file does not say where this tensor's bytes are",
        )
        .for_tensor(&tensor.name));
    };
    Ok(Entry {
        name,
        tensor,
        source,
        offset,
        dtype,
        bytes,
    })
}

/// A verbatim range when the bytes need no change, else a conversion.
fn job_of(entry: &Entry, big_endian: bool) -> Part {
    let tensor = entry.tensor;
    let element = dtype::element_bytes(&tensor.dtype).unwrap_or(1);
    let contiguous = tensor
        .stride
        .as_ref()
        .is_none_or(|stride| is_contiguous(&tensor.shape, stride));
    let swaps = big_endian && element > 1;
    let offset = entry.offset;
    let span = tensor.nbytes.unwrap_or(0);
    if contiguous && !swaps && entry.dtype == tensor.dtype && entry.bytes <= span {
        return Part::Copy {
            source: entry.source,
            offset,
            len: entry.bytes,
        };
    }
    Part::Convert(TensorJob {
        name: entry.name.clone(),
        source: entry.source,
        offset,
        span,
        dtype: tensor.dtype.clone(),
        shape: tensor.shape.clone(),
        stride: tensor
            .stride
            .clone()
            .filter(|stride| !is_contiguous(&tensor.shape, stride)),
        big_endian,
        target_dtype: entry.dtype.clone(),
    })
}

/// Greedy shards of at most `size` bytes of data (a bigger tensor alone).
fn shard<'e, 'a>(entries: &'e [Entry<'a>], size: Option<u64>) -> Vec<Vec<&'e Entry<'a>>> {
    let Some(limit) = size else {
        return vec![entries.iter().collect()];
    };
    let mut shards: Vec<Vec<&Entry>> = vec![Vec::new()];
    let mut used = 0u64;
    for entry in entries {
        if used > 0 && used + entry.bytes > limit {
            shards.push(Vec::new());
            used = 0;
        }
        if let Some(last) = shards.last_mut() {
            last.push(entry);
        }
        used += entry.bytes;
    }
    shards
}

/// The header metadata: `format: pt`, the source's safetensors metadata,
/// and the plain values beside the weights (epoch, step) as strings.
fn metadata_of(
    checkpoint: &Checkpoint,
    weights_path: &[String],
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut metadata = BTreeMap::new();
    let mut left_out = Vec::new();
    if let Some(Value::Object(source)) = checkpoint.metadata.get("__metadata__") {
        for (key, value) in source {
            if let Value::String(text) = value {
                metadata.insert(key.clone(), text.clone());
            }
        }
    }
    for value in &checkpoint.values {
        if value.path.starts_with(weights_path) && !weights_path.is_empty() {
            continue;
        }
        // Top-level plain values (epoch, step) fit the metadata; what is
        // nested (optimizer states, hyper-parameter dicts) is listed once.
        let key = value.path.first().cloned().unwrap_or_default();
        if value.path.len() != 1 {
            if !left_out.contains(&key) {
                left_out.push(key);
            }
            continue;
        }
        match &value.value {
            Value::String(text) => {
                metadata.insert(key, text.clone());
            }
            Value::Number(number) => {
                metadata.insert(key, number.to_string());
            }
            Value::Bool(flag) => {
                metadata.insert(key, flag.to_string());
            }
            Value::Null => {
                metadata.insert(key, "None".to_string());
            }
            _ => left_out.push(key),
        }
    }
    metadata.insert("format".to_string(), "pt".to_string());
    (metadata, left_out)
}

/// Elements of `raw` (little-endian, `element` bytes each) in `from`,
/// written in `to`.
fn convert_elements(raw: &[u8], from: &str, to: &str) -> Result<Vec<u8>> {
    if from == to {
        return Ok(raw.to_vec());
    }
    // decode_into takes a double through float (`as f32`, nearest even),
    // as c10's Half and BFloat16 constructors do.
    let mut values = Vec::new();
    dtype::decode_into(from, raw, false, &mut values)?;
    let mut out = Vec::with_capacity(values.len() * dtype::element_bytes(to).unwrap_or(4));
    match to {
        "F32" => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        "F16" => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f32_to_f16(*v).to_le_bytes())),
        "BF16" => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f32_to_bf16(*v).to_le_bytes())),
        other => {
            return Err(err(
                ErrorKind::UnknownDtype,
                format!("cannot convert {from} to {other}"),
            ))
        }
    }
    Ok(out)
}

/// The bytes of one converted tensor, through `sink` in chunks.
pub(super) fn convert_tensor(
    job: &TensorJob,
    source: &dyn ByteSource,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let for_tensor = |e: crate::error::Error| e.for_tensor(&job.name);
    let element = dtype::element_bytes(&job.dtype)
        .ok_or_else(|| for_tensor(err(ErrorKind::UnknownDtype, format!("dtype {}", job.dtype))))?
        as u64;
    let numel: u64 = job.shape.iter().product();
    let finish = |mut raw: Vec<u8>, sink: &mut dyn FnMut(&[u8]) -> Result<()>| -> Result<()> {
        if job.big_endian {
            // A complex number is two floats, each in the file's byte order.
            let unit = match job.dtype.as_str() {
                "C64" => 4,
                "C128" => 8,
                _ => element as usize,
            };
            swap_bytes(&mut raw, unit);
        }
        sink(&convert_elements(&raw, &job.dtype, &job.target_dtype).map_err(for_tensor)?)
    };
    match &job.stride {
        None => {
            let bytes = numel * element;
            if bytes > job.span {
                return Err(for_tensor(err(
                    ErrorKind::InvalidOffsets,
                    format!("{bytes} bytes of data, {} stored", job.span),
                )));
            }
            let step = (CHUNK / element).max(1) * element;
            let mut done = 0u64;
            while done < bytes {
                let len = step.min(bytes - done);
                finish(
                    read_vec(source, job.offset + done, len).map_err(for_tensor)?,
                    sink,
                )?;
                done += len;
            }
            Ok(())
        }
        Some(stride) => {
            // A strided or broadcast view: its storage span read once, the
            // elements gathered in row-major order, written in chunks.
            let span_elements = job.span / element;
            if span_elements > MAX_VIEW_ELEMENTS {
                return Err(for_tensor(err(
                    ErrorKind::LimitExceeded,
                    format!("a strided view over {span_elements} elements is more than convert materialises ({MAX_VIEW_ELEMENTS})"),
                )));
            }
            let storage = read_vec(source, job.offset, job.span).map_err(for_tensor)?;
            let mut index = vec![0u64; job.shape.len()];
            let per_chunk = (CHUNK / element).max(1);
            let mut chunk = Vec::with_capacity((per_chunk.min(numel) * element) as usize);
            for _ in 0..numel {
                let at: u64 = index.iter().zip(stride).map(|(i, s)| i * s).sum::<u64>() * element;
                let bytes = storage
                    .get(at as usize..(at + element) as usize)
                    .ok_or_else(|| {
                        for_tensor(err(
                            ErrorKind::InvalidOffsets,
                            "a strided view reaches past its storage",
                        ))
                    })?;
                chunk.extend_from_slice(bytes);
                if chunk.len() as u64 >= per_chunk * element {
                    finish(std::mem::take(&mut chunk), sink)?;
                }
                for d in (0..job.shape.len()).rev() {
                    index[d] += 1;
                    if index[d] < job.shape[d] {
                        break;
                    }
                    index[d] = 0;
                }
            }
            if !chunk.is_empty() {
                finish(chunk, sink)?;
            }
            Ok(())
        }
    }
}
