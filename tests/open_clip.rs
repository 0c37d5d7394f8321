//! open_clip / OpenAI CLIP against the real library. The fixtures in
//! tests/fixtures/open_clip/ were written by make_open_clip_fixtures.py
//! (open-clip-torch and torch): every preset's and variant's
//! `state_dict()` and real `load_state_dict` verdicts.

use ckptcheck::arch::{self, open_clip, ModelSpec};
use ckptcheck::checkpoint::StateDictMetadata;
use ckptcheck::diagnosis::check;
use ckptcheck::loader::Loader;
use ckptcheck::{Checkpoint, ErrorKind, TensorInfo};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[path = "support/load_case.rs"]
#[allow(dead_code)]
mod load_case;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/open_clip/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

type Tensor = (String, Vec<u64>, String);

fn tensor_list(value: &Value) -> Vec<Tensor> {
    value
        .as_array()
        .expect("tensor list")
        .iter()
        .map(|t| {
            (
                t[0].as_str().expect("name").to_string(),
                shape(&t[1]),
                t[2].as_str().expect("dtype").to_string(),
            )
        })
        .collect()
}

fn shape(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim"))
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn model_tensors(model: &ModelSpec) -> Vec<Tensor> {
    model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.dtype.clone()))
        .collect()
}

/// Every model of presets.json and variants.json, by name.
fn library_models() -> Vec<Value> {
    let mut out = Vec::new();
    for file in ["presets.json", "variants.json"] {
        out.extend(fixture(file)["models"].as_array().expect("models").clone());
    }
    out
}

/// A preset through the registry, a variant through its config JSON.
fn build(entry: &Value) -> ModelSpec {
    let name = entry["name"].as_str().expect("name");
    match arch::model_from_preset(name) {
        Ok(model) => model,
        Err(_) => open_clip::from_config_value(&entry["config"], Some(name))
            .unwrap_or_else(|e| panic!("{name}: {e:?}")),
    }
}

/// Equal lists, or a panic naming the first difference (the lists are long).
fn assert_same_tensors(label: &str, actual: &[Tensor], expected: &[Tensor]) {
    if actual != expected {
        let first = actual
            .iter()
            .zip(expected)
            .position(|(a, e)| a != e)
            .unwrap_or(actual.len().min(expected.len()));
        panic!(
            "{label}: {} tensors, library has {}; first difference at {first}: ours {:?}, library {:?}",
            actual.len(),
            expected.len(),
            actual.get(first),
            expected.get(first)
        );
    }
}

fn check_model(entry: &Value) {
    let name = entry["name"].as_str().expect("name");
    let model = build(entry);
    assert_same_tensors(
        name,
        &model_tensors(&model),
        &tensor_list(&entry["tensors"]),
    );
    assert_eq!(model.class_name, entry["class_name"], "{name}");
    assert_eq!(
        model.batchnorm_modules,
        strings(&entry["batchnorm_modules"]),
        "{name}"
    );
    assert_eq!(model.family, "open_clip");
    assert_eq!(model.preset.as_deref(), Some(name));
}

#[test]
fn every_preset_is_the_library_state_dict() {
    let presets = fixture("presets.json");
    let names: Vec<String> = presets["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_string())
        .collect();
    let listed: Vec<String> = open_clip::preset_list()
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(listed, names);
    for entry in presets["models"].as_array().expect("models") {
        check_model(entry);
    }
}

#[test]
fn every_variant_is_the_library_state_dict() {
    for entry in fixture("variants.json")["models"]
        .as_array()
        .expect("models")
    {
        check_model(entry);
    }
}

#[test]
fn quickgelu_twins_are_aliases() {
    let plain = arch::model_from_preset("open_clip/ViT-B-32").expect("preset");
    let quick = arch::model_from_preset("open_clip/ViT-B-32-quickgelu").expect("alias");
    assert_eq!(model_tensors(&plain), model_tensors(&quick));
    assert_eq!(quick.config["quick_gelu"], json!(true));
    assert_eq!(
        quick.preset.as_deref(),
        Some("open_clip/ViT-B-32-quickgelu")
    );
    assert!(arch::model_from_preset("open_clip/ViT-M-16-alt-quickgelu").is_err());
}

/// The checkpoint a load case describes: a library state dict with edits.
fn case_checkpoint(case: &Value, models: &BTreeMap<String, Vec<Tensor>>) -> Checkpoint {
    let source = case["checkpoint"].as_str().expect("checkpoint");
    let edits = &case["edits"];
    let prefix = edits["prefix"].as_str().unwrap_or("");
    let drop: Vec<String> = edits.get("drop").map(strings).unwrap_or_default();
    let mut checkpoint = Checkpoint::new("case.pt", "pytorch-zip", 0);
    for (name, tensor_shape, dtype) in &models[source] {
        let dropped = drop
            .iter()
            .any(|d| d == name || (d.starts_with('.') && name.ends_with(d.as_str())));
        if dropped {
            continue;
        }
        let tensor_shape = edits["reshape"]
            .get(name)
            .map(shape)
            .unwrap_or_else(|| tensor_shape.clone());
        checkpoint.tensors.push(TensorInfo::new(
            format!("{prefix}{name}"),
            dtype.clone(),
            tensor_shape,
        ));
    }
    for added in edits["add"].as_array().into_iter().flatten() {
        let dtype = match added[2].as_str() {
            Some("int64") => "I64",
            _ => "F32",
        };
        checkpoint.tensors.push(TensorInfo::new(
            added[0].as_str().expect("key"),
            dtype,
            shape(&added[1]),
        ));
    }
    if let Some(metadata) = case["metadata"].as_object() {
        checkpoint.state_dict_metadata.push(StateDictMetadata {
            path: Vec::new(),
            versions: metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.as_i64()))
                .collect(),
        });
    } else {
        assert_eq!(case["has_metadata"], json!(false));
    }
    assert_eq!(
        checkpoint.tensors.len() as u64,
        case["n_state_dict_keys"].as_u64().expect("count"),
        "{source} {edits}"
    );
    checkpoint
}

#[test]
fn every_load_case_is_what_pytorch_says() {
    let entries = library_models();
    let models: BTreeMap<String, Vec<Tensor>> = entries
        .iter()
        .map(|m| {
            (
                m["name"].as_str().expect("name").to_string(),
                tensor_list(&m["tensors"]),
            )
        })
        .collect();
    let cases = fixture("loads.json");
    let cases = cases["cases"].as_array().expect("cases");
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for case in cases {
        let label = format!(
            "{} {} -> {}",
            case["checkpoint"], case["edits"], case["model"]
        );
        let checkpoint = case_checkpoint(case, &models);
        let model_name = case["model"].as_str().expect("model");
        let entry = entries
            .iter()
            .find(|m| m["name"] == model_name)
            .expect("model in fixtures");
        let model = build(entry);
        let report = check(&checkpoint, &model, Loader::Strict);
        assert_eq!(report.class_name, case["class_name"], "{label}");
        assert_eq!(
            report.missing_keys,
            strings(&case["missing_keys"]),
            "{label}"
        );
        assert_eq!(
            report.unexpected_keys,
            strings(&case["unexpected_keys"]),
            "{label}"
        );
        let mismatches = load_case::mismatches_of(&report);
        let expected: Vec<(String, Vec<u64>, Vec<u64>)> = case["size_mismatches"]
            .as_array()
            .expect("mismatches")
            .iter()
            .map(|m| {
                (
                    m["key"].as_str().expect("key").to_string(),
                    shape(&m["checkpoint_shape"]),
                    shape(&m["model_shape"]),
                )
            })
            .collect();
        assert_eq!(mismatches, expected, "{label}");
        assert_eq!(
            report.pytorch_error.as_deref(),
            case["error"].as_str(),
            "{label}"
        );
        assert_eq!(json!(report.loads), case["loads"], "{label}");
    }
}

fn names_shapes(tensors: &[Tensor]) -> Vec<(String, Vec<u64>)> {
    tensors
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect()
}

#[test]
fn infer_names_every_preset() {
    for entry in fixture("presets.json")["models"]
        .as_array()
        .expect("models")
    {
        let name = entry["name"].as_str().expect("name");
        let tensors = tensor_list(&entry["tensors"]);
        let inferred = arch::infer(&names_shapes(&tensors));
        assert_eq!(inferred.family, "open_clip", "{name}");
        assert_eq!(inferred.preset.as_deref(), Some(name), "{name}");
        assert_eq!(inferred.ranking[0].findings, 0, "{name}");
        assert!(
            inferred.ranking[1..].iter().all(|s| !s.exact),
            "{name}: two presets match exactly"
        );
        let rebuilt = arch::model_for_inferred(&inferred)
            .unwrap_or_else(|| panic!("{name}: inferred config does not build"));
        assert_same_tensors(name, &model_tensors(&rebuilt), &tensors);
    }
}

/// What shapes tell must rebuild the same state dict, for configs that are
/// no preset too. A rectangular patch grid is the one thing shapes cannot
/// tell (96 patches of 32x16 could be 256x192 or 192x256 pixels).
#[test]
fn inferred_config_rebuilds_every_variant() {
    for entry in fixture("variants.json")["models"]
        .as_array()
        .expect("models")
    {
        let name = entry["name"].as_str().expect("name");
        let tensors = tensor_list(&entry["tensors"]);
        let inferred = open_clip::infer(&names_shapes(&tensors))
            .unwrap_or_else(|| panic!("{name}: not recognised"));
        if name == "open_clip/ViT-B-32+rect" {
            assert!(inferred
                .undetermined
                .iter()
                .any(|u| u.starts_with("vision_cfg.image_size")));
            continue;
        }
        let rebuilt = open_clip::from_config_value(&inferred.config, None)
            .unwrap_or_else(|e| panic!("{name}: {e:?}\n{}", inferred.config));
        assert_same_tensors(name, &model_tensors(&rebuilt), &tensors);
    }
}

#[test]
fn inferred_fields_name_what_shapes_show() {
    let bigg = arch::model_from_preset("open_clip/ViT-bigG-14").expect("preset");
    let names: Vec<(String, Vec<u64>)> = bigg
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let inferred = arch::infer(&names);
    for (field, value) in [
        ("embed_dim", json!(1280)),
        ("vision_cfg.width", json!(1664)),
        ("vision_cfg.layers", json!(48)),
        ("vision_cfg.patch_size", json!(14)),
        ("vision_cfg.image_size", json!(224)),
        ("vision_cfg.mlp_ratio", json!(4.9231)),
        ("text_cfg.width", json!(1280)),
        ("text_cfg.layers", json!(32)),
        ("text_cfg.context_length", json!(77)),
        ("text_cfg.vocab_size", json!(49408)),
    ] {
        assert_eq!(inferred.field(field), Some(&value), "{field}");
    }
    assert!(inferred
        .undetermined
        .iter()
        .any(|u| u.starts_with("vision_cfg.head_width")));
    assert!(inferred
        .undetermined
        .iter()
        .any(|u| u.starts_with("text_cfg.heads")));
    // The closest preset supplies the heads, so the config is ViT-bigG-14's.
    assert_eq!(inferred.config["vision_cfg"]["head_width"], json!(104));
    assert_eq!(inferred.config["text_cfg"]["heads"], json!(20));

    let rn = arch::model_from_preset("open_clip/RN50x4").expect("preset");
    let names: Vec<(String, Vec<u64>)> = rn
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let inferred = arch::infer(&names);
    assert_eq!(
        inferred.field("vision_cfg.layers"),
        Some(&json!([4, 6, 10, 6]))
    );
    assert_eq!(inferred.field("vision_cfg.width"), Some(&json!(80)));
    assert_eq!(inferred.field("vision_cfg.image_size"), Some(&json!(288)));
    assert_eq!(inferred.field("embed_dim"), Some(&json!(640)));
}

#[test]
fn other_families_are_not_open_clip() {
    let cn = arch::model_from_preset("ViT-B-16@RoBERTa-wwm-ext-base-chinese").expect("cn_clip");
    let names: Vec<(String, Vec<u64>)> = cn
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    assert!(open_clip::infer(&names).is_none());
    assert_eq!(arch::infer(&names).family, "cn_clip");
    let visual_only: Vec<(String, Vec<u64>)> = vec![("visual.proj".into(), vec![768, 512])];
    assert!(open_clip::infer(&visual_only).is_none());
    let text_only: Vec<(String, Vec<u64>)> =
        vec![("token_embedding.weight".into(), vec![49408, 512])];
    assert!(open_clip::infer(&text_only).is_none());
}

#[test]
fn unsupported_towers_are_config_errors_naming_the_field() {
    let hf = json!({
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
        "text_cfg": {"hf_model_name": "roberta-base", "hf_tokenizer_name": "roberta-base",
                     "hf_proj_type": "mlp", "hf_pooler_type": "mean_pooler"}
    });
    let error = open_clip::from_config_value(&hf, None).expect_err("hf text tower");
    assert_eq!(error.kind, ErrorKind::BadConfig);
    assert!(
        error.message.contains("text_cfg.hf_model_name"),
        "{}",
        error.message
    );
    let timm = json!({
        "embed_dim": 512,
        "vision_cfg": {"timm_model_name": "convnext_base", "image_size": 224},
        "text_cfg": {"width": 512, "heads": 8, "layers": 12}
    });
    let error = open_clip::from_config_value(&timm, None).expect_err("timm tower");
    assert!(error.message.contains("vision_cfg.timm_model_name"));
    let coca = json!({"embed_dim": 512, "vision_cfg": {}, "text_cfg": {}, "multimodal_cfg": {}});
    let error = open_clip::from_config_value(&coca, None).expect_err("coca");
    assert!(error.message.contains("multimodal_cfg"));
}

#[test]
fn bad_configs_name_the_field() {
    for (config, field) in [
        (
            json!({"embed_dim": 512, "vision_cfg": {"width": "wide"}, "text_cfg": {}}),
            "vision_cfg.width",
        ),
        (
            json!({"embed_dim": 512, "vision_cfg": {"width": 768, "head_width": 100}, "text_cfg": {}}),
            "vision_cfg.head_width",
        ),
        (
            json!({"embed_dim": 512, "vision_cfg": {}, "text_cfg": {"width": 512, "heads": 7}}),
            "text_cfg.heads",
        ),
        (
            json!({"embed_dim": 512, "vision_cfg": {"layers": [3, 4, 6]}, "text_cfg": {}}),
            "vision_cfg.layers",
        ),
        (json!({"vision_cfg": {}, "text_cfg": {}}), "embed_dim"),
        (
            json!({"embed_dim": 512, "vision_cfg": {"image_size": 16, "patch_size": 32}, "text_cfg": {}}),
            "image_size",
        ),
    ] {
        let error = open_clip::from_config_value(&config, None).expect_err("bad config");
        assert_eq!(error.kind, ErrorKind::BadConfig);
        assert!(error.message.contains(field), "{field}: {}", error.message);
    }
}

#[test]
fn config_json_is_recognised_as_open_clip() {
    let text = open_clip::MODEL_CONFIGS
        .iter()
        .find(|(name, _)| *name == "ViT-L-14-336")
        .expect("config")
        .1;
    let model = arch::model_from_config_json(&[("ViT-L-14-336.json".into(), text.into())])
        .expect("open_clip config");
    let preset = arch::model_from_preset("open_clip/ViT-L-14-336").expect("preset");
    assert_eq!(model.family, "open_clip");
    assert_eq!(model.preset, None);
    assert_eq!(model_tensors(&model), model_tensors(&preset));
}

/// The explanation names the config field behind each finding.
#[test]
fn explanation_names_config_fields() {
    let l14 = arch::model_from_preset("open_clip/ViT-L-14").expect("preset");
    let l336 = arch::model_from_preset("open_clip/ViT-L-14-336").expect("preset");
    let mut checkpoint = Checkpoint::new("vit-l-14.safetensors", "safetensors", 0);
    for t in &l14.tensors {
        checkpoint
            .tensors
            .push(TensorInfo::new(&t.name, &t.dtype, t.shape.clone()));
    }
    let report = check(&checkpoint, &l336, Loader::Strict);
    assert!(!report.loads);
    assert_eq!(
        report.inferred.preset.as_deref(),
        Some("open_clip/ViT-L-14")
    );
    let cause = report
        .explanation
        .iter()
        .find(|c| c.field == "vision_cfg.image_size")
        .unwrap_or_else(|| panic!("{:#?}", report.explanation));
    assert_eq!(cause.size_mismatches, 1);
    assert_eq!(cause.checkpoint, json!(224));
    assert_eq!(cause.model, json!(336));

    // LayerScale present in the model, absent in the checkpoint.
    let b32 = arch::model_from_preset("open_clip/ViT-B-32").expect("preset");
    let mut ls_config = b32.config.clone();
    ls_config["vision_cfg"]["ls_init_value"] = json!(1e-5);
    let ls_model = open_clip::from_config_value(&ls_config, None).expect("config");
    let mut checkpoint = Checkpoint::new("b32.safetensors", "safetensors", 0);
    for t in &b32.tensors {
        checkpoint
            .tensors
            .push(TensorInfo::new(&t.name, &t.dtype, t.shape.clone()));
    }
    let report = check(&checkpoint, &ls_model, Loader::Strict);
    assert_eq!(report.missing_keys.len(), 24);
    let cause = report
        .explanation
        .iter()
        .find(|c| c.field == "vision_cfg.ls_init_value")
        .unwrap_or_else(|| panic!("{:#?}", report.explanation));
    assert_eq!(cause.missing, 24);
}
