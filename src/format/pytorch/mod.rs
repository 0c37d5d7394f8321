//! PyTorch checkpoints: the zip format of `torch.save` (torch >= 1.6), the
//! legacy pickle-sequence format (torch 0.1.10 to 1.5, or
//! `_use_new_zipfile_serialization=False`) and the older tar format. All three
//! run the pickle symbolically (`pickle/`), walk the object graph to list
//! tensors with their key paths (`walk.rs`), audit the globals the pickle
//! names (`audit.rs`), and locate each tensor's bytes in the file without
//! reading them. Spec: torch/serialization.py.

mod audit;
pub mod legacy;
pub mod pickle;
mod verdicts;
pub mod walk;
pub mod zip;

use crate::checkpoint::{Checkpoint, PickleAudit, PredictedOffset};
use crate::error::{err, ErrorKind, Result};
use crate::source::{read_vec, ByteSource, Cursor};
pub use audit::{
    audit, audit_reached, classify_global, merge_audit, opcode_name, weights_only_refusal,
};
use pickle::{Pickle, StorageRef, TensorRef};
use rustc_hash::FxHashMap as HashMap;

/// How the note that some offsets are predicted starts (it is dropped once
/// they are confirmed).
pub const PREDICTED_OFFSETS_NOTE: &str = "storage offsets predicted:";

/// data.pkl larger than this is refused: real ones are ~100 bytes a tensor.
pub const MAX_PICKLE_BYTES: u64 = 256 * 1024 * 1024;

/// The dtype a storage class holds, in safetensors naming.
pub fn storage_dtype(storage_type: &str) -> Option<&'static str> {
    Some(match storage_type {
        "FloatStorage" => "F32",
        "DoubleStorage" => "F64",
        "HalfStorage" => "F16",
        "BFloat16Storage" => "BF16",
        "LongStorage" => "I64",
        "IntStorage" => "I32",
        "ShortStorage" => "I16",
        "CharStorage" => "I8",
        "ByteStorage" | "UntypedStorage" => "U8",
        "BoolStorage" => "BOOL",
        "ComplexFloatStorage" => "C64",
        "ComplexDoubleStorage" => "C128",
        "UInt16Storage" => "U16",
        "UInt32Storage" => "U32",
        "UInt64Storage" => "U64",
        "Float8_e4m3fnStorage" => "F8_E4M3",
        "Float8_e5m2Storage" => "F8_E5M2",
        "Float8_e4m3fnuzStorage" => "F8_E4M3FNUZ",
        "Float8_e5m2fnuzStorage" => "F8_E5M2FNUZ",
        "Float8_e8m0fnuStorage" => "F8_E8M0",
        "QInt8Storage" => "QI8",
        "QUInt8Storage" => "QU8",
        "QInt32Storage" => "QI32",
        _ => return None,
    })
}

/// The dtype of a `torch.<dtype>` global (meta tensors name it this way).
pub fn torch_dtype(name: &str) -> Option<&'static str> {
    Some(match name {
        "float32" | "float" => "F32",
        "float64" | "double" => "F64",
        "float16" | "half" => "F16",
        "bfloat16" => "BF16",
        "int64" | "long" => "I64",
        "int32" | "int" => "I32",
        "int16" | "short" => "I16",
        "int8" => "I8",
        "uint8" => "U8",
        "uint16" => "U16",
        "uint32" => "U32",
        "uint64" => "U64",
        "bool" => "BOOL",
        "complex64" => "C64",
        "complex128" => "C128",
        "float8_e4m3fn" => "F8_E4M3",
        "float8_e5m2" => "F8_E5M2",
        "float8_e4m3fnuz" => "F8_E4M3FNUZ",
        "float8_e5m2fnuz" => "F8_E5M2FNUZ",
        "float8_e8m0fnu" => "F8_E8M0",
        "float4_e2m1fn_x2" => "F4",
        _ => return None,
    })
}

/// Bytes per element of a storage, for locating views.
pub fn element_size(dtype: &str) -> u64 {
    crate::checkpoint::dtype_size_bits(dtype).map_or(1, |bits| bits.div_ceil(8))
}

/// Elements a strided view spans from its first element to its last, plus
/// one; `None` on overflow (a hostile shape).
pub fn view_extent(size: &[u64], stride: &[u64]) -> Option<u64> {
    if size.contains(&0) {
        return Some(0);
    }
    let mut last = 0u64;
    for (dim, step) in size.iter().zip(stride) {
        last = last.checked_add((dim - 1).checked_mul(*step)?)?;
    }
    last.checked_add(1)
}

/// Where one storage's bytes are: absolute offset and length.
pub struct StorageLocation {
    pub offset: u64,
    pub nbytes: u64,
    /// Set when `offset` was predicted rather than read from a zip local
    /// header; the tensors of this storage carry it.
    pub predicted: Option<PredictedOffset>,
}

/// A located tensor: dtype, byte offset and span, and whether the offset
/// is a prediction.
pub struct Located {
    pub dtype: &'static str,
    pub offset: Option<u64>,
    pub nbytes: Option<u64>,
    pub predicted: Option<PredictedOffset>,
}

/// Resolve a tensor's dtype and byte range given where its storage lives.
fn locate(tensor: &TensorRef, storages: &HashMap<String, StorageLocation>) -> Result<Located> {
    let Some(storage) = &tensor.storage else {
        let dtype = tensor
            .dtype_override
            .as_deref()
            .and_then(torch_dtype)
            .unwrap_or("F32");
        return Ok(Located {
            dtype,
            offset: None,
            nbytes: None,
            predicted: None,
        });
    };
    let dtype = match tensor.dtype_override.as_deref() {
        Some(name) => Some(torch_dtype(name).ok_or_else(|| {
            err(
                ErrorKind::UnknownDtype,
                format!("unknown dtype torch.{name}"),
            )
        })?),
        None => storage_dtype(&storage.storage_type),
    };
    let dtype = dtype.ok_or_else(|| {
        err(
            ErrorKind::UnknownDtype,
            format!("unknown storage type torch.{}", storage.storage_type),
        )
    })?;
    let element = element_size(dtype);
    // A stride-0 view may span few bytes yet claim more elements than u64
    // counts: torch itself cannot build such a tensor.
    if tensor
        .size
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(*d))
        .is_none()
    {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!(
                "tensor shape {:?} has more elements than u64 counts",
                tensor.size
            ),
        ));
    }
    let extent = view_extent(&tensor.size, &tensor.stride).ok_or_else(|| {
        err(
            ErrorKind::LimitExceeded,
            "tensor shape and stride overflow u64",
        )
    })?;
    let (root_key, view_offset) = match &storage.view {
        Some((_, offset, _)) => (&*storage.key, *offset),
        None => (&*storage.key, 0),
    };
    let Some(location) = storages.get(root_key) else {
        return Err(err(
            ErrorKind::InvalidOffsets,
            format!("storage {root_key:?} is referenced but not in the file"),
        ));
    };
    let first = view_offset
        .checked_add(tensor.storage_offset)
        .ok_or_else(|| err(ErrorKind::LimitExceeded, "storage offset overflows"))?;
    let end_bytes = first
        .checked_add(extent)
        .and_then(|end| end.checked_mul(element))
        .ok_or_else(|| err(ErrorKind::LimitExceeded, "tensor extent overflows"))?;
    if extent > 0 && end_bytes > location.nbytes {
        return Err(err(
            ErrorKind::InvalidOffsets,
            format!(
                "tensor views bytes up to {end_bytes} of storage {root_key:?}, which has {} bytes",
                location.nbytes
            ),
        ));
    }
    // An empty view may sit anywhere (extent 0 skips the range check), so
    // its offset is computed with checks too.
    let offset = first
        .checked_mul(element)
        .and_then(|bytes| bytes.checked_add(location.offset))
        .ok_or_else(|| err(ErrorKind::LimitExceeded, "storage offset overflows"))?;
    Ok(Located {
        dtype,
        offset: Some(offset),
        nbytes: Some(extent * element),
        predicted: location.predicted.clone(),
    })
}

/// Read a `torch.save` zip archive, predicting most storage offsets (see
/// `read_zip_with`).
pub fn read_zip(source: &dyn ByteSource) -> Result<Checkpoint> {
    read_zip_with(source, false)
}

/// Read a `torch.save` zip archive. With `exact_offsets`, every storage's
/// local header is read, so no offset is a prediction.
pub fn read_zip_with(source: &dyn ByteSource, exact_offsets: bool) -> Result<Checkpoint> {
    let name = source.name().to_string();
    let archive = zip::ZipArchive::read(source)?;
    let pickle_entry = archive
        .entries
        .iter()
        .find(|entry| {
            entry.name.ends_with("/data.pkl") && entry.name.matches('/').count() == 1
                || entry.name == "data.pkl"
        })
        .ok_or_else(|| {
            let names: Vec<&str> = archive.entries.iter().map(|e| e.name.as_str()).collect();
            crate::format::archive_pickles::identify_zip_contents(source, &archive)
                .or_else(|| crate::format::not_checkpoint::identify_zip(&name, &names))
                .unwrap_or_else(|| {
                err(ErrorKind::UnsupportedFormat, "zip archive has no data.pkl: not a torch.save checkpoint (a TorchScript or other zip?)")
                    .in_file(&name)
            })
        })?;
    let top = pickle_entry
        .name
        .strip_suffix("data.pkl")
        .unwrap_or("")
        .to_string();
    // Locating the entry first refuses a compressed (zip-bomb) data.pkl as
    // a bad zip before its declared size is even looked at.
    let pickle_start = archive.data_offset(source, pickle_entry)?;
    if pickle_entry.size > MAX_PICKLE_BYTES {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!("data.pkl is {} bytes", pickle_entry.size),
        )
        .in_file(&name));
    }
    let mut cursor = Cursor::with_limit(source, pickle_start, pickle_start + pickle_entry.size);
    let pickle = pickle::interpret(&mut cursor)?;

    let mut checkpoint = Checkpoint::new(&name, "pytorch-zip", source.len());
    for record in [
        "byteorder",
        "version",
        ".format_version",
        ".storage_alignment",
    ] {
        if let Some(entry) = archive.find(&format!("{top}{record}")) {
            if entry.size <= 64 {
                let offset = archive.data_offset(source, entry)?;
                let bytes = read_vec(source, offset, entry.size)?;
                let text = String::from_utf8_lossy(&bytes).trim().to_string();
                checkpoint.metadata.insert(
                    record.trim_start_matches('.').to_string(),
                    serde_json::Value::String(text),
                );
            }
        }
    }
    if checkpoint
        .metadata
        .get("byteorder")
        .and_then(|v| v.as_str())
        == Some("big")
    {
        checkpoint
            .notes
            .push("tensor bytes are big-endian (byteorder record says \"big\")".to_string());
    }

    // Locate only the storages the pickle references.
    let mut storages = HashMap::default();
    let mut entries_by_name: HashMap<&str, &zip::ZipEntry> =
        HashMap::with_capacity_and_hasher(archive.entries.len(), Default::default());
    for entry in &archive.entries {
        entries_by_name.insert(entry.name.as_str(), entry);
    }
    let mut wanted: Vec<(String, &zip::ZipEntry)> = Vec::new();
    let mut entry_name = String::new();
    // Each storage once (referenced_storages keeps the first use of a key).
    for storage in referenced_storages(&pickle) {
        entry_name.clear();
        entry_name.push_str(&top);
        entry_name.push_str("data/");
        entry_name.push_str(&storage.key);
        let entry = entries_by_name.get(entry_name.as_str()).ok_or_else(|| {
            err(
                ErrorKind::BadZip,
                format!(
                    "storage {:?} is referenced but the archive has no {entry_name:?}",
                    storage.key
                ),
            )
            .in_file(&name)
        })?;
        wanted.push((String::from(&*storage.key), entry));
    }
    // One local-header read per storage costs a syscall natively and most of
    // a millisecond per FileReaderSync call in a browser. Files written by
    // torch put data where `torch_data_offset` says: check that on a spread
    // sample of headers and, if every one agrees, use it for the rest as a
    // *prediction*: those tensors carry `predicted_offset`, inspect says so,
    // and whoever reads their bytes (scan, verify) reads the local header
    // first and follows it, as torch does. When any sample disagrees, or
    // `exact` is asked for, every header is read here.
    let sample: Vec<usize> = if wanted.len() > 16 && !exact_offsets {
        let step = wanted.len() / 8;
        (0..wanted.len())
            .step_by(step)
            .chain([wanted.len() - 1])
            .collect()
    } else {
        (0..wanted.len()).collect()
    };
    // Over the network the sampled headers are fetched together, not one
    // round trip each (a local source ignores this).
    let header_ranges: Vec<(u64, u64)> = sample
        .iter()
        .map(|index| {
            let entry = wanted[*index].1;
            (entry.header_offset, 30 + entry.name.len() as u64 + 64)
        })
        .collect();
    source.prefetch(&header_ranges);
    let mut read_offsets: HashMap<usize, u64> =
        HashMap::with_capacity_and_hasher(sample.len(), Default::default());
    storages.reserve(wanted.len());
    let mut predicted = true;
    for index in &sample {
        let entry = wanted[*index].1;
        let offset = archive.data_offset(source, entry)?;
        read_offsets.insert(*index, offset);
        if offset != zip::ZipArchive::torch_data_offset(entry) {
            predicted = false;
        }
    }
    // data.pkl takes part in the overlap check: a storage entry that
    // overlaps the pickle is as broken as two overlapping storages.
    let mut used: Vec<(u64, u64, &str)> = Vec::with_capacity(wanted.len() + 1);
    used.push((
        pickle_start,
        pickle_start + pickle_entry.size,
        &pickle_entry.name,
    ));
    let mut n_predicted = 0usize;
    let n_storages = wanted.len();
    for (index, (key, entry)) in wanted.into_iter().enumerate() {
        // The central directory says whether an entry is stored: a
        // compressed one (or one whose sizes disagree) goes through
        // `data_offset`, which refuses it, even when offsets are predicted.
        let stored = entry.method == 0 && entry.size == entry.compressed_size;
        let (offset, prediction) = match read_offsets.get(&index) {
            Some(offset) => (*offset, None),
            None if predicted && stored => {
                let offset = zip::ZipArchive::torch_data_offset(entry);
                crate::source::check_range(source, offset, entry.size)?;
                n_predicted += 1;
                let prediction = PredictedOffset {
                    entry_name: entry.name.clone(),
                    header_offset: entry.header_offset,
                    entry_size: entry.size,
                    predicted_data_offset: offset,
                };
                (offset, Some(prediction))
            }
            None => (archive.data_offset(source, entry)?, None),
        };
        used.push((offset, offset + entry.size, &entry.name));
        storages.insert(
            key,
            StorageLocation {
                offset,
                nbytes: entry.size,
                predicted: prediction,
            },
        );
    }
    if n_predicted > 0 {
        checkpoint.notes.push(format!(
            "{PREDICTED_OFFSETS_NOTE} {n_predicted} of {n_storages} storages are placed by torch's 64-byte alignment rule, their zip local headers not read (the {} headers read agree with the rule); their tensors say \"offset_predicted\" and scan and verify read each header before using the bytes",
            n_storages - n_predicted
        ));
    }
    used.sort();
    for pair in used.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(err(
                ErrorKind::BadZip,
                format!("zip entries {:?} and {:?} overlap", pair[0].2, pair[1].2),
            )
            .at(pair[1].0)
            .in_file(&name));
        }
    }
    walk::walk(&pickle, &storages, &mut checkpoint).map_err(|e| e.in_file(&name))?;
    record_audit(&mut checkpoint, audit(&[&pickle]));
    checkpoint.bytes_read = source.bytes_read();
    if crate::format::parse_state_left_to_exit() {
        std::mem::forget(used);
        std::mem::forget(entries_by_name);
        std::mem::forget(storages);
        std::mem::forget(pickle);
        std::mem::forget(archive);
    }
    Ok(checkpoint)
}

/// Record a pickle's audit, with a note on what a file that needs code
/// takes to load.
pub fn record_audit(checkpoint: &mut Checkpoint, pickle_audit: PickleAudit) {
    if let Some(note) = audit::needs_code_note(&pickle_audit) {
        checkpoint.notes.push(note);
    }
    checkpoint.pickle_audit = Some(pickle_audit);
}

/// Every storage a pickle's tensors reference, in first-use order.
pub fn referenced_storages(pickle: &Pickle) -> Vec<std::rc::Rc<StorageRef>> {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut out = Vec::new();
    for object in &pickle.objects {
        if let pickle::Object::Native(pickle::TorchObject::Tensor(tensor)) = object {
            let Some(storage) = &tensor.storage else {
                continue;
            };
            if seen.insert(&*storage.key) {
                out.push(storage.clone());
            }
        }
    }
    out
}
