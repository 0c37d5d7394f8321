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

#[path = "support/rng.rs"]
mod rng;

/// Edits of a safetensors header, drawn from a seeded generator.
struct Mutator(rng::Rng);

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    /// One edit of the header text: a token swapped for another of the
    /// same role (a dtype, a shape, the metadata, a name), a fragment
    /// inserted, or a byte deleted or doubled.
    fn mutate(&mut self, text: &mut String) {
        const SWAPS: &[(&str, &[&str])] = &[
            (
                r#""F32""#,
                &[r#""F99""#, "null", "1", r#""f32""#, r#""BOOL""#],
            ),
            (
                "[2]",
                &[
                    "[]",
                    "[2,0]",
                    "[-1]",
                    "[2.0]",
                    "[1e3]",
                    "[18446744073709551616]",
                    "null",
                ],
            ),
            (
                r#"{"format":"pt"}"#,
                &["null", "{}", r#"{"a":1}"#, "[]", r#"{"a":"b","a":"c"}"#],
            ),
            (r#""b":"#, &[r#""a":"#, r#""__metadata__":"#, r#""":"#]),
            (
                "[8,12]",
                &["[8,12,16]", "[12,8]", "[8]", "[8,13]", r#"["8","12"]"#],
            ),
            (r#""dtype""#, &[r#""dtype2""#, r#""shape""#]),
        ];
        const FRAGMENTS: &[&str] = &[
            r#","__metadata__":null"#,
            r#","x":1"#,
            r#","c":{"dtype":"U8","shape":[0],"data_offsets":[12,12]}"#,
            " ",
            "}",
            ",",
            "\"",
            "\\u0061",
        ];
        match self.below(5) {
            0 | 4 => {
                let (from, to) = SWAPS[self.below(SWAPS.len())];
                if let Some(at) = text.find(from) {
                    let replacement = to[self.below(to.len())];
                    text.replace_range(at..at + from.len(), replacement);
                }
            }
            1 => {
                let fragment = FRAGMENTS[self.below(FRAGMENTS.len())];
                let mut at = self.below(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, fragment);
            }
            2 if !text.is_empty() => {
                let at = self.below(text.len());
                if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
                    text.remove(at);
                }
            }
            _ if !text.is_empty() => {
                let at = self.below(text.len());
                if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
                    let byte = text[at..at + 1].to_string();
                    text.insert_str(at, &byte);
                }
            }
            _ => {}
        }
    }
}

/// Thousands of headers one to three edits away from a valid one, each read
/// by ckptcheck and by the safetensors crate: the same verdict, except
/// where ckptcheck is stricter on purpose (a repeated tensor name, which
/// the crate's map merges; data that does not end at the end of the file,
/// which the crate does not check), and then ckptcheck says which.
#[test]
fn headers_near_a_valid_one_get_the_crates_verdict() {
    let base = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}"#;
    let mut mutator = Mutator(rng::Rng(0x9E37_79B9_7F4A_7C15));
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..4000 {
        let mut header = base.to_string();
        for _ in 0..1 + mutator.below(3) {
            mutator.mutate(&mut header);
        }
        let bytes = file(header.as_bytes(), &[0; 12]);
        let crate_accepts = safetensors::SafeTensors::deserialize(&bytes).is_ok();
        let read = format::read_checkpoint(&SliceSource::new("case.safetensors", &bytes));
        match (&read, crate_accepts) {
            (Ok(_), true) => accepted += 1,
            (Err(_), false) => refused += 1,
            (Err(error), true) => {
                let repeated_name = error.message.starts_with("duplicate tensor name")
                    && error.tensor.as_deref().is_some_and(|name| !name.is_empty());
                let stricter =
                    repeated_name || error.message.starts_with("tensor data ends at byte");
                assert!(
                    stricter,
                    "case {case}: {header}\nthe crate accepts it; ckptcheck: {error}"
                );
                refused += 1;
            }
            (Ok(_), false) => {
                panic!("case {case}: {header}\nthe crate refuses it; ckptcheck accepts it")
            }
        }
    }
    // Both verdicts are exercised, not only one.
    assert!(
        accepted > 100 && refused > 100,
        "{accepted} accepted, {refused} refused"
    );
}
