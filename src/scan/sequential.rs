//! The scan of one region on the calling thread, chunk by chunk: the path
//! for regions whose chunks must be routed to several views (shared
//! storages, strided and overlapping views), for sources that cannot be read
//! from several threads (the page's files), and for the wasm build. Also the
//! steps every region shares whichever path reads it: how it is cut into
//! chunks, and how its views' statistics reach the tensors.

use super::views::{Bitmap, Layout, Scratch};
use super::{Region, TensorStats, CHUNK_BYTES};
use crate::error::{err, Error, ErrorKind, Result};
use crate::source::ByteSource;
use crate::stats::Moments;

/// The name errors about a region carry: its first tensor's.
pub(super) fn region_name(region: &Region, tensors: &[TensorStats]) -> String {
    region
        .views
        .first()
        .and_then(|view| view.members.first())
        .and_then(|i| tensors.get(*i))
        .map(|tensor| tensor.display_name())
        .unwrap_or_default()
}

/// Bytes read at once from this region: `CHUNK_BYTES` cut at an element or
/// block boundary, so that every chunk holds whole units. The chunks are
/// the same on both paths, which is what keeps their statistics the same
/// bit for bit (each chunk is summarised on its own, then merged in order).
pub(super) fn chunk_bytes(region: &Region) -> Result<u64> {
    let (unit_bytes, _) = region.decoder.unit();
    let step = region.element.max(unit_bytes as u64);
    if !region.nbytes.is_multiple_of(step) {
        return Err(err(
            ErrorKind::InvalidOffsets,
            format!(
                "{} bytes is not a whole number of {step}-byte units",
                region.nbytes
            ),
        ));
    }
    Ok((CHUNK_BYTES as u64 / step).max(1) * step)
}

/// The reusable memory of the one-thread path: one read buffer (grown to
/// the largest chunk read), decode buffers and the shared-storage bitmap.
#[derive(Default)]
pub(super) struct Sequential {
    buffer: Vec<u8>,
    scratch: Scratch,
    bitmap: Bitmap,
}

impl Sequential {
    /// Read `region` from `source` chunk by chunk, feeding every view;
    /// `done` counts bytes read across the scan and `progress` hears of it
    /// after every chunk (false cancels).
    pub(super) fn scan_region(
        &mut self,
        region: &mut Region,
        source: &dyn ByteSource,
        name: &str,
        done: &mut u64,
        progress: &mut dyn FnMut(u64) -> bool,
    ) -> Result<()> {
        let in_context = |e: Error| e.in_file(source.name()).for_tensor(name);
        let chunk = chunk_bytes(region).map_err(in_context)?;
        let plain = region.is_plain();
        let shared = region.views.len() > 1;
        if region.views.iter().any(|v| v.layout == Layout::Overlapping) {
            region.span = Some(Moments::default());
        }
        let Sequential {
            buffer,
            scratch,
            bitmap,
        } = self;
        let mut position = 0u64;
        while position < region.nbytes {
            let len = chunk.min(region.nbytes - position);
            if buffer.len() < len as usize {
                buffer.resize(len as usize, 0);
            }
            let bytes = &mut buffer[..len as usize];
            source
                .read_exact_at(region.offset + position, bytes)
                .map_err(in_context)?;
            if plain {
                let part = region
                    .decoder
                    .moments(bytes, &mut scratch.narrow, &mut scratch.wide)
                    .map_err(in_context)?;
                region.views[0].moments.merge(&part);
            } else {
                if shared {
                    bitmap.clear((len / region.element) as usize);
                }
                for view in &mut region.views {
                    let union = if shared { Some(&mut *bitmap) } else { None };
                    view.feed(
                        bytes,
                        position,
                        region.element,
                        &region.decoder,
                        scratch,
                        union,
                    )
                    .map_err(in_context)?;
                }
                if shared {
                    let element = region.element as usize;
                    for (from, to) in bitmap.runs() {
                        let part = region
                            .decoder
                            .moments(
                                &bytes[from * element..to * element],
                                &mut scratch.narrow,
                                &mut scratch.wide,
                            )
                            .map_err(in_context)?;
                        region.distinct.merge(&part);
                    }
                }
                if let Some(span) = region.span.as_mut() {
                    let part = region
                        .decoder
                        .moments(bytes, &mut scratch.narrow, &mut scratch.wide)
                        .map_err(in_context)?;
                    span.merge(&part);
                }
            }
            position += len;
            *done += len;
            if !progress(*done) {
                return Err(err(ErrorKind::Cancelled, "scan cancelled"));
            }
        }
        Ok(())
    }
}

/// A scanned region's statistics, handed to the tensors that view it.
pub(super) fn record(region: &mut Region, tensors: &mut [TensorStats]) {
    if let [only] = region.views.as_slice() {
        region.distinct = only.moments;
    }
    for view in &region.views {
        if view.layout == Layout::Overlapping {
            continue;
        }
        let moments = view.result();
        for index in &view.members {
            let Some(stats) = tensors.get_mut(*index) else {
                continue;
            };
            stats.scanned = true;
            stats.values = moments.values;
            stats.nan = moments.nan;
            stats.inf = moments.inf;
            stats.zeros = moments.zeros;
            stats.all_zero = moments.values > 0 && moments.zeros == moments.values;
            if moments.finite > 0 {
                stats.min = Some(moments.min);
                stats.max = Some(moments.max);
                stats.mean = Some(moments.mean);
                stats.std = moments.std();
            }
        }
    }
}
