//! Where the fast CPU backend's work runs: natively on a rayon pool of a
//! chosen size (`verify --threads N`, and the benchmarks that compare with
//! PyTorch at the same `torch.set_num_threads`), in the browser's wasm on the
//! calling thread (the page is not cross-origin isolated, so it has no
//! shared memory for threads; see README "Prove it loads").

use crate::error::{err, ErrorKind, Result};

pub struct Threads {
    #[cfg(not(target_arch = "wasm32"))]
    pool: rayon::ThreadPool,
    count: usize,
}

impl Threads {
    /// `None`: every core natively, one thread on wasm.
    pub fn new(count: Option<usize>) -> Result<Threads> {
        if count == Some(0) {
            return Err(err(ErrorKind::BadArgument, "threads must be at least 1"));
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let count = count.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(count)
                .build()
                .map_err(|e| err(ErrorKind::Io, format!("cannot start {count} threads: {e}")))?;
            Ok(Threads { pool, count })
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = count;
            Ok(Threads { count: 1 })
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// `f(index, chunk)` for each `chunk_len`-sized piece of `out`, the pieces
    /// side by side.
    pub fn for_each_chunk_mut<F>(&self, out: &mut [f32], chunk_len: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Sync + Send,
    {
        let chunk_len = chunk_len.max(1);
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            if self.count > 1 {
                self.pool.install(|| {
                    out.par_chunks_mut(chunk_len)
                        .enumerate()
                        .for_each(|(index, chunk)| f(index, chunk))
                });
                return;
            }
        }
        for (index, chunk) in out.chunks_mut(chunk_len).enumerate() {
            f(index, chunk);
        }
    }

    /// `f(index, item)` for each item, side by side. Callers allocate the
    /// items on their own thread: glibc gives each worker thread an arena of
    /// its own that hands large blocks back to the kernel on free, so
    /// buffers allocated on the workers were faulted in and zeroed afresh on
    /// every call (a quarter of a two-thread ViT forward).
    pub fn for_each_mut<T, F>(&self, items: &mut [T], f: F)
    where
        T: Send,
        F: Fn(usize, &mut T) + Sync + Send,
    {
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            if self.count > 1 {
                self.pool.install(|| {
                    items
                        .par_iter_mut()
                        .enumerate()
                        .for_each(|(index, item)| f(index, item))
                });
                return;
            }
        }
        for (index, item) in items.iter_mut().enumerate() {
            f(index, item);
        }
    }

    /// Rows per piece when `rows` rows are split among the threads: one
    /// piece per thread, so each runs one large GEMM.
    pub fn rows_per_piece(&self, rows: usize) -> usize {
        rows.div_ceil(self.count).max(1)
    }
}
