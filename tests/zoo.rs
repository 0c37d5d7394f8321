//! The transformers zoo against the library it was derived from. The
//! fixture tests/fixtures/zoo/matrix.json was written by
//! src/arch/zoo/generate.py (transformers on the `meta` device): for every
//! described class, the default config's `state_dict()` (count and FNV-1a
//! digest of `key|shape|dtype` lines) and held-out variations of its config
//! (every size field varied at once, layer counts cut to 1..3) with their
//! `state_dict()` (whole for each model type's first class, else as count
//! and digest). None of these samples took part in deriving the
//! description. The model ckptcheck builds must equal each exactly: keys,
//! order, shapes and dtypes.

use ckptcheck::arch::{self, zoo, ModelSpec};
use ckptcheck::ErrorKind;
use serde_json::{json, Value};

#[path = "support/load_case.rs"]
mod load_case;
#[path = "support/torch_listing.rs"]
mod torch_listing;
use torch_listing::listing;

fn matrix() -> Value {
    let path = format!(
        "{}/tests/fixtures/zoo/matrix.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn config_for(model_type: &str, class: &str, config: &Value) -> Value {
    let mut config = config.clone();
    let object = config.as_object_mut().expect("config is an object");
    object.insert("model_type".into(), json!(model_type));
    object.insert("architectures".into(), json!([class]));
    config
}

fn build(config: &Value) -> ModelSpec {
    read(config).unwrap_or_else(|e| panic!("{config}: {e}"))
}

fn read(config: &Value) -> ckptcheck::Result<ModelSpec> {
    arch::model_from_config_json(&[("config.json".to_string(), config.to_string())])
}

#[test]
fn every_described_class_builds_the_library_state_dict() {
    let matrix = matrix();
    let classes = matrix["classes"].as_array().expect("classes");
    assert!(classes.len() >= 100, "only {} classes", classes.len());
    let mut failures = Vec::new();
    let mut variations = 0;
    for entry in classes {
        let model_type = entry["model_type"].as_str().unwrap();
        let class = entry["class"].as_str().unwrap();
        let model = zoo::from_config_value(&entry["default"]["config"], model_type, Some(class))
            .unwrap_or_else(|e| panic!("{model_type}/{class}: {e}"));
        let got = listing(&model);
        if got.len() as u64 != entry["default"]["count"].as_u64().unwrap()
            || load_case::digest(&got) != entry["default"]["digest"].as_str().unwrap()
        {
            failures.push(format!("{model_type}/{class}: default config"));
        }
        for variation in entry["variations"].as_array().unwrap() {
            variations += 1;
            let config = config_for(model_type, class, &variation["config"]);
            let model = zoo::from_config_value(&config, model_type, Some(class))
                .unwrap_or_else(|e| panic!("{model_type}/{class} {config}: {e}"));
            let got = listing(&model);
            let Some(whole) = variation.get("state_dict") else {
                // A digest of the whole state dict (the fixture keeps whole
                // listings for each model type's first class only).
                if got.len() as u64 != variation["count"].as_u64().unwrap()
                    || load_case::digest(&got) != variation["digest"].as_str().unwrap()
                {
                    failures.push(format!("{model_type}/{class} {config}: state dict differs"));
                }
                continue;
            };
            let want: Vec<(String, Vec<u64>, String)> =
                serde_json::from_value(whole.clone()).unwrap();
            if got != want {
                let first = first_difference(&got, &want);
                failures.push(format!("{model_type}/{class} {config}: {first}"));
            }
        }
    }
    assert!(variations >= classes.len(), "{variations} variations");
    eprintln!(
        "{} classes: defaults and {variations} held-out variations",
        classes.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_zoo_config_json_is_read_like_any_other() {
    // Through the same door as a dropped config.json, with the library's
    // defaults filled in for what the file leaves out.
    let model = build(&json!({"model_type": "mixtral", "hidden_size": 1024,
        "num_attention_heads": 8, "num_hidden_layers": 2}));
    assert_eq!(model.family, "hf");
    assert_eq!(model.class_name, zoo::classes("mixtral")[0]);
    let q = model
        .tensors
        .iter()
        .find(|t| t.name == "layers.0.self_attn.q_proj.weight")
        .expect("q_proj");
    assert_eq!(q.shape, [1024, 1024]);
    assert!(q.depends_on.contains(&"hidden_size"), "{:?}", q.depends_on);
    assert_eq!(model.config["intermediate_size"], json!(14336));
    let layer_one = model
        .tensors
        .iter()
        .find(|t| t.name.starts_with("layers.1."))
        .expect("layer 1");
    assert_eq!(layer_one.exists_if, ["num_hidden_layers"]);
}

#[test]
fn a_plain_dict_in_the_config_is_read_key_by_key() {
    // FastSpeech2-Conformer's `encoder_config` is a plain dict, not a
    // sub-config: a saved config.json writes it whole, and the sizes in it
    // size the encoder (transformers: 2 layers, convolutions 512 wide).
    let encoder = json!({"num_attention_heads": 2, "layers": 2, "kernel_size": 7,
        "attention_dropout_rate": 0.2, "dropout_rate": 0.2, "positional_dropout_rate": 0.2,
        "linear_units": 512, "normalize_before": false, "concat_after": false});
    let model = build(&json!({"model_type": "fastspeech2_conformer",
        "architectures": ["FastSpeech2ConformerModel"], "encoder_config": encoder}));
    let encoder_layers: std::collections::BTreeSet<&str> = model
        .tensors
        .iter()
        .filter_map(|t| t.name.strip_prefix("encoder.conformer_layers."))
        .filter_map(|rest| rest.split('.').next())
        .collect();
    assert_eq!(encoder_layers, ["0", "1"].into_iter().collect());
    let conv = model
        .tensors
        .iter()
        .find(|t| t.name == "encoder.conformer_layers.0.feed_forward.conv1.weight")
        .expect("the encoder's first feed-forward convolution");
    assert_eq!(conv.shape, [512, 384, 3]);
}

#[test]
fn a_sub_config_written_without_its_sizes_takes_its_own_class_defaults() {
    // transformers: LlavaConfig() builds a CLIP tower 1024 wide, but a
    // `vision_config` given without `hidden_size` is a CLIPVisionConfig
    // with that class's default, 768 (likewise LLaVA's Llama text model,
    // 4096 wide, against LlamaConfig's own 4096: the same, so one default).
    let width = |config: Value| {
        let model = build(&config);
        model
            .tensors
            .iter()
            .find(|t| t.name == "vision_tower.embeddings.class_embedding")
            .unwrap_or_else(|| panic!("{config}: no class embedding"))
            .shape
            .clone()
    };
    assert_eq!(width(json!({"model_type": "llava"})), [1024]);
    assert_eq!(
        width(json!({"model_type": "llava",
            "vision_config": {"model_type": "clip_vision_model"}})),
        [768]
    );
    assert_eq!(
        width(json!({"model_type": "llava",
            "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1536}})),
        [1536]
    );
}

/// A sub-config written in part takes the sub-config class's own default
/// for what it leaves out (transformers 5.24, checked on the `meta` device
/// by src/arch/zoo/written_in_part.py): PaliGemma's SigLIP tower has no
/// pooling head by default, but `{"model_type": "siglip_vision_model"}`
/// alone is a SiglipVisionConfig with `vision_use_head` true, and the tower
/// gains `head.*`; Mask2Former's Swin has 18 blocks in its third stage,
/// Swin's own 6;
/// NeMo SpeechLM's Nemotron-H has 52 layers by default and
/// NemotronHConfig's own 4 of other kinds so; a decoder given as
/// `{"model_type": "bert"}` has no cross-attention. Where the description
/// reads such a field at the composite's default, the config is refused,
/// naming it; written with it, it builds. A size has the sub-config
/// class's default as a second one instead (Depth Anything's DINOv2 is
/// 384 wide by default, Dinov2Config's 768 in a `backbone_config` that
/// names only its `model_type`).
#[test]
fn a_sub_config_written_in_part_is_refused_where_the_description_needs_more_of_it() {
    let cases = [
        (
            json!({"model_type": "paligemma", "architectures": ["PaliGemmaForConditionalGeneration"],
                   "vision_config": {"model_type": "siglip_vision_model"}}),
            "\"vision_config.vision_use_head\" is left out",
        ),
        (
            json!({"model_type": "mask2former",
                   "backbone_config": {"model_type": "swin", "out_indices": [1, 2, 3, 4]}}),
            "\"backbone_config.depths\" is left out",
        ),
        (
            json!({"model_type": "nemo_speechlm",
                   "text_config": {"model_type": "nemotron_h", "num_hidden_layers": 4}}),
            "\"text_config.layers_block_type\" is left out",
        ),
        (
            json!({"model_type": "vision-encoder-decoder",
                   "encoder": {"model_type": "vit"}, "decoder": {"model_type": "bert"}}),
            "\"decoder.add_cross_attention\" is left out",
        ),
        // Without its `model_type`, transformers cannot pick the
        // sub-config class at all (a KeyError), where LLaVA's takes CLIP's.
        (
            json!({"model_type": "depth_anything", "backbone_config": {"hidden_size": 768}}),
            "\"backbone_config.model_type\" is left out",
        ),
    ];
    for (config, what) in cases {
        let refused = read(&config).expect_err(what);
        assert_eq!(refused.kind, ErrorKind::BadConfig, "{}", refused.message);
        assert!(
            refused.message.contains(what) && refused.message.contains("save_pretrained"),
            "{config}: {}",
            refused.message
        );
    }
    let depth = build(&json!({"model_type": "depth_anything",
        "backbone_config": {"model_type": "dinov2"}}));
    let cls = depth
        .tensors
        .iter()
        .find(|t| t.name == "backbone.embeddings.cls_token");
    assert_eq!(cls.expect("a class token").shape, [1, 1, 768]);
    let default = build(&json!({"model_type": "depth_anything"}));
    let cls = default
        .tensors
        .iter()
        .find(|t| t.name == "backbone.embeddings.cls_token");
    assert_eq!(cls.expect("a class token").shape, [1, 1, 384]);
    // Written with it, PaliGemma's tower is the default's: no head.
    let model = build(&json!({"model_type": "paligemma",
        "architectures": ["PaliGemmaForConditionalGeneration"],
        "vision_config": {"model_type": "siglip_vision_model", "vision_use_head": false}}));
    assert!(!model
        .tensors
        .iter()
        .any(|t| t.name.contains("vision_tower.head.")));
    assert!(model
        .tensors
        .iter()
        .any(|t| t.name == "model.multi_modal_projector.linear.weight"));
    // Every such class: the config that writes each such sub-config with
    // those fields alone is a matrix sample the library built (checked in
    // every_described_class_builds_the_library_state_dict), and leaving
    // any one of them out is refused, naming it.
    let matrix = matrix();
    let (mut checked, mut names) = (0, 0);
    for entry in matrix["classes"].as_array().unwrap() {
        let model_type = entry["model_type"].as_str().unwrap();
        let class = entry["class"].as_str().unwrap();
        for sample in entry["variations"].as_array().unwrap() {
            let Some(parent) = sample["written_in_part"].as_str() else {
                continue;
            };
            let config = config_for(model_type, class, &sample["config"]);
            assert!(read(&config).is_ok(), "{config}");
            let mut written = &sample["config"];
            for part in parent.split('.') {
                written = &written[part];
            }
            let written = written.as_object().expect("the sub-config written in part");
            for key in written.keys() {
                let mut less = config.clone();
                let mut node = &mut less;
                for part in parent.split('.') {
                    node = &mut node[part];
                }
                node.as_object_mut().unwrap().remove(key);
                // A sub-config's name is needed only where transformers
                // refuses the sub-config without it.
                let refused = match read(&less) {
                    Err(refused) => refused,
                    Ok(_) if key == "model_type" => continue,
                    Ok(_) => panic!("{less}: built without {key}"),
                };
                assert!(
                    refused
                        .message
                        .contains(&format!("\"{parent}.{key}\" is left out")),
                    "{less}: {}",
                    refused.message
                );
                checked += 1;
                names += usize::from(key == "model_type");
            }
        }
    }
    assert!(checked >= 60, "{checked} fields checked");
    assert!(
        names >= 25,
        "{names} sub-configs refused without their names"
    );
}

/// A checkpoint of such a composite's default, inferred from its tensors
/// alone, gives a config that writes those fields with the sub-config
/// (the fields where the composite default differs from the sub-config
/// class's own), so it is not refused and rebuilds the tensors.
#[test]
fn a_composite_whose_sub_configs_need_fields_written_is_inferred_with_them() {
    let matrix = matrix();
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in matrix["classes"].as_array().unwrap() {
        let in_part = entry["variations"].as_array().unwrap().iter();
        if !in_part.clone().any(|v| v.get("written_in_part").is_some())
            || entry.get("when").is_some()
        {
            continue;
        }
        let model_type = entry["model_type"].as_str().unwrap();
        let class = entry["class"].as_str().unwrap();
        let model = zoo::from_config_value(&entry["default"]["config"], model_type, Some(class))
            .unwrap_or_else(|e| panic!("{model_type}/{class}: {e}"));
        let names = names_of(&model);
        checked += 1;
        if let Some(wrong) = rebuilt_differs(&arch::infer(&names), names) {
            failures.push(format!("{model_type}/{class}: {wrong}"));
        }
    }
    assert!(checked >= 25, "{checked} checked");
    assert_none_failed(checked, &failures);
}

#[test]
fn configs_the_description_cannot_follow_are_refused() {
    let cases = [
        // A flag the description holds fixed (it adds tensors no variation
        // pinned down) is refused by name, never guessed.
        (
            json!({"model_type": "mixtral", "num_hidden_layers": 1_000_000_000_000u64}),
            ErrorKind::LimitExceeded,
            "layer count",
        ),
        (
            json!({"model_type": "mixtral", "num_attention_heads": 0}),
            ErrorKind::BadConfig,
            "num_attention_heads",
        ),
        (
            json!({"model_type": "mixtral", "hidden_size": "big"}),
            ErrorKind::BadConfig,
            "hidden_size",
        ),
        (
            json!({"model_type": "mixtral", "architectures": ["BertModel"]}),
            ErrorKind::BadConfig,
            "BertModel",
        ),
        // A float that changes tensors at 0 only (wav2vec2 and HuBERT drop
        // `masked_spec_embed` at a `mask_time_prob` of 0 while
        // `mask_feature_prob` is 0 too; unvaried_fields.py): refused at 0,
        // where the description's tensors are not the library's, inside a
        // speech encoder-decoder's encoder too.
        (
            json!({"model_type": "wav2vec2", "mask_time_prob": 0.0}),
            ErrorKind::BadConfig,
            "config field \"mask_time_prob\" = 0: transformers then builds other tensors for Wav2Vec2Model",
        ),
        (
            json!({"model_type": "hubert", "mask_time_prob": 0}),
            ErrorKind::BadConfig,
            "\"mask_time_prob\" = 0",
        ),
        (
            json!({"model_type": "wav2vec2", "mask_time_prob": 0.0, "mask_feature_prob": 0.0}),
            ErrorKind::BadConfig,
            "\"mask_time_prob\" = 0",
        ),
        (
            json!({"model_type": "speech-encoder-decoder",
                   "encoder": {"model_type": "wav2vec2", "mask_time_prob": 0.0},
                   "decoder": {"model_type": "bert", "is_decoder": true, "add_cross_attention": true}}),
            ErrorKind::BadConfig,
            "\"encoder.mask_time_prob\" = 0",
        ),
        // ConvNeXt's layer scale is dropped at 0 only: its
        // `layer_scale_init_value` of 1e-6 and BEiT's 0.1 both build it.
        (
            json!({"model_type": "convnext", "layer_scale_init_value": 0}),
            ErrorKind::BadConfig,
            "config field \"layer_scale_init_value\" = 0",
        ),
        // A size no formula fits, moved by one field alone, holds at that
        // field's default (generate.py's NoFormulaHeld): MobileNetV2 rounds
        // each width to its nearest multiple of `depth_divisible_by`, and
        // up again where that loses a tenth.
        (
            json!({"model_type": "mobilenet_v2", "depth_divisible_by": 4}),
            ErrorKind::BadConfig,
            "config field \"depth_divisible_by\" = 4 differs from mobilenet_v2's default 8",
        ),
        // A quotient transformers clamps at 1 (ConvBERT takes one head
        // where `num_attention_heads // head_ratio` is 0; clamped.py found
        // the description's empty `conv_kernel_layer` wrong there).
        (
            json!({"model_type": "convbert", "num_attention_heads": 2, "head_ratio": 4}),
            ErrorKind::BadConfig,
            "\"head_ratio\" = 4 is above \"num_attention_heads\" = 2: transformers clamps",
        ),
        // Fields the config class reads from its kwargs and never keeps
        // (they derive the per-layer lists): Qwen3-Next's linear and full
        // attention layers, AXK1's dense layers. The generator found them
        // in the class's source and saw them change tensors.
        (
            json!({"model_type": "qwen3_next", "full_attention_interval": 2}),
            ErrorKind::BadConfig,
            "derives from \"full_attention_interval\" = 2 (default 4)",
        ),
        (
            json!({"model_type": "axk1", "first_k_dense_replace": 3}),
            ErrorKind::BadConfig,
            "\"first_k_dense_replace\" = 3 differs from axk1's default 1",
        ),
    ];
    for (config, kind, needle) in cases {
        let error = read(&config).expect_err(needle);
        assert_eq!(error.kind, kind, "{config}: {error}");
        assert!(error.message.contains(needle), "{config}: {error}");
    }
}

#[test]
fn a_size_the_heads_do_not_divide_is_refused_as_transformers_refuses_it() {
    // BERT's heads size no tensor, yet BertSelfAttention raises "The
    // hidden size (30) is not a multiple of the number of attention heads
    // (4)"; LLaMA's config refuses the same. The generator found both pairs.
    for config in [
        json!({"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}),
        json!({"model_type": "llama", "hidden_size": 30, "num_attention_heads": 4,
               "num_key_value_heads": 2}),
    ] {
        let error = read(&config).expect_err("refused");
        assert_eq!(error.kind, ErrorKind::BadConfig);
        assert!(
            error
                .message
                .contains("\"hidden_size\" = 30 is not a multiple of \"num_attention_heads\" = 4"),
            "{error}"
        );
    }
    // A multiple builds, and LLaMA's key/value heads need only divide the
    // query heads (hidden 32 with 2 of them is fine; so would be 3 of 12).
    build(&json!({"model_type": "bert", "hidden_size": 32, "num_attention_heads": 4}));
    build(
        &json!({"model_type": "llama", "hidden_size": 48, "num_attention_heads": 12,
                  "num_key_value_heads": 3, "intermediate_size": 64, "num_hidden_layers": 1}),
    );
}

#[test]
fn a_size_the_heads_do_not_divide_where_transformers_floors_it_is_refused() {
    // ViT-MAE's and SegFormer's attention build a width their heads do not
    // divide, with the head size floored (ViT-MAE 1000 wide with 12 heads:
    // 996-wide projections). The descriptions were derived from sizes the
    // heads divide, so src/arch/zoo/divides.py built each size one past a
    // multiple, found these pairs where the description then differs from
    // the library, and ckptcheck refuses such a config rather than give
    // the unfloored shapes. A multiple builds.
    let cases = [
        (
            json!({"model_type": "vit_mae", "architectures": ["ViTMAEForPreTraining"],
                "hidden_size": 1000}),
            "\"hidden_size\" = 1000 is not a multiple of \"num_attention_heads\" = 12",
        ),
        (
            json!({"model_type": "segformer", "hidden_sizes": [32, 64, 161, 256]}),
            "\"hidden_sizes.2\" = 161 is not a multiple of \"num_attention_heads.2\" = 5",
        ),
    ];
    for (config, needle) in cases {
        let error = read(&config).expect_err(needle);
        assert_eq!(error.kind, ErrorKind::BadConfig);
        assert!(
            error.message.contains(needle) && error.message.contains("floored"),
            "{error}"
        );
    }
    build(&json!({"model_type": "vit_mae", "hidden_size": 1008}));
    // ViTMAEModel's head size is now a field (`head_dim`, which its
    // modeling code reads though the config class does not declare it),
    // its default floored as the library floors it: 1000 wide with 12
    // heads builds the library's 996-wide projections.
    let floored = build(
        &json!({"model_type": "vit_mae", "architectures": ["ViTMAEModel"],
        "hidden_size": 1000, "num_hidden_layers": 1}),
    );
    let query = floored
        .tensors
        .iter()
        .find(|t| t.name == "layers.0.attention.q_proj.weight")
        .expect("q_proj");
    assert_eq!(query.shape, [996, 1000]);
    build(&json!({"model_type": "segformer", "hidden_sizes": [32, 64, 160, 256]}));
}

#[test]
fn a_flag_transformers_refuses_alone_is_refused_alone() {
    // BertLayer raises "should be used as a decoder model if cross
    // attention is added": the generator flipped `add_cross_attention`
    // with `is_decoder`, and records that it needs it.
    let alone = json!({"model_type": "bert", "architectures": ["BertLMHeadModel"],
        "add_cross_attention": true, "num_hidden_layers": 1});
    let error = read(&alone).expect_err("refused");
    assert_eq!(error.kind, ErrorKind::BadConfig);
    assert!(error.message.contains("\"is_decoder\" is false"), "{error}");
    let mut decoder = alone;
    decoder["is_decoder"] = json!(true);
    let model = build(&decoder);
    assert!(model
        .tensors
        .iter()
        .any(|t| t.name == "bert.encoder.layer.0.crossattention.self.query.weight"));
}

#[test]
fn a_float_that_matters_at_zero_only_is_free_elsewhere() {
    // wav2vec2's fine-tunes write `mask_time_prob` 0.05 or 0.075 alike:
    // both build `masked_spec_embed`, as transformers does (0 is refused,
    // above).
    // ConvNeXt's and BEiT's layer scale likewise: built at their defaults
    // (1e-6, 0.1) and at any other value but 0 (transformers 5.24 builds
    // `layer_scale_parameter` at 0.5, none at 0).
    // A fine-tune that masks features only (`mask_time_prob` 0 beside a
    // `mask_feature_prob` above 0) builds `masked_spec_embed` too
    // (unvaried_fields.py's `nonzero_unless`), in wav2vec2, HuBERT and
    // WavLM alike, and inside a speech encoder-decoder's encoder.
    let cases = [
        (
            json!({"model_type": "wav2vec2", "mask_time_prob": 0.0, "mask_feature_prob": 0.1}),
            "masked_spec_embed",
        ),
        (
            json!({"model_type": "hubert", "mask_time_prob": 0, "mask_feature_prob": 0.25}),
            "masked_spec_embed",
        ),
        (
            json!({"model_type": "wavlm", "mask_time_prob": 0.0, "mask_feature_prob": 0.05}),
            "masked_spec_embed",
        ),
        (
            json!({"model_type": "speech-encoder-decoder",
                   "encoder": {"model_type": "wav2vec2", "mask_time_prob": 0.0, "mask_feature_prob": 0.1},
                   "decoder": {"model_type": "bert", "is_decoder": true, "add_cross_attention": true}}),
            "encoder.masked_spec_embed",
        ),
        (
            json!({"model_type": "wav2vec2", "mask_time_prob": 0.05}),
            "masked_spec_embed",
        ),
        (
            json!({"model_type": "wav2vec2", "mask_time_prob": 0.075}),
            "masked_spec_embed",
        ),
        (
            json!({"model_type": "hubert", "mask_time_prob": 0.5}),
            "masked_spec_embed",
        ),
        (
            json!({"model_type": "convnext", "layer_scale_init_value": 0.5}),
            "encoder.stages.0.layers.0.layer_scale_parameter",
        ),
        (
            json!({"model_type": "convnext", "layer_scale_init_value": 1e-6}),
            "encoder.stages.0.layers.0.layer_scale_parameter",
        ),
        (
            json!({"model_type": "beit", "layer_scale_init_value": 0.1}),
            "layers.0.lambda_1",
        ),
        (
            json!({"model_type": "beit", "layer_scale_init_value": 1e-5}),
            "layers.0.lambda_1",
        ),
    ];
    for (config, tensor) in cases {
        let model = build(&config);
        assert!(
            model.tensors.iter().any(|t| t.name == tensor),
            "{config}: no {tensor}"
        );
    }
}

#[test]
fn a_flag_that_resizes_tensors_chooses_the_description_derived_at_its_value() {
    // Flags whose other value resizes tensors both values have: the
    // generator derives the class again at that value (`resizing_flags`)
    // and a config.json that writes it gets that description. Falcon-40B
    // writes `new_decoder_architecture`: the fused query/key/value
    // projection holds the query heads and two groups of `num_kv_heads`
    // heads, and `ln_attn`/`ln_mlp` replace `input_layernorm`; Falcon-RW
    // writes `multi_query` false: three full-width projections.
    // DINOv2-giant writes `use_swiglu_ffn`: a gated MLP two thirds of the
    // MLP's width, rounded up to a multiple of 8 (2576 at 771 wide with
    // `mlp_ratio` 5, where two thirds is 2570). GPTBigCode without
    // multi-query attention. Shapes from transformers 5.24 on the meta
    // device.
    let falcon = json!({"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 256,
        "num_attention_heads": 8, "num_hidden_layers": 1, "vocab_size": 100});
    let mut falcon_40b_like = falcon.clone();
    falcon_40b_like["new_decoder_architecture"] = json!(true);
    falcon_40b_like["num_kv_heads"] = json!(2);
    let mut falcon_rw_like = falcon.clone();
    falcon_rw_like["multi_query"] = json!(false);
    let cases = [
        (
            falcon.clone(),
            "transformer.h.0.self_attention.query_key_value.weight",
            vec![256 + 2 * 32, 256],
        ),
        (
            falcon_40b_like.clone(),
            "transformer.h.0.self_attention.query_key_value.weight",
            vec![384, 256],
        ),
        (
            falcon_40b_like.clone(),
            "transformer.h.0.ln_mlp.weight",
            vec![256],
        ),
        (
            falcon_rw_like,
            "transformer.h.0.self_attention.query_key_value.weight",
            vec![768, 256],
        ),
        (
            json!({"model_type": "dinov2", "hidden_size": 771, "num_attention_heads": 3, "mlp_ratio": 5,
                   "use_swiglu_ffn": true}),
            "encoder.layer.0.mlp.gate_proj.weight",
            vec![2576, 771],
        ),
        (
            json!({"model_type": "gpt_bigcode", "architectures": ["GPTBigCodeForCausalLM"], "n_embd": 256,
                   "n_head": 8, "n_layer": 1, "vocab_size": 100, "multi_query": false}),
            "transformer.h.0.attn.c_attn.weight",
            vec![768, 256],
        ),
    ];
    for (config, tensor, shape) in cases {
        assert_eq!(built_shape(&config, tensor), shape, "{config}");
    }
    // Inference reads the flag back off the keys, and the rebuilt model
    // is the checkpoint's.
    let names = names_of(&build(&falcon_40b_like));
    let inferred = arch::infer(&names);
    assert_eq!(
        inferred.config["new_decoder_architecture"],
        json!(true),
        "{}",
        inferred.config
    );
    assert_eq!(rebuilt_differs(&inferred, names), None);
}

#[test]
fn a_list_whose_length_changes_no_tensor_is_taken_at_any_length() {
    // DINOv2's backbone builds the same tensors whichever layers
    // `out_indices` names (Depth Anything's and DPT's configs name four,
    // the default one); GLM's `eos_token_id` lists tokens. list_lengths.py
    // built each at another length with transformers and saw the same
    // tensors. Swin's backbone adds a norm for each stage it outputs:
    // other stages stay refused there.
    let dinov2 = |out_indices: Value| {
        json!({"model_type": "dinov2", "architectures": ["Dinov2Backbone"], "num_hidden_layers": 12,
               "out_indices": out_indices})
    };
    assert_eq!(
        names_of(&build(&dinov2(json!([9, 10, 11, 12])))),
        names_of(&build(&dinov2(json!([12]))))
    );
    build(&json!({"model_type": "glm", "eos_token_id": [1, 2]}));
    let error = read(
        &json!({"model_type": "swin", "architectures": ["SwinBackbone"], "out_indices": [3, 4]}),
    )
    .expect_err("refused");
    assert!(error.message.contains("\"out_indices"), "{error}");
}

#[test]
fn a_flag_that_adds_a_weight_per_layer_and_one_more_follows_the_layer_count() {
    // The audio classifiers' `use_weighted_layer_sum` (superb's
    // keyword-spotting fine-tunes set it) adds `layer_weights`: a weight
    // per hidden layer and one for the embeddings. Shapes from
    // transformers 5.24 on the meta device: 4 for a 3-layer
    // Wav2Vec2ForSequenceClassification, 3 for a 2-layer
    // Wav2Vec2ForXVector, 6 for a WhisperForAudioClassification with 5
    // encoder layers; none with the flag false. Inference reads the flag
    // and the count back off the tensors.
    let cases = [
        (
            json!({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForSequenceClassification"],
                   "num_hidden_layers": 3}),
            [4],
        ),
        (
            json!({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForXVector"],
                   "num_hidden_layers": 2}),
            [3],
        ),
        (
            json!({"model_type": "whisper", "architectures": ["WhisperForAudioClassification"],
                   "encoder_layers": 5}),
            [6],
        ),
    ];
    for (config, shape) in cases {
        assert!(
            !build(&config)
                .tensors
                .iter()
                .any(|t| t.name == "layer_weights"),
            "{config}"
        );
        let mut weighted = config;
        weighted["use_weighted_layer_sum"] = json!(true);
        assert_eq!(built_shape(&weighted, "layer_weights"), shape, "{weighted}");
        let names = names_of(&build(&weighted));
        let inferred = arch::infer(&names);
        assert_eq!(
            inferred.config["use_weighted_layer_sum"],
            json!(true),
            "{}",
            inferred.config
        );
        assert_eq!(rebuilt_differs(&inferred, names), None, "{weighted}");
    }
}

#[test]
fn a_size_null_by_default_is_the_size_the_model_computes() {
    // (config without the field, the field, the tensor it sizes, its shape
    // with the field left out or null, the value that stands for, another
    // value, the shape then). GPT-2's `n_inner` is null in its released
    // config.json: the MLP is then 4*n_embd wide; set, it is the width
    // itself. Mixtral's `head_dim` is null too, meaning hidden_size //
    // num_attention_heads, a size no tensor has alone (its key projection
    // is 2 heads of 32 here): a config.json that writes it, as newer tools
    // do, builds as transformers builds it rather than being refused.
    let cases = [
        (
            json!({"model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 1}),
            "n_inner",
            "h.0.mlp.c_fc.weight",
            [32, 128],
            128,
            50,
            [32, 50],
        ),
        (
            json!({"model_type": "mixtral", "hidden_size": 256, "num_attention_heads": 8,
                   "num_key_value_heads": 2, "num_hidden_layers": 1, "num_local_experts": 2,
                   "intermediate_size": 64, "vocab_size": 100}),
            "head_dim",
            "layers.0.self_attn.k_proj.weight",
            [64, 256],
            32,
            48,
            [96, 256],
        ),
    ];
    for (base, field, tensor, computed, computed_value, value, set_shape) in cases {
        let shape = |config: Value| built_shape(&config, tensor);
        assert_eq!(shape(base.clone()), computed, "{field} left out");
        for written in [Value::Null, json!(computed_value)] {
            let mut config = base.clone();
            config[field] = written.clone();
            assert_eq!(shape(config), computed, "{field} = {written}");
        }
        let mut set = base;
        set[field] = json!(value);
        assert_eq!(shape(set), set_shape, "{field} = {value}");
    }
}

#[test]
fn module_kinds_follow_the_library_modules() {
    // GPT-2's Conv1D (weight [in, out]) and embeddings, for a PEFT
    // adapter's shapes.
    let gpt2 = build(&json!({"model_type": "gpt2", "n_layer": 1, "add_cross_attention": true}));
    let kind_of = |name: &str| {
        gpt2.module_kinds
            .iter()
            .find(|(module, _)| module == name)
            .map(|(_, kind)| *kind)
    };
    assert_eq!(kind_of("h.0.attn.c_attn"), Some(arch::ModuleKind::Conv1D));
    assert_eq!(
        kind_of("h.0.crossattention.q_attn"),
        Some(arch::ModuleKind::Conv1D)
    );
    assert_eq!(kind_of("wte"), Some(arch::ModuleKind::Embedding));
    // Every class's BatchNorm modules are exactly the modules whose
    // `num_batches_tracked` it saves (PyTorch fills that in for an old
    // state dict, so it must know them all).
    let matrix = matrix();
    let mut with_batch_norm = 0;
    let mut unmarked = Vec::new();
    for entry in matrix["classes"].as_array().expect("classes") {
        let model_type = entry["model_type"].as_str().unwrap();
        let class = entry["class"].as_str().unwrap();
        let model = zoo::from_config_value(&entry["default"]["config"], model_type, Some(class))
            .unwrap_or_else(|e| panic!("{model_type}/{class}: {e}"));
        let mut tracked: Vec<&str> = model
            .tensors
            .iter()
            .filter_map(|t| t.name.strip_suffix(".num_batches_tracked"))
            .collect();
        tracked.sort();
        let mut marked: Vec<&str> = model.batchnorm_modules.iter().map(String::as_str).collect();
        marked.sort();
        if marked != tracked {
            unmarked.push(format!("{model_type}/{class}"));
        }
        with_batch_norm += usize::from(!marked.is_empty());
    }
    assert!(unmarked.is_empty(), "BatchNorm marks differ: {unmarked:?}");
    assert!(
        with_batch_norm >= 20,
        "{with_batch_norm} classes with BatchNorm"
    );
}

#[test]
fn must_have_model_types_are_described() {
    for model_type in [
        "xlm-roberta",
        "distilbert",
        "electra",
        "albert",
        "t5",
        "gpt_neox",
        "opt",
        "falcon",
        "mixtral",
        "qwen3",
        "gemma",
        "gemma2",
        "phi3",
        "starcoder2",
        "olmo2",
        "deit",
        "dinov2",
        "detr",
        "llava",
    ] {
        assert!(zoo::knows(model_type), "{model_type} is not described");
    }
}

/// tests/fixtures/zoo/loads.json (make_zoo_loads.py): real loads of saved
/// tiny models.
fn zoo_loads() -> Value {
    let path = format!(
        "{}/tests/fixtures/zoo/loads.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Real loads of model types only the zoo describes
/// (tests/fixtures/zoo/make_zoo_loads.py): `from_pretrained`'s report and
/// error, and `load_state_dict(strict=True)`'s text, for saved tiny models
/// loaded into other configs and classes. MoE checkpoints are saved with
/// per-expert keys that from_pretrained merges on load.
#[test]
fn zoo_loads_are_what_transformers_and_pytorch_say() {
    use ckptcheck::diagnosis::check;
    use ckptcheck::loader::Loader;
    let fixture = zoo_loads();
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 15, "{} cases", cases.len());
    for case in cases {
        let label = format!("{} -> {}", case["checkpoint_source"], case["model"]);
        let checkpoint =
            load_case::checkpoint_of("model.safetensors", &case["checkpoint"], str::to_string);
        let config = &fixture["configs"][case["model"].as_str().unwrap()];
        let model = build(config);
        let report = check(&checkpoint, &model, Loader::Hf);
        load_case::assert_same_keys(&report, case, &label);
        assert_eq!(json!(report.loads), case["loads"], "{label}");
        assert_eq!(
            report.pytorch_error.as_deref(),
            case["error"].as_str(),
            "{label}"
        );
        let strict = check(&checkpoint, &model, Loader::Strict);
        assert_eq!(
            strict.pytorch_error.as_deref(),
            case["strict_error"].as_str(),
            "{label} (strict)"
        );
    }
}

/// A LLaVA whose language model is Qwen2 (saved by transformers,
/// make_zoo_loads.py) checked against a Mistral LLaVA's config: the load
/// report's 6 unexpected q/k/v biases are explained as the sub-model the
/// config names, since the file's language model is exactly what Qwen2
/// builds there; the other way round, the 6 missing biases name every type
/// whose model is exactly the file's (Mistral's, LLaMA's, … alike).
#[test]
fn a_composite_with_another_sub_model_names_the_sub_config_model_type() {
    use ckptcheck::diagnosis::check;
    use ckptcheck::loader::Loader;
    let fixture = zoo_loads();
    let case = |source: &str, model: &str| {
        fixture["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["checkpoint_source"] == source && c["model"] == model)
            .unwrap_or_else(|| panic!("{source} -> {model}"))
            .clone()
    };
    let (qwen2, mistral) = (
        "llava-qwen2/LlavaForConditionalGeneration",
        "llava-mistral/LlavaForConditionalGeneration",
    );
    for (source, into, unexpected, missing, named) in [
        (qwen2, mistral, 6, 0, "exactly what \"qwen2\" builds there"),
        (mistral, qwen2, 0, 6, "\"mistral\""),
    ] {
        let case = case(source, into);
        let checkpoint =
            load_case::checkpoint_of("model.safetensors", &case["checkpoint"], str::to_string);
        let model = build(&fixture["configs"][into]);
        let report = check(&checkpoint, &model, Loader::Hf);
        let cause = report
            .explanation
            .iter()
            .find(|c| c.cause == "sub-model")
            .unwrap_or_else(|| panic!("{source} -> {into}: {:?}", report.explanation));
        assert_eq!(cause.field, "text_config.model_type");
        assert_eq!((cause.unexpected, cause.missing), (unexpected, missing));
        assert!(
            cause.text.contains(named)
                && cause.text.contains("`model.language_model`")
                && cause
                    .text
                    .contains("set \"text_config\": {\"model_type\": "),
            "{}",
            cause.text
        );
        // Nothing else is left to explain.
        assert_eq!(report.explanation.len(), 1, "{:?}", report.explanation);
    }
    // A file and a config that agree have no such cause.
    let case = case(qwen2, qwen2);
    let checkpoint =
        load_case::checkpoint_of("model.safetensors", &case["checkpoint"], str::to_string);
    let report = check(&checkpoint, &build(&fixture["configs"][qwen2]), Loader::Hf);
    assert!(report.explanation.iter().all(|c| c.cause != "sub-model"));
}

/// Whether a config sets a flag, in it or in a sub-config.
fn holds_a_flag(config: &Value) -> bool {
    config
        .as_object()
        .is_some_and(|fields| fields.values().any(|v| v.is_boolean() || holds_a_flag(v)))
}

/// Inference round trip: the tensors of a config's model, given to
/// `arch::infer` with nothing else, give back a config whose model has
/// exactly those tensors (fields no shape shows keep their defaults, which
/// the held-out variations never change for layer-less sizes). The
/// variations with every flag flipped are checked apart (below).
#[test]
fn inferred_configs_rebuild_the_tensors_they_came_from() {
    assert_all_round_trips_exact(false, 40);
}

/// The held-out variations with every flag flipped, inferred from their
/// tensors alone: flags that add keys are read off which keys are present.
#[test]
fn inferred_configs_with_flags_flipped_rebuild_the_tensors_they_came_from() {
    assert_all_round_trips_exact(true, 30);
}

/// Every model type's round trips (with flags flipped or without): at
/// least `least` checked, and none rebuilds other tensors.
fn assert_all_round_trips_exact(flagged: bool, least: usize) {
    let (checked, failures) = round_trips(|_| true, flagged);
    assert!(checked >= least, "{checked} checked");
    eprintln!(
        "{} of {checked} round trips exact (flags flipped: {flagged})",
        checked - failures.len()
    );
    assert_none_failed(checked, &failures);
}

/// A flag is read off the keys it adds, with the key as evidence, and a
/// class whose keys the checkpoint has only with flags set is judged
/// against the one that has them by default: Falcon with biases and
/// sequential attention has BLOOM's very keys (BLOOM's by default), its
/// fused query/key/value and feed-forward widths BLOOM's model cannot
/// build. Before flags were read, this sample was inferred as BLOOM.
#[test]
fn a_flag_is_read_off_the_keys_it_adds() {
    let matrix = matrix();
    let variation = matrix["classes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["class"] == "FalconModel")
        .flat_map(|falcon| falcon["variations"].as_array().unwrap())
        .find(|v| v["config"]["bias"] == true && v["config"]["parallel_attn"] == false)
        .expect("a Falcon variation with biases and sequential attention");
    let names = load_case::names_and_shapes(&variation["state_dict"]);
    let inferred = arch::infer(&names);
    assert_eq!(
        inferred.config["model_type"], "falcon",
        "{}",
        inferred.config
    );
    let field = |name: &str| {
        inferred
            .fields
            .iter()
            .find(|f| f.field == name)
            .unwrap_or_else(|| panic!("{name} not inferred: {:?}", inferred.fields))
    };
    assert_eq!(field("bias").value, json!(true));
    assert!(field("bias").evidence.contains(".bias` is present"));
    assert_eq!(field("parallel_attn").value, json!(false));
    assert!(field("parallel_attn")
        .evidence
        .contains("post_attention_layernorm"));
    assert_eq!(field("ffn_hidden_size").value, json!(18176));
    assert_eq!(rebuilt_differs(&inferred, names), None);
}

/// Round trips that need more than one shape per pattern, or more than
/// the defaults (each failed before; 150 of the 173 then were exact):
/// - Swin's and ConvNeXt's stages: each stage's heads and width are read
///   off its own blocks, not stage 0's.
/// - ALBERT's, and SDXL's UNet and ControlNet's, repeated layers after
///   first layers of their own: read at the index where they start.
/// - SegFormer's `sr_ratios`, its last entry held fixed by the class.
/// - SigLIP's `projection_size` and LLaVA's `text_config.head_dim`: a
///   sub-config written in part takes another default than the composite
///   config's, so they are written.
/// - Gemma 2 with 128-wide heads: the default head size 256 does not
///   divide 640 key/value features; before, the class was given up and the
///   checkpoint named LLaMA.
/// - DeiT's `image_size` under a floor division, SD3's
///   `pos_embed_max_size` squared, Flux's `out_channels`.
#[test]
fn inference_reads_stages_repeats_sub_config_defaults_and_head_sizes() {
    let model_types = [
        "swin",
        "convnext",
        "albert",
        "segformer",
        "siglip",
        "llava",
        "gemma2",
        "deit",
        "diffusers/UNet2DConditionModel",
        "diffusers/ControlNetModel",
        "diffusers/SD3Transformer2DModel",
        "diffusers/FluxTransformer2DModel",
    ];
    let (checked, failures) = round_trips(|model_type| model_types.contains(&model_type), false);
    assert!(checked >= model_types.len() * 2, "{checked} checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each held-out variation of the model types `wanted` picks (those with
/// no flag set), its tensors given to `arch::infer` with nothing else: how
/// many were checked, and those whose inferred config builds other tensors.
fn round_trips(wanted: impl Fn(&str) -> bool, flagged: bool) -> (usize, Vec<String>) {
    let matrix = matrix();
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in matrix["classes"].as_array().unwrap() {
        let model_type = entry["model_type"].as_str().unwrap();
        let class = entry["class"].as_str().unwrap();
        if !wanted(model_type) {
            continue;
        }
        for variation in entry["variations"].as_array().unwrap() {
            let Some(whole) = variation.get("state_dict") else {
                continue;
            };
            if holds_a_flag(&variation["config"]) != flagged {
                continue;
            }
            let tensors: Vec<(String, Vec<u64>, String)> =
                serde_json::from_value(whole.clone()).unwrap();
            let names: Vec<(String, Vec<u64>)> = tensors
                .iter()
                .map(|(n, s, _)| (n.clone(), s.clone()))
                .collect();
            checked += 1;
            let inferred = arch::infer(&names);
            if let Some(wrong) = rebuilt_differs(&inferred, names) {
                failures.push(format!("{model_type}/{class}: {wrong}"));
            }
        }
    }
    (checked, failures)
}

fn assert_none_failed(checked: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {checked}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// How the model an inferred config builds differs from the tensors it was
/// inferred from, or None where it has exactly them (as sets: classes with
/// the same tensors in another order are one answer as far as the shapes
/// go).
fn rebuilt_differs(
    inferred: &arch::Inferred,
    mut names: Vec<(String, Vec<u64>)>,
) -> Option<String> {
    let Some(rebuilt) = arch::model_for_inferred(inferred) else {
        return Some(format!("nothing rebuilt from {}", inferred.config));
    };
    let mut got = names_of(&rebuilt);
    got.sort();
    names.sort();
    if got == names {
        return None;
    }
    let first = first_difference(&got, &names);
    Some(format!("{} ({first})", inferred.config))
}

/// The first entry where two listings differ, or their lengths.
fn first_difference<T: std::fmt::Debug + PartialEq>(got: &[T], want: &[T]) -> String {
    got.iter()
        .zip(want)
        .find(|(a, b)| a != b)
        .map(|(a, b)| format!("{a:?} vs {b:?}"))
        .unwrap_or_else(|| format!("{} vs {} tensors", got.len(), want.len()))
}

fn names_of(model: &ModelSpec) -> Vec<(String, Vec<u64>)> {
    model
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect()
}

/// Released sizes are presets, and inference names them: exactly, or as
/// the release a checkpoint departs from in a field (a resized vocabulary).
#[test]
fn released_sizes_are_presets_that_inference_names() {
    let names: Vec<String> = arch::presets()
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    for preset in [
        "hf/llama-3-8b",
        "hf/mistral-7b",
        "hf/qwen2.5-3b",
        "hf/gemma-2b",
        "hf/bert-base-uncased",
        "hf/t5-base",
        "hf/whisper-small",
    ] {
        assert!(names.iter().any(|n| n == preset), "{preset}");
    }
    for preset in [
        "hf/mixtral-8x7b",
        "hf/t5-small",
        "hf/gemma-2b",
        "hf/whisper-base",
        "hf/resnet-18",
        "hf/resnet-50",
        "hf/wav2vec2-base-960h",
        "hf/wav2vec2-large-960h-lv60-self",
        "hf/hubert-large-ls960-ft",
        // Both sizes equal (no projections), and 350M's 512-wide
        // embeddings projected in and out, its final LayerNorm absent
        // (post-LayerNorm: `do_layer_norm_before` read off the keys).
        "hf/opt-125m",
        "hf/opt-350m",
        "hf/opt-1.3b",
        // Falcon-40B's and DINOv2-giant's flags (`new_decoder_architecture`,
        // `use_swiglu_ffn`) choose descriptions derived at those values.
        "hf/falcon-7b",
        "hf/falcon-40b",
        "hf/dinov2-giant",
        // VideoMAE (derived once its sinusoid table was built in whole
        // arrays) and MobileNetV2 (its `depth_divisible_by` held).
        "hf/videomae-base-finetuned-kinetics",
        "hf/mobilenet-v2-1.0-224",
    ] {
        let model = arch::model_from_preset(preset).unwrap();
        assert_eq!(model.preset.as_deref(), Some(preset));
        let inferred = arch::infer(&names_of(&model));
        assert_eq!(
            inferred.preset.as_deref(),
            Some(preset),
            "{preset}: {:?}",
            inferred.ranking.first()
        );
    }
    // Qwen2.5-3B with its vocabulary resized to 151666 (tokens added).
    let mut config = json!({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 2048,
        "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
        "vocab_size": 151666, "tie_word_embeddings": true});
    let resized = build(&config);
    let inferred = arch::infer(&names_of(&resized));
    assert_eq!(inferred.preset, None);
    let shaped = inferred.shaped_like.expect("shaped like a release");
    assert!(
        shaped.contains("Qwen2.5 3B-shaped") && shaped.contains("vocab_size 151666"),
        "{shaped}"
    );
    // Far from every release: no claim.
    config["hidden_size"] = json!(1024);
    config["num_hidden_layers"] = json!(3);
    let inferred = arch::infer(&names_of(&build(&config)));
    assert_eq!(inferred.shaped_like, None);
}

/// The saved file of a real load (`source`) loads into the model `config`
/// builds with nothing missing, unexpected or mismatched.
fn assert_loads_exactly(source: &str, config: &Value) {
    assert_tensors_load_exactly(source, &saved_case(source)["checkpoint"], config);
}

/// A checkpoint listing (`[name, shape, dtype]` rows) loads into the model
/// `config` builds with nothing missing, unexpected or mismatched.
fn assert_tensors_load_exactly(what: &str, tensors: &Value, config: &Value) {
    let checkpoint = load_case::checkpoint_of("model.safetensors", tensors, str::to_string);
    let report =
        ckptcheck::diagnosis::check(&checkpoint, &build(config), ckptcheck::loader::Loader::Hf);
    assert!(
        report.missing_keys.is_empty()
            && report.unexpected_keys.is_empty()
            && report.size_mismatches.is_empty(),
        "{what}: {config}: {:?} {:?} {:?}",
        report.missing_keys,
        report.unexpected_keys,
        report.size_mismatches
    );
}

/// BLIP-2 around another language model than its default OPT-125M shape:
/// Flan-T5 (as blip2-flan-t5-xl) and OPT with embeddings narrower than its
/// layers (opt-350m's projections in and out). Each file save_pretrained
/// wrote (make_zoo_loads.py) is inferred with its language model and
/// loads exactly into the inferred config's model, and the Flan-T5 file
/// checked against the OPT config names the language model as the cause.
/// Before, BLIP-2's description held OPT's width at 768 (OPT's projections
/// exist only while two sizes differ, so every variation of either changed
/// the structure) and listed only GPT-2 in its place.
#[test]
fn a_saved_blip_2_is_inferred_with_its_language_model() {
    for (source, text, fields) in [
        (
            "blip-2-flan-t5/Blip2ForConditionalGeneration",
            "t5",
            vec![("text_config.d_ff", 37), ("text_config.d_model", 32)],
        ),
        (
            "blip-2-opt-projected/Blip2ForConditionalGeneration",
            "opt",
            vec![
                ("text_config.hidden_size", 32),
                ("text_config.word_embed_proj_dim", 16),
            ],
        ),
    ] {
        let inferred = arch::infer(&saved_checkpoint_names(source));
        let config = &inferred.config;
        assert_eq!(config["model_type"], "blip-2", "{source}: {config}");
        assert_eq!(
            config["text_config"]["model_type"], text,
            "{source}: {config}"
        );
        for (field, value) in fields {
            assert_eq!(
                inferred.field(field),
                Some(&json!(value)),
                "{source} {field}: {:?}",
                inferred.fields
            );
        }
        assert_loads_exactly(source, config);
    }
    let fixture = zoo_loads();
    let flan_t5 = "blip-2-flan-t5/Blip2ForConditionalGeneration";
    let opt = "blip-2/Blip2ForConditionalGeneration";
    let case = saved_case(flan_t5);
    let checkpoint =
        load_case::checkpoint_of("model.safetensors", &case["checkpoint"], str::to_string);
    let report = ckptcheck::diagnosis::check(
        &checkpoint,
        &build(&fixture["configs"][opt]),
        ckptcheck::loader::Loader::Hf,
    );
    let cause = report
        .explanation
        .iter()
        .find(|c| c.cause == "sub-model")
        .unwrap_or_else(|| panic!("{:?}", report.explanation));
    assert_eq!(cause.field, "text_config.model_type");
    assert!(
        cause
            .text
            .contains("`language_model` is exactly what \"t5\" builds there")
            && cause.text.contains("set \"text_config\": {")
            && cause.text.contains("\"d_model\":32"),
        "{}",
        cause.text
    );
    // The cause accounts for every key under the language model.
    assert_eq!(report.explanation.len(), 1, "{:?}", report.explanation);
}

/// Model types the zoo describes once sizes may be three products
/// (a Mamba-2 mixer's input projection:
/// `2*mamba_expand*hidden_size+2*mamba_n_groups*mamba_d_state+mamba_n_heads`)
/// and a layer count may have a least value: Granite 4's hybrid, Falcon-H1,
/// GLM-4.5's MoE and RecurrentGemma, saved by transformers
/// (make_zoo_loads.py), are each inferred from their tensors alone as their
/// own model type, with the sizes only their tensors show, and load
/// exactly into the inferred config's model.
#[test]
fn saved_hybrid_and_moe_models_are_inferred_as_themselves_and_load_exactly() {
    for (source, model_type, fields) in [
        (
            "granitemoehybrid/GraniteMoeHybridForCausalLM",
            "granitemoehybrid",
            vec![
                ("hidden_size", 64),
                ("mamba_d_state", 16),
                ("mamba_n_heads", 2),
                ("mamba_d_conv", 4),
            ],
        ),
        (
            "falcon_h1/FalconH1ForCausalLM",
            "falcon_h1",
            vec![
                ("mamba_d_ssm", 64),
                ("mamba_d_state", 16),
                ("mamba_n_heads", 8),
            ],
        ),
        (
            "glm4_moe/Glm4MoeForCausalLM",
            "glm4_moe",
            vec![
                ("moe_intermediate_size", 16),
                ("n_routed_experts", 4),
                ("first_k_dense_replace", 1),
            ],
        ),
        (
            "recurrent_gemma/RecurrentGemmaForCausalLM",
            "recurrent_gemma",
            vec![("intermediate_size", 48), ("hidden_size", 32)],
        ),
    ] {
        let inferred = arch::infer(&saved_checkpoint_names(source));
        let config = &inferred.config;
        // Another model type may build the very same class (transformers
        // maps `sarvam_moe` to GLM-4.5's `Glm4MoeForCausalLM`, with its own
        // config class): the class is the checkpoint's all the same, and
        // the config written loads exactly.
        let class = source.split('/').nth(1).unwrap();
        assert_eq!(config["architectures"][0], class, "{source}: {config}");
        assert!(
            config["model_type"] == model_type || model_type == "glm4_moe",
            "{source}: {config} {:?}",
            inferred.undetermined
        );
        if config["model_type"] == model_type {
            for (field, value) in fields {
                assert_eq!(config[field], json!(value), "{source} {field}: {config}");
            }
        }
        assert_loads_exactly(source, config);
        if model_type == "granitemoehybrid" || model_type == "falcon_h1" {
            // The Mamba-2 state shows only times its groups
            // (`2*mamba_d_state*mamba_n_groups` channels): one of the two
            // is assumed, and said to be, never reported as read.
            assert!(
                inferred.undetermined.iter().any(|line| {
                    (line.starts_with("mamba_d_state:") || line.starts_with("mamba_n_groups:"))
                        && line.contains("assumed")
                }),
                "{source}: {:?}",
                inferred.undetermined
            );
            assert_eq!(inferred.field("mamba_d_state"), None, "{source}");
        }
    }
}

/// Granite 4's config.json names its layer types in the older words
/// transformers renames ("mamba" is "linear_attention", "attention" is
/// "full_attention"): all-"mamba" reads as the default list, and an
/// "attention" entry builds an attention layer there (kinds.py derived
/// that kind, which the library's all-Mamba default lacks).
#[test]
fn granite_4_layer_types_are_read_in_their_older_names() {
    let fixture = zoo_loads();
    let config = fixture["configs"]["granitemoehybrid/GraniteMoeHybridForCausalLM"].clone();
    assert_eq!(
        config["layer_types"],
        json!(["linear_attention", "linear_attention"])
    );
    for (layer_types, attention) in [
        (json!(["mamba", "mamba"]), [false, false]),
        (json!(["linear_attention", "mamba"]), [false, false]),
        (json!(["mamba", "attention"]), [false, true]),
        (json!(["full_attention", "linear_attention"]), [true, false]),
    ] {
        let mut given = config.clone();
        given["layer_types"] = layer_types.clone();
        let model = read(&given).unwrap_or_else(|e| panic!("{layer_types}: {e}"));
        for (index, attention) in attention.into_iter().enumerate() {
            let has = |module: &str| {
                let prefix = format!("model.layers.{index}.{module}.");
                model.tensors.iter().any(|t| t.name.starts_with(&prefix))
            };
            assert_eq!(has("self_attn"), attention, "{layer_types}: layer {index}");
            assert_eq!(has("mamba"), !attention, "{layer_types}: layer {index}");
        }
    }
}

/// The names and shapes of a checkpoint save_pretrained wrote for a real
/// load (tests/fixtures/zoo/loads.json), by its source `config/Class`.
fn saved_checkpoint_names(source: &str) -> Vec<(String, Vec<u64>)> {
    load_case::names_and_shapes(&saved_case(source)["checkpoint"])
}

/// The inferred field named `name` among `fields`.
fn field_in<'a>(fields: &'a [arch::InferredField], name: &str) -> &'a arch::InferredField {
    fields
        .iter()
        .find(|f| f.field == name)
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
}

/// The checkpoint of `saved_case(source)`.
fn saved_checkpoint(source: &str) -> ckptcheck::Checkpoint {
    load_case::checkpoint_of(
        "model.safetensors",
        &saved_case(source)["checkpoint"],
        str::to_string,
    )
}

/// The first real load of tests/fixtures/zoo/loads.json whose checkpoint
/// save_pretrained wrote from `source`.
fn saved_case(source: &str) -> Value {
    zoo_loads()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["checkpoint_source"] == source)
        .unwrap_or_else(|| panic!("no case saved from {source}"))
        .clone()
}

/// A LLaVA saved by save_pretrained keeps the older layout
/// (`language_model.model.*`); inference reads it through the class's
/// renames, and the sub-config it writes carries its `model_type` and the
/// composite defaults the shapes do not show (16 heads, where a
/// `vision_config` without them is CLIPVisionConfig's 12, which does not
/// divide LLaVA's 1024).
#[test]
fn a_llava_in_the_saved_layout_is_inferred_with_whole_sub_configs() {
    let names = saved_checkpoint_names("llava/LlavaForConditionalGeneration");
    assert!(names
        .iter()
        .any(|(n, _)| n.starts_with("language_model.model.")));
    let inferred = arch::infer(&names);
    let config = &inferred.config;
    assert_eq!(config["model_type"], "llava", "{config}");
    assert_eq!(
        config["architectures"],
        json!(["LlavaForConditionalGeneration"]),
        "{config}"
    );
    let vision = &config["vision_config"];
    assert_eq!(vision["model_type"], "clip_vision_model", "{config}");
    assert_eq!(vision["hidden_size"], 32, "{config}");
    assert_eq!(vision["num_attention_heads"], 16, "{config}");
    assert_eq!(config["text_config"]["model_type"], "llama", "{config}");
    assert_eq!(config["text_config"]["intermediate_size"], 37, "{config}");
}

/// ckptcheck's `--loader hf` report for a real load of
/// tests/fixtures/zoo/loads.json: the checkpoint saved from `source` into
/// the model of `model` (each `config/Class`).
fn hf_report(source: &str, model: &str) -> ckptcheck::diagnosis::CheckReport {
    let fixture = zoo_loads();
    let case = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["checkpoint_source"] == source && c["model"] == model)
        .unwrap_or_else(|| panic!("no case {source} -> {model}"));
    let checkpoint =
        load_case::checkpoint_of("model.safetensors", &case["checkpoint"], str::to_string);
    let built = build(&fixture["configs"][model]);
    ckptcheck::diagnosis::check(&checkpoint, &built, ckptcheck::loader::Loader::Hf)
}

/// The classic multimodal failure, a LLaVA loaded with another vision
/// tower's config, is explained in config terms under `--loader hf`, the
/// field named as the path to edit.
#[test]
fn a_llava_into_another_vision_width_is_explained_by_the_field() {
    let report = hf_report(
        "llava/LlavaForConditionalGeneration",
        "llava-wide-vision/LlavaForConditionalGeneration",
    );
    let causes: Vec<&str> = report.explanation.iter().map(|c| c.text.as_str()).collect();
    assert!(
        causes[0].starts_with("vision_config.hidden_size: checkpoint 32, model 48 — "),
        "{causes:?}"
    );
    let fix = report.fix.expect("a fix");
    assert!(
        fix.summary.contains("vision_config.hidden_size 32 vs 48"),
        "{}",
        fix.summary
    );
}

/// A Mixtral checkpoint as save_pretrained writes it (per-expert
/// `block_sparse_moe.experts.N.w1` keys) is inferred as Mixtral, read as
/// from_pretrained merges it; what rests on an assumed head count is not
/// reported as read from the shapes.
#[test]
fn a_checkpoint_in_the_saved_layout_is_inferred_through_its_conversion() {
    let names = saved_checkpoint_names("mixtral/MixtralForCausalLM");
    assert!(names
        .iter()
        .any(|(n, _)| n.contains("block_sparse_moe.experts.0.w1")));
    let inferred = arch::infer(&names);
    assert_eq!(
        inferred.config["model_type"], "mixtral",
        "{}",
        inferred.config
    );
    let read = |field: &str| {
        inferred
            .fields
            .iter()
            .find(|f| f.field == field)
            .map(|f| f.value.clone())
    };
    assert_eq!(read("intermediate_size"), Some(json!(37)));
    assert_eq!(read("num_local_experts"), Some(json!(4)));
    assert_eq!(read("hidden_size"), Some(json!(32)));
    assert_eq!(read("num_key_value_heads"), None, "{:?}", inferred.fields);
    assert!(
        inferred
            .undetermined
            .iter()
            .any(|u| u.starts_with("num_key_value_heads")),
        "{:?}",
        inferred.undetermined
    );
}

/// A list of two kinds of layer: DeepSeek-V3's first
/// `first_k_dense_replace` layers have a dense MLP and the rest experts
/// (transformers: `layer_idx >= first_k_dense_replace` has experts), so an
/// index past the last layer leaves every layer dense.
#[test]
fn a_list_of_two_kinds_changes_kind_where_the_config_says() {
    let kinds = |first_k_dense_replace: u64| -> String {
        let config = json!({
            "model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"],
            "vocab_size": 99, "hidden_size": 32, "intermediate_size": 37,
            "moe_intermediate_size": 16, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 4, "n_routed_experts": 8, "n_shared_experts": 1,
            "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1, "q_lora_rank": 16,
            "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
            "first_k_dense_replace": first_k_dense_replace,
        });
        let model = build(&config);
        let has = |key: String| model.tensors.iter().any(|t| t.name == key);
        (0..4)
            .map(|layer| {
                let dense = has(format!("model.layers.{layer}.mlp.gate_proj.weight"));
                let experts = has(format!("model.layers.{layer}.mlp.experts.gate_up_proj"));
                match (dense, experts) {
                    (true, false) => 'D',
                    (false, true) => 'E',
                    _ => '?',
                }
            })
            .collect()
    };
    for (first_k_dense_replace, want) in [(0, "EEEE"), (1, "DEEE"), (3, "DDDE"), (9, "DDDD")] {
        assert_eq!(
            kinds(first_k_dense_replace),
            want,
            "first_k_dense_replace {first_k_dense_replace}"
        );
    }
}

/// The split index is read back from a checkpoint: a Moonlight-style
/// DeepSeek-V3 (one dense layer, then experts) as save_pretrained writes it
/// (per-expert keys) infers `first_k_dense_replace` 1 and rebuilds the
/// model the library loads it into; one with two dense layers infers 2.
#[test]
fn a_split_index_is_inferred_from_the_first_layer_of_the_second_kind() {
    for (source, want) in [
        ("deepseek_v3/DeepseekV3ForCausalLM", 1),
        ("deepseek_v3-2dense/DeepseekV3ForCausalLM", 2),
    ] {
        let names = saved_checkpoint_names(source);
        let inferred = arch::infer(&names);
        assert_eq!(
            inferred.config["model_type"], "deepseek_v3",
            "{}",
            inferred.config
        );
        let read = inferred
            .fields
            .iter()
            .find(|f| f.field == "first_k_dense_replace")
            .map(|f| f.value.clone());
        assert_eq!(read, Some(json!(want)), "{source}: {:?}", inferred.fields);
        assert_eq!(
            inferred.config["num_hidden_layers"], 3,
            "{}",
            inferred.config
        );
    }
}

/// A Moonlight-style checkpoint (one dense layer) loaded with DeepSeek-V3's
/// own split (two dense layers here) is explained by the field: transformers
/// reports layer 1's dense MLP missing and its experts unexpected.
#[test]
fn a_checkpoint_with_another_split_index_is_explained_by_the_field() {
    let report = hf_report(
        "deepseek_v3/DeepseekV3ForCausalLM",
        "deepseek_v3-2dense/DeepseekV3ForCausalLM",
    );
    let causes: Vec<&str> = report.explanation.iter().map(|c| c.text.as_str()).collect();
    assert!(
        causes[0].starts_with("first_k_dense_replace: checkpoint 1, model 2"),
        "{causes:?}"
    );
}

/// GLM-MoE-DSA's config saves the split twice: `first_k_dense_replace` and
/// the list it derives (`mlp_layer_types`, with `layer_types` and
/// `indexer_types`). A config.json without the lists (hand-written, or from
/// before transformers saved them) builds the model the field gives, as
/// transformers builds it: ckptcheck's reports on the real loads of
/// tests/fixtures/zoo/loads.json (one dense layer saved, loaded into one
/// and into two) are the same with the lists left out. The description was
/// derived with the lists left out; with them pinned, the field changed
/// nothing and every such config got the default's three dense layers.
#[test]
fn a_config_without_the_lists_its_fields_derive_builds_the_model_the_fields_give() {
    use ckptcheck::diagnosis::check;
    use ckptcheck::loader::Loader;
    let fixture = zoo_loads();
    let cases: Vec<&Value> = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["checkpoint_source"] == "glm_moe_dsa/GlmMoeDsaForCausalLM")
        .collect();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let label = format!(
            "{} -> {} without lists",
            case["checkpoint_source"], case["model"]
        );
        let saved = &fixture["configs"][case["model"].as_str().unwrap()];
        assert!(saved.get("mlp_layer_types").is_some(), "{label}: {saved}");
        let mut without_lists = saved.clone();
        for list in ["mlp_layer_types", "layer_types", "indexer_types"] {
            without_lists.as_object_mut().unwrap().remove(list);
        }
        let (with, without) = (build(saved), build(&without_lists));
        let listing = |model: &ModelSpec| -> Vec<(String, Vec<u64>)> {
            model
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone()))
                .collect()
        };
        assert_eq!(listing(&with), listing(&without), "{label}");
        let checkpoint =
            load_case::checkpoint_of("model.safetensors", &case["checkpoint"], str::to_string);
        let report = check(&checkpoint, &without, Loader::Hf);
        load_case::assert_same_keys(&report, case, &label);
        let strict = check(&checkpoint, &without, Loader::Strict);
        assert_eq!(
            strict.pytorch_error.as_deref(),
            case["strict_error"].as_str(),
            "{label} (strict)"
        );
    }
}

/// transformers builds from a given list, not from the field it follows:
/// a config.json whose `mlp_layer_types` disagrees with its
/// `first_k_dense_replace` (hand-edited) builds a model ckptcheck's
/// description does not, so it is refused, naming both.
#[test]
fn a_list_of_layer_names_that_disagrees_with_its_field_is_refused() {
    let fixture = zoo_loads();
    let mut config = fixture["configs"]["glm_moe_dsa/GlmMoeDsaForCausalLM"].clone();
    assert_eq!(
        config["mlp_layer_types"],
        json!(["dense", "sparse", "sparse"])
    );
    config["first_k_dense_replace"] = json!(2);
    let refused = read(&config).expect_err("a list that disagrees with its field");
    assert_eq!(refused.kind, ckptcheck::ErrorKind::BadConfig);
    assert!(
        refused
            .message
            .contains(r#""mlp_layer_types" = ["dense","sparse","sparse"]"#)
            && refused
                .message
                .contains("num_hidden_layers = 3, first_k_dense_replace = 2")
            && refused.message.contains(r#"(["dense","dense","sparse"])"#),
        "{}",
        refused.message
    );
    config["mlp_layer_types"] = json!(["dense", "dense", "sparse"]);
    build(&config);
    // A layer count only the config sets is not a list ckptcheck builds.
    config["num_hidden_layers"] = json!(1_000_000_000_000u64);
    let refused = read(&config).expect_err("a list of 3 for a trillion layers");
    assert_eq!(refused.kind, ckptcheck::ErrorKind::BadConfig);
    assert!(
        refused
            .message
            .contains("has 3 entries where num_hidden_layers = 1000000000000"),
        "{}",
        refused.message
    );
}

/// A composite around another sub-model than its default, from its tensors
/// alone: each sub-model sample of the matrix (a LLaVA around Mistral,
/// Qwen2, Gemma; a SigLIP tower), built as transformers builds it (checked
/// above), is inferred as a config whose model has exactly those tensors,
/// its swapped sub-config naming a type that builds them.
#[test]
fn a_composite_around_another_sub_model_is_inferred_with_that_sub_model() {
    let matrix = matrix();
    let mut checked = 0;
    let mut named = 0;
    let mut alike = 0;
    let mut failures = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in matrix["classes"].as_array().unwrap() {
        let model_type = entry["model_type"].as_str().unwrap();
        let class = entry["class"].as_str().unwrap();
        for variation in entry["variations"].as_array().unwrap() {
            let Some(swap) = variation["sub_model"].as_str() else {
                continue;
            };
            // One sample per composite class and swapped type.
            if !seen.insert((model_type, class, swap)) {
                continue;
            }
            let (sub_config, swapped_type) = swap.split_once('=').unwrap();
            let config = config_for(model_type, class, &variation["config"]);
            let names = names_of(&build(&config));
            checked += 1;
            let inferred = arch::infer(&names);
            if let Some(wrong) = rebuilt_differs(&inferred, names) {
                failures.push(format!("{model_type}/{class} {swap}: {wrong}"));
                continue;
            }
            // Where another type builds the very same tensors (a Mistral
            // LLaVA is LLaMA's tensors), the inference names one and says
            // the other fits equally.
            let quoted = format!("{swapped_type:?}");
            let said_alike = inferred.undetermined.iter().any(|line| {
                line.starts_with(&format!("{sub_config}.model_type: the tensors under "))
                    && line.contains(&quoted)
            });
            if inferred.config[sub_config]["model_type"] == swapped_type {
                named += 1;
            } else if said_alike {
                alike += 1;
            } else {
                failures.push(format!(
                    "{model_type}/{class} {swap}: inferred {} with no word of {swapped_type}: {:?}",
                    inferred.config[sub_config]["model_type"], inferred.undetermined
                ));
            }
        }
    }
    eprintln!(
        "{checked} composites around another sub-model: {named} naming the very type, {alike} another that builds the same tensors and it as alike, {} otherwise",
        failures.len()
    );
    assert!(checked >= 500, "{checked} checked");
    assert_none_failed(checked, &failures);
}

/// The real files save_pretrained wrote (make_zoo_loads.py) for LLaVA
/// around Qwen2, and with a SigLIP tower too, are inferred with those
/// sub-models from their tensors alone, and the inferred config builds the
/// model they load into with nothing missing, unexpected or mismatched. A
/// LLaVA around Mistral holds exactly LLaMA's tensors: the inference names
/// one and says the other fits equally, rather than claim to have read it.
#[test]
fn a_saved_composite_is_inferred_with_the_sub_models_it_holds() {
    for (source, text, vision) in [
        (
            "llava-qwen2/LlavaForConditionalGeneration",
            "qwen2",
            "clip_vision_model",
        ),
        (
            "llava-qwen2-siglip/LlavaForConditionalGeneration",
            "qwen2",
            "siglip_vision_model",
        ),
    ] {
        let names = saved_checkpoint_names(source);
        let inferred = arch::infer(&names);
        let config = &inferred.config;
        assert_eq!(config["model_type"], "llava", "{source}: {config}");
        assert_eq!(
            config["text_config"]["model_type"], text,
            "{source}: {config}"
        );
        assert_eq!(
            config["vision_config"]["model_type"], vision,
            "{source}: {config}"
        );
        let read = inferred.field("text_config.model_type");
        assert_eq!(read, Some(&json!(text)), "{source}: {:?}", inferred.fields);
        assert_eq!(
            inferred.field("text_config.intermediate_size"),
            Some(&json!(37)),
            "{source}: {:?}",
            inferred.fields
        );
        assert_loads_exactly(source, config);
    }
    // The same SigLIP tower saved without its pooling head (as
    // llava-interleave's `vision_use_head: false`): the flag is read off
    // the keys it adds being absent.
    let source = "llava-qwen2-siglip/LlavaForConditionalGeneration";
    let case = saved_case(source);
    let headless: Vec<Value> = case["checkpoint"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t[0].as_str().unwrap().starts_with("vision_tower.head."))
        .cloned()
        .collect();
    let headless = Value::Array(headless);
    let inferred = arch::infer(&load_case::names_and_shapes(&headless));
    assert_eq!(
        inferred.config["vision_config"]["vision_use_head"],
        json!(false),
        "{}",
        inferred.config
    );
    assert!(
        inferred
            .fields
            .iter()
            .any(|f| f.field == "vision_config.vision_use_head"
                && f.evidence.starts_with("no key it adds is present (`head.")),
        "{:?}",
        inferred.fields
    );
    assert_tensors_load_exactly("headless SigLIP", &headless, &inferred.config);
    let names = saved_checkpoint_names("llava-mistral/LlavaForConditionalGeneration");
    let inferred = arch::infer(&names);
    let named = inferred.config["text_config"]["model_type"]
        .as_str()
        .unwrap();
    assert!(["llama", "mistral"].contains(&named), "{}", inferred.config);
    let other = if named == "llama" { "mistral" } else { "llama" };
    assert!(
        inferred.undetermined.iter().any(|line| line
            .starts_with("text_config.model_type: the tensors under `model.language_model` fit ")
            && line.contains(&format!("{other:?}"))),
        "{:?}",
        inferred.undetermined
    );
}

/// Qwen3-Next builds layer `i` as `layer_types[i]` names it: a Gated
/// DeltaNet layer (`linear_attn`) or a full-attention one (`self_attn`).
/// A config.json that gives the list is built from it at any depth; one
/// transformers refuses (a list as long as no layer count) or one
/// ckptcheck cannot follow (a list left out that the config class would
/// derive from another depth, a kind the class has no layers of, an older
/// key converted into the list) is refused naming the list.
#[test]
fn layers_a_list_chooses_are_built_as_the_list_says() {
    let model = build(&json!({"model_type": "qwen3_next", "num_hidden_layers": 3,
        "layer_types": ["full_attention", "linear_attention", "linear_attention"]}));
    let layer_keys = |index: usize| -> Vec<&str> {
        let prefix = format!("layers.{index}.");
        model
            .tensors
            .iter()
            .filter_map(|t| t.name.strip_prefix(&prefix))
            .collect()
    };
    assert!(layer_keys(0).contains(&"self_attn.q_proj.weight"));
    assert!(!layer_keys(0).iter().any(|k| k.starts_with("linear_attn.")));
    for index in [1, 2] {
        assert!(layer_keys(index).contains(&"linear_attn.in_proj_qkvz.weight"));
        assert!(!layer_keys(index)
            .iter()
            .any(|k| k.starts_with("self_attn.")));
    }
    assert!(layer_keys(3).is_empty());
    let attention = model
        .tensors
        .iter()
        .find(|t| t.name == "layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert!(
        attention.exists_if.contains(&"layer_types"),
        "{attention:?}"
    );
    // Nemotron-H's list under the name its `attribute_map` gives it.
    let nemotron = build(&json!({"model_type": "nemotron_h",
        "layer_types": ["linear_attention", "full_attention"]}));
    assert!(nemotron
        .tensors
        .iter()
        .any(|t| t.name == "layers.0.mixer.A_log"));
    assert!(nemotron
        .tensors
        .iter()
        .any(|t| t.name.starts_with("layers.1.mixer.q_proj")));
    assert!(!nemotron
        .tensors
        .iter()
        .any(|t| t.name.starts_with("layers.2.")));
    let kimi = build(&json!({"model_type": "kimi_linear", "num_hidden_layers": 3,
        "mlp_layer_types": ["dense", "sparse", "sparse"],
        "layer_types": ["linear_attention", "full_attention", "linear_attention"]}));
    let kimi_keys = |index: usize| -> Vec<&str> {
        let prefix = format!("layers.{index}.");
        kimi.tensors
            .iter()
            .filter_map(|t| t.name.strip_prefix(&prefix))
            .collect()
    };
    // Layer 0: Kimi Delta Attention (its forget gate) with a dense MLP;
    // layer 1: MLA attention with experts; layer 2: the delta attention
    // with experts, a pairing only the two lists together give.
    let has = |index: usize, start: &str| kimi_keys(index).iter().any(|k| k.starts_with(start));
    assert!(has(0, "self_attn.forget_gate") && has(0, "mlp.gate_proj"));
    assert!(!has(0, "self_attn.kv_b_proj") && !has(0, "mlp.experts"));
    assert!(has(1, "self_attn.kv_b_proj") && has(1, "mlp.experts"));
    assert!(!has(1, "self_attn.forget_gate") && !has(1, "mlp.gate_proj"));
    assert!(has(2, "self_attn.forget_gate") && has(2, "mlp.experts"));
    let refused = [
        (
            json!({"model_type": "qwen3_next", "num_hidden_layers": 64}),
            "leaves out \"layer_types\", which the config class derives from \"num_hidden_layers\" = 64 (default 48)",
        ),
        (
            json!({"model_type": "qwen3_next", "num_hidden_layers": 3,
                "layer_types": ["full_attention", "linear_attention"]}),
            "\"layer_types\" has 2 entries and \"num_hidden_layers\" is 3",
        ),
        (
            json!({"model_type": "qwen3_next", "num_hidden_layers": 2,
                "layer_types": ["full_attention", "sliding_attention"]}),
            "\"layer_types\" makes layer 1 \"sliding_attention\"",
        ),
        // Kimi Linear's layers are chosen by two lists together; its
        // default has no dense full-attention layer to describe.
        (
            json!({"model_type": "kimi_linear", "num_hidden_layers": 2,
                "mlp_layer_types": ["dense", "dense"],
                "layer_types": ["linear_attention", "full_attention"]}),
            "config fields mlp_layer_types and layer_types make layer 1 \"dense with full_attention\"",
        ),
        (
            json!({"model_type": "nemotron_h", "hybrid_override_pattern": "M-M*"}),
            "gives \"hybrid_override_pattern\", which the config class turns into \"layers_block_type\"",
        ),
    ];
    for (config, needle) in refused {
        let error = read(&config).expect_err(needle);
        assert_eq!(error.kind, ErrorKind::BadConfig, "{config}: {error}");
        assert!(error.message.contains(needle), "{config}: {error}");
    }
}

/// Checkpoints save_pretrained wrote (make_zoo_loads.py) of Qwen3-Next at
/// 5 layers in an order of its own and of Nemotron-H with a layer of each
/// of its four kinds: inference reads each layer's kind off its keys, and
/// the config it writes, list included, loads the file exactly.
#[test]
fn saved_models_whose_layers_a_list_chooses_are_inferred_with_the_list() {
    for (source, list, names) in [
        (
            "qwen3_next/Qwen3NextForCausalLM",
            "layer_types",
            json!([
                "linear_attention",
                "full_attention",
                "linear_attention",
                "linear_attention",
                "full_attention"
            ]),
        ),
        (
            "nemotron_h/NemotronHForCausalLM",
            "layers_block_type",
            json!([
                "linear_attention",
                "mlp",
                "full_attention",
                "moe",
                "linear_attention"
            ]),
        ),
    ] {
        let inferred = arch::infer(&saved_checkpoint_names(source));
        let config = &inferred.config;
        assert_eq!(
            config["architectures"][0],
            source.split('/').nth(1).unwrap()
        );
        assert_eq!(config[list], names, "{source}: {config}");
        let read = inferred.fields.iter().find(|f| f.field == list);
        let evidence = &read.unwrap_or_else(|| panic!("{source}: {list}")).evidence;
        assert!(evidence.contains("layers under"), "{evidence}");
        assert_loads_exactly(source, config);
    }
}

/// Qwen3-MoE's and GLM-4.5's config classes do not declare `head_dim`, yet
/// their modeling code reads `getattr(config, "head_dim", hidden_size //
/// num_attention_heads)`: Qwen3-30B-A3B's config.json (2048 wide, 32 heads,
/// `head_dim` 128) builds `q_proj` 4096 wide in transformers, GLM-4.5's
/// (5120 wide, 96 heads, 128) 12288, GLM-4.5V's text model (4096 wide,
/// 96 heads, 128) 12288 where `hidden_size // num_attention_heads` would
/// give 4032. generate.py varies such a size like a declared field, in a
/// composite's sub-config too, its getattr default as its default, so these
/// configs build what transformers builds, and one that leaves it out
/// builds the default's sizes.
#[test]
fn sizes_the_modeling_code_reads_that_the_config_class_does_not_declare_build_as_in_transformers() {
    for (config, q_proj, k_proj, o_proj) in [
        (
            json!({"model_type": "qwen3_moe", "hidden_size": 2048, "num_attention_heads": 32,
                "num_key_value_heads": 4, "head_dim": 128, "num_hidden_layers": 1}),
            [4096, 2048],
            [512, 2048],
            [2048, 4096],
        ),
        (
            json!({"model_type": "glm4_moe", "architectures": ["Glm4MoeForCausalLM"],
                "hidden_size": 5120, "num_attention_heads": 96, "num_key_value_heads": 8,
                "head_dim": 128, "num_hidden_layers": 1}),
            [12288, 5120],
            [1024, 5120],
            [5120, 12288],
        ),
        (
            json!({"model_type": "qwen3_moe", "hidden_size": 2048, "num_attention_heads": 32,
                "num_key_value_heads": 4, "num_hidden_layers": 1}),
            [2048, 2048],
            [256, 2048],
            [2048, 2048],
        ),
        // GLM-4.5V: the same read off its `text_config`, whose class does
        // not declare `head_dim` either (4096 wide, 96 heads of 128).
        (
            json!({"model_type": "glm4v_moe", "architectures": ["Glm4vMoeForConditionalGeneration"],
                "text_config": {"hidden_size": 4096, "num_attention_heads": 96,
                    "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 1},
                "vision_config": {"depth": 1}}),
            [12288, 4096],
            [1024, 4096],
            [4096, 12288],
        ),
    ] {
        let model = build(&config);
        let shape = |module: &str| {
            let name = format!("layers.0.self_attn.{module}.weight");
            model
                .tensors
                .iter()
                .find(|t| t.name.ends_with(&name))
                .unwrap_or_else(|| panic!("{config}: no {name}"))
                .shape
                .clone()
        };
        assert_eq!(shape("q_proj"), q_proj, "{config}");
        assert_eq!(shape("k_proj"), k_proj, "{config}");
        assert_eq!(shape("o_proj"), o_proj, "{config}");
    }
}

/// Granite 4.0-H, LFM2 and Cohere2-MoE name each layer's kind in a list
/// whose default holds one kind only (all Mamba, all attention, all
/// sparse): the other kind's layers (Granite's attention, LFM2's short
/// convolutions, Cohere2-MoE's dense MLPs) are derived on their own
/// (kinds.py) and built where the list names them, at any depth. Left out,
/// the list is the default's kind once per layer; LFM2's `full_attn_idxs`,
/// from which its config class derives the list, is refused in its place
/// unless at its default.
#[test]
fn layers_of_a_kind_the_default_lacks_are_built_where_the_list_names_them() {
    for (config, kinds) in [
        (
            json!({"model_type": "granitemoehybrid", "architectures": ["GraniteMoeHybridForCausalLM"],
                "num_hidden_layers": 3, "layer_types": ["mamba", "attention", "mamba"]}),
            ["mamba.A_log", "self_attn.q_proj.weight", "mamba.A_log"],
        ),
        (
            json!({"model_type": "granitemoehybrid", "num_hidden_layers": 3}),
            ["mamba.A_log", "mamba.A_log", "mamba.A_log"],
        ),
        (
            json!({"model_type": "lfm2", "num_hidden_layers": 3, "full_attn_idxs": [1],
                "layer_types": ["conv", "full_attention", "conv"]}),
            [
                "conv.in_proj.weight",
                "self_attn.q_proj.weight",
                "conv.in_proj.weight",
            ],
        ),
        (
            json!({"model_type": "cohere2_moe", "num_hidden_layers": 3,
                "mlp_layer_types": ["dense", "sparse", "sparse"]}),
            [
                "mlp.gate_proj.weight",
                "mlp.experts.down_proj",
                "mlp.experts.down_proj",
            ],
        ),
    ] {
        let model = build(&config);
        let keys = |index: usize| -> Vec<String> {
            let prefix = format!("layers.{index}.");
            model
                .tensors
                .iter()
                .filter_map(|t| Some(t.name.split_once(&prefix)?.1.to_string()))
                .collect()
        };
        for (index, key) in kinds.iter().enumerate() {
            assert!(
                keys(index).iter().any(|k| k == key),
                "{config}: layer {index}: {:?}",
                keys(index)
            );
            for other in kinds.iter().filter(|other| other != &key) {
                assert!(
                    !keys(index).iter().any(|k| k == other),
                    "{config}: layer {index} has {other}"
                );
            }
        }
        assert!(keys(3).is_empty(), "{config}");
    }
    for (config, needle) in [
        (
            json!({"model_type": "lfm2", "num_hidden_layers": 3, "full_attn_idxs": [1]}),
            "leaves out \"layer_types\", which the config class derives from \"full_attn_idxs\"",
        ),
        (
            json!({"model_type": "granitemoehybrid", "num_hidden_layers": 2,
                "layer_types": ["mamba", "indexed_attention"]}),
            "makes layer 1 \"indexed_attention\"",
        ),
        (
            json!({"model_type": "granitemoehybrid", "num_hidden_layers": 3,
                "layer_types": ["mamba", "attention"]}),
            "has 2 entries and \"num_hidden_layers\" is 3",
        ),
    ] {
        let error = read(&config).expect_err(needle);
        assert_eq!(error.kind, ErrorKind::BadConfig, "{config}: {error}");
        assert!(error.message.contains(needle), "{config}: {error}");
    }
}

/// Files save_pretrained wrote from Granite 4.0-H with an attention layer
/// between Mamba ones and from LFM2 with conv layers around an attention
/// one (make_zoo_loads.py): inference reads each layer's kind off its keys
/// and the config it writes, list included, loads the file exactly.
#[test]
fn saved_models_with_layers_of_a_kind_the_default_lacks_are_inferred_with_the_list() {
    for (source, names) in [
        (
            "granitemoehybrid-attention/GraniteMoeHybridForCausalLM",
            json!(["linear_attention", "full_attention", "linear_attention"]),
        ),
        (
            "lfm2/Lfm2ForCausalLM",
            json!(["conv", "full_attention", "conv"]),
        ),
    ] {
        let inferred = arch::infer(&saved_checkpoint_names(source));
        let config = &inferred.config;
        assert_eq!(config["layer_types"], names, "{source}: {config}");
        assert_loads_exactly(source, config);
    }
}

/// Where the derivation with such a size failed or held more fields fixed
/// (DeBERTa-v2's `embedding_size` adds a projection while it differs from
/// `hidden_size`; Qwen3-Omni's thinker ran past its time), the description
/// holds at the getattr default only, and a config that sets another value
/// is refused naming the field, in a sub-config too.
#[test]
fn a_size_still_held_at_its_getattr_default_is_refused_when_set() {
    for (config, needle) in [
        (
            json!({"model_type": "deberta-v2", "hidden_size": 768, "num_attention_heads": 12,
                "embedding_size": 128}),
            "\"embedding_size\" = 128: DebertaV2",
        ),
        (
            json!({"model_type": "qwen3_omni_moe_thinker",
                "architectures": ["Qwen3OmniMoeThinkerForConditionalGeneration"],
                "text_config": {"hidden_size": 2048, "num_attention_heads": 32,
                    "num_key_value_heads": 4, "head_dim": 128}}),
            "\"text_config.head_dim\" = 128: Qwen3OmniMoeThinkerForConditionalGeneration's modeling code reads it (default text_config.hidden_size//text_config.num_attention_heads = 64)",
        ),
    ] {
        let error = read(&config).expect_err(needle);
        assert_eq!(error.kind, ErrorKind::BadConfig, "{config}: {error}");
        assert!(error.message.contains(needle), "{config}: {error}");
    }
    let model = build(&json!({"model_type": "deberta-v2", "hidden_size": 768,
        "num_attention_heads": 12, "embedding_size": 768, "num_hidden_layers": 1}));
    assert!(!model.tensors.iter().any(|t| t.name.contains("embed_proj")));
}

/// Fields the derivation never varies, tried again at other values
/// (unvaried_fields.py): LFM2 builds its feed-forward `int(2 *
/// intermediate_size / 3)` wide, times `block_ffn_dim_multiplier`, rounded
/// up to a multiple of `block_multiple_of` (256), so a multiple of 257
/// makes 8224 rows of 8192 and a multiplier of 1.5 half as many again;
/// Swin's `mlp_ratio` sizes every block's `fc1`; ALIGN's EfficientNet
/// scales its widths by `width_coefficient`; BEiT has its layer-scale
/// parameters only while `layer_scale_init_value` is above 0. Each such config is refused
/// naming the field, never answered with the default's shapes.
#[test]
fn fields_the_derivation_does_not_vary_are_refused_where_they_change_tensors() {
    for (config, needle) in [
        (
            json!({"model_type": "lfm2", "block_multiple_of": 257}),
            "\"block_multiple_of\" = 257 differs from lfm2's default 256",
        ),
        (
            json!({"model_type": "lfm2", "block_ffn_dim_multiplier": 1.5}),
            "\"block_ffn_dim_multiplier\" = 1.5 differs from lfm2's default 1.0",
        ),
        (
            json!({"model_type": "swin", "mlp_ratio": 2.0}),
            "\"mlp_ratio\" = 2.0 differs from swin's default 4.0",
        ),
        (
            json!({"model_type": "align", "vision_config": {"width_coefficient": 1.0}}),
            "\"vision_config.width_coefficient\" = 1.0 differs from align's default 2.0",
        ),
        // BEiT's layer scale is dropped at 0 only (refused there; 1e-5
        // builds it: a_float_that_matters_at_zero_only_is_free_elsewhere).
        (
            json!({"model_type": "beit", "layer_scale_init_value": 0.0}),
            "\"layer_scale_init_value\" = 0: transformers then builds other tensors for BeitModel",
        ),
    ] {
        let error = read(&config).expect_err(needle);
        assert_eq!(error.kind, ErrorKind::BadConfig, "{config}: {error}");
        assert!(error.message.contains(needle), "{config}: {error}");
    }
    let swin = build(&json!({"model_type": "swin", "mlp_ratio": 4}));
    assert!(swin.tensors.iter().any(
        |t| t.name.ends_with("mlp.fc1.weight") || t.name.ends_with("intermediate.dense.weight")
    ));
}

/// A size the library rounds where the description divides it
/// (rounded_sizes.py): LFM2's feed-forward is `int(2 * intermediate_size /
/// 3)` rounded up to a multiple of 256, which every value the derivation
/// drew (multiples of 384) left as it was. The description now rounds as
/// the library does: 48 gives 256 rows (`2*intermediate_size/3` gave 32),
/// the released LFM2-350M's 6656 gives 4608 (refused before, 4437⅓ being
/// no size) and LFM2-2.6B's 10752 gives 7168.
#[test]
fn sizes_the_library_rounds_are_rounded_as_it_rounds_them() {
    for (intermediate_size, hidden_size, rows) in [
        (48, 64, 256),
        (49, 64, 256),
        (6656, 1024, 4608),
        (10752, 2048, 7168),
        (12288, 2048, 8192),
    ] {
        let model = build(&json!({"model_type": "lfm2", "hidden_size": hidden_size,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 1,
            "layer_types": ["full_attention"], "full_attn_idxs": [0],
            "intermediate_size": intermediate_size, "block_multiple_of": 256,
            "block_ffn_dim_multiplier": 1.0}));
        let w1 = model
            .tensors
            .iter()
            .find(|t| t.name.ends_with("layers.0.feed_forward.w1.weight"))
            .expect("w1");
        assert_eq!(w1.shape, vec![rows, hidden_size], "{intermediate_size}");
    }
    // Where no rounding matches, a head count the description holds at
    // whenever it divides the width: ELECTRA 258 wide with 4 heads builds
    // 256-wide projections (the head size floored), never 258.
    let electra = json!({"model_type": "electra", "hidden_size": 258,
        "num_attention_heads": 4, "num_hidden_layers": 1});
    let error = read(&electra).expect_err("electra 258 wide");
    assert!(
        error
            .message
            .contains("\"hidden_size\" = 258 is not a multiple of \"num_attention_heads\" = 4"),
        "{error}"
    );
    build(&json!({"model_type": "electra", "hidden_size": 260,
        "num_attention_heads": 4, "num_hidden_layers": 1}));
    // Mixtral's head size is a field whose default is that floor
    // (`hidden_size//num_attention_heads`, null in config.json): 4100 wide
    // with 32 heads builds the 4096-wide projections transformers builds.
    let mixtral = json!({"model_type": "mixtral", "hidden_size": 4100,
        "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 1});
    assert_eq!(
        built_shape(&mixtral, "layers.0.self_attn.q_proj.weight"),
        [4096, 4100]
    );
    // SegGPT's relative positions are `2 * (image_size // patch_size) - 1`
    // rows: 904 over patches of 16 floors, so the pair is refused; and,
    // where no rule follows the flooring, ConvBERT's token-classification
    // head holds at multiples of 16 only.
    for (config, needle) in [
        (
            json!({"model_type": "seggpt", "architectures": ["SegGptModel"],
                "image_size": [904, 448], "patch_size": 16}),
            "\"image_size.0\" = 904 is not a multiple of \"patch_size\" = 16",
        ),
        (
            json!({"model_type": "convbert", "architectures": ["ConvBertForTokenClassification"],
                "hidden_size": 780, "num_attention_heads": 12}),
            "\"hidden_size\" = 780 is not a multiple of 16: transformers builds other shapes off these multiples",
        ),
    ] {
        let error = read(&config).expect_err(needle);
        assert!(error.message.contains(needle), "{config}: {error}");
    }
    build(
        &json!({"model_type": "convbert", "architectures": ["ConvBertForTokenClassification"],
        "hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 1}),
    );
}

/// Keys a config class takes under an older name (config_renames.py):
/// Lfm2Config pops `block_ff_dim` into `intermediate_size` and
/// `tie_embedding` into `tie_word_embeddings`, the older key winning, so a
/// config.json in that layout builds the width it gives (6656 rounds to
/// 4608 rows), not the default 12288's 8192, and ties as it says.
#[test]
fn keys_under_an_older_name_are_read_as_the_config_class_reads_them() {
    let w1_rows = |config: Value| -> u64 {
        let model = build(&config);
        model
            .tensors
            .iter()
            .find(|t| t.name.ends_with("layers.0.feed_forward.w1.weight"))
            .map_or(0, |t| t.shape[0])
    };
    let lfm2 = |extra: Value| {
        let mut config = json!({"model_type": "lfm2", "hidden_size": 1024,
            "num_attention_heads": 16, "num_key_value_heads": 8, "num_hidden_layers": 1,
            "layer_types": ["conv"], "full_attn_idxs": []});
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    };
    assert_eq!(w1_rows(lfm2(json!({"block_ff_dim": 6656}))), 4608);
    assert_eq!(
        w1_rows(lfm2(
            json!({"block_ff_dim": 6656, "intermediate_size": 12288})
        )),
        4608
    );
    assert_eq!(w1_rows(lfm2(json!({}))), 8192);
    let tied = |extra: Value| {
        let mut config = lfm2(extra);
        config["architectures"] = json!(["Lfm2ForCausalLM"]);
        build(&config).tied_keys
    };
    assert!(!tied(json!({})).is_empty());
    assert!(tied(json!({"tie_embedding": false})).is_empty());
}

/// Config classes whose own default transformers cannot build (null
/// `head_dim`, `vocab_size`, `num_key_value_heads`): the generator derived
/// them with the fewest fields filled in (required.py), and the
/// description requires those of a config.json, as the library does,
/// rather than build them at the value the derivation chose.
#[test]
fn fields_the_config_class_leaves_without_a_default_are_required() {
    let cases = [
        (json!({"model_type": "ministral"}), "head_dim"),
        (
            json!({"model_type": "esm", "architectures": ["EsmForMaskedLM"]}),
            "vocab_size",
        ),
        (
            json!({"model_type": "nemotron", "num_key_value_heads": null}),
            "num_key_value_heads",
        ),
    ];
    for (config, field) in cases {
        let error = read(&config).expect_err(field);
        assert_eq!(error.kind, ErrorKind::BadConfig, "{config}: {error}");
        assert!(
            error.message.contains(&format!("{field:?} is missing"))
                && error.message.contains("no default"),
            "{config}: {error}"
        );
    }
    let shape = |config: &Value, suffix: &str| -> Vec<u64> {
        let model = build(config);
        let tensor = model.tensors.iter().find(|t| t.name.ends_with(suffix));
        tensor.map_or_else(Vec::new, |t| t.shape.clone())
    };
    // Ministral-8B's attention: 32 heads and 8 key-value heads of 128.
    let ministral = json!({"model_type": "ministral", "hidden_size": 4096,
        "intermediate_size": 12288, "num_hidden_layers": 1, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072});
    assert_eq!(
        shape(&ministral, "layers.0.self_attn.k_proj.weight"),
        [1024, 4096]
    );
    assert_eq!(
        shape(&ministral, "layers.0.self_attn.o_proj.weight"),
        [4096, 4096]
    );
    // ESM-2 8M: 33 tokens, 320 wide, rotary positions.
    let esm = json!({"model_type": "esm", "architectures": ["EsmForMaskedLM"],
        "vocab_size": 33, "hidden_size": 320, "num_hidden_layers": 6,
        "num_attention_heads": 20, "intermediate_size": 1280,
        "position_embedding_type": "rotary"});
    assert_eq!(shape(&esm, "embeddings.word_embeddings.weight"), [33, 320]);
    assert_eq!(
        shape(&esm, "layer.5.intermediate.dense.weight"),
        [1280, 320]
    );
    // DBRX's attention config has no `rope_theta`, which no tensor shows:
    // inference writes the value the description was derived at and says
    // to set the released one, and that config rebuilds the tensors.
    let dbrx = json!({"model_type": "dbrx", "architectures": ["DbrxForCausalLM"],
        "d_model": 256, "n_heads": 4, "n_layers": 2, "vocab_size": 1000,
        "attn_config": {"kv_n_heads": 2, "rope_theta": 500000},
        "ffn_config": {"ffn_hidden_size": 512, "moe_num_experts": 4}});
    let names = names_of(&build(&dbrx));
    let inferred = arch::infer(&names);
    assert_eq!(inferred.config["model_type"], "dbrx", "{}", inferred.config);
    assert_eq!(
        inferred.config["attn_config"]["rope_theta"], 8,
        "{}",
        inferred.config
    );
    assert!(
        inferred
            .undetermined
            .iter()
            .any(|line| line.starts_with("attn_config.rope_theta: ")
                && line.ends_with("set the released one")),
        "{:?}",
        inferred.undetermined
    );
    assert_eq!(rebuilt_differs(&inferred, names), None);
}

/// A file save_pretrained wrote from an LFM2 with `intermediate_size` 49
/// (make_zoo_loads.py: 256 rows, as 384 gives): inference says which values
/// give that width (2 to 385), takes 384, at which the rounding does
/// nothing, as a config.json would write it, and the config it writes
/// loads the file exactly. The range is the fact reported: a model at any
/// value in it loads the file, one past it is told the range.
#[test]
fn a_saved_model_with_a_rounded_size_is_inferred_with_a_value_that_rounds_the_same() {
    let source = "lfm2-rounded/Lfm2ForCausalLM";
    let inferred = arch::infer(&saved_checkpoint_names(source));
    let config = &inferred.config;
    assert_eq!(config["model_type"], "lfm2", "{config}");
    let taken = config["intermediate_size"].as_u64().unwrap_or(0);
    assert_eq!(taken, 384, "{config}");
    assert!(
        inferred.undetermined.iter().any(|line| line
            .contains("intermediate_size: any of 2 to 385 gives these shapes")
            && line.ends_with("384, at which the rounding does nothing, is taken")),
        "{:?}",
        inferred.undetermined
    );
    let read = field_in(&inferred.fields, "intermediate_size");
    assert_eq!((read.range, &read.value), (Some([2, 385]), &json!(384)));
    assert_loads_exactly(source, config);
    let checkpoint = saved_checkpoint(source);
    for (value, cause) in [
        (2, None),
        (385, None),
        (
            386,
            Some("intermediate_size: checkpoint 2 to 385, model 386 — "),
        ),
    ] {
        let mut model = config.clone();
        model["intermediate_size"] = json!(value);
        let report =
            ckptcheck::diagnosis::check(&checkpoint, &build(&model), ckptcheck::loader::Loader::Hf);
        let first = report.explanation.first().map(|c| c.text.as_str());
        assert_eq!(
            report.size_mismatches.is_empty(),
            cause.is_none(),
            "{value}: {first:?}"
        );
        if let Some(cause) = cause {
            assert!(
                first.is_some_and(|t| t.starts_with(cause)),
                "{value}: {first:?}"
            );
        }
    }
}

/// Files save_pretrained wrote from a Qwen3-MoE and a GLM-4.5 with
/// `head_dim` twice `hidden_size / num_attention_heads`
/// (make_zoo_loads.py): inference names their own model type (GLM-4.5's
/// was taken for `sarvam_moe`, whose config declares `head_dim`), writes
/// heads of the width the projections have (Qwen3-MoE's `q_norm` pins
/// `head_dim` at 16; GLM-4.5's shapes give only the product, 64), and the
/// config it writes loads the file exactly.
#[test]
fn saved_models_with_an_undeclared_head_size_are_inferred_with_it() {
    for (source, model_type, head_dim) in [
        (
            "qwen3_moe-head_dim/Qwen3MoeForCausalLM",
            "qwen3_moe",
            Some(16),
        ),
        ("glm4_moe-head_dim/Glm4MoeForCausalLM", "glm4_moe", None),
    ] {
        let inferred = arch::infer(&saved_checkpoint_names(source));
        let config = &inferred.config;
        assert_eq!(config["model_type"], model_type, "{source}: {config}");
        let heads = config["num_attention_heads"].as_u64().unwrap_or(0);
        let width = config["head_dim"].as_u64().unwrap_or(0);
        assert_eq!(heads * width, 64, "{source}: {config}");
        if let Some(head_dim) = head_dim {
            assert_eq!(width, head_dim, "{source}: {config}");
        }
        assert_loads_exactly(source, config);
    }
}

/// SAM's ViT attends globally in the layers `global_attn_indexes` lists
/// and in windows elsewhere (index_kinds.py): a global layer's relative
/// positions span the patch grid (`2*image_size/patch_size - 1` rows), a
/// windowed one's the window (`2*window_size - 1`). A config.json's list
/// builds each layer as transformers does, an index past the last layer
/// choosing none, and a list of anything but layer indexes is refused
/// naming the field.
#[test]
fn layers_an_index_list_chooses_are_built_as_the_list_says() {
    let config = |indexes: Value| {
        json!({"model_type": "sam", "architectures": ["SamModel"], "vision_config": {
            "num_hidden_layers": 6, "image_size": 256, "patch_size": 16, "window_size": 4,
            "global_attn_indexes": indexes}})
    };
    for (indexes, global_layers) in [
        (json!([1, 4]), vec![1, 4]),
        (json!([0, 5, 9]), vec![0, 5]),
        (json!([]), vec![]),
    ] {
        let model = build(&config(indexes.clone()));
        for layer in 0..6 {
            let key = format!("vision_encoder.layers.{layer}.attn.rel_pos_h");
            let tensor = model.tensors.iter().find(|t| t.name == key).expect(&key);
            let rows = if global_layers.contains(&layer) {
                2 * 256 / 16 - 1
            } else {
                2 * 4 - 1
            };
            assert_eq!(tensor.shape[0], rows, "{indexes}: {key}");
        }
    }
    // Left out, the list is the default's: SAM ViT-B's [2, 5, 8, 11].
    let default = build(&json!({"model_type": "sam", "architectures": ["SamModel"]}));
    let rows: Vec<u64> = (0..12)
        .map(|layer| {
            let key = format!("vision_encoder.layers.{layer}.attn.rel_pos_h");
            default
                .tensors
                .iter()
                .find(|t| t.name == key)
                .expect(&key)
                .shape[0]
        })
        .collect();
    assert_eq!(rows, [27, 27, 127, 27, 27, 127, 27, 27, 127, 27, 27, 127]);
    let refused = read(&config(json!(["global", "window"])))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("global_attn_indexes") && refused.contains("layer indexes"),
        "{refused}"
    );
}

/// A saved SAM is inferred with its `global_attn_indexes` read off each
/// layer's shapes (the two kinds of layer have the same keys), whichever
/// kind its first layer is, and loads exactly into the inferred config's
/// model (make_zoo_loads.py saved both).
#[test]
fn saved_models_whose_layers_an_index_list_chooses_are_inferred_with_the_list() {
    for (source, list) in [
        ("sam/SamModel", json!([1, 3])),
        ("sam-first-global/SamModel", json!([0, 2])),
    ] {
        let inferred = arch::infer(&saved_checkpoint_names(source));
        let config = &inferred.config;
        let vision = &config["vision_config"];
        assert_eq!(config["architectures"][0], "SamModel", "{source}: {config}");
        assert_eq!(vision["global_attn_indexes"], list, "{source}: {config}");
        assert_eq!(
            (
                &vision["window_size"],
                &vision["image_size"],
                &vision["num_hidden_layers"]
            ),
            (&json!(2), &json!(64), &json!(4)),
            "{source}: {config}"
        );
        let read = inferred
            .fields
            .iter()
            .find(|f| f.field == "vision_config.global_attn_indexes")
            .unwrap_or_else(|| panic!("{source}: {:?}", inferred.fields));
        assert!(
            read.evidence
                .contains("layers under vision_encoder.layers."),
            "{}",
            read.evidence
        );
        assert_loads_exactly(source, config);
    }
}

/// A SAM whose global layers are 1 and 3 loaded with a config that makes
/// layers 0 and 2 global: every layer's relative positions mismatch, and
/// the diagnosis puts them down to the list, not to the layer count.
#[test]
fn a_checkpoint_with_another_index_list_is_explained_by_the_list() {
    let report = hf_report("sam/SamModel", "sam-first-global/SamModel");
    assert_eq!(
        report.size_mismatches.len(),
        8,
        "{:?}",
        report.size_mismatches
    );
    let causes: Vec<&str> = report.explanation.iter().map(|c| c.text.as_str()).collect();
    assert!(
        causes[0].starts_with("vision_config.global_attn_indexes: checkpoint [1,3], model [0,2]"),
        "{causes:?}"
    );
    assert!(
        !causes.iter().any(|c| c.contains("num_hidden_layers")),
        "{causes:?}"
    );
}

/// The shape of `key` in the model `config` builds.
fn built_shape(config: &Value, key: &str) -> Vec<u64> {
    build(config)
        .tensors
        .iter()
        .find(|t| t.name == key)
        .unwrap_or_else(|| panic!("{config}: no {key}"))
        .shape
        .clone()
}

/// Sizes no sum of products fits, read off the library's own arithmetic
/// (traced.py): Parakeet's subsampling projection takes
/// `subsampling_conv_channels * (num_mel_bins // 2**3)` inputs (80 mel bins
/// in parakeet-tdt-0.6b-v2, 128 in v3), and an audio spectrogram
/// transformer's position table has `((num_mel_bins - patch_size) //
/// frequency_stride + 1) * ((max_length - patch_size) // time_stride + 1) + 2`
/// rows: 1214 for AudioSet's 1024 frames, 602 for the 512 an ESC-50
/// fine-tune uses (the size mismatch people post).
#[test]
fn sizes_the_library_computes_by_floor_division_are_built_from_the_config() {
    let parakeet = |encoder: Value| {
        json!({"model_type": "parakeet_ctc", "architectures": ["ParakeetForCTC"],
               "encoder_config": encoder})
    };
    let projection = "encoder.subsampling.linear.weight";
    for (encoder, inputs) in [
        (json!({}), 256 * 10),
        (json!({"num_mel_bins": 128}), 256 * 16),
        (
            json!({"num_mel_bins": 87, "subsampling_conv_channels": 64}),
            64 * 10,
        ),
        (
            json!({"num_mel_bins": 128, "subsampling_conv_stride": 4}),
            256 * 2,
        ),
    ] {
        assert_eq!(
            built_shape(&parakeet(encoder.clone()), projection),
            [1024, inputs],
            "{encoder}"
        );
    }
    let ast = |fields: Value| {
        let mut config = json!({"model_type": "audio-spectrogram-transformer",
                                "architectures": ["ASTForAudioClassification"]});
        config
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        config
    };
    let positions = "audio_spectrogram_transformer.embeddings.position_embeddings";
    for (fields, rows) in [
        (json!({}), 1214),
        (json!({"max_length": 512}), 602),
        (json!({"max_length": 100, "num_mel_bins": 64}), 5 * 9 + 2),
        (
            json!({"time_stride": 16, "frequency_stride": 16}),
            8 * 64 + 2,
        ),
    ] {
        assert_eq!(
            built_shape(&ast(fields.clone()), positions),
            [1, rows, 768],
            "{fields}"
        );
    }
    // A stride of 0 is a config transformers cannot build either: refused,
    // naming the field, never a size.
    let refused = read(&ast(json!({"time_stride": 0})))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("time_stride is 0"), "{refused}");
}

/// Saved Parakeet models (make_zoo_loads.py) are inferred with the mel
/// bins their subsampling projection determines (the least of the 8 values
/// `//8` maps to its width) and load exactly into the inferred config's
/// model; a Parakeet v3-style file loaded with v2's 80 mel bins has the
/// one size mismatch PyTorch reports, and its inferred config the 128 bins.
#[test]
fn saved_models_with_floor_division_sizes_are_inferred_and_explained() {
    for source in ["parakeet/ParakeetForCTC", "parakeet-128mel/ParakeetForCTC"] {
        let inferred = arch::infer(&saved_checkpoint_names(source));
        assert_loads_exactly(source, &inferred.config);
    }
    let inferred = arch::infer(&saved_checkpoint_names("parakeet-128mel/ParakeetForCTC"));
    assert_eq!(
        inferred.config["encoder_config"]["num_mel_bins"],
        json!(128),
        "{}",
        inferred.config
    );
    let report = hf_report("parakeet-128mel/ParakeetForCTC", "parakeet/ParakeetForCTC");
    let mismatches: Vec<(&str, &[u64], &[u64])> = report
        .size_mismatches
        .iter()
        .map(|m| (m.key.as_str(), &m.checkpoint_shape[..], &m.model_shape[..]))
        .collect();
    assert_eq!(
        mismatches,
        [(
            "encoder.subsampling.linear.weight",
            &[32u64, 128][..],
            &[32u64, 80][..]
        )]
    );
    assert_eq!(
        report.inferred.config["encoder_config"]["num_mel_bins"],
        json!(128)
    );
    // The shapes show the mel bins only with the subsampling stride, whose
    // default 2 is assumed: against a model with stride 2 the bins are the
    // cause, as a range (128 // 8 is 135 // 8); against one with stride 4
    // nothing about the bins is claimed.
    let causes: Vec<&str> = report.explanation.iter().map(|c| c.text.as_str()).collect();
    assert!(
        causes[0].starts_with(
            "encoder_config.num_mel_bins: checkpoint 128 to 135 (with encoder_config.subsampling_conv_stride 2, as in the model), model 80 — 1 size mismatch"
        ),
        "{causes:?} {:?}",
        report.inferred.conditional
    );
    let conditional = &report.inferred.conditional;
    assert_eq!(
        conditional
            .iter()
            .map(|f| (f.field.as_str(), f.range, &f.given[..]))
            .collect::<Vec<_>>(),
        [(
            "encoder_config.num_mel_bins",
            Some([128, 135]),
            &[("encoder_config.subsampling_conv_stride".to_string(), 2)][..]
        )]
    );
    let checkpoint = saved_checkpoint("parakeet-128mel/ParakeetForCTC");
    // A config.json that leaves the stride to its default has it too.
    let mut stride_left_out = zoo_loads()["configs"]["parakeet/ParakeetForCTC"].clone();
    stride_left_out["encoder_config"]
        .as_object_mut()
        .unwrap()
        .remove("subsampling_conv_stride");
    let report = ckptcheck::diagnosis::check(
        &checkpoint,
        &build(&stride_left_out),
        ckptcheck::loader::Loader::Hf,
    );
    assert_eq!(report.explanation[0].text, causes[0]);
    let mut stride_4 = zoo_loads()["configs"]["parakeet/ParakeetForCTC"].clone();
    stride_4["encoder_config"]["subsampling_conv_stride"] = json!(4);
    let report = ckptcheck::diagnosis::check(
        &checkpoint,
        &build(&stride_4),
        ckptcheck::loader::Loader::Hf,
    );
    assert!(!report.size_mismatches.is_empty());
    assert!(
        report
            .explanation
            .iter()
            .all(|c| !c.text.contains("num_mel_bins")),
        "{:?}",
        report.explanation
    );
}

/// An audio spectrogram transformer saved at 128 frames (make_zoo_loads.py,
/// 4 heads 32 wide): its position table holds the mel bins, the frame
/// count and both strides in one size, and its heads only split the width.
/// Inference keeps the defaults of all but the frame count, which then
/// solves to a range; takes the largest head count under the default 12
/// that splits 32; says both; and the config it writes loads the file.
/// Against the usual 1024 frames, the frame count is the cause, named
/// with the values it rests on.
#[test]
fn a_saved_audio_spectrogram_transformer_is_inferred_and_its_frame_count_explained() {
    let source = "ast/ASTForAudioClassification";
    let inferred = arch::infer(&saved_checkpoint_names(source));
    assert_loads_exactly(source, &inferred.config);
    assert_eq!(inferred.config["num_attention_heads"], json!(8));
    assert!(inferred.undetermined.iter().any(|line| line
        == "num_attention_heads: the shapes show it only together with other fields, and not as a multiple of the default 12; 8 is assumed"),
        "{:?}",
        inferred.undetermined
    );
    assert_eq!(
        field_in(&inferred.conditional, "max_length").range,
        Some([126, 135])
    );
    let mut usual = zoo_loads()["configs"][source].clone();
    usual["max_length"] = json!(1024);
    let checkpoint = saved_checkpoint(source);
    let report =
        ckptcheck::diagnosis::check(&checkpoint, &build(&usual), ckptcheck::loader::Loader::Hf);
    let causes: Vec<&str> = report.explanation.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        causes,
        ["max_length: checkpoint 126 to 135 (with num_mel_bins 128, frequency_stride 10, time_stride 10, as in the model), model 1024 — 1 size mismatch"]
    );
}
