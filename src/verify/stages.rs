//! Progress and time per stage of one forward pass. `Staged` wraps any
//! `Backend` and counts the graphs' `end_block` calls (one after the
//! embeddings, one after each block), so it knows which stage runs:
//! "embeddings", "block 1" .. "block N", "head", then whatever the caller
//! adds ("read back" on the GPU). When a stage starts it tells a hook (the
//! page's progress bar); when it ends it records its wall time and the part
//! of it spent reading weights. Weights are read lazily inside the blocks
//! that use them, so reading is a share of each stage rather than a stage
//! of its own. This module neither runs nor stops anything: cancelling is
//! the caller's (the page terminates its worker).

use super::Device;
use crate::error::Result;
use crate::reference::{Activation, AttentionMask, Backend, Heads, Layout, Stored};
use crate::weights::Clock;
use serde::Serialize;

/// A stage as the progress hook is told when it starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// Which run: a GPU verify runs the CPU too, to compare.
    pub device: Device,
    /// "embeddings", "block 3" (the third block run, `resblocks.2` or
    /// `layer.2` in the checkpoint), "head", "read back".
    pub name: String,
    /// Blocks finished before this stage starts, of `blocks`.
    pub blocks_done: usize,
    /// Blocks this run runs (`--layers`, else all).
    pub blocks: usize,
}

impl Stage {
    /// "CPU: block 3 of 24", "GPU: head".
    pub fn text(&self) -> String {
        let device = match self.device {
            Device::Cpu => "CPU",
            Device::Gpu => "GPU",
        };
        if self.name.starts_with("block ") {
            format!("{device}: {} of {}", self.name, self.blocks)
        } else {
            format!("{device}: {}", self.name)
        }
    }
}

/// The progress hook: told each stage as it starts.
pub type Progress<'a> = dyn FnMut(&Stage) + 'a;

/// How long one stage took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTime {
    /// As `Stage::name`.
    pub name: String,
    /// Wall time, from the stage's start to the next one's.
    pub ms: f64,
    /// Of `ms`, reading, decoding and checking the stage's weights.
    pub read_ms: f64,
}

/// A backend whose stages are timed and reported; `forward` runs on it as
/// on the backend it wraps.
pub struct Staged<'a, B> {
    backend: &'a mut B,
    device: Device,
    blocks: usize,
    /// `end_block` calls so far: the embeddings' and one per block.
    ends: usize,
    clock: &'a Clock,
    /// Milliseconds of weight reading so far (`CheckpointWeights::read_ms`).
    read_ms: &'a dyn Fn() -> f64,
    hook: &'a mut Progress<'a>,
    /// The stage that runs: its name, start and reading before it.
    current: Option<(String, f64, f64)>,
    times: Vec<StageTime>,
}

impl<'a, B> Staged<'a, B> {
    /// Wrap `backend` for a run of `blocks` blocks and start the first
    /// stage, "embeddings".
    pub fn new(
        backend: &'a mut B,
        device: Device,
        blocks: usize,
        clock: &'a Clock,
        read_ms: &'a dyn Fn() -> f64,
        hook: &'a mut Progress<'a>,
    ) -> Self {
        let mut staged = Staged {
            backend,
            device,
            blocks,
            ends: 0,
            clock,
            read_ms,
            hook,
            current: None,
            times: Vec::new(),
        };
        staged.begin("embeddings");
        staged
    }

    /// End the stage that runs and start `name`: for the stages the graphs
    /// do not mark (the GPU's "read back").
    pub fn begin(&mut self, name: &str) {
        let now = (self.clock)();
        let read = (self.read_ms)();
        self.end_stage(now, read);
        let stage = Stage {
            device: self.device,
            name: name.to_string(),
            blocks_done: self.ends.saturating_sub(1).min(self.blocks),
            blocks: self.blocks,
        };
        (self.hook)(&stage);
        self.current = Some((stage.name, now, read));
    }

    fn end_stage(&mut self, now: f64, read: f64) {
        if let Some((name, start, read_before)) = self.current.take() {
            self.times.push(StageTime {
                name,
                ms: (now - start).max(0.0),
                read_ms: (read - read_before).max(0.0),
            });
        }
    }

    /// The wrapped backend, for what the trait lacks (reading a GPU buffer
    /// back).
    pub fn backend(&mut self) -> &mut B {
        self.backend
    }

    /// End the last stage: the time of every stage, in order.
    pub fn finish(mut self) -> Vec<StageTime> {
        let now = (self.clock)();
        let read = (self.read_ms)();
        self.end_stage(now, read);
        self.times
    }
}

/// Totals of a run's stages: `(wall ms, of it reading weights)`.
pub fn totals(stages: &[StageTime]) -> (f64, f64) {
    stages
        .iter()
        .fold((0.0, 0.0), |(ms, read), s| (ms + s.ms, read + s.read_ms))
}

/// The stages as one line: every stage when there are few blocks; else the
/// blocks' total and the slowest block (all of them are in the JSON).
pub fn summary(stages: &[StageTime]) -> String {
    const LIST_UP_TO: usize = 3;
    let is_block = |s: &&StageTime| s.name.starts_with("block ");
    let n_blocks = stages.iter().filter(is_block).count();
    let mut parts = Vec::new();
    let mut blocks_said = false;
    for stage in stages {
        if n_blocks <= LIST_UP_TO || !is_block(&stage) {
            parts.push(format!("{} {:.1} ms", stage.name, stage.ms));
        } else if !blocks_said {
            blocks_said = true;
            let blocks: Vec<&StageTime> = stages.iter().filter(is_block).collect();
            let total: f64 = blocks.iter().map(|s| s.ms).sum();
            let slowest = blocks
                .iter()
                .copied()
                .max_by(|a, b| a.ms.total_cmp(&b.ms))
                .map(|s| format!(" (slowest {} {:.1} ms)", s.name, s.ms))
                .unwrap_or_default();
            parts.push(format!("{n_blocks} blocks {total:.1} ms{slowest}"));
        }
    }
    parts.join(", ")
}

// Every method delegates, the defaulted ones too (`upload_matrix`,
// `end_block`): a trait default here would bypass the wrapped backend's own
// (the GPU keeps half-precision weights in half precision).
impl<B: Backend> Backend for Staged<'_, B> {
    type Tensor = B::Tensor;

    fn dims(&self, x: &Self::Tensor) -> (usize, usize) {
        self.backend.dims(x)
    }
    fn upload(&mut self, data: Vec<f32>, rows: usize, cols: usize) -> Result<Self::Tensor> {
        self.backend.upload(data, rows, cols)
    }
    fn upload_matrix(
        &mut self,
        data: Vec<f32>,
        rows: usize,
        cols: usize,
        stored: Stored,
    ) -> Result<Self::Tensor> {
        self.backend.upload_matrix(data, rows, cols, stored)
    }
    fn linear(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        layout: Layout,
        bias: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor> {
        self.backend.linear(x, w, layout, bias)
    }
    fn layer_norm(
        &mut self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor> {
        self.backend.layer_norm(x, gamma, beta, eps)
    }
    fn rms_norm(
        &mut self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor> {
        self.backend.rms_norm(x, gamma, eps)
    }
    fn linear_activation(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        layout: Layout,
        bias: Option<&Self::Tensor>,
        act: Activation,
    ) -> Result<Self::Tensor> {
        self.backend.linear_activation(x, w, layout, bias, act)
    }
    fn activation(&mut self, act: Activation, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.backend.activation(act, x)
    }
    fn swiglu(&mut self, gate: &Self::Tensor, up: &Self::Tensor) -> Result<Self::Tensor> {
        self.backend.swiglu(gate, up)
    }
    fn add(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.backend.add(a, b)
    }
    fn attention(
        &mut self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        heads: Heads,
        mask: &AttentionMask,
    ) -> Result<Self::Tensor> {
        self.backend.attention(q, k, v, heads, mask)
    }
    fn rope(
        &mut self,
        x: &Self::Tensor,
        n_heads: usize,
        head_dim: usize,
        theta: f32,
    ) -> Result<Self::Tensor> {
        self.backend.rope(x, n_heads, head_dim, theta)
    }
    fn gather(&mut self, table: &Self::Tensor, ids: &[u32]) -> Result<Self::Tensor> {
        self.backend.gather(table, ids)
    }
    fn im2col(
        &mut self,
        image: &Self::Tensor,
        channels: usize,
        res: usize,
        patch: usize,
    ) -> Result<Self::Tensor> {
        self.backend.im2col(image, channels, res, patch)
    }
    fn slice_cols(&mut self, x: &Self::Tensor, start: usize, len: usize) -> Result<Self::Tensor> {
        self.backend.slice_cols(x, start, len)
    }
    fn concat_rows(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.backend.concat_rows(a, b)
    }
    /// The embeddings or a block is done: the next block starts, or after
    /// the last one the head.
    fn end_block(&mut self) -> Result<()> {
        self.backend.end_block()?;
        self.ends += 1;
        let blocks_done = self.ends - 1;
        if blocks_done < self.blocks {
            self.begin(&format!("block {}", blocks_done + 1));
        } else if self
            .current
            .as_ref()
            .is_none_or(|(name, ..)| name != "head")
        {
            self.begin("head");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(name: &str, ms: f64) -> StageTime {
        StageTime {
            name: name.into(),
            ms,
            read_ms: 0.0,
        }
    }

    fn check_summary(stages: &[(&str, f64)], expected: &str) {
        let stages: Vec<StageTime> = stages.iter().map(|(n, ms)| time(n, *ms)).collect();
        assert_eq!(summary(&stages), expected);
    }

    #[test]
    fn a_few_blocks_are_listed_and_many_are_summed_with_the_slowest() {
        check_summary(
            &[("embeddings", 1.0), ("block 1", 2.0), ("head", 0.5)],
            "embeddings 1.0 ms, block 1 2.0 ms, head 0.5 ms",
        );
        check_summary(
            &[
                ("embeddings", 1.0),
                ("block 1", 2.0),
                ("block 2", 5.0),
                ("block 3", 3.0),
                ("block 4", 2.0),
                ("head", 0.5),
                ("read back", 4.0),
            ],
            "embeddings 1.0 ms, 4 blocks 12.0 ms (slowest block 2 5.0 ms), head 0.5 ms, read back 4.0 ms",
        );
        check_summary(&[], "");
    }

    #[test]
    fn stage_text_counts_blocks_and_names_the_device() {
        let stage = |device, name: &str| Stage {
            device,
            name: name.into(),
            blocks_done: 2,
            blocks: 24,
        };
        assert_eq!(stage(Device::Cpu, "block 3").text(), "CPU: block 3 of 24");
        assert_eq!(stage(Device::Gpu, "read back").text(), "GPU: read back");
    }
}
