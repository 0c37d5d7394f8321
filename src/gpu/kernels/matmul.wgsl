// matmul.wgsl: register-blocked tiled matrix product with bias, for
// nn.Linear ([out, in] weights) and Conv1D / CLIP proj ([in, out] weights).
//
//   y[i, y_col_offset + j] = (accumulate ? y[i, y_col_offset + j] : 0)
//                            + sum_kk x[i, x_col_offset + kk] * W(kk, j)
//                            + (has_bias ? bias[bias_offset + j] : 0)
//   W(kk, j) = w[j * k + kk]  when w_out_in == 1   (w is [n, k])
//            = w[kk * n + j]  otherwise            (w is [k, n])
//   for i < m, j < n, kk < k.
//
// w holds f32 values (w_format 0), or half-precision ones two to a word,
// element e in the low 16 bits of word e / 2 when e is even: IEEE halves
// (w_format 1) or bfloat16 (w_format 2, the top half of an f32). Half
// weights are widened as they are staged and accumulate in f32, so a half
// weight takes half the upload and device memory and gives what its f32
// copy gives. The widening is integer arithmetic (half_to_f32), not
// unpack2x16float or shader-f16: every adapter has it (wgpu withholds
// unpack2x16float from Mesa drivers without native f16), and subnormal
// halves are made without an f32 subnormal, which GPUs may flush to zero.
//
// A weight larger than one storage binding is split by rows on upload:
// [out, in] chunks cover output columns (y_col_offset, bias_offset), [in, out]
// chunks cover a range of k and accumulate (x_col_offset, accumulate).
//
// How it is fast: a workgroup of 16 x 16 invocations computes a 64 x 64 tile
// of y, each invocation a 4 x 4 register block (rows 4*ty.., columns
// 4*tx..) held as four vec4 accumulators. Per step of 16 along k, the
// workgroup stages a 64 x 16 slice of x and a 16 x 64 slice of W in shared
// memory, each invocation loading 4 values of each along the direction that
// is contiguous in memory (k for x and [out, in] weights, n for [in, out]
// ones), so neighbouring invocations read neighbouring addresses. The inner
// loop is then 2 vec4 reads from shared memory and 4 vec4 multiply-adds per
// k. Edges are handled without branches: an index past the matrix is clamped
// to a valid address and its value selected to 0, so every invocation runs
// the same instructions whether its tile is whole or not.
//
// Bindings (group 0): 0 x: array<f32> (read), 1 w: array<u32> (read),
// 2 bias: array<f32> (read; a dummy when has_bias == 0),
// 3 y: array<f32> (read_write), 4 p: Params (uniform).
// Dispatch: (ceil(n / 64), ceil(m / 64), 1) workgroups of 16 x 16.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    x_stride: u32,
    x_col_offset: u32,
    y_stride: u32,
    y_col_offset: u32,
    w_out_in: u32,
    has_bias: u32,
    bias_offset: u32,
    accumulate: u32,
    w_format: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const TILE: u32 = 64u;
const STEP: u32 = 16u;

// Four rows or columns to a vec4, so that the inner loop reads each operand
// with one vec4 load: x_tile[kk * 16 + r / 4][r % 4] = x[row0 + r, t + kk];
// w_tile[kk * 16 + c / 4][c % 4] = W(t + kk, col0 + c).
var<workgroup> x_tile: array<vec4<f32>, 256>;
var<workgroup> w_tile: array<vec4<f32>, 256>;

// x[row, x_col_offset + kk], or 0 outside the matrix.
fn load_x(row: u32, kk: u32) -> f32 {
    let inside = row < p.m && kk < p.k;
    let at = select(0u, row * p.x_stride + p.x_col_offset + kk, inside);
    return select(0.0, x[at], inside);
}

// The f32 equal to the IEEE half in the low 16 bits of h.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let magnitude = h & 0x7fffu;
    // Normal: rebias the exponent from 15 to 127 (112 << 23) under the
    // mantissa moved to f32's top bits.
    let normal = (magnitude << 13u) + (112u << 23u);
    // Subnormal: m * 2^-24, exact, since m < 1024 and 2^-24 is a normal f32.
    let subnormal = bitcast<u32>(f32(magnitude) * 5.9604645e-8);
    // Infinity and NaN: all-ones exponent, the mantissa kept.
    let special = 0x7f800000u | ((magnitude & 0x3ffu) << 13u);
    var bits = select(normal, subnormal, magnitude < 0x400u);
    bits = select(bits, special, magnitude >= 0x7c00u);
    return bitcast<f32>(bits | sign);
}

// W(kk, col), or 0 outside the matrix. The format is uniform, so every
// invocation takes the same branch.
fn load_w(kk: u32, col: u32) -> f32 {
    let inside = kk < p.k && col < p.n;
    let at = select(0u, select(kk * p.n + col, col * p.k + kk, p.w_out_in == 1u), inside);
    var value: f32;
    if (p.w_format == 0u) {
        value = bitcast<f32>(w[at]);
    } else {
        let word = w[at >> 1u];
        let odd = (at & 1u) == 1u;
        if (p.w_format == 1u) {
            value = half_to_f32(select(word, word >> 16u, odd));
        } else {
            value = bitcast<f32>(select(word << 16u, word & 0xffff0000u, odd));
        }
    }
    return select(0.0, value, inside);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_index) li: u32, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    // Staging: x by (row li / 4, k 4 * (li % 4) + q); W by (column li / 4,
    // k 4 * (li % 4) + q) for [out, in], by (k li / 16, column 4 * (li % 16)
    // + q) for [in, out].
    let x_r = li / 4u;
    let x_k = 4u * (li % 4u);
    let out_in = p.w_out_in == 1u;
    let w_k = select(li / 16u, 4u * (li % 4u), out_in);
    let w_c = select(4u * (li % 16u), li / 4u, out_in);
    let w_dk = select(0u, 1u, out_in);
    let w_dc = select(1u, 0u, out_in);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var t = 0u; t < p.k; t = t + STEP) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            x_tile[(x_k + q) * 16u + x_r / 4u][x_r % 4u] = load_x(row0 + x_r, t + x_k + q);
            let kk = w_k + q * w_dk;
            let c = w_c + q * w_dc;
            w_tile[kk * 16u + c / 4u][c % 4u] = load_w(t + kk, col0 + c);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < STEP; kk = kk + 1u) {
            let a = x_tile[kk * 16u + lid.y];
            let b = w_tile[kk * 16u + lid.x];
            acc0 = acc0 + a.x * b;
            acc1 = acc1 + a.y * b;
            acc2 = acc2 + a.z * b;
            acc3 = acc3 + a.w * b;
        }
        workgroupBarrier();
    }
    var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + 4u * lid.y + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + 4u * lid.x + j;
            if (row < p.m && col < p.n) {
                var value = accs[i][j];
                let at = row * p.y_stride + p.y_col_offset + col;
                if (p.has_bias == 1u) {
                    value = value + bias[p.bias_offset + col];
                }
                if (p.accumulate == 1u) {
                    value = value + y[at];
                }
                y[at] = value;
            }
        }
    }
}
