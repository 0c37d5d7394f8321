//! Weights for the forward pass, read lazily: one tensor's bytes at a time
//! from its file through `ByteSource`, at the offset and with the strides
//! its `TensorInfo` gives, decoded to f32 by `dtype::decode_into` (either
//! byte order). Nothing is read until a model asks for a tensor, so a model
//! runs in the memory of its largest tensor plus activations, and
//! `--layers K` reads only what K blocks need.
//!
//! Every tensor read is also measured (NaN/Inf counts, all-zero, RMS and
//! largest magnitude) so the verdict can flag weights that load but are
//! garbage. This module does not know model graphs: `reference` asks it for
//! names and shapes.

use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::dtype;
use crate::error::{err, ErrorKind, Result};
use crate::source::{read_vec, ByteSource};
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Largest tensor the forward pass decodes (elements). A 152k × 8192
/// embedding is 1.2e9; beyond this the tensor is refused, not allocated.
pub const MAX_ELEMENTS: u64 = 1 << 31;

/// Bytes read and decoded per step, so a 500 MB tensor never needs a second
/// 500 MB buffer of raw bytes.
const READ_CHUNK: u64 = 64 * 1024 * 1024;

/// What the forward pass asks of a checkpoint.
pub trait WeightSource {
    /// Tensor `name` decoded to f32 in row-major order, after checking that
    /// its shape is `shape`.
    fn load(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// Whether a tensor of that name exists (optional biases, tied heads).
    fn has(&self, name: &str) -> bool;
    /// The precision the tensor is stored in, when it is 16 bits
    /// (`reference::Backend::upload_matrix`).
    fn stored(&self, name: &str) -> crate::dtype::Stored {
        let _ = name;
        crate::dtype::Stored::F32
    }
}

/// Statistics of one tensor as read, for the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorStats {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub n_nan: u64,
    pub n_inf: u64,
    pub all_zero: bool,
    /// Root mean square of the finite elements.
    pub rms: f32,
    pub max_abs: f32,
}

impl TensorStats {
    pub fn of(name: &str, dtype: &str, shape: &[u64], data: &[f32]) -> TensorStats {
        let moments = crate::stats::Moments::of_f32(data);
        let finite = moments.finite > 0;
        // The mean square is the variance plus the squared mean.
        let mean_square = moments
            .std()
            .map_or(0.0, |std| std * std + moments.mean * moments.mean);
        TensorStats {
            name: name.to_string(),
            dtype: dtype.to_string(),
            shape: shape.to_vec(),
            n_nan: moments.nan,
            n_inf: moments.inf,
            all_zero: moments.values > 0 && moments.zeros == moments.values,
            rms: mean_square.sqrt() as f32,
            max_abs: if finite {
                moments.min.abs().max(moments.max.abs()) as f32
            } else {
                0.0
            },
        }
    }

    /// Why this tensor looks wrong, if it does. All-zero biases are normal
    /// (PyTorch initialises many to zero) and are not flagged.
    pub fn trouble(&self) -> Option<String> {
        if self.n_nan > 0 || self.n_inf > 0 {
            return Some(format!(
                "{}: {} NaN and {} Inf values",
                self.name, self.n_nan, self.n_inf
            ));
        }
        let is_bias = self.name.ends_with("bias") || self.name.ends_with("running_mean");
        if self.all_zero && !is_bias && self.shape.iter().product::<u64>() > 1 {
            return Some(format!("{}: every element is zero", self.name));
        }
        if self.max_abs > 1e4 || self.rms > 1e2 {
            return Some(format!(
                "{}: absurd magnitudes (rms {:.3e}, max |w| {:.3e})",
                self.name, self.rms, self.max_abs
            ));
        }
        None
    }
}

/// Time in milliseconds from some fixed start; natively from `Instant`, in
/// the browser from `performance.now()` (std's clock panics on wasm32).
pub type Clock = dyn Fn() -> f64;

/// The weights of one checkpoint, read on demand from its file(s).
pub struct CheckpointWeights<'a> {
    sources: Vec<&'a dyn ByteSource>,
    /// Tensor key without the wrapper prefix (`module.`) -> its info.
    tensors: HashMap<String, TensorInfo>,
    /// Prefixes a model may put on its names that this file lacks, or the
    /// other way round (`bert.`, `transformer.`, `model.`).
    base_prefixes: Vec<String>,
    big_endian: bool,
    clock: &'a Clock,
    stats: RefCell<Vec<TensorStats>>,
    read_ms: Cell<f64>,
    bytes: Cell<u64>,
}

impl<'a> CheckpointWeights<'a> {
    /// `sources` are the files the checkpoint was read from (one, or the
    /// shards, matched to tensors by `TensorInfo::file`).
    pub fn new(
        checkpoint: &Checkpoint,
        sources: Vec<&'a dyn ByteSource>,
        clock: &'a Clock,
    ) -> Result<Self> {
        if checkpoint.format == "gguf" {
            return Err(err(
                ErrorKind::UnsupportedFormat,
                "the forward pass does not read GGUF files yet (their tensors are renamed, permuted and often quantized)",
            ));
        }
        let (_, state_dict) = crate::state_dict::select_state_dict(checkpoint);
        let (prefix, _) = crate::state_dict::strip_common_prefix(&state_dict.entries);
        let prefix = prefix.unwrap_or_default();
        let keys: std::collections::HashSet<&str> =
            state_dict.entries.iter().map(|e| e.key.as_str()).collect();
        let mut tensors = HashMap::new();
        for tensor in &checkpoint.tensors {
            if !keys.contains(tensor.name.as_str()) {
                continue;
            }
            let key = tensor.name.strip_prefix(&prefix).unwrap_or(&tensor.name);
            tensors.insert(key.to_string(), tensor.clone());
        }
        let big_endian = checkpoint
            .metadata
            .get("byteorder")
            .and_then(|v| v.as_str())
            == Some("big");
        Ok(CheckpointWeights {
            sources,
            tensors,
            base_prefixes: Vec::new(),
            big_endian,
            clock,
            stats: RefCell::new(Vec::new()),
            read_ms: Cell::new(0.0),
            bytes: Cell::new(0),
        })
    }

    /// Also look names up with `prefix` removed or added (a bare `BertModel`
    /// saves `embeddings.*` where `BertForMaskedLM` saves `bert.embeddings.*`).
    pub fn with_base_prefix(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.base_prefixes.push(prefix.to_string());
        }
        self
    }

    pub fn n_tensors(&self) -> usize {
        self.tensors.len()
    }

    fn find(&self, name: &str) -> Option<&TensorInfo> {
        if let Some(t) = self.tensors.get(name) {
            return Some(t);
        }
        for prefix in &self.base_prefixes {
            let other = match name.strip_prefix(prefix.as_str()) {
                Some(bare) => bare.to_string(),
                None => format!("{prefix}{name}"),
            };
            if let Some(t) = self.tensors.get(&other) {
                return Some(t);
            }
        }
        None
    }

    /// Statistics of every tensor read so far, in reading order.
    pub fn stats(&self) -> Vec<TensorStats> {
        self.stats.borrow().clone()
    }

    /// Milliseconds spent reading and decoding.
    pub fn read_ms(&self) -> f64 {
        self.read_ms.get()
    }

    /// Bytes of tensor data read.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.get()
    }

    fn source_for(&self, tensor: &TensorInfo) -> Result<&'a dyn ByteSource> {
        crate::format::source_for_tensor(&self.sources, tensor).ok_or_else(|| match &tensor.file {
            Some(file) => err(ErrorKind::BadShards, format!("shard {file} was not given"))
                .for_tensor(&tensor.name),
            None => err(ErrorKind::BadArgument, "no checkpoint file given"),
        })
    }

    fn read_tensor(&self, tensor: &TensorInfo) -> Result<Vec<f32>> {
        let numel = tensor.numel();
        if numel > MAX_ELEMENTS {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!("{numel} elements is more than the forward pass decodes ({MAX_ELEMENTS})"),
            )
            .for_tensor(&tensor.name));
        }
        let element = dtype::element_bytes(&tensor.dtype).ok_or_else(|| {
            err(
                ErrorKind::UnknownDtype,
                format!("cannot run a forward pass on dtype {}", tensor.dtype),
            )
            .for_tensor(&tensor.name)
        })? as u64;
        if matches!(tensor.dtype.as_str(), "C64" | "C128") {
            return Err(
                err(ErrorKind::UnknownDtype, "complex weights in a model").for_tensor(&tensor.name)
            );
        }
        let source = self.source_for(tensor)?;
        // A predicted zip offset is checked against its local header first.
        let offset = crate::format::confirmed_offset(source, tensor)
            .map_err(|e| e.for_tensor(&tensor.name))?;
        let (Some(offset), Some(nbytes)) = (offset, tensor.nbytes) else {
            return Err(err(
                ErrorKind::InvalidOffsets,
                "the file does not say where this tensor's bytes are",
            )
            .for_tensor(&tensor.name));
        };
        if numel == 0 {
            return Ok(Vec::new());
        }
        // The elements the tensor spans in its storage (more than numel for
        // views, fewer for broadcast stride-0 tensors).
        let span = nbytes / element;
        if nbytes % element != 0 || span > MAX_ELEMENTS {
            return Err(err(
                ErrorKind::InvalidOffsets,
                format!(
                    "tensor spans {nbytes} bytes, not a sane number of {} elements",
                    tensor.dtype
                ),
            )
            .for_tensor(&tensor.name));
        }
        let mut raw = Vec::with_capacity(span as usize);
        let mut done = 0u64;
        while done < nbytes {
            let len = READ_CHUNK.min(nbytes - done) / element * element;
            let len = len.max(element);
            let bytes =
                read_vec(source, offset + done, len).map_err(|e| e.for_tensor(&tensor.name))?;
            dtype::decode_into(&tensor.dtype, &bytes, self.big_endian, &mut raw)
                .map_err(|e| e.for_tensor(&tensor.name))?;
            done += len;
        }
        self.bytes.set(self.bytes.get() + nbytes);
        match &tensor.stride {
            Some(stride) if !is_contiguous(&tensor.shape, stride) => {
                gather_strided(&raw, &tensor.shape, stride).map_err(|e| e.for_tensor(&tensor.name))
            }
            _ if raw.len() as u64 != numel => Err(err(
                ErrorKind::InvalidOffsets,
                format!("{} elements stored for a tensor of {numel}", raw.len()),
            )
            .for_tensor(&tensor.name)),
            _ => Ok(raw),
        }
    }
}

/// Whether `stride` lays `shape` out row-major with no gaps (size-1
/// dimensions may have any stride).
pub fn is_contiguous(shape: &[u64], stride: &[u64]) -> bool {
    let mut expected = 1u64;
    for (dim, step) in shape.iter().zip(stride).rev() {
        if *dim != 1 && *step != expected {
            return false;
        }
        expected = expected.saturating_mul(*dim);
    }
    true
}

/// Elements of a strided view, in row-major order of `shape`.
fn gather_strided(storage: &[f32], shape: &[u64], stride: &[u64]) -> Result<Vec<f32>> {
    let numel: u64 = shape.iter().product();
    let mut out = Vec::with_capacity(numel as usize);
    let mut index = vec![0u64; shape.len()];
    for _ in 0..numel {
        let at: u64 = index.iter().zip(stride).map(|(i, s)| i * s).sum();
        out.push(*storage.get(at as usize).ok_or_else(|| {
            err(
                ErrorKind::InvalidOffsets,
                "a strided view reaches past its storage",
            )
        })?);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

impl WeightSource for CheckpointWeights<'_> {
    fn load(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let tensor = self.find(name).ok_or_else(|| {
            err(
                ErrorKind::BadArgument,
                "the model needs this tensor but the checkpoint lacks it",
            )
            .for_tensor(name)
        })?;
        let expected: Vec<u64> = shape.iter().map(|d| *d as u64).collect();
        // A [n] parameter stored as [1, n] (or the reverse) is the same data.
        let squeeze = |s: &[u64]| -> Vec<u64> { s.iter().copied().filter(|d| *d != 1).collect() };
        if tensor.shape != expected && squeeze(&tensor.shape) != squeeze(&expected) {
            return Err(err(
                ErrorKind::BadArgument,
                format!(
                    "shape {:?} in the checkpoint, the config says {expected:?}",
                    tensor.shape
                ),
            )
            .for_tensor(name));
        }
        // The statistics (NaN, zeros, norms: `weight_trouble`) are part of
        // reading a weight, not of the forward pass, and are timed with it.
        let start = (self.clock)();
        let data = self.read_tensor(tensor)?;
        self.stats.borrow_mut().push(TensorStats::of(
            &tensor.name,
            &tensor.dtype,
            &tensor.shape,
            &data,
        ));
        self.read_ms
            .set(self.read_ms.get() + (self.clock)() - start);
        Ok(data)
    }

    fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn stored(&self, name: &str) -> crate::dtype::Stored {
        self.find(name).map_or(crate::dtype::Stored::F32, |t| {
            crate::dtype::Stored::of_dtype(&t.dtype)
        })
    }
}

/// Weights held in memory by name, for tests and generated models.
#[derive(Default)]
pub struct MemoryWeights {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl MemoryWeights {
    pub fn insert(&mut self, name: &str, shape: &[usize], data: Vec<f32>) {
        self.tensors
            .insert(name.to_string(), (shape.to_vec(), data));
    }
}

impl WeightSource for MemoryWeights {
    fn load(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.tensors.get(name) {
            Some((s, data)) if s == shape => Ok(data.clone()),
            Some((s, _)) => Err(err(
                ErrorKind::BadArgument,
                format!("shape {s:?}, the config says {shape:?}"),
            )
            .for_tensor(name)),
            None => Err(err(ErrorKind::BadArgument, "missing tensor").for_tensor(name)),
        }
    }
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Made-up weights for any name and shape, deterministic per name: for
/// benchmarks and smoke tests of full-size graphs without a checkpoint.
/// Norm scales are near 1, everything else uniform with variance
/// 1 / fan_in (the last dimension), so activations stay of order 1.
/// `has` answers false, so optional tensors (untied LM heads) are skipped.
#[derive(Default)]
pub struct RandomWeights;

impl WeightSource for RandomWeights {
    fn load(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let norm = name.contains("norm") || name.contains("ln_") || name.contains("LayerNorm");
        let fan_in = shape.last().copied().unwrap_or(1).max(1) as f32;
        let bound = (3.0 / fan_in).sqrt();
        Ok((0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                if norm && name.ends_with("weight") {
                    1.0 + 0.1 * unit
                } else {
                    unit * bound
                }
            })
            .collect())
    }
    fn has(&self, _name: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SliceSource;

    fn zero_clock() -> f64 {
        0.0
    }

    fn checkpoint_with(tensors: Vec<TensorInfo>, big_endian: bool) -> Checkpoint {
        let mut checkpoint = Checkpoint::new("w.pt", "pytorch-zip", 64);
        checkpoint.tensors = tensors;
        if big_endian {
            checkpoint
                .metadata
                .insert("byteorder".into(), serde_json::Value::String("big".into()));
        }
        checkpoint
    }

    fn tensor(
        name: &str,
        dtype: &str,
        shape: Vec<u64>,
        offset: u64,
        nbytes: u64,
        stride: Option<Vec<u64>>,
    ) -> TensorInfo {
        let mut t = TensorInfo::new(name, dtype, shape);
        t.path = vec!["state_dict".into(), name.into()];
        t.offset = Some(offset);
        t.nbytes = Some(nbytes);
        t.stride = stride;
        t
    }

    #[test]
    fn reads_strided_big_endian_and_f16_tensors_and_strips_module_prefix() {
        let mut bytes = Vec::new();
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        // A [3, 2] transposed view of the [2, 3] storage: stride [1, 3].
        let checkpoint = checkpoint_with(
            vec![
                tensor("module.a", "F32", vec![2, 3], 0, 24, Some(vec![3, 1])),
                tensor("module.t", "F32", vec![3, 2], 0, 24, Some(vec![1, 3])),
            ],
            true,
        );
        let source = SliceSource::new("w.pt", &bytes);
        let weights = CheckpointWeights::new(&checkpoint, vec![&source], &zero_clock).unwrap();
        assert_eq!(
            weights.load("a", &[2, 3]).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(
            weights.load("t", &[3, 2]).unwrap(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        let error = weights.load("a", &[3, 2]).unwrap_err();
        assert!(error.message.contains("config says [3, 2]"), "{error}");
        assert_eq!(
            weights.load("b", &[1]).unwrap_err().tensor.as_deref(),
            Some("b")
        );

        let half = [0x00u8, 0x3c, 0x00, 0xc0]; // 1.0, -2.0 little-endian
        let checkpoint = checkpoint_with(vec![tensor("h", "F16", vec![2], 0, 4, None)], false);
        let source = SliceSource::new("w.pt", &half);
        let weights = CheckpointWeights::new(&checkpoint, vec![&source], &zero_clock)
            .unwrap()
            .with_base_prefix("bert.");
        assert_eq!(weights.load("bert.h", &[2]).unwrap(), vec![1.0, -2.0]);
        assert_eq!(weights.stats()[0].max_abs, 2.0);
    }

    #[test]
    fn refuses_tensors_past_the_end_of_the_file() {
        let checkpoint = checkpoint_with(vec![tensor("a", "F32", vec![4], 8, 16, None)], false);
        let bytes = [0u8; 12];
        let source = SliceSource::new("w.pt", &bytes);
        let weights = CheckpointWeights::new(&checkpoint, vec![&source], &zero_clock).unwrap();
        let error = weights.load("a", &[4]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Truncated);
    }

    #[test]
    fn statistics_flag_nan_zero_and_absurd_tensors() {
        let check = |name: &str, data: &[f32], want: Option<&str>| {
            let stats = TensorStats::of(name, "F32", &[data.len() as u64], data);
            match (stats.trouble(), want) {
                (None, None) => {}
                (Some(got), Some(want)) => assert!(got.contains(want), "{got}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        };
        check("w", &[0.1, -0.2], None);
        check("w", &[f32::NAN, 1.0], Some("1 NaN"));
        check("w", &[0.0, 0.0], Some("every element is zero"));
        check("ln.bias", &[0.0, 0.0], None);
        check("w", &[1e6, 0.0], Some("absurd"));
    }
}
