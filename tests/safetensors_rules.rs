//! The safetensors crate's own reader is the rule: on each kind of header
//! its test suite covers (safetensors/src/tensor.rs: too small, too large,
//! a length past the file, not UTF-8, not JSON, whitespace before and after
//! the JSON, zero-sized tensors, offsets that disagree with the shape,
//! shapes that overflow), ckptcheck accepts exactly what
//! `SafeTensors::deserialize` accepts. The bytes are written here, case by
//! case, to the same rules.

use ckptcheck::format;
use ckptcheck::source::SliceSource;

/// A safetensors file: the 8-byte length, the header, the data.
fn file(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn ckptcheck_accepts_what_the_safetensors_crate_accepts() {
    let tensor = br#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    let mut length_past_file = file(tensor, &[0; 16]);
    length_past_file[..8].copy_from_slice(&4096u64.to_le_bytes());
    let mut huge_length = file(tensor, &[0; 16]);
    huge_length[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> =
        vec![
        ("an empty file", Vec::new()),
        ("a length and nothing else", 9u64.to_le_bytes().to_vec()),
        ("a length past the end of the file", length_past_file),
        ("a length of 2^62", huge_length),
        ("a header that is not UTF-8", file(b"\xfe\xff", &[])),
        ("a header that is not JSON", file(b"{\"w\":", &[])),
        ("an empty header padded after", file(b"{}\r \t\n", &[])),
        ("an empty header padded before", file(b"\t\n{}\r ", &[])),
        ("a tensor header padded before", file(&[b"  ".as_slice(), tensor].concat(), &[0; 16])),
        (
            "a zero-sized tensor",
            file(br#"{"z":{"dtype":"I32","shape":[3,0],"data_offsets":[0,0]}}"#, &[]),
        ),
        (
            "offsets shorter than the shape",
            file(br#"{"w":{"dtype":"I32","shape":[2,2],"data_offsets":[0,8]}}"#, &[0; 8]),
        ),
        (
            "a shape whose element count overflows",
            file(
                br#"{"w":{"dtype":"I32","shape":[4,9223372036854775807],"data_offsets":[0,16]}}"#,
                &[0; 16],
            ),
        ),
        (
            "a shape whose byte count overflows",
            file(
                br#"{"w":{"dtype":"I32","shape":[2,4611686018427387904],"data_offsets":[0,16]}}"#,
                &[0; 16],
            ),
        ),
        ("a well-formed tensor", file(tensor, &[0; 16])),
    ];
    for (what, bytes) in cases {
        let crate_accepts = safetensors::SafeTensors::deserialize(&bytes).is_ok();
        let read = format::read_checkpoint(&SliceSource::new("case.safetensors", &bytes));
        assert_eq!(
            read.is_ok(),
            crate_accepts,
            "{what}: the crate {}, ckptcheck {:?}",
            if crate_accepts {
                "accepts it"
            } else {
                "refuses it"
            },
            read.as_ref()
                .map(|c| c.format.clone())
                .map_err(|e| e.to_string())
        );
        if let Ok(checkpoint) = read {
            assert_eq!(checkpoint.format, "safetensors", "{what}");
        }
    }
}
