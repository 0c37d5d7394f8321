//! diffusers models (`config.json` with `_class_name`) against the library.
//! tests/fixtures/zoo/diffusers_loads.json was written by
//! tests/fixtures/zoo/make_diffusers_loads.py (diffusers 0.42.1 on the
//! `meta` device): configs as `save_config` writes them for released
//! structures (SD 1.5, its inpainting UNet, SD 2.1, SDXL base and refiner,
//! the SD VAE and a 16-channel one, ControlNets, a small Flux, small SD3
//! and SD3.5 transformers, whose last block differs), each one's
//! `state_dict()`, and loads of one into another with
//! `load_state_dict(strict=True)`. The model ckptcheck builds from each
//! config must give PyTorch's verdict and error text, key for key.

use ckptcheck::arch::{self, zoo, ModelSpec};
use ckptcheck::diagnosis::check;
use ckptcheck::loader::Loader;
use ckptcheck::{Checkpoint, ErrorKind};
use serde_json::{json, Value};

#[path = "support/load_case.rs"]
mod load_case;

fn fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/zoo/diffusers_loads.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn read(config: &Value) -> ckptcheck::Result<ModelSpec> {
    arch::model_from_config_json(&[("config.json".to_string(), config.to_string())])
}

fn checkpoint_of(listing: &Value) -> Checkpoint {
    load_case::checkpoint_of(
        "diffusion_pytorch_model.safetensors",
        listing,
        |dtype| match dtype {
            "float32" => "F32".to_string(),
            other => panic!("dtype {other}"),
        },
    )
}

#[test]
fn diffusers_loads_are_what_pytorch_says() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "{} cases", cases.len());
    for case in cases {
        let (source, target) = (
            case["checkpoint"].as_str().unwrap(),
            case["model"].as_str().unwrap(),
        );
        let label = format!("{source} -> {target}");
        let checkpoint = checkpoint_of(&fixture["checkpoints"][source]);
        let model = read(&fixture["configs"][target]).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(model.family, "diffusers", "{label}");
        let report = check(&checkpoint, &model, Loader::Strict);
        load_case::assert_same_keys(&report, case, &label);
        assert_eq!(
            report.pytorch_error.as_deref(),
            case["strict_error"].as_str(),
            "{label}"
        );
    }
}

/// Every fixture config builds its own state dict exactly, in order, and
/// takes the released structure it is.
#[test]
fn each_released_config_is_its_variant_and_builds_its_state_dict() {
    let fixture = fixture();
    let expected_variant = [
        ("unet-sd-1.5", "sd-1"),
        ("unet-sd-1.5-inpainting", "sd-1"),
        ("unet-sd-2.1", "sd-2"),
        ("unet-sdxl-base", "sdxl"),
        ("unet-sdxl-refiner", "sdxl-refiner"),
        ("vae-sd", "sd"),
        ("vae-16-channels", "sd3-flux"),
        ("controlnet-sd-1.5", "sd-1"),
        ("controlnet-sdxl", "sdxl"),
        ("flux-small", "flux"),
        ("sd3-small", "sd3"),
        ("sd3-small-deeper", "sd3"),
        ("sd3.5-small", "sd3.5-large"),
    ];
    for (name, variant) in expected_variant {
        let model = read(&fixture["configs"][name]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.config["_ckptcheck_variant"], json!(variant), "{name}");
        let Some(listing) = fixture["checkpoints"].get(name) else {
            continue;
        };
        let built: Vec<(String, Vec<u64>)> = model
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let want = load_case::names_and_shapes(listing);
        assert_eq!(built, want, "{name}");
    }
}

/// SD3.5 Medium's first 13 blocks have a second attention
/// (`dual_attention_layers`), a structure no variant describes: its released
/// config is refused, naming the field, not read as SD3 or SD3.5 Large.
#[test]
fn sd35_medium_is_refused_naming_its_dual_attention_layers() {
    let fixture = fixture();
    let error =
        read(&fixture["configs"]["sd3.5-medium"]).expect_err("no variant has dual attention");
    assert_eq!(error.kind, ErrorKind::BadConfig);
    assert!(
        error.message.contains("dual_attention_layers") && error.message.contains("sd3.5-large"),
        "{}",
        error.message
    );
}

/// A config whose names no described structure has is refused, naming
/// each structure's reason; a list where a structure has a number (and
/// the reverse) is not read as a default.
#[test]
fn diffusers_configs_no_variant_fits_are_refused() {
    let fixture = fixture();
    let mut config = fixture["configs"]["unet-sd-1.5"].clone();
    config["resnet_time_scale_shift"] = json!("scale_shift");
    let error = read(&config).expect_err("scale_shift is no described structure");
    assert_eq!(error.kind, ErrorKind::BadConfig);
    assert!(
        error.message.contains("resnet_time_scale_shift"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("sd-1") && error.message.contains("sdxl"),
        "{}",
        error.message
    );

    let mut config = fixture["configs"]["unet-sdxl-base"].clone();
    config["transformer_layers_per_block"] = json!(2);
    let error = read(&config).expect_err("a number where SDXL has a list");
    assert!(
        error.message.contains("transformer_layers_per_block"),
        "{}",
        error.message
    );

    let config = json!({"_class_name": "UNet3DConditionModel"});
    let error = read(&config).expect_err("an undescribed class");
    assert!(
        error.message.contains("UNet2DConditionModel"),
        "{}",
        error.message
    );
}

/// Inference reads a diffusers state dict as its class and structure and
/// writes a config.json that rebuilds it.
#[test]
fn a_diffusers_state_dict_is_inferred_as_its_released_structure() {
    let fixture = fixture();
    for (name, variant) in [
        ("unet-sd-1.5-inpainting", "sd-1"),
        ("unet-sd-2.1", "sd-2"),
        ("unet-sdxl-base", "sdxl"),
        ("vae-sd", "sd"),
        ("controlnet-sd-1.5", "sd-1"),
    ] {
        let checkpoint = checkpoint_of(&fixture["checkpoints"][name]);
        let names: Vec<(String, Vec<u64>)> = checkpoint
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let (inferred, findings) =
            zoo::infer::infer(&names).unwrap_or_else(|| panic!("{name}: nothing inferred"));
        assert_eq!(inferred.family, "diffusers", "{name}");
        assert_eq!(findings, 0, "{name}: {:?}", inferred.undetermined);
        assert_eq!(
            inferred.config["_ckptcheck_variant"],
            json!(variant),
            "{name}"
        );
        let class = fixture["configs"][name]["_class_name"].clone();
        assert_eq!(inferred.config["_class_name"], class, "{name}");
        let rebuilt = read(&inferred.config).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rebuilt: Vec<(String, Vec<u64>)> = rebuilt
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        assert_eq!(rebuilt, names, "{name}");
    }
    assert!(zoo::diffusers::described_classes()
        .iter()
        .any(|(class, variants)| *class == "UNet2DConditionModel" && variants.contains(&"sdxl")));
}
