//! ckptcheck answers, before any training run: will this checkpoint load into
//! this model, and if not, why and what to change?
//!
//! The crate is a pure core (no web or GPU types) with thin shells:
//! - `source`: random-access byte sources that count what they read;
//! - `format`: one reader per container, all producing a `Checkpoint`;
//! - `arch`: model families, config -> expected tensors, presets, inference;
//! - `check`: checkpoint vs expected tensors, PyTorch-exact, with the
//!   explanation and the fix;
//! - `scan`: every weight read once in fixed-size chunks: NaN, Inf,
//!   all-zero tensors, min/max/mean/std;
//! - `weights`: one tensor at a time from the file, decoded to f32, with
//!   statistics that flag NaN, all-zero or absurd weights;
//! - `reference`: the forward pass (ViT, BERT, GPT-2, LLaMA) written once
//!   against a `Backend`; the CPU backend is the oracle;
//! - `gpu` (feature `gpu`): the same graphs on wgpu, WGSL kernels;
//! - `verify`: plan a forward pass, run it, judge it; `npy`: its inputs and
//!   outputs;
//! - `open` (native only): what a name on the command line or in Python
//!   means (files, folders, URLs; presets, configs, model dumps);
//!   `remote` (feature `remote`, native only): files at URLs read by range;
//! - `web` (wasm32 only): the `#[wasm_bindgen]` facade the page's worker calls.
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod arch;
pub mod check;
pub mod checkpoint;
pub mod convert;
pub mod diagnosis;
pub mod dtype;
pub mod error;
pub mod fast_cpu;
pub mod format;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod human;
pub mod loader;
pub mod npy;
#[cfg(not(target_arch = "wasm32"))]
pub mod open;
pub mod pipeline;
pub mod reference;
#[cfg(all(feature = "remote", not(target_arch = "wasm32")))]
pub mod remote;
pub mod scan;
pub mod source;
pub mod state_dict;
pub mod stats;
pub mod verify;
pub mod weights;
#[cfg(not(target_arch = "wasm32"))]
pub mod write;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use checkpoint::{Checkpoint, TensorInfo};
pub use error::{Error, ErrorKind, Result};
