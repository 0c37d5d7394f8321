//! Stable Diffusion (1.x, 2.x, XL, 3, 3.5) and FLUX.1 single-file
//! checkpoints against the libraries.
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
        "sd3/medium" => "sd3",
        "sd3.5/large" => "sd35_large",
        "sd3.5/medium" => "sd35_medium",
        "flux/dev" => "flux-dev",
        "flux/schnell" => "flux-schnell",
        "flux/fill" => "flux-fill",
        "flux/depth" => "flux-depth",
        other => panic!("no diffusers type for {other}"),
    }
}

#[test]
fn each_release_is_the_listing_diffusers_converts_and_names() {
    let fixture = fixture();
    let releases = fixture["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 14);
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

/// A FLUX.1 Fill file (384 input channels) loaded as FLUX.1 [dev]: one size
/// mismatch, explained as the release the file is with the diffusers config
/// that builds it; the same file as ComfyUI saves it (under
/// `model.diffusion_model.`) is recognised as that release too.
#[test]
fn a_flux_fill_file_as_flux_dev_is_explained_as_fill() {
    let model = release("flux/dev");
    let mut checkpoint = Checkpoint::new("flux1-fill-dev.safetensors", "safetensors", 0);
    for (name, shape) in names(&release("flux/fill")) {
        checkpoint
            .tensors
            .push(TensorInfo::new(name, "BF16", shape));
    }
    let report = check(&checkpoint, &model, Loader::Strict);
    assert_eq!(format!("{:?}", report.verdict), "WontLoad");
    assert_eq!(report.size_mismatches.len(), 1);
    // FLUX.1's loaders are not strict, as Stable Diffusion's are not.
    assert!(
        report
            .notes
            .iter()
            .any(|note| note.starts_with("FLUX.1's reference code")),
        "{:?}",
        report.notes
    );
    let cause = &report.explanation[0];
    assert_eq!(cause.cause, "sd-release", "{:?}", report.explanation);
    assert_eq!(
        cause.text,
        "FLUX.1 release: the checkpoint is FLUX.1 Fill [dev]: FLUX.1 [dev] for inpainting and outpainting, \
         384 input channels (latents, masked image, mask) (flux/fill); the model is FLUX.1 [dev]: a 12B \
         rectified-flow transformer (19 double-stream and 38 single-stream blocks, width 3072) with guidance \
         embedding (flux/dev, FluxTransformer2DModel(guidance_embeds=True)): use \
         FluxTransformer2DModel(guidance_embeds=True, in_channels=384, out_channels=64) — 1 size mismatch"
    );
    for prefix in ["", "model.diffusion_model."] {
        let prefixed: Vec<(String, Vec<u64>)> = names(&release("flux/fill"))
            .into_iter()
            .map(|(name, shape)| (format!("{prefix}{name}"), shape))
            .collect();
        let inferred = arch::infer(&prefixed);
        assert_eq!(inferred.preset.as_deref(), Some("flux/fill"), "{prefix:?}");
    }
    // The ComfyUI file into the model: its prefix is the cause.
    let mut comfy = Checkpoint::new("flux1-fill-dev-comfy.safetensors", "safetensors", 0);
    for (name, shape) in names(&release("flux/fill")) {
        let name = format!("model.diffusion_model.{name}");
        comfy.tensors.push(TensorInfo::new(name, "BF16", shape));
    }
    let report = check(&comfy, &release("flux/fill"), Loader::Strict);
    assert_eq!(report.explanation[0].cause, "wrapper-prefix");
    assert!(report.explanation[0]
        .text
        .contains("`model.diffusion_model.` prefix"));
    // schnell has no guidance embedding: a [dev] file into it has the four
    // tensors of `guidance_in` unexpected.
    let schnell = release("flux/schnell");
    let mut dev = Checkpoint::new("flux1-dev.safetensors", "safetensors", 0);
    for (name, shape) in names(&release("flux/dev")) {
        dev.tensors.push(TensorInfo::new(name, "BF16", shape));
    }
    let report = check(&dev, &schnell, Loader::Strict);
    assert_eq!(
        report.unexpected_keys.len(),
        4,
        "{:?}",
        report.unexpected_keys
    );
    assert!(report
        .unexpected_keys
        .iter()
        .all(|k| k.starts_with("guidance_in.")));
    assert!(
        report.explanation[0]
            .text
            .contains("use FluxTransformer2DModel(guidance_embeds=True)"),
        "{:?}",
        report.explanation
    );
}

/// An SD3.5 Large file loaded as SD3 Medium is explained as the release it
/// is; the MMDiT saved alone, without its prefix and its VAE, is still
/// ranked closest to its release.
#[test]
fn an_sd35_large_file_as_sd3_medium_is_explained_as_sd35_large() {
    let mut checkpoint = Checkpoint::new("sd3.5_large.safetensors", "safetensors", 0);
    for (name, shape) in names(&release("sd3.5/large")) {
        checkpoint.tensors.push(TensorInfo::new(name, "F16", shape));
    }
    // Files that bundle the text encoders hold them beside the MMDiT.
    checkpoint.tensors.push(TensorInfo::new(
        "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight",
        "F16",
        vec![77, 768],
    ));
    let report = check(&checkpoint, &release("sd3/medium"), Loader::Strict);
    assert_eq!(format!("{:?}", report.verdict), "WontLoad");
    let cause = &report.explanation[0];
    assert_eq!(cause.cause, "sd-release", "{:?}", report.explanation);
    assert!(
        cause.text.starts_with(
            "Stable Diffusion 3 release: the checkpoint is Stable Diffusion 3.5 Large (and Large Turbo)"
        ),
        "{}",
        cause.text
    );
    assert!(
        cause.text.contains(
            "use SD3Transformer2DModel with the config of the preset diffusers/sd3.5-large/transformer"
        ),
        "{}",
        cause.text
    );
    let mmdit_alone: Vec<(String, Vec<u64>)> = names(&release("sd3.5/large"))
        .into_iter()
        .filter_map(|(name, shape)| {
            Some((
                name.strip_prefix("model.diffusion_model.")?.to_string(),
                shape,
            ))
        })
        .collect();
    let inferred = arch::infer(&mmdit_alone);
    assert_eq!(inferred.family, "sd");
    assert_eq!(inferred.ranking[0].preset, "sd3.5/large");
    assert!(inferred.preset.is_none(), "the VAE is missing: not exact");
}

fn yaml(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/sd/yaml/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn from_yaml(name: &str, text: &str) -> ckptcheck::Result<ModelSpec> {
    arch::model_from_config_json(&[(name.to_string(), text.to_string())])
}

/// Each release's inference YAML (tests/fixtures/sd/yaml/, whose UNet and
/// VAE diffusers' create_*_diffusers_config_from_ldm builds into the
/// release's, stable_diffusion.py checks) is read as that release, SD 2.x
/// at 512 and at 768-v told apart by `parameterization`.
#[test]
fn each_release_yaml_is_its_release() {
    for (file, release) in [
        ("v1-inference.yaml", "sd/1.5"),
        ("v1-inpainting-inference.yaml", "sd/1.5-inpainting"),
        ("v2-inference-v.yaml", "sd/2.1-768"),
        ("v2-inference.yaml", "sd/2.1-512"),
        ("v2-inpainting-inference.yaml", "sd/2-inpainting"),
        ("sd_xl_base.yaml", "sd/xl-base"),
        ("sd_xl_refiner.yaml", "sd/xl-refiner"),
    ] {
        let model = from_yaml(file, &yaml(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(model.preset.as_deref(), Some(release), "{file}");
        assert_eq!(model.config["yaml"], file, "{file}");
        assert_eq!(model.family, "sd", "{file}");
    }
}

/// A YAML of no release is refused with the closest release and the facts
/// that differ; YAML this reader does not take is refused with its line.
#[test]
fn yamls_of_no_release_and_unread_yaml_are_refused() {
    let text = yaml("v1-inference.yaml").replace("context_dim: 768", "context_dim: 1280");
    let error = from_yaml("custom.yaml", &text).expect_err("no release has it");
    assert_eq!(error.kind, ckptcheck::ErrorKind::BadConfig);
    assert!(
        error.message.contains("closest is sd/1.5"),
        "{}",
        error.message
    );
    assert!(
        error
            .message
            .contains("cross_attention_dim 1280 where sd/1.5 has 768"),
        "{}",
        error.message
    );
    assert_eq!(error.file.as_deref(), Some("custom.yaml"));

    let text = yaml("v1-inference.yaml").replace(
        "  params:\n    linear_start",
        "  params: &p\n    linear_start",
    );
    let error = from_yaml("anchored.yaml", &text).expect_err("anchors are not read");
    assert!(error.message.contains("YAML line 6"), "{}", error.message);

    let error = from_yaml("tabs.yaml", "model:\n\t target: x\n").expect_err("a tab");
    assert!(
        error.message.contains("YAML line 2: a tab"),
        "{}",
        error.message
    );

    let error = from_yaml("other.yaml", "name: not a model\n").expect_err("no model section");
    assert!(
        error
            .message
            .contains("not a Stable Diffusion inference YAML"),
        "{}",
        error.message
    );
}

/// The reader's YAML: nested mappings, sequences of mappings (SDXL's
/// `emb_models`), block and flow lists, comments, quoted and plain scalars.
#[test]
fn the_yaml_reader_reads_what_the_release_yamls_use() {
    let value = arch::sd_yaml::parse(
        "a:\n  b: 1  # one\n  c: [1, 2, [3, 4]]\n  d:\n  - x\n  - 'y # not a comment'\n  e:\n    - k: 1\n      l: \"two\"\n    - k: 3\nf: True\ng: 1.e-6\nh: ~\n",
    )
    .unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "a": {"b": 1, "c": [1, 2, [3, 4]], "d": ["x", "y # not a comment"],
                  "e": [{"k": 1, "l": "two"}, {"k": 3}]},
            "f": true, "g": 1e-6, "h": null
        })
    );
}
