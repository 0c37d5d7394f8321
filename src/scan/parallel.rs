//! The scan of one plain region (a tensor read front to back as one dense
//! view) on every core, for sources that can be read from several threads
//! (native files). Chunks are the sequential scan's own (`CHUNK_BYTES`,
//! cut at the same unit boundaries), each read and summarised by a rayon
//! worker into its own buffer, so reading one chunk overlaps summarising
//! another; their statistics are merged in file order, which makes the
//! result bit for bit the sequential scan's. Memory stays flat: two
//! chunk buffers per thread, reused for every region.

use super::decode::Decoder;
use crate::error::{err, ErrorKind, Result};
use crate::source::ByteSource;
use crate::stats::Moments;
use rayon::prelude::*;

/// One worker's reusable memory.
#[derive(Default)]
struct Slot {
    buffer: Vec<u8>,
    narrow: Vec<f32>,
    wide: Vec<f64>,
}

/// The bytes of one plain region: where, how many, in what chunks, and how
/// they decode.
pub(crate) struct PlainRange<'d> {
    pub offset: u64,
    pub nbytes: u64,
    pub chunk: u64,
    pub decoder: &'d Decoder,
}

/// Chunk buffers for the parallel scan, two per thread so that a wave
/// keeps every core busy while the slowest chunk finishes.
pub(crate) struct Workers {
    slots: Vec<Slot>,
}

impl Workers {
    pub(crate) fn new() -> Workers {
        let count = rayon::current_num_threads().max(1) * 2;
        Workers {
            slots: (0..count).map(|_| Slot::default()).collect(),
        }
    }

    /// Whether more than one thread would work: on one core the
    /// sequential scan does the same with one buffer.
    pub(crate) fn parallel(&self) -> bool {
        rayon::current_num_threads() > 1
    }

    /// Scan `nbytes` at `offset` in chunks of `chunk` bytes, merging each
    /// chunk's statistics into `total` in file order; `progress` hears of
    /// every wave's bytes and returns false to cancel.
    pub(crate) fn plain_region(
        &mut self,
        source: &(dyn ByteSource + Sync),
        range: PlainRange<'_>,
        total: &mut Moments,
        progress: &mut dyn FnMut(u64) -> bool,
    ) -> Result<()> {
        let PlainRange {
            offset,
            nbytes,
            chunk,
            decoder,
        } = range;
        let mut position = 0u64;
        while position < nbytes {
            let wave: Vec<(u64, u64)> = (0..self.slots.len() as u64)
                .map(|i| position + i * chunk)
                .take_while(|start| *start < nbytes)
                .map(|start| (start, chunk.min(nbytes - start)))
                .collect();
            let parts: Vec<Result<Moments>> = wave
                .par_iter()
                .zip(self.slots.par_iter_mut())
                .map(|((start, len), slot)| {
                    slot.buffer.resize(*len as usize, 0);
                    source.read_exact_at(offset + start, &mut slot.buffer)?;
                    decoder.moments(&slot.buffer, &mut slot.narrow, &mut slot.wide)
                })
                .collect();
            let mut wave_bytes = 0;
            for (part, (_, len)) in parts.into_iter().zip(&wave) {
                total.merge(&part?);
                wave_bytes += len;
            }
            position += wave_bytes;
            if !progress(wave_bytes) {
                return Err(err(ErrorKind::Cancelled, "scan cancelled"));
            }
        }
        Ok(())
    }
}
