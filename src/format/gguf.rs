//! GGUF (v1, v2, v3): the key/value metadata and the tensor infos, read with
//! a buffered cursor; tensor data is located, never read. Shapes are reported
//! outermost-first like PyTorch (`shape`), GGUF's innermost-first order is
//! kept in `ggml_dims`. Every count and length is checked against the bytes
//! that remain before anything is allocated for it.
//! Spec: ggml docs/gguf.md; block sizes from ggml/src/ggml.c `type_traits`.

use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::error::{err, ErrorKind, Result};
use crate::source::{ByteSource, Cursor};
use serde_json::{json, Value as Json};

pub const MAX_STRING: u64 = 16 * 1024 * 1024;
/// ggml's `GGML_MAX_DIMS`: a tensor with more is refused by ggml.
pub const MAX_DIMS: u32 = 4;
/// ggml's `GGML_MAX_NAME`: a tensor name this long or longer is refused.
const MAX_TENSOR_NAME: usize = 64;
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Key/value pairs and tensors a file may declare: far above real files
/// (a few dozen pairs; at most a few thousand tensors).
pub const MAX_KV: u64 = 1 << 20;
pub const MAX_TENSORS: u64 = 1 << 20;
/// Bytes the header parse may spend on values it parses (about 48 per value
/// plus string lengths): bounds memory and time whatever the header holds.
/// A 256k-token vocabulary costs about 30 MiB.
pub const MAX_HEADER_WORK: u64 = 512 * 1024 * 1024;
/// Arrays longer than this are summarised in the metadata (a tokenizer
/// vocabulary has 150k strings; nobody reads them in a report).
const ARRAY_PREVIEW: usize = 16;

pub fn sniff(prefix: &[u8]) -> bool {
    prefix.starts_with(b"GGUF")
}

/// `(name, elements per block, bytes per block)` by ggml type id.
pub fn ggml_type(id: u32) -> Option<(&'static str, u64, u64)> {
    Some(match id {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        40 => ("NVFP4", 64, 36),
        41 => ("Q1_0", 128, 18),
        42 => ("Q2_0", 64, 18),
        _ => return None,
    })
}

struct Reader<'s> {
    cursor: Cursor<'s>,
    version: u32,
    /// Bytes charged against `MAX_HEADER_WORK`.
    work: u64,
}

fn bad(message: impl Into<String>, offset: u64) -> crate::error::Error {
    err(ErrorKind::BadGguf, message).at(offset)
}

/// Encoded size of a fixed-size value type.
fn fixed_size(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

impl Reader<'_> {
    fn charge(&mut self, bytes: u64, offset: u64) -> Result<()> {
        self.work = self.work.saturating_add(bytes);
        if self.work > MAX_HEADER_WORK {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!(
                    "GGUF header needs more than {} MiB to parse",
                    MAX_HEADER_WORK >> 20
                ),
            )
            .at(offset));
        }
        Ok(())
    }

    /// Counts and lengths are u32 in v1 and u64 later.
    fn count(&mut self) -> Result<u64> {
        if self.version == 1 {
            Ok(self.cursor.u32_le()? as u64)
        } else {
            self.cursor.u64_le()
        }
    }

    fn string(&mut self) -> Result<String> {
        let offset = self.cursor.position();
        let len = self.count()?;
        if len > MAX_STRING {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!("GGUF string of {len} bytes exceeds the limit"),
            )
            .at(offset));
        }
        self.charge(len, offset)?;
        let bytes = self.cursor.take(len)?;
        // ggml keeps a string's bytes as they are, UTF-8 or not.
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()))
    }

    /// Smallest encoded size of a value of this type: what a declared array
    /// length is checked against.
    fn min_size(&self, value_type: u32) -> u64 {
        match value_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => {
                if self.version == 1 {
                    4
                } else {
                    8
                }
            }
            9 => 4 + if self.version == 1 { 4 } else { 8 },
            _ => 1,
        }
    }

    fn value(&mut self, value_type: u32, depth: usize) -> Result<Json> {
        let offset = self.cursor.position();
        self.charge(48, offset)?;
        Ok(match value_type {
            0 => json!(self.cursor.u8()?),
            1 => json!(self.cursor.u8()? as i8),
            2 => json!(self.cursor.u16_le()?),
            3 => json!(self.cursor.u16_le()? as i16),
            4 => json!(self.cursor.u32_le()?),
            5 => json!(self.cursor.i32_le()?),
            6 => json!(f32::from_le_bytes(self.cursor.array()?)),
            // ggml reads a bool as a byte and takes any non-zero as true.
            7 => json!(self.cursor.u8()? != 0),
            8 => json!(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(err(
                        ErrorKind::LimitExceeded,
                        format!("GGUF arrays nest deeper than {MAX_ARRAY_DEPTH}"),
                    )
                    .at(offset));
                }
                let element_type = self.cursor.u32_le()?;
                let len = self.count()?;
                if len.saturating_mul(self.min_size(element_type)) > self.cursor.remaining() {
                    return Err(bad(
                        format!("GGUF array declares {len} elements, more than the file holds"),
                        offset,
                    ));
                }
                let mut preview = Vec::new();
                for index in 0..len {
                    if index as usize >= ARRAY_PREVIEW {
                        // Fixed-size elements past the preview are skipped,
                        // not parsed (their total was checked above).
                        if let Some(size) = fixed_size(element_type) {
                            let rest = (len - index) * size;
                            self.cursor.seek(self.cursor.position() + rest);
                            break;
                        }
                    }
                    let item = self.value(element_type, depth + 1)?;
                    if (index as usize) < ARRAY_PREVIEW {
                        preview.push(item);
                    }
                }
                if len as usize > ARRAY_PREVIEW {
                    json!({ "array_len": len, "first": preview })
                } else {
                    Json::Array(preview)
                }
            }
            10 => json!(self.cursor.u64_le()?),
            11 => json!(self.cursor.i64_le()?),
            12 => json!(f64::from_le_bytes(self.cursor.array()?)),
            other => return Err(bad(format!("unknown GGUF value type {other}"), offset)),
        })
    }
}

/// What `general.architecture` tells a runtime: llama.cpp picks the model
/// by it, refuses a file without one, and loads a CLIP projector
/// (`mmproj`) only beside a language model.
fn architecture_notes(checkpoint: &Checkpoint) -> Vec<String> {
    let architecture = checkpoint
        .metadata
        .get("general.architecture")
        .and_then(|value| value.as_str());
    match architecture {
        None | Some("") => vec![format!(
            "no general.architecture{}: llama.cpp refuses the file (\"unknown model architecture: ''\"); convert it again with llama.cpp's convert_hf_to_gguf.py, which writes it",
            if architecture.is_some() { " (it is empty)" } else { "" }
        )],
        Some("clip")
            if checkpoint.metadata.contains_key("clip.has_vision_encoder")
                || checkpoint.tensors.iter().any(|t| t.name.starts_with("mm.")) =>
        {
            vec!["a multimodal projector (\"mmproj\", general.architecture clip): llama.cpp loads it with `--mmproj` beside a language-model GGUF, not as the model".to_string()]
        }
        Some(_) => Vec::new(),
    }
}

pub fn read(source: &dyn ByteSource) -> Result<Checkpoint> {
    let name = source.name().to_string();
    read_inner(source).map_err(|e| e.in_file(&name))
}

fn read_inner(source: &dyn ByteSource) -> Result<Checkpoint> {
    let mut reader = Reader {
        cursor: Cursor::new(source, 0),
        version: 0,
        work: 0,
    };
    if reader.cursor.take(4)? != b"GGUF" {
        return Err(bad("missing GGUF magic", 0));
    }
    reader.version = reader.cursor.u32_le()?;
    // ggml's rules (gguf_init_from_file_impl): 0 is bad, a version with its
    // low 16 bits clear is a byte-swapped file, v1 is no longer read, and
    // anything past 3 is from the future.
    let version = reader.version;
    let refusal = match version {
        0 => Some("GGUF version 0 is not a version".to_string()),
        v if v & 0xffff == 0 => Some(format!("GGUF version {v} is byte-swapped: a big-endian file on a little-endian machine (or the reverse)")),
        1 => Some("GGUF v1 is no longer read by ggml or llama.cpp (\"GGUFv1 is no longer supported\"); convert the model again with a current llama.cpp".to_string()),
        2 | 3 => None,
        v => Some(format!("GGUF version {v}: ggml reads versions 2 and 3")),
    };
    if let Some(message) = refusal {
        return Err(bad(message, 4));
    }
    let tensor_count = reader.count()?;
    let kv_count = reader.count()?;
    // A key/value pair takes at least a length, one byte of key and a type.
    let kv_min = reader.min_size(8) + 1 + 4;
    if kv_count.saturating_mul(kv_min) > reader.cursor.remaining() {
        return Err(bad(
            format!("GGUF declares {kv_count} key/value pairs, more than the file holds"),
            8,
        ));
    }
    let tensor_min = reader.min_size(8) + 1 + 4 + 4 + 8;
    if tensor_count.saturating_mul(tensor_min) > reader.cursor.remaining() {
        return Err(bad(
            format!("GGUF declares {tensor_count} tensors, more than the file holds"),
            8,
        ));
    }
    for (count, cap, what) in [
        (kv_count, MAX_KV, "key/value pairs"),
        (tensor_count, MAX_TENSORS, "tensors"),
    ] {
        if count > cap {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!("GGUF declares {count} {what}; ckptcheck reads at most {cap}"),
            )
            .at(8));
        }
    }
    let mut checkpoint = Checkpoint::new(source.name(), "gguf", source.len());
    checkpoint
        .metadata
        .insert("gguf.version".into(), json!(reader.version));
    let mut alignment = 32u64;
    for index in 0..kv_count {
        let key_offset = reader.cursor.position();
        let key = reader.string()?;
        if key.is_empty() {
            return Err(bad(
                format!("GGUF key {index} is empty (ggml refuses it)"),
                key_offset,
            ));
        }
        let value_type = reader.cursor.u32_le()?;
        let value = reader.value(value_type, 0)?;
        if key == "general.alignment" {
            if value_type != 4 {
                return Err(bad(
                    format!("general.alignment has GGUF type {value_type}; ggml needs UINT32 (4)"),
                    key_offset,
                ));
            }
            alignment = value
                .as_u64()
                .filter(|a| *a > 0 && a.is_power_of_two())
                .ok_or_else(|| {
                    bad(
                        format!("general.alignment {value} is not a power of two"),
                        reader.cursor.position(),
                    )
                })?;
        }
        if checkpoint.metadata.insert(key.clone(), value).is_some() {
            return Err(bad(
                format!("duplicate GGUF key {key:?}"),
                reader.cursor.position(),
            ));
        }
    }
    let mut raw = Vec::new();
    for _ in 0..tensor_count {
        let offset = reader.cursor.position();
        let tensor_name = reader.string()?;
        if tensor_name.len() >= MAX_TENSOR_NAME {
            return Err(bad(
                format!(
                    "tensor name of {} bytes: ggml takes names shorter than {MAX_TENSOR_NAME}",
                    tensor_name.len()
                ),
                offset,
            )
            .for_tensor(&tensor_name));
        }
        let n_dims = reader.cursor.u32_le()?;
        if n_dims > MAX_DIMS {
            return Err(bad(
                format!(
                    "tensor {tensor_name:?} has {n_dims} dimensions; ggml takes at most {MAX_DIMS}"
                ),
                offset,
            ));
        }
        reader.charge(8 * n_dims as u64 + 128, offset)?;
        let mut dims = Vec::new();
        for _ in 0..n_dims {
            dims.push(if reader.version == 1 {
                reader.cursor.u32_le()? as u64
            } else {
                reader.cursor.u64_le()?
            });
        }
        let type_id = reader.cursor.u32_le()?;
        let data_offset = reader.cursor.u64_le()?;
        raw.push((tensor_name, dims, type_id, data_offset, offset));
    }
    let data_start = reader.cursor.position().div_ceil(alignment) * alignment;
    if !raw.is_empty() && data_start > source.len() {
        return Err(err(
            ErrorKind::Truncated,
            format!("the data section would start at byte {data_start}, past the end of the file"),
        )
        .at(reader.cursor.position()));
    }
    // ggml lays tensors back to back in the order of their infos, each
    // padded to the alignment, and refuses any other offset; the data
    // section is their padded total.
    let mut expected_offset = 0u64;
    let mut seen = std::collections::HashSet::new();
    for (tensor_name, dims, type_id, data_offset, info_offset) in raw {
        let (type_name, block, block_bytes) = ggml_type(type_id).ok_or_else(|| {
            err(
                ErrorKind::UnknownDtype,
                format!("unknown ggml type {type_id}"),
            )
            .at(info_offset)
            .for_tensor(&tensor_name)
        })?;
        // Dimensions are int64 in ggml: negative ones and element counts
        // past INT64_MAX are refused there.
        let numel = dims
            .iter()
            .try_fold(1i64, |acc, d| {
                i64::try_from(*d).ok().and_then(|d| acc.checked_mul(d))
            })
            .ok_or_else(|| {
                err(
                    ErrorKind::LimitExceeded,
                    format!("shape {dims:?} is negative or has more than 2^63 elements"),
                )
                .at(info_offset)
                .for_tensor(&tensor_name)
            })? as u64;
        if dims.first().is_some_and(|inner| inner % block != 0) || !numel.is_multiple_of(block) {
            return Err(bad(
                format!("{type_name} needs rows that are a multiple of {block} elements"),
                info_offset,
            )
            .for_tensor(&tensor_name));
        }
        let nbytes = (numel / block).checked_mul(block_bytes).ok_or_else(|| {
            err(ErrorKind::LimitExceeded, "byte size overflows")
                .at(info_offset)
                .for_tensor(&tensor_name)
        })?;
        if !seen.insert(tensor_name.clone()) {
            return Err(bad("duplicate tensor name", info_offset).for_tensor(&tensor_name));
        }
        if data_offset != expected_offset {
            return Err(err(
                ErrorKind::InvalidOffsets,
                format!(
                    "data offset {data_offset}, expected {expected_offset}: ggml needs tensors back to back in the order listed, each padded to {alignment} bytes"
                ),
            )
            .at(info_offset)
            .for_tensor(&tensor_name));
        }
        expected_offset = nbytes
            .checked_next_multiple_of(alignment)
            .and_then(|padded| expected_offset.checked_add(padded))
            .ok_or_else(|| {
                err(
                    ErrorKind::LimitExceeded,
                    "the data section's size overflows",
                )
                .at(info_offset)
                .for_tensor(&tensor_name)
            })?;
        let absolute = data_start.checked_add(data_offset).filter(|start| start.checked_add(nbytes).is_some_and(|end| end <= source.len()))
            .ok_or_else(|| err(ErrorKind::Truncated, format!("tensor data ({nbytes} bytes at data offset {data_offset}) lies beyond the end of the file")).at(info_offset).for_tensor(&tensor_name))?;
        let mut tensor =
            TensorInfo::new(tensor_name, type_name, dims.iter().rev().copied().collect());
        tensor.offset = Some(absolute);
        tensor.nbytes = Some(nbytes);
        tensor.ggml_dims = Some(dims);
        checkpoint.tensors.push(tensor);
    }
    // ggml reads the whole padded data section, the last tensor's padding
    // included.
    if data_start
        .checked_add(expected_offset)
        .is_none_or(|end| end > source.len())
    {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "the data section needs {expected_offset} bytes (every tensor padded to {alignment}) after byte {data_start}; the file holds {}",
                source.len().saturating_sub(data_start)
            ),
        )
        .at(data_start));
    }
    checkpoint
        .metadata
        .insert("gguf.alignment".into(), json!(alignment));
    checkpoint.notes.extend(architecture_notes(&checkpoint));
    checkpoint.bytes_read = source.bytes_read();
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SliceSource;

    fn header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&tensors.to_le_bytes());
        b.extend_from_slice(&kvs.to_le_bytes());
        b
    }

    #[test]
    fn lying_counts_and_lengths_fail_before_allocating() {
        let mut long_string = header(3, 0, 1);
        long_string.extend_from_slice(&u64::MAX.to_le_bytes());
        long_string.extend_from_slice(&[0u8; 16]);
        let mut deep = header(3, 0, 1);
        deep.extend_from_slice(&1u64.to_le_bytes());
        deep.push(b'k');
        // The value is an array of arrays ... ten deep, of one u32.
        deep.extend_from_slice(&9u32.to_le_bytes());
        for _ in 0..10 {
            deep.extend_from_slice(&9u32.to_le_bytes());
            deep.extend_from_slice(&1u64.to_le_bytes());
        }
        deep.extend_from_slice(&4u32.to_le_bytes());
        deep.extend_from_slice(&1u64.to_le_bytes());
        deep.extend_from_slice(&7u32.to_le_bytes());
        let cases: Vec<(Vec<u8>, ErrorKind)> = vec![
            (header(3, u64::MAX, 0), ErrorKind::BadGguf),
            (header(3, 0, 1 << 40), ErrorKind::BadGguf),
            (header(9, 0, 0), ErrorKind::BadGguf),
            (long_string, ErrorKind::LimitExceeded),
            (b"GGUF\x03\x00".to_vec(), ErrorKind::Truncated),
        ];
        for (bytes, kind) in cases {
            let error = read(&SliceSource::new("m.gguf", &bytes)).unwrap_err();
            assert_eq!(error.kind, kind, "{error}");
        }
        let error = read(&SliceSource::new("m.gguf", &deep)).unwrap_err();
        assert_eq!(error.kind, ErrorKind::LimitExceeded, "{error}");
    }
}
