//! The wasm facade in a real browser (wasm-bindgen-test in headless
//! Chromium, inside a dedicated worker because `FileReaderSync` exists only
//! there): the Blob source reads byte ranges and counts them, and
//! `check_files` gives the same verdict as the native check on the
//! Chinese-CLIP fixture (tests/fixtures/cn_clip/make_cn_clip_fixtures.py).
#![cfg(target_arch = "wasm32")]

use ckptcheck::source::ByteSource;
use ckptcheck::web::BlobSource;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const FIXTURE: &[u8] = include_bytes!("fixtures/cn_clip/clip_cn_vit-l-14-336.shapes.pt");

fn file(bytes: &[u8], name: &str) -> web_sys::File {
    let array = js_sys::Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    web_sys::File::new_with_u8_array_sequence(&parts, name).expect("File")
}

#[wasm_bindgen_test]
fn blob_source_reads_ranges_and_counts_them() {
    let bytes: Vec<u8> = (0u8..=255).collect();
    let source =
        BlobSource::new("ramp.bin".into(), file(&bytes, "ramp.bin").into()).expect("source");
    assert_eq!(source.len(), 256);
    let mut buffer = [0u8; 4];
    source.read_exact_at(100, &mut buffer).expect("read");
    assert_eq!(buffer, [100, 101, 102, 103]);
    assert_eq!(source.bytes_read(), 4);
    let error = source
        .read_exact_at(254, &mut buffer)
        .expect_err("past the end");
    assert_eq!(error.kind, ckptcheck::ErrorKind::Truncated);
}

#[wasm_bindgen_test]
fn check_files_gives_pytorchs_verdict_in_the_browser() {
    let files = js_sys::Array::of1(&file(FIXTURE, "clip_cn_vit-l-14-336.pt"));
    let result =
        ckptcheck::web::check_files(files, "ViT-B-16@RoBERTa-wwm-ext-base-chinese", "cn-clip")
            .map_err(JsValue::from)
            .expect("check");
    let result: serde_json::Value = serde_wasm_bindgen::from_value(result).expect("json");
    let report = &result["report"];
    assert_eq!(report["loads"], false);
    assert_eq!(report["missing_keys"].as_array().expect("missing").len(), 0);
    assert_eq!(
        report["unexpected_keys"]
            .as_array()
            .expect("unexpected")
            .len(),
        144
    );
    assert_eq!(
        report["size_mismatches"]
            .as_array()
            .expect("mismatches")
            .len(),
        153
    );
    assert_eq!(
        report["inferred"]["preset"],
        "ViT-L-14-336@RoBERTa-wwm-ext-base-chinese"
    );
    assert!(report["bytes_read"].as_u64().expect("bytes") < FIXTURE.len() as u64);
}

#[wasm_bindgen_test]
fn unreadable_files_are_errors_with_a_kind() {
    let files = js_sys::Array::of1(&file(b"this is not a checkpoint", "notes.txt"));
    let error = ckptcheck::web::inspect_files(files)
        .map_err(JsValue::from)
        .expect_err("garbage");
    let message = error
        .unchecked_into::<js_sys::Error>()
        .message()
        .as_string()
        .expect("message");
    assert!(
        message.starts_with("unsupported_format|notes.txt: "),
        "{message}"
    );
}
