//! LLaMA-family decoders (llama, mistral, qwen2) as Hugging Face's
//! modeling_llama.py runs them: token embedding, pre-RMSNorm blocks with
//! rotary position embedding on q and k, grouped-query attention (each kv
//! head shared by n_heads / n_kv_heads query heads), causal mask, SwiGLU MLP
//! (`down(silu(gate(x)) * up(x))`), final norm and the LM head (or the tied
//! embedding).

use super::config::LlamaConfig;
use super::layers::linear;
use super::{matrix, vector, weight, AttentionMask, Backend, Heads, Layout};
use crate::error::Result;
use crate::weights::WeightSource;

fn rms_norm<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    name: &str,
    x: &B::Tensor,
    eps: f32,
) -> Result<B::Tensor> {
    let n = b.dims(x).1;
    let gamma = vector(b, w, name, n)?;
    b.rms_norm(x, &gamma, eps)
}

/// Logits `[t, vocab]`.
pub fn forward<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    cfg: &LlamaConfig,
    ids: &[u32],
    layers: usize,
) -> Result<B::Tensor> {
    let hsz = cfg.hidden;
    let d = cfg.head_dim;
    let table = weight(
        b,
        w,
        "model.embed_tokens.weight",
        &[cfg.vocab, hsz],
        cfg.vocab,
        hsz,
    )?;
    let mut x = b.gather(&table, ids)?;
    b.end_block()?;
    let heads = Heads {
        n_heads: cfg.heads,
        n_kv_heads: cfg.kv_heads,
        head_dim: d,
    };
    let mask = AttentionMask {
        causal: true,
        key_valid: Vec::new(),
    };
    for i in 0..layers.min(cfg.layers) {
        let l = format!("model.layers.{i}.");
        let h = rms_norm(b, w, &format!("{l}input_layernorm.weight"), &x, cfg.eps)?;
        let q = linear(
            b,
            w,
            &format!("{l}self_attn.q_proj"),
            &h,
            cfg.heads * d,
            cfg.qkv_bias,
        )?;
        let k = linear(
            b,
            w,
            &format!("{l}self_attn.k_proj"),
            &h,
            cfg.kv_heads * d,
            cfg.qkv_bias,
        )?;
        let v = linear(
            b,
            w,
            &format!("{l}self_attn.v_proj"),
            &h,
            cfg.kv_heads * d,
            cfg.qkv_bias,
        )?;
        let q = b.rope(&q, cfg.heads, d, cfg.rope_theta)?;
        let k = b.rope(&k, cfg.kv_heads, d, cfg.rope_theta)?;
        let a = b.attention(&q, &k, &v, heads, &mask)?;
        let a = linear(b, w, &format!("{l}self_attn.o_proj"), &a, hsz, cfg.o_bias)?;
        x = b.add(&x, &a)?;
        let h = rms_norm(
            b,
            w,
            &format!("{l}post_attention_layernorm.weight"),
            &x,
            cfg.eps,
        )?;
        let gate = linear(
            b,
            w,
            &format!("{l}mlp.gate_proj"),
            &h,
            cfg.intermediate,
            cfg.mlp_bias,
        )?;
        let up = linear(
            b,
            w,
            &format!("{l}mlp.up_proj"),
            &h,
            cfg.intermediate,
            cfg.mlp_bias,
        )?;
        let m = b.swiglu(&gate, &up)?;
        let m = linear(b, w, &format!("{l}mlp.down_proj"), &m, hsz, cfg.mlp_bias)?;
        x = b.add(&x, &m)?;
        b.end_block()?;
    }
    let x = rms_norm(b, w, "model.norm.weight", &x, cfg.eps)?;
    let head = if w.has("lm_head.weight") {
        matrix(b, w, "lm_head.weight", &[cfg.vocab, hsz], cfg.vocab, hsz)?
    } else {
        table
    };
    b.linear(&x, &head, Layout::OutIn, None)
}
