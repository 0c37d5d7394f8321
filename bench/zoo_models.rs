//! Zoo model construction and check time, largest configs against a small
//! one in the same run: a 70B LLaMA and Mixtral 8x7B (through the zoo's
//! generic evaluator, which builds every transformers model), T5-base,
//! LLaVA 1.5 7B and a LLaVA around Qwen2 7B and SigLIP (sub-models other
//! than the composite's defaults, which the check's inference reads type by
//! type), the SDXL UNet from its diffusers config.json, the whole SDXL
//! base single file (`sd/xl-base`: UNet, VAE, both text encoders), and a
//! 2-layer LLaMA as the baseline. Each model is built from
//! its config.json 21 times (the first a warm-up) and checked against a
//! checkpoint holding exactly its tensors (names and shapes, no data);
//! prints the medians and each one's ratio to the baseline, with the time
//! to infer the config from the tensors alone. The first use
//! of the zoo (parsing its data) is timed once, separately. Run through
//! `cargo bench --bench zoo_models` (`cargo xtask bench zoo-models`).
//! Not a test: nothing here asserts a time.

use ckptcheck::arch::{self, zoo, ModelSpec};
use ckptcheck::diagnosis::check;
use ckptcheck::loader::Loader;
use ckptcheck::{Checkpoint, TensorInfo};
use serde_json::{json, Value};
use std::time::Instant;

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

fn checkpoint_of(model: &ModelSpec) -> Checkpoint {
    let mut checkpoint = Checkpoint::new("model.safetensors", "safetensors", 0);
    for tensor in &model.tensors {
        checkpoint.tensors.push(TensorInfo::new(
            tensor.name.clone(),
            tensor.dtype.clone(),
            tensor.shape.clone(),
        ));
    }
    checkpoint
}

fn main() {
    let started = Instant::now();
    let first = zoo::from_config_value(&json!({"model_type": "t5"}), "t5", None).expect("t5");
    let first_use = started.elapsed().as_secs_f64();
    drop(first);
    let llama_70b = json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8192,
        "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
        "num_key_value_heads": 8, "vocab_size": 128256});
    let tiny = json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 1000});
    let zoo_build = |config: &Value| -> ModelSpec {
        let model_type = config["model_type"].as_str().unwrap();
        let class = config["architectures"][0].as_str();
        zoo::from_config_value(config, model_type, class).expect("zoo model")
    };
    let diffusers_build = |config: &Value| -> ModelSpec {
        zoo::diffusers::from_diffusers_config(config).expect("diffusers model")
    };
    let preset_build = |config: &Value| -> ModelSpec {
        arch::model_from_preset(config["preset"].as_str().unwrap()).expect("preset")
    };
    // llava-hf/llava-1.5-7b-hf (LLaMA 7B around a CLIP ViT-L/14-336) and
    // llava-hf/llava-interleave-qwen-7b-hf (LLaVA's own class around Qwen2
    // 7B and a SigLIP tower, where LLaVA's defaults are LLaMA and CLIP: the
    // check's inference reads each sub-model as the types checked there).
    let llava_7b = json!({"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
        "image_token_index": 32000, "vocab_size": 32064,
        "text_config": {"model_type": "llama", "vocab_size": 32064, "hidden_size": 4096,
            "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
            "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
            "projection_dim": 768}});
    let llava_qwen_7b = json!({"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
        "image_token_index": 151646,
        "text_config": {"model_type": "qwen2", "vocab_size": 152000, "hidden_size": 3584,
            "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4},
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
            "num_hidden_layers": 26, "num_attention_heads": 16, "image_size": 384, "patch_size": 14,
            "vision_use_head": false}});
    // SDXL base's unet/config.json, in the fields that are not defaults.
    let sdxl_unet = json!({"_class_name": "UNet2DConditionModel", "sample_size": 128,
        "block_out_channels": [320, 640, 1280], "cross_attention_dim": 2048,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
        "use_linear_projection": true, "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816});
    type Build<'a> = &'a dyn Fn(&Value) -> ModelSpec;
    let cases: Vec<(&str, Value, Build, Loader)> = vec![
        (
            "llama 2 layers (zoo), baseline",
            tiny.clone(),
            &zoo_build,
            Loader::Hf,
        ),
        ("llama 70B (zoo)", llama_70b, &zoo_build, Loader::Hf),
        (
            "mixtral 8x7B (zoo)",
            arch::model_from_preset("hf/mixtral-8x7b").unwrap().config,
            &zoo_build,
            Loader::Hf,
        ),
        (
            "t5-base (zoo)",
            arch::model_from_preset("hf/t5-base").unwrap().config,
            &zoo_build,
            Loader::Hf,
        ),
        ("llava 1.5 7B (zoo)", llava_7b, &zoo_build, Loader::Hf),
        (
            "llava interleave qwen 7B (zoo)",
            llava_qwen_7b,
            &zoo_build,
            Loader::Hf,
        ),
        (
            "SDXL UNet (diffusers zoo)",
            sdxl_unet,
            &diffusers_build,
            Loader::Diffusers,
        ),
        (
            "SDXL base single file (sd/xl-base)",
            json!({"preset": "sd/xl-base"}),
            &preset_build,
            Loader::Ldm,
        ),
    ];
    // Inference keeps its last answer (one check asks twice): each timed
    // inference follows one of another checkpoint's, so none is a cache hit.
    let other_names: Vec<(String, Vec<u64>)> = vec![("unrelated.weight".to_string(), vec![3, 3])];
    let mut baseline = (0.0, 0.0, 0.0);
    println!("zoo data parsed on first use in {:.2} ms", first_use * 1e3);
    println!(
        "{:<34} {:>8} {:>10} {:>7} {:>10} {:>7} {:>10} {:>7}",
        "config", "tensors", "build ms", "ratio", "check ms", "ratio", "infer ms", "ratio"
    );
    println!("(the last column: what inference reads the tensors as)");
    for (index, (name, config, build, loader)) in cases.iter().enumerate() {
        let model = build(config);
        let checkpoint = checkpoint_of(&model);
        let names: Vec<(String, Vec<u64>)> = model
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let (mut builds, mut checks, mut infers) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..21 {
            let start = Instant::now();
            let model = build(config);
            let built = start.elapsed().as_secs_f64();
            let start = Instant::now();
            let report = check(&checkpoint, &model, *loader);
            let checked = start.elapsed().as_secs_f64();
            assert!(report.loads, "{name}");
            arch::infer(&other_names);
            let start = Instant::now();
            let inferred = arch::infer(&names);
            let inferred_in = start.elapsed().as_secs_f64();
            assert!(!inferred.family.is_empty(), "{name}: nothing inferred");
            if round > 0 {
                builds.push(built);
                checks.push(checked);
                infers.push(inferred_in);
            }
        }
        let inferred = arch::infer(&names);
        let sub_models: Vec<String> = ["text_config", "vision_config"]
            .iter()
            .filter_map(|sub| {
                Some(format!(
                    "{sub} {}",
                    inferred.config[sub]["model_type"].as_str()?
                ))
            })
            .collect();
        let inferred_as = format!(
            "{} {}",
            inferred.config["model_type"]
                .as_str()
                .unwrap_or(&inferred.family),
            sub_models.join(", ")
        );
        let (build_ms, check_ms, infer_ms) = (
            median(builds) * 1e3,
            median(checks) * 1e3,
            median(infers) * 1e3,
        );
        if index == 0 {
            baseline = (build_ms, check_ms, infer_ms);
        }
        println!(
            "{name:<34} {:>8} {build_ms:>10.3} {:>7.1} {check_ms:>10.3} {:>7.1} {infer_ms:>10.3} {:>7.1}  {}",
            model.tensors.len(),
            build_ms / baseline.0,
            check_ms / baseline.1,
            infer_ms / baseline.2,
            inferred_as.trim()
        );
    }
}
