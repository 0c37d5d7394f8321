//! Statistics of values, shared by the weight scan (`scan`) and the forward
//! pass's weight reader (`weights`). Running statistics of a stream of values (counts of NaN, Inf and zeros;
//! min, max, mean and population std of the finite values) and the kernels
//! that summarise one cache-sized batch. Each batch is summarised exactly
//! in f64 (two passes: sum, then squared deviations from the batch mean)
//! and batches are merged with Chan et al.'s pairwise formula, so long
//! tensors lose no precision; extreme f64 magnitudes are summed scaled by a
//! power of two so that neither the mean nor the std overflows. The
//! x86_64 kernels (SSE2, and AVX2 for two batches at once) are in `x86.rs`.

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

/// `batch_moments_f32` of two batches, `[a, b]`, bit for bit. On x86_64
/// with AVX2, two finite batches of equal length are summarised side by
/// side (`x86::finite_moments_pair`), about twice the rate of one at a
/// time; anything else takes `batch_moments_f32` twice.
pub fn batch_moments_f32_pair(a: &[f32], b: &[f32]) -> [Moments; 2] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has just been found to have AVX2.
        if let Some(pair) = unsafe { x86::finite_moments_pair(a, b) } {
            return pair;
        }
    }
    [batch_moments_f32(a), batch_moments_f32(b)]
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
        if let Some(moments) = unsafe { x86::finite_moments(values) } {
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

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(m: &Moments) -> [u64; 10] {
        [
            m.values,
            m.nan,
            m.inf,
            m.zeros,
            m.finite,
            m.mean.to_bits(),
            m.m2.to_bits(),
            m.scale.to_bits(),
            m.min.to_bits(),
            m.max.to_bits(),
        ]
    }

    /// Deterministic values of every kind the kernels meet: wide-ranging
    /// magnitudes, exact zeros of both signs, subnormals and f32's extremes.
    fn values(seed: u32, len: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                match state % 97 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f32::MAX,
                    3 => -f32::MIN_POSITIVE / 8.0,
                    _ => (state as f32 / u32::MAX as f32 - 0.3) * (1 + i % 7) as f32 * 1e3,
                }
            })
            .collect()
    }

    #[test]
    fn two_batches_at_once_are_each_batch_alone_bit_for_bit() {
        // The pair kernel keeps each batch's lanes and order of additions,
        // so every field, to the last bit, is the one-batch kernel's;
        // batches of unequal length or holding a NaN or an Inf take the
        // one-batch kernel twice.
        let lengths = [0, 1, 3, 4, 5, 15, 16, 17, 1000, 4099, BATCH];
        for (seed, len) in lengths.into_iter().enumerate() {
            let (a, b) = (values(seed as u32, len), values(seed as u32 + 100, len));
            let pairs = [
                (a.clone(), b.clone()),
                (a.clone(), values(7, len / 2)),
                (vec![-0.0; len], vec![0.0; len]),
                (vec![2.5; len], a.clone()),
            ];
            for (index, (a, b)) in pairs.iter().enumerate() {
                let pair = batch_moments_f32_pair(a, b);
                let alone = [batch_moments_f32(a), batch_moments_f32(b)];
                assert_eq!(
                    pair.map(|m| bits(&m)),
                    alone.map(|m| bits(&m)),
                    "length {len}, pair {index}"
                );
            }
            if len > 3 {
                for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut with = b.clone();
                    with[len / 2] = special;
                    let pair = batch_moments_f32_pair(&a, &with);
                    let alone = [batch_moments_f32(&a), batch_moments_f32(&with)];
                    assert_eq!(pair.map(|m| bits(&m)), alone.map(|m| bits(&m)), "{special}");
                    assert_eq!(pair[1].finite, len as u64 - 1);
                }
            }
        }
    }
}
