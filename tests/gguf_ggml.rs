//! ggml's handcrafted GGUF test files (llama.cpp tests/test-gguf.cpp,
//! `get_handcrafted_file`), written by bench/gguf_handcrafted.py into
//! tests/fixtures/gguf_ggml with the verdict ggml's own reader gives each:
//! ckptcheck accepts exactly the files ggml accepts (bools that are any
//! byte, strings that are not UTF-8, a custom alignment of 1, empty
//! tensors, the NVFP4, Q1_0 and Q2_0 types) and refuses the rest with a
//! clear error naming the file, never a panic.

use ckptcheck::format;
use ckptcheck::source::FileSource;
use serde_json::Value;
use std::path::Path;

#[test]
fn ckptcheck_accepts_what_ggml_accepts_and_refuses_what_it_refuses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_ggml");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let cases = expected.as_array().expect("cases");
    assert_eq!(cases.len(), 33, "every handcrafted case of test-gguf.cpp");
    let mut accepted = 0;
    for case in cases {
        let file = case["file"].as_str().expect("file");
        let ggml_accepts = case["ggml_accepts"].as_bool().expect("verdict");
        let source = FileSource::open(&dir.join(file)).expect("open");
        match format::read_checkpoint(&source) {
            Ok(checkpoint) => {
                assert!(ggml_accepts, "{file}: ggml refuses it, ckptcheck read it");
                assert_eq!(checkpoint.format, "gguf", "{file}");
                accepted += 1;
            }
            Err(error) => {
                assert!(
                    !ggml_accepts,
                    "{file}: ggml reads it, ckptcheck says {error}"
                );
                assert!(
                    error.to_string().contains(file),
                    "{file}: the error names the file: {error}"
                );
            }
        }
    }
    assert_eq!(
        accepted, 5,
        "HEADER_EMPTY, KV_SUCCESS, TENSORS_ZERO_DIM, DATA_SUCCESS, DATA_CUSTOM_ALIGN"
    );
}

#[test]
fn the_newest_ggml_types_and_any_bool_byte_are_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_ggml");
    let source = FileSource::open(&dir.join("data_success.gguf")).expect("open");
    let checkpoint = format::read_checkpoint(&source).expect("read");
    for dtype in ["MXFP4", "NVFP4", "Q1_0", "Q2_0"] {
        assert!(
            checkpoint.tensors.iter().any(|t| t.dtype == dtype),
            "{dtype}"
        );
    }
    // The key/values hold a bool of a random byte; ggml takes non-zero as
    // true, and so does ckptcheck.
    assert!(checkpoint.metadata.values().any(Value::is_boolean));
}
