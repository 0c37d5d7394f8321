//! Where the fast CPU backend's work runs: natively on a rayon pool of a
//! chosen size (`verify --threads N`, and the benchmarks that compare with
//! PyTorch at the same `torch.set_num_threads`), in the browser's wasm on the
//! calling thread (the page is not cross-origin isolated, so it has no
//! shared memory for threads; see README "Prove it loads").

use crate::error::{err, ErrorKind, Result};

pub struct Threads {
    /// `count - 1` workers: the calling thread runs the first share of
    /// every operation itself (see `share_out`).
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<rayon::ThreadPool>,
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
            let pool = if count > 1 {
                Some(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(count - 1)
                        .build()
                        .map_err(|e| {
                            err(ErrorKind::Io, format!("cannot start {count} threads: {e}"))
                        })?,
                )
            } else {
                None
            };
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

    /// `f(index, item)` for every item, the items cut into one run of
    /// neighbours per thread: the workers take runs 1.. while the calling
    /// thread runs run 0, then waits for the rest. Measured on two cores,
    /// handing every item to the pool (`install`) left the calling thread
    /// idle and each short product waiting for two wake-ups; here a two-way
    /// split costs one.
    fn share_out<T, F>(&self, items: &mut [T], f: &F)
    where
        T: Send,
        F: Fn(usize, &mut T) + Sync + Send,
    {
        #[cfg(not(target_arch = "wasm32"))]
        if let (Some(pool), true) = (&self.pool, items.len() > 1) {
            let per_run = items.len().div_ceil(self.count);
            let mut runs = items.chunks_mut(per_run).enumerate();
            let first = runs.next();
            pool.in_place_scope(|scope| {
                for (run, part) in runs {
                    scope.spawn(move |_| {
                        for (offset, item) in part.iter_mut().enumerate() {
                            f(run * per_run + offset, item);
                        }
                    });
                }
                if let Some((_, part)) = first {
                    for (index, item) in part.iter_mut().enumerate() {
                        f(index, item);
                    }
                }
            });
            return;
        }
        for (index, item) in items.iter_mut().enumerate() {
            f(index, item);
        }
    }

    /// `f(index, chunk)` for each `chunk_len`-sized piece of `out`, the pieces
    /// side by side.
    pub fn for_each_chunk_mut<F>(&self, out: &mut [f32], chunk_len: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Sync + Send,
    {
        let mut pieces: Vec<&mut [f32]> = out.chunks_mut(chunk_len.max(1)).collect();
        self.share_out(&mut pieces, &|index, chunk: &mut &mut [f32]| {
            f(index, chunk)
        });
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
        self.share_out(items, &f);
    }

    /// Rows per piece when `rows` rows are split among the threads: one
    /// piece per thread, so each runs one large GEMM.
    pub fn rows_per_piece(&self, rows: usize) -> usize {
        rows.div_ceil(self.count).max(1)
    }
}
