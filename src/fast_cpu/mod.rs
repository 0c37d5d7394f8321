//! The fast CPU backend of the forward pass: what `verify --device cpu`,
//! the page's CPU path and the GPU comparison run. The model graphs are the
//! reference's (`reference::{vit, bert, gpt2, llama}` over the `Backend`
//! trait); this backend swaps the two operations that hold nearly all the
//! arithmetic, `linear` and `attention`, for packed SGEMM (`matmul`) split
//! over threads (`threads`), the activations in f32 (`elementwise`), and
//! the norms with the reference's own code, on rows side by side. The naive `reference::Cpu`
//! stays the oracle: tests compare each operation here with it on odd
//! shapes, and whole models with it and with PyTorch.

pub mod attention;
pub mod elementwise;
pub mod matmul;
pub mod threads;

use crate::error::{err, ErrorKind, Result};
use crate::reference::{ops, Activation, AttentionMask, Backend, Cpu, Heads, Layout, Mat};
pub use threads::Threads;

/// The largest |a - b| of two equally long outputs.
#[cfg(test)]
pub(crate) fn test_max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "output lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Seeded values in -1..1 (a 64-bit LCG), for the tests' odd shapes.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The cheap operations (gather, im2col, concatenation) and the shape
/// checks are the reference's (`Cpu`, a unit struct).
pub struct FastCpu {
    threads: Threads,
}

impl FastCpu {
    /// `threads`: `None` for every core natively (one on wasm).
    pub fn new(threads: Option<usize>) -> Result<FastCpu> {
        Ok(FastCpu {
            threads: Threads::new(threads)?,
        })
    }

    pub fn thread_count(&self) -> usize {
        self.threads.count()
    }

    /// `linear`, and with `act` `linear_activation`.
    fn product(
        &self,
        x: &Mat,
        w: &Mat,
        layout: Layout,
        bias: Option<&Mat>,
        act: Option<Activation>,
    ) -> Result<Mat> {
        let (k, n) = match layout {
            Layout::OutIn => (w.cols, w.rows),
            Layout::InOut => (w.rows, w.cols),
        };
        Cpu::check_linear(x, w, layout, bias)?;
        let y = matmul::linear(
            &self.threads,
            &x.data,
            x.rows,
            k,
            &w.data,
            n,
            layout,
            bias.map(|b| b.data.as_slice()),
            act,
        );
        Cpu.upload(y, x.rows, n)
    }

    /// `f(start, block, out)` over blocks of whole rows of `x`, `start` the
    /// block's first element, written into one output of the same size:
    /// element-wise operations, side by side.
    fn by_rows(&self, x: &Mat, f: impl Fn(usize, &[f32], &mut [f32]) + Sync + Send) -> Result<Mat> {
        let mut out = vec![0f32; x.data.len()];
        let cols = x.cols.max(1);
        let rows_per_piece = self.threads.rows_per_piece(x.rows);
        self.threads
            .for_each_chunk_mut(&mut out, rows_per_piece * cols, |piece, chunk| {
                let start = piece * rows_per_piece * cols;
                f(start, &x.data[start..start + chunk.len()], chunk);
            });
        Ok(Mat {
            rows: x.rows,
            cols: x.cols,
            data: out,
        })
    }
}

impl Backend for FastCpu {
    type Tensor = Mat;

    fn dims(&self, x: &Mat) -> (usize, usize) {
        (x.rows, x.cols)
    }
    fn upload(&mut self, data: Vec<f32>, rows: usize, cols: usize) -> Result<Mat> {
        Cpu.upload(data, rows, cols)
    }
    fn linear(&mut self, x: &Mat, w: &Mat, layout: Layout, bias: Option<&Mat>) -> Result<Mat> {
        self.product(x, w, layout, bias, None)
    }
    fn linear_activation(
        &mut self,
        x: &Mat,
        w: &Mat,
        layout: Layout,
        bias: Option<&Mat>,
        act: Activation,
    ) -> Result<Mat> {
        self.product(x, w, layout, bias, Some(act))
    }
    fn layer_norm(&mut self, x: &Mat, gamma: &Mat, beta: &Mat, eps: f32) -> Result<Mat> {
        let cols = x.cols;
        self.by_rows(x, |_, rows, out| {
            ops::layer_norm_into(rows, cols, &gamma.data, &beta.data, eps, out);
        })
    }
    fn rms_norm(&mut self, x: &Mat, gamma: &Mat, eps: f32) -> Result<Mat> {
        let cols = x.cols;
        self.by_rows(x, |_, rows, out| {
            ops::rms_norm_into(rows, cols, &gamma.data, eps, out);
        })
    }
    fn activation(&mut self, act: Activation, x: &Mat) -> Result<Mat> {
        self.by_rows(x, |_, rows, out| {
            elementwise::activation_into(act, rows, out)
        })
    }
    fn swiglu(&mut self, gate: &Mat, up: &Mat) -> Result<Mat> {
        Cpu::check_same_dims(gate, up, "swiglu")?;
        self.by_rows(gate, |start, rows, out| {
            elementwise::swiglu_into(rows, &up.data[start..start + rows.len()], out);
        })
    }
    fn add(&mut self, a: &Mat, b: &Mat) -> Result<Mat> {
        Cpu::check_same_dims(a, b, "add")?;
        self.by_rows(a, |start, rows, out| {
            let other = &b.data[start..start + rows.len()];
            for ((o, x), y) in out.iter_mut().zip(rows).zip(other) {
                *o = x + y;
            }
        })
    }
    fn attention(
        &mut self,
        q: &Mat,
        k: &Mat,
        v: &Mat,
        heads: Heads,
        mask: &AttentionMask,
    ) -> Result<Mat> {
        Cpu::check_attention(q, k, v, heads)?;
        let y = attention::attention(
            &self.threads,
            &q.data,
            &k.data,
            &v.data,
            q.rows,
            k.rows,
            heads,
            mask,
        );
        Cpu.upload(y, q.rows, heads.n_heads * heads.head_dim)
    }
    fn rope(&mut self, x: &Mat, n_heads: usize, head_dim: usize, theta: f32) -> Result<Mat> {
        if x.cols != n_heads * head_dim || !head_dim.is_multiple_of(2) {
            return Err(err(
                ErrorKind::BadArgument,
                format!(
                    "rope: [{}, {}] is not {n_heads} heads of an even width {head_dim}",
                    x.rows, x.cols
                ),
            ));
        }
        let table = elementwise::rope_table(x.rows, head_dim, theta);
        let cols = x.cols.max(1);
        self.by_rows(x, |start, rows, out| {
            elementwise::rope_rows_into(rows, start / cols, n_heads, head_dim, &table, out);
        })
    }
    fn gather(&mut self, table: &Mat, ids: &[u32]) -> Result<Mat> {
        Cpu.gather(table, ids)
    }
    fn im2col(&mut self, image: &Mat, channels: usize, res: usize, patch: usize) -> Result<Mat> {
        Cpu.im2col(image, channels, res, patch)
    }
    fn slice_cols(&mut self, x: &Mat, start: usize, len: usize) -> Result<Mat> {
        if start.checked_add(len).is_none_or(|end| end > x.cols) {
            return Err(err(
                ErrorKind::BadArgument,
                format!(
                    "slice_cols: columns {start}..+{len} of a [{}, {}] matrix",
                    x.rows, x.cols
                ),
            ));
        }
        let mut out = vec![0f32; x.rows * len];
        let rows_per_piece = self.threads.rows_per_piece(x.rows);
        self.threads
            .for_each_chunk_mut(&mut out, rows_per_piece * len, |piece, chunk| {
                let first = piece * rows_per_piece;
                for (row, values) in chunk.chunks_exact_mut(len.max(1)).enumerate() {
                    let from = (first + row) * x.cols + start;
                    values.copy_from_slice(&x.data[from..from + len]);
                }
            });
        Ok(Mat {
            rows: x.rows,
            cols: len,
            data: out,
        })
    }
    fn concat_rows(&mut self, a: &Mat, b: &Mat) -> Result<Mat> {
        Cpu.concat_rows(a, b)
    }
}
