//! Stable Diffusion single-file checkpoints against the libraries.
//! tests/fixtures/sd/sd_loads.json was written by
//! tests/fixtures/sd/make_sd_loads.py from the releases that
//! src/arch/zoo/stable_diffusion.py derived (and checked with diffusers'
//! single-file converter): each release's listing (count and digest of its
//! `key|shape|dtype` lines, in state_dict order), what diffusers'
//! `infer_diffusers_model_type` calls it, and loads of one release's
//! tensors (some with the schedule and EMA keys real files hold, one
//! without its VAE) into another's model with PyTorch's
//! `load_state_dict(strict=True)` and `strict=False` (LDM's and sgm's).

use ckptcheck::arch::{self, ModelSpec};
use ckptcheck::diagnosis::check;
use ckptcheck::loader::Loader;
use ckptcheck::{Checkpoint, TensorInfo};
use serde_json::Value;

fn fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/sd/sd_loads.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn release(name: &str) -> ModelSpec {
    arch::model_from_preset(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn digest(model: &ModelSpec) -> String {
    let mut hash: u64 = 0xCBF29CE484222325;
    for tensor in &model.tensors {
        let dtype = if tensor.dtype == "F32" {
            "float32"
        } else {
            "int64"
        };
        let shape: Vec<String> = tensor.shape.iter().map(u64::to_string).collect();
        for byte in format!("{}|{}|{dtype}\n", tensor.name, shape.join(",")).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x100000001B3);
        }
    }
    format!("{hash:016x}")
}

fn names(model: &ModelSpec) -> Vec<(String, Vec<u64>)> {
    model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect()
}

/// diffusers' name for each release, as ckptcheck's presets are named.
fn diffusers_type_of(preset: &str) -> &'static str {
    match preset {
        "sd/1.5" => "v1",
        "sd/1.5-inpainting" => "inpainting",
        "sd/2.1-768" | "sd/2.1-512" => "v2",
        "sd/2-inpainting" => "inpainting_v2",
        "sd/xl-base" => "xl_base",
        "sd/xl-refiner" => "xl_refiner",
        other => panic!("no diffusers type for {other}"),
    }
}

#[test]
fn each_release_is_the_listing_diffusers_converts_and_names() {
    let fixture = fixture();
    let releases = fixture["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 7);
    let listed: Vec<String> = arch::presets()
        .into_iter()
        .filter(|(_, family, _)| *family == "sd")
        .map(|(name, _, _)| name)
        .collect();
    for entry in releases {
        let name = entry["name"].as_str().unwrap();
        assert!(listed.iter().any(|n| n == name), "{name} is not listed");
        let model = release(name);
        assert_eq!(
            model.tensors.len() as u64,
            entry["count"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(digest(&model), entry["digest"].as_str().unwrap(), "{name}");
        assert_eq!(diffusers_type_of(name), entry["diffusers_type"], "{name}");
        // Inference names the release (or one of the same shapes).
        let inferred = arch::infer(&names(&model));
        assert_eq!(inferred.family, "sd", "{name}");
        let best = inferred.ranking.first().expect("ranking");
        assert!(best.exact, "{name}");
        assert_eq!(
            diffusers_type_of(inferred.preset.as_deref().unwrap()),
            entry["diffusers_type"],
            "{name}"
        );
    }
}

fn checkpoint_for(case: &Value) -> Checkpoint {
    let mut checkpoint = Checkpoint::new("model.safetensors", "safetensors", 0);
    let tensors: Vec<(String, Vec<u64>)> = match case["checkpoint_tensors"].as_array() {
        Some(items) => items
            .iter()
            .map(|t| {
                (
                    t[0].as_str().unwrap().to_string(),
                    serde_json::from_value(t[1].clone()).unwrap(),
                )
            })
            .collect(),
        None => names(&release(case["checkpoint"].as_str().unwrap())),
    };
    for (name, shape) in tensors {
        checkpoint.tensors.push(TensorInfo::new(name, "F32", shape));
    }
    checkpoint
}

#[test]
fn single_file_loads_are_what_pytorch_says_strict_and_as_ldm_loads_them() {
    let fixture = fixture();
    for case in fixture["cases"].as_array().unwrap() {
        let label = format!("{} -> {} ({case})", case["checkpoint"], case["model"]);
        let checkpoint = checkpoint_for(case);
        let model = release(case["model"].as_str().unwrap());
        let strict = check(&checkpoint, &model, Loader::Strict);
        assert_eq!(
            strict.pytorch_error.as_deref(),
            case["strict_error"].as_str(),
            "{label}"
        );
        let ldm = check(&checkpoint, &model, Loader::Ldm);
        assert_eq!(
            ldm.pytorch_error.as_deref(),
            case["ldm_error"].as_str(),
            "{label}"
        );
        if case["ldm_error"].is_null() {
            let sorted = |value: &Value| {
                let mut keys: Vec<String> = serde_json::from_value(value.clone()).unwrap();
                keys.sort();
                keys
            };
            let mut missing = ldm.missing_keys.clone();
            missing.sort();
            let mut unexpected = ldm.unexpected_keys.clone();
            unexpected.sort();
            assert_eq!(missing, sorted(&case["ldm_missing"]), "{label}");
            assert_eq!(unexpected, sorted(&case["ldm_unexpected"]), "{label}");
            let clean = missing.is_empty() && unexpected.is_empty();
            assert_eq!(
                format!("{:?}", ldm.verdict),
                if clean { "Loads" } else { "LoadsWithWarnings" },
                "{label}"
            );
        }
    }
}

/// The classic failure: an SD 2.x file with v1-inference.yaml is explained
/// as the release it is, with the YAML to use.
#[test]
fn an_sd2_file_with_the_v1_yaml_is_explained_as_sd2() {
    let model = release("sd/1.5");
    let mut checkpoint = Checkpoint::new("v2-1_768-ema-pruned.safetensors", "safetensors", 0);
    for (name, shape) in names(&release("sd/2.1-768")) {
        checkpoint.tensors.push(TensorInfo::new(name, "F32", shape));
    }
    checkpoint
        .tensors
        .push(TensorInfo::new("alphas_cumprod", "F32", vec![1000]));
    let report = check(&checkpoint, &model, Loader::Ldm);
    assert_eq!(format!("{:?}", report.verdict), "WontLoad");
    let error = report.pytorch_error.as_deref().unwrap();
    assert!(error.contains("attn2.to_k.weight: copying a param with shape torch.Size([320, 1024]) from checkpoint, the shape in current model is torch.Size([320, 768])"), "{error}");
    let cause = &report.explanation[0];
    assert_eq!(cause.cause, "sd-release", "{:?}", report.explanation);
    assert!(
        cause.text.contains("Stable Diffusion 2.x"),
        "{}",
        cause.text
    );
    assert!(
        cause.text.contains("cross-attention dim 1024"),
        "{}",
        cause.text
    );
    assert!(cause.text.contains("OpenCLIP ViT-H/14"), "{}", cause.text);
    assert!(
        cause.text.contains("use v2-inference-v.yaml"),
        "{}",
        cause.text
    );
    assert!(cause.text.contains("v2-inference.yaml"), "{}", cause.text);
    // An inpainting file into the plain model: 9 input channels.
    let mut inpainting = Checkpoint::new("sd-v1-5-inpainting.ckpt", "pytorch", 0);
    for (name, shape) in names(&release("sd/1.5-inpainting")) {
        inpainting.tensors.push(TensorInfo::new(name, "F32", shape));
    }
    let report = check(&inpainting, &model, Loader::Ldm);
    assert_eq!(report.explanation[0].cause, "sd-release");
    assert!(
        report.explanation[0]
            .text
            .contains("use v1-inpainting-inference.yaml"),
        "{}",
        report.explanation[0].text
    );
}
