// attention.wgsl: scaled dot-product attention for one sequence.
// Grouped-query attention: query head h reads kv head h / (n_heads /
// n_kv_heads).
//
//   s[h, i, j] = (sum_c q[i, h*d + c] * k[j, g(h)*d + c]) * scale, or
//                -3.4e38 when key j is hidden (causal: j > i; padding:
//                key_valid[j] == 0)
//   out[i, h*d + c] = sum_j softmax_j(s[h, i, :]) * v[j, g(h)*d + c]
//
// q is [t, n_heads*d], k and v [s, n_kv_heads*d], out [t, n_heads*d];
// scale = 1/sqrt(d).
//
// `fused` does it all in one dispatch, one workgroup of 64 per (head, query
// row): the query row and the row's scores stay in shared memory (scores,
// row max and sum, weights, weighted sum), so nothing of size heads x t x s
// goes to device memory. It takes s <= FUSED_MAX_KEYS and d <= FUSED_MAX_D,
// which covers the sequences `verify` runs (ViT-L-14-336's 577 tokens
// included); longer ones use `scores`, softmax.wgsl over each row of the
// scores buffer, then `weighted_sum`.
//
// Bindings (group 0): 0 a: array<f32> (read; q for scores and fused,
// probabilities for weighted_sum), 1 b: array<f32> (read; k, or v for
// weighted_sum), 2 key_valid: array<u32> (read; a dummy when use_key_mask ==
// 0), 3 out: array<f32> (read_write), 4 p: Params (uniform), 5 v:
// array<f32> (read; fused only).
// Dispatch: scores and weighted_sum: (min(ceil(total / 256), 65535), 1, 1)
// workgroups of 256, each invocation striding over the outputs; fused:
// (x, y, 1) workgroups of 64 with x * y >= n_heads * t, workgroup
// y * x + x' taking row (h, i) = (g / t, g % t).

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
@group(0) @binding(5) var<storage, read> v: array<f32>;

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

const FUSED_WG: u32 = 64u;
const FUSED_MAX_KEYS: u32 = 2048u;
const FUSED_MAX_D: u32 = 256u;

var<workgroup> q_row: array<f32, 256>;
var<workgroup> weights_row: array<f32, 2048>;
var<workgroup> partial: array<f32, 64>;

// The sum (is_max == false) or max of partial[0..64] in every invocation.
fn reduce(lane: u32, is_max: bool) -> f32 {
    workgroupBarrier();
    for (var stride = FUSED_WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            let other = partial[lane + stride];
            partial[lane] = select(partial[lane] + other, max(partial[lane], other), is_max);
        }
        workgroupBarrier();
    }
    let value = partial[0];
    workgroupBarrier();
    return value;
}

@compute @workgroup_size(64, 1, 1)
fn fused(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let g = wid.y * groups.x + wid.x;
    if (g >= p.n_heads * p.t) {
        return;
    }
    let lane = lid.x;
    let d = p.head_dim;
    let h = g / p.t;
    let i = g % p.t;
    let kv = h / (p.n_heads / p.n_kv_heads);
    let q_base = i * p.n_heads * d + h * d;
    let kv_stride = p.n_kv_heads * d;
    for (var c = lane; c < d; c = c + FUSED_WG) {
        q_row[c] = a[q_base + c];
    }
    workgroupBarrier();
    var local_max = HIDDEN;
    for (var j = lane; j < p.s; j = j + FUSED_WG) {
        let hidden = (p.causal == 1u && j > i) || (p.use_key_mask == 1u && key_valid[j] == 0u);
        var score = HIDDEN;
        if (!hidden) {
            let k_base = j * kv_stride + kv * d;
            var dot = 0.0;
            for (var c = 0u; c < d; c = c + 1u) {
                dot = dot + q_row[c] * b[k_base + c];
            }
            score = dot * p.scale;
        }
        weights_row[j] = score;
        local_max = max(local_max, score);
    }
    partial[lane] = local_max;
    let row_max = reduce(lane, true);
    var local_sum = 0.0;
    for (var j = lane; j < p.s; j = j + FUSED_WG) {
        let e = exp(weights_row[j] - row_max);
        weights_row[j] = e;
        local_sum = local_sum + e;
    }
    partial[lane] = local_sum;
    let inv = 1.0 / reduce(lane, false);
    for (var c = lane; c < d; c = c + FUSED_WG) {
        var sum = 0.0;
        for (var j = 0u; j < p.s; j = j + 1u) {
            sum = sum + weights_row[j] * v[j * kv_stride + kv * d + c];
        }
        out[i * p.n_heads * d + h * d + c] = sum * inv;
    }
}
