//! Format detection by content (never by file extension) and the entry points
//! that turn one file, or the shards of one checkpoint with their index, into
//! a `Checkpoint`. One file per container lives beside this one.

pub mod archive_pickles;
pub mod gguf;
pub mod gguf_quant;
pub mod not_checkpoint;
pub mod pytorch;
pub mod safetensors;
pub mod sharded;

use crate::checkpoint::{Checkpoint, PredictedOffset, TensorInfo};
use crate::error::{err, ErrorKind, Result};
use crate::source::{read_vec, ByteSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    PytorchZip,
    PytorchLegacy,
    PytorchTar,
    Gguf,
    /// `model.safetensors.index.json` or `pytorch_model.bin.index.json`.
    ShardIndex,
    /// Any other JSON object: a model config, handled by `arch`.
    Json,
}

/// Look at the first bytes and say what the file is.
pub fn detect(source: &dyn ByteSource) -> Result<Format> {
    let prefix = read_vec(source, 0, source.len().min(512))?;
    if prefix.is_empty() {
        return Err(err(ErrorKind::Truncated, "file is empty").in_file(source.name()));
    }
    if gguf::sniff(&prefix) {
        return Ok(Format::Gguf);
    }
    if pytorch::zip::sniff(&prefix) {
        return Ok(Format::PytorchZip);
    }
    if pytorch::legacy::sniff_legacy(&prefix) {
        return Ok(Format::PytorchLegacy);
    }
    if pytorch::legacy::sniff_tar(&prefix) {
        return Ok(Format::PytorchTar);
    }
    if safetensors::sniff(&prefix, source.len()) {
        return Ok(Format::Safetensors);
    }
    let text_start = prefix.iter().position(|b| !b.is_ascii_whitespace());
    if text_start.and_then(|i| prefix.get(i)) == Some(&b'{') {
        let head = String::from_utf8_lossy(&prefix);
        if head.contains("\"weight_map\"") || sharded::looks_like_index(source)? {
            return Ok(Format::ShardIndex);
        }
        return Ok(Format::Json);
    }
    if let Some(error) = not_checkpoint::identify(source, &prefix) {
        return Err(error);
    }
    Err(err(
        ErrorKind::UnsupportedFormat,
        "not a recognised checkpoint (safetensors, PyTorch zip/legacy/tar, GGUF, or a shard index)",
    )
    .in_file(source.name()))
}

/// Largest adapter_config.json read (a few KiB in practice).
pub const MAX_ADAPTER_CONFIG_BYTES: u64 = 1024 * 1024;

/// A PEFT `adapter_config.json`, if `source` is one: named so, or a JSON
/// object with `peft_type` (the page gets files by content, not by name).
/// A file named so that is not a JSON object is an error naming it.
pub fn adapter_config(source: &dyn ByteSource) -> Result<Option<serde_json::Value>> {
    let named = base_name(source.name()) == "adapter_config.json";
    if !named && !matches!(detect(source), Ok(Format::Json)) {
        return Ok(None);
    }
    if source.len() > MAX_ADAPTER_CONFIG_BYTES {
        return match named {
            true => Err(err(
                ErrorKind::LimitExceeded,
                format!(
                    "adapter config of {} bytes; it is read up to {MAX_ADAPTER_CONFIG_BYTES}",
                    source.len()
                ),
            )
            .in_file(source.name())),
            false => Ok(None),
        };
    }
    let bytes = crate::source::read_vec(source, 0, source.len())?;
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) if named => {
            return Err(err(
                ErrorKind::BadConfig,
                format!("adapter config is not valid JSON: {e}"),
            )
            .in_file(source.name()))
        }
        Err(_) => return Ok(None),
    };
    let is_adapter = value.get("peft_type").is_some_and(|t| t.is_string());
    match (named, is_adapter, value.is_object()) {
        (_, true, _) => Ok(Some(value)),
        (true, false, true) => Ok(Some(value)),
        (true, false, false) => Err(err(
            ErrorKind::BadConfig,
            "adapter config is not a JSON object",
        )
        .in_file(source.name())),
        (false, false, _) => Ok(None),
    }
}

/// Read one checkpoint file of any supported format.
pub fn read_checkpoint(source: &dyn ByteSource) -> Result<Checkpoint> {
    read_detected(source).map_err(|error| {
        if error.kind == ErrorKind::Truncated && error.fix().is_none() {
            let fix = format!(
                "the file is cut short (it has {} bytes): download or copy it again and compare its size with the source's",
                source.len()
            );
            error.because("truncated", fix)
        } else {
            error
        }
    })
}

fn read_detected(source: &dyn ByteSource) -> Result<Checkpoint> {
    match detect(source)? {
        Format::Safetensors => safetensors::read(source),
        Format::PytorchZip => pytorch::read_zip(source),
        Format::PytorchLegacy => pytorch::legacy::read_legacy(source),
        Format::PytorchTar => pytorch::legacy::read_tar(source),
        Format::Gguf => gguf::read(source),
        Format::ShardIndex => Err(err(
            ErrorKind::BadShards,
            "this is a shard index: give it together with its shard files",
        )
        .in_file(source.name())),
        Format::Json => Err(err(
            ErrorKind::UnsupportedFormat,
            "this JSON file is not a checkpoint (a model config? pass it with --config)",
        )
        .in_file(source.name())),
    }
}

/// Set by `leave_parse_state_to_exit`.
static PARSE_STATE_LEFT_TO_EXIT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// For a process that ends once it has read a checkpoint (`ckptcheck
/// inspect`): from now on a reader leaves its working state (a pickle's
/// object graph, the zip directory) to the end of the process instead of
/// freeing it block by block, which took ~0.05 ms of a 2.3 ms `inspect
/// --json` of a 3.8 GB `.pt` (issue 17). Memory stays bounded by what one
/// read held at its peak anyway, for each file read. Never set by the
/// library itself, nor by commands that read many files in one process.
pub fn leave_parse_state_to_exit() {
    PARSE_STATE_LEFT_TO_EXIT.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn parse_state_left_to_exit() -> bool {
    PARSE_STATE_LEFT_TO_EXIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Read what the user gave as one checkpoint: a single file, or a shard
/// index with its shards.
pub fn read_files(sources: &[&dyn ByteSource]) -> Result<Checkpoint> {
    match sources {
        [] => Err(err(ErrorKind::BadArgument, "no checkpoint file given")),
        [one] => read_checkpoint(*one),
        several => sharded::read(several),
    }
}

/// The file a tensor's bytes live in among `sources`: the one named by
/// `TensorInfo::file` (shards, matched by base name), else the first.
pub fn source_for_tensor<'a>(
    sources: &[&'a dyn ByteSource],
    tensor: &TensorInfo,
) -> Option<&'a dyn ByteSource> {
    source_index_for_tensor(sources, tensor).map(|index| sources[index])
}

/// `source_for_tensor`'s position in `sources` (the writer's plan names
/// files by position).
pub fn source_index_for_tensor(sources: &[&dyn ByteSource], tensor: &TensorInfo) -> Option<usize> {
    match &tensor.file {
        None => (!sources.is_empty()).then_some(0),
        Some(file) => sources
            .iter()
            .position(|source| base_name(source.name()) == base_name(file)),
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// The tensor's byte offset, confirmed: when the reader predicted it (a zip
/// storage whose local header was not read), the local header is read now
/// and the offset follows it, as torch does. `None` when the file does not
/// locate the tensor at all.
pub fn confirmed_offset(source: &dyn ByteSource, tensor: &TensorInfo) -> Result<Option<u64>> {
    match (tensor.offset, &tensor.predicted_offset) {
        (None, _) => Ok(None),
        (Some(offset), None) => Ok(Some(offset)),
        (Some(offset), Some(prediction)) => {
            shifted(offset, prediction, real_data_offset(source, prediction)?).map(Some)
        }
    }
}

/// Where a predicted entry's data really starts, from its local header.
fn real_data_offset(source: &dyn ByteSource, prediction: &PredictedOffset) -> Result<u64> {
    pytorch::zip::local_data_offset(
        source,
        &prediction.entry_name,
        prediction.header_offset,
        prediction.entry_size,
    )
}

/// A tensor sits at the same place inside its storage entry wherever the
/// entry's data really starts.
fn shifted(offset: u64, prediction: &PredictedOffset, real_data_offset: u64) -> Result<u64> {
    offset
        .checked_sub(prediction.predicted_data_offset)
        .and_then(|within| real_data_offset.checked_add(within))
        .ok_or_else(|| {
            err(
                ErrorKind::InvalidOffsets,
                format!("tensor offset {offset} lies outside its storage entry"),
            )
        })
}

/// Confirm every predicted offset of `checkpoint` (one 30-byte local-header
/// read per storage), so that every offset it holds is read from the file.
pub fn confirm_offsets(checkpoint: &mut Checkpoint, sources: &[&dyn ByteSource]) -> Result<()> {
    // Storages are shared by tensors (tied weights, views): one read each.
    let mut confirmed: std::collections::HashMap<(String, u64), u64> =
        std::collections::HashMap::new();
    for tensor in &mut checkpoint.tensors {
        let (Some(offset), Some(prediction)) = (tensor.offset, &tensor.predicted_offset) else {
            continue;
        };
        let source = source_for_tensor(sources, tensor).ok_or_else(|| {
            err(
                ErrorKind::BadShards,
                format!("the file holding tensor {:?} was not given", tensor.name),
            )
        })?;
        let key = (source.name().to_string(), prediction.header_offset);
        let real = match confirmed.get(&key) {
            Some(real) => *real,
            None => *confirmed
                .entry(key)
                .or_insert(real_data_offset(source, prediction)?),
        };
        tensor.offset = Some(
            shifted(offset, prediction, real)
                .map_err(|e| e.in_file(source.name()).for_tensor(&tensor.name))?,
        );
        tensor.predicted_offset = None;
    }
    checkpoint
        .notes
        .retain(|note| !note.starts_with(pytorch::PREDICTED_OFFSETS_NOTE));
    checkpoint.bytes_read = sources.iter().map(|source| source.bytes_read()).sum();
    Ok(())
}
