//! Format detection by content (never by file extension) and the entry points
//! that turn one file, or the shards of one checkpoint with their index, into
//! a `Checkpoint`. One file per container lives beside this one.

pub mod gguf;
pub mod gguf_quant;
pub mod pytorch;
pub mod safetensors;
pub mod sharded;

use crate::checkpoint::Checkpoint;
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
    if prefix.first() == Some(&0x80) {
        return Err(err(
            ErrorKind::UnsupportedFormat,
            "a bare pickle, not a torch.save checkpoint: ckptcheck reads torch zip, legacy and tar files",
        )
        .in_file(source.name()));
    }
    Err(err(
        ErrorKind::UnsupportedFormat,
        "not a recognised checkpoint (safetensors, PyTorch zip/legacy/tar, GGUF, or a shard index)",
    )
    .in_file(source.name()))
}

/// Read one checkpoint file of any supported format.
pub fn read_checkpoint(source: &dyn ByteSource) -> Result<Checkpoint> {
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

/// Read what the user gave as one checkpoint: a single file, or a shard
/// index with its shards.
pub fn read_files(sources: &[&dyn ByteSource]) -> Result<Checkpoint> {
    match sources {
        [] => Err(err(ErrorKind::BadArgument, "no checkpoint file given")),
        [one] => read_checkpoint(*one),
        several => sharded::read(several),
    }
}
