// swiglu.wgsl: LLaMA's MLP gate.
//
//   y[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]
//
// Bindings (group 0): 0 gate: array<f32> (read), 1 up: array<f32> (read),
// 2 y: array<f32> (read_write), 3 p: Params (uniform).
// Dispatch: (min(ceil(n / 256), 65535), 1, 1) workgroups of 256, striding.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.n; i = i + groups.x * 256u) {
        let g = gate[i];
        y[i] = g / (1.0 + exp(-g)) * up[i];
    }
}
