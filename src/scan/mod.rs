//! The weight scan: reads every tensor's bytes once, in fixed-size chunks,
//! and reports per tensor the NaN and Inf counts, whether it is all zeros,
//! and min, max, mean and std of its finite values, plus a summary of the
//! problems that break training. Pure core: bytes come through
//! `ByteSource`, progress goes to a callback that can cancel.
//!
//! Memory is flat whatever the file size: one `CHUNK_BYTES` read buffer and
//! one `BATCH`-value decode buffer, reused for every tensor (`sequential.rs`
//! and `decode.rs`; statistics in `stats.rs`). Natively, runs of plain
//! tensors are read on every core, each thread reading 1 MiB pieces into
//! one buffer of its own (`parallel.rs`), with results identical to the
//! one-thread scan. Offsets the zip reader only predicted are confirmed
//! against their local headers before any byte is read.
//!
//! Tensors that share a storage (tied weights, views) are read once per
//! storage: every chunk goes to each tensor that views it, so each tensor's
//! statistics are those of its own elements, strides and offset included
//! (`views.rs`), and the summary counts a NaN two tensors share once. Only
//! views whose elements overlap themselves (`as_strided` tricks) are not
//! walked: they are listed as not scanned, and the bytes their storage
//! spans are summarised as the storage's, never as the tensor's.
//!
//! Statistics: NaN and ±Inf are counted and left out of min/max/mean/std,
//! which are those of the finite values (std is the population std, as
//! numpy's default).

mod decode;
#[cfg(not(target_arch = "wasm32"))]
mod parallel;
mod render;
mod sequential;
mod views;

pub use render::to_text;

pub use crate::stats::Moments;

use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::dtype::element_bytes;
use crate::error::{err, ErrorKind, Result};
use crate::format::{self, Format};
use crate::source::ByteSource;
use decode::Decoder;
use sequential::Sequential;
use serde::Serialize;
use std::collections::BTreeMap;
use views::{classify, Layout, View};

/// Bytes read at once. Chunks are cut at element or block boundaries.
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// What the scan found in one tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorStats {
    /// The state-dict key.
    pub name: String,
    /// Keys from the root object (pickles), as in `inspect`.
    pub path: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// False when the bytes were not read (no data, or a type that is not
    /// decoded); `note` says why.
    pub scanned: bool,
    /// Values the statistics cover: the tensor's elements (complex: two
    /// per element).
    pub values: u64,
    pub nan: u64,
    pub inf: u64,
    pub zeros: u64,
    /// Every value is zero (and there is at least one).
    pub all_zero: bool,
    /// Of the finite values; `None` when there are none.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TensorStats {
    /// Whether a floating-point tensor is all zeros: integer and bool
    /// tensors (step counters, masks) are often legitimately zero.
    pub fn zero_problem(&self) -> bool {
        self.all_zero && is_float(&self.dtype)
    }

    pub fn display_name(&self) -> String {
        if self.path.len() > 1 {
            self.path.join("/")
        } else {
            self.name.clone()
        }
    }
}

fn is_float(dtype: &str) -> bool {
    !matches!(
        dtype,
        "BOOL"
            | "U8"
            | "I8"
            | "I16"
            | "U16"
            | "I32"
            | "U32"
            | "I64"
            | "U64"
            | "QI8"
            | "QU8"
            | "QI32"
    )
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanSummary {
    pub tensors: usize,
    pub scanned: usize,
    /// Tensors whose bytes were not read, with why.
    pub skipped: Vec<String>,
    /// NaN and Inf values in the file's tensors, each stored value counted
    /// once however many tensors view it.
    pub nan_values: u64,
    pub inf_values: u64,
    /// Names of tensors with at least one NaN / Inf.
    pub with_nan: Vec<String>,
    pub with_inf: Vec<String>,
    /// Floating-point tensors that are all zeros.
    pub all_zero: Vec<String>,
    /// One line per problem, for people.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanReport {
    pub files: Vec<String>,
    pub formats: Vec<String>,
    /// Bytes of tensor data to scan, and scanned.
    pub bytes_total: u64,
    pub bytes_scanned: u64,
    pub tensors: Vec<TensorStats>,
    pub summary: ScanSummary,
    /// No NaN, no Inf, no all-zero floating-point tensor.
    pub ok: bool,
}

/// One byte range to scan (a tensor's bytes, or the span of a storage its
/// tensors view) and the distinct views that take its chunks.
struct Region {
    source: usize,
    offset: u64,
    nbytes: u64,
    decoder: Decoder,
    /// Bytes of one element (views step in these).
    element: u64,
    views: Vec<View>,
    /// The storage key, for notes (pickles).
    storage: Option<String>,
    /// Each stored value counted once, for the summary.
    distinct: Moments,
    /// The whole span, computed only when a view overlaps itself.
    span: Option<Moments>,
}

impl Region {
    /// One view covering the whole range: chunks need no routing.
    fn is_plain(&self) -> bool {
        match self.views.as_slice() {
            [view] => {
                view.first == 0
                    && view.repeat == 1
                    && matches!(view.layout, Layout::Dense { count } if count.saturating_mul(self.element) == self.nbytes)
            }
            _ => false,
        }
    }
}

fn empty_stats(tensor: &TensorInfo) -> TensorStats {
    TensorStats {
        name: tensor.name.clone(),
        path: tensor.path.clone(),
        file: tensor.file.clone(),
        dtype: tensor.dtype.clone(),
        shape: tensor.shape.clone(),
        scanned: false,
        values: 0,
        nan: 0,
        inf: 0,
        zeros: 0,
        all_zero: false,
        min: None,
        max: None,
        mean: None,
        std: None,
        note: None,
    }
}

/// Plan the regions of one checkpoint whose tensors live in `sources`
/// (indices into the scan's source list), appending stats placeholders.
fn plan(
    checkpoint: &Checkpoint,
    sources: &[(usize, &dyn ByteSource)],
    stats: &mut Vec<TensorStats>,
    regions: &mut Vec<Region>,
) -> Result<()> {
    let big_endian = checkpoint
        .metadata
        .get("byteorder")
        .and_then(|v| v.as_str())
        == Some("big");
    let plain_sources: Vec<&dyn ByteSource> = sources.iter().map(|(_, s)| *s).collect();
    let index_of = |source: &dyn ByteSource| {
        sources
            .iter()
            .find(|(_, s)| std::ptr::addr_eq(*s, source))
            .map(|(index, _)| *index)
    };
    // Tensors of one storage (per source and dtype) form one region; others
    // are a region each. Values: (offset, tensor indices).
    let mut groups: BTreeMap<(usize, String, String), Vec<(u64, usize)>> = BTreeMap::new();
    let first = stats.len();
    for tensor in &checkpoint.tensors {
        let index = stats.len();
        let mut entry = empty_stats(tensor);
        if tensor.offset.is_none() || tensor.nbytes.is_none() {
            entry.note = Some("no data in the file (a meta tensor)".to_string());
            stats.push(entry);
            continue;
        }
        let Some(source) = format::source_for_tensor(&plain_sources, tensor) else {
            entry.note = Some("its file was not given".to_string());
            stats.push(entry);
            continue;
        };
        let decoder = match Decoder::for_dtype(&tensor.dtype, big_endian) {
            Ok(decoder) => decoder,
            Err(why) => {
                entry.note = Some(format!("not dequantized: {why}"));
                stats.push(entry);
                continue;
            }
        };
        // A predicted zip offset is checked against its local header here,
        // before a byte of the tensor is read.
        let offset = format::confirmed_offset(source, tensor)
            .map_err(|e| e.for_tensor(&tensor.name))?
            .unwrap_or_default();
        let nbytes = tensor.nbytes.unwrap_or_default();
        stats.push(entry);
        let source = index_of(source).unwrap_or_default();
        match &tensor.storage {
            Some(key) => groups
                .entry((source, key.clone(), tensor.dtype.clone()))
                .or_default()
                .push((offset, index)),
            None => {
                let element = decoder.unit().0 as u64;
                let count = nbytes / element.max(1);
                regions.push(Region {
                    source,
                    offset,
                    nbytes,
                    element,
                    views: vec![View::new(index, 0, Layout::Dense { count }, 1)],
                    decoder,
                    storage: None,
                    distinct: Moments::default(),
                    span: None,
                })
            }
        }
    }
    for ((source, key, dtype), members) in groups {
        let decoder = Decoder::for_dtype(&dtype, big_endian)
            .map_err(|why| err(ErrorKind::UnknownDtype, why))?;
        let element = element_bytes(&dtype).unwrap_or(decoder.unit().0) as u64;
        let start = members.iter().map(|(offset, _)| *offset).min().unwrap_or(0);
        let mut end = start;
        let mut views: Vec<View> = Vec::new();
        for (offset, index) in &members {
            let tensor = &checkpoint.tensors[index - first];
            end = end.max(offset.saturating_add(tensor.nbytes.unwrap_or(0)));
            let (layout, repeat) = classify(&tensor.shape, tensor.stride.as_deref());
            let at = offset - start;
            match views
                .iter_mut()
                .find(|view| view.same_as(at, &layout, repeat))
            {
                Some(view) => view.members.push(*index),
                None => views.push(View::new(*index, at, layout, repeat)),
            }
        }
        let n_tensors = members.len();
        for view in &views {
            let note = view_note(&key, n_tensors, view, element);
            for index in &view.members {
                stats[*index].note = note.clone();
            }
        }
        regions.push(Region {
            source,
            offset: start,
            nbytes: end - start,
            decoder,
            element,
            views,
            storage: Some(key),
            distinct: Moments::default(),
            span: None,
        });
    }
    Ok(())
}

/// What a tensor's statistics are of, when that is not simply its bytes.
fn view_note(key: &str, n_tensors: usize, view: &View, element: u64) -> Option<String> {
    let mut parts = Vec::new();
    if n_tensors > 1 {
        parts.push(format!(
            "storage {key:?} is shared by {n_tensors} tensors and read once; the figures are of this tensor's own elements"
        ));
    }
    match &view.layout {
        Layout::Sparse { .. } => parts.push(format!(
            "a strided view of storage {key:?}: the figures are of its own elements"
        )),
        Layout::Overlapping => parts.push(format!(
            "an overlapping strided view of storage {key:?} (its elements repeat): not scanned per element"
        )),
        Layout::Dense { .. } => {}
    }
    if view.repeat > 1 {
        parts.push(format!(
            "stride 0: each stored element appears {} times (element size {element} bytes)",
            view.repeat
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Scan already-read checkpoints: each with the sources its tensors live in.
pub fn scan_checkpoints(
    checkpoints: &[(&Checkpoint, Vec<&dyn ByteSource>)],
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ScanReport> {
    let mut all_sources: Vec<&dyn ByteSource> = Vec::new();
    let mut report = ScanReport::default();
    let mut regions = Vec::new();
    for (checkpoint, sources) in checkpoints {
        let indexed: Vec<(usize, &dyn ByteSource)> = sources
            .iter()
            .map(|source| {
                all_sources.push(*source);
                (all_sources.len() - 1, *source)
            })
            .collect();
        report.files.push(checkpoint.file.clone());
        report.formats.push(checkpoint.format.clone());
        plan(checkpoint, &indexed, &mut report.tensors, &mut regions)?;
    }
    // Read each file front to back.
    regions.sort_by_key(|region| (region.source, region.offset));
    report.bytes_total = regions.iter().map(|r| r.nbytes).sum();
    if !progress(0, report.bytes_total) {
        return Err(err(ErrorKind::Cancelled, "scan cancelled"));
    }
    let mut sequential = Sequential::default();
    #[cfg(not(target_arch = "wasm32"))]
    let mut workers = parallel::Workers::new();
    let mut done = 0u64;
    let total = report.bytes_total;
    let mut index = 0;
    while index < regions.len() {
        // Natively, a run of plain tensors is read on every core.
        #[cfg(not(target_arch = "wasm32"))]
        if workers.parallel() {
            let run = workers.plain_run(
                &mut regions[index..],
                &all_sources,
                &report.tensors,
                &mut |bytes| {
                    done += bytes;
                    progress(done, total)
                },
            )?;
            for region in &mut regions[index..index + run] {
                sequential::record(region, &mut report.tensors);
            }
            index += run;
            if run > 0 {
                continue;
            }
        }
        let region = &mut regions[index];
        let source = all_sources[region.source];
        let name = sequential::region_name(region, &report.tensors);
        sequential.scan_region(region, source, &name, &mut done, &mut |done| {
            progress(done, total)
        })?;
        sequential::record(region, &mut report.tensors);
        index += 1;
    }
    report.bytes_scanned = done;
    summarise(&mut report, &regions);
    Ok(report)
}

fn summarise(report: &mut ScanReport, regions: &[Region]) {
    let summary = &mut report.summary;
    summary.tensors = report.tensors.len();
    for region in regions {
        // A storage with a self-overlapping view is counted whole: which of
        // its values those views hold was not worked out.
        let counted = region.span.as_ref().unwrap_or(&region.distinct);
        summary.nan_values += counted.nan;
        summary.inf_values += counted.inf;
        if let (Some(span), Some(key)) = (&region.span, &region.storage) {
            if span.nan > 0 || span.inf > 0 {
                let names: Vec<String> = region
                    .views
                    .iter()
                    .filter(|view| view.layout == Layout::Overlapping)
                    .flat_map(|view| view.members.iter())
                    .map(|i| report.tensors[*i].display_name())
                    .collect();
                summary.problems.push(format!(
                    "storage {key:?} bytes {}..{}: {} NaN, {} Inf (viewed by {}, overlapping views not scanned per element; the values may lie outside them)",
                    region.offset,
                    region.offset + region.nbytes,
                    span.nan,
                    span.inf,
                    names.join(", ")
                ));
            }
        }
    }
    for tensor in &report.tensors {
        let name = tensor.display_name();
        if !tensor.scanned {
            summary.skipped.push(format!(
                "{name}: {}",
                tensor.note.as_deref().unwrap_or("not scanned")
            ));
            continue;
        }
        summary.scanned += 1;
        if tensor.nan > 0 {
            summary.with_nan.push(name.clone());
            summary.problems.push(format!(
                "{name}: {} NaN of {} values",
                tensor.nan, tensor.values
            ));
        }
        if tensor.inf > 0 {
            summary.with_inf.push(name.clone());
            summary.problems.push(format!(
                "{name}: {} Inf of {} values",
                tensor.inf, tensor.values
            ));
        }
        if tensor.zero_problem() {
            summary.all_zero.push(name.clone());
            summary
                .problems
                .push(format!("{name}: all {} values are zero", tensor.values));
        }
    }
    report.ok = summary.problems.is_empty();
}

/// Scan what a user gave: files of one or several checkpoints. A shard
/// index among them makes them one sharded checkpoint; otherwise each
/// checkpoint file is scanned on its own. Config JSONs are skipped.
pub fn scan_sources(
    sources: &[&dyn ByteSource],
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ScanReport> {
    let mut chosen: Vec<&dyn ByteSource> = Vec::new();
    let mut sharded = false;
    for source in sources {
        match format::detect(*source) {
            Ok(Format::Json) if sources.len() > 1 => {}
            Ok(Format::ShardIndex) => {
                sharded = true;
                chosen.push(*source);
            }
            Ok(_) => chosen.push(*source),
            Err(e) if sources.len() > 1 && e.kind == ErrorKind::UnsupportedFormat => {}
            Err(e) => return Err(e),
        }
    }
    let mut checkpoints = Vec::new();
    if sharded {
        let checkpoint = format::read_files(&chosen)?;
        checkpoints.push((checkpoint, chosen.clone()));
    } else {
        if chosen.is_empty() {
            return Err(err(ErrorKind::BadArgument, "no checkpoint file given"));
        }
        for source in &chosen {
            checkpoints.push((format::read_checkpoint(*source)?, vec![*source]));
        }
    }
    let refs: Vec<(&Checkpoint, Vec<&dyn ByteSource>)> = checkpoints
        .iter()
        .map(|(checkpoint, sources)| (checkpoint, sources.clone()))
        .collect();
    scan_checkpoints(&refs, progress)
}

#[cfg(test)]
mod tests {
    use super::decode::f4_e2m1_to_f32;
    use super::*;
    use crate::dtype::f16_to_f32;
    use crate::source::SliceSource;
    use crate::stats::{batch_moments, batch_moments_f32};

    /// The naive oracle: straight definitions in f64.
    fn naive(values: &[f64]) -> (u64, u64, f64, f64, f64, f64) {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let nan = values.iter().filter(|v| v.is_nan()).count() as u64;
        let inf = values.iter().filter(|v| v.is_infinite()).count() as u64;
        let n = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (nan, inf, min, max, mean, var.sqrt())
    }

    fn safetensors(tensors: &[(&str, &str, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
            );
            data.extend_from_slice(bytes);
        }
        let text = serde_json::Value::Object(header).to_string();
        let mut file = (text.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(text.as_bytes());
        file.extend(data);
        file
    }

    fn scan_bytes(bytes: &[u8]) -> ScanReport {
        let source = SliceSource::new("t.safetensors", bytes);
        scan_sources(&[&source], &mut |_, _| true).unwrap()
    }

    #[test]
    fn hand_computed_statistics() {
        let values = [1.0f32, 2.0, f32::NAN, 4.0, f32::INFINITY, -1.0];
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let zeros = vec![0u8; 8];
        let ints: Vec<u8> = [0i64, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let report = scan_bytes(&safetensors(&[
            ("a", "F32", vec![6], bytes),
            ("b", "F16", vec![4], zeros),
            ("c", "I64", vec![2], ints),
        ]));
        let a = &report.tensors[0];
        assert_eq!((a.values, a.nan, a.inf, a.zeros), (6, 1, 1, 0));
        // Finite values 1, 2, 4, -1: mean 1.5, variance (0.25+0.25+6.25+6.25)/4.
        assert_eq!((a.min, a.max, a.mean), (Some(-1.0), Some(4.0), Some(1.5)));
        assert_eq!(a.std, Some(3.25f64.sqrt()));
        assert!(report.tensors[1].all_zero && report.tensors[1].zero_problem());
        assert!(report.tensors[2].all_zero && !report.tensors[2].zero_problem());
        assert!(!report.ok);
        assert_eq!(report.summary.with_nan, vec!["a"]);
        assert_eq!(report.summary.all_zero, vec!["b"]);
        assert_eq!(report.bytes_scanned, 24 + 8 + 16);
    }

    #[test]
    fn long_tensors_merge_batches_exactly() {
        // 300k values across many batches and chunks, offset far from zero
        // (where a naive sum of squares would lose the variance).
        let values: Vec<f64> = (0..300_000u64)
            .map(|i| 1e6 + ((i * 7919) % 1000) as f64 / 7.0)
            .collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let report = scan_bytes(&safetensors(&[("w", "F64", vec![300_000], bytes)]));
        let (_, _, min, max, mean, std) = naive(&values);
        let w = &report.tensors[0];
        assert_eq!((w.min, w.max), (Some(min), Some(max)));
        assert!((w.mean.unwrap() - mean).abs() < 1e-9 * mean);
        assert!((w.std.unwrap() - std).abs() < 1e-9 * std);
    }

    #[test]
    fn wide_values_stay_finite_and_big_endian_is_honoured() {
        let bytes: Vec<u8> = [1e300f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let report = scan_bytes(&safetensors(&[("w", "F64", vec![2], bytes)]));
        assert_eq!(report.tensors[0].inf, 0);
        assert_eq!(report.tensors[0].max, Some(1e300));
        let mut moments = Moments::default();
        let decoder = Decoder::for_dtype("F32", true).unwrap();
        let part = decoder
            .moments(&2.5f32.to_be_bytes(), &mut Vec::new(), &mut Vec::new())
            .unwrap();
        moments.merge(&part);
        assert_eq!(moments.max, 2.5);
    }

    #[test]
    fn progress_reports_bytes_and_cancels() {
        let bytes = vec![0u8; 3 * CHUNK_BYTES];
        let file = safetensors(&[("w", "U8", vec![bytes.len() as u64], bytes)]);
        let source = SliceSource::new("t.safetensors", &file);
        let mut calls = Vec::new();
        scan_sources(&[&source], &mut |done, total| {
            calls.push((done, total));
            true
        })
        .unwrap();
        let total = 3 * CHUNK_BYTES as u64;
        assert_eq!(calls.first(), Some(&(0, total)));
        assert_eq!(calls.last(), Some(&(total, total)));
        assert_eq!(calls.len(), 4);
        let error = scan_sources(&[&source], &mut |done, _| done == 0).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Cancelled);
    }

    #[test]
    fn the_f32_kernel_agrees_with_the_generic_one() {
        let mut values: Vec<f32> = (0..1000)
            .map(|i| (i as f32 * 0.37).sin() * 100.0 + 3.0)
            .collect();
        values[500] = 0.0;
        let finite = values.clone();
        for (at, special) in [(3, f32::NAN), (17, f32::INFINITY), (999, f32::NEG_INFINITY)] {
            values[at] = special;
        }
        // Finite batches take the SIMD path on x86_64, the others not.
        let cases = [0, 1, 3, 4, 5, 15, 16, 17, 999, 1000]
            .map(|len| &finite[..len])
            .into_iter()
            .chain([0, 1, 15, 16, 17, 999, 1000].map(|len| &values[..len]));
        for values in cases {
            let len = values.len();
            let (fast, slow) = (batch_moments_f32(values), batch_moments(values));
            assert_eq!(
                (fast.values, fast.nan, fast.inf, fast.zeros, fast.finite),
                (slow.values, slow.nan, slow.inf, slow.zeros, slow.finite),
                "{len}"
            );
            assert_eq!((fast.min, fast.max), (slow.min, slow.max), "{len}");
            assert!(
                (fast.mean - slow.mean).abs() <= 1e-12 * slow.mean.abs().max(1.0),
                "{len}"
            );
            assert!(
                (fast.m2 - slow.m2).abs() <= 1e-9 * slow.m2.abs().max(1.0),
                "{len}"
            );
        }
    }

    #[test]
    fn f4_and_f16_decode() {
        assert_eq!(f4_e2m1_to_f32(0b0111), 6.0);
        assert_eq!(f4_e2m1_to_f32(0b1001), -0.5);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
    }
}
