//! Element conversions the writer needs, as torch does them: `.to(float16)`
//! and `.to(bfloat16)` round to nearest even and keep NaN and Inf (c10's
//! `fp16_ieee_from_fp32_value` and `round_to_nearest_even`), a double goes
//! through float first (c10::Half and BFloat16 are built from float), and
//! big-endian storages are byte-swapped per element.

/// f32 → IEEE half, round to nearest even; NaN stays NaN (quiet), overflow
/// goes to Inf, tiny values to subnormals or zero.
pub fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x007f_ffff;
    if exponent == 0xff {
        // Inf, or NaN with its top payload bits kept and made quiet.
        return sign
            | 0x7c00
            | if mantissa != 0 {
                0x0200 | (mantissa >> 13) as u16
            } else {
                0
            };
    }
    // Unbiased exponent, re-biased for half.
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exponent <= 0 {
        // Subnormal half (or zero): shift the full significand right.
        if half_exponent < -10 {
            return sign;
        }
        let significand = mantissa | 0x0080_0000;
        let shift = (14 - half_exponent) as u32;
        let half = significand >> shift;
        let remainder = significand & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round_up = remainder > halfway || (remainder == halfway && half & 1 == 1);
        return sign | (half + round_up as u32) as u16;
    }
    let half = ((half_exponent as u32) << 10) | (mantissa >> 13);
    let remainder = mantissa & 0x1fff;
    let round_up = remainder > 0x1000 || (remainder == 0x1000 && half & 1 == 1);
    // A carry out of the mantissa bumps the exponent, up to Inf: correct.
    sign | (half + round_up as u32) as u16
}

/// f32 → bfloat16, round to nearest even. A NaN keeps its sign and top
/// payload bits and is made quiet, as torch's CPU conversion leaves it
/// (an all-ones NaN stays all ones).
pub fn f32_to_bf16(value: f32) -> u16 {
    if value.is_nan() {
        return ((value.to_bits() >> 16) as u16) | 0x0040;
    }
    let bits = value.to_bits();
    let rounding_bias = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding_bias) >> 16) as u16
}

/// Reverse each `element`-byte group in place (big-endian storage to the
/// little-endian bytes safetensors stores).
pub fn swap_bytes(bytes: &mut [u8], element: usize) {
    if element > 1 {
        for chunk in bytes.chunks_exact_mut(element) {
            chunk.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{bf16_to_f32, f16_to_f32};

    #[test]
    fn half_rounding_matches_torch() {
        // (f32, half bits) as torch.tensor(x).to(torch.float16) gives them.
        let cases: &[(f32, u16)] = &[
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (65504.0, 0x7bff),
            (65520.0, 0x7c00), // rounds to Inf
            (1e-8, 0x0000),
            (6e-8, 0x0001),        // nearest subnormal
            (2.980232e-8, 0x0000), // exactly half the smallest subnormal: even
            (1.0009766, 0x3c01),
            (f32::from_bits(0x3f80_1000), 0x3c00), // 1 + 2^-11: halfway, to even
            (f32::from_bits(0x3f80_3000), 0x3c02), // 1 + 3·2^-11: halfway, to even (up)
            (f32::INFINITY, 0x7c00),
            (f32::NEG_INFINITY, 0xfc00),
        ];
        for (value, expected) in cases {
            assert_eq!(f32_to_f16(*value), *expected, "{value}");
        }
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        // Every half round-trips through f32.
        for bits in 0..=u16::MAX {
            let value = f16_to_f32(bits);
            if !value.is_nan() {
                assert_eq!(f32_to_f16(value), bits, "{bits:#06x}");
            }
        }
    }

    #[test]
    fn bfloat16_rounding_matches_torch() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // halfway, even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // halfway, even (up)
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80); // overflows to Inf
        assert_eq!(f32_to_bf16(f32::NAN), 0x7fc0);
        for bits in 0..=u16::MAX {
            let value = bf16_to_f32(bits);
            if !value.is_nan() {
                assert_eq!(f32_to_bf16(value), bits);
            }
        }
    }
}
