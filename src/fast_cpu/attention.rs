//! Scaled dot-product attention for the fast CPU backend: per head, the
//! scores are one SGEMM over strided views of q and k (no copies of the
//! heads), the mask and a row softmax run in place, and the weighted sum is
//! a second SGEMM against v. Heads run side by side on the threads. The
//! result equals `reference::ops::attention` (f64 sums there, f32 SGEMM
//! here) to rounding; the tests check both the arithmetic and the masks.

use super::elementwise;
use super::matmul::{matmul_into, View};
use super::threads::Threads;
use crate::reference::{AttentionMask, Heads};

/// `q` is `[t, n_heads·d]`, `k` and `v` `[s, n_kv_heads·d]`; the result is
/// `[t, n_heads·d]`, heads side by side.
#[allow(clippy::too_many_arguments)] // the reference's seven, and the threads
pub fn attention(
    threads: &Threads,
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
        head_dim: d,
    } = heads;
    let group = (n_heads / n_kv_heads.max(1)).max(1);
    let scale = 1.0 / (d as f32).sqrt();
    // Per head: its scores [t, s] and its output [t, d], allocated here (see
    // `Threads::for_each_mut`).
    let mut per_head: Vec<(Vec<f32>, Vec<f32>)> = (0..n_heads)
        .map(|_| (vec![0f32; t * s], vec![0f32; t * d]))
        .collect();
    threads.for_each_mut(&mut per_head, |h, (scores, out)| {
        let kv = h / group;
        let q_head = View {
            data: q,
            offset: h * d,
            rows: t,
            cols: d,
            row_stride: n_heads * d,
            col_stride: 1,
        };
        let k_head = View {
            data: k,
            offset: kv * d,
            rows: s,
            cols: d,
            row_stride: n_kv_heads * d,
            col_stride: 1,
        };
        let v_head = View {
            offset: kv * d,
            data: v,
            ..k_head
        };
        matmul_into(q_head, k_head.transposed(), scale, false, scores);
        for (i, row) in scores.chunks_exact_mut(s.max(1)).enumerate() {
            masked_softmax_row(row, i, mask);
        }
        matmul_into(View::row_major(scores, t, s), v_head, 1.0, false, out);
    });
    let mut out = vec![0f32; t * n_heads * d];
    for (h, (_, head)) in per_head.iter().enumerate() {
        for (i, row) in head.chunks_exact(d.max(1)).enumerate() {
            let start = i * n_heads * d + h * d;
            out[start..start + d].copy_from_slice(row);
        }
    }
    out
}

/// Keys the query may not see get probability 0; the rest a softmax with the
/// row maximum subtracted first (the reference's choices).
fn masked_softmax_row(row: &mut [f32], query: usize, mask: &AttentionMask) {
    let mut max = f32::NEG_INFINITY;
    for (j, score) in row.iter_mut().enumerate() {
        let visible =
            (!mask.causal || j <= query) && mask.key_valid.get(j).copied().unwrap_or(true);
        if visible {
            max = max.max(*score);
        } else {
            *score = f32::NEG_INFINITY;
        }
    }
    let mut sum = 0f64;
    for score in row.iter_mut() {
        // -inf (a hidden key) minus a finite max is -inf: probability 0.
        *score = elementwise::exp(*score - max);
        sum += f64::from(*score);
    }
    let inverse = (1.0 / sum) as f32;
    for score in row.iter_mut() {
        *score *= inverse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::ops;

    /// Values in -2..2, so that scores spread beyond softmax's flat middle.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::fast_cpu::test_values(n, seed)
            .into_iter()
            .map(|v| v * 2.0)
            .collect()
    }

    #[test]
    fn attention_equals_the_reference_for_each_mask_and_head_grouping() {
        let masks = [
            AttentionMask::default(),
            AttentionMask {
                causal: true,
                key_valid: vec![],
            },
            AttentionMask {
                causal: false,
                key_valid: vec![true, true, false, true, false, true, true],
            },
        ];
        // (t, s, heads, kv heads, d): ViT-like, one query, grouped-query.
        for &(t, s, n_heads, n_kv_heads, d) in &[
            (7, 7, 3, 3, 5),
            (1, 7, 2, 2, 4),
            (7, 7, 4, 2, 3),
            (7, 7, 8, 1, 16),
        ] {
            for mask in &masks {
                for count in [1, 2] {
                    let threads = Threads::new(Some(count)).unwrap();
                    let heads = Heads {
                        n_heads,
                        n_kv_heads,
                        head_dim: d,
                    };
                    let q = values(t * n_heads * d, 1);
                    let k = values(s * n_kv_heads * d, 2);
                    let v = values(s * n_kv_heads * d, 3);
                    let want = ops::attention(&q, &k, &v, t, s, heads, mask);
                    let got = attention(&threads, &q, &k, &v, t, s, heads, mask);
                    let worst = crate::fast_cpu::test_max_difference(&got, &want);
                    assert!(
                        worst <= 1e-5,
                        "t {t} s {s} heads {n_heads}/{n_kv_heads} d {d} {mask:?}: off by {worst}"
                    );
                }
            }
        }
    }
}
