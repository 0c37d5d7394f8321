//! The f32 statistics kernels for x86_64, for the common case of batches
//! with no NaN or Inf (the portable kernel in `stats.rs` handles the rest).
//! Both kernels give every batch four lanes: lane i sees values i, i+4,
//! i+8, … and keeps its own finite and zero counts (i32), sum and squared
//! deviations (f64) and min and max (f32, exact). The lanes are folded in
//! one fixed order by shared code, so both kernels give the same bits.
//!
//! SSE2 (the x86_64 baseline) does one batch at a time. Its sums are chains
//! of dependent f64 additions, so it waits on their latency, not on the
//! vector width. The AVX2 kernel takes two batches of equal length at once,
//! one per half of each 256-bit register. Each batch keeps its own lanes, so
//! its sums are the same additions in the same order; the two batches'
//! chains run side by side, which about doubles the kernel's rate. Widening
//! one batch's lanes instead would change the order of its sums, and with
//! it the last bits of the statistics.
//!
//! No pointer is dereferenced: values enter through `_mm_setr_ps` from
//! bounds-checked slices, and registers leave through `transmute` to arrays
//! of the same size (every bit pattern is a valid f32, f64 or i32).

use super::Moments;
use std::arch::x86_64::*;

/// What the first pass leaves for one batch, lane by lane.
struct FirstPass {
    finite: [u32; 4],
    zeros: [u32; 4],
    sum: [f64; 4],
    low: [f32; 4],
    high: [f32; 4],
}

/// The batch's mean, or `None` when a value (in the lanes or in the `rest`
/// the lanes did not take) is NaN or Inf.
fn mean_of(count: usize, lanes: &FirstPass, rest: &[f32]) -> Option<f64> {
    let finite: u64 = lanes.finite.iter().map(|lane| *lane as u64).sum();
    if rest.iter().any(|v| !v.is_finite()) || finite + rest.len() as u64 != count as u64 {
        return None;
    }
    let [a, b, c, d] = lanes.sum;
    let total = (a + b) + (c + d) + rest.iter().map(|v| *v as f64).sum::<f64>();
    Some(if count > 0 { total / count as f64 } else { 0.0 })
}

/// The batch's statistics from both passes' lanes.
fn finish(count: usize, lanes: &FirstPass, mean: f64, m2: [f64; 4], rest: &[f32]) -> Moments {
    let [a, b, c, d] = m2;
    let m2 = (a + b)
        + (c + d)
        + rest
            .iter()
            .map(|v| (*v as f64 - mean) * (*v as f64 - mean))
            .sum::<f64>();
    let fold = |lanes: [f32; 4], f: fn(f32, f32) -> f32| lanes.into_iter().reduce(f);
    let mut min = fold(lanes.low, f32::min).unwrap_or(f32::NAN) as f64;
    let mut max = fold(lanes.high, f32::max).unwrap_or(f32::NAN) as f64;
    for v in rest {
        min = min.min(*v as f64);
        max = max.max(*v as f64);
    }
    let zeros: u64 = lanes.zeros.iter().map(|lane| *lane as u64).sum();
    Moments {
        values: count as u64,
        nan: 0,
        inf: 0,
        zeros: zeros + rest.iter().filter(|v| **v == 0.0).count() as u64,
        finite: count as u64,
        mean,
        m2,
        scale: 1.0,
        min,
        max,
    }
}

#[target_feature(enable = "sse2")]
fn load(chunk: &[f32]) -> __m128 {
    _mm_setr_ps(chunk[0], chunk[1], chunk[2], chunk[3])
}

/// One batch in SSE2; `None` when it holds a NaN or an Inf.
#[target_feature(enable = "sse2")]
pub(super) fn finite_moments(values: &[f32]) -> Option<Moments> {
    let chunks = values.chunks_exact(4);
    let rest = chunks.remainder();
    let magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7fff_ffff));
    let infinity = _mm_set1_ps(f32::INFINITY);
    let zero = _mm_setzero_ps();
    let mut finite = _mm_setzero_si128();
    let mut zeros = _mm_setzero_si128();
    let (mut sum_low, mut sum_high) = (_mm_setzero_pd(), _mm_setzero_pd());
    let mut low = _mm_set1_ps(f32::INFINITY);
    let mut high = _mm_set1_ps(f32::NEG_INFINITY);
    for chunk in chunks.clone() {
        let v = load(chunk);
        // All ones in lanes whose magnitude is below infinity (NaN
        // compares false); subtracting -1 counts them.
        let is_finite = _mm_cmplt_ps(_mm_and_ps(v, magnitude), infinity);
        finite = _mm_sub_epi32(finite, _mm_castps_si128(is_finite));
        zeros = _mm_sub_epi32(zeros, _mm_castps_si128(_mm_cmpeq_ps(v, zero)));
        sum_low = _mm_add_pd(sum_low, _mm_cvtps_pd(v));
        sum_high = _mm_add_pd(sum_high, _mm_cvtps_pd(_mm_movehl_ps(v, v)));
        low = _mm_min_ps(low, v);
        high = _mm_max_ps(high, v);
    }
    // SAFETY (each transmute): a register and the array have the same size,
    // and every bit pattern is a valid value of the array's element type.
    let [sum_low, sum_high] =
        unsafe { std::mem::transmute::<[__m128d; 2], [[f64; 2]; 2]>([sum_low, sum_high]) };
    let lanes = FirstPass {
        finite: unsafe { std::mem::transmute::<__m128i, [u32; 4]>(finite) },
        zeros: unsafe { std::mem::transmute::<__m128i, [u32; 4]>(zeros) },
        sum: [sum_low[0], sum_low[1], sum_high[0], sum_high[1]],
        low: unsafe { std::mem::transmute::<__m128, [f32; 4]>(low) },
        high: unsafe { std::mem::transmute::<__m128, [f32; 4]>(high) },
    };
    let mean = mean_of(values.len(), &lanes, rest)?;
    let mean_pd = _mm_set1_pd(mean);
    let (mut m2_low, mut m2_high) = (_mm_setzero_pd(), _mm_setzero_pd());
    for chunk in chunks {
        let v = load(chunk);
        let d_low = _mm_sub_pd(_mm_cvtps_pd(v), mean_pd);
        let d_high = _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(v, v)), mean_pd);
        m2_low = _mm_add_pd(m2_low, _mm_mul_pd(d_low, d_low));
        m2_high = _mm_add_pd(m2_high, _mm_mul_pd(d_high, d_high));
    }
    let [m2_low, m2_high] =
        unsafe { std::mem::transmute::<[__m128d; 2], [[f64; 2]; 2]>([m2_low, m2_high]) };
    let m2 = [m2_low[0], m2_low[1], m2_high[0], m2_high[1]];
    Some(finish(values.len(), &lanes, mean, m2, rest))
}

/// Two batches of equal length in AVX2, batch `a` in the low half of every
/// register and `b` in the high half; `None` when their lengths differ or
/// either holds a NaN or an Inf.
#[target_feature(enable = "avx2")]
pub(super) fn finite_moments_pair(a: &[f32], b: &[f32]) -> Option<[Moments; 2]> {
    if a.len() != b.len() {
        return None;
    }
    let (chunks_a, chunks_b) = (a.chunks_exact(4), b.chunks_exact(4));
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let infinity = _mm256_set1_ps(f32::INFINITY);
    let zero = _mm256_setzero_ps();
    let mut finite = _mm256_setzero_si256();
    let mut zeros = _mm256_setzero_si256();
    let (mut sum_a, mut sum_b) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut low = _mm256_set1_ps(f32::INFINITY);
    let mut high = _mm256_set1_ps(f32::NEG_INFINITY);
    for (chunk_a, chunk_b) in chunks_a.clone().zip(chunks_b.clone()) {
        let (va, vb) = (load(chunk_a), load(chunk_b));
        let v = _mm256_set_m128(vb, va);
        // The SSE2 kernel's operations, lane for lane (an ordered
        // less-than and equality give the same masks as SSE2's).
        let is_finite = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_and_ps(v, magnitude), infinity);
        finite = _mm256_sub_epi32(finite, _mm256_castps_si256(is_finite));
        let is_zero = _mm256_cmp_ps::<_CMP_EQ_OQ>(v, zero);
        zeros = _mm256_sub_epi32(zeros, _mm256_castps_si256(is_zero));
        sum_a = _mm256_add_pd(sum_a, _mm256_cvtps_pd(va));
        sum_b = _mm256_add_pd(sum_b, _mm256_cvtps_pd(vb));
        low = _mm256_min_ps(low, v);
        high = _mm256_max_ps(high, v);
    }
    // SAFETY (each transmute): as in `finite_moments`.
    let finite = unsafe { std::mem::transmute::<__m256i, [[u32; 4]; 2]>(finite) };
    let zeros = unsafe { std::mem::transmute::<__m256i, [[u32; 4]; 2]>(zeros) };
    let low = unsafe { std::mem::transmute::<__m256, [[f32; 4]; 2]>(low) };
    let high = unsafe { std::mem::transmute::<__m256, [[f32; 4]; 2]>(high) };
    let sums = unsafe { std::mem::transmute::<[__m256d; 2], [[f64; 4]; 2]>([sum_a, sum_b]) };
    let lanes = [0, 1].map(|half| FirstPass {
        finite: finite[half],
        zeros: zeros[half],
        sum: sums[half],
        low: low[half],
        high: high[half],
    });
    let mean_a = mean_of(a.len(), &lanes[0], rest_a)?;
    let mean_b = mean_of(b.len(), &lanes[1], rest_b)?;
    let (mean_a_pd, mean_b_pd) = (_mm256_set1_pd(mean_a), _mm256_set1_pd(mean_b));
    let (mut m2_a, mut m2_b) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for (chunk_a, chunk_b) in chunks_a.zip(chunks_b) {
        let d_a = _mm256_sub_pd(_mm256_cvtps_pd(load(chunk_a)), mean_a_pd);
        let d_b = _mm256_sub_pd(_mm256_cvtps_pd(load(chunk_b)), mean_b_pd);
        // A multiply, then an add: the SSE2 kernel's roundings (no FMA).
        m2_a = _mm256_add_pd(m2_a, _mm256_mul_pd(d_a, d_a));
        m2_b = _mm256_add_pd(m2_b, _mm256_mul_pd(d_b, d_b));
    }
    let m2 = unsafe { std::mem::transmute::<[__m256d; 2], [[f64; 4]; 2]>([m2_a, m2_b]) };
    Some([
        finish(a.len(), &lanes[0], mean_a, m2[0], rest_a),
        finish(b.len(), &lanes[1], mean_b, m2[1], rest_b),
    ])
}
