//! Matrix products for the fast CPU backend through `matrixmultiply`'s
//! packed, cache-blocked SGEMM (AVX-512/AVX2/FMA picked at run time on x86,
//! NEON on ARM, a portable kernel elsewhere). Chosen by measurement on the
//! project's machine (bench/gemm note in README "Prove it loads"): on the
//! ViT-B and LLaMA shapes it ran 1.2–1.5x the `gemm` crate's rate, with
//! smaller rounding error and a fraction of the code in the page's wasm.
//!
//! The only `unsafe` here is the call into SGEMM, which takes raw pointers
//! and strides; every caller's extents are checked against the slices
//! first, so no read or write leaves them.

use super::elementwise;
use super::threads::Threads;
use crate::reference::{Activation, Layout};

/// A row-major or strided view: element `(row, col)` is at
/// `data[offset + row·row_stride + col·col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> View<'a> {
        View {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The same elements read as the transpose.
    pub fn transposed(self) -> View<'a> {
        View {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Columns `start..start + len`.
    fn cols_from(self, start: usize, len: usize) -> View<'a> {
        View {
            offset: self.offset + start * self.col_stride,
            cols: len,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|r| (self.cols - 1).checked_mul(self.col_stride).map(|c| (r, c)))
            .and_then(|(r, c)| r.checked_add(c))
            .and_then(|rc| rc.checked_add(self.offset));
        last.is_some_and(|last| last < self.data.len())
    }
}

/// `out[m, n] = alpha · a[m, k] · b[k, n] + (out if accumulate)`, `out`
/// row-major, on one thread.
///
/// # Panics
/// When the shapes disagree or a view leaves its slice: callers check the
/// dimensions they were given (the `Backend` does), so this is a bug.
pub fn matmul_into(a: View, b: View, alpha: f32, accumulate: bool, out: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "matmul: inner dimensions differ");
    assert_eq!(out.len(), m * n, "matmul: output is not [m, n]");
    assert!(
        a.in_bounds() && b.in_bounds(),
        "matmul: a view leaves its slice"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    // Strides fit in isize: each is at most a slice length (checked above).
    // SAFETY: a and b are in bounds for their rows × cols at their strides
    // (in_bounds), out is exactly m·n row-major, and the three do not alias
    // (out is a unique borrow).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr().add(a.offset),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr().add(b.offset),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Columns per piece are a multiple of this (the AVX-512 kernel's width), so
/// that no piece ends in a ragged register block except the last.
const COLUMN_ALIGN: usize = 16;

/// `nn.Linear`: `y[m, n] = x[m, k] · W + b`, the bias written first and
/// accumulated into (one pass over y), then `activation` applied to each
/// thread's block of y while it is in cache.
///
/// With several threads the output columns are split among them, not the
/// rows: each thread then packs only its own columns of W (the large
/// operand; m is a few hundred tokens), where a split by rows had every
/// thread pack all of W and ran slower on two threads than on one.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    threads: &Threads,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    layout: Layout,
    bias: Option<&[f32]>,
    activation: Option<Activation>,
) -> Vec<f32> {
    let x_view = View::row_major(x, m, k);
    let w_view = match layout {
        Layout::OutIn => View::row_major(w, n, k).transposed(),
        Layout::InOut => View::row_major(w, k, n),
    };
    let columns_per_piece =
        n.div_ceil(threads.count()).div_ceil(COLUMN_ALIGN).max(1) * COLUMN_ALIGN;
    let pieces = n.div_ceil(columns_per_piece);
    let product = |start: usize, out: &mut [f32]| {
        let len = out.len() / m.max(1);
        if let Some(b) = bias {
            for row in out.chunks_exact_mut(len.max(1)) {
                row.copy_from_slice(&b[start..start + len]);
            }
        }
        matmul_into(
            x_view,
            w_view.cols_from(start, len),
            1.0,
            bias.is_some(),
            out,
        );
        if let Some(act) = activation {
            elementwise::activation_in_place(act, out);
        }
    };
    if pieces <= 1 {
        let mut y = vec![0f32; m * n];
        product(0, &mut y);
        return y;
    }
    // (first column, that block of y) per piece, allocated here (see
    // `Threads::for_each_mut`), gathered into y's rows afterwards.
    let mut blocks: Vec<(usize, Vec<f32>)> = (0..pieces)
        .map(|piece| {
            let start = piece * columns_per_piece;
            (start, vec![0f32; m * columns_per_piece.min(n - start)])
        })
        .collect();
    threads.for_each_mut(&mut blocks, |_, (start, block)| product(*start, block));
    // y row by row from the blocks' rows, in column order (the blocks are),
    // without zeroing y first.
    let mut y = Vec::with_capacity(m * n);
    for row in 0..m {
        for (_, block) in &blocks {
            let len = block.len() / m;
            y.extend_from_slice(&block[row * len..(row + 1) * len]);
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast_cpu::test_values as values;
    use crate::reference::ops;

    #[test]
    fn linear_equals_the_reference_on_odd_shapes_layouts_and_thread_counts() {
        // Odd sizes straddle the kernel's register blocks and the thread
        // split (m = 1 leaves a thread idle; m = 197 splits unevenly).
        for &(m, k, n) in &[
            (1, 1, 1),
            (1, 7, 3),
            (5, 3, 17),
            (197, 33, 65),
            (3, 129, 1),
            (64, 64, 64),
        ] {
            for layout in [Layout::OutIn, Layout::InOut] {
                for with_bias in [false, true] {
                    for count in [1, 2, 3] {
                        let threads = Threads::new(Some(count)).unwrap();
                        let x = values(m * k, 1);
                        let w = values(k * n, 2);
                        let b = values(n, 3);
                        let bias = with_bias.then_some(b.as_slice());
                        let want = ops::linear(&x, m, k, &w, n, layout, bias);
                        let got = linear(&threads, &x, m, k, &w, n, layout, bias, None);
                        let worst = crate::fast_cpu::test_max_difference(&got, &want);
                        assert!(
                            worst <= 1e-5 * (k as f32).sqrt(),
                            "[{m}, {k}] x [{k}, {n}] {layout:?} bias {with_bias} threads {count}: off by {worst}"
                        );
                        // With the activation fused: the reference's
                        // activation of the reference's product.
                        let act = Activation::GeluErf;
                        let want: Vec<f32> = want
                            .iter()
                            .map(|v| ops::activation_value(act, *v))
                            .collect();
                        let got = linear(&threads, &x, m, k, &w, n, layout, bias, Some(act));
                        let worst = crate::fast_cpu::test_max_difference(&got, &want);
                        assert!(
                            worst <= 1e-5 * (k as f32).sqrt(),
                            "gelu([{m}, {k}] x [{k}, {n}]) {layout:?} bias {with_bias} threads {count}: off by {worst}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "leaves its slice")]
    fn a_view_past_its_slice_is_refused_before_sgemm_runs() {
        let data = [0f32; 4];
        let a = View::row_major(&data, 2, 3); // needs 6 elements
        let b = View::row_major(&data, 3, 1);
        let mut out = [0f32; 2];
        matmul_into(a, b, 1.0, false, &mut out);
    }
}
