//! safetensors: reads the 8-byte length and the JSON header only, validated by
//! the rules of the `safetensors` crate's own `Metadata` (contiguous offsets,
//! exact sizes, checked arithmetic), restated in u64 so that wasm32 reads
//! files over 4 GiB and hostile sizes get the same errors everywhere (a test
//! holds the two to the same verdicts), plus the rules that need the file
//! length (data ends exactly at EOF) and duplicate names, which serde's map
//! silently merges.
//! Spec: huggingface/safetensors README, `safetensors/src/tensor.rs`.

use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::error::{err, ErrorKind, Result};
use crate::source::{read_vec, ByteSource};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The safetensors crate refuses headers above this size; so do we.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// True when the first bytes look like a safetensors header: a plausible
/// little-endian length followed by `{`. A length that runs past the end of
/// the file (a truncated download) or past any sane size still counts when
/// the 8 bytes are binary rather than JSON text, so the reader can say what
/// is wrong instead of "not a recognised checkpoint".
pub fn sniff(prefix: &[u8], file_len: u64) -> bool {
    let Some(length_bytes) = prefix.get(..8) else {
        return false;
    };
    // The JSON header may start with whitespace: the safetensors crate
    // (0.8) accepts it, so do the loaders.
    let first = prefix.get(8..).and_then(|rest| {
        rest.iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    });
    if first != Some(&b'{') {
        return false;
    }
    let mut array = [0u8; 8];
    array.copy_from_slice(length_bytes);
    let header_len = u64::from_le_bytes(array);
    let in_file = header_len >= 2 && header_len <= file_len.saturating_sub(8);
    let binary = !length_bytes
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    in_file || binary
}

pub fn read(source: &dyn ByteSource) -> Result<Checkpoint> {
    let name = source.name().to_string();
    let length_bytes = read_vec(source, 0, 8).map_err(|e| {
        err(
            ErrorKind::Truncated,
            format!(
                "file is {} bytes, too short for a safetensors header length",
                source.len()
            ),
        )
        .in_file(&e.file.unwrap_or_default())
    })?;
    let mut array = [0u8; 8];
    array.copy_from_slice(&length_bytes);
    let header_len = u64::from_le_bytes(array);
    if header_len > MAX_HEADER_BYTES {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!(
                "safetensors header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
            ),
        )
        .at(0)
        .in_file(&name));
    }
    if header_len > source.len().saturating_sub(8) {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "safetensors header claims {header_len} bytes but the file has only {} after the length",
                source.len().saturating_sub(8)
            ),
        )
        .at(0)
        .in_file(&name));
    }
    let header = read_vec(source, 8, header_len)?;
    let text = std::str::from_utf8(&header).map_err(|e| {
        err(
            ErrorKind::InvalidHeader,
            format!("header is not UTF-8: {e}"),
        )
        .at(8 + e.valid_up_to() as u64)
        .in_file(&name)
    })?;
    let header =
        parse_header(text).map_err(|(kind, message)| err(kind, message).at(8).in_file(&name))?;
    // By name, each name once: a repeated name keeps its last entry, as
    // serde's map (and so the crate) does; the repetition itself is refused
    // below, after the checks the crate makes.
    let mut by_name: Vec<(usize, &String, &Entry)> = header
        .tensors
        .iter()
        .enumerate()
        .map(|(index, (tensor_name, entry))| (index, tensor_name, entry))
        .collect();
    by_name.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));
    let mut repeated = false;
    let mut unique: Vec<(&String, &Entry)> = Vec::with_capacity(by_name.len());
    for (position, (_, tensor_name, entry)) in by_name.iter().enumerate() {
        if by_name
            .get(position + 1)
            .is_some_and(|next| next.1 == *tensor_name)
        {
            repeated = true;
            continue;
        }
        unique.push((tensor_name, entry));
    }
    let mut entries = unique.clone();
    entries.sort_by_key(|(_, entry)| entry.data_offsets);
    let data_len = validate(&entries).map_err(|(kind, message, tensor)| {
        let error = err(kind, format!("invalid safetensors header: {message}"))
            .at(8)
            .in_file(&name);
        match tensor {
            Some(tensor) => error.for_tensor(&tensor),
            None => error,
        }
    })?;
    let data_start = 8 + header_len;
    let expected_end = data_start
        .checked_add(data_len)
        .ok_or_else(|| err(ErrorKind::InvalidOffsets, "data length overflows").in_file(&name))?;
    if expected_end > source.len() {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "tensor data ends at byte {expected_end} but the file has only {} bytes",
                source.len()
            ),
        )
        .at(data_start)
        .in_file(&name));
    }
    if expected_end != source.len() {
        return Err(err(
            ErrorKind::InvalidOffsets,
            format!(
                "tensor data ends at byte {expected_end} but the file has {} bytes",
                source.len()
            ),
        )
        .at(data_start)
        .in_file(&name));
    }
    let mut checkpoint = Checkpoint::new(&name, "safetensors", source.len());
    // safetensors.torch.load_file builds its dict from `safe_open.keys()`,
    // which is sorted by name: keep that order so "unexpected keys" come out
    // in the order PyTorch prints them.
    checkpoint.tensors.reserve(unique.len());
    for (tensor_name, entry) in unique {
        let dtype = format!("{:?}", entry.dtype);
        let mut tensor = TensorInfo::new(tensor_name.clone(), dtype, entry.shape.clone());
        // In the file: validated above (contiguous, ending at data_len).
        tensor.offset = Some(data_start + entry.data_offsets.0);
        tensor.nbytes = Some(entry.data_offsets.1 - entry.data_offsets.0);
        checkpoint.tensors.push(tensor);
    }
    if repeated {
        // The first name, in file order, that came before.
        let mut seen = std::collections::BTreeSet::new();
        let duplicate = header
            .tensors
            .iter()
            .map(|(tensor_name, _)| tensor_name)
            .find(|tensor_name| !seen.insert(tensor_name.as_str()))
            .cloned()
            .unwrap_or_default();
        return Err(err(
            ErrorKind::InvalidHeader,
            format!("duplicate tensor name {duplicate:?} in safetensors header"),
        )
        .at(8)
        .in_file(&name)
        .for_tensor(&duplicate));
    }
    if let Some(user_metadata) = header.metadata {
        for (key, value) in user_metadata {
            checkpoint
                .metadata
                .insert(key, serde_json::Value::String(value));
        }
    }
    checkpoint.notes.push(format!(
        "this is safetensors, not a torch.save file: a `torch.load` without safetensors support fails on it with \"invalid load key, '{}'\" (its first byte); load it with `safetensors.torch.load_file(path)` (or `from_pretrained`)",
        python_byte(array[0])
    ));
    checkpoint.bytes_read = source.bytes_read();
    Ok(checkpoint)
}

/// A byte as CPython's unpickler prints it in "invalid load key" (`%c` for
/// printable ASCII, `\x..` otherwise).
fn python_byte(byte: u8) -> String {
    if (0x20..0x7f).contains(&byte) {
        (byte as char).to_string()
    } else {
        format!("\\x{byte:02x}")
    }
}

/// One header entry, with sizes in u64: the safetensors crate's
/// `TensorInfo` holds them in usize, which on wasm32 cannot hold the offsets
/// of a file over 4 GiB (the page would refuse such files, and hostile sizes
/// would get other errors in the browser than natively).
#[derive(Deserialize)]
struct Entry {
    dtype: safetensors::Dtype,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// The header as the crate's `HashMetadata` reads it: `__metadata__` (a
/// string map, or null) and the tensors, here in file order with repeated
/// names kept (the crate's map keeps the last of each).
struct Header {
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<(String, Entry)>,
}

/// Reads the header in one pass over the JSON. The crate's derived
/// `#[serde(flatten)]` reader buffers every value of the header in serde's
/// generic content tree before it reads them as entries, which was most of
/// the time and memory an inspect of a safetensors file took.
impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = Header;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut metadata = None;
                let mut metadata_seen = false;
                let mut tensors = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(key) = map.next_key::<String>()? {
                    if key == "__metadata__" {
                        if metadata_seen {
                            return Err(serde::de::Error::duplicate_field("__metadata__"));
                        }
                        metadata_seen = true;
                        metadata = map.next_value()?;
                    } else {
                        let entry = map.next_value::<Entry>()?;
                        tensors.push((key, entry));
                    }
                }
                Ok(Header { metadata, tensors })
            }
        }
        deserializer.deserialize_map(HeaderVisitor)
    }
}

/// The header, or the kind and text of what is wrong with it. The crate
/// reads the whole JSON before the type of any value in it (serde's
/// flatten), so a syntax error anywhere is what it reports first; a value
/// of the wrong type is looked at again as plain JSON to keep that order.
fn parse_header(text: &str) -> std::result::Result<Header, (ErrorKind, String)> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Header::deserialize(&mut deserializer)
        .and_then(|header| deserializer.end().map(|()| header));
    parsed.map_err(|e| {
        if let Err(message) = check_json_object(text) {
            return (ErrorKind::InvalidHeader, message);
        }
        (
            classify_metadata_error(&e.to_string()),
            format!("invalid safetensors header: {e}"),
        )
    })
}

/// The safetensors crate's `Metadata::validate`, in u64 (tests compare the
/// two on every fixture): entries sorted by offset are contiguous from 0,
/// and each spans exactly numel x dtype bits / 8 bytes, with checked
/// arithmetic. Returns the data length.
fn validate(
    entries: &[(&String, &Entry)],
) -> std::result::Result<u64, (ErrorKind, String, Option<String>)> {
    let mut start = 0u64;
    for (tensor_name, entry) in entries {
        let (begin, end) = entry.data_offsets;
        let tensor = Some(tensor_name.to_string());
        if begin != start || end < begin {
            return Err((
                ErrorKind::InvalidOffsets,
                format!("invalid offset for tensor `{tensor_name}`"),
                tensor,
            ));
        }
        start = end;
        let bits = entry
            .shape
            .iter()
            .try_fold(1u64, |acc, dim| acc.checked_mul(*dim))
            .and_then(|numel| numel.checked_mul(entry.dtype.bitsize() as u64))
            .ok_or_else(|| {
                (
                    ErrorKind::InvalidOffsets,
                    "overflow computing buffer size from shape and/or element type".to_string(),
                    tensor.clone(),
                )
            })?;
        if bits % 8 != 0 {
            return Err((
                ErrorKind::InvalidOffsets,
                "sub-byte elements that do not end at a byte boundary".to_string(),
                tensor,
            ));
        }
        if end - begin != bits / 8 {
            return Err((
                ErrorKind::InvalidOffsets,
                format!(
                    "invalid shape, data type, or offset for tensor: {} bytes for {} bytes of elements",
                    end - begin,
                    bits / 8
                ),
                tensor,
            ));
        }
    }
    Ok(start)
}

fn classify_metadata_error(message: &str) -> ErrorKind {
    // The safetensors crate's errors reach us through serde as text (its
    // `Display`), so the kind is recovered from the wording.
    if message.contains("unknown variant") {
        ErrorKind::UnknownDtype
    } else if message.contains("invalid offset")
        || message.contains("invalid shape, data type, or offset")
        || message.contains("overflow computing buffer size")
        || message.contains("not end up at a byte boundary")
    {
        ErrorKind::InvalidOffsets
    } else {
        ErrorKind::InvalidHeader
    }
}

/// Whether the text is one JSON object (of any values), and if not, why.
fn check_json_object(text: &str) -> std::result::Result<(), String> {
    struct AnyObject;
    impl<'de> Visitor<'de> for AnyObject {
        type Value = ();
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer
        .deserialize_map(AnyObject)
        .and_then(|()| deserializer.end())
        .map_err(|e| format!("invalid safetensors header JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SliceSource;

    fn file_with_header(header: &str, data_len: usize) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data_len));
        bytes
    }

    fn read_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        read(&SliceSource::new("t.safetensors", bytes))
    }

    #[test]
    fn a_header_with_leading_whitespace_is_safetensors_as_the_crate_says() {
        // The safetensors crate 0.8 (and so its Python loaders) accepts it.
        let header = "  \n{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        let bytes = file_with_header(header, 8);
        assert!(safetensors::SafeTensors::deserialize(&bytes).is_ok());
        assert!(sniff(&bytes[..bytes.len().min(64)], bytes.len() as u64));
        let checkpoint = read_bytes(&bytes).unwrap();
        assert_eq!(checkpoint.tensors[0].shape, vec![2]);
        assert_eq!(
            crate::format::detect(&SliceSource::new("t.safetensors", &bytes)).unwrap(),
            crate::format::Format::Safetensors
        );
    }

    #[test]
    fn headers_are_accepted_and_refused_as_the_crate_does() {
        // (header, data bytes, what ckptcheck says when it refuses), each
        // also read by the safetensors crate 0.8: the same verdict.
        let w = r#""w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
        let cases: Vec<(String, usize, Option<ErrorKind>)> = vec![
            (format!("{{{w}}}"), 8, None),
            (format!(r#"{{"__metadata__":null,{w}}}"#), 8, None),
            (format!(r#"{{"__metadata__":{{"a":"b"}},{w}}}"#), 8, None),
            (format!("{{{w}}}    "), 8, None),
            (
                r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}}"#.to_string(),
                8,
                None,
            ),
            (
                format!(r#"{{"__metadata__":{{}},"__metadata__":{{}},{w}}}"#),
                8,
                Some(ErrorKind::InvalidHeader),
            ),
            (format!("{{{w}}} x"), 8, Some(ErrorKind::InvalidHeader)),
            (
                format!(r#"{{"__metadata__":{{"a":1}},{w}}}"#),
                8,
                Some(ErrorKind::InvalidHeader),
            ),
            (
                r#"{"w":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}}"#.to_string(),
                8,
                Some(ErrorKind::UnknownDtype),
            ),
            // An unknown dtype early and broken JSON later: the crate reads
            // the JSON first.
            (
                r#"{"w":{"dtype":"F99","shape":[2],"data_offsets":[0,8]},"#.to_string(),
                8,
                Some(ErrorKind::InvalidHeader),
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#.to_string(),
                8,
                Some(ErrorKind::InvalidOffsets),
            ),
        ];
        for (header, data, refusal) in cases {
            let bytes = file_with_header(&header, data);
            let crate_accepts = safetensors::SafeTensors::deserialize(&bytes).is_ok();
            let ours = read_bytes(&bytes);
            assert_eq!(ours.is_ok(), crate_accepts, "{header}: {:?}", ours.err());
            assert_eq!(ours.err().map(|e| e.kind), refusal, "{header}");
        }
        // A repeated name: the crate keeps the last entry (here a valid
        // file); ckptcheck refuses it, naming the tensor.
        let repeated = format!(r#"{{"w":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}},{w}}}"#);
        let bytes = file_with_header(&repeated, 8);
        assert!(safetensors::SafeTensors::deserialize(&bytes).is_ok());
        let error = read_bytes(&bytes).expect_err("refused");
        assert_eq!(error.kind, ErrorKind::InvalidHeader);
        assert!(
            error.message.contains("duplicate tensor name \"w\""),
            "{error}"
        );
    }

    #[test]
    fn reads_names_shapes_offsets_and_metadata() {
        let header = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let bytes = file_with_header(header, 12);
        let checkpoint = read_bytes(&bytes).unwrap();
        let start = 8 + header.len() as u64;
        assert_eq!(checkpoint.tensors.len(), 2);
        assert_eq!(checkpoint.tensors[0].name, "a");
        assert_eq!(checkpoint.tensors[0].offset, Some(start));
        assert_eq!(checkpoint.tensors[1].dtype, "F16");
        assert_eq!(checkpoint.tensors[1].offset, Some(start + 8));
        assert_eq!(checkpoint.metadata["format"], "pt");
        assert_eq!(checkpoint.bytes_read, start);
    }

    #[test]
    fn each_broken_header_gets_its_error_kind() {
        let cases: &[(&str, usize, ErrorKind)] = &[
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                4,
                ErrorKind::Truncated,
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                12,
                ErrorKind::InvalidOffsets,
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                12,
                ErrorKind::InvalidOffsets,
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                8,
                ErrorKind::InvalidOffsets,
            ),
            (
                r#"{"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}}"#,
                8,
                ErrorKind::UnknownDtype,
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                8,
                ErrorKind::InvalidHeader,
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
                8,
                ErrorKind::InvalidOffsets,
            ),
            ("{not json", 0, ErrorKind::InvalidHeader),
        ];
        for (header, data_len, kind) in cases {
            let error = read_bytes(&file_with_header(header, *data_len)).unwrap_err();
            assert_eq!(error.kind, *kind, "{header}: {error}");
            assert_eq!(error.file.as_deref(), Some("t.safetensors"));
        }
    }

    #[test]
    fn header_length_beyond_the_file_or_the_cap_is_refused_without_allocating() {
        let mut bytes = (1u64 << 63).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert_eq!(
            read_bytes(&bytes).unwrap_err().kind,
            ErrorKind::LimitExceeded
        );
        let mut bytes = 50u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert_eq!(read_bytes(&bytes).unwrap_err().kind, ErrorKind::Truncated);
        assert_eq!(read_bytes(b"abc").unwrap_err().kind, ErrorKind::Truncated);
    }
}
