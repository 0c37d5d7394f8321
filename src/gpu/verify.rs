//! `verify --device gpu`: run a `verify::Plan` on the GPU, read the output
//! back, run the same blocks on the CPU reference and judge both. Async
//! because reading a buffer back is async in the browser; natively the CLI
//! blocks on it with pollster.

use super::{Context, GpuBackend};
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::npy;
use crate::reference::model::{forward, ModelDesc};
use crate::source::ByteSource;
use crate::verify::{self, Plan, Run, Verdict};
use crate::weights::Clock;

/// Run a plan on the GPU; the run's timings and peak device memory.
pub async fn run_gpu(
    ctx: &Context,
    plan: &Plan,
    weights: &crate::weights::CheckpointWeights<'_>,
    clock: &Clock,
) -> Result<Run> {
    ctx.memory.peak.set(ctx.memory.live.get());
    let start = clock();
    let read_before = weights.read_ms();
    let mut backend = GpuBackend::new(ctx, clock);
    let out = forward(
        &mut backend,
        weights,
        &plan.tower,
        &plan.input,
        plan.layers_run,
    )?;
    let output = backend.read(&out).await?;
    drop(out);
    let total = clock() - start;
    let read_ms = weights.read_ms() - read_before;
    Ok(Run {
        output,
        read_ms,
        upload_ms: backend.upload.ms,
        compute_ms: (total - read_ms - backend.upload.ms).max(0.0),
        device_memory_bytes: Some(ctx.memory.peak.get()),
        device: ctx.adapter.clone(),
    })
}

/// Plan, run on the GPU, and (with `compare`) on the CPU reference, judge.
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
) -> Result<Verdict> {
    let plan = verify::plan(desc, input, layers)?;
    let weights = verify::weights_for(checkpoint, sources.clone(), &plan, clock)?;
    let run = run_gpu(ctx, &plan, &weights, clock).await?;
    let reference = if compare {
        let again = verify::weights_for(checkpoint, sources, &plan, clock)?;
        Some(verify::run_cpu(&plan, &again, None, clock)?)
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
