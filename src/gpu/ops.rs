//! The forward pass's operations on the GPU: `GpuBackend` implements
//! `reference::Backend` with the WGSL kernels, with the same semantics as
//! `reference::ops` (the tests in tests/gpu.rs compare the two op by op on
//! odd shapes). Work is recorded into one command encoder and submitted at
//! the end of each block; weights larger than one storage binding are split
//! by rows into several buffers and the matmul and gather kernels run per
//! chunk. Weights go up as f32, except `linear` weights stored in f16 or
//! bf16, which stay 16-bit (two to a word, widened by the matmul kernel as
//! it reads them; no shader-f16 needed, so every adapter does it).
//! `transfer` moves data up and back.

mod transfer;

use transfer::Values;

use super::context::{Context, Kernel, MemoryCounter};
use crate::dtype;
use crate::error::{err, ErrorKind, Result};
use crate::reference::{Activation, AttentionMask, Backend, Heads, Layout, Stored};
use std::rc::Rc;
use wgpu::util::DeviceExt;

/// A device buffer that counts itself in the context's memory counter.
pub struct Buffer {
    pub buffer: wgpu::Buffer,
    bytes: u64,
    counter: Rc<MemoryCounter>,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.counter.free(self.bytes);
    }
}

/// Rows `row_start..row_start + rows` of a matrix, in one buffer.
pub struct Chunk {
    pub row_start: usize,
    pub rows: usize,
    pub buffer: Buffer,
}

/// A `[rows, cols]` matrix on the device, in one or more row chunks: f32,
/// or for a `linear` weight stored in 16 bits, two halves to a word
/// (`stored`; matmul.wgsl's w_format).
pub struct GpuTensor {
    pub rows: usize,
    pub cols: usize,
    pub chunks: Vec<Chunk>,
    pub stored: Stored,
}

impl GpuTensor {
    /// The single buffer of an f32 tensor that was not split.
    fn whole(&self, op: &str) -> Result<&wgpu::Buffer> {
        if self.stored != Stored::F32 {
            return Err(err(
                ErrorKind::BadArgument,
                format!("{op}: a half-precision weight reached a kernel that reads f32"),
            ));
        }
        match self.chunks.as_slice() {
            [one] => Ok(&one.buffer.buffer),
            _ => Err(err(
                ErrorKind::LimitExceeded,
                format!(
                    "{op}: a [{}, {}] tensor is larger than one GPU storage binding; only matmul weights and embedding tables are split",
                    self.rows, self.cols
                ),
            )),
        }
    }
}

/// Time spent in host-to-device copies, for the verdict.
#[derive(Debug, Default, Clone, Copy)]
pub struct UploadStats {
    pub ms: f64,
    pub bytes: u64,
}

pub struct GpuBackend<'c> {
    pub ctx: &'c Context,
    encoder: Option<wgpu::CommandEncoder>,
    dummy: Buffer,
    clock: &'c dyn Fn() -> f64,
    pub upload: UploadStats,
    /// The submission before the latest: natively, `flush` waits for it so
    /// that at most two blocks' weights are in flight (the host would
    /// otherwise upload the whole model before the GPU ran the first block).
    in_flight: Option<wgpu::SubmissionIndex>,
}

const WG: u32 = 256;
/// The longest key sequence and widest head attention.wgsl's `fused`
/// takes (its shared-memory rows); longer ones take the three-kernel path.
const FUSED_MAX_KEYS: usize = 2048;
const FUSED_MAX_HEAD_DIM: usize = 256;
/// Rows and columns of y per matmul workgroup (matmul.wgsl's TILE).
const MATMUL_TILE: usize = 64;
const MAX_GROUPS: u32 = 65535;

fn groups_for(n: usize) -> u32 {
    (n.div_ceil(WG as usize)).clamp(1, MAX_GROUPS as usize) as u32
}

fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        err(
            ErrorKind::LimitExceeded,
            format!("{what} {n} does not fit the GPU kernels' u32 indices"),
        )
    })
}

/// Uniform parameters as the WGSL `Params` structs lay them out: u32/f32
/// words, padded to 16 bytes.
fn words(values: &[u32]) -> Vec<u8> {
    let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    while !bytes.len().is_multiple_of(16) || bytes.is_empty() {
        bytes.push(0);
    }
    bytes
}

impl<'c> GpuBackend<'c> {
    pub fn new(ctx: &'c Context, clock: &'c dyn Fn() -> f64) -> GpuBackend<'c> {
        let dummy = Self::raw_buffer(ctx, 16);
        GpuBackend {
            ctx,
            encoder: None,
            dummy,
            clock,
            upload: UploadStats::default(),
            in_flight: None,
        }
    }

    fn raw_buffer(ctx: &Context, bytes: u64) -> Buffer {
        let bytes = bytes.max(16).div_ceil(4) * 4;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.memory.allocate(bytes);
        Buffer {
            buffer,
            bytes,
            counter: ctx.memory.clone(),
        }
    }

    /// A new `[rows, cols]` tensor in one buffer (activations).
    fn output(&self, rows: usize, cols: usize) -> Result<GpuTensor> {
        let bytes = (rows * cols * 4) as u64;
        if bytes > self.ctx.max_binding_bytes.get() {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!(
                    "an activation of [{rows}, {cols}] needs {bytes} bytes, more than the device binds ({}); run fewer tokens",
                    self.ctx.max_binding_bytes.get()
                ),
            ));
        }
        Ok(GpuTensor {
            rows,
            cols,
            chunks: vec![Chunk {
                row_start: 0,
                rows,
                buffer: Self::raw_buffer(self.ctx, bytes),
            }],
            stored: Stored::F32,
        })
    }

    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        let device = &self.ctx.device;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        })
    }

    /// Record one dispatch of `kernel` with storage `buffers` at bindings
    /// 0.. and the uniform `params` after them.
    fn dispatch(
        &mut self,
        kernel: Kernel,
        buffers: &[&wgpu::Buffer],
        params: &[u32],
        groups: (u32, u32),
    ) {
        self.dispatch_with_more(kernel, buffers, params, &[], groups);
    }

    /// `dispatch` with storage buffers `after` at the bindings after the
    /// uniform (kernels that add a binding to a shared layout).
    fn dispatch_with_more(
        &mut self,
        kernel: Kernel,
        buffers: &[&wgpu::Buffer],
        params: &[u32],
        after: &[&wgpu::Buffer],
        groups: (u32, u32),
    ) {
        let pipeline = self.ctx.pipeline(kernel);
        let uniform = self
            .ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &words(params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: buffers.len() as u32,
            resource: uniform.as_entire_binding(),
        });
        for (i, b) in after.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: (buffers.len() + 1 + i) as u32,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        let encoder = self.encoder();
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }

    /// Submit what was recorded; natively, then wait for the submission
    /// before it.
    pub fn flush(&mut self) {
        if let Some(encoder) = self.encoder.take() {
            let index = self.ctx.queue.submit([encoder.finish()]);
            let previous = self.in_flight.replace(index);
            #[cfg(not(target_arch = "wasm32"))]
            if let Some(previous) = previous {
                // An error here resurfaces at read-back, through take_errors
                // or the failed map.
                let _ = self.ctx.device.poll(wgpu::PollType::Wait {
                    submission_index: Some(previous),
                    timeout: None,
                });
            }
            // The browser schedules the queue itself; nothing to wait on.
            #[cfg(target_arch = "wasm32")]
            let _ = previous;
        }
    }

    fn upload_u32(&mut self, values: &[u32]) -> Buffer {
        let buffer = Self::raw_buffer(self.ctx, (values.len() * 4) as u64);
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.ctx.queue.write_buffer(&buffer.buffer, 0, &bytes);
        buffer
    }

    fn elementwise(
        &mut self,
        kernel: Kernel,
        inputs: &[&GpuTensor],
        rows: usize,
        cols: usize,
    ) -> Result<GpuTensor> {
        let out = self.output(rows, cols)?;
        let n = rows * cols;
        let mut buffers = Vec::new();
        for t in inputs {
            buffers.push(t.whole("element-wise op")?);
        }
        buffers.push(out.whole("element-wise op")?);
        self.dispatch(kernel, &buffers, &[u32_of(n, "size")?], (groups_for(n), 1));
        Ok(out)
    }

    fn copy2d(&mut self, x: &GpuTensor, y: &GpuTensor, block: [usize; 8]) -> Result<()> {
        let [rows, cols, ..] = block;
        let params: Vec<u32> = block
            .iter()
            .map(|v| u32_of(*v, "copy index"))
            .collect::<Result<_>>()?;
        let (xb, yb) = (x.whole("copy")?, y.whole("copy")?);
        self.dispatch(
            Kernel::Copy2d,
            &[xb, yb],
            &params,
            (groups_for(rows * cols), 1),
        );
        Ok(())
    }

    /// Softmax of each row, in place (softmax.wgsl), in dispatches of at
    /// most 65535 rows.
    fn softmax_in_place(&mut self, x: &GpuTensor) -> Result<()> {
        let xb = x.whole("softmax")?.clone();
        let mut row_offset = 0;
        while row_offset < x.rows {
            let n = (x.rows - row_offset).min(MAX_GROUPS as usize);
            let params = [
                u32_of(n, "rows")?,
                u32_of(x.cols, "columns")?,
                u32_of(row_offset, "rows")?,
                0,
            ];
            self.dispatch(Kernel::Softmax, &[&xb], &params, (n as u32, 1));
            row_offset += n;
        }
        Ok(())
    }

    /// Softmax of each row into a new tensor (attention uses the in-place
    /// form on its scores; this one is for tests and callers).
    pub fn softmax(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        let out = self.output(x.rows, x.cols)?;
        self.copy2d(x, &out, [x.rows, x.cols, x.cols, 0, 0, x.cols, 0, 0])?;
        self.softmax_in_place(&out)?;
        Ok(out)
    }
}

impl Backend for GpuBackend<'_> {
    type Tensor = GpuTensor;

    fn dims(&self, x: &GpuTensor) -> (usize, usize) {
        (x.rows, x.cols)
    }

    /// Split into row chunks no larger than one storage binding.
    fn upload(&mut self, data: Vec<f32>, rows: usize, cols: usize) -> Result<GpuTensor> {
        self.upload_as(Values::F32(&data), rows, cols)
    }

    /// A 16-bit weight stays 16-bit when every value is exact in it (always,
    /// for values decoded from such a tensor); otherwise it goes up as f32.
    fn upload_matrix(
        &mut self,
        data: Vec<f32>,
        rows: usize,
        cols: usize,
        stored: Stored,
    ) -> Result<GpuTensor> {
        // One pass: the halves, or None at the first value no half holds.
        let halves: Option<Vec<u16>> = match stored {
            Stored::F32 => None,
            Stored::F16 => data.iter().map(|v| dtype::f16_bits_exact(*v)).collect(),
            Stored::Bf16 => data.iter().map(|v| dtype::bf16_bits_exact(*v)).collect(),
        };
        match &halves {
            Some(halves) => self.upload_as(Values::Half(halves, stored), rows, cols),
            None => self.upload_as(Values::F32(&data), rows, cols),
        }
    }

    fn linear(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        layout: Layout,
        bias: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        let (k, n) = match layout {
            Layout::OutIn => (w.cols, w.rows),
            Layout::InOut => (w.rows, w.cols),
        };
        if x.cols != k || bias.is_some_and(|b| b.rows * b.cols != n) {
            return Err(err(
                ErrorKind::BadArgument,
                format!(
                    "linear: x [{}, {}] and weight [{}, {}] do not fit",
                    x.rows, x.cols, w.rows, w.cols
                ),
            ));
        }
        let m = x.rows;
        let out = self.output(m, n)?;
        let xb = x.whole("linear input")?.clone();
        let yb = out.whole("linear output")?.clone();
        let bias_buffer = match bias {
            Some(b) => b.whole("bias")?.clone(),
            None => self.dummy.buffer.clone(),
        };
        for (i, chunk) in w.chunks.iter().enumerate() {
            // OutIn chunks are ranges of output columns; InOut chunks are
            // ranges of k that accumulate into y.
            let (cn, ck, x_col, y_col, first) = match layout {
                Layout::OutIn => (chunk.rows, k, 0, chunk.row_start, true),
                Layout::InOut => (n, chunk.rows, chunk.row_start, 0, i == 0),
            };
            let has_bias = bias.is_some() && first;
            let bias_offset = if layout == Layout::OutIn {
                chunk.row_start
            } else {
                0
            };
            let params = [
                u32_of(m, "rows")?,
                u32_of(cn, "columns")?,
                u32_of(ck, "inner size")?,
                u32_of(k, "stride")?,
                u32_of(x_col, "offset")?,
                u32_of(n, "stride")?,
                u32_of(y_col, "offset")?,
                (layout == Layout::OutIn) as u32,
                has_bias as u32,
                u32_of(bias_offset, "offset")?,
                (layout == Layout::InOut && i > 0) as u32,
                match w.stored {
                    Stored::F32 => 0,
                    Stored::F16 => 1,
                    Stored::Bf16 => 2,
                },
            ];
            let groups = (
                u32_of(cn.div_ceil(MATMUL_TILE), "workgroups")?,
                u32_of(m.div_ceil(MATMUL_TILE), "workgroups")?,
            );
            if groups.0 > self.ctx.limits.max_compute_workgroups_per_dimension
                || groups.1 > self.ctx.limits.max_compute_workgroups_per_dimension
            {
                return Err(err(ErrorKind::LimitExceeded, format!("linear [{m}, {k}] x [{k}, {n}] needs more workgroups than the device dispatches")));
            }
            let wb = chunk.buffer.buffer.clone();
            self.dispatch(
                Kernel::Matmul,
                &[&xb, &wb, &bias_buffer, &yb],
                &params,
                groups,
            );
        }
        Ok(out)
    }

    fn layer_norm(
        &mut self,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor> {
        let out = self.output(x.rows, x.cols)?;
        let params = [
            u32_of(x.rows, "rows")?,
            u32_of(x.cols, "columns")?,
            eps.to_bits(),
            0,
        ];
        let buffers = [
            x.whole("layer_norm")?,
            gamma.whole("layer_norm")?,
            beta.whole("layer_norm")?,
            out.whole("layer_norm")?,
        ];
        let buffers: Vec<wgpu::Buffer> = buffers.iter().map(|b| (*b).clone()).collect();
        self.dispatch(
            Kernel::LayerNorm,
            &buffers.iter().collect::<Vec<_>>(),
            &params,
            (u32_of(x.rows, "rows")?, 1),
        );
        Ok(out)
    }

    fn rms_norm(&mut self, x: &GpuTensor, gamma: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        let out = self.output(x.rows, x.cols)?;
        let params = [
            u32_of(x.rows, "rows")?,
            u32_of(x.cols, "columns")?,
            eps.to_bits(),
            0,
        ];
        let buffers: Vec<wgpu::Buffer> = [
            x.whole("rms_norm")?,
            gamma.whole("rms_norm")?,
            out.whole("rms_norm")?,
        ]
        .iter()
        .map(|b| (*b).clone())
        .collect();
        self.dispatch(
            Kernel::RmsNorm,
            &buffers.iter().collect::<Vec<_>>(),
            &params,
            (u32_of(x.rows, "rows")?, 1),
        );
        Ok(out)
    }

    fn activation(&mut self, act: Activation, x: &GpuTensor) -> Result<GpuTensor> {
        let kernel = match act {
            Activation::GeluErf => Kernel::GeluErf,
            Activation::GeluTanh => Kernel::GeluTanh,
            Activation::QuickGelu => Kernel::QuickGelu,
            Activation::Silu => Kernel::Silu,
        };
        self.elementwise(kernel, &[x], x.rows, x.cols)
    }

    fn swiglu(&mut self, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor> {
        if (gate.rows, gate.cols) != (up.rows, up.cols) {
            return Err(err(
                ErrorKind::BadArgument,
                "swiglu: gate and up differ in shape",
            ));
        }
        self.elementwise(Kernel::Swiglu, &[gate, up], gate.rows, gate.cols)
    }

    fn add(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        if (a.rows, a.cols) != (b.rows, b.cols) {
            return Err(err(
                ErrorKind::BadArgument,
                format!(
                    "add: [{}, {}] and [{}, {}] differ",
                    a.rows, a.cols, b.rows, b.cols
                ),
            ));
        }
        self.elementwise(Kernel::Add, &[a, b], a.rows, a.cols)
    }

    fn attention(
        &mut self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        heads: Heads,
        mask: &AttentionMask,
    ) -> Result<GpuTensor> {
        let Heads {
            n_heads,
            n_kv_heads,
            head_dim,
        } = heads;
        let (t, s) = (q.rows, k.rows);
        let key_mask = if mask.key_valid.is_empty() {
            None
        } else {
            let flags: Vec<u32> = (0..s)
                .map(|j| mask.key_valid.get(j).copied().unwrap_or(true) as u32)
                .collect();
            Some(self.upload_u32(&flags))
        };
        let params = [
            u32_of(t, "tokens")?,
            u32_of(s, "keys")?,
            u32_of(n_heads, "heads")?,
            u32_of(n_kv_heads, "heads")?,
            u32_of(head_dim, "head width")?,
            mask.causal as u32,
            key_mask.is_some() as u32,
            (1.0 / (head_dim as f64).sqrt() as f32).to_bits(),
        ];
        let mask_buffer = key_mask
            .as_ref()
            .map_or(self.dummy.buffer.clone(), |b| b.buffer.clone());
        let (qb, kb, vb) = (
            q.whole("attention")?.clone(),
            k.whole("attention")?.clone(),
            v.whole("attention")?.clone(),
        );
        if s <= FUSED_MAX_KEYS && head_dim <= FUSED_MAX_HEAD_DIM {
            let out = self.output(t, n_heads * head_dim)?;
            let ob = out.whole("attention")?.clone();
            let rows = n_heads * t;
            let x = rows.min(MAX_GROUPS as usize);
            let groups = (u32_of(x, "rows")?, u32_of(rows.div_ceil(x.max(1)), "rows")?);
            self.dispatch_with_more(
                Kernel::AttentionFused,
                &[&qb, &kb, &mask_buffer, &ob],
                &params,
                &[&vb],
                groups,
            );
            return Ok(out);
        }
        let scores = self.output(n_heads * t, s)?;
        let sb = scores.whole("attention")?.clone();
        self.dispatch(
            Kernel::AttentionScores,
            &[&qb, &kb, &mask_buffer, &sb],
            &params,
            (groups_for(n_heads * t * s), 1),
        );
        self.softmax_in_place(&scores)?;
        let out = self.output(t, n_heads * head_dim)?;
        let ob = out.whole("attention")?.clone();
        self.dispatch(
            Kernel::AttentionWeightedSum,
            &[&sb, &vb, &mask_buffer, &ob],
            &params,
            (groups_for(t * n_heads * head_dim), 1),
        );
        Ok(out)
    }

    fn rope(
        &mut self,
        x: &GpuTensor,
        n_heads: usize,
        head_dim: usize,
        theta: f32,
    ) -> Result<GpuTensor> {
        let t = x.rows;
        let half = head_dim / 2;
        // The angles exactly as reference::ops::rope computes them.
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for pos in 0..t {
            for i in 0..half {
                let inv_freq = 1.0 / (theta as f64).powf(2.0 * i as f64 / head_dim as f64);
                let angle = (pos as f32 * inv_freq as f32) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let cos_t = self.upload(cos, t, half)?;
        let sin_t = self.upload(sin, t, half)?;
        let out = self.output(t, x.cols)?;
        let params = [
            u32_of(t, "tokens")?,
            u32_of(n_heads, "heads")?,
            u32_of(head_dim, "head width")?,
            0,
        ];
        let buffers: Vec<wgpu::Buffer> = [
            x.whole("rope")?,
            cos_t.whole("rope")?,
            sin_t.whole("rope")?,
            out.whole("rope")?,
        ]
        .iter()
        .map(|b| (*b).clone())
        .collect();
        self.dispatch(
            Kernel::Rope,
            &buffers.iter().collect::<Vec<_>>(),
            &params,
            (groups_for(t * n_heads * half), 1),
        );
        Ok(out)
    }

    fn gather(&mut self, table: &GpuTensor, ids: &[u32]) -> Result<GpuTensor> {
        if table.stored != Stored::F32 {
            return Err(err(
                ErrorKind::BadArgument,
                "gather: embedding tables stay f32 (only linear weights are kept in 16 bits)",
            ));
        }
        if let Some(bad) = ids.iter().find(|id| **id as usize >= table.rows) {
            return Err(err(
                ErrorKind::BadArgument,
                format!("token id {bad} is outside the table of {} rows", table.rows),
            ));
        }
        let out = self.output(ids.len(), table.cols)?;
        let id_buffer = self.upload_u32(ids);
        let ob = out.whole("gather")?.clone();
        for chunk in &table.chunks {
            let params = [
                u32_of(ids.len(), "ids")?,
                u32_of(table.cols, "columns")?,
                u32_of(chunk.row_start, "rows")?,
                u32_of(chunk.rows, "rows")?,
            ];
            let tb = chunk.buffer.buffer.clone();
            self.dispatch(
                Kernel::Gather,
                &[&tb, &id_buffer.buffer, &ob],
                &params,
                (groups_for(ids.len() * table.cols), 1),
            );
        }
        Ok(out)
    }

    fn im2col(
        &mut self,
        image: &GpuTensor,
        channels: usize,
        res: usize,
        patch: usize,
    ) -> Result<GpuTensor> {
        let grid = res / patch;
        let out = self.output(grid * grid, channels * patch * patch)?;
        let params = [
            u32_of(channels, "channels")?,
            u32_of(res, "resolution")?,
            u32_of(patch, "patch")?,
            0,
        ];
        let (ib, ob) = (image.whole("im2col")?.clone(), out.whole("im2col")?.clone());
        self.dispatch(
            Kernel::Im2col,
            &[&ib, &ob],
            &params,
            (groups_for(out.rows * out.cols), 1),
        );
        Ok(out)
    }

    fn slice_cols(&mut self, x: &GpuTensor, start: usize, len: usize) -> Result<GpuTensor> {
        if start + len > x.cols {
            return Err(err(
                ErrorKind::BadArgument,
                "slice_cols: columns out of range",
            ));
        }
        let out = self.output(x.rows, len)?;
        self.copy2d(x, &out, [x.rows, len, x.cols, 0, start, len, 0, 0])?;
        Ok(out)
    }

    fn concat_rows(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        if a.cols != b.cols {
            return Err(err(ErrorKind::BadArgument, "concat_rows: widths differ"));
        }
        let out = self.output(a.rows + b.rows, a.cols)?;
        self.copy2d(a, &out, [a.rows, a.cols, a.cols, 0, 0, a.cols, 0, 0])?;
        self.copy2d(b, &out, [b.rows, b.cols, b.cols, 0, 0, b.cols, a.rows, 0])?;
        Ok(out)
    }

    fn end_block(&mut self) -> Result<()> {
        self.flush();
        Ok(())
    }
}
