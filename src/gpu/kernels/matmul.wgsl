// matmul.wgsl: tiled matrix product with bias, for nn.Linear ([out, in]
// weights) and Conv1D / CLIP proj ([in, out] weights).
//
//   y[i, y_col_offset + j] = (accumulate ? y[i, y_col_offset + j] : 0)
//                            + sum_kk x[i, x_col_offset + kk] * W(kk, j)
//                            + (has_bias ? bias[bias_offset + j] : 0)
//   W(kk, j) = w[j * k + kk]  when w_out_in == 1   (w is [n, k])
//            = w[kk * n + j]  otherwise            (w is [k, n])
//   for i < m, j < n, kk < k.
//
// A weight larger than one storage binding is split by rows on upload:
// [out, in] chunks cover output columns (y_col_offset, bias_offset), [in, out]
// chunks cover a range of k and accumulate (x_col_offset, accumulate).
//
// Bindings (group 0): 0 x: array<f32> (read), 1 w: array<f32> (read),
// 2 bias: array<f32> (read; a dummy when has_bias == 0),
// 3 y: array<f32> (read_write), 4 p: Params (uniform).
// Dispatch: (ceil(n / 16), ceil(m / 16), 1) workgroups of 16 x 16.

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
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const TILE: u32 = 16u;

var<workgroup> x_tile: array<array<f32, 16>, 16>;
var<workgroup> w_tile: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    var acc = 0.0;
    for (var t = 0u; t < p.k; t = t + TILE) {
        // x_tile[r][c] = x[row, t + c]; w_tile[r][c] = W(t + r, col).
        let kx = t + lid.x;
        var xv = 0.0;
        if (row < p.m && kx < p.k) {
            xv = x[row * p.x_stride + p.x_col_offset + kx];
        }
        x_tile[lid.y][lid.x] = xv;
        let kw = t + lid.y;
        var wv = 0.0;
        if (kw < p.k && col < p.n) {
            if (p.w_out_in == 1u) {
                wv = w[col * p.k + kw];
            } else {
                wv = w[kw * p.n + col];
            }
        }
        w_tile[lid.y][lid.x] = wv;
        workgroupBarrier();
        for (var i = 0u; i < TILE; i = i + 1u) {
            acc = acc + x_tile[lid.y][i] * w_tile[i][lid.x];
        }
        workgroupBarrier();
    }
    if (row < p.m && col < p.n) {
        let at = row * p.y_stride + p.y_col_offset + col;
        if (p.has_bias == 1u) {
            acc = acc + bias[p.bias_offset + col];
        }
        if (p.accumulate == 1u) {
            acc = acc + y[at];
        }
        y[at] = acc;
    }
}
