//! The forward pass. Each model graph (`vit`, `bert`, `gpt2`, `llama`) is
//! written once against the `Backend` trait, the handful of operations a
//! transformer needs; `Cpu` implements them with `ops` (plain f32 Rust,
//! obviously right: the oracle) and `gpu::GpuBackend` with WGSL kernels, so
//! the GPU runs exactly the graph the CPU runs and the two are compared on
//! the same blocks. The graphs share their named layers (`nn.LayerNorm`,
//! `nn.Linear`) through `layers` and never import each other. `model` turns
//! configs into a `ModelDesc` and dispatches to the graphs; the graphs take
//! their hyperparameters from `config`, so the imports point one way:
//! `model` -> graphs -> `layers`, `ops`, `config` and the `Backend` here.
//!
//! Everything here is batch size 1: a sequence is a `[tokens, width]`
//! matrix, an image a `[channels, res·res]` one.

pub mod bert;
pub mod config;
pub mod gpt2;
pub mod layers;
pub mod llama;
pub mod model;
pub mod ops;
pub mod vit;

pub use crate::dtype::Stored;
use crate::error::{err, ErrorKind, Result};
use crate::weights::WeightSource;
pub use ops::{Activation, AttentionMask, Heads, Layout};

/// The operations of a transformer forward pass on one device. Tensors are
/// 2-D `[rows, cols]` matrices owned by the backend.
pub trait Backend {
    type Tensor;

    fn dims(&self, x: &Self::Tensor) -> (usize, usize);
    /// Host data to the device.
    fn upload(&mut self, data: Vec<f32>, rows: usize, cols: usize) -> Result<Self::Tensor>;
    /// A matrix that only ever goes to `linear` as its weight, with the
    /// precision the file stored it in: a backend may keep a half-precision
    /// weight in half precision (the GPU does: half the upload and the
    /// device memory). Every value is exact in `stored`.
    fn upload_matrix(
        &mut self,
        data: Vec<f32>,
        rows: usize,
        cols: usize,
        stored: Stored,
    ) -> Result<Self::Tensor> {
        let _ = stored;
        self.upload(data, rows, cols)
    }
    /// `x · W + b`; `w` is `[out, in]` for `Layout::OutIn`, `[in, out]` for
    /// `Layout::InOut`.
    fn linear(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        layout: Layout,
        bias: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor>;
    /// `act(x · W + b)`: an MLP's first product and its activation. A
    /// backend may apply the activation to each block of the product while
    /// it is still in cache (the fast CPU one does).
    fn linear_activation(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        layout: Layout,
        bias: Option<&Self::Tensor>,
        act: Activation,
    ) -> Result<Self::Tensor> {
        let y = self.linear(x, w, layout, bias)?;
        self.activation(act, &y)
    }
    fn layer_norm(
        &mut self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;
    fn rms_norm(
        &mut self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;
    fn activation(&mut self, act: Activation, x: &Self::Tensor) -> Result<Self::Tensor>;
    fn swiglu(&mut self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor>;
    fn add(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `q` is `[t, n_heads·d]`, `k`/`v` `[s, n_kv_heads·d]`.
    fn attention(
        &mut self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        heads: Heads,
        mask: &AttentionMask,
    ) -> Result<Self::Tensor>;
    fn rope(
        &mut self,
        x: &Self::Tensor,
        n_heads: usize,
        head_dim: usize,
        theta: f32,
    ) -> Result<Self::Tensor>;
    /// Rows of `table` by index.
    fn gather(&mut self, table: &Self::Tensor, ids: &[u32]) -> Result<Self::Tensor>;
    /// `[channels, res·res]` image to `[grid², channels·patch²]` patches.
    fn im2col(
        &mut self,
        image: &Self::Tensor,
        channels: usize,
        res: usize,
        patch: usize,
    ) -> Result<Self::Tensor>;
    fn slice_cols(&mut self, x: &Self::Tensor, start: usize, len: usize) -> Result<Self::Tensor>;
    fn concat_rows(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// A block is done: a GPU backend submits what it recorded, so memory
    /// held by the block's weights can be released. Every graph calls it
    /// once after the embeddings and once after each block, and nowhere
    /// else: `verify::Staged` counts the calls to know which stage runs.
    fn end_block(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Read a weight and put it on the backend as `[rows, cols]`; `shape` is the
/// checkpoint's shape (a conv weight `[w, 3, p, p]` uploads as `[w, 3p²]`).
pub fn weight<B: Backend>(
    backend: &mut B,
    weights: &dyn WeightSource,
    name: &str,
    shape: &[usize],
    rows: usize,
    cols: usize,
) -> Result<B::Tensor> {
    let data = weights.load(name, shape)?;
    backend.upload(data, rows, cols)
}

/// A `linear` weight: `weight`, but the backend learns the file's precision
/// (`Backend::upload_matrix`).
pub fn matrix<B: Backend>(
    backend: &mut B,
    weights: &dyn WeightSource,
    name: &str,
    shape: &[usize],
    rows: usize,
    cols: usize,
) -> Result<B::Tensor> {
    let data = weights.load(name, shape)?;
    backend.upload_matrix(data, rows, cols, weights.stored(name))
}

/// A vector parameter `[n]` as a `[1, n]` row.
pub fn vector<B: Backend>(
    backend: &mut B,
    weights: &dyn WeightSource,
    name: &str,
    n: usize,
) -> Result<B::Tensor> {
    weight(backend, weights, name, &[n], 1, n)
}

/// The CPU backend: a tensor is its data and dims.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

#[derive(Default)]
pub struct Cpu;

/// The dimension checks every CPU backend makes before it computes (the
/// fast one in `fast_cpu` shares them).
impl Cpu {
    /// `(k, n)` of `x [m, k] · W`, or why x, W and the bias do not fit.
    pub fn check_linear(
        x: &Mat,
        w: &Mat,
        layout: Layout,
        bias: Option<&Mat>,
    ) -> Result<(usize, usize)> {
        let (k, n) = match layout {
            Layout::OutIn => (w.cols, w.rows),
            Layout::InOut => (w.rows, w.cols),
        };
        if x.cols != k || bias.is_some_and(|b| b.data.len() != n) {
            return Err(err(
                ErrorKind::BadArgument,
                format!(
                    "linear: x [{}, {}] and weight [{}, {}] do not fit",
                    x.rows, x.cols, w.rows, w.cols
                ),
            ));
        }
        Ok((k, n))
    }

    pub fn check_same_dims(a: &Mat, b: &Mat, op: &str) -> Result<()> {
        if (a.rows, a.cols) != (b.rows, b.cols) {
            return Err(err(
                ErrorKind::BadArgument,
                format!(
                    "{op}: [{}, {}] and [{}, {}] differ",
                    a.rows, a.cols, b.rows, b.cols
                ),
            ));
        }
        Ok(())
    }

    /// q `[t, n_heads·d]`, k and v `[s, n_kv_heads·d]`, the query heads a
    /// whole multiple of the key/value heads.
    pub fn check_attention(q: &Mat, k: &Mat, v: &Mat, heads: Heads) -> Result<()> {
        let fits = heads.n_kv_heads > 0
            && heads.n_heads.is_multiple_of(heads.n_kv_heads)
            && q.cols == heads.n_heads * heads.head_dim
            && k.cols == heads.n_kv_heads * heads.head_dim
            && (v.rows, v.cols) == (k.rows, k.cols);
        if fits {
            Ok(())
        } else {
            Err(err(
                ErrorKind::BadArgument,
                format!(
                    "attention: q [{}, {}], k [{}, {}], v [{}, {}] do not fit {} heads of {} ({} key/value heads)",
                    q.rows, q.cols, k.rows, k.cols, v.rows, v.cols,
                    heads.n_heads, heads.head_dim, heads.n_kv_heads
                ),
            ))
        }
    }
}

fn mat(rows: usize, cols: usize, data: Vec<f32>) -> Result<Mat> {
    if data.len() != rows * cols {
        return Err(err(
            ErrorKind::BadArgument,
            format!("{} values for a [{rows}, {cols}] matrix", data.len()),
        ));
    }
    Ok(Mat { rows, cols, data })
}

impl Backend for Cpu {
    type Tensor = Mat;

    fn dims(&self, x: &Mat) -> (usize, usize) {
        (x.rows, x.cols)
    }
    fn upload(&mut self, data: Vec<f32>, rows: usize, cols: usize) -> Result<Mat> {
        mat(rows, cols, data)
    }
    fn linear(&mut self, x: &Mat, w: &Mat, layout: Layout, bias: Option<&Mat>) -> Result<Mat> {
        let (k, n) = Cpu::check_linear(x, w, layout, bias)?;
        let y = ops::linear(
            &x.data,
            x.rows,
            k,
            &w.data,
            n,
            layout,
            bias.map(|b| b.data.as_slice()),
        );
        mat(x.rows, n, y)
    }
    fn layer_norm(&mut self, x: &Mat, gamma: &Mat, beta: &Mat, eps: f32) -> Result<Mat> {
        let y = ops::layer_norm(&x.data, x.cols, &gamma.data, &beta.data, eps);
        mat(x.rows, x.cols, y)
    }
    fn rms_norm(&mut self, x: &Mat, gamma: &Mat, eps: f32) -> Result<Mat> {
        mat(
            x.rows,
            x.cols,
            ops::rms_norm(&x.data, x.cols, &gamma.data, eps),
        )
    }
    fn activation(&mut self, act: Activation, x: &Mat) -> Result<Mat> {
        mat(x.rows, x.cols, ops::activation(act, &x.data))
    }
    fn swiglu(&mut self, gate: &Mat, up: &Mat) -> Result<Mat> {
        Cpu::check_same_dims(gate, up, "swiglu")?;
        mat(gate.rows, gate.cols, ops::swiglu(&gate.data, &up.data))
    }
    fn add(&mut self, a: &Mat, b: &Mat) -> Result<Mat> {
        Cpu::check_same_dims(a, b, "add")?;
        mat(a.rows, a.cols, ops::add(&a.data, &b.data))
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
        let y = ops::attention(&q.data, &k.data, &v.data, q.rows, k.rows, heads, mask);
        mat(q.rows, heads.n_heads * heads.head_dim, y)
    }
    fn rope(&mut self, x: &Mat, n_heads: usize, head_dim: usize, theta: f32) -> Result<Mat> {
        mat(
            x.rows,
            x.cols,
            ops::rope(&x.data, x.rows, n_heads, head_dim, theta),
        )
    }
    fn gather(&mut self, table: &Mat, ids: &[u32]) -> Result<Mat> {
        if let Some(bad) = ids.iter().find(|id| **id as usize >= table.rows) {
            return Err(err(
                ErrorKind::BadArgument,
                format!("token id {bad} is outside the table of {} rows", table.rows),
            ));
        }
        mat(
            ids.len(),
            table.cols,
            ops::gather(&table.data, table.cols, ids),
        )
    }
    fn im2col(&mut self, image: &Mat, channels: usize, res: usize, patch: usize) -> Result<Mat> {
        let grid = res / patch;
        mat(
            grid * grid,
            channels * patch * patch,
            ops::im2col(&image.data, channels, res, patch),
        )
    }
    fn slice_cols(&mut self, x: &Mat, start: usize, len: usize) -> Result<Mat> {
        mat(x.rows, len, ops::slice_cols(&x.data, x.cols, start, len))
    }
    fn concat_rows(&mut self, a: &Mat, b: &Mat) -> Result<Mat> {
        if a.cols != b.cols {
            return Err(err(ErrorKind::BadArgument, "concat_rows: widths differ"));
        }
        mat(a.rows + b.rows, a.cols, ops::concat_rows(&a.data, &b.data))
    }
}
