//! The wasm facade in a real browser (wasm-bindgen-test in headless
//! Chromium, inside a dedicated worker because `FileReaderSync` exists only
//! there): the Blob source reads byte ranges and counts them, and
//! `check_files` gives the same verdict as the native check on the
//! Chinese-CLIP fixture (tests/fixtures/cn_clip/make_cn_clip_fixtures.py);
//! a hostile file (tests/fixtures/hostile) is an error with its kind and the
//! next file still reads; `scan_files` reports NaN with progress and cancels.
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
fn integers_past_2_to_the_53_reach_javascript_exactly() {
    // small.gguf (tests/fixtures/formats/make_format_fixtures.py) holds an
    // int64 metadata value that a JavaScript number cannot hold.
    let bytes = include_bytes!("fixtures/formats/small.gguf");
    let files = js_sys::Array::of1(&file(bytes, "small.gguf"));
    let result = ckptcheck::web::inspect_files(files)
        .map_err(JsValue::from)
        .expect("inspect");
    let text = js_sys::JSON::stringify(&result).expect("stringify");
    let json: serde_json::Value = serde_json::from_str(&String::from(text)).expect("json");
    let metadata = json["metadata"].as_object().expect("metadata");
    assert!(
        metadata.values().any(|v| v
            .as_str()
            .is_some_and(|s| s.parse::<i64>().is_ok_and(|n| n.unsigned_abs() > 1 << 53))),
        "{metadata:?}"
    );
}

#[wasm_bindgen_test]
fn check_files_gives_pytorchs_verdict_in_the_browser() {
    let files = js_sys::Array::of1(&file(FIXTURE, "clip_cn_vit-l-14-336.pt"));
    let result = ckptcheck::web::check_files(
        files,
        "ViT-B-16@RoBERTa-wwm-ext-base-chinese",
        "cn-clip",
        js_sys::Array::new(),
    )
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

fn error_message(error: JsValue) -> String {
    error
        .unchecked_into::<js_sys::Error>()
        .message()
        .as_string()
        .expect("message")
}

/// (file, bytes, error kind or None, dangerous globals, files given with it)
type HostileFile = (
    &'static str,
    &'static [u8],
    Option<&'static str>,
    &'static [&'static str],
    &'static [(&'static str, &'static [u8])],
);

include!("fixtures/hostile/web_corpus.rs");

/// The hostile corpus in the browser, as tests/hostile.rs reads it natively:
/// each file fails with its kind and a message naming it (or, for unsafe
/// pickles, reads with the dangerous globals named), and after each one the
/// next, valid file still reads.
#[wasm_bindgen_test]
fn hostile_files_fail_with_their_kind_and_the_next_file_works() {
    const GOOD: &[u8] = include_bytes!("fixtures/formats/small.safetensors");
    assert!(HOSTILE.len() >= 100);
    let mut failures = Vec::new();
    for (name, bytes, kind, dangerous, others) in HOSTILE {
        let files = js_sys::Array::of1(&file(bytes, name));
        for (other, other_bytes) in *others {
            files.push(&file(other_bytes, other));
        }
        match (
            ckptcheck::web::inspect_files(files).map_err(JsValue::from),
            kind,
        ) {
            (Err(error), Some(kind)) => {
                let message = error_message(error);
                if !message.starts_with(&format!("{kind}|")) || !message.contains(name) {
                    failures.push(format!("{name}: expected {kind}, got {message}"));
                }
            }
            (Ok(_), Some(kind)) => failures.push(format!("{name}: expected {kind}, read fine")),
            (Err(error), None) => failures.push(format!(
                "{name}: expected success: {}",
                error_message(error)
            )),
            (Ok(checkpoint), None) => {
                let checkpoint: serde_json::Value =
                    serde_wasm_bindgen::from_value(checkpoint).expect("json");
                let named = &checkpoint["pickle_audit"]["dangerous"];
                if *named != serde_json::json!(dangerous) {
                    failures.push(format!("{name}: dangerous {named}, expected {dangerous:?}"));
                }
            }
        }
        let files = js_sys::Array::of1(&file(GOOD, "small.safetensors"));
        if let Err(error) = ckptcheck::web::inspect_files(files).map_err(JsValue::from) {
            failures.push(format!("after {name}: {}", error_message(error)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[wasm_bindgen_test]
fn scan_files_reports_nan_with_progress_and_cancels() {
    const NAN_INF: &[u8] = include_bytes!("fixtures/scan/nan_inf.safetensors");
    let files = js_sys::Array::of1(&file(NAN_INF, "nan_inf.safetensors"));
    let calls = js_sys::Array::new();
    let progress =
        js_sys::Function::new_with_args("done, total", "this.push([done, total]); return true;");
    let progress = progress.bind0(&calls);
    let report = ckptcheck::web::scan_files(files.clone(), &progress)
        .map_err(JsValue::from)
        .expect("scan");
    let report: serde_json::Value = serde_wasm_bindgen::from_value(report).expect("json");
    assert_eq!(report["ok"], false);
    assert!(report["summary"]["with_nan"]
        .as_array()
        .expect("with_nan")
        .iter()
        .any(|name| name == "f32"));
    assert!(calls.length() >= 2);
    let cancel = js_sys::Function::new_with_args("done, total", "return false;");
    let error = ckptcheck::web::scan_files(files, &cancel)
        .map_err(JsValue::from)
        .expect_err("cancelled");
    assert!(error_message(error).starts_with("cancelled|"));
}

#[wasm_bindgen_test]
fn a_reference_checkpoint_in_the_model_slot_is_the_model() {
    // The fixture against itself as the reference: it loads, and the report
    // names the reference; against a model dump of another width it does not.
    let files = js_sys::Array::of1(&file(FIXTURE, "clip_cn_vit-l-14-336.pt"));
    let reference = js_sys::Array::of1(&file(FIXTURE, "official.pt"));
    let result = ckptcheck::web::check_files(files, "infer", "strict", reference)
        .map_err(JsValue::from)
        .expect("check");
    let result: serde_json::Value = serde_wasm_bindgen::from_value(result).expect("json");
    assert_eq!(result["report"]["loads"], true, "{}", result["report"]);
    assert_eq!(
        result["report"]["model"],
        "reference checkpoint official.pt"
    );
    let dump = br#"{"format": "ckptcheck-model-dump", "version": 1, "class": "Tiny", "module": "m",
        "state_dict": [{"key": "visual.proj", "shape": [2, 2], "dtype": "float32", "kind": "parameter"}],
        "modules": [{"name": "", "class": "Tiny", "batchnorm": false}, {"name": "visual", "class": "V", "batchnorm": false}]}"#;
    let files = js_sys::Array::of1(&file(FIXTURE, "clip_cn_vit-l-14-336.pt"));
    let reference = js_sys::Array::of1(&file(dump, "model.ckptcheck.json"));
    let result = ckptcheck::web::check_files(files, "infer", "strict", reference)
        .map_err(JsValue::from)
        .expect("check");
    let result: serde_json::Value = serde_wasm_bindgen::from_value(result).expect("json");
    assert_eq!(result["report"]["loads"], false);
    assert_eq!(result["report"]["class_name"], "Tiny");
    assert!(ckptcheck::web::model_snippet().contains("def ckptcheck_dump(model"));
}
