//! The forward pass on the GPU through wgpu: Vulkan, Metal or DX12 natively
//! (Mesa's lavapipe on a machine without a GPU), WebGPU in the browser.
//! `context` owns the device, queue and pipeline cache; `kernels/*.wgsl`
//! are the compute kernels, one file each with a header comment; `ops`
//! implements `reference::Backend` with them, so the model graphs in
//! `reference` run here unchanged; `verify` runs a plan and compares it with
//! the CPU reference. Compiled only with the `gpu` feature; nothing outside
//! this folder names a wgpu type.

pub mod context;
pub mod ops;
pub mod verify;

pub use context::{Context, Kernel};
pub use ops::{GpuBackend, GpuTensor};
