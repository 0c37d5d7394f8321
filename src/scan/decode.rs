//! How a tensor's bytes become values for the statistics: plain dtypes
//! through `dtype::decode_into` (8-byte types and 32-bit integers straight to
//! f64, so an F64 of 1e300 is not reported as Inf and integers stay exact),
//! float4 two per byte, GGUF blocks block by block through
//! `format::gguf_quant`.

use crate::dtype::{decode_fixed, decode_into, element_bytes};
use crate::error::Result;
use crate::format::gguf_quant;
use crate::stats::BATCH;
use crate::stats::{batch_moments, batch_moments_f32, batch_moments_f32_pair, Moments};

/// How a tensor's bytes become values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decoder {
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
    pub(crate) fn for_dtype(dtype: &str, big_endian: bool) -> std::result::Result<Decoder, String> {
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
    pub(crate) fn unit(&self) -> (usize, usize) {
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

    /// Bytes of one batch: the values summarised at once.
    pub(crate) fn batch_bytes(&self) -> usize {
        let (unit_bytes, unit_values) = self.unit();
        (BATCH / unit_values).max(1) * unit_bytes
    }

    /// Statistics of whole units in `bytes`, decoded in cache-sized batches.
    pub(crate) fn moments(
        &self,
        bytes: &[u8],
        narrow: &mut Vec<f32>,
        wide: &mut Vec<f64>,
    ) -> Result<Moments> {
        let mut total = Moments::default();
        self.merge_moments(bytes, narrow, wide, &mut total)?;
        Ok(total)
    }

    /// `moments` merged batch by batch into `total`: bytes that start at a
    /// batch boundary (`batch_bytes`) and are fed in order give the bits
    /// that `moments` of all of them at once gives.
    pub(crate) fn merge_moments(
        &self,
        bytes: &[u8],
        narrow: &mut Vec<f32>,
        wide: &mut Vec<f64>,
        total: &mut Moments,
    ) -> Result<()> {
        let batch_bytes = self.batch_bytes();
        match self {
            Decoder::Plain { dtype, big_endian } => {
                plain_moments(dtype, *big_endian, bytes, batch_bytes, narrow, total)
            }
            Decoder::Wide { dtype, big_endian } => each_batch(bytes, batch_bytes, total, |batch| {
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
                Ok(batch_moments(wide))
            }),
            Decoder::F4 => each_batch(bytes, batch_bytes, total, |batch| {
                narrow.clear();
                for byte in batch {
                    narrow.push(f4_e2m1_to_f32(byte & 0x0f));
                    narrow.push(f4_e2m1_to_f32(byte >> 4));
                }
                Ok(batch_moments_f32(narrow))
            }),
            Decoder::Blocks { dtype } => each_batch(bytes, batch_bytes, total, |batch| {
                narrow.clear();
                gguf_quant::dequantize_into(dtype, batch, narrow)?;
                Ok(batch_moments_f32(narrow))
            }),
        }
    }
}

/// `bytes` cut into batches, each summarised by `summarise` and merged
/// into `total` in order.
fn each_batch(
    bytes: &[u8],
    batch_bytes: usize,
    total: &mut Moments,
    mut summarise: impl FnMut(&[u8]) -> Result<Moments>,
) -> Result<()> {
    for batch in bytes.chunks(batch_bytes) {
        total.merge(&summarise(batch)?);
    }
    Ok(())
}

/// Statistics of plain-dtype bytes, batch by batch, merged into `total` in
/// order: two batches at a time through `batch_moments_f32_pair` (same bits
/// as one at a time, about twice as fast), read in place when they are
/// little-endian F32, else decoded into `narrow`.
fn plain_moments(
    dtype: &str,
    big_endian: bool,
    bytes: &[u8],
    batch_bytes: usize,
    narrow: &mut Vec<f32>,
    total: &mut Moments,
) -> Result<()> {
    for pair in bytes.chunks(2 * batch_bytes) {
        let (first, second) = pair.split_at(batch_bytes.min(pair.len()));
        let moments = match (
            in_place_f32(dtype, big_endian, first),
            in_place_f32(dtype, big_endian, second),
        ) {
            (Some(a), Some(b)) => batch_moments_f32_pair(a, b),
            _ => {
                narrow.clear();
                decode_into(dtype, first, big_endian, narrow)?;
                let split = narrow.len();
                decode_into(dtype, second, big_endian, narrow)?;
                let (a, b) = narrow.split_at(split);
                batch_moments_f32_pair(a, b)
            }
        };
        // A last batch on its own leaves `second` empty: no values, and
        // merging nothing changes nothing.
        for part in moments.iter().filter(|part| part.values > 0) {
            total.merge(part);
        }
    }
    Ok(())
}

/// Little-endian F32 bytes read as the values they are, without the copy
/// `decode_into` makes (it was an eighth of a scan's time): the same values,
/// bit for bit, so the same statistics. `None` for anything else, or bytes
/// not aligned for f32 (then they are decoded as before).
fn in_place_f32<'b>(dtype: &str, big_endian: bool, bytes: &'b [u8]) -> Option<&'b [f32]> {
    if dtype != "F32" || big_endian || cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: every bit pattern of 4 bytes is a valid f32, and `align_to`
    // only hands out the part of `bytes` that is aligned for f32.
    let (head, values, tail) = unsafe { bytes.align_to::<f32>() };
    (head.is_empty() && tail.is_empty()).then_some(values)
}

/// OCP MX FP4 (E2M1): no infinities or NaN.
pub(crate) fn f4_e2m1_to_f32(nibble: u8) -> f32 {
    const MAGNITUDE: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let value = MAGNITUDE[(nibble & 7) as usize];
    if nibble & 8 != 0 {
        -value
    } else {
        value
    }
}
