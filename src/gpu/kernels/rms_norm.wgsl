// rms_norm.wgsl: LLaMA's RMSNorm, one workgroup per row.
//
//   y[r, j] = gamma[j] * x[r, j] / sqrt(sum_j x[r, j]^2 / cols + eps)
//
// Bindings (group 0): 0 x: array<f32> (read), 1 gamma: array<f32> (read),
// 2 y: array<f32> (read_write), 3 p: Params (uniform).
// Dispatch: (rows, 1, 1) workgroups of 256.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let base = wid.x * p.cols;
    var sq = 0.0;
    for (var j = lid.x; j < p.cols; j = j + WG) {
        sq = sq + x[base + j] * x[base + j];
    }
    partial[lid.x] = sq;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid.x < stride) {
            partial[lid.x] = partial[lid.x] + partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(partial[0] / f32(p.cols) + p.eps);
    for (var j = lid.x; j < p.cols; j = j + WG) {
        y[base + j] = gamma[j] * (x[base + j] * inv);
    }
}
