//! The zoo's descriptions away from the values they were fitted on. The
//! fixture tests/fixtures/zoo/fresh.json was written by
//! src/arch/zoo/fresh_values.py (transformers on the `meta` device): for
//! every described class, each size field alone set to a value none of
//! generate.py's draws give (seven or eight times the value, or five or six
//! more), from the class's first held-out variation, with the library's
//! `state_dict()` as count and FNV-1a digest of `key|shape|dtype` lines
//! (the base config is that variation in tests/fixtures/zoo/matrix.json).
//! A size fitted on two values of a field fits any two-coefficient
//! formula; these samples are where such a formula shows (Swin's
//! `80*window_size-391` gave 569 rows for a window of 12 where the model
//! has 529). ckptcheck's model must be the library's exactly, or, where a
//! size comes out no whole number (a patch that does not divide the
//! image), the config must be refused: never a wrong model.

use ckptcheck::arch::zoo;
use serde_json::{json, Value};

#[path = "support/load_case.rs"]
#[allow(dead_code)]
mod load_case;
#[path = "support/torch_listing.rs"]
mod torch_listing;
use torch_listing::listing;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/zoo/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `config` with the dotted `path` set to `value`, as generate.py's
/// `with_field` sets it: a list's element by its index, a missing
/// sub-config made as an empty object.
fn with_field(config: &Value, path: &str, value: Value) -> Value {
    let mut config = config.clone();
    let parts: Vec<&str> = path.split('.').collect();
    let mut node = &mut config;
    for part in &parts[..parts.len() - 1] {
        node = match node {
            Value::Array(items) => &mut items[part.parse::<usize>().expect("a list index")],
            Value::Object(fields) => fields.entry(*part).or_insert_with(|| json!({})),
            other => panic!("{path}: {other} holds no fields"),
        };
    }
    let last = parts[parts.len() - 1];
    match node {
        Value::Array(items) => items[last.parse::<usize>().expect("a list index")] = value,
        Value::Object(fields) => {
            fields.insert(last.to_string(), value);
        }
        other => panic!("{path}: {other} holds no fields"),
    }
    config
}

#[test]
fn every_size_field_alone_at_a_fresh_value_builds_the_library_state_dict() {
    let matrix = fixture("matrix.json");
    let fresh = fixture("fresh.json");
    let mut failures = Vec::new();
    let (mut built, mut refused) = (0, 0);
    for entry in fresh["classes"].as_array().expect("classes") {
        let model_type = entry["model_type"].as_str().unwrap();
        let class = entry["class"].as_str().unwrap();
        let base = matrix["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["model_type"] == model_type && e["class"] == class && e["when"] == entry["when"]
            })
            // The class's first held-out variation (not a sample with
            // another sub-model, which sub_models.py appends, nor one with
            // a sub-config written in part, which written_in_part.py does).
            .and_then(|e| {
                e["variations"]
                    .as_array()?
                    .iter()
                    .find(|v| v.get("sub_model").is_none() && v.get("written_in_part").is_none())
            })
            .map_or_else(|| json!({}), |v| v["config"].clone());
        for sample in entry["samples"].as_array().unwrap() {
            // [field, value, count, digest] or [..., "refused"].
            let field = sample[0].as_str().unwrap();
            let mut config = with_field(&base, field, sample[1].clone());
            let object = config.as_object_mut().expect("config is an object");
            object.insert("model_type".into(), json!(model_type));
            object.insert("architectures".into(), json!([class]));
            // A class's description for another value of a name (`when`)
            // is the one a config naming that value gets.
            for (name, value) in entry["when"].as_object().into_iter().flatten() {
                object.insert(name.clone(), value.clone());
            }
            let got = zoo::from_config_value(&config, model_type, Some(class));
            let at = format!("{model_type}/{class} {field} {}", sample[1]);
            match (got, sample.get(4).is_some()) {
                (Err(_), true) => refused += 1,
                (Ok(model), true) => failures.push(format!(
                    "{at}: a size of no whole number, built as {} tensors",
                    model.tensors.len()
                )),
                (Err(e), false) => failures.push(format!("{at}: {e}")),
                (Ok(model), false) => {
                    built += 1;
                    let got = listing(&model);
                    if got.len() as u64 != sample[2].as_u64().unwrap()
                        || load_case::digest(&got) != sample[3].as_str().unwrap()
                    {
                        failures.push(format!("{at}: state dict differs"));
                    }
                }
            }
        }
    }
    eprintln!("{built} samples built as the library builds them, {refused} refused");
    assert!(built >= 13_000, "only {built} samples");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The zoo's model for a whole config.json (its `model_type` and
/// `architectures[0]`).
fn build(config: Value) -> ckptcheck::Result<ckptcheck::arch::ModelSpec> {
    let model_type = config["model_type"].as_str().unwrap_or_default();
    let class = config["architectures"][0].as_str();
    zoo::from_config_value(&config, model_type, class)
}

/// A sub-config's names choose its modules. transformers builds a
/// composite's sub-model from the sub-config alone, and
/// src/arch/zoo/sub_models.py checked, type by type, that LLaVA with
/// another language model (Gemma here: LLaMA's keys, other sizes and
/// defaults) is LLaVA's own modules around that type's own; such a config
/// is built so, with the sizes the composite reads outside the sub-model
/// (the LM head's vocabulary, the projector's output) taken from the
/// sub-model type's defaults where config.json leaves them out. A type it
/// did not check is refused, naming those it did. FastVLM's vision tower
/// is timm's `fastvit_mci3`, and a `vision_config` that leaves
/// `architecture` out is built by transformers as timm_wrapper's own
/// default (resnet50), so it is refused too. The default names, given or
/// left to the composite config, build.
#[test]
fn a_sub_config_that_names_another_sub_model_is_built_as_checked_or_refused() {
    let llava = |text: Value| {
        json!({"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
               "text_config": text})
    };
    assert!(build(llava(
        json!({"model_type": "llama", "num_hidden_layers": 1})
    ))
    .is_ok());
    let gemma_text = json!({"model_type": "gemma", "num_hidden_layers": 1});
    let model = build(llava(gemma_text.clone())).expect("LLaVA around Gemma");
    let gemma = zoo::from_config_value(&gemma_text, "gemma", Some("GemmaModel")).unwrap();
    let language: Vec<(String, Vec<u64>)> = model
        .tensors
        .iter()
        .filter_map(|t| {
            let name = t.name.strip_prefix("model.language_model.")?;
            Some((name.to_string(), t.shape.clone()))
        })
        .collect();
    let own: Vec<(String, Vec<u64>)> = gemma
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    assert_eq!(language, own);
    let shape_of = |name: &str| {
        let tensor = model.tensors.iter().find(|t| t.name == name);
        tensor.unwrap_or_else(|| panic!("{name}")).clone()
    };
    // GemmaConfig's defaults (vocabulary 256000, width 3072), not LLaMA's.
    let head = shape_of("lm_head.weight");
    assert_eq!(head.shape, [256000, 3072]);
    assert!(
        head.depends_on.contains(&"text_config.vocab_size"),
        "{:?}",
        head.depends_on
    );
    assert_eq!(
        shape_of("model.multi_modal_projector.linear_2.weight").shape,
        [3072, 3072]
    );
    let refused = build(llava(json!({"model_type": "bert"}))).expect_err("a BERT text model");
    assert_eq!(refused.kind, ckptcheck::ErrorKind::BadConfig);
    assert!(
        refused
            .message
            .contains("\"text_config.model_type\" names \"bert\"")
            && refused.message.contains("llava's default \"llama\"")
            && refused.message.contains("mistral, qwen2"),
        "{}",
        refused.message
    );
    // The composite's own checks hold for its own modules, the sub-model's
    // for its sub-config.
    let mut odd_vision = llava(gemma_text.clone());
    odd_vision["vision_config"] = json!({"hidden_size": 1000});
    let refused = build(odd_vision).expect_err("a width 16 heads do not divide");
    assert!(
        refused.message.contains("vision_config.hidden_size"),
        "{}",
        refused.message
    );
    let refused = build(llava(json!({"model_type": "gemma", "hidden_size": "wide"})))
        .expect_err("a width that is no number");
    assert!(
        refused.message.contains("text_config (gemma, GemmaModel)")
            && refused.message.contains("hidden_size"),
        "{}",
        refused.message
    );
    let fast_vlm = |vision: Value| {
        json!({"model_type": "fast_vlm", "architectures": ["FastVlmForConditionalGeneration"],
               "vision_config": vision, "text_config": {"model_type": "qwen2", "num_hidden_layers": 1}})
    };
    // As save_pretrained writes it: every field that differs from
    // TimmWrapperConfig's own default.
    let named = json!({"model_type": "timm_wrapper", "architecture": "fastvit_mci3",
                       "global_pool": "avg", "hidden_size": 3072,
                       "model_args": {"inference_mode": true}});
    assert!(build(fast_vlm(named)).is_ok());
    let unnamed = json!({"model_type": "timm_wrapper", "hidden_size": 3072});
    let refused = build(fast_vlm(unnamed)).expect_err("a vision tower without its architecture");
    assert!(
        refused
            .message
            .contains("\"vision_config.architecture\" leaves it out"),
        "{}",
        refused.message
    );
}

/// Names that choose modules (src/arch/zoo/names.py reads the values a name
/// can take from the config class's docstring and the modeling source, and
/// builds each). A name whose other values change which modules exist gets
/// a description per value, derived with the config class defaulting to it:
/// a ResNet-18 config names `layer_type` "basic" (122 tensors, where the
/// bottleneck ResNet of the default has 176), wav2vec2-large and
/// HuBERT-large name `feat_extract_norm` "layer" (a LayerNorm after every
/// feature-extractor convolution, with `do_stable_layer_norm` and
/// `conv_bias`); each is built as transformers builds it, and inference
/// from those tensors names the value. flan-t5's config.json names
/// `feed_forward_proj` "gated-gelu" and leaves `is_gated_act` out: the
/// config class derives the flag from the name, and so does ckptcheck. A
/// gated name the data has no value for ("gated-silu") is refused rather
/// than built ungated. (Counts and digests: the class's `state_dict()` on
/// the `meta` device, transformers 5.24, for these configs.)
#[test]
fn a_name_that_chooses_modules_is_followed_or_refused() {
    let resnet18 = json!({"model_type": "resnet", "architectures": ["ResNetForImageClassification"],
                          "layer_type": "basic", "hidden_sizes": [64, 128, 256, 512],
                          "depths": [2, 2, 2, 2]});
    let large = |model_type: &str, class: &str| {
        json!({"model_type": model_type, "architectures": [class],
               "feat_extract_norm": "layer", "do_stable_layer_norm": true, "conv_bias": true,
               "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
               "num_hidden_layers": 2, "vocab_size": 32})
    };
    for (config, count, digest) in [
        (resnet18, 122, "29a587e27990c6c3"),
        (large("wav2vec2", "Wav2Vec2ForCTC"), 72, "f91eb85967e8c727"),
        (large("hubert", "HubertForCTC"), 72, "2af8016eee99e7cf"),
    ] {
        let inferred = built_as_the_library_and_inferred(&config, count, digest).0;
        for field in ["layer_type", "feat_extract_norm"] {
            if let Some(value) = config.get(field) {
                assert_eq!(&inferred.config[field], value, "{}", inferred.config);
            }
        }
    }
    let t5 = |name: &str| {
        json!({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
               "feed_forward_proj": name, "num_layers": 1, "num_decoder_layers": 1,
               "d_model": 64, "d_ff": 128, "num_heads": 2, "d_kv": 32, "vocab_size": 100})
    };
    let flan = build(t5("gated-gelu")).expect("flan-t5's gated feed-forward");
    let got = listing(&flan);
    assert_eq!(
        (got.len(), load_case::digest(&got).as_str()),
        (31, "103aa3cb302565d1")
    );
    assert!(got
        .iter()
        .any(|(name, _, _)| name == "encoder.block.0.layer.1.DenseReluDense.wi_1.weight"));
    let plain = build(t5("relu")).expect("T5's own feed-forward");
    assert!(plain
        .tensors
        .iter()
        .any(|t| t.name == "encoder.block.0.layer.1.DenseReluDense.wi.weight"));
    let refused = build(t5("gated-silu")).expect_err("a gated name of no known value");
    assert!(
        refused.message.contains("\"is_gated_act\""),
        "{}",
        refused.message
    );
}

/// A module transformers builds only while two sizes differ: ELECTRA's
/// `embeddings_project` (`embedding_size` != `hidden_size`: electra-small's
/// 128 and 256, not electra-base's 768 and 768) and ResNet's first
/// shortcut (the stem's `embedding_size` != the first stage's width:
/// ResNet-50's 64 and 256, not ResNet-34's 64 and 64). Random variations
/// never draw equal sizes, so the description had the module always
/// (before, ELECTRA's `embedding_size` was held at 128, refusing
/// electra-base); src/arch/zoo/equal_sizes.py builds each pair of sizes
/// equal and records the keys that then go. Counts and digests are the
/// classes' `state_dict()` on the `meta` device, transformers 5.24; the
/// tensors infer back to a config that rebuilds them.
#[test]
fn a_module_built_only_while_two_sizes_differ_goes_when_they_are_equal() {
    let electra = |embedding: u64, hidden: u64, heads: u64| {
        json!({"model_type": "electra", "architectures": ["ElectraForPreTraining"],
               "embedding_size": embedding, "hidden_size": hidden, "num_attention_heads": heads,
               "intermediate_size": 4 * hidden, "num_hidden_layers": 2})
    };
    let resnet = |layer_type: &str, widths: [u64; 4]| {
        json!({"model_type": "resnet", "architectures": ["ResNetForImageClassification"],
               "layer_type": layer_type, "embedding_size": 64, "hidden_sizes": widths,
               "depths": [3, 4, 6, 3], "num_labels": 1000})
    };
    for (config, count, digest) in [
        (electra(768, 768, 12), 41, "9569f45c21e34e1e"),
        (electra(128, 256, 4), 43, "6d45053a9581245a"),
        (
            resnet("bottleneck", [256, 512, 1024, 2048]),
            320,
            "bbd3a47047e478f1",
        ),
        (
            resnet("basic", [64, 128, 256, 512]),
            218,
            "bc53341ca9ff89a1",
        ),
    ] {
        let (inferred, got) = built_as_the_library_and_inferred(&config, count, digest);
        let rebuilt = ckptcheck::arch::model_for_inferred(&inferred)
            .unwrap_or_else(|| panic!("{config}: nothing rebuilt from {}", inferred.config));
        assert_eq!(
            listing(&rebuilt),
            got,
            "{config}: inferred {}",
            inferred.config
        );
    }
}

/// The zoo's model for `config`, checked to be the library's (`count`
/// tensors, FNV-1a `digest`), and what inference reads from its tensors.
fn built_as_the_library_and_inferred(
    config: &Value,
    count: usize,
    digest: &str,
) -> (ckptcheck::arch::Inferred, Vec<(String, Vec<u64>, String)>) {
    let model = build(config.clone()).unwrap_or_else(|e| panic!("{config}: {e}"));
    let got = listing(&model);
    assert_eq!(
        (got.len(), load_case::digest(&got).as_str()),
        (count, digest),
        "{config}"
    );
    let names: Vec<(String, Vec<u64>)> = model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    (ckptcheck::arch::infer(&names), got)
}
