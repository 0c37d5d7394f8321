//! The hyperparameters each model graph reads: one plain struct per graph
//! (`VitConfig` and `ClipTextConfig` for `vit`, `BertConfig`, `Gpt2Config`,
//! `LlamaConfig`). They live apart from `model`, which fills them in from
//! config JSON and dispatches to the graphs, so that the graphs import only
//! shared pieces and never the dispatcher that calls them. No parsing and no
//! defaults here: `model` reads the config values and owns the defaults.

use super::ops::Activation;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VitConfig {
    /// `visual.` for CLIP checkpoints.
    pub prefix: String,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub patch: usize,
    pub resolution: usize,
    pub mlp_width: usize,
    pub embed_dim: usize,
    #[serde(skip)]
    pub act: Activation,
    pub eps: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipTextConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub context: usize,
    pub vocab: usize,
    pub embed_dim: usize,
    #[serde(skip)]
    pub act: Activation,
    pub eps: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BertConfig {
    /// `bert.` (Chinese-CLIP, task heads); a bare `BertModel` file without
    /// it is found too.
    pub prefix: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f32,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    #[serde(skip)]
    pub act: Activation,
    pub pad_token_id: u32,
    /// RoBERTa: positions start at padding_idx + 1.
    pub roberta_padding_idx: Option<u32>,
    /// Chinese-CLIP: `text_projection` `[hidden, embed_dim]` on [CLS].
    pub projection: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpt2Config {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_inner: usize,
    pub eps: f32,
    pub vocab: usize,
    pub n_positions: usize,
    #[serde(skip)]
    pub act: Activation,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub eps: f32,
    pub rope_theta: f32,
    pub vocab: usize,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
}
