//! The layout of the CLI's `--json` output: the outer two levels spread over
//! lines and indented as `serde_json`'s pretty printer does, everything
//! deeper on one line. A listing is then one line per tensor (or finding,
//! or value), which is what a person scrolling it or a `grep bias` wants,
//! and it is a third smaller than fully pretty JSON (a ViT-H-14 `.pt`
//! listing: 215 KB against 321 KB), which a script reading it through a pipe
//! pays for byte by byte. The JSON values are the same either way.
//!
//! `inspect --json` writes its tensor lines itself rather than through
//! serde: they are almost all of a listing's bytes, and serde's event per
//! bracket, comma and key made the JSON ~0.2 ms of the 2.5 ms process on a
//! 3.8 GB `.pt` (issue 17; ~0.1 ms less this way, measured on the whole
//! process). The test below holds that writer to serde's output, byte for
//! byte, over every checkpoint among the fixtures.

use ckptcheck::checkpoint::{Checkpoint, TensorInfo};
use serde_json::ser::{CompactFormatter, Formatter};
use std::io::{self, Write};

/// Containers nested deeper than this are written on one line.
const SPREAD_LEVELS: usize = 2;

/// A `serde_json` formatter: pretty for the containers of the outer
/// `SPREAD_LEVELS` levels (two spaces a level, as `PrettyFormatter`),
/// compact inside them.
pub struct ListingFormatter {
    /// Containers open at this point of the output.
    depth: usize,
    /// Whether the spread container now open has a value yet (an empty one
    /// closes on the line it opened).
    has_value: bool,
}

impl ListingFormatter {
    /// For a value written `depth` containers deep.
    pub fn at_depth(depth: usize) -> Self {
        ListingFormatter {
            depth,
            has_value: false,
        }
    }

    /// Whether the container now open is spread over lines.
    fn spread(&self) -> bool {
        self.depth <= SPREAD_LEVELS
    }

    fn open<W: ?Sized + Write>(&mut self, writer: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        writer.write_all(bracket)
    }

    /// A spread container that holds values closes on a line of its own.
    fn close<W: ?Sized + Write>(&mut self, writer: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.depth < SPREAD_LEVELS && self.has_value {
            writer.write_all(b"\n")?;
            indent(writer, self.depth)?;
        }
        writer.write_all(bracket)
    }

    /// Before an array's value or an object's key: a new line in a spread
    /// container, a comma alone in a compact one.
    fn begin_value<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if self.spread() {
            writer.write_all(if first { b"\n" } else { b",\n" })?;
            indent(writer, self.depth)
        } else {
            CompactFormatter.begin_array_value(writer, first)
        }
    }
}

fn indent<W: ?Sized + Write>(writer: &mut W, depth: usize) -> io::Result<()> {
    for _ in 0..depth {
        writer.write_all(b"  ")?;
    }
    Ok(())
}

/// Writes `value` to `out` in the listing layout.
pub fn write_listing<W: Write, T: serde::Serialize + ?Sized>(
    out: W,
    value: &T,
) -> serde_json::Result<()> {
    write_at_depth(out, value, 0)
}

fn write_at_depth<W: Write, T: serde::Serialize + ?Sized>(
    out: W,
    value: &T,
    depth: usize,
) -> serde_json::Result<()> {
    let mut serializer =
        serde_json::Serializer::with_formatter(out, ListingFormatter::at_depth(depth));
    value.serialize(&mut serializer)
}

/// Opening and closing a container is decided by that container's own
/// level; everything between by the level of the container it is in.
impl Formatter for ListingFormatter {
    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open(writer, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.close(writer, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.begin_value(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open(writer, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.close(writer, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.begin_value(writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(if self.spread() { b": " } else { b":" })
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// `inspect --json`'s listing of a checkpoint, as `write_listing` lays it
/// out, with the tensor lines written directly.
pub fn write_checkpoint(out: &mut Vec<u8>, checkpoint: &Checkpoint) -> serde_json::Result<()> {
    let Checkpoint {
        file,
        format,
        file_bytes,
        bytes_read,
        tensors,
        values,
        metadata,
        pickle_audit,
        notes,
        state_dict_metadata: _,
        root_keys: _,
        adapter_config,
    } = checkpoint;
    let mut numbers = itoa::Buffer::new();
    out.extend_from_slice(b"{\n  \"file\": ");
    write_str(out, file)?;
    out.extend_from_slice(b",\n  \"format\": ");
    write_str(out, format)?;
    out.extend_from_slice(b",\n  \"file_bytes\": ");
    out.extend_from_slice(numbers.format(*file_bytes).as_bytes());
    out.extend_from_slice(b",\n  \"bytes_read\": ");
    out.extend_from_slice(numbers.format(*bytes_read).as_bytes());
    out.extend_from_slice(b",\n  \"tensors\": [");
    for (index, tensor) in tensors.iter().enumerate() {
        out.extend_from_slice(if index == 0 { b"\n    " } else { b",\n    " });
        write_tensor(out, tensor, &mut numbers)?;
    }
    if !tensors.is_empty() {
        out.extend_from_slice(b"\n  ");
    }
    out.push(b']');
    write_field(out, "values", values)?;
    write_field(out, "metadata", metadata)?;
    if let Some(audit) = pickle_audit {
        write_field(out, "pickle_audit", audit)?;
    }
    write_field(out, "notes", notes)?;
    if let Some(config) = adapter_config {
        write_field(out, "adapter_config", config)?;
    }
    out.extend_from_slice(b"\n}");
    Ok(())
}

/// One more key of the listing's outer object, its value through serde.
fn write_field<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    key: &str,
    value: &T,
) -> serde_json::Result<()> {
    out.extend_from_slice(b",\n  ");
    write_str(out, key)?;
    out.extend_from_slice(b": ");
    write_at_depth(&mut *out, value, 1)
}

/// A tensor's line, with the fields and skipped `None`s of its `Serialize`.
fn write_tensor(
    out: &mut Vec<u8>,
    tensor: &TensorInfo,
    numbers: &mut itoa::Buffer,
) -> serde_json::Result<()> {
    let TensorInfo {
        path,
        name,
        dtype,
        shape,
        offset,
        nbytes,
        ggml_dims,
        stride,
        storage,
        file,
        predicted_offset,
    } = tensor;
    out.extend_from_slice(b"{\"path\":[");
    for (index, key) in path.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(out, key)?;
    }
    out.extend_from_slice(b"],\"name\":");
    write_str(out, name)?;
    out.extend_from_slice(b",\"dtype\":");
    write_str(out, dtype)?;
    out.extend_from_slice(b",\"shape\":");
    write_numbers(out, shape, numbers);
    if let Some(offset) = offset {
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(numbers.format(*offset).as_bytes());
    }
    if let Some(nbytes) = nbytes {
        out.extend_from_slice(b",\"nbytes\":");
        out.extend_from_slice(numbers.format(*nbytes).as_bytes());
    }
    if let Some(dims) = ggml_dims {
        out.extend_from_slice(b",\"ggml_dims\":");
        write_numbers(out, dims, numbers);
    }
    if let Some(stride) = stride {
        out.extend_from_slice(b",\"stride\":");
        write_numbers(out, stride, numbers);
    }
    if let Some(storage) = storage {
        out.extend_from_slice(b",\"storage\":");
        write_str(out, storage)?;
    }
    if let Some(file) = file {
        out.extend_from_slice(b",\"file\":");
        write_str(out, file)?;
    }
    if predicted_offset.is_some() {
        out.extend_from_slice(b",\"offset_predicted\":true");
    }
    out.push(b'}');
    Ok(())
}

fn write_numbers(out: &mut Vec<u8>, values: &[u64], numbers: &mut itoa::Buffer) {
    out.push(b'[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(numbers.format(*value).as_bytes());
    }
    out.push(b']');
}

/// A JSON string: copied between quotes when nothing in it needs escaping
/// (names nearly always), else escaped by serde_json itself.
fn write_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    // Folded without stopping early, so the check runs 32 bytes at a time.
    let plain = !text.bytes().fold(false, |escape, byte| {
        escape | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout(value: &serde_json::Value) -> String {
        let mut out = Vec::new();
        write_listing(&mut out, value).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn the_outer_two_levels_are_spread_and_each_item_below_is_one_line() {
        let listing = json!({
            "file": "a.pt",
            "tensors": [
                {"name": "w", "shape": [2, 3], "stride": [3, 1]},
                {"name": "b", "shape": [], "meta": {"k": [1]}}
            ],
            "empty": [],
            "notes": {}
        });
        // (serde_json's maps here keep their keys sorted.)
        let expected = r#"{
  "empty": [],
  "file": "a.pt",
  "notes": {},
  "tensors": [
    {"name":"w","shape":[2,3],"stride":[3,1]},
    {"meta":{"k":[1]},"name":"b","shape":[]}
  ]
}"#;
        assert_eq!(layout(&listing), expected);
    }

    /// Every checkpoint file among the fixtures that reads, and one tensor
    /// with every optional field set and names that need escaping.
    fn checkpoints() -> Vec<Checkpoint> {
        let mut folders = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures"
        ))];
        let mut files = Vec::new();
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("fixtures").flatten() {
                let path = entry.path();
                let size = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                if path.is_dir() {
                    folders.push(path);
                } else if size < 8 << 20
                    && matches!(
                        path.extension().and_then(|e| e.to_str()),
                        Some("pt" | "pth" | "bin" | "ckpt" | "safetensors" | "gguf")
                    )
                {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut checkpoints: Vec<Checkpoint> = files
            .iter()
            .filter_map(|path| {
                let source = ckptcheck::source::FileSource::open(path).ok()?;
                ckptcheck::format::read_files(&[&source]).ok()
            })
            .collect();
        let mut odd = Checkpoint::new("we\"ird\\dir/\u{1}f\u{e9}.pt", "pytorch-zip", 7);
        let mut tensor = TensorInfo::new("a\tb\"c", "F16", vec![2, 0, 3]);
        tensor.path = vec!["state\ndict".into(), "a\tb\"c".into()];
        tensor.offset = Some(u64::MAX);
        tensor.nbytes = Some(0);
        tensor.ggml_dims = Some(vec![3, 0, 2]);
        tensor.stride = Some(vec![]);
        tensor.storage = Some("\u{7f}".into());
        tensor.file = Some("model-00001-of-00002.safetensors".into());
        odd.tensors = vec![tensor.clone(), TensorInfo::new("b", "F32", vec![])];
        odd.notes = vec!["a \"note\"".into()];
        odd.adapter_config = Some(json!({"r": 8, "target_modules": ["q", "v"]}));
        checkpoints.push(odd);
        checkpoints
    }

    #[test]
    fn the_inspect_listing_is_what_serde_lays_out() {
        let checkpoints = checkpoints();
        assert!(
            checkpoints.len() > 40,
            "{} fixtures read",
            checkpoints.len()
        );
        let formats: std::collections::BTreeSet<&str> =
            checkpoints.iter().map(|c| c.format.as_str()).collect();
        assert!(formats.len() >= 4, "{formats:?}");
        assert!(checkpoints.iter().any(|c| c.pickle_audit.is_some()));
        assert!(checkpoints
            .iter()
            .any(|c| c.tensors.iter().any(|t| t.predicted_offset.is_some())));
        for checkpoint in &checkpoints {
            let mut fast = Vec::new();
            write_checkpoint(&mut fast, checkpoint).expect("write");
            let mut serde = Vec::new();
            write_listing(&mut serde, checkpoint).expect("write");
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&serde),
                "{}",
                checkpoint.file
            );
            let read: serde_json::Value = serde_json::from_slice(&fast).expect("valid JSON");
            assert_eq!(read, serde_json::to_value(checkpoint).expect("value"));
        }
    }

    #[test]
    fn the_values_are_the_same_as_pretty_json() {
        let cases = [
            json!(null),
            json!([1, [2, [3, [4]]], {"a": {"b": {"c": [5, "six"]}}}]),
            json!({"error": {"kind": "bad_pickle", "offset": 7, "chain": [["x", 1]]}}),
            json!({"s": "quote \" and newline \n", "f": 1.5, "n": -3}),
        ];
        for value in cases {
            let written = layout(&value);
            let read: serde_json::Value = serde_json::from_str(&written).expect("valid JSON");
            assert_eq!(read, value, "{written}");
        }
    }
}
