//! The activations and the exponential in f32 arithmetic. The reference
//! evaluates each in f64 (GELU's erfc through a Chebyshev fit, an f64 `exp`
//! per element); here the same formulas run in f32 on an `exp` written as
//! plain arithmetic (Cephes' `expf`: a range reduction by ln 2 and a
//! degree-6 polynomial), which the compiler vectorizes where a call to
//! libm's `expf` stays one element at a time, as PyTorch's own CPU kernels
//! do with their vectorized exp. The tests bound the difference from the
//! reference over the range activations take.

use crate::reference::{ops, Activation};

/// `e^x` for f32 within 2 ulp-ish (relative error below 2e-7 on the
/// normal range; measured in the tests): 0 below -87.3 (where e^x is no
/// longer a normal f32) and for -inf, +inf above 88.7, NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·ln2 is exact for |n| < 2^9.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer with
    // plain SSE2 arithmetic (no round instruction needed to vectorize).
    const ROUND: f32 = 12_582_912.0;
    if x < -87.336_55 {
        return 0.0;
    }
    if x > 88.722_83 {
        return f32::INFINITY;
    }
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n by building the exponent; n is in -126..=128 here, and 2^128 is
    // handled as 2 · 2^127.
    let n = n as i32;
    let half = n / 2;
    y * f32::from_bits(((half + 127) as u32) << 23)
        * f32::from_bits(((n - half + 127) as u32) << 23)
}

/// `out[i] = act(x[i])`, one loop per activation so that each vectorizes.
/// `activation_into` over `values` in place (a product's block, still in
/// cache: `linear_activation`).
pub fn activation_in_place(act: Activation, values: &mut [f32]) {
    // One loop per activation, so each vectorizes (as `activation_into`).
    fn each(values: &mut [f32], f: impl Fn(f32) -> f32) {
        for v in values.iter_mut() {
            *v = f(*v);
        }
    }
    match act {
        Activation::GeluErf => each(values, |v| activation_value(Activation::GeluErf, v)),
        Activation::GeluTanh => each(values, |v| activation_value(Activation::GeluTanh, v)),
        Activation::QuickGelu => each(values, |v| activation_value(Activation::QuickGelu, v)),
        Activation::Silu => each(values, |v| activation_value(Activation::Silu, v)),
    }
}

pub fn activation_into(act: Activation, x: &[f32], out: &mut [f32]) {
    fn each(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
        for (o, v) in out.iter_mut().zip(x) {
            *o = f(*v);
        }
    }
    match act {
        Activation::GeluErf => each(x, out, |v| activation_value(Activation::GeluErf, v)),
        Activation::GeluTanh => each(x, out, |v| activation_value(Activation::GeluTanh, v)),
        Activation::QuickGelu => each(x, out, |v| activation_value(Activation::QuickGelu, v)),
        Activation::Silu => each(x, out, |v| activation_value(Activation::Silu, v)),
    }
}

/// `erfc(x)` by the reference's Chebyshev fit (Numerical Recipes `erfcc`,
/// fractional error below 1.2e-7), in f32.
#[inline(always)]
fn erfc(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let [c0, rest @ ..] = ops::ERFC_FIT;
    let tail = rest.iter().rev().fold(0.0f32, |acc, c| *c as f32 + t * acc);
    let poly = -z * z + c0 as f32 + t * tail;
    let r = t * exp(poly);
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[inline(always)]
pub fn activation_value(act: Activation, x: f32) -> f32 {
    match act {
        Activation::GeluErf => 0.5 * x * erfc(-x * std::f32::consts::FRAC_1_SQRT_2),
        Activation::GeluTanh => {
            // 1 + tanh(u) = 2 - 2 / (e^2u + 1), which stays finite (2) when
            // e^2u overflows.
            let inner = 0.797_884_6 * (x + 0.044_715 * x * x * x);
            0.5 * x * (2.0 - 2.0 / (exp(2.0 * inner) + 1.0))
        }
        Activation::QuickGelu => x / (1.0 + exp(-1.702 * x)),
        Activation::Silu => x / (1.0 + exp(-x)),
    }
}

/// LLaMA's MLP gate, `silu(gate) · up`, into `out`.
pub fn swiglu_into(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = activation_value(Activation::Silu, *g) * u;
    }
}

/// The rotary embedding's (cos, sin) per position and pair, `t × d/2`,
/// computed exactly as the reference computes each (HF's f32 angle, then f64
/// sin and cos), once per call rather than once per head.
pub fn rope_table(t: usize, head_dim: usize, theta: f32) -> Vec<(f64, f64)> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| (1.0 / (theta as f64).powf(2.0 * i as f64 / head_dim as f64)) as f32)
        .collect();
    let mut table = Vec::with_capacity(t * half);
    for pos in 0..t {
        for f in &inv_freq {
            let angle = (pos as f32 * f) as f64;
            let (sin, cos) = angle.sin_cos();
            table.push((cos, sin));
        }
    }
    table
}

/// `reference::ops::rope` on the rows of `x` that start at position
/// `first_pos`, with the table of `rope_table`.
pub fn rope_rows_into(
    x: &[f32],
    first_pos: usize,
    n_heads: usize,
    head_dim: usize,
    table: &[(f64, f64)],
    out: &mut [f32],
) {
    let half = head_dim / 2;
    let width = n_heads * head_dim;
    out.copy_from_slice(x);
    for (row, values) in out.chunks_exact_mut(width.max(1)).enumerate() {
        let angles = &table[(first_pos + row) * half..(first_pos + row + 1) * half];
        for head in values.chunks_exact_mut(head_dim.max(1)) {
            for (i, (cos, sin)) in angles.iter().enumerate() {
                let a = head[i] as f64;
                let b = head[i + half] as f64;
                head[i] = (a * cos - b * sin) as f32;
                head[i + half] = (b * cos + a * sin) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_by_table_equals_the_reference_bit_for_bit() {
        // 5 positions, 3 heads of width 8, rows split at position 2.
        let (t, heads, d) = (5, 3, 8);
        let x: Vec<f32> = (0..t * heads * d)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let want = ops::rope(&x, t, heads, d, 10000.0);
        let table = rope_table(t, d, 10000.0);
        let mut got = vec![0f32; x.len()];
        let split = 2 * heads * d;
        rope_rows_into(&x[..split], 0, heads, d, &table, &mut got[..split]);
        rope_rows_into(&x[split..], 2, heads, d, &table, &mut got[split..]);
        assert_eq!(got, want);
    }

    #[test]
    fn exp_is_within_2e_7_of_f64_exp_and_saturates_at_the_ends() {
        for step in -90_000..=90_000 {
            let x = step as f32 / 1000.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            if want < f32::MIN_POSITIVE as f64 {
                assert!(got < f32::MIN_POSITIVE as f64 * 4.0, "exp({x}) = {got}");
                continue;
            }
            if want > f32::MAX as f64 {
                assert!(got.is_infinite(), "exp({x}) = {got}");
                continue;
            }
            assert!(
                ((got - want) / want).abs() < 2e-7,
                "exp({x}): {got} vs {want}"
            );
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn each_activation_is_within_f32_rounding_of_the_reference() {
        // -12..12 in steps of 1/64: the tails (erfc near 0 and 2, exp
        // overflow guarded by the division) and the curved middle.
        for act in [
            Activation::GeluErf,
            Activation::GeluTanh,
            Activation::QuickGelu,
            Activation::Silu,
        ] {
            for step in -768..=768 {
                let x = step as f32 / 64.0;
                let want = ops::activation_value(act, x);
                let got = activation_value(act, x);
                let allowed = 4e-7 * want.abs().max(1.0);
                assert!(
                    (got - want).abs() <= allowed,
                    "{act:?}({x}): {got} vs the reference's {want}"
                );
            }
        }
        let mut out = [0f32; 2];
        swiglu_into(&[2.0, -1.0], &[3.0, 0.5], &mut out);
        let want = ops::swiglu(&[2.0, -1.0], &[3.0, 0.5]);
        assert!((out[0] - want[0]).abs() < 1e-6 && (out[1] - want[1]).abs() < 1e-6);
    }
}
