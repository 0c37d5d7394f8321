//! GGUF v1, v2 and v3 differ in the width of counts, string lengths and
//! dimensions (u32 in v1, u64 later; ggml docs/gguf.md). The gguf package
//! writes only v3 (tests/formats.rs covers that file), so these files are
//! built here from the spec, byte by byte: the same model in each version
//! must read the same, but v1, which ggml and llama.cpp no longer read
//! ("GGUFv1 is no longer supported"), is refused as they refuse it.

use ckptcheck::format;
use ckptcheck::source::SliceSource;

/// name, dtype, shape, ggml_dims, offset, nbytes.
type Summary = (
    String,
    String,
    Vec<u64>,
    Option<Vec<u64>>,
    Option<u64>,
    Option<u64>,
);

/// One kv (`general.alignment` = 64, u32) and two tensors, F32 [3, 5]
/// (ggml dims [5, 3]) and Q8_0 [2, 32], in GGUF `version`.
fn build(version: u32) -> Vec<u8> {
    let wide = version >= 2;
    let mut bytes = b"GGUF".to_vec();
    let count = |bytes: &mut Vec<u8>, n: u64| {
        if wide {
            bytes.extend_from_slice(&n.to_le_bytes());
        } else {
            bytes.extend_from_slice(&(n as u32).to_le_bytes());
        }
    };
    let string = |bytes: &mut Vec<u8>, text: &str| {
        if wide {
            bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
        } else {
            bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(text.as_bytes());
    };
    bytes.extend_from_slice(&version.to_le_bytes());
    count(&mut bytes, 2);
    count(&mut bytes, 2);
    string(&mut bytes, "general.alignment");
    bytes.extend_from_slice(&4u32.to_le_bytes());
    bytes.extend_from_slice(&64u32.to_le_bytes());
    string(&mut bytes, "general.name");
    bytes.extend_from_slice(&8u32.to_le_bytes());
    string(&mut bytes, "tiny");
    let tensors: [(&str, [u64; 2], u32, u64); 2] =
        [("a.weight", [5, 3], 0, 0), ("b.weight", [32, 2], 8, 64)];
    for (name, dims, ggml_type, offset) in tensors {
        string(&mut bytes, name);
        bytes.extend_from_slice(&2u32.to_le_bytes());
        for dim in dims {
            count(&mut bytes, dim);
        }
        bytes.extend_from_slice(&ggml_type.to_le_bytes());
        bytes.extend_from_slice(&offset.to_le_bytes());
    }
    let data_start = bytes.len().div_ceil(64) * 64;
    // F32 [3, 5] = 60 bytes at 0; Q8_0 [2, 32] = 2 blocks of 34 bytes at
    // 64, padded to 64 as every writer does (ggml reads the padded total).
    bytes.resize(data_start + 64 + 128, 0);
    bytes
}

#[test]
fn the_same_model_reads_the_same_in_every_version() {
    let v1 = format::read_checkpoint(&SliceSource::new("tiny.gguf", &build(1)))
        .expect_err("ggml refuses v1");
    assert_eq!(v1.kind, ckptcheck::ErrorKind::BadGguf);
    assert!(v1.message.contains("GGUFv1 is no longer supported"), "{v1}");
    for version in [2, 3] {
        let bytes = build(version);
        let checkpoint = format::read_checkpoint(&SliceSource::new("tiny.gguf", &bytes))
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
        let data_start = (bytes.len() - 64 - 128) as u64;
        assert_eq!(checkpoint.metadata["gguf.version"], version, "v{version}");
        assert_eq!(checkpoint.metadata["gguf.alignment"], 64, "v{version}");
        assert_eq!(checkpoint.metadata["general.name"], "tiny", "v{version}");
        let summary: Vec<Summary> = checkpoint
            .tensors
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.dtype.clone(),
                    t.shape.clone(),
                    t.ggml_dims.clone(),
                    t.offset,
                    t.nbytes,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "a.weight".into(),
                    "F32".into(),
                    vec![3, 5],
                    Some(vec![5, 3]),
                    Some(data_start),
                    Some(60)
                ),
                (
                    "b.weight".into(),
                    "Q8_0".into(),
                    vec![2, 32],
                    Some(vec![32, 2]),
                    Some(data_start + 64),
                    Some(68)
                ),
            ],
            "v{version}"
        );
    }
}

#[test]
fn a_row_that_is_not_whole_blocks_is_refused() {
    let mut bytes = build(3);
    // Make b.weight's inner dimension 33: not a multiple of Q8_0's 32.
    let needle = 32u64.to_le_bytes();
    let at = bytes.windows(8).rposition(|w| w == needle).expect("dim");
    bytes[at..at + 8].copy_from_slice(&33u64.to_le_bytes());
    let error = format::read_checkpoint(&SliceSource::new("tiny.gguf", &bytes))
        .expect_err("33 is not whole blocks");
    assert_eq!(error.kind, ckptcheck::ErrorKind::BadGguf);
    assert_eq!(error.tensor.as_deref(), Some("b.weight"));
}
