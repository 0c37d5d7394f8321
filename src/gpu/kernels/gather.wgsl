// gather.wgsl: rows of a table by index (embeddings; the [CLS] or
// end-of-text row). A table split into chunks on upload is gathered chunk by
// chunk: each dispatch copies only the ids inside its rows.
//
//   for r < n_ids with row_offset <= ids[r] < row_offset + table_rows:
//   y[r, c] = table[(ids[r] - row_offset), c]     for c < cols
//
// Bindings (group 0): 0 table: array<f32> (read), 1 ids: array<u32> (read),
// 2 y: array<f32> (read_write), 3 p: Params (uniform).
// Dispatch: (min(ceil(n_ids * cols / 256), 65535), 1, 1) workgroups of 256,
// striding.

struct Params {
    n_ids: u32,
    cols: u32,
    row_offset: u32,
    table_rows: u32,
}

@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let total = p.n_ids * p.cols;
    for (var idx = gid.x; idx < total; idx = idx + groups.x * 256u) {
        let r = idx / p.cols;
        let c = idx % p.cols;
        let id = ids[r];
        if (id >= p.row_offset && id < p.row_offset + p.table_rows) {
            y[idx] = table[(id - p.row_offset) * p.cols + c];
        }
    }
}
