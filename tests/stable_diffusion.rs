//! Stable Diffusion (1.x, 2.x, XL, 3, 3.5), FLUX.1, FLUX.2 and Chroma
//! single-file checkpoints against the libraries.
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

/// A JSON fixture under tests/fixtures/sd/.
fn sd_fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/sd/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture() -> Value {
    sd_fixture("sd_loads.json")
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
        "flux2/dev" => "flux-2-dev",
        "chroma/hd" => "chroma",
        other => panic!("no diffusers type for {other}"),
    }
}

#[test]
fn each_release_is_the_listing_diffusers_converts_and_names() {
    let fixture = fixture();
    let releases = fixture["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 16);
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

/// FLUX.2 and Chroma single files (Black Forest Labs' `flux2` layout;
/// Chroma's, as ComfyUI loads it) are their releases, bare or under
/// ComfyUI's prefix, and one loaded as the FLUX.1 release it is mistaken
/// for is explained as what it is, with the diffusers class that builds it.
#[test]
fn flux2_and_chroma_files_are_named_and_explained() {
    for (name, label, class) in [
        ("flux2/dev", "FLUX.2", "Flux2Transformer2DModel"),
        ("chroma/hd", "Chroma", "ChromaTransformer2DModel"),
    ] {
        for prefix in ["", "model.diffusion_model."] {
            let prefixed: Vec<(String, Vec<u64>)> = names(&release(name))
                .into_iter()
                .map(|(key, shape)| (format!("{prefix}{key}"), shape))
                .collect();
            let inferred = arch::infer(&prefixed);
            assert_eq!(inferred.preset.as_deref(), Some(name), "{prefix:?}");
        }
        let mut file = Checkpoint::new("model.safetensors", "safetensors", 0);
        for (key, shape) in names(&release(name)) {
            file.tensors.push(TensorInfo::new(key, "BF16", shape));
        }
        let into = if name == "chroma/hd" {
            "flux/schnell"
        } else {
            "flux/dev"
        };
        let report = check(&file, &release(into), Loader::Strict);
        assert_eq!(format!("{:?}", report.verdict), "WontLoad");
        let cause = &report.explanation[0];
        assert_eq!(cause.cause, "sd-release", "{:?}", report.explanation);
        assert!(
            cause
                .text
                .starts_with(&format!("{label} release: the checkpoint is"))
                && cause.text.contains(&format!("({name})"))
                && cause.text.contains(&format!("use {class}()")),
            "{}",
            cause.text
        );
        // Its own release loads it.
        let report = check(&file, &release(name), Loader::Strict);
        assert_eq!(format!("{:?}", report.verdict), "Loads", "{name}");
    }
    // A Chroma cut short (18 of its 19 double-stream blocks) is closest to
    // Chroma, not to FLUX.1.
    let cut: Vec<(String, Vec<u64>)> = names(&release("chroma/hd"))
        .into_iter()
        .filter(|(key, _)| !key.starts_with("double_blocks.18."))
        .collect();
    let inferred = arch::infer(&cut);
    assert_eq!(inferred.preset, None);
    assert_eq!(inferred.ranking[0].preset, "chroma/hd");
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

/// Each release's inference YAML in tests/fixtures/sd/yaml/, with its release.
const RELEASE_YAMLS: [(&str, &str); 7] = [
    ("v1-inference.yaml", "sd/1.5"),
    ("v1-inpainting-inference.yaml", "sd/1.5-inpainting"),
    ("v2-inference-v.yaml", "sd/2.1-768"),
    ("v2-inference.yaml", "sd/2.1-512"),
    ("v2-inpainting-inference.yaml", "sd/2-inpainting"),
    ("sd_xl_base.yaml", "sd/xl-base"),
    ("sd_xl_refiner.yaml", "sd/xl-refiner"),
];

/// Each release's inference YAML (tests/fixtures/sd/yaml/, whose UNet and
/// VAE diffusers' create_*_diffusers_config_from_ldm builds into the
/// release's, stable_diffusion.py checks) is read as that release, SD 2.x
/// at 512 and at 768-v told apart by `parameterization`.
#[test]
fn each_release_yaml_is_its_release() {
    for (file, release) in RELEASE_YAMLS {
        let model = from_yaml(file, &yaml(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(model.preset.as_deref(), Some(release), "{file}");
        assert_eq!(model.config["yaml"], file, "{file}");
        assert_eq!(model.family, "sd", "{file}");
    }
}

/// A YAML of no release is laid out from its fields, the closest release
/// and the facts that differ kept; one the layout does not build is
/// refused with the field and the closest release; YAML this reader does
/// not take is refused with its line.
#[test]
fn yamls_of_no_release_are_laid_out_or_refused_and_unread_yaml_is_refused() {
    let text = yaml("v1-inference.yaml").replace("context_dim: 768", "context_dim: 1280");
    let model = from_yaml("custom.yaml", &text).expect("laid out");
    assert_eq!(model.preset, None);
    assert_eq!(model.class_name, "LatentDiffusion");
    assert_eq!(model.config["closest_release"], "sd/1.5");
    assert_eq!(
        model.config["differs_from_release"][0],
        "cross_attention_dim 1280 where sd/1.5 has 768"
    );
    let to_k = model
        .tensors
        .iter()
        .find(|t| {
            t.name
                .ends_with("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
        })
        .expect("cross-attention");
    assert_eq!(to_k.shape, [320, 1280]);

    let text = yaml("v1-inference.yaml").replace(
        "legacy: False",
        "legacy: False\n        resblock_updown: True",
    );
    let error = from_yaml("updown.yaml", &text).expect_err("not laid out");
    assert_eq!(error.kind, ckptcheck::ErrorKind::BadConfig);
    assert!(
        error.message.contains("resblock_updown: true"),
        "{}",
        error.message
    );
    assert!(
        error
            .message
            .contains("the rest of its shape facts are sd/1.5's"),
        "{}",
        error.message
    );
    assert_eq!(error.file.as_deref(), Some("updown.yaml"));
    let text = yaml("v1-inference.yaml").replace(
        "target: ldm.modules.encoders.modules.FrozenCLIPEmbedder",
        "target: ldm.modules.encoders.modules.FrozenT5Embedder",
    );
    let error = from_yaml("t5.yaml", &text).expect_err("an encoder of no release");
    assert!(
        error.message.contains("FrozenT5Embedder"),
        "{}",
        error.message
    );

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

/// Each release's YAML laid out from its fields (sd_layout.rs, which
/// builds the YAMLs of no release) gives the release's tensors exactly:
/// names, order, shapes.
#[test]
fn each_release_yaml_laid_out_from_its_fields_is_the_release() {
    for (file, release_name) in RELEASE_YAMLS {
        let parsed = ckptcheck::arch::sd_yaml::parse(&yaml(file)).expect(file);
        let model =
            arch::stable_diffusion::laid_out(&parsed).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = release(release_name);
        let got_names = names(&model);
        let want_names = names(&want);
        for (index, (got, want)) in got_names.iter().zip(&want_names).enumerate() {
            assert_eq!(got, want, "{file}: tensor {index}");
        }
        assert_eq!(got_names.len(), want_names.len(), "{file}: count");
        assert_eq!(digest(&model), digest(&want), "{file}");
        assert_eq!(model.class_name, want.class_name, "{file}");
    }
}

fn variations() -> Value {
    sd_fixture("yaml_variations.json")
}

/// A release YAML with the variation's edits, each old text found once.
fn edited_yaml(variation: &Value) -> String {
    let mut text = yaml(variation["base"].as_str().unwrap());
    for pair in variation["edits"].as_array().unwrap() {
        let (old, new) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        assert_eq!(text.matches(old).count(), 1, "{old:?}");
        text = text.replacen(old, new, 1);
    }
    text
}

/// Inference YAMLs of no release (tests/fixtures/sd/yaml_variations.json,
/// made by make_yaml_variations.py: InstructPix2Pix's 8 input channels and
/// seeded random widths, levels, blocks, attention resolutions, depths,
/// context, VAE sizes and schedules on the v1, v2 and SDXL YAMLs, each
/// listing checked by diffusers' converter) build exactly the listing
/// diffusers makes of them: names, order, shapes.
#[test]
fn yamls_of_no_release_build_what_diffusers_builds_of_them() {
    let variations = variations();
    let variations = variations["variations"].as_array().unwrap();
    assert!(variations.len() >= 20, "{}", variations.len());
    for variation in variations {
        let name = variation["name"].as_str().unwrap();
        let model = from_yaml(&format!("{name}.yaml"), &edited_yaml(variation))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.preset, None, "{name}");
        assert_eq!(model.tensors.len() as u64, variation["count"], "{name}");
        assert_eq!(model.tensors[0].name, variation["first"], "{name}");
        assert_eq!(
            model.tensors.last().unwrap().name,
            variation["last"],
            "{name}"
        );
        assert_eq!(digest(&model), variation["digest"], "{name}");
    }
}

/// An InstructPix2Pix file (8 input channels) loads into the model of its
/// YAML; an SD 1.5 file checked against that YAML is named as SD 1.5 with
/// the one fact that differs and the YAML to use.
#[test]
fn a_release_file_with_a_yaml_of_no_release_names_the_differing_fact() {
    let variations = variations();
    let pix2pix = variations["variations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "instruct-pix2pix")
        .expect("fixture");
    let model = from_yaml("generate.yaml", &edited_yaml(pix2pix)).expect("laid out");
    let mut own = Checkpoint::new("instruct-pix2pix-00-22000.ckpt", "pytorch", 0);
    for (name, shape) in names(&model) {
        own.tensors.push(TensorInfo::new(name, "F32", shape));
    }
    let report = check(&own, &model, Loader::Strict);
    assert_eq!(
        format!("{:?}", report.verdict),
        "Loads",
        "{:?}",
        report.pytorch_error
    );

    let mut sd15 = Checkpoint::new("v1-5-pruned-emaonly.safetensors", "safetensors", 0);
    for (name, shape) in names(&release("sd/1.5")) {
        sd15.tensors.push(TensorInfo::new(name, "F32", shape));
    }
    let report = check(&sd15, &model, Loader::Ldm);
    assert_eq!(format!("{:?}", report.verdict), "WontLoad");
    let error = report.pytorch_error.as_deref().unwrap();
    assert!(
        error.contains("size mismatch for model.diffusion_model.input_blocks.0.0.weight: copying a param with shape torch.Size([320, 4, 3, 3]) from checkpoint, the shape in current model is torch.Size([320, 8, 3, 3])"),
        "{error}"
    );
    let cause = &report.explanation[0];
    assert_eq!(cause.cause, "sd-release", "{:?}", report.explanation);
    for said in [
        "(sd/1.5)",
        "in_channels 8 where sd/1.5 has 4",
        "use v1-inference.yaml",
    ] {
        assert!(cause.text.contains(said), "{said}: {}", cause.text);
    }
}

/// T5 v1.1 XXL's encoder as transformers' T5EncoderModel saves it (24
/// blocks of self-attention and a gated-GELU feed-forward, width 4096,
/// 64 heads of 64, feed-forward 10240, 32128 tokens, 32 relative-position
/// buckets in the first block): 219 tensors without the input embedding
/// tied to `shared`.
fn t5_xxl_encoder(prefix: &str) -> Vec<(String, Vec<u64>)> {
    let mut out = vec![(format!("{prefix}shared.weight"), vec![32128, 4096])];
    for block in 0..24 {
        let at = format!("{prefix}encoder.block.{block}.layer.");
        for part in ["q", "k", "v", "o"] {
            out.push((
                format!("{at}0.SelfAttention.{part}.weight"),
                vec![4096, 4096],
            ));
        }
        if block == 0 {
            out.push((
                format!("{at}0.SelfAttention.relative_attention_bias.weight"),
                vec![32, 64],
            ));
        }
        out.push((format!("{at}0.layer_norm.weight"), vec![4096]));
        out.push((
            format!("{at}1.DenseReluDense.wi_0.weight"),
            vec![10240, 4096],
        ));
        out.push((
            format!("{at}1.DenseReluDense.wi_1.weight"),
            vec![10240, 4096],
        ));
        out.push((format!("{at}1.DenseReluDense.wo.weight"), vec![4096, 10240]));
        out.push((format!("{at}1.layer_norm.weight"), vec![4096]));
    }
    out.push((
        format!("{prefix}encoder.final_layer_norm.weight"),
        vec![4096],
    ));
    out
}

/// A release's tensors under `from`, renamed to be under `to`.
fn moved(release_name: &str, from: &str, to: &str) -> Vec<(String, Vec<u64>)> {
    names(&release(release_name))
        .into_iter()
        .filter_map(|(name, shape)| Some((format!("{to}{}", name.strip_prefix(from)?), shape)))
        .collect()
}

/// A ComfyUI all-in-one FLUX.1 file (the transformer under
/// `model.diffusion_model.`, the VAE under `vae.`, CLIP-L and T5-XXL under
/// `text_encoders.*.transformer.`) is ranked by its transformer, and its
/// bundled parts are named and checked: exact where they are the models
/// diffusers builds (CLIP-L as SD 1.5's text encoder, the VAE as SD3's,
/// T5-XXL as written above), what is missing where a part is cut short.
/// Checked against the transformer alone, the cause names the parts and
/// the pipeline loader the file is for.
#[test]
fn an_all_in_one_flux_file_names_and_checks_its_bundled_parts() {
    let mut all: Vec<(String, Vec<u64>)> = moved("flux/dev", "", "model.diffusion_model.");
    all.extend(moved("sd3/medium", "first_stage_model.", "vae."));
    all.extend(moved(
        "sd/1.5",
        "cond_stage_model.transformer.",
        "text_encoders.clip_l.transformer.",
    ));
    all.extend(t5_xxl_encoder("text_encoders.t5xxl.transformer."));
    let inferred = arch::infer(&all);
    assert_eq!(inferred.preset.as_deref(), Some("flux/dev"));
    let bundled: Vec<(String, String)> = inferred
        .fields
        .iter()
        .map(|f| (f.field.clone(), f.value.as_str().unwrap_or("").to_string()))
        .collect();
    let exact = |name: &str| (format!("bundled {name}"), "exact".to_string());
    assert_eq!(bundled, [exact("CLIP-L"), exact("T5-XXL"), exact("VAE")]);
    assert!(inferred.fields[1]
        .evidence
        .starts_with("219 tensors under text_encoders.t5xxl.transformer."));

    // T5-XXL cut to its first twelve blocks; CLIP-G of OpenCLIP's width.
    let short: Vec<(String, Vec<u64>)> = all
        .iter()
        .filter(|(name, _)| {
            name.strip_prefix("text_encoders.t5xxl.transformer.encoder.block.")
                .and_then(|rest| rest.split('.').next()?.parse::<u32>().ok())
                .is_none_or(|block| block < 12)
        })
        .cloned()
        .collect();
    let inferred = arch::infer(&short);
    let t5 = inferred
        .fields
        .iter()
        .find(|f| f.field == "bundled T5-XXL")
        .expect("T5-XXL");
    assert!(
        t5.value
            .as_str()
            .unwrap()
            .starts_with("108 missing (text_encoders.t5xxl.transformer.encoder.block.12.layer.0.SelfAttention.q.weight"),
        "{}",
        t5.value
    );

    let mut file = Checkpoint::new("flux1-dev-fp8.safetensors", "safetensors", 0);
    for (name, shape) in &all {
        file.tensors
            .push(TensorInfo::new(name.clone(), "BF16", shape.clone()));
    }
    let report = check(&file, &release("flux/dev"), Loader::Strict);
    let cause = report
        .explanation
        .iter()
        .find(|c| c.cause == "sd-bundled")
        .unwrap_or_else(|| panic!("{:?}", report.explanation));
    assert_eq!(cause.unexpected, 196 + 219 + 244);
    for said in [
        "CLIP-L (text_encoders.clip_l.transformer., 196 tensors: exact)",
        "T5-XXL (text_encoders.t5xxl.transformer., 219 tensors: exact)",
        "VAE (vae., 244 tensors: exact)",
        "FluxPipeline.from_single_file",
    ] {
        assert!(cause.text.contains(said), "{said}: {}", cause.text);
    }
    // Its keys are the cause's, not left over as unexplained groups.
    assert!(
        report
            .explanation
            .iter()
            .all(|c| !c.field.starts_with("text_encoders.")),
        "{:?}",
        report.explanation
    );
    // The transformer alone has nothing bundled.
    let bare = moved("flux/dev", "", "");
    assert!(arch::infer(&bare).fields.is_empty());
}

/// A YAML of hostile or impossible values is refused with the field, never
/// laid out into a panic or an unbounded listing.
#[test]
fn a_yaml_of_hostile_values_is_refused_with_the_field() {
    let v1 = yaml("v1-inference.yaml");
    let v2 = yaml("v2-inference-v.yaml");
    let sdxl = yaml("sd_xl_base.yaml");
    for (base, old, new, said) in [
        (
            &v1,
            "model_channels: 320",
            "model_channels: 0",
            "model_channels is 0",
        ),
        (
            &v1,
            "model_channels: 320",
            "model_channels: 1099511627776",
            "a width of",
        ),
        (
            &v1,
            "model_channels: 320",
            "model_channels: 330",
            "not a multiple of GroupNorm's 32",
        ),
        (
            &v2,
            "model_channels: 320",
            "model_channels: 352",
            "num_head_channels 64 does not divide",
        ),
        (
            &v1,
            "channel_mult: [ 1, 2, 4, 4 ]",
            "channel_mult: []",
            "channel_mult of no level",
        ),
        (
            &v1,
            "channel_mult: [ 1, 2, 4, 4 ]",
            "channel_mult: [1, 0]",
            "a channel_mult of 0",
        ),
        (
            &v1,
            "channel_mult: [ 1, 2, 4, 4 ]",
            "channel_mult: [1, 1, 1, 1, 1, 1, 1, 1, 1]",
            "more than 8",
        ),
        (
            &v1,
            "transformer_depth: 1",
            "transformer_depth: 100000",
            "a transformer_depth above 64",
        ),
        (
            &v1,
            "transformer_depth: 1",
            "transformer_depth: [1, 2]",
            "2 entries for 4 levels",
        ),
        (
            &v1,
            "num_res_blocks: 2\n        channel_mult",
            "num_res_blocks: 1000000\n        channel_mult",
            "num_res_blocks above 16",
        ),
        (
            &v1,
            "in_channels: 4",
            "in_channels: -1",
            "a whole number at in_channels",
        ),
        (
            &v1,
            "context_dim: 768",
            "context_dim: [768, 1024]",
            "context_dim differing between levels",
        ),
        (
            &v1,
            "context_dim: 768",
            "context_dim: [0]",
            "context_dim is 0",
        ),
        (&v1, "timesteps: 1000", "timesteps: 0", "timesteps 0"),
        (&v1, "z_channels: 4", "z_channels: 0", "z_channels is 0"),
        (
            &v1,
            "attn_resolutions: []",
            "attn_resolutions: [32]",
            "attention in the VAE's levels",
        ),
        (&v1, "use_ema: False", "use_ema: True", "use_ema"),
        (
            &sdxl,
            "num_classes: sequential",
            "num_classes: continuous",
            "num_classes \"continuous\"",
        ),
        (
            &sdxl,
            "attn_type: vanilla-xformers",
            "attn_type: linear",
            "a VAE attention other than vanilla",
        ),
        (
            &sdxl,
            "arch: ViT-bigG-14",
            "arch: ViT-L-14",
            "FrozenOpenCLIPEmbedder2 of ViT-L-14",
        ),
    ] {
        assert_eq!(base.matches(old).count(), 1, "{old}");
        let text = base.replacen(old, new, 1);
        let error = from_yaml("hostile.yaml", &text).expect_err(new);
        assert_eq!(error.kind, ckptcheck::ErrorKind::BadConfig, "{new}");
        assert!(error.message.contains(said), "{new}: {}", error.message);
        assert_eq!(error.file.as_deref(), Some("hostile.yaml"));
    }
}
