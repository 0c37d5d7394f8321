// layer_norm.wgsl: nn.LayerNorm over the last dimension, one workgroup per
// row, mean and variance in two passes (as the CPU reference does).
//
//   mean = sum_j x[r, j] / cols
//   var  = sum_j (x[r, j] - mean)^2 / cols          (biased, as PyTorch)
//   y[r, j] = (x[r, j] - mean) / sqrt(var + eps) * gamma[j] + beta[j]
//
// Bindings (group 0): 0 x: array<f32> (read), 1 gamma: array<f32> (read),
// 2 beta: array<f32> (read), 3 y: array<f32> (read_write), 4 p: Params.
// Dispatch: (rows, 1, 1) workgroups of 256.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

fn reduce_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x;
    let base = row * p.cols;
    var sum = 0.0;
    for (var j = lid.x; j < p.cols; j = j + WG) {
        sum = sum + x[base + j];
    }
    let mean = reduce_sum(lid.x, sum) / f32(p.cols);
    var sq = 0.0;
    for (var j = lid.x; j < p.cols; j = j + WG) {
        let d = x[base + j] - mean;
        sq = sq + d * d;
    }
    let variance = reduce_sum(lid.x, sq) / f32(p.cols);
    let inv = 1.0 / sqrt(variance + p.eps);
    for (var j = lid.x; j < p.cols; j = j + WG) {
        y[base + j] = (x[base + j] - mean) * inv * gamma[j] + beta[j];
    }
}
