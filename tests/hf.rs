//! Hugging Face transformers against the real library. The fixtures in
//! tests/fixtures/hf/ were written by make_hf_fixtures.py (transformers,
//! torch, safetensors): tiny models' `state_dict()` per class, and real
//! `from_pretrained` results for saved checkpoints loaded into other
//! configs and classes.

use ckptcheck::arch::{self, hf, ModelSpec};
use ckptcheck::diagnosis::check;
use ckptcheck::loader::Loader;
use ckptcheck::{Checkpoint, ErrorKind, TensorInfo};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[path = "support/load_case.rs"]
mod load_case;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/hf/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

type Tensor = (String, Vec<u64>, String);

fn shape(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim"))
        .collect()
}

fn tensor_list(value: &Value) -> Vec<Tensor> {
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

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

fn model_tensors(model: &ModelSpec) -> Vec<Tensor> {
    model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.dtype.clone()))
        .collect()
}

/// Equal lists, or a panic naming the first difference.
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

fn models() -> BTreeMap<String, Value> {
    fixture("models.json")["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| (m["name"].as_str().expect("name").to_string(), m.clone()))
        .collect()
}

fn build(entry: &Value) -> ModelSpec {
    hf::from_config_value(&entry["config"]).unwrap_or_else(|e| panic!("{}: {e:?}", entry["name"]))
}

#[test]
fn every_class_is_the_library_state_dict() {
    let models = models();
    assert!(models.len() >= 50, "{} models", models.len());
    for (name, entry) in &models {
        let model = build(entry);
        assert_same_tensors(
            name,
            &model_tensors(&model),
            &tensor_list(&entry["tensors"]),
        );
        assert_eq!(model.class_name, entry["class_name"], "{name}");
        assert_eq!(model.family, "hf");
        assert_eq!(
            model.base_model_prefix, entry["base_model_prefix"],
            "{name}"
        );
        let tied: Vec<(String, String)> = entry["tied_weights"]
            .as_object()
            .expect("tied")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("source").to_string()))
            .collect();
        let mut ours = hf::tied_weights(&model);
        ours.sort();
        assert_eq!(ours, tied, "{name}");
        assert_eq!(
            sorted(model.tied_keys.clone()),
            sorted(tied.iter().map(|(t, _)| t.clone()).collect()),
            "{name}"
        );
        assert_eq!(
            hf::non_persistent_buffers(&model),
            strings(&entry["non_persistent_buffers"]),
            "{name}"
        );
        assert_eq!(
            hf::ignore_unexpected(&model),
            strings(&entry["ignore_unexpected"]),
            "{name}"
        );
        // Non-persistent buffers are not expected keys.
        for buffer in strings(&entry["non_persistent_buffers"]) {
            assert!(
                model.tensors.iter().all(|t| t.name != buffer),
                "{name}: {buffer}"
            );
        }
    }
}

#[test]
fn every_load_case_is_what_from_pretrained_says() {
    let models = models();
    let cases = fixture("loads.json");
    let cases = cases["cases"].as_array().expect("cases");
    assert!(cases.len() >= 100, "{} cases", cases.len());
    for case in cases {
        let label = format!(
            "{} {} -> {}",
            case["checkpoint_source"], case["edits"], case["model"]
        );
        let mut checkpoint = Checkpoint::new("model.safetensors", "safetensors", 0);
        for (name, tensor_shape, dtype) in tensor_list(&case["checkpoint"]) {
            checkpoint
                .tensors
                .push(TensorInfo::new(name, dtype, tensor_shape));
        }
        let model = build(&models[case["model"].as_str().expect("model")]);
        let report = check(&checkpoint, &model, Loader::Hf);
        load_case::assert_same_keys(&report, case, &label);
        // ckptcheck answers for the default ignore_mismatched_sizes=False.
        if case["ignore_mismatched_sizes"] == json!(true) {
            assert_eq!(report.loads, report.size_mismatches.is_empty(), "{label}");
            continue;
        }
        assert_eq!(json!(report.loads), case["loads"], "{label}");
        assert_eq!(
            report.pytorch_error.as_deref(),
            case["error"].as_str(),
            "{label}"
        );
        if let Some(kind) = case["error_type"].as_str() {
            assert_eq!(kind, "RuntimeError", "{label}");
        }
        assert_eq!(report.class_name, model.class_name);
    }
}

/// Classes whose state dicts another class has too: inference names the
/// first of each pair.
const SAME_TENSORS: &[(&str, &str)] = &[
    ("BertLMHeadModel", "BertForMaskedLM"),
    ("RobertaForCausalLM", "RobertaForMaskedLM"),
    ("MistralModel", "LlamaModel"),
    ("MistralForCausalLM", "LlamaForCausalLM"),
    (
        "MistralForSequenceClassification",
        "LlamaForSequenceClassification",
    ),
];

#[test]
fn inferred_config_rebuilds_every_class() {
    for (name, entry) in models() {
        let tensors = tensor_list(&entry["tensors"]);
        let names: Vec<(String, Vec<u64>)> = tensors
            .iter()
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect();
        let inferred = arch::infer(&names);
        assert_eq!(inferred.family, "hf", "{name}");
        let class = entry["class_name"].as_str().expect("class");
        let expected_class = SAME_TENSORS
            .iter()
            .find(|(a, _)| *a == class)
            .map_or(class, |(_, b)| *b);
        assert_eq!(
            inferred.config["architectures"][0], expected_class,
            "{name}: {}",
            inferred.config
        );
        let rebuilt = arch::model_for_inferred(&inferred)
            .unwrap_or_else(|| panic!("{name}: {} does not build", inferred.config));
        assert_same_tensors(&name, &model_tensors(&rebuilt), &tensors);
        assert!(
            inferred.undetermined.iter().any(|u| u.contains("heads")),
            "{name}: heads should be undetermined"
        );
    }
}

#[test]
fn inferred_fields_name_what_shapes_show() {
    let models = models();
    let llama = build(&models["llama-kv4/LlamaForCausalLM"]);
    let names: Vec<(String, Vec<u64>)> = llama
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let inferred = hf::infer(&names).expect("llama");
    assert_eq!(inferred.field("hidden_size"), Some(&json!(32)));
    assert_eq!(inferred.field("vocab_size"), Some(&json!(99)));
    assert_eq!(inferred.field("num_hidden_layers"), Some(&json!(2)));
    assert_eq!(inferred.field("intermediate_size"), Some(&json!(37)));
    assert_eq!(inferred.field("tie_word_embeddings"), Some(&json!(false)));
    // k_proj as wide as q_proj: as many key/value heads as query heads.
    assert_eq!(
        inferred.config["num_key_value_heads"],
        inferred.config["num_attention_heads"]
    );

    let gpt2 = build(&models["gpt2-inner/GPT2LMHeadModel"]);
    let names: Vec<(String, Vec<u64>)> = gpt2
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let inferred = hf::infer(&names).expect("gpt2");
    assert_eq!(inferred.field("n_inner"), Some(&json!(50)));
    assert_eq!(inferred.field("n_layer"), Some(&json!(3)));
    assert_eq!(inferred.field("n_positions"), Some(&json!(48)));
}

/// Real Hub checkpoints of ViT keep the pre-5.0 names (save_pretrained
/// writes them back); inference reads them too.
#[test]
fn old_vit_names_are_recognised() {
    let cases = fixture("loads.json");
    let case = cases["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| {
            c["checkpoint_source"] == "vit/ViTForImageClassification"
                && c["model"] == "vit-3labels/ViTForImageClassification"
        })
        .expect("case");
    let names: Vec<(String, Vec<u64>)> = tensor_list(&case["checkpoint"])
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    assert!(names
        .iter()
        .any(|(n, _)| n.contains("attention.attention.query")));
    let inferred = hf::infer(&names).expect("vit");
    assert_eq!(
        inferred.config["architectures"][0],
        "ViTForImageClassification"
    );
    assert_eq!(inferred.field("num_labels"), Some(&json!(2)));
    assert_eq!(inferred.field("num_hidden_layers"), Some(&json!(2)));
    assert_eq!(inferred.field("image_size"), Some(&json!(30)));
}

#[test]
fn architecture_decides_prefix_and_heads() {
    let base = json!({"model_type": "bert", "vocab_size": 10, "hidden_size": 8,
                      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
                      "max_position_embeddings": 12});
    let model = hf::from_config_value(&base).expect("bert");
    assert_eq!(model.class_name, "BertModel");
    assert!(model.tensors[0].name.starts_with("embeddings."));
    let mut mlm = base.clone();
    mlm["architectures"] = json!(["BertForMaskedLM"]);
    let model = hf::from_config_value(&mlm).expect("mlm");
    assert!(model.tensors[0].name.starts_with("bert."));
    assert!(model
        .tensors
        .iter()
        .any(|t| t.name == "cls.predictions.decoder.weight"));
    assert_eq!(model.base_model_prefix, "bert");
    // The tied keys are a set (transformers keeps them in a dict).
    assert_eq!(
        sorted(model.tied_keys.clone()),
        vec![
            "cls.predictions.decoder.bias",
            "cls.predictions.decoder.weight"
        ]
    );
    // Defaults fill the config the explanation compares against.
    assert_eq!(model.config["type_vocab_size"], json!(2));

    let llama = json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                       "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
                       "num_hidden_layers": 1, "num_attention_heads": 2, "tie_word_embeddings": true});
    let model = hf::from_config_value(&llama).expect("llama");
    assert_eq!(model.tied_keys, vec!["lm_head.weight"]);
    assert!(model.tensors.iter().any(|t| t.name == "lm_head.weight"));
}

#[test]
fn bad_configs_are_config_errors() {
    for (config, needle) in [
        (
            json!({"model_type": "no_such_model"}),
            "model_type \"no_such_model\"",
        ),
        (
            json!({"model_type": "bert", "architectures": ["BertForSomethingNew"]}),
            "BertForSomethingNew",
        ),
        (
            json!({"model_type": "bert", "architectures": ["LlamaForCausalLM"]}),
            "does not belong",
        ),
        (
            json!({"model_type": "bert", "hidden_size": "big"}),
            "hidden_size",
        ),
        (
            json!({"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}),
            "num_attention_heads",
        ),
        (
            json!({"model_type": "clip", "text_config": 5}),
            "text_config",
        ),
        (json!({"architectures": ["SomethingElse"]}), "model_type"),
    ] {
        let error = hf::from_config_value(&config).expect_err("bad config");
        assert_eq!(error.kind, ErrorKind::BadConfig);
        assert!(
            error.message.contains(needle),
            "{needle}: {}",
            error.message
        );
    }
}

#[test]
fn config_json_is_recognised_as_hf() {
    let models = models();
    let entry = &models["clip/CLIPModel"];
    let text = serde_json::to_string(&entry["config"]).expect("json");
    let model = arch::model_from_config_json(&[("config.json".into(), text)]).expect("hf config");
    assert_eq!(model.family, "hf");
    assert_eq!(model.class_name, "CLIPModel");
    assert_same_tensors(
        "clip",
        &model_tensors(&model),
        &tensor_list(&entry["tensors"]),
    );
}

/// A GQA checkpoint into a config with other key/value heads: the
/// explanation names num_key_value_heads.
#[test]
fn explanation_names_config_fields() {
    let models = models();
    let source = build(&models["llama/LlamaForCausalLM"]);
    let target = build(&models["llama-3layers/LlamaForCausalLM"]);
    let mut checkpoint = Checkpoint::new("model.safetensors", "safetensors", 0);
    for t in &source.tensors {
        checkpoint
            .tensors
            .push(TensorInfo::new(&t.name, &t.dtype, t.shape.clone()));
    }
    let report = check(&checkpoint, &target, Loader::Hf);
    assert!(report.loads, "missing layers only warn");
    assert_eq!(report.missing_keys.len(), 9);
    let cause = report
        .explanation
        .iter()
        .find(|c| c.field == "num_hidden_layers")
        .unwrap_or_else(|| panic!("{:#?}", report.explanation));
    assert_eq!(cause.missing, 9);
    // from_pretrained only logs them: a warning, with transformers' report.
    assert_eq!(
        report.verdict,
        ckptcheck::diagnosis::Verdict::LoadsWithWarnings
    );
    assert!(
        report.warnings[0].starts_with("9 of ") && report.warnings[0].contains("newly initialized"),
        "{:?}",
        report.warnings
    );
    let table = report.load_report.as_deref().expect("a load report");
    assert!(
        table.starts_with("LlamaForCausalLM LOAD REPORT from: model.safetensors\nKey"),
        "{table}"
    );
    assert!(table.contains("| MISSING"), "{table}");

    let bert = build(&models["bert/BertModel"]);
    let mut checkpoint = Checkpoint::new("model.safetensors", "safetensors", 0);
    for t in &build(&models["bert-wide/BertModel"]).tensors {
        checkpoint
            .tensors
            .push(TensorInfo::new(&t.name, &t.dtype, t.shape.clone()));
    }
    let report = check(&checkpoint, &bert, Loader::Hf);
    assert!(!report.loads);
    let cause = report
        .explanation
        .iter()
        .find(|c| c.field == "hidden_size")
        .unwrap_or_else(|| panic!("{:#?}", report.explanation));
    assert_eq!(cause.checkpoint, json!(48));
    assert_eq!(cause.model, json!(32));
    assert!(cause.size_mismatches > 0);
}
