//! Dequantization of GGUF block types, one block at a time, for the weight
//! scan: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (32-element blocks) and the K-quants
//! Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K (256-element super-blocks).
//! Not here: the IQ*, TQ* and MXFP4 types (codebook and ternary formats),
//! and Q8_1, a dot-product intermediate that is not stored in files (and
//! whose block size ggml (36) and gguf-py (40) disagree on); the scan says
//! per tensor that they are not dequantized.
//!
//! The formulas are ggml's reference `dequantize_row_*` (ggml/src/
//! ggml-quants.c) and the block layouts its `block_*` structs
//! (ggml/src/ggml-common.h); the tests compare with gguf-py's numpy
//! `gguf.quants.dequantize` through tests/fixtures/scan.

use crate::dtype::f16_to_f32;
use crate::error::{err, ErrorKind, Result};

/// `(elements per block, bytes per block)` of the block types dequantized
/// here; `None` for every other dtype.
pub fn block_layout(dtype: &str) -> Option<(usize, usize)> {
    Some(match dtype {
        "Q4_0" => (32, 18),
        "Q4_1" => (32, 20),
        "Q5_0" => (32, 22),
        "Q5_1" => (32, 24),
        "Q8_0" => (32, 34),
        "Q2_K" => (256, 84),
        "Q3_K" => (256, 110),
        "Q4_K" => (256, 144),
        "Q5_K" => (256, 176),
        "Q6_K" => (256, 210),
        "Q8_K" => (256, 292),
        _ => return None,
    })
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Dequantize whole blocks of `dtype` from `bytes`, appending to `out`.
pub fn dequantize_into(dtype: &str, bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    let (elements, block_bytes) = block_layout(dtype).ok_or_else(|| {
        err(
            ErrorKind::UnknownDtype,
            format!("{dtype} blocks are not dequantized"),
        )
    })?;
    if !bytes.len().is_multiple_of(block_bytes) {
        return Err(err(
            ErrorKind::Truncated,
            format!(
                "{} bytes is not a whole number of {dtype} blocks",
                bytes.len()
            ),
        ));
    }
    out.reserve(bytes.len() / block_bytes * elements);
    let block_fn: fn(&[u8], &mut [f32]) = match dtype {
        "Q4_0" => q4_0,
        "Q4_1" => q4_1,
        "Q5_0" => q5_0,
        "Q5_1" => q5_1,
        "Q8_0" => q8_0,
        "Q2_K" => q2_k,
        "Q3_K" => q3_k,
        "Q4_K" => q4_k,
        "Q5_K" => q5_k,
        "Q6_K" => q6_k,
        _ => q8_k,
    };
    let mut values = [0f32; 256];
    for block in bytes.chunks_exact(block_bytes) {
        let values = &mut values[..elements];
        block_fn(block, values);
        out.extend_from_slice(values);
    }
    Ok(())
}

fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0f) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let high_0 = ((qh >> j) << 4) & 0x10;
        let high_1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((((qs[j] & 0x0f) as u32) | high_0) as i32 - 16) as f32 * d;
        y[j + 16] = ((((qs[j] >> 4) as u32) | high_1) as i32 - 16) as f32 * d;
    }
}

fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let high_0 = ((qh >> j) << 4) & 0x10;
        let high_1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((qs[j] & 0x0f) as u32) | high_0) as f32 * d + m;
        y[j + 16] = (((qs[j] >> 4) as u32) | high_1) as f32 * d + m;
    }
}

/// Q8_0: d, qs[32]; the values are `d * q`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qs = &b[2..34];
    for (out, q) in y.iter_mut().zip(qs) {
        *out = *q as i8 as f32 * d;
    }
}

/// K-quant 6-bit scale and min of sub-block `j` (ggml `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q2_K: scales[16], qs[64], d, dmin.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let (d, min) = (half(b, 80), half(b, 82));
    let mut out = 0;
    let mut is = 0;
    for n in 0..2 {
        let q = &b[16 + 32 * n..16 + 32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half_block in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0x0f) as f32, min * (sc >> 4) as f32);
                for l in 0..16 {
                    let q = (q[l + 16 * half_block] >> shift) & 3;
                    y[out] = dl * q as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// Q3_K: hmask[32], qs[64], scales[12] (16 packed 6-bit scales), d.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let d_all = half(b, 108);
    let word =
        |i: usize| u32::from_le_bytes([b[96 + 4 * i], b[97 + 4 * i], b[98 + 4 * i], b[99 + 4 * i]]);
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut scales = [0i8; 16];
    for (i, word) in aux.iter().enumerate() {
        for (k, byte) in word.to_le_bytes().iter().enumerate() {
            scales[4 * i + k] = *byte as i8;
        }
    }
    let mut out = 0;
    let mut is = 0;
    let mut m = 1u8;
    for n in 0..2 {
        let q = &b[32 + 32 * n..32 + 32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half_block in 0..2 {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 0..16 {
                    let index = l + 16 * half_block;
                    let low = ((q[index] >> shift) & 3) as i32;
                    let high = if hmask[index] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - high) as f32;
                    out += 1;
                }
            }
            m = m.wrapping_shl(1);
        }
    }
}

/// Q4_K: d, dmin, scales[12], qs[128].
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (half(b, 0), half(b, 2));
    let scales = &b[4..16];
    let mut out = 0;
    for (pair, q) in b[16..144].chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * pair, scales);
        let (sc2, m2) = scale_min_k4(2 * pair + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for byte in q {
            y[out] = d1 * (byte & 0x0f) as f32 - m1;
            out += 1;
        }
        for byte in q {
            y[out] = d2 * (byte >> 4) as f32 - m2;
            out += 1;
        }
    }
}

/// Q5_K: d, dmin, scales[12], qh[32], qs[128].
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (half(b, 0), half(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let mut out = 0;
    let (mut u1, mut u2) = (1u8, 2u8);
    for (pair, ql) in b[48..176].chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * pair, scales);
        let (sc2, m2) = scale_min_k4(2 * pair + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            let high = if qh[l] & u1 != 0 { 16 } else { 0 };
            y[out] = d1 * ((ql[l] & 0x0f) + high) as f32 - m1;
            out += 1;
        }
        for l in 0..32 {
            let high = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[out] = d2 * ((ql[l] >> 4) + high) as f32 - m2;
            out += 1;
        }
        u1 = u1.wrapping_shl(2);
        u2 = u2.wrapping_shl(2);
    }
}

/// Q6_K: ql[128], qh[64], scales[16] (i8), d.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = half(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Q8_K: d (f32), qs[256], bsums[16] (unused here).
fn q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (out, q) in y.iter_mut().zip(&b[4..260]) {
        *out = *q as i8 as f32 * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dequantize(dtype: &str, block: &[u8]) -> Vec<f32> {
        let mut out = Vec::new();
        dequantize_into(dtype, block, &mut out).unwrap();
        out
    }

    #[test]
    fn q4_0_and_q8_0_by_hand() {
        // d = 2.0 (f16 0x4000); nibbles 0x1 and 0xf: (1 - 8) * 2, (15 - 8) * 2.
        let mut block = vec![0x00, 0x40];
        block.extend(std::iter::repeat_n(0xf1, 16));
        let values = dequantize("Q4_0", &block);
        assert_eq!(values.len(), 32);
        assert_eq!(values[0], -14.0);
        assert_eq!(values[16], 14.0);
        // d = 0.5, q = -4 everywhere.
        let mut block = vec![0x00, 0x38];
        block.extend(std::iter::repeat_n(0xfc, 32));
        assert!(dequantize("Q8_0", &block).iter().all(|v| *v == -2.0));
    }

    #[test]
    fn q5_0_uses_the_high_bits() {
        // d = 1, qh bit 0 set: element 0 is (0 | 16) - 16 = 0, element 1 is
        // (0 | 0) - 16 = -16.
        let mut block = vec![0x00, 0x3c, 0x01, 0, 0, 0];
        block.extend([0u8; 16]);
        let values = dequantize("Q5_0", &block);
        assert_eq!((values[0], values[1]), (0.0, -16.0));
    }

    #[test]
    fn partial_blocks_and_other_types_are_errors() {
        let mut out = Vec::new();
        let partial = dequantize_into("Q4_0", &[0; 17], &mut out).unwrap_err();
        assert_eq!(partial.kind, ErrorKind::Truncated);
        let iq = dequantize_into("IQ2_XXS", &[0; 66], &mut out).unwrap_err();
        assert_eq!(iq.kind, ErrorKind::UnknownDtype);
    }
}
