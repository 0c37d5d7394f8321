//! GPT-2 as Hugging Face's modeling_gpt2.py runs it: token + position
//! embeddings, pre-LN blocks whose `Conv1D` weights are stored `[in, out]`
//! (hence `Layout::InOut`), causal attention, tanh GELU ("gelu_new"), ln_f,
//! and logits through the tied token embedding.

use super::config::Gpt2Config;
use super::layers::layer_norm;
use super::{matrix, vector, weight, Activation, AttentionMask, Backend, Heads, Layout};
use crate::error::Result;
use crate::weights::WeightSource;

/// `Conv1D(out, in)`: weight `[in, out]`, bias `[out]`; then `act`, if any.
fn conv1d<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    prefix: &str,
    x: &B::Tensor,
    (out, act): (usize, Option<Activation>),
) -> Result<B::Tensor> {
    let k = b.dims(x).1;
    let wt = matrix(b, w, &format!("{prefix}.weight"), &[k, out], k, out)?;
    let bias = vector(b, w, &format!("{prefix}.bias"), out)?;
    match act {
        Some(act) => b.linear_activation(x, &wt, Layout::InOut, Some(&bias), act),
        None => b.linear(x, &wt, Layout::InOut, Some(&bias)),
    }
}

/// Logits `[t, vocab]`.
pub fn forward<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    cfg: &Gpt2Config,
    ids: &[u32],
    layers: usize,
) -> Result<B::Tensor> {
    let e = cfg.n_embd;
    let p = "transformer.";
    let wte_name = format!("{p}wte.weight");
    let wte = weight(b, w, &wte_name, &[cfg.vocab, e], cfg.vocab, e)?;
    let x = b.gather(&wte, ids)?;
    let wpe = weight(
        b,
        w,
        &format!("{p}wpe.weight"),
        &[cfg.n_positions, e],
        cfg.n_positions,
        e,
    )?;
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let pos = b.gather(&wpe, &positions)?;
    let mut x = b.add(&x, &pos)?;
    b.end_block()?;
    let heads = Heads {
        n_heads: cfg.n_head,
        n_kv_heads: cfg.n_head,
        head_dim: e / cfg.n_head,
    };
    let mask = AttentionMask {
        causal: true,
        key_valid: Vec::new(),
    };
    for i in 0..layers.min(cfg.n_layer) {
        let l = format!("{p}h.{i}.");
        let h = layer_norm(b, w, &format!("{l}ln_1"), &x, cfg.eps)?;
        let qkv = conv1d(b, w, &format!("{l}attn.c_attn"), &h, (3 * e, None))?;
        let q = b.slice_cols(&qkv, 0, e)?;
        let k = b.slice_cols(&qkv, e, e)?;
        let v = b.slice_cols(&qkv, 2 * e, e)?;
        let a = b.attention(&q, &k, &v, heads, &mask)?;
        let a = conv1d(b, w, &format!("{l}attn.c_proj"), &a, (e, None))?;
        x = b.add(&x, &a)?;
        let h = layer_norm(b, w, &format!("{l}ln_2"), &x, cfg.eps)?;
        let h = conv1d(
            b,
            w,
            &format!("{l}mlp.c_fc"),
            &h,
            (cfg.n_inner, Some(cfg.act)),
        )?;
        let h = conv1d(b, w, &format!("{l}mlp.c_proj"), &h, (e, None))?;
        x = b.add(&x, &h)?;
        b.end_block()?;
    }
    let x = layer_norm(b, w, &format!("{p}ln_f"), &x, cfg.eps)?;
    // lm_head is tied to wte; an untied head is used when the file has one.
    let head = if w.has("lm_head.weight") {
        matrix(b, w, "lm_head.weight", &[cfg.vocab, e], cfg.vocab, e)?
    } else {
        wte
    };
    b.linear(&x, &head, Layout::OutIn, None)
}
