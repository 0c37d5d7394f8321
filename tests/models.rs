//! Whole models against PyTorch: tests/fixtures/models/make_model_fixtures.py
//! builds tiny seeded Chinese-CLIP, open_clip, BERT, RoBERTa, GPT-2, LLaMA
//! (grouped-query) and Qwen2 models with the real libraries, saves their
//! weights, a fixed input and PyTorch's output; ckptcheck's fast CPU
//! backend (what `verify` runs), the naive CPU reference (the oracle) and,
//! with the `gpu` feature, the GPU must each give the same output within
//! 1e-4. The cases are listed in the fixtures' manifest.json.

use ckptcheck::format;
use ckptcheck::npy;
use ckptcheck::reference::model::{self, ModelDesc};
use ckptcheck::source::{ByteSource, FileSource};
use ckptcheck::verify::{self, Verdict};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// PyTorch vs ckptcheck, both f32: absolute error per unit of the output's
/// scale (outputs here are of order 1).
const TOLERANCE: f32 = 1e-4;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest");
    let value: Value = serde_json::from_str(&text).expect("json");
    value["cases"].as_array().expect("cases").clone()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

fn npy_file(name: &str) -> npy::Array {
    npy::read(&std::fs::read(dir().join(name)).expect("npy")).expect("valid npy")
}

fn desc(case: &Value) -> ModelDesc {
    let texts: Vec<(String, String)> = strings(&case["config"])
        .iter()
        .map(|f| {
            (
                f.clone(),
                std::fs::read_to_string(dir().join(f)).expect("config"),
            )
        })
        .collect();
    model::from_config_texts(&texts).expect("config")
}

fn clock() -> f64 {
    0.0
}

/// `f(checkpoint, its sources, the case's input)` over the case's files.
fn with_case<T>(
    case: &Value,
    f: impl FnOnce(&ckptcheck::Checkpoint, Vec<&dyn ByteSource>, npy::Array) -> T,
) -> T {
    let files: Vec<FileSource> = strings(&case["files"])
        .iter()
        .map(|f| FileSource::open(&dir().join(f)).expect("open"))
        .collect();
    let sources: Vec<&dyn ByteSource> = files.iter().map(|f| f as &dyn ByteSource).collect();
    let checkpoint = format::read_files(&sources).expect("checkpoint");
    let input = npy_file(case["input"].as_str().expect("input"));
    f(&checkpoint, sources, input)
}

fn run_cpu(case: &Value) -> Verdict {
    with_case(case, |checkpoint, sources, input| {
        verify::verify_cpu(
            checkpoint,
            sources,
            &desc(case),
            Some(input),
            None,
            None,
            &clock,
        )
        .expect("verify")
    })
}

/// The case's output from the naive reference.
fn run_reference(case: &Value) -> Vec<f32> {
    with_case(case, |checkpoint, sources, input| {
        let plan = verify::plan(&desc(case), Some(input), None).expect("plan");
        let weights = verify::weights_for(checkpoint, sources, &plan, &clock).expect("weights");
        verify::run_reference(&plan, &weights, &clock)
            .expect("reference")
            .output
    })
}

fn pytorch_output(case: &Value) -> Vec<f32> {
    match npy_file(case["output"].as_str().expect("output")) {
        npy::Array::F32 { data, .. } => data,
        _ => panic!("{}: output is not float32", case["name"]),
    }
}

#[test]
fn cpu_reference_matches_pytorch_and_the_fast_backend_on_every_fixture_model() {
    for case in &manifest() {
        let name = case["name"].as_str().expect("name");
        let reference = run_reference(case);
        assert_close(name, &reference, &pytorch_output(case));
        let fast = run_cpu(case);
        assert!(fast.run.device.starts_with("cpu ("), "{}", fast.run.device);
        assert_close(name, &fast.run.output, &reference);
    }
}

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: output length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let max_err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("{name}: max abs error {max_err:.2e}, output scale {scale:.3}");
    assert!(
        max_err <= TOLERANCE * scale,
        "{name}: max abs error {max_err:e} (scale {scale}) exceeds {TOLERANCE:e}"
    );
}

#[test]
fn fast_cpu_matches_pytorch_on_every_fixture_model() {
    let cases = manifest();
    assert_eq!(cases.len(), 10);
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let verdict = run_cpu(case);
        let npy::Array::F32 { shape, data } = npy_file(case["output"].as_str().expect("output"))
        else {
            panic!("{name}: output is not float32");
        };
        assert!(verdict.passed, "{name}: {:?}", verdict.problems);
        assert_eq!(
            verdict.output_name,
            case["output_name"].as_str().expect("output_name"),
            "{name}"
        );
        assert_eq!(verdict.output_shape, shape, "{name}: shape");
        assert_close(name, &verdict.run.output, &data);
        assert!(
            verdict.weight_trouble.is_empty(),
            "{name}: {:?}",
            verdict.weight_trouble
        );
    }
}

#[test]
fn fewer_layers_run_fewer_blocks_and_say_so() {
    let case = &manifest()[0];
    let files = strings(&case["files"]);
    let file = FileSource::open(&dir().join(&files[0])).expect("open");
    let checkpoint = format::read_files(&[&file]).expect("checkpoint");
    let verdict = verify::verify_cpu(
        &checkpoint,
        vec![&file],
        &desc(case),
        None,
        Some(1),
        Some(2),
        &clock,
    )
    .expect("verify");
    assert!(verdict.passed, "{:?}", verdict.problems);
    assert_eq!((verdict.layers_run, verdict.layers_total), (1, 2));
    assert_eq!(verdict.ran, "embeddings + block 0 of 2 + ln_post and proj");
    assert_eq!(verdict.input, "image [1, 3, 24, 24]");
}

#[test]
fn a_wrong_head_count_passes_a_shape_check_but_not_the_forward_pass() {
    // Same tensors, same shapes: only the head width differs (48 instead of
    // the checkpoint's 16), as with ViT-H-14 loaded as head width 64.
    let case = &manifest()[0];
    let mut wrong = desc(case);
    if let Some(model::Tower::Vit(vit)) = wrong.image_tower.as_mut() {
        vit.heads = 1;
    }
    let file = FileSource::open(&dir().join("cn_clip_tiny.pt")).expect("open");
    let checkpoint = format::read_files(&[&file]).expect("checkpoint");
    let input = npy_file("cn_clip_tiny.image.npy");
    let verdict = verify::verify_cpu(
        &checkpoint,
        vec![&file],
        &wrong,
        Some(input),
        None,
        Some(1),
        &clock,
    )
    .expect("verify");
    let npy::Array::F32 { data, .. } = npy_file("cn_clip_tiny.encode_image.npy") else {
        panic!("float32")
    };
    let max_err = verdict
        .run
        .output
        .iter()
        .zip(&data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        max_err > 1e-2,
        "a wrong head count went unnoticed ({max_err:e})"
    );
}

/// The GPU (lavapipe without a GPU) on every fixture: PyTorch's output
/// within 1e-4, and the verdict's own comparison with the CPU run.
#[cfg(feature = "gpu")]
#[test]
fn gpu_matches_pytorch_and_the_cpu_on_every_fixture_model() {
    let ctx = match pollster::block_on(ckptcheck::gpu::Context::new()) {
        Ok(ctx) => ctx,
        Err(reason) => {
            if std::env::var("CKPTCHECK_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("no GPU adapter but CKPTCHECK_REQUIRE_GPU=1: {reason}");
            }
            eprintln!("skipped: no GPU adapter: {reason}");
            return;
        }
    };
    for case in &manifest() {
        let name = case["name"].as_str().expect("name");
        let files: Vec<FileSource> = strings(&case["files"])
            .iter()
            .map(|f| FileSource::open(&dir().join(f)).expect("open"))
            .collect();
        let sources: Vec<&dyn ByteSource> = files.iter().map(|f| f as &dyn ByteSource).collect();
        let checkpoint = format::read_files(&sources).expect("checkpoint");
        let input = npy_file(case["input"].as_str().expect("input"));
        let verdict = pollster::block_on(ckptcheck::gpu::verify::verify_gpu(
            &ctx,
            &checkpoint,
            sources,
            &desc(case),
            Some(input),
            None,
            &clock,
            true,
        ))
        .expect("gpu verify");
        assert!(verdict.passed, "{name}: {:?}", verdict.problems);
        let comparison = verdict.comparison.as_ref().expect("compared");
        assert!(
            comparison.max_rel_err < 1e-5,
            "{name}: gpu vs cpu {comparison:?}"
        );
        assert!(verdict.run.device_memory_bytes.is_some_and(|b| b > 0));
        let npy::Array::F32 { data, .. } = npy_file(case["output"].as_str().expect("output"))
        else {
            panic!("{name}: output is not float32");
        };
        assert_close(&format!("{name} (gpu)"), &verdict.run.output, &data);
    }
}
