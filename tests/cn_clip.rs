//! Chinese-CLIP against the real library (tests/fixtures/cn_clip, written by
//! make_cn_clip_fixtures.py with PyPI cn-clip and torch):
//! - every `<vision>@<text>` preset builds exactly the tensors
//!   `CLIP(**model_info).state_dict()` has (names, shapes, dtypes, order),
//!   flash-attention naming too;
//! - every recorded `load_state_dict` case (70 checkpoint/model/loader
//!   triples) gives PyTorch's exact lists and error text;
//! - inference names the preset for every preset's own tensors.

use ckptcheck::arch::{self, cn_clip};
use ckptcheck::checkpoint::{Checkpoint, StateDictMetadata, TensorInfo};
use ckptcheck::diagnosis::check;
use ckptcheck::format;
use ckptcheck::loader::Loader;
use ckptcheck::source::FileSource;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[path = "support/load_case.rs"]
#[allow(dead_code)]
mod load_case;

fn load_json(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cn_clip")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn shape(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim"))
        .collect()
}

fn tensor_list(value: &Value) -> Vec<(String, Vec<u64>, String)> {
    value
        .as_array()
        .expect("tensors")
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

#[test]
fn every_preset_builds_the_state_dict_cn_clip_builds() {
    let models = load_json("models.json");
    let models = models["models"].as_object().expect("models");
    assert_eq!(models.len(), 18);
    for (name, want) in models {
        let model = arch::model_from_preset(name).expect("preset");
        let got: Vec<(String, Vec<u64>, String)> = model
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.dtype.clone()))
            .collect();
        assert_eq!(got, tensor_list(&want["tensors"]), "{name}");
        let bn: Vec<String> = want["batchnorm_modules"]
            .as_array()
            .expect("bn")
            .iter()
            .map(|m| m.as_str().expect("m").to_string())
            .collect();
        assert_eq!(model.batchnorm_modules, bn, "{name}");
        let flash = cn_clip::build(&model.config, true).expect("flash");
        let got: Vec<(String, Vec<u64>, String)> = flash
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone(), t.dtype.clone()))
            .collect();
        assert_eq!(
            got,
            tensor_list(&want["flash_attention_tensors"]),
            "{name} flash"
        );
        assert_eq!(model.config, want["config"], "{name} config");
    }
}

#[test]
fn released_stems_are_aliases() {
    for (stem, full) in cn_clip::RELEASED {
        assert_eq!(
            arch::model_from_preset(stem)
                .expect("alias")
                .preset
                .as_deref(),
            Some(*full)
        );
    }
}

/// A checkpoint built from a model's tensor list as the fixture script
/// built it for cases without a file.
fn synthetic(case: &Value, models: &Value) -> Checkpoint {
    let name = case["checkpoint"].as_str().expect("checkpoint");
    let prefix = case["checkpoint_prefix"].as_str().expect("prefix");
    let group = case["group"].as_str().expect("group");
    let model = &models["models"][name];
    let mut checkpoint = Checkpoint::new(name, "pytorch-zip", 0);
    for (tensor, dims, dtype) in tensor_list(&model["tensors"]) {
        if matches!(group, "e" | "f") && tensor.ends_with("num_batches_tracked") {
            continue;
        }
        checkpoint
            .tensors
            .push(TensorInfo::new(format!("{prefix}{tensor}"), dtype, dims));
    }
    if group == "d" {
        checkpoint.tensors.push(TensorInfo::new(
            format!("{prefix}bert.pooler.dense.weight"),
            "F32",
            vec![768, 768],
        ));
        checkpoint.tensors.push(TensorInfo::new(
            format!("{prefix}bert.pooler.dense.bias"),
            "F32",
            vec![768],
        ));
    }
    if case["has_metadata"].as_bool().expect("has_metadata") {
        // Module.state_dict() records version 1 for every module, and
        // BatchNorm's own version 2.
        let mut versions = BTreeMap::new();
        for module in model["batchnorm_modules"].as_array().expect("bn") {
            versions.insert(format!("{prefix}{}", module.as_str().expect("m")), Some(2));
        }
        versions.insert(prefix.trim_end_matches('.').to_string(), Some(1));
        checkpoint.state_dict_metadata.push(StateDictMetadata {
            path: Vec::new(),
            versions,
        });
    }
    checkpoint
}

fn fixture_checkpoint(stem: &str) -> Checkpoint {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cn_clip")
        .join(format!("{stem}.pt"));
    format::read_checkpoint(&FileSource::open(&path).expect("open")).expect("read")
}

#[test]
fn every_recorded_load_agrees_with_pytorch_exactly() {
    let models = load_json("models.json");
    let cases = load_json("loads.json");
    let cases = cases.as_array().expect("cases");
    assert_eq!(cases.len(), 70);
    let mut files: BTreeMap<String, Checkpoint> = BTreeMap::new();
    for (index, case) in cases.iter().enumerate() {
        let checkpoint = match case["checkpoint_file"].as_str() {
            Some(stem) if case["group"] != "d" => files
                .entry(stem.to_string())
                .or_insert_with(|| fixture_checkpoint(stem))
                .clone(),
            _ => synthetic(case, &models),
        };
        let model =
            arch::model_from_preset(case["model"].as_str().expect("model")).expect("preset");
        let loader = Loader::parse(case["loader"].as_str().expect("loader")).expect("loader");
        let report = check(&checkpoint, &model, loader);
        let label = format!(
            "case {index} ({} {} -> {} {})",
            case["group"], case["checkpoint"], case["model"], case["loader"]
        );
        assert_eq!(
            report.loads,
            case["loads"].as_bool().expect("loads"),
            "{label}"
        );
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("list")
                .iter()
                .map(|s| s.as_str().expect("s").to_string())
                .collect()
        };
        assert_eq!(
            report.missing_keys,
            strings(&case["missing_keys"]),
            "{label}: missing"
        );
        assert_eq!(
            report.unexpected_keys,
            strings(&case["unexpected_keys"]),
            "{label}: unexpected"
        );
        let mismatches: Vec<(String, Vec<u64>, Vec<u64>)> = case["size_mismatches"]
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
        let got = load_case::mismatches_of(&report);
        assert_eq!(got, mismatches, "{label}: size mismatches");
        assert_eq!(
            report.pytorch_error.as_deref(),
            case["error"].as_str(),
            "{label}: error text"
        );
    }
}

#[test]
fn inference_names_every_preset_from_its_own_tensors() {
    for (name, _, _) in cn_clip::preset_list() {
        let model = arch::model_from_preset(&name).expect("preset");
        let names: Vec<(String, Vec<u64>)> = model
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let inferred = arch::infer(&names);
        assert_eq!(inferred.family, "cn_clip");
        assert_eq!(
            inferred.preset.as_deref(),
            Some(name.as_str()),
            "{name}: ranking {:?}",
            &inferred.ranking[..3]
        );
    }
}

#[test]
fn the_motivating_case_is_explained_in_config_terms() {
    let checkpoint = fixture_checkpoint("clip_cn_vit-l-14-336.shapes");
    let model = arch::model_from_preset("ViT-B-16@RoBERTa-wwm-ext-base-chinese").expect("preset");
    let report = check(&checkpoint, &model, Loader::CnClip);
    assert_eq!(
        report.inferred.preset.as_deref(),
        Some("ViT-L-14-336@RoBERTa-wwm-ext-base-chinese")
    );
    let causes: Vec<&str> = report.explanation.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        causes[0], "vision_width: checkpoint 1024, model 768 — 152 size mismatches",
        "{causes:?}"
    );
    assert!(
        causes.contains(&"vision_layers: checkpoint 24, model 12 — 144 unexpected keys"),
        "{causes:?}"
    );
    assert!(
        causes.contains(&"image_resolution: checkpoint 336, model 224 — 1 size mismatch"),
        "{causes:?}"
    );
    let fix = report.fix.expect("fix");
    assert!(fix.summary.starts_with("this checkpoint is ViT-L-14-336@RoBERTa-wwm-ext-base-chinese (vision width 1024 vs 768"), "{}", fix.summary);
    assert!(
        fix.summary.ends_with(
            "run with `--vision-model ViT-L-14-336 --text-model RoBERTa-wwm-ext-base-chinese`"
        ),
        "{}",
        fix.summary
    );
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("checkpoint[\"state_dict\"]")));
    // Strict on the raw file: the prefix is the first cause, and the fix says so.
    let strict = check(&checkpoint, &model, Loader::Strict);
    assert_eq!(
        strict.explanation[0].field, "prefix",
        "{:?}",
        strict.explanation
    );
    assert!(strict
        .fix
        .expect("fix")
        .remedies
        .iter()
        .any(|r| r.text.contains("removeprefix(\"module.\")")));
}

#[test]
fn a_checkpoint_of_another_family_is_named_as_the_cause() {
    let checkpoint = fixture_checkpoint("clip_cn_vit-b-16.shapes");
    let model = arch::model_from_preset("open_clip/ViT-B-16").expect("preset");
    let report = check(&checkpoint, &model, Loader::CnClip);
    assert!(!report.loads);
    assert_eq!(report.explanation.len(), 1, "{:?}", report.explanation);
    assert_eq!(report.explanation[0].field, "family");
    assert!(report.explanation[0].text.starts_with("model family: the checkpoint is a Chinese-CLIP model (ViT-B-16@RoBERTa-wwm-ext-base-chinese)"));
    let fix = report.fix.expect("fix");
    assert!(
        fix.summary
            .contains("--vision-model ViT-B-16 --text-model RoBERTa-wwm-ext-base-chinese"),
        "{}",
        fix.summary
    );
}
