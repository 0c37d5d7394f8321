//! The scan of plain regions (tensors read front to back as one dense view)
//! on every core, for sources that can be read from several threads (native
//! files). A run of consecutive plain regions, small ones included, is cut
//! into the sequential scan's own chunks (`sequential::chunk_bytes`), and
//! every thread, the calling one too, takes the next chunk as soon as it is
//! free, so the cores stay busy across tensors of any size, and reading one
//! chunk overlaps summarising another. Each chunk is summarised on its own
//! and the chunks are merged into their regions in file order, which makes
//! the result bit for bit the sequential scan's.
//!
//! A chunk is read in pieces of about `PIECE_BYTES`, each summarised while
//! it is still in the core's cache; a piece is a whole number of the
//! decoder's batches, and batches merge in order, so a chunk read in pieces
//! has the statistics of the chunk read at once. Memory stays flat: one
//! piece buffer and the decode buffers per thread, reused for every chunk.

use super::sequential::{chunk_bytes, region_name};
use super::{Region, TensorStats};
use crate::error::{err, Error, ErrorKind, Result};
use crate::source::ByteSource;
use crate::stats::Moments;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Bytes read at once within a chunk: well inside a core's L2 cache, so the
/// kernel reads what the copy has just written from there (4 MiB reads
/// summarised after the whole read were 11% slower on the ViT-H `.pt`),
/// and large enough that system calls stay a small share.
const PIECE_BYTES: usize = 1024 * 1024;

/// One worker's reusable memory.
#[derive(Default)]
struct Slot {
    buffer: Vec<u8>,
    narrow: Vec<f32>,
    wide: Vec<f64>,
}

/// One chunk of a plain region.
struct Chunk {
    /// Which region of the run.
    region: usize,
    offset: u64,
    len: u64,
}

/// Chunks handed to the threads at once: a bound on the memory a run of
/// any length takes (its chunk list and results), 1 GiB of reading between
/// two merges.
const CHUNKS_AT_ONCE: usize = 256;

/// The regions of a run and the sources they are read from.
struct Run<'r> {
    regions: &'r [Region],
    sources: Vec<&'r (dyn ByteSource + Sync)>,
}

impl Slot {
    /// A chunk's statistics, read piece by piece.
    fn summarise(&mut self, run: &Run<'_>, chunk: &Chunk) -> Result<Moments> {
        let decoder = &run.regions[chunk.region].decoder;
        let source = run.sources[chunk.region];
        let batch_bytes = decoder.batch_bytes();
        let piece = (PIECE_BYTES / batch_bytes).max(1) * batch_bytes;
        let mut total = Moments::default();
        let mut position = 0u64;
        while position < chunk.len {
            let len = (piece as u64).min(chunk.len - position) as usize;
            self.buffer.resize(len, 0);
            source.read_exact_at(chunk.offset + position, &mut self.buffer)?;
            decoder.merge_moments(&self.buffer, &mut self.narrow, &mut self.wide, &mut total)?;
            position += len as u64;
        }
        Ok(total)
    }
}

/// The chunks of a run and what the threads share while they take them.
struct Queue<'c, 'r> {
    run: &'c Run<'r>,
    chunks: &'c [Chunk],
    results: Vec<OnceLock<Result<Moments>>>,
    next: AtomicUsize,
    /// Set on the first error or on cancel: no thread takes another chunk.
    stop: AtomicBool,
    bytes_done: AtomicU64,
}

impl Queue<'_, '_> {
    /// Take and summarise the next chunk; false when none is left.
    fn work_one(&self, slot: &mut Slot) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(chunk) = self.chunks.get(index) else {
            return false;
        };
        let result = slot.summarise(self.run, chunk);
        if result.is_err() {
            self.stop.store(true, Ordering::Relaxed);
        }
        self.bytes_done.fetch_add(chunk.len, Ordering::Relaxed);
        let _ = self.results[index].set(result);
        true
    }
}

/// The threads' buffers, one per thread of rayon's pool.
pub(crate) struct Workers {
    slots: Vec<Slot>,
}

impl Workers {
    pub(crate) fn new() -> Workers {
        let count = rayon::current_num_threads().max(1);
        Workers {
            slots: (0..count).map(|_| Slot::default()).collect(),
        }
    }

    /// Whether more than one thread would work: on one core the
    /// sequential scan does the same with one buffer.
    pub(crate) fn parallel(&self) -> bool {
        self.slots.len() > 1
    }

    /// Scan the run of plain regions at the front of `regions` (those in a
    /// source that threads can share, and of whole units: the sequential
    /// path reports a region that is not), merging each one's chunks into
    /// its view in file order. `progress` hears of bytes as they are done
    /// and returns false to cancel. Returns how many regions were scanned:
    /// 0 when the first region is not plain.
    pub(crate) fn plain_run(
        &mut self,
        regions: &mut [Region],
        sources: &[&dyn ByteSource],
        tensors: &[TensorStats],
        progress: &mut dyn FnMut(u64) -> bool,
    ) -> Result<usize> {
        let mut run_sources = Vec::new();
        let mut chunk_sizes = Vec::new();
        for region in regions.iter() {
            let Some(source) = sources.get(region.source).and_then(|s| s.as_sync()) else {
                break;
            };
            let Ok(chunk) = chunk_bytes(region) else {
                break;
            };
            if !region.is_plain() {
                break;
            }
            run_sources.push(source);
            chunk_sizes.push(chunk);
        }
        let length = run_sources.len();
        if length == 0 {
            return Ok(0);
        }
        let run = Run {
            regions: &regions[..length],
            sources: run_sources,
        };
        // Each region's chunks merged in file order, then handed to its
        // view (which starts empty, so it ends as this merge).
        let mut totals = vec![Moments::default(); length];
        let mut pending = Vec::with_capacity(CHUNKS_AT_ONCE);
        for (index, chunk) in chunk_sizes.iter().enumerate() {
            let region = &run.regions[index];
            let mut position = 0u64;
            while position < region.nbytes {
                let len = (*chunk).min(region.nbytes - position);
                pending.push(Chunk {
                    region: index,
                    offset: region.offset + position,
                    len,
                });
                position += len;
                if pending.len() == CHUNKS_AT_ONCE {
                    self.scan_pending(&run, &mut pending, &mut totals, tensors, progress)?;
                }
            }
        }
        self.scan_pending(&run, &mut pending, &mut totals, tensors, progress)?;
        for (region, total) in regions.iter_mut().zip(&totals) {
            region.views[0].moments.merge(total);
        }
        Ok(length)
    }

    /// Scan the `pending` chunks, merge them into their regions' `totals`
    /// in order, and empty the list; errors name the file and tensor.
    fn scan_pending(
        &mut self,
        run: &Run<'_>,
        pending: &mut Vec<Chunk>,
        totals: &mut [Moments],
        tensors: &[TensorStats],
        progress: &mut dyn FnMut(u64) -> bool,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        match self.scan_chunks(run, pending, progress) {
            Ok(all) => {
                for (chunk, moments) in pending.drain(..).zip(all) {
                    totals[chunk.region].merge(&moments);
                }
                Ok(())
            }
            Err((_, e)) if e.kind == ErrorKind::Cancelled => Err(e),
            Err((failed, e)) => {
                let region = pending[failed].region;
                let name = region_name(&run.regions[region], tensors);
                Err(e.in_file(run.sources[region].name()).for_tensor(&name))
            }
        }
    }

    /// Every chunk's statistics, in order: the calling thread and one rayon
    /// task per other slot each take chunks until none is left. The calling
    /// thread reports progress between its chunks, and once all are done.
    fn scan_chunks(
        &mut self,
        run: &Run<'_>,
        chunks: &[Chunk],
        progress: &mut dyn FnMut(u64) -> bool,
    ) -> std::result::Result<Vec<Moments>, (usize, Error)> {
        let queue = Queue {
            run,
            chunks,
            results: (0..chunks.len()).map(|_| OnceLock::new()).collect(),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            bytes_done: AtomicU64::new(0),
        };
        let mut reported = 0u64;
        let mut cancelled = false;
        let mut report = |queue: &Queue<'_, '_>| {
            let now = queue.bytes_done.load(Ordering::Relaxed);
            let more = progress(now - reported);
            reported = now;
            more
        };
        let Some((own, others)) = self.slots.split_first_mut() else {
            return Ok(Vec::new());
        };
        rayon::in_place_scope(|scope| {
            let queue = &queue;
            for slot in others {
                scope.spawn(move |_| while queue.work_one(slot) {});
            }
            while queue.work_one(own) {
                if !report(queue) {
                    cancelled = true;
                    queue.stop.store(true, Ordering::Relaxed);
                }
            }
        });
        if cancelled || !report(&queue) {
            return Err((0, err(ErrorKind::Cancelled, "scan cancelled")));
        }
        // Without an error every chunk was taken; with one, chunks after
        // it in time may be untaken, and the first error in file order is
        // the one to report.
        let mut all = Vec::with_capacity(chunks.len());
        let mut first_error = None;
        for (index, result) in queue.results.into_iter().enumerate() {
            match result.into_inner() {
                Some(Ok(moments)) => all.push(moments),
                Some(Err(e)) => {
                    first_error.get_or_insert((index, e));
                }
                None => {}
            }
        }
        match first_error {
            Some(failed) => Err(failed),
            None => Ok(all),
        }
    }
}
