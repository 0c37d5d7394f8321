//! diffusers models (`config.json` with `_class_name`) against the library.
//! tests/fixtures/zoo/diffusers_loads.json was written by
//! tests/fixtures/zoo/make_diffusers_loads.py (diffusers 0.42.1 on the
//! `meta` device): configs as `save_config` writes them for released
//! structures (SD 1.5, its inpainting UNet, SD 2.1, SDXL base and refiner,
//! the SD VAE and a 16-channel one, ControlNets, a small Flux, small SD3
//! and SD3.5 transformers, whose last block differs, SD3 Medium and SD3.5
//! Medium as released), each one's
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
        ("sd3-medium", "sd3"),
        ("sd3.5-medium", "sd3.5-medium"),
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
/// (`dual_attention_layers`) and its last block no context output: its own
/// structure, held for that list of blocks and for more layers than the 13.
/// A config that moves the second attention to other blocks, or has too few
/// layers for the last block to be of its own kind, is refused naming the
/// field, never built with the wrong blocks.
#[test]
fn sd35_medium_holds_for_its_dual_attention_layers_only() {
    let fixture = fixture();
    let medium = &fixture["configs"]["sd3.5-medium"];
    let model = read(medium).expect("SD3.5 Medium builds");
    let second_attention: Vec<&str> = model
        .tensors
        .iter()
        .filter(|t| t.name.ends_with(".attn2.to_q.weight"))
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(second_attention.len(), 13);
    assert_eq!(
        second_attention.last(),
        Some(&"transformer_blocks.12.attn2.to_q.weight")
    );

    let mut fewer_dual = medium.clone();
    fewer_dual["dual_attention_layers"] = json!((0..12).collect::<Vec<u64>>());
    let error = read(&fewer_dual).expect_err("another list of dual blocks");
    assert_eq!(error.kind, ErrorKind::BadConfig);
    assert!(
        error.message.contains("dual_attention_layers") && error.message.contains("sd3.5-medium"),
        "{}",
        error.message
    );

    let mut shallow = medium.clone();
    shallow["num_layers"] = json!(13);
    let error = read(&shallow).expect_err("the last block would be a dual one");
    assert_eq!(error.kind, ErrorKind::BadConfig);
    assert!(
        error.message.contains("\"num_layers\" = 13 is below 14"),
        "{}",
        error.message
    );
    let mut deeper = medium.clone();
    deeper["num_layers"] = json!(14);
    let model = read(&deeper).expect("14 layers: 13 dual, then the last");
    assert!(model
        .tensors
        .iter()
        .any(|t| t.name == "transformer_blocks.12.attn2.to_q.weight"));
    assert!(!model
        .tensors
        .iter()
        .any(|t| t.name.starts_with("transformer_blocks.13.attn2.")));
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
        ("sd3-medium", "sd3"),
        ("sd3.5-medium", "sd3.5-medium"),
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

/// An SD3.5 Medium transformer checked with SD3 Medium's config, and the
/// reverse: the findings no size field decides (the 13 blocks' second
/// attention, the RMS norms of queries and keys, `norm1.linear` nine chunks
/// wide instead of six) are explained as the other released structure,
/// naming the fields that choose it; the position embedding's grid is its
/// own field. Likewise SD 2.1's UNet checked with SD 1.5's config: its
/// Linear attention projections are its structure, beside the
/// cross-attention width. Every finding is accounted for.
#[test]
fn another_released_structure_of_the_class_is_explained_by_its_fields() {
    let fixture = fixture();
    let pos_embed = |source: &str, target: &str| {
        format!(
            "pos_embed_max_size: checkpoint {}, model {} — 1 size mismatch",
            fixture["configs"][source]["pos_embed_max_size"],
            fixture["configs"][target]["pos_embed_max_size"]
        )
    };
    for (source, target, texts) in [
        (
            "sd3.5-medium",
            "sd3-medium",
            vec![
                "structure: the checkpoint is SD3Transformer2DModel as sd3.5-medium (dual_attention_layers [0, …, 12], qk_norm rms_norm), the model sd3 (dual_attention_layers [], qk_norm null) — 26 size mismatches, 226 unexpected keys".to_string(),
                pos_embed("sd3.5-medium", "sd3-medium"),
            ],
        ),
        (
            "sd3-medium",
            "sd3.5-medium",
            vec![
                "structure: the checkpoint is SD3Transformer2DModel as sd3 (dual_attention_layers [], qk_norm null), the model sd3.5-medium (dual_attention_layers [0, …, 12], qk_norm rms_norm) — 26 size mismatches, 226 missing keys".to_string(),
                pos_embed("sd3-medium", "sd3.5-medium"),
            ],
        ),
        // SD 2.1's UNet projects in and out of its attention blocks with
        // Linear layers where SD 1.5's has 1x1 convolutions.
        (
            "unet-sd-2.1",
            "unet-sd-1.5",
            vec![
                "cross_attention_dim: checkpoint 1024, model 768 — 32 size mismatches".to_string(),
                "structure: the checkpoint is UNet2DConditionModel as sd-2 (use_linear_projection true), the model sd-1 (use_linear_projection false) — 32 size mismatches".to_string(),
            ],
        ),
    ] {
        let label = format!("{source} -> {target}");
        let checkpoint = checkpoint_of(&fixture["checkpoints"][source]);
        let model = read(&fixture["configs"][target]).unwrap_or_else(|e| panic!("{label}: {e}"));
        let report = check(&checkpoint, &model, Loader::Strict);
        let got: Vec<&str> = report
            .explanation
            .iter()
            .map(|c| c.text.as_str())
            .collect();
        assert_eq!(got, texts, "{label}");
        let accounted: usize = report
            .explanation
            .iter()
            .map(|c| c.missing + c.unexpected + c.size_mismatches)
            .sum();
        assert_eq!(
            accounted,
            report.missing_keys.len() + report.unexpected_keys.len() + report.size_mismatches.len(),
            "{label}"
        );
    }
}

/// The released diffusers components are presets (`ckptcheck presets`),
/// each building the state dict diffusers builds from the release's
/// config (whole in the fixture, or its count and digest), and inference
/// names the release a state dict is.
#[test]
fn released_components_are_presets_that_inference_names() {
    let fixture = fixture();
    for (preset, fixture_name) in [
        ("diffusers/sd-1.5/unet", "unet-sd-1.5"),
        ("diffusers/sd-1.5-inpainting/unet", "unet-sd-1.5-inpainting"),
        ("diffusers/sd-2.1/unet", "unet-sd-2.1"),
        ("diffusers/sdxl-base/unet", "unet-sdxl-base"),
        ("diffusers/sdxl-refiner/unet", "unet-sdxl-refiner"),
        ("diffusers/sd/vae", "vae-sd"),
        ("diffusers/sd3/vae", "vae-16-channels"),
        ("diffusers/sd3-medium/transformer", "sd3-medium"),
        ("diffusers/sd3.5-medium/transformer", "sd3.5-medium"),
        ("diffusers/sd3.5-large/transformer", "sd3.5-large"),
        ("diffusers/flux.1-dev/transformer", "flux.1-dev"),
        ("diffusers/flux.1-schnell/transformer", "flux.1-schnell"),
        ("diffusers/flux.2-dev/transformer", "flux.2-dev"),
        ("diffusers/chroma1-hd/transformer", "chroma1-hd"),
    ] {
        assert!(
            arch::presets()
                .iter()
                .any(|(name, family, _)| name == preset && *family == "diffusers"),
            "{preset} is not listed"
        );
        let model = arch::model_from_preset(preset).unwrap_or_else(|e| panic!("{preset}: {e}"));
        assert_eq!(model.family, "diffusers", "{preset}");
        let built: Vec<(String, Vec<u64>, String)> = model
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), "float32".to_string()))
            .collect();
        if let Some(release) = fixture["releases"].get(fixture_name) {
            assert_eq!(json!(built.len()), release["count"], "{preset}");
            assert_eq!(
                json!(load_case::digest(&built)),
                release["digest"],
                "{preset}"
            );
            continue;
        }
        let listing = &fixture["checkpoints"][fixture_name];
        let want: Vec<(String, Vec<u64>, String)> =
            serde_json::from_value(listing.clone()).expect("listing");
        assert_eq!(built, want, "{preset}");
        let names: Vec<(String, Vec<u64>)> = want.into_iter().map(|(n, s, _)| (n, s)).collect();
        let inferred = arch::infer(&names);
        // SD 1.5's and 2.1's VAE, and SDXL's, have the same shapes: the
        // preset names them all.
        assert_eq!(inferred.preset.as_deref(), Some(preset), "{fixture_name}");
    }
}
