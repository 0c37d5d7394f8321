//! BERT as Hugging Face's modeling_bert.py and Chinese-CLIP's copy of it run
//! it: word + position + token-type embeddings, LayerNorm, post-LN encoder
//! layers (attention with the padding mask, then the erf-GELU MLP), the last
//! hidden state; Chinese-CLIP's text feature is its [CLS] row times
//! `text_projection`. RoBERTa differs only in position ids, which start
//! after the padding index (create_position_ids_from_input_ids).

use super::config::BertConfig;
use super::layers::{layer_norm, linear, linear_activation};
use super::{matrix, weight, AttentionMask, Backend, Heads, Layout};
use crate::error::Result;
use crate::weights::WeightSource;

/// Position ids as the model computes them from the token ids.
pub fn position_ids(cfg: &BertConfig, ids: &[u32]) -> Vec<u32> {
    match cfg.roberta_padding_idx {
        None => (0..ids.len() as u32).collect(),
        Some(pad) => {
            let mut count = 0;
            ids.iter()
                .map(|id| {
                    if *id == pad {
                        pad
                    } else {
                        count += 1;
                        pad + count
                    }
                })
                .collect()
        }
    }
}

/// The last hidden state `[t, hidden]`, or with a projection the projected
/// [CLS] feature `[1, embed_dim]`.
pub fn forward<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    cfg: &BertConfig,
    ids: &[u32],
    layers: usize,
) -> Result<B::Tensor> {
    let p = &cfg.prefix;
    let h = cfg.hidden;
    // The embedding tables go out of scope before the blocks run, so the
    // pass holds one block's weights at a time.
    let mut x = {
        let e = format!("{p}embeddings.");
        let words = weight(
            b,
            w,
            &format!("{e}word_embeddings.weight"),
            &[cfg.vocab, h],
            cfg.vocab,
            h,
        )?;
        let x = b.gather(&words, ids)?;
        let pos_table = weight(
            b,
            w,
            &format!("{e}position_embeddings.weight"),
            &[cfg.max_positions, h],
            cfg.max_positions,
            h,
        )?;
        let pos = b.gather(&pos_table, &position_ids(cfg, ids))?;
        let x = b.add(&x, &pos)?;
        let types = weight(
            b,
            w,
            &format!("{e}token_type_embeddings.weight"),
            &[cfg.type_vocab, h],
            cfg.type_vocab,
            h,
        )?;
        let zeros = vec![0u32; ids.len()];
        let typ = b.gather(&types, &zeros)?;
        let x = b.add(&x, &typ)?;
        layer_norm(b, w, &format!("{e}LayerNorm"), &x, cfg.eps)?
    };
    b.end_block()?;
    let mask = AttentionMask {
        causal: false,
        key_valid: ids.iter().map(|id| *id != cfg.pad_token_id).collect(),
    };
    let heads = Heads {
        n_heads: cfg.heads,
        n_kv_heads: cfg.heads,
        head_dim: h / cfg.heads,
    };
    for i in 0..layers.min(cfg.layers) {
        let l = format!("{p}encoder.layer.{i}.");
        let q = linear(b, w, &format!("{l}attention.self.query"), &x, h, true)?;
        let k = linear(b, w, &format!("{l}attention.self.key"), &x, h, true)?;
        let v = linear(b, w, &format!("{l}attention.self.value"), &x, h, true)?;
        let a = b.attention(&q, &k, &v, heads, &mask)?;
        let a = linear(b, w, &format!("{l}attention.output.dense"), &a, h, true)?;
        let a = b.add(&a, &x)?;
        x = layer_norm(b, w, &format!("{l}attention.output.LayerNorm"), &a, cfg.eps)?;
        let m = linear_activation(
            b,
            w,
            &format!("{l}intermediate.dense"),
            &x,
            (cfg.intermediate, true),
            cfg.act,
        )?;
        let m = linear(b, w, &format!("{l}output.dense"), &m, h, true)?;
        let m = b.add(&m, &x)?;
        x = layer_norm(b, w, &format!("{l}output.LayerNorm"), &m, cfg.eps)?;
        b.end_block()?;
    }
    match cfg.projection {
        None => Ok(x),
        Some(embed_dim) => {
            let cls = b.gather(&x, &[0])?;
            let proj = matrix(b, w, "text_projection", &[h, embed_dim], h, embed_dim)?;
            b.linear(&cls, &proj, Layout::InOut, None)
        }
    }
}
