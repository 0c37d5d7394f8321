//! `ckptcheck verify` as a user runs it on the PyTorch fixtures
//! (tests/fixtures/models, made by make_model_fixtures.py): exit 0 with a
//! finite output, the JSON verdict's fields, `--output` equal to PyTorch's
//! output, `--layers`, exit 1 when NaN weights poison the output, exit 2 on
//! input errors. CPU only: the GPU is tested in tests/gpu.rs.

use ckptcheck::source::FileSource;
use ckptcheck::{format, npy};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(path)
        .display()
        .to_string()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .args(args)
        .output()
        .expect("run ckptcheck");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ckptcheck-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    dir.join(name)
}

#[test]
fn verify_json_and_output_npy_match_pytorch() {
    let out = temp("text.npy");
    let (code, stdout, stderr) = run(&[
        "verify",
        &fixture("cn_clip_tiny.pt"),
        "--config",
        &fixture("cn_clip_tiny.vision.json"),
        "--config",
        &fixture("cn_clip_tiny.text.json"),
        "--device",
        "cpu",
        "--input",
        &fixture("cn_clip_tiny.tokens.npy"),
        "--output",
        out.to_str().expect("path"),
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let verdict: Value = serde_json::from_str(&stdout).expect("json");
    for field in [
        "passed",
        "model",
        "device",
        "output_name",
        "input",
        "ran",
        "output_shape",
        "n_nan",
        "n_inf",
        "run",
        "weights_read",
        "weight_trouble",
        "unsupported",
        "problems",
    ] {
        assert!(verdict.get(field).is_some(), "missing field {field}");
    }
    assert_eq!(verdict["output_name"], "encode_text");
    assert_eq!(verdict["output_shape"], serde_json::json!([1, 16]));
    // The time per stage: the embeddings, each block, the head.
    let stages: Vec<&str> = verdict["run"]["stages"]
        .as_array()
        .expect("run.stages")
        .iter()
        .map(|s| s["name"].as_str().expect("stage name"))
        .collect();
    assert_eq!(stages, ["embeddings", "block 1", "block 2", "head"]);
    let got = npy::read(&std::fs::read(&out).expect("output")).expect("npy");
    let want = npy::read(&std::fs::read(fixture("cn_clip_tiny.encode_text.npy")).expect("want"))
        .expect("npy");
    let (npy::Array::F32 { shape: gs, data: g }, npy::Array::F32 { shape: ws, data: w }) =
        (got, want)
    else {
        panic!("float32 outputs");
    };
    assert_eq!(gs, ws);
    let max_err = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_err < 1e-4, "{max_err}");
}

#[test]
fn verify_finds_config_json_beside_the_weights_and_honours_layers_and_threads() {
    let (code, stdout, stderr) = run(&[
        "verify",
        &fixture("hf_gpt2"),
        "--device",
        "cpu",
        "--layers",
        "1",
        "--threads",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("PASS: hf gpt2 on cpu (1 thread) -> logits [1, 8, 100]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ran: embeddings + block 0 of 2 + ln_f and the LM head"),
        "{stdout}"
    );
}

#[test]
fn verify_exits_1_when_nan_weights_poison_the_output() {
    // hf_llama with model.norm.weight overwritten by NaN: shapes still match.
    let source = fixture("hf_llama/model.safetensors");
    let checkpoint =
        format::read_files(&[&FileSource::open(Path::new(&source)).expect("open")]).expect("read");
    let norm = checkpoint
        .tensors
        .iter()
        .find(|t| t.name == "model.norm.weight")
        .expect("norm");
    let mut bytes = std::fs::read(&source).expect("bytes");
    let start = norm.offset.expect("offset") as usize;
    for chunk in bytes[start..start + norm.nbytes.expect("nbytes") as usize].chunks_exact_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let dir = temp("nan_llama");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("model.safetensors"), bytes).expect("write");
    std::fs::copy(fixture("hf_llama/config.json"), dir.join("config.json")).expect("config");
    let (code, stdout, _) = run(&["verify", dir.to_str().expect("p"), "--device", "cpu"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("FAIL"), "{stdout}");
    assert!(
        stdout.contains("weight warning: model.norm.weight: 32 NaN"),
        "{stdout}"
    );
    assert!(
        stdout.contains("problem: the output has 800 NaN"),
        "{stdout}"
    );
}

#[test]
fn verify_exits_1_on_all_zero_weights_that_pass_every_shape_check() {
    // tests/fixtures/cn_clip/clip_cn_vit-b-16.shapes.pt: the released
    // ViT-B-16 layout, every tensor a stride-0 view of one zero.
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cn_clip/clip_cn_vit-b-16.shapes.pt");
    let (code, stdout, _) = run(&[
        "verify",
        file.to_str().expect("p"),
        "--layers",
        "0",
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("cn_clip ViT-B-16@RoBERTa-wwm-ext-base-chinese"),
        "{stdout}"
    );
    assert!(
        stdout.contains("weight warning: module.visual.proj: every element is zero"),
        "{stdout}"
    );
    assert!(
        stdout.contains("problem: every output value is zero"),
        "{stdout}"
    );
}

#[test]
fn verify_exits_2_on_input_errors() {
    let check = |args: &[&str], want: &str| {
        let (code, _, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    };
    let gpt2 = fixture("hf_gpt2");
    check(
        &[
            "verify",
            &gpt2,
            "--input",
            &fixture("cn_clip_tiny.image.npy"),
            "--device",
            "cpu",
        ],
        "no image tower",
    );
    check(
        &[
            "verify",
            &gpt2,
            "--input",
            &fixture("hf_gpt2/config.json"),
            "--device",
            "cpu",
        ],
        "not a .npy file",
    );
    check(&["verify", &gpt2, "--device", "tpu"], "unknown device");
    check(
        &["verify", &gpt2, "--layers", "two"],
        "--layers needs a block count",
    );
    check(
        &[
            "verify",
            &fixture("cn_clip_tiny.pt"),
            "--config",
            "ViT-B-16@RoBERTa-wwm-ext-base-chinese",
            "--device",
            "cpu",
        ],
        "shape [48, 3, 8, 8] in the checkpoint, the config says [768, 3, 16, 16]",
    );
}

#[cfg(not(feature = "gpu"))]
#[test]
fn verify_on_the_gpu_needs_the_gpu_feature() {
    let (code, _, stderr) = run(&["verify", &fixture("hf_bert"), "--device", "gpu"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("built without the gpu feature"), "{stderr}");
}

/// With the feature, the GPU run is compared with the CPU reference in the
/// same verdict. Without an adapter `--device gpu` exits 2 (it could not run
/// as asked), which CKPTCHECK_REQUIRE_GPU=1 turns into a failure here.
#[cfg(feature = "gpu")]
#[test]
fn verify_on_the_gpu_compares_with_the_cpu_reference() {
    let (code, stdout, stderr) =
        run(&["verify", &fixture("hf_llama"), "--device", "gpu", "--json"]);
    if code == 2
        && stderr.contains("no GPU adapter")
        && std::env::var("CKPTCHECK_REQUIRE_GPU").as_deref() != Ok("1")
    {
        eprintln!("skipped: {stderr}");
        return;
    }
    assert_eq!(code, 0, "{stderr}");
    let verdict: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(verdict["comparison"]["against"], "cpu");
    assert!(
        verdict["comparison"]["max_rel_err"]
            .as_f64()
            .expect("error")
            < 1e-5
    );
    assert!(
        verdict["run"]["device_memory_bytes"]
            .as_u64()
            .expect("memory")
            > 0
    );
    let cpu = verdict["reference_run"]["device"].as_str().expect("device");
    assert!(cpu.starts_with("cpu ("), "{cpu}");
}

/// A 16-bit checkpoint's linear weights stay 16-bit on the GPU: the same
/// model converted to f16 and to bf16 uploads far fewer bytes than its f32
/// original (its linear weights are most of it), still agrees with the CPU
/// run of the same file, and the verdict says so.
#[cfg(feature = "gpu")]
#[test]
fn half_precision_checkpoints_upload_half_the_bytes_and_agree_with_the_cpu() {
    let verify = |folder: &str| -> Option<Value> {
        let (code, stdout, stderr) = run(&["verify", folder, "--device", "gpu", "--json"]);
        if code == 2
            && stderr.contains("no GPU adapter")
            && std::env::var("CKPTCHECK_REQUIRE_GPU").as_deref() != Ok("1")
        {
            eprintln!("skipped: {stderr}");
            return None;
        }
        assert_eq!(code, 0, "{folder}: {stderr}");
        let verdict: Value = serde_json::from_str(&stdout).expect("json");
        let err = verdict["comparison"]["max_rel_err"]
            .as_f64()
            .expect("error");
        assert!(err < 1e-5, "{folder}: gpu vs cpu {err}");
        Some(verdict)
    };
    let Some(full) = verify(&fixture("hf_llama")) else {
        return;
    };
    let full_bytes = full["run"]["upload_bytes"].as_u64().expect("bytes");
    for (dtype, name) in [("f16", "F16"), ("bf16", "BF16")] {
        let folder = temp(&format!("hf_llama_{dtype}"));
        let out = folder.display().to_string();
        let (code, _, stderr) = run(&[
            "convert",
            &fixture("hf_llama"),
            "-o",
            &out,
            "--dtype",
            dtype,
        ]);
        assert_eq!(code, 0, "{stderr}");
        std::fs::copy(fixture("hf_llama/config.json"), folder.join("config.json")).expect("config");
        let half = verify(&out).expect("ran once already");
        let half_bytes = half["run"]["upload_bytes"].as_u64().expect("bytes");
        assert!(
            (half_bytes as f64) < 0.7 * full_bytes as f64,
            "{dtype}: {half_bytes} bytes uploaded, f32 {full_bytes}"
        );
        let notes = half["notes"].to_string();
        assert!(
            notes.contains(&format!("the {name} linear weights stayed 16-bit")),
            "{notes}"
        );
    }
}

#[test]
fn verify_refuses_zero_threads_before_reading_anything() {
    let (code, _, stderr) = run(&[
        "verify",
        &fixture("hf_gpt2"),
        "--device",
        "cpu",
        "--threads",
        "0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--threads needs a count of 1 or more"),
        "{stderr}"
    );
}
