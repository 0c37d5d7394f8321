//! `verify --device gpu`: run a `verify::Plan` on the GPU, read the output
//! back, run the same blocks on the CPU reference and judge both. Async
//! because reading a buffer back is async in the browser; natively the CLI
//! blocks on it with pollster. Both runs go through `verify::Staged`, so the
//! progress hook hears the GPU's stages, then the CPU's.

use super::{Context, GpuBackend};
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::npy;
use crate::reference::model::{forward, ModelDesc};
use crate::source::ByteSource;
use crate::verify::{self, stages, Device, Plan, Progress, Run, Staged, Verdict};
use crate::weights::Clock;

/// Run a plan on the GPU; the run's timings and peak device memory.
/// A block's time is the host's: recording its kernels and uploading its
/// weights (natively also waiting for the block before it, see
/// `GpuBackend::flush`); the work the device still has to do when the head
/// is recorded shows in "read back".
pub async fn run_gpu(
    ctx: &Context,
    plan: &Plan,
    weights: &crate::weights::CheckpointWeights<'_>,
    clock: &Clock,
    progress: &mut Progress<'_>,
) -> Result<Run> {
    ctx.memory.peak.set(ctx.memory.live.get());
    let mut backend = GpuBackend::new(ctx, clock);
    let read_ms = || weights.read_ms();
    let mut staged = Staged::new(
        &mut backend,
        Device::Gpu,
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
    staged.begin("read back");
    let output = staged.backend().read(&out).await?;
    drop(out);
    let stages = staged.finish();
    let (total, read_ms) = stages::totals(&stages);
    let upload_ms = backend.upload.ms;
    Ok(Run {
        output,
        read_ms,
        upload_ms,
        compute_ms: (total - read_ms - upload_ms).max(0.0),
        device_memory_bytes: Some(ctx.memory.peak.get()),
        upload_bytes: Some(backend.upload.bytes),
        device: ctx.adapter.clone(),
        stages,
    })
}

/// Plan, run on the GPU, and (with `compare`) on the CPU reference, judge.
/// `progress` is told each stage of both runs as it starts.
#[allow(clippy::too_many_arguments)]
pub async fn verify_gpu(
    ctx: &Context,
    checkpoint: &Checkpoint,
    sources: Vec<&dyn ByteSource>,
    desc: &ModelDesc,
    input: Option<npy::Array>,
    layers: Option<usize>,
    clock: &Clock,
    compare: bool,
    progress: &mut Progress<'_>,
) -> Result<Verdict> {
    let plan = verify::plan(desc, input, layers)?;
    let weights = verify::weights_for(checkpoint, sources.clone(), &plan, clock)?;
    let run = run_gpu(ctx, &plan, &weights, clock, progress).await?;
    let reference = if compare {
        let again = verify::weights_for(checkpoint, sources, &plan, clock)?;
        Some(verify::run_cpu(&plan, &again, None, clock, progress)?)
    } else {
        None
    };
    Ok(verify::verdict(
        &plan,
        run,
        reference,
        &weights.stats(),
        weights.bytes_read(),
    ))
}
