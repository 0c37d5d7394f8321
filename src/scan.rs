//! The weight scan: reads every tensor's bytes once, in fixed-size chunks,
//! and reports per tensor the NaN and Inf counts, whether it is all zeros,
//! and min, max, mean and std of its finite values, plus a summary of the
//! problems that break training. Pure core: bytes come through
//! `ByteSource`, progress goes to a callback that can cancel.
//!
//! Memory is flat whatever the file size: one `CHUNK_BYTES` read buffer and
//! one `BATCH`-value decode buffer, reused for every tensor. Plain dtypes are
//! decoded by `dtype::decode_into` (8-byte ones and 32-bit integers straight
//! to f64, so an F64 of 1e300 is not reported as Inf and integers stay
//! exact), GGUF block types block by block by
//! `format::gguf_quant`. Tensors that share a storage (tied weights, views)
//! or are strided views are not scanned per tensor: the bytes their storage
//! spans are scanned once and every such tensor reports those statistics,
//! with a note saying so.
//!
//! Statistics: NaN and ±Inf are counted and left out of min/max/mean/std,
//! which are those of the finite values (std is the population std, as
//! numpy's default). Each batch is summarised exactly in f64 (two passes:
//! sum, then squared deviations from the batch mean) and batches are merged
//! with Chan et al.'s pairwise formula, so long tensors lose no precision.

use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::dtype::{decode_fixed, decode_into, element_bytes};
use crate::error::{err, ErrorKind, Result};
use crate::format::{self, gguf_quant, Format};
use crate::source::ByteSource;
use serde::Serialize;
use std::collections::BTreeMap;

/// Bytes read at once. Chunks are cut at element or block boundaries.
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Values decoded at once: small enough to stay in the L2 cache.
const BATCH: usize = 32 * 1024;

/// What the scan found in one tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorStats {
    /// The state-dict key.
    pub name: String,
    /// Keys from the root object (pickles), as in `inspect`.
    pub path: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// False when the bytes were not read (no data, or a type that is not
    /// decoded); `note` says why.
    pub scanned: bool,
    /// Values the statistics cover (complex: two per element; a shared or
    /// strided storage: every value of its extent).
    pub values: u64,
    pub nan: u64,
    pub inf: u64,
    pub zeros: u64,
    /// Every value is zero (and there is at least one).
    pub all_zero: bool,
    /// Of the finite values; `None` when there are none.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TensorStats {
    /// Whether a floating-point tensor is all zeros: integer and bool
    /// tensors (step counters, masks) are often legitimately zero.
    pub fn zero_problem(&self) -> bool {
        self.all_zero && is_float(&self.dtype)
    }

    pub fn display_name(&self) -> String {
        if self.path.len() > 1 {
            self.path.join("/")
        } else {
            self.name.clone()
        }
    }
}

fn is_float(dtype: &str) -> bool {
    !matches!(
        dtype,
        "BOOL"
            | "U8"
            | "I8"
            | "I16"
            | "U16"
            | "I32"
            | "U32"
            | "I64"
            | "U64"
            | "QI8"
            | "QU8"
            | "QI32"
    )
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanSummary {
    pub tensors: usize,
    pub scanned: usize,
    /// Tensors whose bytes were not read, with why.
    pub skipped: Vec<String>,
    pub nan_values: u64,
    pub inf_values: u64,
    /// Names of tensors with at least one NaN / Inf.
    pub with_nan: Vec<String>,
    pub with_inf: Vec<String>,
    /// Floating-point tensors that are all zeros.
    pub all_zero: Vec<String>,
    /// One line per problem, for people.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanReport {
    pub files: Vec<String>,
    pub formats: Vec<String>,
    /// Bytes of tensor data to scan, and scanned.
    pub bytes_total: u64,
    pub bytes_scanned: u64,
    pub tensors: Vec<TensorStats>,
    pub summary: ScanSummary,
    /// No NaN, no Inf, no all-zero floating-point tensor.
    pub ok: bool,
}

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
    pub m2: f64,
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
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    /// Chan, Golub and LeVeque's pairwise update.
    pub fn merge(&mut self, other: &Moments) {
        let finite = self.finite + other.finite;
        if other.finite > 0 {
            let delta = other.mean - self.mean;
            let (a, b, n) = (self.finite as f64, other.finite as f64, finite as f64);
            self.mean += delta * b / n;
            self.m2 += other.m2 + delta * delta * a * b / n;
        }
        self.finite = finite;
        self.values += other.values;
        self.nan += other.nan;
        self.inf += other.inf;
        self.zeros += other.zeros;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn std(&self) -> Option<f64> {
        (self.finite > 0).then(|| (self.m2 / self.finite as f64).sqrt())
    }
}

/// A value the statistics kernel reads.
trait Sample: Copy {
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
fn batch_moments<T: Sample>(values: &[T]) -> Moments {
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
    let total: f64 = sum.iter().sum();
    let mean = if finite > 0 {
        total / finite as f64
    } else {
        0.0
    };
    let mut m2 = [0f64; LANES];
    if finite > 0 {
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
    Moments {
        values: count,
        nan,
        inf: nonfinite - nan,
        zeros,
        finite,
        mean,
        m2: m2.iter().sum(),
        min: low.iter().copied().fold(f64::INFINITY, f64::min),
        max: high.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// `batch_moments` for f32, shaped for the common case: a first pass with
/// fixed-width lanes of plain selects and adds (which the compiler turns into
/// SIMD: min and max in f32, which is exact, counts in u32, sums in f64),
/// then, only when the batch holds a NaN or Inf, a pass that counts NaN.
fn batch_moments_f32(values: &[f32]) -> Moments {
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
        min: tail.min,
        max: tail.max,
    }
}

/// The f32 kernel in SSE2 for x86_64, the common case of a batch with no
/// NaN or Inf (the portable kernel handles the rest): four values per
/// instruction, counts in i32 lanes, sums and squared deviations in f64
/// lanes, min and max in f32 (exact). The release profile optimizes for
/// size (for the wasm), which leaves the portable loops scalar; these are
/// 3 to 4 times faster. No pointer is dereferenced: values enter through
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
            min,
            max,
        })
    }
}

/// How a tensor's bytes become values.
#[derive(Debug, Clone, PartialEq)]
enum Decoder {
    /// `dtype::decode_into` to f32.
    Plain { dtype: String, big_endian: bool },
    /// 8-byte types and 32-bit integers, decoded straight to f64 (f32 would
    /// round them).
    Wide { dtype: String, big_endian: bool },
    /// float4 e2m1, two per byte, low nibble first.
    F4,
    /// GGUF blocks.
    Blocks { dtype: String },
}

impl Decoder {
    fn for_dtype(dtype: &str, big_endian: bool) -> std::result::Result<Decoder, String> {
        let dtype_owned = dtype.to_string();
        Ok(match dtype {
            "F64" | "I64" | "U64" | "C128" | "I32" | "U32" | "QI32" => Decoder::Wide {
                dtype: dtype_owned,
                big_endian,
            },
            "F4" => Decoder::F4,
            _ if gguf_quant::block_layout(dtype).is_some() => {
                Decoder::Blocks { dtype: dtype_owned }
            }
            _ if element_bytes(dtype).is_some() => Decoder::Plain {
                dtype: dtype_owned,
                big_endian,
            },
            _ => return Err(format!("{dtype} values are not decoded by the scan")),
        })
    }

    /// Bytes of the smallest unit (element or block) and values per unit.
    fn unit(&self) -> (usize, usize) {
        match self {
            Decoder::Plain { dtype, .. } | Decoder::Wide { dtype, .. } => {
                let size = element_bytes(dtype).unwrap_or(1);
                // Complex: two values per element, decoded part by part.
                if dtype.starts_with('C') {
                    (size / 2, 1)
                } else {
                    (size, 1)
                }
            }
            Decoder::F4 => (1, 2),
            Decoder::Blocks { dtype } => gguf_quant::block_layout(dtype)
                .map(|(elements, bytes)| (bytes, elements))
                .unwrap_or((1, 1)),
        }
    }

    /// Statistics of whole units in `bytes`, decoded in cache-sized batches.
    fn moments(&self, bytes: &[u8], narrow: &mut Vec<f32>, wide: &mut Vec<f64>) -> Result<Moments> {
        let (unit_bytes, unit_values) = self.unit();
        let batch_bytes = (BATCH / unit_values).max(1) * unit_bytes;
        let mut total = Moments::default();
        for batch in bytes.chunks(batch_bytes) {
            let moments = match self {
                Decoder::Plain { dtype, big_endian } => {
                    narrow.clear();
                    decode_into(dtype, batch, *big_endian, narrow)?;
                    batch_moments_f32(narrow)
                }
                Decoder::Wide { dtype, big_endian } => {
                    wide.clear();
                    match dtype.as_str() {
                        "I64" => decode_fixed(batch, *big_endian, wide, |a: [u8; 8]| {
                            i64::from_le_bytes(a) as f64
                        }),
                        "U64" => decode_fixed(batch, *big_endian, wide, |a: [u8; 8]| {
                            u64::from_le_bytes(a) as f64
                        }),
                        "I32" | "QI32" => decode_fixed(batch, *big_endian, wide, |a: [u8; 4]| {
                            i32::from_le_bytes(a) as f64
                        }),
                        "U32" => decode_fixed(batch, *big_endian, wide, |a: [u8; 4]| {
                            u32::from_le_bytes(a) as f64
                        }),
                        _ => decode_fixed(batch, *big_endian, wide, f64::from_le_bytes),
                    }
                    batch_moments(wide)
                }
                Decoder::F4 => {
                    narrow.clear();
                    for byte in batch {
                        narrow.push(f4_e2m1_to_f32(byte & 0x0f));
                        narrow.push(f4_e2m1_to_f32(byte >> 4));
                    }
                    batch_moments_f32(narrow)
                }
                Decoder::Blocks { dtype } => {
                    narrow.clear();
                    gguf_quant::dequantize_into(dtype, batch, narrow)?;
                    batch_moments_f32(narrow)
                }
            };
            total.merge(&moments);
        }
        Ok(total)
    }
}

/// OCP MX FP4 (E2M1): no infinities or NaN.
fn f4_e2m1_to_f32(nibble: u8) -> f32 {
    const MAGNITUDE: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let value = MAGNITUDE[(nibble & 7) as usize];
    if nibble & 8 != 0 {
        -value
    } else {
        value
    }
}

/// One byte range to scan and the tensors whose statistics it gives.
struct Region {
    source: usize,
    offset: u64,
    nbytes: u64,
    decoder: Decoder,
    tensors: Vec<usize>,
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn contiguous(tensor: &TensorInfo) -> bool {
    let Some(stride) = &tensor.stride else {
        return true;
    };
    if tensor.numel() <= 1 {
        return true;
    }
    let mut expected = 1u64;
    for (dim, step) in tensor.shape.iter().zip(stride).rev() {
        if *dim != 1 && *step != expected {
            return false;
        }
        expected = expected.saturating_mul(*dim);
    }
    true
}

fn empty_stats(tensor: &TensorInfo) -> TensorStats {
    TensorStats {
        name: tensor.name.clone(),
        path: tensor.path.clone(),
        file: tensor.file.clone(),
        dtype: tensor.dtype.clone(),
        shape: tensor.shape.clone(),
        scanned: false,
        values: 0,
        nan: 0,
        inf: 0,
        zeros: 0,
        all_zero: false,
        min: None,
        max: None,
        mean: None,
        std: None,
        note: None,
    }
}

/// Plan the regions of one checkpoint whose tensors live in `sources`
/// (indices into the scan's source list), appending stats placeholders.
fn plan(
    checkpoint: &Checkpoint,
    sources: &[(usize, &dyn ByteSource)],
    stats: &mut Vec<TensorStats>,
    regions: &mut Vec<Region>,
) -> Result<()> {
    let big_endian = checkpoint
        .metadata
        .get("byteorder")
        .and_then(|v| v.as_str())
        == Some("big");
    let source_of = |tensor: &TensorInfo| -> Option<usize> {
        match &tensor.file {
            Some(file) => sources
                .iter()
                .find(|(_, s)| base_name(s.name()) == base_name(file))
                .map(|(index, _)| *index),
            None => sources.first().map(|(index, _)| *index),
        }
    };
    // Storage groups: (source, storage key, dtype) -> tensor indices.
    let mut groups: BTreeMap<(usize, String, String), Vec<usize>> = BTreeMap::new();
    let first = stats.len();
    for tensor in &checkpoint.tensors {
        let index = stats.len();
        let mut entry = empty_stats(tensor);
        let (Some(offset), Some(nbytes)) = (tensor.offset, tensor.nbytes) else {
            entry.note = Some("no data in the file (a meta tensor)".to_string());
            stats.push(entry);
            continue;
        };
        let Some(source) = source_of(tensor) else {
            entry.note = Some("its file was not given".to_string());
            stats.push(entry);
            continue;
        };
        let decoder = match Decoder::for_dtype(&tensor.dtype, big_endian) {
            Ok(decoder) => decoder,
            Err(why) => {
                entry.note = Some(format!("not dequantized: {why}"));
                stats.push(entry);
                continue;
            }
        };
        stats.push(entry);
        match &tensor.storage {
            Some(key) => groups
                .entry((source, key.clone(), tensor.dtype.clone()))
                .or_default()
                .push(index),
            None => regions.push(Region {
                source,
                offset,
                nbytes,
                decoder,
                tensors: vec![index],
            }),
        }
    }
    for ((source, key, dtype), members) in groups {
        let tensors: Vec<&TensorInfo> = members
            .iter()
            .map(|i| &checkpoint.tensors[i - first])
            .collect();
        let start = tensors.iter().filter_map(|t| t.offset).min().unwrap_or(0);
        let end = tensors
            .iter()
            .filter_map(|t| Some(t.offset? + t.nbytes?))
            .max()
            .unwrap_or(start);
        let exact = tensors.len() == 1
            && tensors.iter().all(|t| {
                contiguous(t)
                    && crate::dtype::element_bytes(&t.dtype)
                        .is_some_and(|size| t.numel().saturating_mul(size as u64) == end - start)
            });
        if !exact {
            let why = if tensors.len() > 1 {
                format!("shared by {} tensors", tensors.len())
            } else {
                "a strided view".to_string()
            };
            for index in &members {
                stats[*index].note = Some(format!(
                    "statistics of storage {key:?} bytes {start}..{end} ({why}), scanned once"
                ));
            }
        }
        let decoder = Decoder::for_dtype(&dtype, big_endian)
            .map_err(|why| err(ErrorKind::UnknownDtype, why))?;
        regions.push(Region {
            source,
            offset: start,
            nbytes: end - start,
            decoder,
            tensors: members,
        });
    }
    Ok(())
}

/// Scan already-read checkpoints: each with the sources its tensors live in.
pub fn scan_checkpoints(
    checkpoints: &[(&Checkpoint, Vec<&dyn ByteSource>)],
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ScanReport> {
    let mut all_sources: Vec<&dyn ByteSource> = Vec::new();
    let mut report = ScanReport::default();
    let mut regions = Vec::new();
    for (checkpoint, sources) in checkpoints {
        let indexed: Vec<(usize, &dyn ByteSource)> = sources
            .iter()
            .map(|source| {
                all_sources.push(*source);
                (all_sources.len() - 1, *source)
            })
            .collect();
        report.files.push(checkpoint.file.clone());
        report.formats.push(checkpoint.format.clone());
        plan(checkpoint, &indexed, &mut report.tensors, &mut regions)?;
    }
    // Read each file front to back.
    regions.sort_by_key(|region| (region.source, region.offset));
    report.bytes_total = regions.iter().map(|r| r.nbytes).sum();
    if !progress(0, report.bytes_total) {
        return Err(err(ErrorKind::Cancelled, "scan cancelled"));
    }
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut narrow: Vec<f32> = Vec::with_capacity(BATCH);
    let mut wide: Vec<f64> = Vec::with_capacity(BATCH);
    let mut done = 0u64;
    for region in &regions {
        let source = all_sources[region.source];
        let (unit_bytes, _) = region.decoder.unit();
        let chunk = (CHUNK_BYTES / unit_bytes * unit_bytes) as u64;
        let names = || {
            region
                .tensors
                .first()
                .map(|i| report.tensors[*i].display_name())
                .unwrap_or_default()
        };
        if region.nbytes % unit_bytes as u64 != 0 {
            return Err(err(
                ErrorKind::InvalidOffsets,
                format!(
                    "{} bytes is not a whole number of {}-byte units",
                    region.nbytes, unit_bytes
                ),
            )
            .in_file(source.name())
            .for_tensor(&names()));
        }
        let mut moments = Moments::default();
        let mut position = 0u64;
        while position < region.nbytes {
            let len = chunk.min(region.nbytes - position);
            let bytes = &mut buffer[..len as usize];
            source
                .read_exact_at(region.offset + position, bytes)
                .map_err(|e| e.in_file(source.name()).for_tensor(&names()))?;
            let part = region
                .decoder
                .moments(bytes, &mut narrow, &mut wide)
                .map_err(|e| e.in_file(source.name()).for_tensor(&names()))?;
            moments.merge(&part);
            position += len;
            done += len;
            if !progress(done, report.bytes_total) {
                return Err(err(ErrorKind::Cancelled, "scan cancelled"));
            }
        }
        for index in &region.tensors {
            let stats = &mut report.tensors[*index];
            stats.scanned = true;
            stats.values = moments.values;
            stats.nan = moments.nan;
            stats.inf = moments.inf;
            stats.zeros = moments.zeros;
            stats.all_zero = moments.values > 0 && moments.zeros == moments.values;
            if moments.finite > 0 {
                stats.min = Some(moments.min);
                stats.max = Some(moments.max);
                stats.mean = Some(moments.mean);
                stats.std = moments.std();
            }
        }
    }
    report.bytes_scanned = done;
    summarise(&mut report);
    Ok(report)
}

fn summarise(report: &mut ScanReport) {
    let summary = &mut report.summary;
    summary.tensors = report.tensors.len();
    for tensor in &report.tensors {
        let name = tensor.display_name();
        if !tensor.scanned {
            summary.skipped.push(format!(
                "{name}: {}",
                tensor.note.as_deref().unwrap_or("not scanned")
            ));
            continue;
        }
        summary.scanned += 1;
        summary.nan_values += tensor.nan;
        summary.inf_values += tensor.inf;
        if tensor.nan > 0 {
            summary.with_nan.push(name.clone());
            summary.problems.push(format!(
                "{name}: {} NaN of {} values",
                tensor.nan, tensor.values
            ));
        }
        if tensor.inf > 0 {
            summary.with_inf.push(name.clone());
            summary.problems.push(format!(
                "{name}: {} Inf of {} values",
                tensor.inf, tensor.values
            ));
        }
        if tensor.zero_problem() {
            summary.all_zero.push(name.clone());
            summary
                .problems
                .push(format!("{name}: all {} values are zero", tensor.values));
        }
    }
    report.ok = summary.problems.is_empty();
}

/// Scan what a user gave: files of one or several checkpoints. A shard
/// index among them makes them one sharded checkpoint; otherwise each
/// checkpoint file is scanned on its own. Config JSONs are skipped.
pub fn scan_sources(
    sources: &[&dyn ByteSource],
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ScanReport> {
    let mut chosen: Vec<&dyn ByteSource> = Vec::new();
    let mut sharded = false;
    for source in sources {
        match format::detect(*source) {
            Ok(Format::Json) if sources.len() > 1 => {}
            Ok(Format::ShardIndex) => {
                sharded = true;
                chosen.push(*source);
            }
            Ok(_) => chosen.push(*source),
            Err(e) if sources.len() > 1 && e.kind == ErrorKind::UnsupportedFormat => {}
            Err(e) => return Err(e),
        }
    }
    let mut checkpoints = Vec::new();
    if sharded {
        let checkpoint = format::read_files(&chosen)?;
        checkpoints.push((checkpoint, chosen.clone()));
    } else {
        if chosen.is_empty() {
            return Err(err(ErrorKind::BadArgument, "no checkpoint file given"));
        }
        for source in &chosen {
            checkpoints.push((format::read_checkpoint(*source)?, vec![*source]));
        }
    }
    let refs: Vec<(&Checkpoint, Vec<&dyn ByteSource>)> = checkpoints
        .iter()
        .map(|(checkpoint, sources)| (checkpoint, sources.clone()))
        .collect();
    scan_checkpoints(&refs, progress)
}

/// The report as text: problems first, then one line per tensor.
pub fn to_text(report: &ScanReport) -> String {
    let summary = &report.summary;
    let mut out = format!(
        "{}: {} tensors, {} scanned ({})\n",
        report.files.join(", "),
        summary.tensors,
        summary.scanned,
        crate::report::human_bytes(report.bytes_scanned)
    );
    if report.ok {
        out.push_str("OK  no NaN, no Inf, no all-zero floating-point tensor\n");
    } else {
        out.push_str(&format!(
            "ERR {} NaN and {} Inf values in {} tensors; {} all-zero tensors\n",
            summary.nan_values,
            summary.inf_values,
            report
                .tensors
                .iter()
                .filter(|t| t.scanned && (t.nan > 0 || t.inf > 0))
                .count(),
            summary.all_zero.len()
        ));
        for problem in &summary.problems {
            out.push_str(&format!("  {problem}\n"));
        }
    }
    for skipped in &summary.skipped {
        out.push_str(&format!("  skipped {skipped}\n"));
    }
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6e}"));
    out.push_str(&format!(
        "  {:<56} {:>8} {:>6} {:>6} {:>13} {:>13} {:>13} {:>13}\n",
        "tensor", "dtype", "nan", "inf", "min", "max", "mean", "std"
    ));
    for tensor in report.tensors.iter().filter(|t| t.scanned) {
        out.push_str(&format!(
            "  {:<56} {:>8} {:>6} {:>6} {:>13} {:>13} {:>13} {:>13}{}\n",
            tensor.display_name(),
            tensor.dtype,
            tensor.nan,
            tensor.inf,
            fmt(tensor.min),
            fmt(tensor.max),
            fmt(tensor.mean),
            fmt(tensor.std),
            if tensor.all_zero { "  all zero" } else { "" }
        ));
        if let Some(note) = &tensor.note {
            out.push_str(&format!("      {note}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::f16_to_f32;
    use crate::source::SliceSource;

    /// The naive oracle: straight definitions in f64.
    fn naive(values: &[f64]) -> (u64, u64, f64, f64, f64, f64) {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let nan = values.iter().filter(|v| v.is_nan()).count() as u64;
        let inf = values.iter().filter(|v| v.is_infinite()).count() as u64;
        let n = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (nan, inf, min, max, mean, var.sqrt())
    }

    fn safetensors(tensors: &[(&str, &str, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
            );
            data.extend_from_slice(bytes);
        }
        let text = serde_json::Value::Object(header).to_string();
        let mut file = (text.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(text.as_bytes());
        file.extend(data);
        file
    }

    fn scan_bytes(bytes: &[u8]) -> ScanReport {
        let source = SliceSource::new("t.safetensors", bytes);
        scan_sources(&[&source], &mut |_, _| true).unwrap()
    }

    #[test]
    fn hand_computed_statistics() {
        let values = [1.0f32, 2.0, f32::NAN, 4.0, f32::INFINITY, -1.0];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let zeros = vec![0u8; 8];
        let ints: Vec<u8> = [0i64, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let report = scan_bytes(&safetensors(&[
            ("a", "F32", vec![6], bytes),
            ("b", "F16", vec![4], zeros),
            ("c", "I64", vec![2], ints),
        ]));
        let a = &report.tensors[0];
        assert_eq!((a.values, a.nan, a.inf, a.zeros), (6, 1, 1, 0));
        // Finite values 1, 2, 4, -1: mean 1.5, variance (0.25+0.25+6.25+6.25)/4.
        assert_eq!((a.min, a.max, a.mean), (Some(-1.0), Some(4.0), Some(1.5)));
        assert_eq!(a.std, Some(3.25f64.sqrt()));
        assert!(report.tensors[1].all_zero && report.tensors[1].zero_problem());
        assert!(report.tensors[2].all_zero && !report.tensors[2].zero_problem());
        assert!(!report.ok);
        assert_eq!(report.summary.with_nan, vec!["a"]);
        assert_eq!(report.summary.all_zero, vec!["b"]);
        assert_eq!(report.bytes_scanned, 24 + 8 + 16);
    }

    #[test]
    fn long_tensors_merge_batches_exactly() {
        // 300k values across many batches and chunks, offset far from zero
        // (where a naive sum of squares would lose the variance).
        let values: Vec<f64> = (0..300_000u64)
            .map(|i| 1e6 + ((i * 7919) % 1000) as f64 / 7.0)
            .collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let report = scan_bytes(&safetensors(&[("w", "F64", vec![300_000], bytes)]));
        let (_, _, min, max, mean, std) = naive(&values);
        let w = &report.tensors[0];
        assert_eq!((w.min, w.max), (Some(min), Some(max)));
        assert!((w.mean.unwrap() - mean).abs() < 1e-9 * mean);
        assert!((w.std.unwrap() - std).abs() < 1e-9 * std);
    }

    #[test]
    fn wide_values_stay_finite_and_big_endian_is_honoured() {
        let bytes: Vec<u8> = [1e300f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let report = scan_bytes(&safetensors(&[("w", "F64", vec![2], bytes)]));
        assert_eq!(report.tensors[0].inf, 0);
        assert_eq!(report.tensors[0].max, Some(1e300));
        let mut moments = Moments::default();
        let decoder = Decoder::for_dtype("F32", true).unwrap();
        let part = decoder
            .moments(&2.5f32.to_be_bytes(), &mut Vec::new(), &mut Vec::new())
            .unwrap();
        moments.merge(&part);
        assert_eq!(moments.max, 2.5);
    }

    #[test]
    fn progress_reports_bytes_and_cancels() {
        let bytes = vec![0u8; 3 * CHUNK_BYTES];
        let file = safetensors(&[("w", "U8", vec![bytes.len() as u64], bytes)]);
        let source = SliceSource::new("t.safetensors", &file);
        let mut calls = Vec::new();
        scan_sources(&[&source], &mut |done, total| {
            calls.push((done, total));
            true
        })
        .unwrap();
        let total = 3 * CHUNK_BYTES as u64;
        assert_eq!(calls.first(), Some(&(0, total)));
        assert_eq!(calls.last(), Some(&(total, total)));
        assert_eq!(calls.len(), 4);
        let error = scan_sources(&[&source], &mut |done, _| done == 0).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Cancelled);
    }

    #[test]
    fn the_f32_kernel_agrees_with_the_generic_one() {
        let mut values: Vec<f32> = (0..1000)
            .map(|i| (i as f32 * 0.37).sin() * 100.0 + 3.0)
            .collect();
        values[500] = 0.0;
        let finite = values.clone();
        for (at, special) in [(3, f32::NAN), (17, f32::INFINITY), (999, f32::NEG_INFINITY)] {
            values[at] = special;
        }
        // Finite batches take the SIMD path on x86_64, the others not.
        let cases = [0, 1, 3, 4, 5, 15, 16, 17, 999, 1000]
            .map(|len| &finite[..len])
            .into_iter()
            .chain([0, 1, 15, 16, 17, 999, 1000].map(|len| &values[..len]));
        for values in cases {
            let len = values.len();
            let (fast, slow) = (batch_moments_f32(values), batch_moments(values));
            assert_eq!(
                (fast.values, fast.nan, fast.inf, fast.zeros, fast.finite),
                (slow.values, slow.nan, slow.inf, slow.zeros, slow.finite),
                "{len}"
            );
            assert_eq!((fast.min, fast.max), (slow.min, slow.max), "{len}");
            assert!(
                (fast.mean - slow.mean).abs() <= 1e-12 * slow.mean.abs().max(1.0),
                "{len}"
            );
            assert!(
                (fast.m2 - slow.m2).abs() <= 1e-9 * slow.m2.abs().max(1.0),
                "{len}"
            );
        }
    }

    #[test]
    fn f4_and_f16_decode() {
        assert_eq!(f4_e2m1_to_f32(0b0111), 6.0);
        assert_eq!(f4_e2m1_to_f32(0b1001), -0.5);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
    }
}
