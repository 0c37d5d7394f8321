//! The LLaMA-style decoders (LLaMA, Mistral, Qwen2): config with defaults
//! (grouped-query attention, tied embeddings, attention biases for Qwen2)
//! and the tensor list in `state_dict()` order.

use super::*;
use crate::arch::dotted;

// --- LLaMA, Mistral, Qwen2 --------------------------------------------------

pub(super) struct DecoderConfig {
    family: Family,
    vocab: u64,
    hidden: u64,
    intermediate: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    head_dim_set: bool,
    attention_bias: bool,
    mlp_bias: bool,
    tie: bool,
    num_labels: u64,
}

impl DecoderConfig {
    pub(super) fn defaults(&self) -> Vec<(&'static str, Value)> {
        let (vocab, intermediate) = match self.family {
            Family::Mistral => (32000, 14336),
            Family::Qwen2 => (151936, 22016),
            _ => (32000, 11008),
        };
        let mut out = vec![
            ("vocab_size", json!(vocab)),
            ("hidden_size", json!(4096)),
            ("intermediate_size", json!(intermediate)),
            ("num_hidden_layers", json!(32)),
            ("num_attention_heads", json!(32)),
            ("num_key_value_heads", json!(self.kv_heads)),
            ("head_dim", json!(self.head_dim)),
            ("tie_word_embeddings", json!(false)),
        ];
        if self.family == Family::Llama {
            out.push(("attention_bias", json!(false)));
            out.push(("mlp_bias", json!(false)));
        }
        out
    }
}

pub(super) fn decoder_config(c: &Conf, family: Family) -> Result<DecoderConfig> {
    let (vocab, intermediate) = match family {
        Family::Mistral => (32000, 14336),
        Family::Qwen2 => (151936, 22016),
        _ => (32000, 11008),
    };
    let hidden = c.u64("hidden_size", 4096, MAX_DIM)?;
    let heads = c.u64("num_attention_heads", 32, MAX_DIM)?;
    // An explicit null means "same as num_attention_heads" for all three;
    // an absent field takes the config class's default.
    let kv_default = match (family, c.value.get("num_key_value_heads")) {
        (_, Some(Value::Null)) => heads,
        (Family::Mistral, None) => 8,
        (Family::Qwen2, None) => 32,
        _ => heads,
    };
    let head_dim_set = c.get("head_dim").is_some();
    let head_dim = match c.opt_u64("head_dim", MAX_DIM)? {
        Some(d) => d,
        None => {
            check_heads(c, hidden, heads)?;
            hidden / heads
        }
    };
    let llama = family == Family::Llama;
    Ok(DecoderConfig {
        family,
        vocab: c.u64("vocab_size", vocab, MAX_VOCAB)?,
        hidden,
        intermediate: c.u64("intermediate_size", intermediate, MAX_DIM)?,
        layers: c.u64("num_hidden_layers", 32, MAX_LAYERS)?,
        heads,
        kv_heads: c.u64("num_key_value_heads", kv_default, MAX_DIM)?,
        head_dim,
        head_dim_set,
        attention_bias: llama && c.bool("attention_bias", false)?,
        mlp_bias: llama && c.bool("mlp_bias", false)?,
        tie: c.bool("tie_word_embeddings", false)?,
        num_labels: c.num_labels()?,
    })
}

pub(super) fn build_decoder(
    b: &mut TensorListBuilder,
    c: &DecoderConfig,
    head: Head,
) -> Vec<(String, String)> {
    let p = match head {
        Head::Base => "",
        Head::QuestionAnswering if c.family != Family::Mistral => "transformer.",
        _ => "model.",
    };
    let h = c.hidden;
    let head_fields: &[&'static str] = if c.head_dim_set {
        &["num_attention_heads", "head_dim", "hidden_size"]
    } else {
        &["num_attention_heads", "hidden_size"]
    };
    let kv_fields: &[&'static str] = if c.head_dim_set {
        &["num_key_value_heads", "head_dim", "hidden_size"]
    } else {
        &["num_key_value_heads", "num_attention_heads", "hidden_size"]
    };
    // Qwen2 always has q/k/v biases; LLaMA has them with attention_bias.
    let qkv_bias = c.family == Family::Qwen2 || c.attention_bias;
    let qkv_bias_field = if c.family == Family::Qwen2 {
        "model_type"
    } else {
        "attention_bias"
    };
    b.embedding(&format!("{p}embed_tokens"), c.vocab, h, HV);
    for i in 0..c.layers {
        layer(b, "num_hidden_layers", i, |b| {
            let l = format!("{p}layers.{i}");
            let q = c.heads * c.head_dim;
            let kv = c.kv_heads * c.head_dim;
            for (name, rows, fields) in [
                ("q_proj", q, head_fields),
                ("k_proj", kv, kv_fields),
                ("v_proj", kv, kv_fields),
            ] {
                b.tensor(format!("{l}.self_attn.{name}.weight"), &[rows, h], fields);
                b.optional(qkv_bias_field, qkv_bias, |b| {
                    b.tensor(format!("{l}.self_attn.{name}.bias"), &[rows], fields)
                });
            }
            b.tensor(format!("{l}.self_attn.o_proj.weight"), &[h, q], head_fields);
            b.optional("attention_bias", c.attention_bias, |b| {
                b.tensor(format!("{l}.self_attn.o_proj.bias"), &[h], H)
            });
            for (name, out, inp) in [
                ("gate_proj", c.intermediate, h),
                ("up_proj", c.intermediate, h),
                ("down_proj", h, c.intermediate),
            ] {
                b.tensor(format!("{l}.mlp.{name}.weight"), &[out, inp], HI);
                b.optional("mlp_bias", c.mlp_bias, |b| {
                    b.tensor(format!("{l}.mlp.{name}.bias"), &[out], HI)
                });
            }
            b.norm(&dotted(&l, "input_layernorm"), h, false, H);
            b.norm(&dotted(&l, "post_attention_layernorm"), h, false, H);
        });
    }
    b.norm(&format!("{p}norm"), h, false, H);
    let mut tied = Vec::new();
    match head {
        Head::CausalLm => {
            b.linear("lm_head", c.vocab, h, false, HV);
            if c.tie {
                tied.push((
                    "lm_head.weight".to_string(),
                    "model.embed_tokens.weight".to_string(),
                ));
            }
        }
        Head::SequenceClassification => b.linear("score", c.num_labels, h, false, HL),
        Head::TokenClassification => b.linear("score", c.num_labels, h, true, HL),
        Head::QuestionAnswering => b.linear("qa_outputs", 2, h, true, H),
        _ => {}
    }
    tied
}
