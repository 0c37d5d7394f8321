//! One tensor's elements inside the bytes of its storage. The scan reads a
//! storage once, front to back, and hands each chunk to every tensor that
//! views it, so that each tensor's statistics cover exactly its own
//! elements (a NaN in a column no saved tensor holds is no tensor's NaN),
//! and to a union bitmap, so that a NaN two tied tensors share is counted
//! once in the summary.
//!
//! A view is `Dense` when its elements fill a byte range (contiguous, or a
//! permutation such as a transpose: statistics do not depend on order),
//! `Sparse` when walking its dims from the largest stride down visits
//! elements in strictly increasing order (slices such as `m[:, 0]` or
//! `m[::2, ::3]`), and `Overlapping` otherwise (`as_strided` views whose
//! elements repeat), which is not walked. Stride-0 dims (`expand`) repeat
//! every element and only scale the counts.

use super::decode::Decoder;
use crate::error::Result;
use crate::stats::Moments;
use crate::stats::BATCH;

/// How a view's elements lie in its storage's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `count` consecutive elements.
    Dense { count: u64 },
    /// (size, stride in elements), largest stride first; walking them in
    /// order visits strictly increasing offsets.
    Sparse { dims: Vec<(u64, u64)> },
    /// Elements repeat: not walked.
    Overlapping,
}

/// Classify a view; also returns how many times each element repeats
/// (the product of its stride-0 dims). `stride` is `None` for tensors
/// stored contiguously by definition (safetensors, GGUF).
pub(crate) fn classify(shape: &[u64], stride: Option<&[u64]>) -> (Layout, u64) {
    let numel = shape
        .iter()
        .fold(1u64, |count, size| count.saturating_mul(*size));
    let Some(stride) = stride else {
        return (Layout::Dense { count: numel }, 1);
    };
    if numel == 0 {
        return (Layout::Dense { count: 0 }, 1);
    }
    let mut repeat = 1u64;
    let mut dims: Vec<(u64, u64)> = Vec::new();
    for (size, step) in shape.iter().zip(stride) {
        match (*size, *step) {
            (1, _) => {}
            (size, 0) => repeat = repeat.saturating_mul(size),
            (size, step) => dims.push((size, step)),
        }
    }
    dims.sort_by_key(|(_, step)| *step);
    let mut expected = 1u64;
    if dims.iter().all(|(size, step)| {
        let dense = *step == expected;
        expected = expected.saturating_mul(*size);
        dense
    }) {
        return (Layout::Dense { count: expected }, repeat);
    }
    // Each dim must step past everything the smaller-stride dims reach.
    let mut reach = 0u64;
    for (size, step) in &dims {
        if *step <= reach {
            return (Layout::Overlapping, repeat);
        }
        reach = reach.saturating_add((size - 1).saturating_mul(*step));
    }
    dims.reverse();
    (Layout::Sparse { dims }, repeat)
}

/// An odometer over a sparse view's dims: element offsets in increasing
/// order, carried across chunks.
#[derive(Debug, Clone)]
struct Walk {
    dims: Vec<(u64, u64)>,
    index: Vec<u64>,
    next: Option<u64>,
}

impl Walk {
    fn new(dims: &[(u64, u64)]) -> Walk {
        Walk {
            dims: dims.to_vec(),
            index: vec![0; dims.len()],
            next: Some(0),
        }
    }

    fn advance(&mut self) {
        let Some(mut at) = self.next else {
            return;
        };
        for dim in (0..self.dims.len()).rev() {
            let (size, step) = self.dims[dim];
            self.index[dim] += 1;
            if self.index[dim] < size {
                self.next = Some(at + step);
                return;
            }
            at -= (size - 1) * step;
            self.index[dim] = 0;
        }
        self.next = None;
    }
}

/// Elements seen in the current chunk by any view of a shared storage.
#[derive(Debug, Default)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
}

impl Bitmap {
    pub fn clear(&mut self, elements: usize) {
        self.words.clear();
        self.words.resize(elements.div_ceil(64), 0);
    }

    fn set(&mut self, element: usize) {
        if let Some(word) = self.words.get_mut(element / 64) {
            *word |= 1 << (element % 64);
        }
    }

    fn set_range(&mut self, start: usize, end: usize) {
        for element in start..end {
            self.set(element);
        }
    }

    /// Runs of set elements as `start..end`.
    pub fn runs(&self) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut open: Option<usize> = None;
        let total = self.words.len() * 64;
        for element in 0..=total {
            let on = element < total && self.words[element / 64] & (1 << (element % 64)) != 0;
            match (on, open) {
                (true, None) => open = Some(element),
                (false, Some(start)) => {
                    runs.push((start, element));
                    open = None;
                }
                _ => {}
            }
        }
        runs
    }
}

/// Buffers a view's statistics work: decode buffers and the gathered bytes
/// of sparse elements.
#[derive(Default)]
pub(crate) struct Scratch {
    pub narrow: Vec<f32>,
    pub wide: Vec<f64>,
    pub gathered: Vec<u8>,
}

impl Scratch {
    /// Add the gathered elements' statistics to `moments` and empty it.
    fn flush_into(&mut self, moments: &mut Moments, decoder: &Decoder) -> Result<()> {
        if !self.gathered.is_empty() {
            let part = decoder.moments(&self.gathered, &mut self.narrow, &mut self.wide)?;
            moments.merge(&part);
            self.gathered.clear();
        }
        Ok(())
    }
}

/// One distinct view of a storage and the tensors that are exactly it.
pub(crate) struct View {
    /// Indices of the tensors' statistics.
    pub members: Vec<usize>,
    /// Byte offset of the first element from the start of the region.
    pub first: u64,
    pub layout: Layout,
    pub repeat: u64,
    /// Statistics of the distinct elements seen so far.
    pub moments: Moments,
    walk: Option<Walk>,
}

impl View {
    pub fn new(member: usize, first: u64, layout: Layout, repeat: u64) -> View {
        let walk = match &layout {
            Layout::Sparse { dims } => Some(Walk::new(dims)),
            _ => None,
        };
        View {
            members: vec![member],
            first,
            layout,
            repeat,
            moments: Moments::default(),
            walk,
        }
    }

    /// Whether another tensor with this placement is the same view.
    pub fn same_as(&self, first: u64, layout: &Layout, repeat: u64) -> bool {
        self.first == first && &self.layout == layout && self.repeat == repeat
    }

    /// Take the elements of this view that lie in `chunk` (which starts
    /// `chunk_start` bytes into the region), marking them in `union`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        chunk_start: u64,
        element: u64,
        decoder: &Decoder,
        scratch: &mut Scratch,
        mut union: Option<&mut Bitmap>,
    ) -> Result<()> {
        let chunk_end = chunk_start + chunk.len() as u64;
        match &self.layout {
            Layout::Dense { count } => {
                let end = self.first.saturating_add(count.saturating_mul(element));
                let (low, high) = (self.first.max(chunk_start), end.min(chunk_end));
                if low < high {
                    let (from, to) = ((low - chunk_start) as usize, (high - chunk_start) as usize);
                    let part = decoder.moments(
                        &chunk[from..to],
                        &mut scratch.narrow,
                        &mut scratch.wide,
                    )?;
                    self.moments.merge(&part);
                    if let Some(union) = union {
                        union.set_range(from / element as usize, to / element as usize);
                    }
                }
            }
            Layout::Sparse { .. } => {
                let Some(walk) = self.walk.as_mut() else {
                    return Ok(());
                };
                let batch_bytes = BATCH * element as usize;
                scratch.gathered.clear();
                while let Some(at) = walk.next {
                    let position = self.first.saturating_add(at.saturating_mul(element));
                    if position >= chunk_end {
                        break;
                    }
                    // Offsets only grow, so nothing before this chunk is left.
                    let from = position.saturating_sub(chunk_start) as usize;
                    let bytes = chunk.get(from..from + element as usize).unwrap_or(&[]);
                    scratch.gathered.extend_from_slice(bytes);
                    if let Some(union) = union.as_deref_mut() {
                        union.set(from / element as usize);
                    }
                    walk.advance();
                    if scratch.gathered.len() >= batch_bytes {
                        scratch.flush_into(&mut self.moments, decoder)?;
                    }
                }
                scratch.flush_into(&mut self.moments, decoder)?;
            }
            Layout::Overlapping => {}
        }
        Ok(())
    }

    /// The statistics of the tensor's elements, repeats included.
    pub fn result(&self) -> Moments {
        self.moments.repeated(self.repeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_classified_like_their_element_sets() {
        let cases: Vec<(&[u64], &[u64], Layout, u64)> = vec![
            (&[4, 3], &[3, 1], Layout::Dense { count: 12 }, 1),
            // A transpose covers the same 12 elements.
            (&[3, 4], &[1, 3], Layout::Dense { count: 12 }, 1),
            // m[:, 0] of a [4, 3] matrix.
            (&[4], &[3], Layout::Sparse { dims: vec![(4, 3)] }, 1),
            // m[::2, ::3] of a [64, 64] matrix.
            (
                &[32, 22],
                &[128, 3],
                Layout::Sparse {
                    dims: vec![(32, 128), (22, 3)],
                },
                1,
            ),
            // expand(5) of one element; expand of a row.
            (&[5], &[0], Layout::Dense { count: 1 }, 5),
            (&[2, 3], &[0, 1], Layout::Dense { count: 3 }, 2),
            // Sliding windows: elements repeat.
            (&[3, 4], &[1, 1], Layout::Overlapping, 1),
            (&[3, 4], &[2, 1], Layout::Overlapping, 1),
            (&[0, 4], &[4, 1], Layout::Dense { count: 0 }, 1),
        ];
        for (shape, stride, layout, repeat) in cases {
            assert_eq!(
                classify(shape, Some(stride)),
                (layout, repeat),
                "{shape:?} {stride:?}"
            );
        }
    }

    #[test]
    fn the_walk_visits_a_slice_in_order() {
        let mut walk = Walk::new(&[(3, 10), (2, 3)]);
        let mut seen = Vec::new();
        while let Some(at) = walk.next {
            seen.push(at);
            walk.advance();
        }
        assert_eq!(seen, vec![0, 3, 10, 13, 20, 23]);
    }

    #[test]
    fn bitmap_runs() {
        let mut bitmap = Bitmap::default();
        bitmap.clear(130);
        bitmap.set_range(2, 5);
        bitmap.set(64);
        bitmap.set(129);
        assert_eq!(bitmap.runs(), vec![(2, 5), (64, 65), (129, 130)]);
    }
}
