// activation.wgsl: element-wise activations, one entry point each.
//
//   gelu_erf:   y = x/2 * (1 + erf(x / sqrt(2)))     (BERT "gelu", nn.GELU)
//               erf through erfc(z) = t * exp(-z^2 + P(t)), t = 1/(1 + z/2),
//               the Numerical Recipes Chebyshev fit (fractional error < 1.2e-7),
//               the same formula as the CPU reference's `ops::erfc`.
//   gelu_tanh:  y = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))  ("gelu_new")
//   quick_gelu: y = x * sigmoid(1.702 x)                (CLIP's QuickGELU)
//   silu:       y = x * sigmoid(x)
//
// Bindings (group 0): 0 x: array<f32> (read), 1 y: array<f32> (read_write),
// 2 p: Params (uniform). Dispatch: (min(ceil(n / 256), 65535), 1, 1)
// workgroups of 256; each invocation strides over the array.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn erfc_nr(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(poly);
    if (v >= 0.0) {
        return r;
    }
    return 2.0 - r;
}

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

@compute @workgroup_size(256, 1, 1)
fn gelu_erf(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.n; i = i + groups.x * 256u) {
        let v = x[i];
        y[i] = 0.5 * v * erfc_nr(-v * 0.70710678118654752);
    }
}

@compute @workgroup_size(256, 1, 1)
fn gelu_tanh(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.n; i = i + groups.x * 256u) {
        let v = x[i];
        // tanh saturates long before 15; clamping keeps exp-based tanh
        // implementations away from inf / inf.
        let inner = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -15.0, 15.0);
        y[i] = 0.5 * v * (1.0 + tanh(inner));
    }
}

@compute @workgroup_size(256, 1, 1)
fn quick_gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.n; i = i + groups.x * 256u) {
        let v = x[i];
        y[i] = v * sigmoid(1.702 * v);
    }
}

@compute @workgroup_size(256, 1, 1)
fn silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < p.n; i = i + groups.x * 256u) {
        let v = x[i];
        y[i] = v * sigmoid(v);
    }
}
