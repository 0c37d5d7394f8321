// im2col.wgsl: the patches of a [channels, res, res] image as rows, so that
// a convolution with kernel = stride = patch (CLIP's conv1) is a matmul with
// the conv weight viewed as [width, channels * patch * patch].
//
//   grid = res / patch_size
//   y[py*grid + px, (ch*patch_size + ky)*patch_size + kx]
//       = image[ch, py*patch_size + ky, px*patch_size + kx]
//
// Bindings (group 0): 0 image: array<f32> (read), 1 y: array<f32>
// (read_write), 2 p: Params (uniform).
// Dispatch: (min(ceil(grid^2 * channels * patch_size^2 / 256), 65535), 1, 1)
// workgroups of 256, striding.

struct Params {
    channels: u32,
    res: u32,
    patch_size: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> image: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let grid = p.res / p.patch_size;
    let row_len = p.channels * p.patch_size * p.patch_size;
    let total = grid * grid * row_len;
    for (var idx = gid.x; idx < total; idx = idx + groups.x * 256u) {
        let col = idx % row_len;
        let row = idx / row_len;
        let kx = col % p.patch_size;
        let ky = (col / p.patch_size) % p.patch_size;
        let ch = col / (p.patch_size * p.patch_size);
        let px = row % grid;
        let py = row / grid;
        y[idx] = image[ch * p.res * p.res + (py * p.patch_size + ky) * p.res + px * p.patch_size + kx];
    }
}
