//! The two pre-zip PyTorch formats. Legacy (torch 0.1.10 to 1.5, or
//! `_use_new_zipfile_serialization=False`): five pickles in a row (magic
//! number, protocol version, sys_info, the object, the sorted storage keys)
//! then each storage as an 8-byte element count and its raw bytes. Tar (before
//! 0.1.10): members `storages`, `tensors` and `pickle` whose layout
//! `torch.serialization._legacy_load` still reads. Only the pickles and the
//! per-storage counts are read, never the tensor bytes.

use super::pickle::{self, Object, StorageRef, TensorRef, TorchObject, Value};
use super::{audit, element_size, storage_dtype, walk, StorageLocation};
use crate::checkpoint::Checkpoint;
use crate::error::{err, ErrorKind, Result};
use crate::source::{read_vec, ByteSource, Cursor};
use rustc_hash::FxHashMap as HashMap;

/// `torch.serialization.MAGIC_NUMBER` (0x1950a86a20f9469cfc6c) as LONG1 bytes.
const MAGIC_LONG1: [u8; 12] = [
    0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];
const PROTOCOL_VERSION: i64 = 1001;
const MAX_STORAGES: usize = 10_000_000;

pub fn sniff_legacy(prefix: &[u8]) -> bool {
    prefix.len() >= 14 && prefix[0] == 0x80 && prefix[2..14] == MAGIC_LONG1
}

/// A POSIX tar header: "ustar" magic at byte 257.
pub fn sniff_tar(prefix: &[u8]) -> bool {
    prefix.get(257..262) == Some(b"ustar")
}

fn first_types(objects: &[Object]) -> HashMap<String, String> {
    let mut types = HashMap::default();
    for object in objects {
        let storage = match object {
            Object::Native(TorchObject::Storage(storage)) => storage,
            Object::Native(TorchObject::Tensor(tensor)) => match &tensor.storage {
                Some(storage) => storage,
                None => continue,
            },
            _ => continue,
        };
        types
            .entry(storage.key.to_string())
            .or_insert_with(|| storage.storage_type.to_string());
    }
    types
}

pub fn read_legacy(source: &dyn ByteSource) -> Result<Checkpoint> {
    let name = source.name().to_string();
    let mut cursor = Cursor::new(source, 0);
    // One work budget for the file's five pickles.
    let mut budget = pickle::MAX_WORK;
    let magic = pickle::interpret_within(&mut cursor, &mut budget)?;
    if !matches!(magic.root, Value::BigInt(_)) {
        return Err(err(
            ErrorKind::UnsupportedFormat,
            "not a legacy torch file: bad magic number",
        )
        .at(0)
        .in_file(&name));
    }
    let protocol = pickle::interpret_within(&mut cursor, &mut budget)?;
    if protocol.root != Value::Int(PROTOCOL_VERSION) {
        return Err(err(
            ErrorKind::BadPickle,
            format!(
                "legacy torch protocol version {:?}, expected {PROTOCOL_VERSION}",
                protocol.root
            ),
        )
        .at(magic.end)
        .in_file(&name));
    }
    drop(pickle::interpret_within(&mut cursor, &mut budget)?); // sys_info
    let main = pickle::interpret_within(&mut cursor, &mut budget)?;
    let keys_pickle = pickle::interpret_within(&mut cursor, &mut budget)?;
    let keys: Vec<String> = match keys_pickle.object(&keys_pickle.root) {
        Some(Object::List(items)) => items
            .iter()
            .map(|k| walk::key_text(&keys_pickle, k))
            .collect(),
        _ => {
            return Err(err(
                ErrorKind::BadPickle,
                "legacy storage key list is not a list",
            )
            .at(main.end)
            .in_file(&name))
        }
    };
    if keys.len() > MAX_STORAGES {
        return Err(err(ErrorKind::LimitExceeded, "too many storages").in_file(&name));
    }
    let types = first_types(&main.objects);
    let mut storages = HashMap::default();
    let mut position = keys_pickle.end;
    for key in &keys {
        let storage_type = types.get(key).ok_or_else(|| {
            err(
                ErrorKind::BadPickle,
                format!("storage key {key:?} is listed but never referenced"),
            )
            .at(position)
            .in_file(&name)
        })?;
        let dtype = storage_dtype(storage_type).ok_or_else(|| {
            err(
                ErrorKind::UnknownDtype,
                format!("unknown storage type torch.{storage_type}"),
            )
            .in_file(&name)
        })?;
        let count_bytes = read_vec(source, position, 8)?;
        let numel = u64::from_le_bytes(count_bytes.try_into().unwrap_or([0; 8]));
        let nbytes = numel.checked_mul(element_size(dtype)).ok_or_else(|| {
            err(ErrorKind::LimitExceeded, "storage size overflows")
                .at(position)
                .in_file(&name)
        })?;
        let data = position + 8;
        let end = data
            .checked_add(nbytes)
            .filter(|end| *end <= source.len())
            .ok_or_else(|| {
                err(
                    ErrorKind::Truncated,
                    format!("storage {key:?} declares {nbytes} bytes past the end of the file"),
                )
                .at(position)
                .in_file(&name)
            })?;
        storages.insert(
            key.clone(),
            StorageLocation {
                offset: data,
                nbytes,
                predicted: None,
            },
        );
        position = end;
    }
    let mut checkpoint = Checkpoint::new(&name, "pytorch-legacy", source.len());
    walk::walk(&main, &storages, &mut checkpoint).map_err(|e| e.in_file(&name))?;
    super::record_audit(&mut checkpoint, audit(&[&main]));
    checkpoint.bytes_read = source.bytes_read();
    Ok(checkpoint)
}

struct TarMember {
    data: u64,
    size: u64,
}

fn tar_members(source: &dyn ByteSource) -> Result<HashMap<String, TarMember>> {
    let mut members = HashMap::default();
    let mut position = 0u64;
    for _ in 0..10_000 {
        if position + 512 > source.len() {
            break;
        }
        let header = read_vec(source, position, 512)?;
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).to_string();
        let size_text = String::from_utf8_lossy(&header[124..136]);
        let size = u64::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .map_err(|_| {
                err(
                    ErrorKind::UnsupportedFormat,
                    format!("tar member {name:?} has an invalid size field"),
                )
                .at(position + 124)
            })?;
        let data = position + 512;
        if data.checked_add(size).is_none_or(|end| end > source.len()) {
            return Err(err(
                ErrorKind::Truncated,
                format!("tar member {name:?} runs past the end of the file"),
            )
            .at(position));
        }
        let typeflag = header[156];
        if typeflag == b'0' || typeflag == 0 {
            members.insert(name, TarMember { data, size });
        }
        position = data + size.div_ceil(512) * 512;
    }
    Ok(members)
}

pub fn read_tar(source: &dyn ByteSource) -> Result<Checkpoint> {
    let name = source.name().to_string();
    read_tar_inner(source).map_err(|e| e.in_file(&name))
}

fn read_tar_inner(source: &dyn ByteSource) -> Result<Checkpoint> {
    let name = source.name().to_string();
    let members = tar_members(source)?;
    let member = |wanted: &str| {
        members.get(wanted).ok_or_else(|| {
            err(
                ErrorKind::UnsupportedFormat,
                format!("tar archive has no {wanted:?} member: not a legacy torch checkpoint"),
            )
        })
    };
    let (storages_member, tensors_member, pickle_member) =
        (member("storages")?, member("tensors")?, member("pickle")?);

    // storages: count, then per storage (key, location, type) and its bytes.
    let mut cursor = Cursor::with_limit(
        source,
        storages_member.data,
        storages_member.data + storages_member.size,
    );
    // The storages and tensors members hold one small pickle per record:
    // all the file's pickles share one work budget, so a member of millions
    // of records cannot hold millions of interpreted pickles.
    let mut budget = pickle::MAX_WORK;
    let count = count_pickle(&mut cursor, &mut budget)?;
    let mut storages: HashMap<String, StorageLocation> = HashMap::default();
    let mut storage_types: HashMap<String, String> = HashMap::default();
    let mut auditable = Vec::new();
    for _ in 0..count {
        let record = pickle::interpret_within(&mut cursor, &mut budget)?;
        let items = tuple(&record)?;
        let key = items
            .first()
            .map(|k| walk::key_text(&record, k))
            .unwrap_or_default();
        let storage_type = items
            .get(2)
            .and_then(|t| record.global_name(t))
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        let dtype = storage_dtype(&storage_type).ok_or_else(|| {
            err(
                ErrorKind::UnknownDtype,
                format!("unknown storage type torch.{storage_type}"),
            )
        })?;
        let numel = cursor.u64_le()?;
        let nbytes = numel
            .checked_mul(element_size(dtype))
            .ok_or_else(|| err(ErrorKind::LimitExceeded, "storage size overflows"))?;
        let data = cursor.position();
        if nbytes > cursor.remaining() {
            return Err(err(
                ErrorKind::Truncated,
                format!("storage {key:?} runs past its tar member"),
            )
            .at(data));
        }
        cursor.seek(data + nbytes);
        storages.insert(
            key.clone(),
            StorageLocation {
                offset: data,
                nbytes,
                predicted: None,
            },
        );
        storage_types.insert(key, storage_type);
        auditable.push(record);
    }
    let views = pickle::interpret_within(&mut cursor, &mut budget)?;
    if let Some(Object::List(items)) = views.object(&views.root) {
        for item in items {
            let parts = views.object(item).and_then(|o| match o {
                Object::Tuple(p) => Some(p.clone()),
                _ => None,
            });
            if let Some([target, root, Value::Int(offset), Value::Int(numel)]) = parts.as_deref() {
                let (target, root) = (walk::key_text(&views, target), walk::key_text(&views, root));
                let root_location = storages.get(&root).ok_or_else(|| {
                    err(
                        ErrorKind::BadPickle,
                        format!("view of unknown storage {root:?}"),
                    )
                })?;
                let dtype = storage_types
                    .get(&root)
                    .and_then(|t| storage_dtype(t))
                    .unwrap_or("U8");
                let element = element_size(dtype);
                let start = (*offset as u64)
                    .checked_mul(element)
                    .ok_or_else(|| err(ErrorKind::LimitExceeded, "view offset overflows"))?;
                let len = (*numel as u64)
                    .checked_mul(element)
                    .ok_or_else(|| err(ErrorKind::LimitExceeded, "view size overflows"))?;
                if *offset < 0 || *numel < 0 || start.saturating_add(len) > root_location.nbytes {
                    return Err(err(
                        ErrorKind::InvalidOffsets,
                        format!("storage view {target:?} leaves storage {root:?}"),
                    ));
                }
                let location = StorageLocation {
                    offset: root_location.offset + start,
                    nbytes: len,
                    predicted: None,
                };
                let root_type = storage_types.get(&root).cloned().unwrap_or_default();
                storages.insert(target.clone(), location);
                storage_types.insert(target, root_type);
            }
        }
    }

    // tensors: count, then per tensor (key, storage_id, type) and its geometry.
    let mut cursor = Cursor::with_limit(
        source,
        tensors_member.data,
        tensors_member.data + tensors_member.size,
    );
    let count = count_pickle(&mut cursor, &mut budget)?;
    let mut tensors: HashMap<String, TensorRef> = HashMap::default();
    for _ in 0..count {
        let record = pickle::interpret_within(&mut cursor, &mut budget)?;
        let items = tuple(&record)?;
        let key = items
            .first()
            .map(|k| walk::key_text(&record, k))
            .unwrap_or_default();
        let storage_id = items
            .get(1)
            .map(|k| walk::key_text(&record, k))
            .unwrap_or_default();
        let ndim = cursor.i32_le()?;
        cursor.take(4)?;
        if !(0..=64).contains(&ndim) {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!("tensor {key:?} has {ndim} dimensions"),
            )
            .at(cursor.position()));
        }
        let mut size = Vec::new();
        let mut stride = Vec::new();
        for _ in 0..ndim {
            size.push(nonnegative(cursor.i64_le()?)?);
        }
        for _ in 0..ndim {
            stride.push(nonnegative(cursor.i64_le()?)?);
        }
        let storage_offset = nonnegative(cursor.i64_le()?)?;
        let storage_type = storage_types.get(&storage_id).cloned().ok_or_else(|| {
            err(
                ErrorKind::BadPickle,
                format!("tensor {key:?} uses unknown storage {storage_id:?}"),
            )
        })?;
        tensors.insert(
            key,
            TensorRef {
                storage: Some(std::rc::Rc::new(StorageRef {
                    storage_type: storage_type.into(),
                    key: storage_id.into(),
                    location: "".into(),
                    numel: 0,
                    view: None,
                })),
                dtype_override: None,
                storage_offset,
                size,
                stride,
                quantized: false,
            },
        );
        auditable.push(record);
    }

    let mut cursor = Cursor::with_limit(
        source,
        pickle_member.data,
        pickle_member.data + pickle_member.size,
    );
    let mut main = pickle::interpret_within(&mut cursor, &mut budget)?;
    // Persistent ids in the tar format are tensor (or storage) keys.
    for object in main.objects.iter_mut() {
        if let Object::Persistent { id, .. } = object {
            let key = match id {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                _ => continue,
            };
            if let Some(tensor) = tensors.get(&key) {
                *object = Object::Native(TorchObject::Tensor(Box::new(tensor.clone())));
            }
        }
    }
    let mut checkpoint = Checkpoint::new(&name, "pytorch-tar", source.len());
    walk::walk(&main, &storages, &mut checkpoint)?;
    let mut all: Vec<&pickle::Pickle> = auditable.iter().collect();
    all.push(&main);
    checkpoint.pickle_audit = Some(audit(&all));
    checkpoint.notes.push("pre-0.1.10 tar format: torch.load(weights_only=True) refuses it; weights_only=False is needed".to_string());
    if let Some(audit) = checkpoint.pickle_audit.as_mut() {
        audit.weights_only_loads = false;
    }
    checkpoint.bytes_read = source.bytes_read();
    Ok(checkpoint)
}

fn nonnegative(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| {
        err(
            ErrorKind::BadPickle,
            format!("negative size or stride {value}"),
        )
    })
}

fn count_pickle(cursor: &mut Cursor, budget: &mut u64) -> Result<u64> {
    let position = cursor.position();
    let count = pickle::interpret_within(cursor, budget)?;
    match count.root {
        Value::Int(n) if n >= 0 && (n as usize) <= MAX_STORAGES => Ok(n as u64),
        _ => Err(err(ErrorKind::BadPickle, "expected a record count").at(position)),
    }
}

fn tuple(record: &pickle::Pickle) -> Result<Vec<Value>> {
    match record.object(&record.root) {
        Some(Object::Tuple(items)) | Some(Object::List(items)) => Ok(items.clone()),
        _ => Err(err(ErrorKind::BadPickle, "expected a tuple record").at(record.end)),
    }
}
