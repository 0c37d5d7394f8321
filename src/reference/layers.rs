//! The named layers every model graph here shares: `nn.LayerNorm` and
//! `nn.Linear` read from the weights by their module prefix and run on any
//! `Backend`. Model files (`vit`, `bert`, `gpt2`, `llama`) import these and
//! never each other; layers only one model has (GPT-2's `Conv1D`, LLaMA's
//! RMSNorm) stay in that model's file.

use super::{matrix, vector, Activation, Backend, Layout};
use crate::error::Result;
use crate::weights::WeightSource;

/// `nn.LayerNorm` named `{prefix}.weight` / `{prefix}.bias`.
pub fn layer_norm<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    prefix: &str,
    x: &B::Tensor,
    eps: f32,
) -> Result<B::Tensor> {
    let n = b.dims(x).1;
    let gamma = vector(b, w, &format!("{prefix}.weight"), n)?;
    let beta = vector(b, w, &format!("{prefix}.bias"), n)?;
    b.layer_norm(x, &gamma, &beta, eps)
}

/// `nn.Linear(in, out)` named `{prefix}.weight` / `{prefix}.bias`.
pub fn linear<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    prefix: &str,
    x: &B::Tensor,
    out: usize,
    bias: bool,
) -> Result<B::Tensor> {
    linear_then(b, w, prefix, x, out, bias, None)
}

/// `nn.Linear` followed by an activation (an MLP's first layer), as one
/// backend operation (`Backend::linear_activation`).
pub fn linear_activation<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    prefix: &str,
    x: &B::Tensor,
    (out, bias): (usize, bool),
    act: Activation,
) -> Result<B::Tensor> {
    linear_then(b, w, prefix, x, out, bias, Some(act))
}

fn linear_then<B: Backend>(
    b: &mut B,
    w: &dyn WeightSource,
    prefix: &str,
    x: &B::Tensor,
    out: usize,
    bias: bool,
    act: Option<Activation>,
) -> Result<B::Tensor> {
    let k = b.dims(x).1;
    let weight_t = matrix(b, w, &format!("{prefix}.weight"), &[out, k], out, k)?;
    let bias_t = if bias {
        Some(vector(b, w, &format!("{prefix}.bias"), out)?)
    } else {
        None
    };
    match act {
        Some(act) => b.linear_activation(x, &weight_t, Layout::OutIn, bias_t.as_ref(), act),
        None => b.linear(x, &weight_t, Layout::OutIn, bias_t.as_ref()),
    }
}
