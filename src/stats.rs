//! Statistics of values, shared by the weight scan (`scan`) and the forward
//! pass's weight reader (`weights`). Running statistics of a stream of values (counts of NaN, Inf and zeros;
//! min, max, mean and population std of the finite values) and the kernels
//! that summarise one cache-sized batch. Each batch is summarised exactly
//! in f64 (two passes: sum, then squared deviations from the batch mean)
//! and batches are merged with Chan et al.'s pairwise formula, so long
//! tensors lose no precision; extreme f64 magnitudes are summed scaled by a
//! power of two so that neither the mean nor the std overflows.

/// Running statistics of a stream of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub values: u64,
    pub nan: u64,
    pub inf: u64,
    pub zeros: u64,
    /// Finite values, their mean and sum of squared deviations.
    pub finite: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean, in units of `scale`².
    pub m2: f64,
    /// A power of two (1 for everything but extreme f64 values): values
    /// near `f64::MAX` square to infinity and subnormals square to zero,
    /// so their deviations are summed divided by `scale`, and every std
    /// that f64 can represent is reported.
    pub scale: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            values: 0,
            nan: 0,
            inf: 0,
            zeros: 0,
            finite: 0,
            mean: 0.0,
            m2: 0.0,
            scale: 1.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    /// The statistics of decoded values, summarised batch by batch.
    pub fn of_f32(values: &[f32]) -> Moments {
        let mut total = Moments::default();
        for batch in values.chunks(BATCH) {
            total.merge(&batch_moments_f32(batch));
        }
        total
    }

    /// Chan, Golub and LeVeque's pairwise update, in the larger of the two
    /// scales (the other's squared deviations shrink by the squared ratio
    /// of two powers of two, which is exact until they fall below what the
    /// larger one can hold).
    pub fn merge(&mut self, other: &Moments) {
        let finite = self.finite + other.finite;
        if other.finite > 0 && self.finite == 0 {
            self.mean = other.mean;
            self.m2 = other.m2;
            self.scale = other.scale;
        } else if other.finite > 0 {
            let scale = self.scale.max(other.scale);
            let own_m2 = self.m2 * (self.scale / scale) * (self.scale / scale);
            let other_m2 = other.m2 * (other.scale / scale) * (other.scale / scale);
            let (own_mean, other_mean) = (self.mean / scale, other.mean / scale);
            let delta = other_mean - own_mean;
            let (a, b, n) = (self.finite as f64, other.finite as f64, finite as f64);
            self.mean = (own_mean + delta * b / n) * scale;
            self.m2 = own_m2 + other_m2 + delta * delta * a * b / n;
            self.scale = scale;
        }
        self.finite = finite;
        self.values += other.values;
        self.nan += other.nan;
        self.inf += other.inf;
        self.zeros += other.zeros;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The statistics of these values each repeated `times` times (a
    /// stride-0 view shows one stored element many times).
    pub fn repeated(&self, times: u64) -> Moments {
        Moments {
            values: self.values.saturating_mul(times),
            nan: self.nan.saturating_mul(times),
            inf: self.inf.saturating_mul(times),
            zeros: self.zeros.saturating_mul(times),
            finite: self.finite.saturating_mul(times),
            m2: self.m2 * times as f64,
            ..*self
        }
    }

    /// Population standard deviation of the finite values.
    pub fn std(&self) -> Option<f64> {
        (self.finite > 0).then(|| (self.m2 / self.finite as f64).sqrt() * self.scale)
    }
}

/// Values summarised at once: small enough to stay in the L2 cache.
pub const BATCH: usize = 32 * 1024;

/// Magnitudes outside [2^-400, 2^400] are summed scaled: their squares
/// would lose precision (subnormal) or overflow. Everything f32 and smaller
/// can hold stays inside, so only f64 and 64-bit integers ever scale.
const SCALE_BELOW: f64 = 3.872591914849318e-121; // 2^-400
const SCALE_ABOVE: f64 = 2.5822498780869086e120; // 2^400

/// The power of two at or below `magnitude` (a finite, non-zero value),
/// never below the smallest normal number so that its reciprocal exists.
fn power_of_two_at_or_below(magnitude: f64) -> f64 {
    f64::from_bits(magnitude.to_bits() & 0x7ff0_0000_0000_0000).max(f64::MIN_POSITIVE)
}

/// A value the statistics kernel reads.
pub trait Sample: Copy {
    fn widen(self) -> f64;
}
impl Sample for f32 {
    #[inline(always)]
    fn widen(self) -> f64 {
        self as f64
    }
}
impl Sample for f64 {
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
}

const LANES: usize = 8;

/// Exact f64 statistics of one batch: counts, sum, min and max in one pass,
/// squared deviations from the batch mean in a second pass over the same
/// (cache-resident) values. Eight independent lanes let the compiler keep
/// several additions in flight.
pub fn batch_moments<T: Sample>(values: &[T]) -> Moments {
    let mut nonfinite = 0u64;
    let mut nan = 0u64;
    let mut zeros = 0u64;
    let mut sum = [0f64; LANES];
    let mut low = [f64::INFINITY; LANES];
    let mut high = [f64::NEG_INFINITY; LANES];
    let lanes = values.chunks_exact(LANES);
    let rest = lanes.remainder();
    for chunk in lanes {
        for lane in 0..LANES {
            let v = chunk[lane].widen();
            let finite = v.is_finite();
            nonfinite += !finite as u64;
            nan += v.is_nan() as u64;
            zeros += (v == 0.0) as u64;
            sum[lane] += if finite { v } else { 0.0 };
            let for_low = if finite { v } else { f64::INFINITY };
            let for_high = if finite { v } else { f64::NEG_INFINITY };
            low[lane] = if for_low < low[lane] {
                for_low
            } else {
                low[lane]
            };
            high[lane] = if for_high > high[lane] {
                for_high
            } else {
                high[lane]
            };
        }
    }
    for value in rest {
        let v = value.widen();
        let finite = v.is_finite();
        nonfinite += !finite as u64;
        nan += v.is_nan() as u64;
        zeros += (v == 0.0) as u64;
        if finite {
            sum[0] += v;
            low[0] = low[0].min(v);
            high[0] = high[0].max(v);
        }
    }
    let count = values.len() as u64;
    let finite = count - nonfinite;
    let min = low.iter().copied().fold(f64::INFINITY, f64::min);
    let max = high.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let magnitude = min.abs().max(max.abs());
    if finite > 0 && magnitude > 0.0 && !(SCALE_BELOW..=SCALE_ABOVE).contains(&magnitude) {
        return scaled_batch_moments(
            values,
            power_of_two_at_or_below(magnitude),
            min,
            max,
            nan,
            nonfinite,
            zeros,
        );
    }
    let total: f64 = sum.iter().sum();
    let mean = if finite > 0 {
        total / finite as f64
    } else {
        0.0
    };
    let mut m2 = [0f64; LANES];
    if finite > 0 && min < max {
        let lanes = values.chunks_exact(LANES);
        let rest = lanes.remainder();
        for chunk in lanes {
            for lane in 0..LANES {
                let v = chunk[lane].widen();
                let d = if v.is_finite() { v - mean } else { 0.0 };
                m2[lane] += d * d;
            }
        }
        for value in rest {
            let v = value.widen();
            if v.is_finite() {
                m2[0] += (v - mean) * (v - mean);
            }
        }
    }
    // Equal values: their mean is the value (a rounded sum divided back
    // can miss it by an ulp, and the std would not be 0).
    let (mean, m2) = if min == max {
        (min, 0.0)
    } else {
        (mean, m2.iter().sum())
    };
    Moments {
        values: count,
        nan,
        inf: nonfinite - nan,
        zeros,
        finite,
        mean,
        m2,
        scale: 1.0,
        min,
        max,
    }
}

/// `batch_moments` for a batch of extreme magnitudes: every finite value is
/// divided by `scale` (a power of two near the largest magnitude, so the
/// quotients are exact and near 1) before summing and squaring.
fn scaled_batch_moments<T: Sample>(
    values: &[T],
    scale: f64,
    min: f64,
    max: f64,
    nan: u64,
    nonfinite: u64,
    zeros: u64,
) -> Moments {
    let finite_values = || values.iter().map(|v| v.widen()).filter(|v| v.is_finite());
    let count = values.len() as u64;
    let finite = count - nonfinite;
    let mean_scaled = if min == max {
        min / scale
    } else {
        finite_values().map(|v| v / scale).sum::<f64>() / finite as f64
    };
    let m2 = finite_values()
        .map(|v| {
            let d = v / scale - mean_scaled;
            d * d
        })
        .sum::<f64>();
    Moments {
        values: count,
        nan,
        inf: nonfinite - nan,
        zeros,
        finite,
        mean: mean_scaled * scale,
        m2,
        scale,
        min,
        max,
    }
}

/// `batch_moments` for f32, shaped for the common case: a first pass with
/// fixed-width lanes of plain selects and adds (which the compiler turns into
/// SIMD: min and max in f32, which is exact, counts in u32, sums in f64),
/// then, only when the batch holds a NaN or Inf, a pass that counts NaN.
pub fn batch_moments_f32(values: &[f32]) -> Moments {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86_64 baseline; every x86_64 CPU
        // has it, so calling an `sse2` function cannot hit a missing
        // instruction.
        if let Some(moments) = unsafe { sse2::finite_moments(values) } {
            return moments;
        }
    }
    const L: usize = 16;
    debug_assert!(values.len() <= u32::MAX as usize);
    let mut bad = [0u32; L];
    let mut zeros = [0u32; L];
    let mut low = [f32::INFINITY; L];
    let mut high = [f32::NEG_INFINITY; L];
    let mut sum = [0f64; L];
    let lanes = values.chunks_exact(L);
    let rest = lanes.remainder();
    for chunk in lanes {
        for lane in 0..L {
            let v = chunk[lane];
            let finite = v.abs() < f32::INFINITY;
            bad[lane] += !finite as u32;
            zeros[lane] += (v == 0.0) as u32;
            let x = if finite { v } else { 0.0 };
            sum[lane] += x as f64;
            let for_low = if finite { v } else { f32::INFINITY };
            let for_high = if finite { v } else { f32::NEG_INFINITY };
            low[lane] = if for_low < low[lane] {
                for_low
            } else {
                low[lane]
            };
            high[lane] = if for_high > high[lane] {
                for_high
            } else {
                high[lane]
            };
        }
    }
    let mut tail = batch_moments(rest);
    let nonfinite: u64 = bad.iter().map(|b| *b as u64).sum::<u64>() + tail.nan + tail.inf;
    let count = values.len() as u64;
    let finite = count - nonfinite;
    let total: f64 = sum.iter().sum::<f64>() + tail.mean * tail.finite as f64;
    let mean = if finite > 0 {
        total / finite as f64
    } else {
        0.0
    };
    let mut m2 = [0f64; L];
    if finite > 0 {
        let lanes = values.chunks_exact(L);
        for chunk in lanes {
            for lane in 0..L {
                let v = chunk[lane];
                let d = if v.abs() < f32::INFINITY {
                    v as f64 - mean
                } else {
                    0.0
                };
                m2[lane] += d * d;
            }
        }
    }
    // The remainder's squared deviations, moved from its own mean to ours.
    let shift = tail.mean - mean;
    let tail_m2 = tail.m2 + shift * shift * tail.finite as f64;
    let nan = if nonfinite > 0 {
        values.iter().filter(|v| v.is_nan()).count() as u64
    } else {
        0
    };
    tail.min = low.iter().map(|v| *v as f64).fold(tail.min, f64::min);
    tail.max = high.iter().map(|v| *v as f64).fold(tail.max, f64::max);
    Moments {
        values: count,
        nan,
        inf: nonfinite - nan,
        zeros: zeros.iter().map(|z| *z as u64).sum::<u64>() + tail.zeros,
        finite,
        mean,
        m2: m2.iter().sum::<f64>() + tail_m2,
        scale: 1.0,
        min: tail.min,
        max: tail.max,
    }
}

/// The f32 kernel in SSE2 for x86_64, the common case of a batch with no
/// NaN or Inf (the portable kernel handles the rest): four values per
/// instruction, counts in i32 lanes, sums and squared deviations in f64
/// lanes, min and max in f32 (exact). The page's wasm is optimized for
/// size, which leaves the portable loops scalar; natively these are 3 to 4
/// times faster than the portable loops were at that setting. No pointer is dereferenced: values enter through
/// `_mm_setr_ps` from bounds-checked slices.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::Moments;
    use std::arch::x86_64::*;

    #[target_feature(enable = "sse2")]
    fn load(chunk: &[f32]) -> __m128 {
        _mm_setr_ps(chunk[0], chunk[1], chunk[2], chunk[3])
    }

    #[target_feature(enable = "sse2")]
    fn sum_pd(v: __m128d) -> f64 {
        _mm_cvtsd_f64(v) + _mm_cvtsd_f64(_mm_unpackhi_pd(v, v))
    }

    #[target_feature(enable = "sse2")]
    fn sum_epi32(v: __m128i) -> u64 {
        let lanes = [
            _mm_cvtsi128_si32(v),
            _mm_cvtsi128_si32(_mm_srli_si128::<4>(v)),
            _mm_cvtsi128_si32(_mm_srli_si128::<8>(v)),
            _mm_cvtsi128_si32(_mm_srli_si128::<12>(v)),
        ];
        lanes.iter().map(|lane| *lane as u32 as u64).sum()
    }

    #[target_feature(enable = "sse2")]
    fn fold_ps(v: __m128, f: fn(f32, f32) -> f32) -> f32 {
        let lanes = [
            _mm_cvtss_f32(v),
            _mm_cvtss_f32(_mm_shuffle_ps::<0b01>(v, v)),
            _mm_cvtss_f32(_mm_shuffle_ps::<0b10>(v, v)),
            _mm_cvtss_f32(_mm_shuffle_ps::<0b11>(v, v)),
        ];
        lanes.into_iter().reduce(f).unwrap_or(f32::NAN)
    }

    /// `None` when the batch holds a NaN or an Inf.
    #[target_feature(enable = "sse2")]
    pub fn finite_moments(values: &[f32]) -> Option<Moments> {
        let chunks = values.chunks_exact(4);
        let rest = chunks.remainder();
        if rest.iter().any(|v| !v.is_finite()) {
            return None;
        }
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
        let count = values.len() as u64;
        if sum_epi32(finite) + rest.len() as u64 != count {
            return None;
        }
        let total =
            sum_pd(sum_low) + sum_pd(sum_high) + rest.iter().map(|v| *v as f64).sum::<f64>();
        let mean = if count > 0 { total / count as f64 } else { 0.0 };
        let mean_pd = _mm_set1_pd(mean);
        let (mut m2_low, mut m2_high) = (_mm_setzero_pd(), _mm_setzero_pd());
        for chunk in chunks {
            let v = load(chunk);
            let d_low = _mm_sub_pd(_mm_cvtps_pd(v), mean_pd);
            let d_high = _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(v, v)), mean_pd);
            m2_low = _mm_add_pd(m2_low, _mm_mul_pd(d_low, d_low));
            m2_high = _mm_add_pd(m2_high, _mm_mul_pd(d_high, d_high));
        }
        let m2 = sum_pd(m2_low)
            + sum_pd(m2_high)
            + rest
                .iter()
                .map(|v| (*v as f64 - mean) * (*v as f64 - mean))
                .sum::<f64>();
        let mut min = fold_ps(low, f32::min) as f64;
        let mut max = fold_ps(high, f32::max) as f64;
        for v in rest {
            min = min.min(*v as f64);
            max = max.max(*v as f64);
        }
        Some(Moments {
            values: count,
            nan: 0,
            inf: 0,
            zeros: sum_epi32(zeros) + rest.iter().filter(|v| **v == 0.0).count() as u64,
            finite: count,
            mean,
            m2,
            scale: 1.0,
            min,
            max,
        })
    }
}
