// attention.wgsl: scaled dot-product attention for one sequence, in two
// entry points around softmax.wgsl (scores, then softmax of each row, then
// weighted_sum). Grouped-query attention: query head h reads kv head
// h / (n_heads / n_kv_heads).
//
//   scores:       s[h, i, j] = (sum_c q[i, h*d + c] * k[j, g(h)*d + c]) * scale
//                 or -3.4e38 when key j is hidden (causal: j > i; padding:
//                 key_valid[j] == 0)
//   weighted_sum: out[i, h*d + c] = sum_j s[h, i, j] * v[j, g(h)*d + c]
//
// q is [t, n_heads*d], k and v [s, n_kv_heads*d], s (scores) [n_heads*t, s],
// out [t, n_heads*d]; scale = 1/sqrt(d).
//
// Bindings (group 0): 0 a: array<f32> (read; q for scores, probabilities for
// weighted_sum), 1 b: array<f32> (read; k or v), 2 key_valid: array<u32>
// (read; a dummy when use_key_mask == 0), 3 out: array<f32> (read_write),
// 4 p: Params (uniform).
// Dispatch: (min(ceil(total / 256), 65535), 1, 1) workgroups of 256, each
// invocation striding over the outputs.

struct Params {
    t: u32,
    s: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    causal: u32,
    use_key_mask: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> key_valid: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const HIDDEN: f32 = -3.402823e38;

@compute @workgroup_size(256, 1, 1)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let total = p.n_heads * p.t * p.s;
    let d = p.head_dim;
    let group = p.n_heads / p.n_kv_heads;
    for (var idx = gid.x; idx < total; idx = idx + groups.x * 256u) {
        let j = idx % p.s;
        let i = (idx / p.s) % p.t;
        let h = idx / (p.s * p.t);
        var visible = true;
        if (p.causal == 1u && j > i) {
            visible = false;
        }
        if (p.use_key_mask == 1u && key_valid[j] == 0u) {
            visible = false;
        }
        if (!visible) {
            out[idx] = HIDDEN;
            continue;
        }
        let kv = h / group;
        var dot = 0.0;
        for (var c = 0u; c < d; c = c + 1u) {
            dot = dot + a[i * p.n_heads * d + h * d + c] * b[j * p.n_kv_heads * d + kv * d + c];
        }
        out[idx] = dot * p.scale;
    }
}

@compute @workgroup_size(256, 1, 1)
fn weighted_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let d = p.head_dim;
    let total = p.t * p.n_heads * d;
    let group = p.n_heads / p.n_kv_heads;
    // Both entry points share one bind group layout, so this one names the
    // key mask too (a layout derived from the shader drops unused bindings).
    _ = arrayLength(&key_valid);
    for (var idx = gid.x; idx < total; idx = idx + groups.x * 256u) {
        let c = idx % d;
        let h = (idx / d) % p.n_heads;
        let i = idx / (d * p.n_heads);
        let kv = h / group;
        var sum = 0.0;
        let row = (h * p.t + i) * p.s;
        for (var j = 0u; j < p.s; j = j + 1u) {
            sum = sum + a[row + j] * b[j * p.n_kv_heads * d + kv * d + c];
        }
        out[idx] = sum;
    }
}
