//! Writing checkpoints: any checkpoint ckptcheck reads (PyTorch zip, legacy,
//! tar, sharded .bin, safetensors) to safetensors, one file or a sharded set
//! with transformers' `model.safetensors.index.json`, without running a
//! pickle and without holding the model in memory.
//!
//! `plan` decides every byte of the output from the tensor index alone: the
//! header (`{"format": "pt"}` metadata plus the source's plain values), and
//! for each tensor either a verbatim copy of a byte range of a source file
//! (`Part::Copy`: the page builds a `Blob` of `File.slice`s from these, with
//! no copy in memory) or a conversion (`Part::Convert`: another dtype, a
//! big-endian storage, a strided or broadcast view, bytes read and
//! rewritten in chunks by `write_part`). Tensors that are the same view of
//! the same storage (tied weights) are written once, as safetensors and
//! transformers require, the first name kept. `fix` edits the keys first
//! (prefix strip/add, dropped keys, renames, re-tied weights).

mod fix;
mod numeric;
mod plan;

pub use fix::edits_for;
pub use numeric::{f32_to_bf16, f32_to_f16};
pub use plan::{
    plan, ConvertOptions, Edits, OutputFile, Part, Plan, Target, TensorJob, WrittenTensor,
};

use crate::error::{err, ErrorKind, Result};
use crate::source::{read_vec, ByteSource};

/// Bytes copied or converted per step: memory stays at a few of these
/// whatever the file's size (a strided view needs its storage span).
pub const CHUNK: u64 = 8 * 1024 * 1024;

/// Write one part through `sink`, in chunks. `sources` are the files the
/// plan was made from, in the same order.
pub fn write_part(
    part: &Part,
    sources: &[&dyn ByteSource],
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    match part {
        Part::Bytes(bytes) => sink(bytes),
        Part::Copy {
            source,
            offset,
            len,
        } => {
            let file = source_at(sources, *source)?;
            let mut done = 0u64;
            while done < *len {
                let step = CHUNK.min(len - done);
                sink(&read_vec(file, offset + done, step)?)?;
                done += step;
            }
            Ok(())
        }
        Part::Convert(job) => plan::convert_tensor(job, source_at(sources, job.source)?, sink),
    }
}

fn source_at<'a>(sources: &[&'a dyn ByteSource], index: usize) -> Result<&'a dyn ByteSource> {
    sources.get(index).copied().ok_or_else(|| {
        err(
            ErrorKind::BadArgument,
            format!("the plan names source file {index}, which was not given"),
        )
    })
}

/// Write a whole output file through `sink`: its parts in order.
pub fn write_file(
    file: &OutputFile,
    sources: &[&dyn ByteSource],
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    for part in &file.parts {
        write_part(part, sources, sink)?;
    }
    Ok(())
}
