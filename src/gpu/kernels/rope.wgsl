// rope.wgsl: rotary position embedding as Hugging Face's LLaMA applies it
// (rotate_half: element c pairs with element c + d/2 of the same head).
// The angles' cos and sin come from the host, computed exactly as the CPU
// reference computes them, so GPU sin/cos precision does not matter.
//
//   for c < d/2, a = x[i, h*d + c], b = x[i, h*d + c + d/2]:
//   y[i, h*d + c]       = a * cos[i, c] - b * sin[i, c]
//   y[i, h*d + c + d/2] = b * cos[i, c] + a * sin[i, c]
//
// Bindings (group 0): 0 x: array<f32> (read), 1 cos_table: array<f32>
// (read, [t, d/2]), 2 sin_table: array<f32> (read, [t, d/2]),
// 3 y: array<f32> (read_write), 4 p: Params (uniform).
// Dispatch: (min(ceil(t * n_heads * d/2 / 256), 65535), 1, 1) workgroups of
// 256, striding.

struct Params {
    t: u32,
    n_heads: u32,
    head_dim: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cos_table: array<f32>;
@group(0) @binding(2) var<storage, read> sin_table: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let half = p.head_dim / 2u;
    let total = p.t * p.n_heads * half;
    for (var idx = gid.x; idx < total; idx = idx + groups.x * 256u) {
        let c = idx % half;
        let h = (idx / half) % p.n_heads;
        let i = idx / (half * p.n_heads);
        let base = i * p.n_heads * p.head_dim + h * p.head_dim;
        let a = x[base + c];
        let b = x[base + c + half];
        let cs = cos_table[i * half + c];
        let sn = sin_table[i * half + c];
        y[base + c] = a * cs - b * sn;
        y[base + c + half] = b * cs + a * sn;
    }
}
