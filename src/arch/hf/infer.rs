//! Inference from names and shapes: which HF family and class a state dict
//! is, and the config fields its shapes determine (the rest are listed as
//! undetermined, never guessed).

use super::*;

// ---------------------------------------------------------------------------
// Inference from names and shapes
// ---------------------------------------------------------------------------

pub(super) struct Names<'a> {
    shapes: HashMap<&'a str, &'a Vec<u64>>,
    names: &'a [(String, Vec<u64>)],
}

impl<'a> Names<'a> {
    fn new(names: &'a [(String, Vec<u64>)]) -> Self {
        Names {
            shapes: names.iter().map(|(n, s)| (n.as_str(), s)).collect(),
            names,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    fn dim(&self, name: &str, index: usize) -> Option<u64> {
        self.shapes.get(name).and_then(|s| s.get(index).copied())
    }

    /// The prefix before the first name ending with `suffix` (`bert.` in
    /// `bert.embeddings.word_embeddings.weight`), if the prefix is one of
    /// `allowed`.
    fn prefix_of(&self, suffix: &str, allowed: &[&'static str]) -> Option<&'static str> {
        allowed
            .iter()
            .find(|p| self.has(&format!("{p}{suffix}")))
            .copied()
    }

    fn any_prefix(&self, prefix: &str) -> bool {
        self.names.iter().any(|(n, _)| n.starts_with(prefix))
    }
}

/// Collects fields with evidence and the config.json they make.
pub(super) struct Found {
    fields: Vec<InferredField>,
    config: Map<String, Value>,
    undetermined: Vec<String>,
}

impl Found {
    fn new(model_type: &str, class: &str) -> Self {
        let mut config = Map::new();
        config.insert("model_type".into(), json!(model_type));
        config.insert("architectures".into(), json!([class]));
        Found {
            fields: Vec::new(),
            config,
            undetermined: Vec::new(),
        }
    }

    fn set(&mut self, name: &str, value: Value, evidence: impl Into<String>) {
        self.fields.push(InferredField {
            field: name.to_string(),
            value: value.clone(),
            evidence: evidence.into(),
            range: None,
            given: Vec::new(),
        });
        self.insert(name, value);
    }

    fn insert(&mut self, name: &str, value: Value) {
        match name.split_once('.') {
            Some((section, key)) => {
                let entry = self
                    .config
                    .entry(section.to_string())
                    .or_insert_with(|| json!({}));
                if let Some(object) = entry.as_object_mut() {
                    object.insert(key.to_string(), value);
                }
            }
            None => {
                self.config.insert(name.to_string(), value);
            }
        }
    }

    /// Attention heads are not in the shapes: assume 64-wide heads.
    fn heads(&mut self, field: &str, hidden: u64) {
        let heads = if hidden.is_multiple_of(64) {
            (hidden / 64).max(1)
        } else {
            1
        };
        self.insert(field, json!(heads));
        self.undetermined.push(format!(
            "{field}: attention heads are not visible in shapes (assumed {heads}, 64-wide heads)"
        ));
    }

    fn finish(self, class: &str) -> Inferred {
        let mut undetermined = self.undetermined;
        undetermined.insert(
            0,
            format!("architecture {class}: read from the task-head tensors"),
        );
        Inferred {
            family: "hf".to_string(),
            fields: self.fields,
            config: Value::Object(self.config),
            preset: None,
            ranking: Vec::new(),
            undetermined,
            shaped_like: None,
            conditional: Vec::new(),
        }
    }
}

/// Infer a transformers `config.json` (model_type, architecture, sizes) from
/// (prefix-free) names and shapes; `None` unless the names are one of the
/// families this module builds.
pub fn infer(names: &[(String, Vec<u64>)]) -> Option<Inferred> {
    let n = Names::new(names);
    if let Some(p) = n.prefix_of(
        "embeddings.word_embeddings.weight",
        &["", "bert.", "roberta."],
    ) {
        if n.any_prefix(&format!("{p}encoder.layer.")) {
            return Some(infer_bert(&n, p));
        }
    }
    if let Some(p) = n.prefix_of("embed_tokens.weight", &["", "model.", "transformer."]) {
        if n.has(&format!("{p}layers.0.self_attn.q_proj.weight")) {
            return Some(infer_decoder(&n, p));
        }
    }
    if let Some(p) = n.prefix_of("wte.weight", &["", "transformer."]) {
        if n.has(&format!("{p}h.0.attn.c_attn.weight")) {
            return Some(infer_gpt2(&n, p));
        }
    }
    if let Some(p) = n.prefix_of("embeddings.cls_token", &["", "vit."]) {
        if n.has(&format!("{p}embeddings.patch_embeddings.projection.weight")) {
            return Some(infer_vit(&n, p));
        }
    }
    let clip_text = n.prefix_of("embeddings.token_embedding.weight", &["text_model.", ""]);
    let clip_vision = n.prefix_of("embeddings.class_embedding", &["vision_model.", ""]);
    if clip_text.is_some() || clip_vision.is_some() {
        return infer_clip(&n, clip_text, clip_vision);
    }
    None
}

pub(super) fn infer_bert(n: &Names, p: &'static str) -> Inferred {
    let word = format!("{p}embeddings.word_embeddings.weight");
    let (vocab, hidden) = (n.dim(&word, 0).unwrap_or(0), n.dim(&word, 1).unwrap_or(0));
    let type_vocab = n
        .dim(&format!("{p}embeddings.token_type_embeddings.weight"), 0)
        .unwrap_or(2);
    let roberta = p == "roberta."
        || n.has("lm_head.dense.weight")
        || n.has("classifier.out_proj.weight")
        || (p.is_empty() && !n.any_prefix("cls.") && type_vocab == 1);
    let pooler = n.has(&format!("{p}pooler.dense.weight"));
    let labels = n
        .dim("classifier.weight", 0)
        .or(n.dim("classifier.out_proj.weight", 0));
    let (class, num_labels) = if roberta {
        if n.has("lm_head.dense.weight") {
            ("RobertaForMaskedLM", None)
        } else if n.has("classifier.out_proj.weight") {
            ("RobertaForSequenceClassification", labels)
        } else if n.has("qa_outputs.weight") {
            ("RobertaForQuestionAnswering", None)
        } else if labels == Some(1) && pooler {
            ("RobertaForMultipleChoice", None)
        } else if labels.is_some() {
            ("RobertaForTokenClassification", labels)
        } else {
            ("RobertaModel", None)
        }
    } else if n.has("cls.predictions.bias") || n.has("cls.predictions.transform.dense.weight") {
        if n.has("cls.seq_relationship.weight") {
            ("BertForPreTraining", None)
        } else {
            ("BertForMaskedLM", None)
        }
    } else if n.has("cls.seq_relationship.weight") {
        ("BertForNextSentencePrediction", None)
    } else if n.has("qa_outputs.weight") {
        ("BertForQuestionAnswering", None)
    } else if labels == Some(1) && pooler {
        ("BertForMultipleChoice", None)
    } else if labels.is_some() && pooler {
        ("BertForSequenceClassification", labels)
    } else if labels.is_some() {
        ("BertForTokenClassification", labels)
    } else {
        ("BertModel", None)
    };
    let mut f = Found::new(if roberta { "roberta" } else { "bert" }, class);
    if p.is_empty() && !roberta && type_vocab != 1 && !n.any_prefix("cls.") {
        f.undetermined.push(
            "model_type: a bare BERT and RoBERTa encoder have the same names (bert assumed)"
                .to_string(),
        );
    }
    f.set("vocab_size", json!(vocab), format!("{word} shape[0]"));
    f.set("hidden_size", json!(hidden), format!("{word} shape[1]"));
    f.set(
        "num_hidden_layers",
        json!(count_blocks(n.names, &format!("{p}encoder.layer."))),
        format!("count of {p}encoder.layer.N"),
    );
    let intermediate = format!("{p}encoder.layer.0.intermediate.dense.weight");
    f.set(
        "intermediate_size",
        json!(n.dim(&intermediate, 0).unwrap_or(0)),
        format!("{intermediate} shape[0]"),
    );
    let positions = format!("{p}embeddings.position_embeddings.weight");
    f.set(
        "max_position_embeddings",
        json!(n.dim(&positions, 0).unwrap_or(0)),
        format!("{positions} shape[0]"),
    );
    f.set(
        "type_vocab_size",
        json!(type_vocab),
        format!("{p}embeddings.token_type_embeddings.weight shape[0]"),
    );
    let cross = n.has(&format!(
        "{p}encoder.layer.0.crossattention.self.query.weight"
    ));
    f.set(
        "add_cross_attention",
        json!(cross),
        format!(
            "{p}encoder.layer.0.crossattention {}",
            if cross { "exists" } else { "is absent" }
        ),
    );
    if cross {
        f.insert("is_decoder", json!(true));
    }
    if let Some(labels) = num_labels {
        f.set("num_labels", json!(labels), "classifier rows");
    }
    f.heads("num_attention_heads", hidden);
    f.finish(class)
}

pub(super) fn infer_decoder(n: &Names, p: &'static str) -> Inferred {
    let embed = format!("{p}embed_tokens.weight");
    let (vocab, hidden) = (n.dim(&embed, 0).unwrap_or(0), n.dim(&embed, 1).unwrap_or(0));
    let l0 = format!("{p}layers.0");
    let q_rows = n
        .dim(&format!("{l0}.self_attn.q_proj.weight"), 0)
        .unwrap_or(hidden);
    let k_rows = n
        .dim(&format!("{l0}.self_attn.k_proj.weight"), 0)
        .unwrap_or(q_rows);
    let q_bias = n.has(&format!("{l0}.self_attn.q_proj.bias"));
    let o_bias = n.has(&format!("{l0}.self_attn.o_proj.bias"));
    let mlp_bias = n.has(&format!("{l0}.mlp.gate_proj.bias"));
    let qwen2 = q_bias && !o_bias;
    let (class, labels) = if p.is_empty() {
        (if qwen2 { "Qwen2Model" } else { "LlamaModel" }, None)
    } else if let Some(rows) = n.dim("score.weight", 0) {
        if n.has("score.bias") {
            (
                if qwen2 {
                    "Qwen2ForTokenClassification"
                } else {
                    "LlamaForTokenClassification"
                },
                Some(rows),
            )
        } else {
            (
                if qwen2 {
                    "Qwen2ForSequenceClassification"
                } else {
                    "LlamaForSequenceClassification"
                },
                Some(rows),
            )
        }
    } else if n.has("qa_outputs.weight") {
        let class = match (qwen2, p) {
            (true, _) => "Qwen2ForQuestionAnswering",
            (false, "model.") => "MistralForQuestionAnswering",
            _ => "LlamaForQuestionAnswering",
        };
        (class, None)
    } else {
        (
            if qwen2 {
                "Qwen2ForCausalLM"
            } else {
                "LlamaForCausalLM"
            },
            None,
        )
    };
    let model_type = if qwen2 {
        "qwen2"
    } else if class.starts_with("Mistral") {
        "mistral"
    } else {
        "llama"
    };
    let mut f = Found::new(model_type, class);
    if model_type == "llama" && !o_bias && !mlp_bias {
        f.undetermined.push(
            "model_type: LLaMA and Mistral checkpoints have the same tensors (llama assumed)"
                .to_string(),
        );
    }
    f.set("vocab_size", json!(vocab), format!("{embed} shape[0]"));
    f.set("hidden_size", json!(hidden), format!("{embed} shape[1]"));
    f.set(
        "num_hidden_layers",
        json!(count_blocks(n.names, &format!("{p}layers."))),
        format!("count of {p}layers.N"),
    );
    let gate = format!("{l0}.mlp.gate_proj.weight");
    f.set(
        "intermediate_size",
        json!(n.dim(&gate, 0).unwrap_or(0)),
        format!("{gate} shape[0]"),
    );
    // Heads: only the widths of q_proj and k_proj are visible. Assume the
    // usual head width (128 from 4096 up, else 64) when it divides both.
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let preferred = if hidden >= 4096 { 128 } else { 64 };
    let head_dim = [preferred, 64, 128]
        .into_iter()
        .find(|d| q_rows.is_multiple_of(*d) && k_rows.is_multiple_of(*d))
        .unwrap_or_else(|| gcd(q_rows, k_rows).max(1));
    let heads = q_rows / head_dim;
    let kv_heads = k_rows / head_dim;
    // Both counts rest on the assumed head width: they go into the config
    // (marked as guesses in `undetermined`), never into the fields that
    // explanations compare.
    f.insert("num_attention_heads", json!(heads));
    f.insert("num_key_value_heads", json!(kv_heads));
    if q_rows != hidden {
        f.set(
            "head_dim",
            json!(head_dim),
            format!("q_proj has {q_rows} rows, not hidden_size {hidden}"),
        );
    }
    f.undetermined.push(format!(
        "num_attention_heads / num_key_value_heads: shapes show {q_rows} query and {k_rows} key/value features; {heads} and {kv_heads} heads assume head_dim {head_dim}"
    ));
    if model_type == "llama" {
        f.set(
            "attention_bias",
            json!(q_bias || o_bias),
            format!(
                "{l0}.self_attn.o_proj.bias {}",
                if o_bias { "exists" } else { "is absent" }
            ),
        );
        f.set(
            "mlp_bias",
            json!(mlp_bias),
            format!(
                "{l0}.mlp.gate_proj.bias {}",
                if mlp_bias { "exists" } else { "is absent" }
            ),
        );
    }
    if class.ends_with("ForCausalLM") {
        let head = n.has("lm_head.weight");
        f.set(
            "tie_word_embeddings",
            json!(!head),
            if head {
                "lm_head.weight is saved (untied, or saved with its tied twin)"
            } else {
                "no lm_head.weight: tied to model.embed_tokens.weight"
            },
        );
    }
    if let Some(labels) = labels {
        f.set("num_labels", json!(labels), "score.weight shape[0]");
    }
    f.finish(class)
}

pub(super) fn infer_gpt2(n: &Names, p: &'static str) -> Inferred {
    let class = if p.is_empty() {
        "GPT2Model"
    } else if n.has("multiple_choice_head.summary.weight") {
        "GPT2DoubleHeadsModel"
    } else if n.has("score.weight") {
        "GPT2ForSequenceClassification"
    } else if n.has("classifier.weight") {
        "GPT2ForTokenClassification"
    } else if n.has("qa_outputs.weight") {
        "GPT2ForQuestionAnswering"
    } else {
        "GPT2LMHeadModel"
    };
    let mut f = Found::new("gpt2", class);
    let wte = format!("{p}wte.weight");
    let e = n.dim(&wte, 1).unwrap_or(0);
    f.set(
        "vocab_size",
        json!(n.dim(&wte, 0).unwrap_or(0)),
        format!("{wte} shape[0]"),
    );
    f.set("n_embd", json!(e), format!("{wte} shape[1]"));
    let wpe = format!("{p}wpe.weight");
    f.set(
        "n_positions",
        json!(n.dim(&wpe, 0).unwrap_or(0)),
        format!("{wpe} shape[0]"),
    );
    f.set(
        "n_layer",
        json!(count_blocks(n.names, &format!("{p}h."))),
        format!("count of {p}h.N"),
    );
    let fc = format!("{p}h.0.mlp.c_fc.weight");
    let inner = n.dim(&fc, 1).unwrap_or(4 * e);
    f.set(
        "n_inner",
        if inner == 4 * e {
            Value::Null
        } else {
            json!(inner)
        },
        format!("{fc} shape[1] = {inner} (Conv1D stores [in, out])"),
    );
    let cross = n.has(&format!("{p}h.0.crossattention.c_attn.weight"));
    f.set(
        "add_cross_attention",
        json!(cross),
        format!(
            "{p}h.0.crossattention {}",
            if cross { "exists" } else { "is absent" }
        ),
    );
    if let Some(labels) = n.dim("score.weight", 0).or(n.dim("classifier.weight", 0)) {
        f.set("num_labels", json!(labels), "classification head rows");
    }
    if class == "GPT2DoubleHeadsModel" {
        f.insert("num_labels", json!(1));
    }
    f.heads("n_head", e);
    f.finish(class)
}

pub(super) fn infer_vit(n: &Names, p: &'static str) -> Inferred {
    let class = if n.has("decoder.0.weight") {
        "ViTForMaskedImageModeling"
    } else if p == "vit." {
        "ViTForImageClassification"
    } else {
        "ViTModel"
    };
    let mut f = Found::new("vit", class);
    let projection = format!("{p}embeddings.patch_embeddings.projection.weight");
    let hidden = n.dim(&projection, 0).unwrap_or(0);
    let channels = n.dim(&projection, 1).unwrap_or(3);
    let (ph, pw) = (
        n.dim(&projection, 2).unwrap_or(0),
        n.dim(&projection, 3).unwrap_or(0),
    );
    f.set(
        "hidden_size",
        json!(hidden),
        format!("{projection} shape[0]"),
    );
    f.set(
        "num_channels",
        json!(channels),
        format!("{projection} shape[1]"),
    );
    f.set(
        "patch_size",
        if ph == pw { json!(ph) } else { json!([ph, pw]) },
        format!("{projection} shape[2:]"),
    );
    let positions = n
        .dim(&format!("{p}embeddings.position_embeddings"), 1)
        .unwrap_or(1);
    match crate::arch::exact_sqrt(positions.saturating_sub(1)).filter(|_| ph == pw) {
        Some(grid) => f.set(
            "image_size",
            json!(grid * ph),
            format!(
                "{p}embeddings.position_embeddings has {positions} positions = {grid}x{grid}+1"
            ),
        ),
        None => f.undetermined.push(format!(
            "image_size: {} patches in a grid whose aspect the shapes do not tell",
            positions.saturating_sub(1)
        )),
    }
    // Old (encoder.layer.N.attention.attention.query) or new (layers.N.attention.q_proj) names.
    let old = n.any_prefix(&format!("{p}encoder.layer."));
    let (layers_prefix, q, fc1) = if old {
        (
            format!("{p}encoder.layer."),
            format!("{p}encoder.layer.0.attention.attention.query.bias"),
            format!("{p}encoder.layer.0.intermediate.dense.weight"),
        )
    } else {
        (
            format!("{p}layers."),
            format!("{p}layers.0.attention.q_proj.bias"),
            format!("{p}layers.0.mlp.fc1.weight"),
        )
    };
    f.set(
        "num_hidden_layers",
        json!(count_blocks(n.names, &layers_prefix)),
        format!("count of {layers_prefix}N"),
    );
    f.set(
        "intermediate_size",
        json!(n.dim(&fc1, 0).unwrap_or(0)),
        format!("{fc1} shape[0]"),
    );
    let qkv_bias = n.has(&q);
    f.set(
        "qkv_bias",
        json!(qkv_bias),
        format!("{q} {}", if qkv_bias { "exists" } else { "is absent" }),
    );
    if let Some(rows) = n.dim("pooler.dense.weight", 0) {
        f.set(
            "pooler_output_size",
            json!(rows),
            "pooler.dense.weight shape[0]",
        );
    }
    if let Some(labels) = n.dim("classifier.weight", 0) {
        f.set("num_labels", json!(labels), "classifier.weight shape[0]");
    } else if class == "ViTForImageClassification" {
        f.set("num_labels", json!(0), "no classifier");
    }
    if let Some(out) = n.dim("decoder.0.weight", 0) {
        let stride = crate::arch::exact_sqrt(out / channels.max(1)).unwrap_or(0);
        f.set(
            "encoder_stride",
            json!(stride),
            format!("decoder.0.weight shape[0] = {out} = stride^2 x {channels} channels"),
        );
    }
    f.heads("num_attention_heads", hidden);
    f.finish(class)
}

/// A CLIP tower's sizes into `f` under `section` ("" or "text_config").
pub(super) fn infer_clip_tower(
    f: &mut Found,
    n: &Names,
    p: &str,
    section: &str,
    text: bool,
) -> u64 {
    let field = |name: &str| {
        if section.is_empty() {
            name.to_string()
        } else {
            format!("{section}.{name}")
        }
    };
    let q = format!("{p}encoder.layers.0.self_attn.q_proj.weight");
    let hidden = n.dim(&q, 0).unwrap_or(0);
    f.set(
        &field("hidden_size"),
        json!(hidden),
        format!("{q} shape[0]"),
    );
    f.set(
        &field("num_hidden_layers"),
        json!(count_blocks(n.names, &format!("{p}encoder.layers."))),
        format!("count of {p}encoder.layers.N"),
    );
    let fc1 = format!("{p}encoder.layers.0.mlp.fc1.weight");
    f.set(
        &field("intermediate_size"),
        json!(n.dim(&fc1, 0).unwrap_or(0)),
        format!("{fc1} shape[0]"),
    );
    if text {
        let token = format!("{p}embeddings.token_embedding.weight");
        f.set(
            &field("vocab_size"),
            json!(n.dim(&token, 0).unwrap_or(0)),
            format!("{token} shape[0]"),
        );
        let position = format!("{p}embeddings.position_embedding.weight");
        f.set(
            &field("max_position_embeddings"),
            json!(n.dim(&position, 0).unwrap_or(0)),
            format!("{position} shape[0]"),
        );
    } else {
        let patch = format!("{p}embeddings.patch_embedding.weight");
        let (channels, size) = (n.dim(&patch, 1).unwrap_or(3), n.dim(&patch, 3).unwrap_or(0));
        f.set(
            &field("num_channels"),
            json!(channels),
            format!("{patch} shape[1]"),
        );
        f.set(
            &field("patch_size"),
            json!(size),
            format!("{patch} shape[3]"),
        );
        let position = format!("{p}embeddings.position_embedding.weight");
        let positions = n.dim(&position, 0).unwrap_or(1);
        let grid = crate::arch::exact_sqrt(positions.saturating_sub(1)).unwrap_or(0);
        f.set(
            &field("image_size"),
            json!(grid * size),
            format!("{position} has {positions} rows = {grid}x{grid}+1"),
        );
    }
    f.heads(&field("num_attention_heads"), hidden);
    hidden
}

pub(super) fn infer_clip(
    n: &Names,
    text: Option<&'static str>,
    vision: Option<&'static str>,
) -> Option<Inferred> {
    let text = text.filter(|p| n.has(&format!("{p}encoder.layers.0.self_attn.q_proj.weight")));
    let vision = vision.filter(|p| {
        n.has(&format!("{p}encoder.layers.0.self_attn.q_proj.weight"))
            && n.has(&format!("{p}pre_layrnorm.weight"))
    });
    let (class, model_type) = match (text, vision) {
        (Some(_), Some(_)) => ("CLIPModel", "clip"),
        (None, Some(_)) if n.has("classifier.weight") => ("CLIPForImageClassification", "clip"),
        (None, Some(_)) if n.has("visual_projection.weight") => {
            ("CLIPVisionModelWithProjection", "clip_vision_model")
        }
        (None, Some(_)) => ("CLIPVisionModel", "clip_vision_model"),
        (Some(_), None) if n.has("text_projection.weight") => {
            ("CLIPTextModelWithProjection", "clip_text_model")
        }
        (Some(_), None) => ("CLIPTextModel", "clip_text_model"),
        (None, None) => return None,
    };
    let mut f = Found::new(model_type, class);
    let nested = model_type == "clip";
    if let Some(p) = text {
        infer_clip_tower(&mut f, n, p, if nested { "text_config" } else { "" }, true);
    }
    if let Some(p) = vision {
        infer_clip_tower(
            &mut f,
            n,
            p,
            if nested { "vision_config" } else { "" },
            false,
        );
    }
    if let Some(rows) = n
        .dim("text_projection.weight", 0)
        .or(n.dim("visual_projection.weight", 0))
    {
        f.set("projection_dim", json!(rows), "projection weight shape[0]");
    }
    if let Some(labels) = n.dim("classifier.weight", 0) {
        f.set("num_labels", json!(labels), "classifier.weight shape[0]");
    }
    Some(f.finish(class))
}
