//! The one GPU context: adapter info, device and queue (with the limits the
//! adapter offers, not WebGPU's defaults, so large models get the largest
//! bindings the hardware allows), the pipeline cache keyed by kernel, and
//! the device-memory counter the verdict reports. `Context::with_device`
//! takes a device made elsewhere, so tests and embedders inject their own.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Every compute kernel: a WGSL file and an entry point in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matmul,
    LayerNorm,
    RmsNorm,
    GeluErf,
    GeluTanh,
    QuickGelu,
    Silu,
    Swiglu,
    Add,
    Softmax,
    AttentionScores,
    AttentionWeightedSum,
    AttentionFused,
    Rope,
    Gather,
    Im2col,
    Copy2d,
}

impl Kernel {
    pub const ALL: [Kernel; 17] = [
        Kernel::Matmul,
        Kernel::LayerNorm,
        Kernel::RmsNorm,
        Kernel::GeluErf,
        Kernel::GeluTanh,
        Kernel::QuickGelu,
        Kernel::Silu,
        Kernel::Swiglu,
        Kernel::Add,
        Kernel::Softmax,
        Kernel::AttentionScores,
        Kernel::AttentionWeightedSum,
        Kernel::AttentionFused,
        Kernel::Rope,
        Kernel::Gather,
        Kernel::Im2col,
        Kernel::Copy2d,
    ];

    /// `(file name, source, entry point)`.
    pub fn source(self) -> (&'static str, &'static str, &'static str) {
        const MATMUL: &str = include_str!("kernels/matmul.wgsl");
        const LAYER_NORM: &str = include_str!("kernels/layer_norm.wgsl");
        const RMS_NORM: &str = include_str!("kernels/rms_norm.wgsl");
        const ACTIVATION: &str = include_str!("kernels/activation.wgsl");
        const SWIGLU: &str = include_str!("kernels/swiglu.wgsl");
        const ADD: &str = include_str!("kernels/add.wgsl");
        const SOFTMAX: &str = include_str!("kernels/softmax.wgsl");
        const ATTENTION: &str = include_str!("kernels/attention.wgsl");
        const ROPE: &str = include_str!("kernels/rope.wgsl");
        const GATHER: &str = include_str!("kernels/gather.wgsl");
        const IM2COL: &str = include_str!("kernels/im2col.wgsl");
        const COPY2D: &str = include_str!("kernels/copy2d.wgsl");
        match self {
            Kernel::Matmul => ("matmul.wgsl", MATMUL, "main"),
            Kernel::LayerNorm => ("layer_norm.wgsl", LAYER_NORM, "main"),
            Kernel::RmsNorm => ("rms_norm.wgsl", RMS_NORM, "main"),
            Kernel::GeluErf => ("activation.wgsl", ACTIVATION, "gelu_erf"),
            Kernel::GeluTanh => ("activation.wgsl", ACTIVATION, "gelu_tanh"),
            Kernel::QuickGelu => ("activation.wgsl", ACTIVATION, "quick_gelu"),
            Kernel::Silu => ("activation.wgsl", ACTIVATION, "silu"),
            Kernel::Swiglu => ("swiglu.wgsl", SWIGLU, "main"),
            Kernel::Add => ("add.wgsl", ADD, "main"),
            Kernel::Softmax => ("softmax.wgsl", SOFTMAX, "main"),
            Kernel::AttentionScores => ("attention.wgsl", ATTENTION, "scores"),
            Kernel::AttentionWeightedSum => ("attention.wgsl", ATTENTION, "weighted_sum"),
            Kernel::AttentionFused => ("attention.wgsl", ATTENTION, "fused"),
            Kernel::Rope => ("rope.wgsl", ROPE, "main"),
            Kernel::Gather => ("gather.wgsl", GATHER, "main"),
            Kernel::Im2col => ("im2col.wgsl", IM2COL, "main"),
            Kernel::Copy2d => ("copy2d.wgsl", COPY2D, "main"),
        }
    }
}

/// Bytes held in device buffers now and at the peak.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    pub live: Cell<u64>,
    pub peak: Cell<u64>,
}

impl MemoryCounter {
    pub fn allocate(&self, bytes: u64) {
        self.live.set(self.live.get() + bytes);
        self.peak.set(self.peak.get().max(self.live.get()));
    }
    pub fn free(&self, bytes: u64) {
        self.live.set(self.live.get().saturating_sub(bytes));
    }
}

pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub adapter: String,
    pub limits: wgpu::Limits,
    /// Largest buffer the forward pass binds: the smaller of the storage
    /// binding and buffer size limits. Weights above it are split by rows.
    /// Tests lower it to exercise the splitting on small tensors.
    pub max_binding_bytes: Cell<u64>,
    pipelines: RefCell<HashMap<Kernel, wgpu::ComputePipeline>>,
    modules: RefCell<HashMap<&'static str, wgpu::ShaderModule>>,
    pub memory: Rc<MemoryCounter>,
    /// Validation and out-of-memory errors the device reported, instead of
    /// wgpu's default of panicking.
    errors: Arc<Mutex<Vec<String>>>,
}

impl Context {
    /// The default adapter (high performance), with every limit it offers.
    /// Errors with a reason a person can act on when there is none.
    pub async fn new() -> Result<Context, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                format!("{e} (natively ckptcheck needs Vulkan, Metal or DX12: on Linux without a GPU install Mesa's lavapipe, Debian package mesa-vulkan-drivers; in a browser, WebGPU)")
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ckptcheck"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("the adapter {} refused a device: {e}", info.name))?;
        // Browsers hide the adapter's name (WebGPU's privacy rules).
        let label = if info.name.is_empty() {
            "WebGPU adapter"
        } else {
            info.name.as_str()
        };
        let name = format!("{label} ({:?}, {:?})", info.backend, info.device_type);
        Ok(Context::with_device(device, queue, name, limits))
    }

    /// A context over a device someone else made.
    pub fn with_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: String,
        limits: wgpu::Limits,
    ) -> Context {
        let max_binding_bytes = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            if let Ok(mut list) = sink.lock() {
                list.push(error.to_string());
            }
        }));
        Context {
            device,
            queue,
            adapter,
            limits,
            max_binding_bytes: Cell::new(max_binding_bytes),
            pipelines: RefCell::new(HashMap::new()),
            modules: RefCell::new(HashMap::new()),
            memory: Rc::new(MemoryCounter::default()),
            errors,
        }
    }

    /// Errors the device reported since the last call, as one error.
    pub fn take_errors(&self) -> crate::Result<()> {
        let list: Vec<String> = match self.errors.lock() {
            Ok(mut list) => std::mem::take(&mut *list),
            Err(_) => Vec::new(),
        };
        if list.is_empty() {
            return Ok(());
        }
        Err(crate::error::err(
            crate::ErrorKind::Io,
            format!("the GPU rejected the work: {}", list.join("; ")),
        ))
    }

    /// The compute pipeline of a kernel, compiled once per context.
    pub fn pipeline(&self, kernel: Kernel) -> wgpu::ComputePipeline {
        if let Some(pipeline) = self.pipelines.borrow().get(&kernel) {
            return pipeline.clone();
        }
        let (file, source, entry) = kernel.source();
        let module = self
            .modules
            .borrow_mut()
            .entry(file)
            .or_insert_with(|| {
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(file),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
            })
            .clone();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        self.pipelines.borrow_mut().insert(kernel, pipeline.clone());
        pipeline
    }

    /// How many kernels have a compiled pipeline.
    pub fn n_pipelines(&self) -> usize {
        self.pipelines.borrow().len()
    }
}
