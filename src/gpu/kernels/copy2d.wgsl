// copy2d.wgsl: copy a block of rows x cols between row-major matrices; this
// is slice_cols (q, k, v out of a fused projection) and concat_rows (the
// class token above the patches).
//
//   y[(y_row + r) * y_stride + y_col + c] = x[(x_row + r) * x_stride + x_col + c]
//   for r < rows, c < cols
//
// Bindings (group 0): 0 x: array<f32> (read), 1 y: array<f32> (read_write),
// 2 p: Params (uniform).
// Dispatch: (min(ceil(rows * cols / 256), 65535), 1, 1) workgroups of 256,
// striding.

struct Params {
    rows: u32,
    cols: u32,
    x_stride: u32,
    x_row: u32,
    x_col: u32,
    y_stride: u32,
    y_row: u32,
    y_col: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let total = p.rows * p.cols;
    for (var idx = gid.x; idx < total; idx = idx + groups.x * 256u) {
        let r = idx / p.cols;
        let c = idx % p.cols;
        y[(p.y_row + r) * p.y_stride + p.y_col + c] = x[(p.x_row + r) * p.x_stride + p.x_col + c];
    }
}
