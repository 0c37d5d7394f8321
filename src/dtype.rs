//! Element decoding: raw little- or big-endian bytes of any plain dtype to
//! f32, for the weight scan and the forward pass. Block-quantized GGUF types
//! are dequantized elsewhere (per block); this module handles one element per
//! fixed number of bits. Conversions follow IEEE 754 and the OCP FP8 spec
//! (E4M3FN has no infinities, one NaN pattern; E5M2 is IEEE-like).

use crate::error::{err, ErrorKind, Result};

/// Bytes per element of a plain byte-aligned dtype.
pub fn element_bytes(dtype: &str) -> Option<usize> {
    match crate::checkpoint::dtype_size_bits(dtype)? {
        bits if bits % 8 == 0 => Some((bits / 8) as usize),
        _ => None,
    }
}

/// IEEE half to f32, branch-free so that decoding loops vectorize: the
/// half's exponent and mantissa placed in an f32 and scaled by 2^112 give
/// normal and subnormal halves exactly; all-ones exponents are Inf/NaN.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits & 0x8000) as u32) << 16;
    let magnitude = (bits & 0x7fff) as u32;
    let scaled = f32::from_bits(magnitude << 13) * f32::from_bits(0x7780_0000);
    let special = 0x7f80_0000 | ((magnitude & 0x3ff) << 13);
    let value = if magnitude >= 0x7c00 {
        special
    } else {
        scaled.to_bits()
    };
    f32::from_bits(value | sign)
}

pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// The IEEE half that is exactly `value`, or `None` when no half is (too
/// many mantissa bits, out of range, an f32 subnormal). Infinities keep
/// their sign; a NaN stays a NaN (its payload's top bits kept, made quiet
/// if they were all zero). The GPU keeps half weights as halves with this:
/// values decoded from an F16 tensor always come back, so no rounding
/// happens, and anything else is left in f32.
pub fn f16_bits_exact(value: f32) -> Option<u16> {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        let payload = (mantissa >> 13) as u16;
        return Some(match (mantissa, payload) {
            (0, _) => sign | 0x7c00,
            (_, 0) => sign | 0x7e00,
            _ => sign | 0x7c00 | payload,
        });
    }
    if exponent == 0 {
        return (mantissa == 0).then_some(sign);
    }
    let unbiased = exponent - 127;
    if (-14..=15).contains(&unbiased) {
        return (mantissa & 0x1fff == 0)
            .then(|| sign | (((unbiased + 15) as u16) << 10) | (mantissa >> 13) as u16);
    }
    if (-24..-14).contains(&unbiased) {
        // A half subnormal: value = s * 2^-24 with s < 1024.
        let significand = 0x80_0000 | mantissa;
        let shift = (-unbiased - 1) as u32;
        return (significand & ((1 << shift) - 1) == 0)
            .then(|| sign | (significand >> shift) as u16);
    }
    None
}

/// The bfloat16 that is exactly `value` (its low 16 bits zero), or `None`.
pub fn bf16_bits_exact(value: f32) -> Option<u16> {
    let bits = value.to_bits();
    (bits & 0xffff == 0).then_some((bits >> 16) as u16)
}

/// The precision a weight had in the file, when every value of it is exact
/// in 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    F32,
    F16,
    Bf16,
}

impl Stored {
    /// From a checkpoint dtype name.
    pub fn of_dtype(dtype: &str) -> Stored {
        match dtype {
            "F16" => Stored::F16,
            "BF16" => Stored::Bf16,
            _ => Stored::F32,
        }
    }
}

/// FP8 E4M3FN: bias 7, no infinities, S.1111.111 is NaN.
pub fn f8_e4m3fn_to_f32(bits: u8) -> f32 {
    let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
    let exponent = ((bits >> 3) & 0x0f) as i32;
    let mantissa = (bits & 0x07) as f32;
    if exponent == 0x0f && bits & 0x07 == 0x07 {
        return f32::NAN;
    }
    if exponent == 0 {
        sign * mantissa / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + mantissa / 8.0) * 2f32.powi(exponent - 7)
    }
}

/// FP8 E5M2: bias 15, IEEE-like infinities and NaNs.
pub fn f8_e5m2_to_f32(bits: u8) -> f32 {
    f16_to_f32((bits as u16) << 8)
}

/// FP8 E4M3FNUZ: bias 8, 0x80 is the only NaN, no negative zero.
pub fn f8_e4m3fnuz_to_f32(bits: u8) -> f32 {
    if bits == 0x80 {
        return f32::NAN;
    }
    let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
    let exponent = ((bits >> 3) & 0x0f) as i32;
    let mantissa = (bits & 0x07) as f32;
    if exponent == 0 {
        sign * mantissa / 8.0 * 2f32.powi(-7)
    } else {
        sign * (1.0 + mantissa / 8.0) * 2f32.powi(exponent - 8)
    }
}

/// FP8 E5M2FNUZ: bias 16, 0x80 is the only NaN.
pub fn f8_e5m2fnuz_to_f32(bits: u8) -> f32 {
    if bits == 0x80 {
        return f32::NAN;
    }
    let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
    let exponent = ((bits >> 2) & 0x1f) as i32;
    let mantissa = (bits & 0x03) as f32;
    if exponent == 0 {
        sign * mantissa / 4.0 * 2f32.powi(-15)
    } else {
        sign * (1.0 + mantissa / 4.0) * 2f32.powi(exponent - 16)
    }
}

/// E8M0 scale: 2^(bits - 127), 0xff is NaN.
pub fn f8_e8m0_to_f32(bits: u8) -> f32 {
    if bits == 0xff {
        f32::NAN
    } else {
        2f32.powi(bits as i32 - 127)
    }
}

/// Decode whole elements of `dtype` from `bytes` (a multiple of the element
/// size) into `out`, appending. Complex numbers give their real and
/// imaginary parts as two values.
pub fn decode_into(dtype: &str, bytes: &[u8], big_endian: bool, out: &mut Vec<f32>) -> Result<()> {
    let size = element_bytes(dtype).ok_or_else(|| {
        err(
            ErrorKind::UnknownDtype,
            format!("cannot decode elements of dtype {dtype}"),
        )
    })?;
    if !bytes.len().is_multiple_of(size) {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "{} bytes is not a whole number of {dtype} elements",
                bytes.len()
            ),
        ));
    }
    out.reserve(bytes.len() / size);
    // One match per call, then a tight loop per dtype: the weight scan
    // decodes gigabytes through here.
    match dtype {
        "F32" | "C64" => decode_fixed(bytes, big_endian, out, f32::from_le_bytes),
        "C128" => decode_fixed(bytes, big_endian, out, |a: [u8; 8]| {
            f64::from_le_bytes(a) as f32
        }),
        "F16" => decode_fixed(bytes, big_endian, out, |a: [u8; 2]| {
            f16_to_f32(u16::from_le_bytes(a))
        }),
        "BF16" => decode_fixed(bytes, big_endian, out, |a: [u8; 2]| {
            bf16_to_f32(u16::from_le_bytes(a))
        }),
        "F64" => decode_fixed(bytes, big_endian, out, |a: [u8; 8]| {
            f64::from_le_bytes(a) as f32
        }),
        "F8_E4M3" => decode_fixed(bytes, false, out, |a: [u8; 1]| f8_e4m3fn_to_f32(a[0])),
        "F8_E5M2" => decode_fixed(bytes, false, out, |a: [u8; 1]| f8_e5m2_to_f32(a[0])),
        "F8_E4M3FNUZ" => decode_fixed(bytes, false, out, |a: [u8; 1]| f8_e4m3fnuz_to_f32(a[0])),
        "F8_E5M2FNUZ" => decode_fixed(bytes, false, out, |a: [u8; 1]| f8_e5m2fnuz_to_f32(a[0])),
        "F8_E8M0" => decode_fixed(bytes, false, out, |a: [u8; 1]| f8_e8m0_to_f32(a[0])),
        "BOOL" => decode_fixed(bytes, false, out, |a: [u8; 1]| (a[0] != 0) as u8 as f32),
        "U8" | "QU8" => decode_fixed(bytes, false, out, |a: [u8; 1]| a[0] as f32),
        "I8" | "QI8" => decode_fixed(bytes, false, out, |a: [u8; 1]| a[0] as i8 as f32),
        "I16" => decode_fixed(bytes, big_endian, out, |a: [u8; 2]| {
            i16::from_le_bytes(a) as f32
        }),
        "U16" => decode_fixed(bytes, big_endian, out, |a: [u8; 2]| {
            u16::from_le_bytes(a) as f32
        }),
        "I32" | "QI32" => decode_fixed(bytes, big_endian, out, |a: [u8; 4]| {
            i32::from_le_bytes(a) as f32
        }),
        "U32" => decode_fixed(bytes, big_endian, out, |a: [u8; 4]| {
            u32::from_le_bytes(a) as f32
        }),
        "I64" => decode_fixed(bytes, big_endian, out, |a: [u8; 8]| {
            i64::from_le_bytes(a) as f32
        }),
        "U64" => decode_fixed(bytes, big_endian, out, |a: [u8; 8]| {
            u64::from_le_bytes(a) as f32
        }),
        other => {
            return Err(err(
                ErrorKind::UnknownDtype,
                format!("cannot decode elements of dtype {other}"),
            ))
        }
    }
    Ok(())
}

/// Decode `N`-byte elements (byte-swapped first when big-endian) with
/// `convert`, which takes little-endian bytes. The byte-order test sits
/// outside the loop so each loop is branch-free.
pub fn decode_fixed<const N: usize, T>(
    bytes: &[u8],
    big_endian: bool,
    out: &mut Vec<T>,
    convert: impl Fn([u8; N]) -> T,
) {
    let elements = bytes.chunks_exact(N).map(|chunk| {
        let mut array = [0u8; N];
        array.copy_from_slice(chunk);
        array
    });
    if big_endian {
        out.extend(elements.map(|mut array| {
            array.reverse();
            convert(array)
        }));
    } else {
        out.extend(elements.map(convert));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward conversion, as the oracle for the branch-free one.
    fn naive_f16(bits: u16) -> f32 {
        let sign = if bits & 0x8000 != 0 { -1.0f64 } else { 1.0 };
        let exponent = ((bits >> 10) & 0x1f) as i32;
        let mantissa = (bits & 0x3ff) as f64;
        match exponent {
            0 => (sign * mantissa * 2f64.powi(-24)) as f32,
            0x1f if mantissa == 0.0 => (sign * f64::INFINITY) as f32,
            0x1f => f32::NAN,
            _ => (sign * (1.0 + mantissa / 1024.0) * 2f64.powi(exponent - 15)) as f32,
        }
    }

    #[test]
    fn every_half_converts_like_the_naive_formula() {
        for bits in 0..=u16::MAX {
            let (fast, naive) = (f16_to_f32(bits), naive_f16(bits));
            if naive.is_nan() {
                assert!(fast.is_nan(), "{bits:#06x}");
                assert_eq!(fast.to_bits() & 0x8000_0000, ((bits & 0x8000) as u32) << 16);
            } else {
                assert_eq!(fast.to_bits(), naive.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn every_half_comes_back_exactly_and_other_values_stay_f32() {
        for bits in 0..=u16::MAX {
            let value = f16_to_f32(bits);
            let back = f16_bits_exact(value).expect("every half is exact");
            if value.is_nan() {
                assert!(f16_to_f32(back).is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(back, bits, "{bits:#06x} ({value})");
            }
            let brain = bf16_to_f32(bits);
            let back = bf16_bits_exact(brain).expect("every bfloat16 is exact");
            assert_eq!(back, bits, "bf16 {bits:#06x}");
        }
        // Too many mantissa bits, past the largest half, below the smallest
        // subnormal half, an f32 subnormal, a subnormal half's lost bit.
        for value in [
            1.0 + f32::EPSILON,
            65520.0,
            1e-8,
            f32::from_bits(1),
            f16_to_f32(1) * 1.5,
        ] {
            assert_eq!(f16_bits_exact(value), None, "{value}");
        }
        assert_eq!(bf16_bits_exact(1.0 + f32::EPSILON), None);
    }

    #[test]
    fn half_precision_matches_ieee() {
        let cases: &[(u16, f32)] = &[
            (0x0000, 0.0),
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 5.960_464_5e-8),
            (0x7c00, f32::INFINITY),
        ];
        for (bits, value) in cases {
            assert_eq!(f16_to_f32(*bits), *value, "{bits:#06x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn fp8_formats_match_the_ocp_tables() {
        assert_eq!(f8_e4m3fn_to_f32(0x7e), 448.0);
        assert_eq!(f8_e4m3fn_to_f32(0x38), 1.0);
        assert_eq!(f8_e4m3fn_to_f32(0x01), 2f32.powi(-9));
        assert!(f8_e4m3fn_to_f32(0x7f).is_nan());
        assert_eq!(f8_e5m2_to_f32(0x7b), 57344.0);
        assert_eq!(f8_e5m2_to_f32(0x3c), 1.0);
        assert_eq!(f8_e5m2_to_f32(0x7c), f32::INFINITY);
        assert_eq!(f8_e4m3fnuz_to_f32(0x40), 1.0);
        assert_eq!(f8_e5m2fnuz_to_f32(0x40), 1.0);
        assert_eq!(f8_e8m0_to_f32(127), 1.0);
    }

    #[test]
    fn decoding_respects_byte_order_and_element_size() {
        let mut out = Vec::new();
        decode_into("F32", &1.5f32.to_be_bytes(), true, &mut out).unwrap();
        decode_into("I16", &(-3i16).to_le_bytes(), false, &mut out).unwrap();
        assert_eq!(out, vec![1.5, -3.0]);
        assert_eq!(
            decode_into("F32", &[0, 0, 0], false, &mut out)
                .unwrap_err()
                .kind,
            ErrorKind::Truncated
        );
        assert_eq!(
            decode_into("Q4_0", &[0; 18], false, &mut out)
                .unwrap_err()
                .kind,
            ErrorKind::UnknownDtype
        );
    }
}
