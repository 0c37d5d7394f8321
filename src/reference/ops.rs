//! The operations of a transformer forward pass in plain f32 Rust, written
//! to be obviously right rather than fast: each is the textbook formula with
//! the numerically careful choices PyTorch makes (layer norm over two passes,
//! softmax with the row maximum subtracted, erf GELU through an erfc
//! approximation evaluated in f64). These are the oracle the WGSL kernels in
//! `src/gpu/kernels/` are tested against, and the CPU backend of the model
//! graphs in this module's siblings.
//!
//! Matrices are row-major `[rows, cols]` slices; the batch size is always 1,
//! so a sequence of T tokens of width H is a `[T, H]` matrix.

/// How a linear layer's weight is laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `nn.Linear`: `[out, in]`, `y = x Wᵀ + b`.
    OutIn,
    /// GPT-2 `Conv1D` and CLIP's `proj` parameters: `[in, out]`, `y = x W + b`.
    InOut,
}

/// `y[m, n] = x[m, k] · W + b` with `W` laid out as `layout` says.
pub fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    layout: Layout,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "linear: x is not [m, k]");
    assert_eq!(w.len(), k * n, "linear: w is not k·n");
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let mut sum = 0f64;
            for (kk, xv) in row.iter().enumerate() {
                let wv = match layout {
                    Layout::OutIn => w[j * k + kk],
                    Layout::InOut => w[kk * n + j],
                };
                sum += *xv as f64 * wv as f64;
            }
            y[i * n + j] = sum as f32 + bias.map_or(0.0, |b| b[j]);
        }
    }
    y
}

/// `nn.LayerNorm` over the last dimension: `(x - mean) / sqrt(var + eps) * g + b`
/// with the biased variance, mean and variance in two passes.
pub fn layer_norm(x: &[f32], cols: usize, gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    layer_norm_into(x, cols, gamma, beta, eps, &mut out);
    out
}

/// `layer_norm` into `out` (the fast CPU backend writes blocks of rows).
pub fn layer_norm_into(
    x: &[f32],
    cols: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    for (row, out) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mean = row.iter().map(|v| *v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, (o, v)) in out.iter_mut().zip(row).enumerate() {
            *o = ((*v as f64 - mean) * inv) as f32 * gamma[j] + beta[j];
        }
    }
}

/// LLaMA's RMSNorm: `x / sqrt(mean(x²) + eps) * g`.
pub fn rms_norm(x: &[f32], cols: usize, gamma: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    rms_norm_into(x, cols, gamma, eps, &mut out);
    out
}

/// `rms_norm` into `out`.
pub fn rms_norm_into(x: &[f32], cols: usize, gamma: &[f32], eps: f32, out: &mut [f32]) {
    for (row, out) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mean_square = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / cols as f64;
        let inv = 1.0 / (mean_square + eps as f64).sqrt();
        for (j, (o, v)) in out.iter_mut().zip(row).enumerate() {
            *o = gamma[j] * (*v as f64 * inv) as f32;
        }
    }
}

/// The coefficients of `erfc`'s fit, `ln(erfc(z)/t) ≈ -z² + c0 + t·(c1 +
/// t·(c2 + …))` with `t = 1/(1 + z/2)`. The fast CPU backend evaluates the
/// same fit in f32.
pub const ERFC_FIT: [f64; 10] = [
    -1.265_512_23,
    1.000_023_68,
    0.374_091_96,
    0.096_784_18,
    -0.186_288_06,
    0.278_868_07,
    -1.135_203_98,
    1.488_515_87,
    -0.822_152_23,
    0.170_872_77,
];

/// The complementary error function, fractional error below 1.2e-7
/// everywhere (Numerical Recipes `erfcc`, a Chebyshev fit).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let [c0, rest @ ..] = ERFC_FIT;
    let tail = rest.iter().rev().fold(0.0, |acc, c| c + t * acc);
    let poly = -z * z + c0 + t * tail;
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Element-wise activations by the names the configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x/2 · (1 + erf(x/√2))`: BERT's "gelu", open_clip's default.
    GeluErf,
    /// `x/2 · (1 + tanh(√(2/π)(x + 0.044715x³)))`: GPT-2's "gelu_new".
    GeluTanh,
    /// `x · σ(1.702x)`: OpenAI CLIP and Chinese-CLIP ViTs.
    QuickGelu,
    /// `x · σ(x)`: LLaMA's gate.
    Silu,
}

pub fn activation_value(act: Activation, x: f32) -> f32 {
    let v = x as f64;
    let y = match act {
        Activation::GeluErf => 0.5 * v * erfc(-v / std::f64::consts::SQRT_2),
        Activation::GeluTanh => {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
            0.5 * v * (1.0 + inner.tanh())
        }
        Activation::QuickGelu => v / (1.0 + (-1.702 * v).exp()),
        Activation::Silu => v / (1.0 + (-v).exp()),
    };
    y as f32
}

pub fn activation(act: Activation, x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| activation_value(act, *v)).collect()
}

/// LLaMA's MLP gate: `silu(gate) * up`.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "swiglu: gate and up differ in length");
    gate.iter()
        .zip(up)
        .map(|(g, u)| activation_value(Activation::Silu, *g) * u)
        .collect()
}

/// Residual connection.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "add: operands differ in length");
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Softmax of each row, the row maximum subtracted first so that large
/// logits do not overflow. `-inf` entries get probability 0.
pub fn softmax(x: &[f32], cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f64> = row.iter().map(|v| ((*v - max) as f64).exp()).collect();
        let sum: f64 = exps.iter().sum();
        out.extend(exps.iter().map(|e| (e / sum) as f32));
    }
    out
}

/// Which keys each query may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttentionMask {
    /// Query t sees keys 0..=t (decoders, the open_clip text tower).
    pub causal: bool,
    /// Per key: false for padding that no query may see (BERT's
    /// attention_mask). Empty means every key is real.
    pub key_valid: Vec<bool>,
}

/// Attention head counts: `n_heads` query heads of width `head_dim`, sharing
/// `n_kv_heads` key/value heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Scaled dot-product attention for one sequence. `q` is `[t, n_heads·d]`,
/// `k` and `v` are `[s, n_kv_heads·d]` (grouped-query attention shares each
/// kv head among `n_heads / n_kv_heads` query heads); the result is
/// `[t, n_heads·d]`, heads side by side as PyTorch's reshape leaves them.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    s: usize,
    heads: Heads,
    mask: &AttentionMask,
) -> Vec<f32> {
    let Heads {
        n_heads,
        n_kv_heads,
        head_dim,
    } = heads;
    let d = head_dim;
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f32; t * n_heads * d];
    for h in 0..n_heads {
        let kv = h / group;
        for i in 0..t {
            let mut scores = vec![f32::NEG_INFINITY; s];
            for (j, score) in scores.iter_mut().enumerate() {
                let visible =
                    (!mask.causal || j <= i) && mask.key_valid.get(j).copied().unwrap_or(true);
                if !visible {
                    continue;
                }
                let mut dot = 0f64;
                for c in 0..d {
                    dot += q[i * n_heads * d + h * d + c] as f64
                        * k[j * n_kv_heads * d + kv * d + c] as f64;
                }
                *score = (dot * scale) as f32;
            }
            let p = softmax(&scores, s);
            for c in 0..d {
                let mut sum = 0f64;
                for (j, pj) in p.iter().enumerate() {
                    sum += *pj as f64 * v[j * n_kv_heads * d + kv * d + c] as f64;
                }
                out[i * n_heads * d + h * d + c] = sum as f32;
            }
        }
    }
    out
}

/// Rotary position embedding as Hugging Face's LLaMA applies it
/// (`rotate_half`: the two halves of each head form the pairs), position of
/// row i = i. `x` is `[t, n_heads·d]`.
pub fn rope(x: &[f32], t: usize, n_heads: usize, head_dim: usize, theta: f32) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = x.to_vec();
    for pos in 0..t {
        for h in 0..n_heads {
            let base = pos * n_heads * head_dim + h * head_dim;
            for i in 0..half {
                let inv_freq = 1.0 / (theta as f64).powf(2.0 * i as f64 / head_dim as f64);
                // HF computes the angle in f32: keep the same rounding.
                let angle = (pos as f32 * inv_freq as f32) as f64;
                let (sin, cos) = angle.sin_cos();
                let a = x[base + i] as f64;
                let b = x[base + i + half] as f64;
                out[base + i] = (a * cos - b * sin) as f32;
                out[base + i + half] = (b * cos + a * sin) as f32;
            }
        }
    }
    out
}

/// Rows of `table` (`[n_rows, cols]`) picked by `ids`: embeddings, and the
/// [CLS] / end-of-text row of a sequence.
pub fn gather(table: &[f32], cols: usize, ids: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(ids.len() * cols);
    for id in ids {
        let start = *id as usize * cols;
        out.extend_from_slice(&table[start..start + cols]);
    }
    out
}

/// The patches of a `[channels, res, res]` image as rows for a convolution
/// with kernel = stride = `patch` (im2col): row `py·g + px` holds the patch's
/// pixels in the conv weight's `(c, ky, kx)` order, so the convolution is
/// `linear(im2col(image), conv_weight as [width, c·p·p])`.
pub fn im2col(image: &[f32], channels: usize, res: usize, patch: usize) -> Vec<f32> {
    let grid = res / patch;
    let mut out = Vec::with_capacity(grid * grid * channels * patch * patch);
    for py in 0..grid {
        for px in 0..grid {
            for c in 0..channels {
                for ky in 0..patch {
                    for kx in 0..patch {
                        let y = py * patch + ky;
                        let x = px * patch + kx;
                        out.push(image[c * res * res + y * res + x]);
                    }
                }
            }
        }
    }
    out
}

/// Columns `start..start+len` of a `[rows, cols]` matrix (q, k and v out of
/// a fused projection).
pub fn slice_cols(x: &[f32], cols: usize, start: usize, len: usize) -> Vec<f32> {
    x.chunks_exact(cols)
        .flat_map(|row| row[start..start + len].iter().copied())
        .collect()
}

/// `[a; b]`: the rows of `b` below the rows of `a` (the class token above
/// the patches).
pub fn concat_rows(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = a.to_vec();
    out.extend_from_slice(b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
        }
    }

    #[test]
    fn linear_agrees_in_both_layouts_and_adds_the_bias() {
        // x = [[1, 2]], W (out=3, in=2) = [[1, 0], [0, 1], [1, 1]], b = [0.5, 0, -1]
        let x = [1.0, 2.0];
        let w_out_in = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let w_in_out = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let b = [0.5, 0.0, -1.0];
        let want = [1.5, 2.0, 2.0];
        close(
            &linear(&x, 1, 2, &w_out_in, 3, Layout::OutIn, Some(&b)),
            &want,
            0.0,
        );
        close(
            &linear(&x, 1, 2, &w_in_out, 3, Layout::InOut, Some(&b)),
            &want,
            0.0,
        );
    }

    #[test]
    fn layer_norm_and_rms_norm_match_hand_computed_rows() {
        // [1, 2, 3]: mean 2, biased var 2/3.
        let inv = 1.0 / (2.0f64 / 3.0 + 1e-5).sqrt();
        let want: Vec<f32> = [-1.0, 0.0, 1.0].iter().map(|d| (d * inv) as f32).collect();
        close(
            &layer_norm(&[1.0, 2.0, 3.0], 3, &[1.0; 3], &[0.0; 3], 1e-5),
            &want,
            1e-6,
        );
        // mean square of [3, 4] is 12.5.
        let got = rms_norm(&[3.0, 4.0], 2, &[1.0, 2.0], 0.0);
        close(&got, &[3.0 / 12.5f32.sqrt(), 8.0 / 12.5f32.sqrt()], 1e-6);
    }

    #[test]
    fn activations_match_known_values() {
        // torch.nn.functional.gelu(torch.tensor([-1., 0.5, 3.])) and with
        // approximate="tanh"; quick gelu and silu from their definitions.
        close(
            &activation(Activation::GeluErf, &[-1.0, 0.5, 3.0]),
            &[-0.158_655_25, 0.345_731_14, 2.995_950_4],
            1e-6,
        );
        close(
            &activation(Activation::GeluTanh, &[-1.0, 0.5, 3.0]),
            &[-0.158_808, 0.345_714, 2.996_363_7],
            1e-6,
        );
        close(
            &activation(Activation::QuickGelu, &[1.0]),
            &[1.0 / (1.0 + (-1.702f32).exp())],
            1e-6,
        );
        close(
            &activation(Activation::Silu, &[2.0]),
            &[2.0 / (1.0 + (-2.0f32).exp())],
            1e-6,
        );
        close(
            &swiglu(&[2.0], &[3.0]),
            &[6.0 / (1.0 + (-2.0f32).exp())],
            1e-6,
        );
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207_050_285).abs() < 2e-8);
    }

    #[test]
    fn softmax_subtracts_the_row_max_and_ignores_masked_entries() {
        let got = softmax(&[1000.0, 1000.0, f32::NEG_INFINITY, 0.0, 2f32.ln(), 0.0], 3);
        close(&got, &[0.5, 0.5, 0.0, 0.25, 0.5, 0.25], 1e-7);
    }

    #[test]
    fn attention_with_one_key_returns_its_value_and_masks_hide_keys() {
        // Two queries, two keys, one head of width 1. Causal: query 0 sees
        // only key 0, so it returns v[0].
        let one = Heads {
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: 1,
        };
        let q = [1.0, 1.0];
        let k = [0.0, 1.0];
        let v = [10.0, 20.0];
        let causal = AttentionMask {
            causal: true,
            key_valid: vec![],
        };
        let got = attention(&q, &k, &v, 2, 2, one, &causal);
        let p1 = 1.0 / (1.0 + (-1.0f64).exp());
        close(&got, &[10.0, (10.0 * (1.0 - p1) + 20.0 * p1) as f32], 1e-5);
        let padded = AttentionMask {
            causal: false,
            key_valid: vec![true, false],
        };
        close(
            &attention(&q, &k, &v, 2, 2, one, &padded),
            &[10.0, 10.0],
            0.0,
        );
        // Grouped-query: two query heads share one kv head.
        let q2 = [1.0, 5.0];
        let got = attention(
            &q2,
            &[3.0],
            &[7.0],
            1,
            1,
            Heads {
                n_heads: 2,
                n_kv_heads: 1,
                head_dim: 1,
            },
            &AttentionMask::default(),
        );
        close(&got, &[7.0, 7.0], 0.0);
    }

    #[test]
    fn rope_rotates_pairs_of_halves_by_position() {
        // Position 0 is the identity; at position 1 with d = 2 the pair
        // (x0, x1) rotates by 1 radian.
        let x = [1.0, 0.0, 1.0, 0.0];
        let got = rope(&x, 2, 1, 2, 10000.0);
        close(&got, &[1.0, 0.0, 1f32.cos(), 1f32.sin()], 1e-6);
    }

    #[test]
    fn gather_im2col_slice_and_concat_move_the_right_elements() {
        assert_eq!(
            gather(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 2, &[2, 0]),
            vec![4.0, 5.0, 0.0, 1.0]
        );
        // One channel, 4x4 image of 0..16, patch 2: patch (0, 1) is
        // pixels 2, 3, 6, 7.
        let image: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let cols = im2col(&image, 1, 4, 2);
        assert_eq!(&cols[4..8], &[2.0, 3.0, 6.0, 7.0]);
        assert_eq!(
            slice_cols(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 1, 2),
            vec![2.0, 3.0, 5.0, 6.0]
        );
        assert_eq!(concat_rows(&[1.0], &[2.0, 3.0]), vec![1.0, 2.0, 3.0]);
    }
}
