//! The CLIP transformer as OpenAI CLIP, open_clip and Chinese-CLIP write it:
//! the ViT image tower (patch embedding as im2col + matmul, class token,
//! positional embedding, ln_pre, pre-LN residual attention blocks with
//! `nn.MultiheadAttention`'s fused `in_proj`, ln_post on the class token,
//! `proj`) and open_clip's causal text tower (token and positional
//! embeddings, the same blocks under a causal mask, ln_final, the
//! end-of-text token's row, `text_projection`). Names follow
//! open_clip/transformer.py and cn_clip/clip/model.py.

use super::config::{ClipTextConfig, VitConfig};
use super::layers::{layer_norm, linear, linear_activation};
use super::{matrix, vector, weight, Activation, AttentionMask, Backend, Heads, Layout};
use crate::error::Result;
use crate::weights::WeightSource;

/// The block's shape: width, heads, MLP width, activation, LayerNorm eps.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape {
    pub width: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub mlp_width: usize,
    pub act: Activation,
    pub eps: f32,
}

/// `ResidualAttentionBlock`: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
pub fn residual_block<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    prefix: &str,
    x: B::Tensor,
    shape: &BlockShape,
    mask: &AttentionMask,
) -> Result<B::Tensor> {
    let width = shape.width;
    let inner = shape.heads * shape.head_dim;
    let h = layer_norm(b, w, &format!("{prefix}ln_1"), &x, shape.eps)?;
    let in_w = matrix(
        b,
        w,
        &format!("{prefix}attn.in_proj_weight"),
        &[3 * inner, width],
        3 * inner,
        width,
    )?;
    let in_b = vector(b, w, &format!("{prefix}attn.in_proj_bias"), 3 * inner)?;
    let qkv = b.linear(&h, &in_w, Layout::OutIn, Some(&in_b))?;
    let q = b.slice_cols(&qkv, 0, inner)?;
    let k = b.slice_cols(&qkv, inner, inner)?;
    let v = b.slice_cols(&qkv, 2 * inner, inner)?;
    let heads = Heads {
        n_heads: shape.heads,
        n_kv_heads: shape.heads,
        head_dim: shape.head_dim,
    };
    let a = b.attention(&q, &k, &v, heads, mask)?;
    let out_w = matrix(
        b,
        w,
        &format!("{prefix}attn.out_proj.weight"),
        &[width, inner],
        width,
        inner,
    )?;
    let out_b = vector(b, w, &format!("{prefix}attn.out_proj.bias"), width)?;
    let a = b.linear(&a, &out_w, Layout::OutIn, Some(&out_b))?;
    let x = b.add(&x, &a)?;
    let h = layer_norm(b, w, &format!("{prefix}ln_2"), &x, shape.eps)?;
    let h = linear_activation(
        b,
        w,
        &format!("{prefix}mlp.c_fc"),
        &h,
        (shape.mlp_width, true),
        shape.act,
    )?;
    let h = linear(b, w, &format!("{prefix}mlp.c_proj"), &h, width, true)?;
    b.add(&x, &h)
}

/// `encode_image`: the projected image feature `[1, embed_dim]`, before
/// normalisation. `image` is `[3, res·res]`, already preprocessed.
pub fn encode_image<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    cfg: &VitConfig,
    image: Vec<f32>,
    layers: usize,
) -> Result<B::Tensor> {
    let p = &cfg.prefix;
    let (res, patch, width) = (cfg.resolution, cfg.patch, cfg.width);
    let grid = res / patch;
    // The embeddings' weights and intermediates go out of scope before the
    // blocks run, so the pass holds one block's weights at a time.
    let mut x = {
        let image = b.upload(image, 3, res * res)?;
        let patches = b.im2col(&image, 3, res, patch)?;
        let conv = matrix(
            b,
            w,
            &format!("{p}conv1.weight"),
            &[width, 3, patch, patch],
            width,
            3 * patch * patch,
        )?;
        let x = b.linear(&patches, &conv, Layout::OutIn, None)?;
        let class = vector(b, w, &format!("{p}class_embedding"), width)?;
        let x = b.concat_rows(&class, &x)?;
        let n = grid * grid + 1;
        let pos = weight(
            b,
            w,
            &format!("{p}positional_embedding"),
            &[n, width],
            n,
            width,
        )?;
        let x = b.add(&x, &pos)?;
        layer_norm(b, w, &format!("{p}ln_pre"), &x, cfg.eps)?
    };
    b.end_block()?;
    let shape = BlockShape {
        width,
        heads: cfg.heads,
        head_dim: width / cfg.heads,
        mlp_width: cfg.mlp_width,
        act: cfg.act,
        eps: cfg.eps,
    };
    for i in 0..layers.min(cfg.layers) {
        let prefix = format!("{p}transformer.resblocks.{i}.");
        x = residual_block(b, w, &prefix, x, &shape, &AttentionMask::default())?;
        b.end_block()?;
    }
    let x = b.gather(&x, &[0])?;
    let x = layer_norm(b, w, &format!("{p}ln_post"), &x, cfg.eps)?;
    let proj = matrix(
        b,
        w,
        &format!("{p}proj"),
        &[width, cfg.embed_dim],
        width,
        cfg.embed_dim,
    )?;
    b.linear(&x, &proj, Layout::InOut, None)
}

/// open_clip's `encode_text`: the projected feature at the end-of-text
/// token (the largest id, as open_clip's argmax pooling takes it).
pub fn encode_text<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    cfg: &ClipTextConfig,
    ids: &[u32],
    layers: usize,
) -> Result<B::Tensor> {
    let width = cfg.width;
    let t = ids.len();
    // The token table goes out of scope before the blocks run.
    let mut x = {
        let table = weight(
            b,
            w,
            "token_embedding.weight",
            &[cfg.vocab, width],
            cfg.vocab,
            width,
        )?;
        let x = b.gather(&table, ids)?;
        let pos = weight(
            b,
            w,
            "positional_embedding",
            &[cfg.context, width],
            cfg.context,
            width,
        )?;
        let positions: Vec<u32> = (0..t as u32).collect();
        let pos = b.gather(&pos, &positions)?;
        b.add(&x, &pos)?
    };
    b.end_block()?;
    let shape = BlockShape {
        width,
        heads: cfg.heads,
        head_dim: width / cfg.heads,
        mlp_width: cfg.mlp_width,
        act: cfg.act,
        eps: cfg.eps,
    };
    let mask = AttentionMask {
        causal: true,
        key_valid: Vec::new(),
    };
    for i in 0..layers.min(cfg.layers) {
        x = residual_block(
            b,
            w,
            &format!("transformer.resblocks.{i}."),
            x,
            &shape,
            &mask,
        )?;
        b.end_block()?;
    }
    let x = layer_norm(b, w, "ln_final", &x, cfg.eps)?;
    // torch.argmax returns the first maximal index.
    let mut eot = 0;
    for (i, id) in ids.iter().enumerate() {
        if *id > ids[eot] {
            eot = i;
        }
    }
    let x = b.gather(&x, &[eot as u32])?;
    let proj = matrix(
        b,
        w,
        "text_projection",
        &[width, cfg.embed_dim],
        width,
        cfg.embed_dim,
    )?;
    b.linear(&x, &proj, Layout::InOut, None)
}
