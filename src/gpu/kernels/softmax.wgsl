// softmax.wgsl: softmax of each row in place, the row maximum subtracted
// first so that large scores do not overflow; one workgroup per row.
//
//   m = max_j x[r, j]
//   x[r, j] = exp(x[r, j] - m) / sum_j exp(x[r, j] - m)
//
// Masked scores are written as -3.4e38 by attention.wgsl (WGSL has no
// infinity literal); exp of them is 0, as exp(-inf) is in the reference.
//
// Bindings (group 0): 0 x: array<f32> (read_write), 1 p: Params (uniform).
// Dispatch: (rows, 1, 1) workgroups of 256 (rows <= 65535 per dispatch;
// row_offset selects the first row).

struct Params {
    rows: u32,
    cols: u32,
    row_offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let base = (p.row_offset + wid.x) * p.cols;
    var m = -3.402823e38;
    for (var j = lid.x; j < p.cols; j = j + WG) {
        m = max(m, x[base + j]);
    }
    partial[lid.x] = m;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid.x < stride) {
            partial[lid.x] = max(partial[lid.x], partial[lid.x + stride]);
        }
        workgroupBarrier();
    }
    let row_max = partial[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var j = lid.x; j < p.cols; j = j + WG) {
        let e = exp(x[base + j] - row_max);
        x[base + j] = e;
        sum = sum + e;
    }
    partial[lid.x] = sum;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid.x < stride) {
            partial[lid.x] = partial[lid.x] + partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / partial[0];
    for (var j = lid.x; j < p.cols; j = j + WG) {
        x[base + j] = x[base + j] * inv;
    }
}
