//! Whole models against PyTorch: tests/fixtures/models/make_model_fixtures.py
//! builds tiny seeded Chinese-CLIP, open_clip, BERT, RoBERTa, GPT-2, LLaMA
//! (grouped-query) and Qwen2 models with the real libraries, saves their
//! weights, a fixed input and PyTorch's output; ckptcheck's fast CPU
//! backend (what `verify` runs), the naive CPU reference (the oracle) and,
//! with the `gpu` feature, the GPU must each give the same output within
//! 1e-4. The cases are listed in the fixtures' manifest.json.
//!
//! Also what a run reports on the way (every stage to the progress hook, in
//! order, and the time of each in the verdict) and what it holds: a
//! counting global allocator measures the bytes live on the running thread,
//! which must not grow with the number of blocks.

use ckptcheck::fast_cpu::FastCpu;
use ckptcheck::format;
use ckptcheck::npy;
use ckptcheck::reference::model::{self, ModelDesc};
use ckptcheck::reference::model::{
    default_image, default_tokens, forward, BertConfig, Input, Tower, VitConfig,
};
use ckptcheck::reference::Activation;
use ckptcheck::source::{ByteSource, FileSource};
use ckptcheck::verify::{self, Device, StageTime, Verdict};
use ckptcheck::weights::RandomWeights;
use serde_json::Value;
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// PyTorch vs ckptcheck, both f32: absolute error per unit of the output's
/// scale (outputs here are of order 1).
const TOLERANCE: f32 = 1e-4;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::peak_during;

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
            &mut |_| {},
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
        &mut |_| {},
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
        &mut |_| {},
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
        let mut heard = Vec::new();
        let verdict = pollster::block_on(ckptcheck::gpu::verify::verify_gpu(
            &ctx,
            &checkpoint,
            sources,
            &desc(case),
            Some(input),
            None,
            &clock,
            true,
            &mut |stage| heard.push((stage.device, stage.name.clone())),
        ))
        .expect("gpu verify");
        // The GPU's stages, then those of the CPU run it is compared with.
        let cpu_stages = stage_names(verdict.layers_run);
        let mut gpu_stages = cpu_stages.clone();
        gpu_stages.push("read back".to_string());
        let expected: Vec<(Device, String)> = gpu_stages
            .iter()
            .map(|n| (Device::Gpu, n.clone()))
            .chain(cpu_stages.iter().map(|n| (Device::Cpu, n.clone())))
            .collect();
        assert_eq!(heard, expected, "{name}");
        assert_eq!(names_of(&verdict.run.stages), gpu_stages, "{name}");
        let reference = verdict.reference_run.as_ref().expect("reference run");
        assert_eq!(names_of(&reference.stages), cpu_stages, "{name}");
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

thread_local! {
    static TICKS: Cell<f64> = const { Cell::new(0.0) };
}

/// A clock that moves one millisecond each time it is read: every stage
/// takes time, and sums of times are exact.
fn ticking() -> f64 {
    TICKS.with(|ticks| {
        ticks.set(ticks.get() + 1.0);
        ticks.get()
    })
}

/// The stages of a CPU run of `blocks` blocks, in order.
fn stage_names(blocks: usize) -> Vec<String> {
    std::iter::once("embeddings".to_string())
        .chain((1..=blocks).map(|k| format!("block {k}")))
        .chain(std::iter::once("head".to_string()))
        .collect()
}

fn names_of(stages: &[StageTime]) -> Vec<String> {
    stages.iter().map(|s| s.name.clone()).collect()
}

#[test]
fn progress_hears_every_stage_in_order_and_the_stage_times_make_up_the_run() {
    for case in &manifest() {
        let name = case["name"].as_str().expect("name");
        for layers in [None, Some(1)] {
            let clock = ticking;
            let mut heard = Vec::new();
            let (verdict, read_ms, elapsed) = with_case(case, |checkpoint, sources, input| {
                let plan = verify::plan(&desc(case), Some(input), layers).expect("plan");
                let weights =
                    verify::weights_for(checkpoint, sources, &plan, &clock).expect("weights");
                let before = clock();
                let run = verify::run_cpu(&plan, &weights, Some(1), &clock, &mut |stage| {
                    heard.push(stage.clone())
                })
                .expect("run");
                let elapsed = clock() - before;
                let verdict =
                    verify::verdict(&plan, run, None, &weights.stats(), weights.bytes_read());
                (verdict, weights.read_ms(), elapsed)
            });
            let blocks = verdict.layers_run;
            assert_eq!(blocks, layers.unwrap_or(verdict.layers_total), "{name}");
            let expected = stage_names(blocks);
            // The hook: every stage once, in order, each with the blocks done
            // before it and the blocks of the run.
            let heard_names: Vec<String> = heard.iter().map(|s| s.name.clone()).collect();
            assert_eq!(heard_names, expected, "{name}");
            let done: Vec<usize> = heard.iter().map(|s| s.blocks_done).collect();
            let expected_done: Vec<usize> = std::iter::once(0)
                .chain(0..blocks)
                .chain(std::iter::once(blocks))
                .collect();
            assert_eq!(done, expected_done, "{name}");
            assert!(
                heard
                    .iter()
                    .all(|s| s.blocks == blocks && s.device == Device::Cpu),
                "{name}: {heard:?}"
            );
            // The verdict: the same stages, each timed, making up the run.
            let run = &verdict.run;
            assert_eq!(names_of(&run.stages), expected, "{name}");
            assert!(run.stages.iter().all(|s| s.ms > 0.0), "{name}");
            let total: f64 = run.stages.iter().map(|s| s.ms).sum();
            let read: f64 = run.stages.iter().map(|s| s.read_ms).sum();
            assert_eq!(
                total,
                run.read_ms + run.upload_ms + run.compute_ms,
                "{name}"
            );
            assert_eq!(read, read_ms, "{name}: every weight is read in some stage");
            assert!(total < elapsed, "{name}: the stages lie inside the run");
            // ... and in the JSON and the text.
            let json = serde_json::to_value(&verdict).expect("json");
            let stages = json["run"]["stages"].as_array().expect("run.stages");
            let json_names: Vec<&str> = stages
                .iter()
                .map(|s| s["name"].as_str().expect("name"))
                .collect();
            assert_eq!(json_names, expected, "{name}");
            assert!(stages
                .iter()
                .all(|s| s["ms"].is_f64() && s["read_ms"].is_f64()));
            let text = verify::to_text(&verdict);
            assert!(text.contains("\n    by stage: embeddings "), "{text}");
        }
    }
}

/// Peak bytes live while the fast CPU backend (one thread: what the page
/// runs) takes `tower` through all its blocks on made-up weights.
fn forward_peak(tower: &Tower, input: &Input) -> usize {
    let mut backend = FastCpu::new(Some(1)).expect("backend");
    let layers = tower.layers();
    let (out, peak) = peak_during(|| forward(&mut backend, &RandomWeights, tower, input, layers));
    out.expect("forward");
    peak
}

fn vit(layers: usize) -> Tower {
    // A 2x2 patch grid: the weights dominate what is live.
    Tower::Vit(VitConfig {
        prefix: "visual.".into(),
        width: 512,
        layers,
        heads: 8,
        patch: 14,
        resolution: 28,
        mlp_width: 2048,
        embed_dim: 256,
        act: Activation::QuickGelu,
        eps: 1e-5,
    })
}

fn bert(layers: usize, vocab: usize) -> Tower {
    Tower::Bert(BertConfig {
        prefix: "bert.".into(),
        hidden: 256,
        layers,
        heads: 4,
        intermediate: 4096,
        eps: 1e-12,
        vocab,
        max_positions: 64,
        type_vocab: 2,
        act: Activation::GeluErf,
        pad_token_id: 0,
        roberta_padding_idx: None,
        projection: None,
    })
}

/// `(what grows, the smaller and the larger model, the bytes of weights the
/// larger one adds)`: the peak must not grow by half of them.
fn check_peak_is_flat(what: &str, small: &Tower, large: &Tower, added: usize) {
    let input = |tower: &Tower| match tower {
        Tower::Vit(c) => Input::Image {
            res: c.resolution,
            data: default_image(c.resolution),
        },
        text => Input::Tokens(default_tokens(text)),
    };
    let before = forward_peak(small, &input(small));
    let after = forward_peak(large, &input(large));
    eprintln!("{what}: peak {before} -> {after} bytes for {added} more bytes of weights");
    assert!(
        after < before + added / 2,
        "{what}: the peak grows from {before} to {after} bytes with {added} bytes more weights"
    );
}

#[test]
fn a_forward_pass_holds_one_block_of_weights_at_a_time() {
    let f32s = std::mem::size_of::<f32>();
    // A block: 4 w² for attention and 2 w·mlp for the MLP.
    let vit_block = (4 * 512 * 512 + 2 * 512 * 2048) * f32s;
    let bert_block = (4 * 256 * 256 + 2 * 256 * 4096) * f32s;
    check_peak_is_flat("ViT, 1 -> 6 blocks", &vit(1), &vit(6), 5 * vit_block);
    check_peak_is_flat(
        "BERT, 1 -> 6 blocks",
        &bert(1, 1024),
        &bert(6, 1024),
        5 * bert_block,
    );
    // The word table is smaller than a block: held through the blocks, it
    // would add to the peak; dropped once the embeddings are done, it does
    // not.
    check_peak_is_flat(
        "BERT, a word table of 1024 -> 2048 rows",
        &bert(2, 1024),
        &bert(2, 2048),
        1024 * 256 * f32s,
    );
}
