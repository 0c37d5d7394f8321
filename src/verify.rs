//! "Prove it loads": run the model on a deterministic input and judge the
//! result. A shape check passes a transposed square matrix, a wrong head
//! count, fp16 overflow or NaN weights; a forward pass does not. This module
//! plans a run (which tower, which input, how many blocks), runs it on the
//! fast CPU backend (`fast_cpu`; the naive reference stays for the tests),
//! compares a GPU run with it, and builds the `Verdict`:
//! plain serializable data the CLI and the page both render. Every run goes
//! through `stages::Staged`, which tells a progress hook each stage as it
//! starts and times it. The GPU run itself lives in `gpu::verify` (it is
//! async in the browser).

pub mod stages;

use crate::checkpoint::Checkpoint;
use crate::error::{err, ErrorKind, Result};
use crate::fast_cpu::FastCpu;
use crate::npy;
use crate::reference::model::{default_image, default_tokens, forward, Input, ModelDesc, Tower};
use crate::reference::{Backend, Cpu, Mat};
use crate::source::ByteSource;
use crate::weights::{CheckpointWeights, Clock, TensorStats};
use serde::Serialize;
pub use stages::{Progress, Stage, StageTime, Staged};

/// Which device runs the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    pub fn parse(text: &str) -> Result<Device> {
        match text {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            other => Err(err(
                ErrorKind::BadArgument,
                format!("unknown device {other:?}: use gpu or cpu"),
            )),
        }
    }
}

/// Largest relative error (max |gpu - cpu| / max |cpu|) a GPU run may show
/// against the CPU run and still pass. f32 kernels against a reference
/// that accumulates in f64 differ by ~1e-6 per block.
pub const GPU_TOLERANCE: f32 = 1e-3;

/// What will run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub model: String,
    pub tower: Tower,
    pub input: Input,
    pub layers_run: usize,
    pub layers_total: usize,
    pub expected_shape: Vec<usize>,
    pub unsupported: Vec<String>,
}

impl Plan {
    /// "embeddings + blocks 0..2 of 12 + head".
    pub fn ran(&self) -> String {
        let blocks = match self.layers_run {
            0 => "no blocks".to_string(),
            1 => "block 0".to_string(),
            n => format!("blocks 0..{}", n - 1),
        };
        format!(
            "embeddings + {blocks} of {} + {}",
            self.layers_total,
            match self.tower {
                Tower::Vit(_) => "ln_post and proj",
                Tower::ClipText(_) => "ln_final and text_projection",
                Tower::Bert(ref c) if c.projection.is_some() => "text_projection on [CLS]",
                Tower::Bert(_) => "nothing (last hidden state)",
                Tower::Gpt2(_) => "ln_f and the LM head",
                Tower::Llama(_) => "norm and the LM head",
            }
        )
    }
}

/// Choose the tower and the input: an image goes to the image tower, token
/// ids to the text tower; without `--input`, the image tower when the model
/// has one, with the default image, else the default tokens.
pub fn plan(desc: &ModelDesc, input: Option<npy::Array>, layers: Option<usize>) -> Result<Plan> {
    let bad = |message: String| err(ErrorKind::BadArgument, message);
    let (tower, input) = match input {
        None => match (&desc.image_tower, &desc.text_tower) {
            (Some(vit @ Tower::Vit(c)), _) => (
                vit.clone(),
                Input::Image {
                    res: c.resolution,
                    data: default_image(c.resolution),
                },
            ),
            (_, Some(text)) => (text.clone(), Input::Tokens(default_tokens(text))),
            _ => {
                return Err(err(
                    ErrorKind::BadConfig,
                    format!("nothing to run: {}", desc.unsupported.join("; ")),
                ))
            }
        },
        Some(npy::Array::F32 { shape, data }) => {
            let tower = desc.image_tower.clone().ok_or_else(|| {
                bad(format!(
                    "a float32 image was given but {} has no image tower that runs",
                    desc.name
                ))
            })?;
            let res = match shape.as_slice() {
                [1, 3, h, w] | [3, h, w] if h == w => *h,
                other => {
                    return Err(bad(format!(
                        "the image must be [1, 3, R, R] float32, got {other:?}"
                    )))
                }
            };
            (tower, Input::Image { res, data })
        }
        Some(npy::Array::I64 { shape, data }) => {
            let tower = desc.text_tower.clone().ok_or_else(|| {
                bad(format!(
                    "token ids were given but {} has no text tower",
                    desc.name
                ))
            })?;
            if !matches!(shape.as_slice(), [1, _] | [_]) {
                return Err(bad(format!(
                    "token ids must be [1, T] int64, got {shape:?}"
                )));
            }
            let ids = data
                .iter()
                .map(|v| {
                    u32::try_from(*v)
                        .map_err(|_| bad(format!("token id {v} is negative or too large")))
                })
                .collect::<Result<Vec<u32>>>()?;
            (tower, Input::Tokens(ids))
        }
    };
    let layers_total = tower.layers();
    let layers_run = layers.unwrap_or(layers_total).min(layers_total);
    let tokens = match &input {
        Input::Tokens(ids) => ids.len(),
        Input::Image { .. } => 1,
    };
    Ok(Plan {
        model: desc.name.clone(),
        expected_shape: tower.output_shape(tokens),
        tower,
        input,
        layers_run,
        layers_total,
        unsupported: desc.unsupported.clone(),
    })
}

/// One device's run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    #[serde(skip)]
    pub output: Vec<f32>,
    /// Reading, decoding and checking (NaN, zeros, norms) weights from the
    /// file.
    pub read_ms: f64,
    /// Host to device copies (0 on the CPU).
    pub upload_ms: f64,
    /// Everything else: the kernels, and reading the output back.
    pub compute_ms: f64,
    /// Peak device memory held by buffers (GPU only).
    pub device_memory_bytes: Option<u64>,
    /// Bytes copied to the device (GPU only): f16 and bf16 linear weights
    /// go up as 16-bit, everything else as f32.
    pub upload_bytes: Option<u64>,
    /// "cpu" or the GPU adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (vulkan)".
    pub device: String,
    /// The run stage by stage ("embeddings", "block 1" .., "head", and on
    /// the GPU "read back"); together they are the run's wall time, so
    /// their `ms` sum to `read_ms + upload_ms + compute_ms`.
    pub stages: Vec<StageTime>,
}

/// The weights of `checkpoint` for `plan`, read lazily from `sources`.
pub fn weights_for<'a>(
    checkpoint: &Checkpoint,
    sources: Vec<&'a dyn ByteSource>,
    plan: &Plan,
    clock: &'a Clock,
) -> Result<CheckpointWeights<'a>> {
    Ok(CheckpointWeights::new(checkpoint, sources, clock)?
        .with_base_prefix(&plan.tower.base_prefix()))
}

/// Run the plan on the fast CPU backend, on every core natively: what users
/// run, and what a GPU run is compared with.
/// `threads`: `None` for every core; `progress` is told each stage.
pub fn run_cpu(
    plan: &Plan,
    weights: &CheckpointWeights,
    threads: Option<usize>,
    clock: &Clock,
    progress: &mut Progress<'_>,
) -> Result<Run> {
    let mut backend = FastCpu::new(threads)?;
    let threads = backend.thread_count();
    let device = format!(
        "cpu ({threads} thread{})",
        if threads == 1 { "" } else { "s" }
    );
    run_cpu_with(&mut backend, device, plan, weights, clock, progress)
}

/// Run the plan on the naive CPU reference, the oracle the tests compare the
/// fast backend and the GPU with.
pub fn run_reference(plan: &Plan, weights: &CheckpointWeights, clock: &Clock) -> Result<Run> {
    run_cpu_with(
        &mut Cpu,
        "cpu reference".into(),
        plan,
        weights,
        clock,
        &mut |_| {},
    )
}

fn run_cpu_with<B: Backend<Tensor = Mat>>(
    backend: &mut B,
    device: String,
    plan: &Plan,
    weights: &CheckpointWeights,
    clock: &Clock,
    progress: &mut Progress<'_>,
) -> Result<Run> {
    let read_ms = || weights.read_ms();
    let mut staged = Staged::new(
        backend,
        Device::Cpu,
        plan.layers_run,
        clock,
        &read_ms,
        progress,
    );
    let out = forward(
        &mut staged,
        weights,
        &plan.tower,
        &plan.input,
        plan.layers_run,
    )?;
    let stages = staged.finish();
    let (total, read) = stages::totals(&stages);
    Ok(Run {
        output: out.data,
        read_ms: read,
        upload_ms: 0.0,
        compute_ms: (total - read).max(0.0),
        device_memory_bytes: None,
        upload_bytes: None,
        device,
        stages,
    })
}

/// Plan, run on the fast CPU backend and judge: `verify --device cpu`.
/// `progress` is told each stage as it starts.
#[allow(clippy::too_many_arguments)]
pub fn verify_cpu(
    checkpoint: &Checkpoint,
    sources: Vec<&dyn ByteSource>,
    desc: &ModelDesc,
    input: Option<npy::Array>,
    layers: Option<usize>,
    threads: Option<usize>,
    clock: &Clock,
    progress: &mut Progress<'_>,
) -> Result<Verdict> {
    let plan = plan(desc, input, layers)?;
    let weights = weights_for(checkpoint, sources, &plan, clock)?;
    let run = run_cpu(&plan, &weights, threads, clock, progress)?;
    Ok(verdict(
        &plan,
        run,
        None,
        &weights.stats(),
        weights.bytes_read(),
    ))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// What the run was compared with ("cpu": the fast CPU backend).
    pub against: String,
    pub max_abs_err: f32,
    /// `max_abs_err / max |reference|`.
    pub max_rel_err: f32,
    pub tolerance: f32,
    pub within_tolerance: bool,
}

pub fn compare(run: &[f32], reference: &[f32]) -> Comparison {
    let mut max_abs_err = 0f32;
    let mut scale = 0f32;
    for (a, b) in run.iter().zip(reference) {
        let e = (a - b).abs();
        max_abs_err = if e.is_nan() {
            f32::INFINITY
        } else {
            max_abs_err.max(e)
        };
        scale = scale.max(b.abs());
    }
    if run.len() != reference.len() {
        max_abs_err = f32::INFINITY;
    }
    let max_rel_err = if scale > 0.0 {
        max_abs_err / scale
    } else {
        max_abs_err
    };
    Comparison {
        against: "cpu".into(),
        max_abs_err,
        max_rel_err,
        tolerance: GPU_TOLERANCE,
        within_tolerance: max_rel_err <= GPU_TOLERANCE,
    }
}

/// The judgement of one forward pass.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// True when the pass ran, the output is finite, has the shape the
    /// config says, and (on the GPU) matches the CPU run.
    pub passed: bool,
    pub model: String,
    pub device: String,
    /// `encode_image`, `encode_text`, `last_hidden_state`, `logits`.
    pub output_name: String,
    pub input: String,
    /// What ran: "embeddings + blocks 0..11 of 12 + ln_post and proj".
    pub ran: String,
    pub layers_run: usize,
    pub layers_total: usize,
    pub output_shape: Vec<usize>,
    pub shape_ok: bool,
    pub n_nan: u64,
    pub n_inf: u64,
    pub finite: bool,
    /// The first values of the output, for eyeballing.
    pub output_head: Vec<f32>,
    pub output_rms: f32,
    pub comparison: Option<Comparison>,
    pub run: Run,
    pub reference_run: Option<Run>,
    pub weights_read: usize,
    pub weight_bytes_read: u64,
    /// Tensors whose values look wrong (NaN/Inf, all zero, absurd norms).
    pub weight_trouble: Vec<String>,
    /// Towers or features that could not run, said rather than skipped.
    pub unsupported: Vec<String>,
    /// One line per reason the verdict failed.
    pub problems: Vec<String>,
    /// Things worth knowing that are not problems.
    pub notes: Vec<String>,
}

/// Judge a run. `stats` are the weight statistics of the tensors it read.
pub fn verdict(
    plan: &Plan,
    run: Run,
    reference: Option<Run>,
    stats: &[TensorStats],
    weight_bytes_read: u64,
) -> Verdict {
    let output = &run.output;
    let n_nan = output.iter().filter(|v| v.is_nan()).count() as u64;
    let n_inf = output.iter().filter(|v| v.is_infinite()).count() as u64;
    let expected: usize = plan.expected_shape.iter().product();
    let shape_ok = output.len() == expected;
    let output_shape = if shape_ok {
        plan.expected_shape.clone()
    } else {
        vec![output.len()]
    };
    let comparison = reference.as_ref().map(|r| compare(output, &r.output));
    let mut problems = Vec::new();
    if n_nan + n_inf > 0 {
        problems.push(format!("the output has {n_nan} NaN and {n_inf} Inf values"));
    }
    if !output.is_empty() && output.iter().all(|v| *v == 0.0) {
        problems.push("every output value is zero: the weights carry no signal".to_string());
    }
    if !shape_ok {
        problems.push(format!(
            "the output has {} values, the config says {:?}",
            output.len(),
            plan.expected_shape
        ));
    }
    if let Some(c) = comparison.as_ref().filter(|c| !c.within_tolerance) {
        problems.push(format!(
            "the GPU output differs from the CPU run: max relative error {:.2e} > {:.0e}",
            c.max_rel_err, c.tolerance
        ));
    }
    let rms = if output.is_empty() {
        0.0
    } else {
        (output.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / output.len() as f64).sqrt()
            as f32
    };
    let mut weight_trouble: Vec<String> = stats.iter().filter_map(TensorStats::trouble).collect();
    weight_trouble.dedup();
    let mut notes = Vec::new();
    let mut dtypes: Vec<&str> = stats
        .iter()
        .map(|s| s.dtype.as_str())
        .filter(|d| *d != "F32")
        .collect();
    dtypes.sort_unstable();
    dtypes.dedup();
    if !dtypes.is_empty() {
        let on_the_gpu = run.upload_bytes.is_some();
        let half: Vec<&str> = dtypes
            .iter()
            .copied()
            .filter(|d| matches!(*d, "F16" | "BF16"))
            .collect();
        let how = match (on_the_gpu, half.is_empty()) {
            (false, _) => String::new(),
            (true, true) => " and uploaded as f32".to_string(),
            (true, false) => format!(
                "; on the GPU the {} linear weights stayed 16-bit (half the upload and device memory, f32 accumulation), the rest went up as f32",
                half.join(" and ")
            ),
        };
        notes.push(format!(
            "{} weights were decoded to f32 for the pass{how}",
            dtypes.join(", "),
        ));
    }
    Verdict {
        passed: problems.is_empty(),
        model: plan.model.clone(),
        device: run.device.clone(),
        output_name: plan.tower.output_name().to_string(),
        input: plan.input.describe(),
        ran: plan.ran(),
        layers_run: plan.layers_run,
        layers_total: plan.layers_total,
        output_shape,
        shape_ok,
        n_nan,
        n_inf,
        finite: n_nan + n_inf == 0,
        output_head: output.iter().take(8).copied().collect(),
        output_rms: rms,
        comparison,
        reference_run: reference,
        run,
        weights_read: stats.len(),
        weight_bytes_read,
        weight_trouble,
        unsupported: plan.unsupported.clone(),
        problems,
        notes,
    }
}

/// The verdict as text for the terminal.
pub fn to_text(v: &Verdict) -> String {
    let mut out = format!(
        "{}: {} on {} -> {} {:?}\n  ran: {} ({})\n",
        if v.passed { "PASS" } else { "FAIL" },
        v.model,
        v.device,
        v.output_name,
        v.output_shape,
        v.ran,
        v.input
    );
    out.push_str(&format!(
        "  output: {} NaN, {} Inf, rms of finite values {:.4e}, first values {:?}\n",
        v.n_nan, v.n_inf, v.output_rms, v.output_head
    ));
    if let Some(c) = &v.comparison {
        out.push_str(&format!(
            "  vs {}: max abs error {:.3e}, max rel error {:.3e} (tolerance {:.0e})\n",
            c.against, c.max_abs_err, c.max_rel_err, c.tolerance
        ));
    }
    let timing = |r: &Run| {
        format!(
            "read {:.1} ms, upload {:.1} ms, compute {:.1} ms{}",
            r.read_ms,
            r.upload_ms,
            r.compute_ms,
            r.device_memory_bytes
                .map(|b| format!(", device memory {}", crate::human::human_bytes(b)))
                .unwrap_or_default()
                + &r.upload_bytes
                    .map(|b| format!(", uploaded {}", crate::human::human_bytes(b)))
                    .unwrap_or_default()
        )
    };
    let by_stage = |r: &Run| {
        if r.stages.is_empty() {
            String::new()
        } else {
            format!("    by stage: {}\n", stages::summary(&r.stages))
        }
    };
    out.push_str(&format!(
        "  time ({}): {}\n{}",
        v.run.device,
        timing(&v.run),
        by_stage(&v.run)
    ));
    if let Some(r) = &v.reference_run {
        out.push_str(&format!("  time (cpu): {}\n{}", timing(r), by_stage(r)));
    }
    out.push_str(&format!(
        "  weights: {} tensors, {} read\n",
        v.weights_read,
        crate::human::human_bytes(v.weight_bytes_read)
    ));
    for t in &v.weight_trouble {
        out.push_str(&format!("  weight warning: {t}\n"));
    }
    for u in &v.unsupported {
        out.push_str(&format!("  not run: {u}\n"));
    }
    for p in &v.problems {
        out.push_str(&format!("  problem: {p}\n"));
    }
    for n in &v.notes {
        out.push_str(&format!("  note: {n}\n"));
    }
    out
}

/// The output as `.npy` bytes in the model's shape.
pub fn output_npy(v: &Verdict) -> Vec<u8> {
    npy::write_f32(&v.output_shape, &v.run.output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::model::from_preset;

    #[test]
    fn plan_sends_images_to_the_image_tower_and_tokens_to_the_text_tower() {
        let desc = from_preset("clip_cn_vit-b-16").unwrap();
        let default = plan(&desc, None, Some(3)).unwrap();
        assert_eq!(default.tower.output_name(), "encode_image");
        assert_eq!((default.layers_run, default.layers_total), (3, 12));
        assert_eq!(
            default.ran(),
            "embeddings + blocks 0..2 of 12 + ln_post and proj"
        );
        let tokens = npy::Array::I64 {
            shape: vec![1, 4],
            data: vec![101, 5, 6, 102],
        };
        let text = plan(&desc, Some(tokens), Some(99)).unwrap();
        assert_eq!(
            (text.tower.output_name(), text.layers_run),
            ("encode_text", 12)
        );
        assert_eq!(text.expected_shape, vec![1, 512]);
        let wrong = npy::Array::F32 {
            shape: vec![1, 3, 4, 5],
            data: vec![0.0; 60],
        };
        assert!(plan(&desc, Some(wrong), None)
            .unwrap_err()
            .message
            .contains("[1, 3, R, R]"));
        let negative = npy::Array::I64 {
            shape: vec![1, 1],
            data: vec![-1],
        };
        assert!(plan(&desc, Some(negative), None)
            .unwrap_err()
            .message
            .contains("negative"));
        // RN50: no image tower runs, the text tower does, and the verdict
        // will say why.
        let rn50 = plan(&from_preset("clip_cn_rn50").unwrap(), None, None).unwrap();
        assert_eq!(rn50.tower.output_name(), "encode_text");
        assert!(rn50.unsupported[0].contains("RN50"));
    }

    #[test]
    fn comparison_is_relative_to_the_reference_scale_and_nan_fails_it() {
        let c = compare(&[1.0, 2.001], &[1.0, 2.0]);
        assert!((c.max_abs_err - 0.001).abs() < 1e-6);
        assert!((c.max_rel_err - 0.0005).abs() < 1e-6);
        assert!(c.within_tolerance);
        assert!(!compare(&[f32::NAN, 2.0], &[1.0, 2.0]).within_tolerance);
        assert!(!compare(&[1.0], &[1.0, 2.0]).within_tolerance);
    }
}
