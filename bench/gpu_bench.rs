//! GPU vs the fast CPU backend (what `verify --device cpu` runs), from one
//! run: matmul GFLOP/s on the shapes of ViT-B-16, ViT-L-14-336 and LLaMA-7B
//! blocks (and 4096 x 4096 x 4096 with `--full`), and whole-model forward
//! time, printed as ratios. With `--peak-gflops P` (the adapter's fp32 peak
//! from its spec sheet; `bench/gpu_bench.sh` passes it) each matmul is also
//! printed as a percentage of that peak, the issue's goal being 25% at
//! 4096^2. Models use made-up weights (`weights::RandomWeights`) at their
//! real widths, so no checkpoint is needed; by default only the first two
//! blocks run; `--full` runs every block.
//!
//!   cargo bench --features gpu --bench gpu_bench [-- --layers K] [-- --full] [-- --peak-gflops P]
//!
//! The GPU is whatever wgpu picks (lavapipe on a machine without one, where
//! the "GPU" is the same CPU cores: the ratio then compares two ways of
//! using them). `--hardware-only` (what `cargo xtask bench gpu` passes) runs
//! only on a hardware adapter; with none, or a CPU one, it prints how to run
//! this on a machine with a GPU and exits 0.

use ckptcheck::fast_cpu::FastCpu;
use ckptcheck::gpu::{Context, GpuBackend};
use ckptcheck::reference::model::{self, default_image, default_tokens, forward, Input, Tower};
use ckptcheck::reference::{Backend, Layout};
use ckptcheck::weights::RandomWeights;
use std::time::Instant;

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Median of `runs` timings of `f` after one warm-up, in ms.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            ms(start)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn matmul_row(
    ctx: &Context,
    cpu: &mut FastCpu,
    name: &str,
    (m, k, n): (usize, usize, usize),
    peak_gflops: Option<f64>,
) {
    let clock = || 0.0;
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let gflop = 2.0 * (m * k * n) as f64 / 1e9;
    let (xc, wc) = (
        cpu.upload(x.clone(), m, k).expect("x"),
        cpu.upload(w.clone(), n, k).expect("w"),
    );
    let want = cpu.linear(&xc, &wc, Layout::OutIn, None).expect("cpu");
    let runs = if gflop > 20.0 { 3 } else { 7 };
    let cpu_ms = median_ms(runs, || {
        let _ = cpu.linear(&xc, &wc, Layout::OutIn, None).expect("cpu");
    });
    let mut gpu = GpuBackend::new(ctx, &clock);
    let (xg, wg) = (
        gpu.upload(x, m, k).expect("x"),
        gpu.upload(w, n, k).expect("w"),
    );
    // One product per submission, waited for: the time a forward's matmul
    // takes, pipeline compiled in the warm-up.
    let mut got = Vec::new();
    let gpu_ms = median_ms(runs, || {
        let y = gpu.linear(&xg, &wg, Layout::OutIn, None).expect("gpu");
        got = pollster::block_on(gpu.read(&y)).expect("read");
    });
    let scale = want.data.iter().fold(1e-30f32, |s, v| s.max(v.abs()));
    let err = got
        .iter()
        .zip(&want.data)
        .fold(0f32, |e, (a, b)| e.max((a - b).abs()))
        / scale;
    let gpu_rate = gflop / gpu_ms * 1e3;
    let of_peak = peak_gflops.map_or(String::new(), |p| {
        format!("  {:>5.1}% of peak", 100.0 * gpu_rate / p)
    });
    println!(
        "matmul {name:<22} {m:>4}x{k:>5}x{n:>5}  cpu {:>7.1} GFLOP/s  gpu {gpu_rate:>7.1} GFLOP/s  gpu/cpu {:>5.2}x{of_peak}  max rel err {err:.1e}",
        gflop / cpu_ms * 1e3,
        cpu_ms / gpu_ms,
    );
}

fn model_row(ctx: &Context, cpu: &mut FastCpu, name: &str, tower: &Tower, layers: usize) {
    let input = match tower {
        Tower::Vit(c) => Input::Image {
            res: c.resolution,
            data: default_image(c.resolution),
        },
        other => Input::Tokens(default_tokens(other)),
    };
    let weights = RandomWeights;
    forward(cpu, &weights, tower, &input, layers).expect("cpu"); // warm-up
    let start = Instant::now();
    let want = forward(cpu, &weights, tower, &input, layers).expect("cpu");
    let cpu_ms = ms(start);
    let clock = || 0.0;
    let run = |ctx: &Context| {
        let start = Instant::now();
        let mut gpu = GpuBackend::new(ctx, &clock);
        let out = forward(&mut gpu, &weights, tower, &input, layers).expect("gpu");
        let data = pollster::block_on(gpu.read(&out)).expect("read");
        (ms(start), data)
    };
    run(ctx); // warm-up: compiles the pipelines
    let (gpu_ms, out) = run(ctx);
    let err = out
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = want
        .data
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-30);
    println!(
        "{name:<34} {layers:>2}/{:<2} blocks  cpu {cpu_ms:>9.1} ms  gpu {gpu_ms:>8.1} ms  gpu/cpu {:>6.1}x  max rel err {:.1e}",
        tower.layers(),
        cpu_ms / gpu_ms,
        err / scale
    );
}

fn hf(text: &str) -> Tower {
    model::from_config_texts(&[("config.json".into(), text.into())])
        .expect("config")
        .text_tower
        .expect("tower")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--full");
    let layers = args
        .iter()
        .position(|a| a == "--layers")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { usize::MAX } else { 2 });
    let hardware_only = args.iter().any(|a| a == "--hardware-only");
    let peak_gflops: Option<f64> = args
        .iter()
        .position(|a| a == "--peak-gflops")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let how = "on a machine with a GPU (Vulkan, Metal or DX12 drivers) run bench/gpu_bench.sh [--peak-gflops P] [--layers K]";
    let ctx = match pollster::block_on(Context::new()) {
        Ok(ctx) => ctx,
        Err(reason) if hardware_only => {
            println!("gpu_bench: not run, no GPU adapter here ({reason}); {how}");
            return;
        }
        Err(reason) => {
            eprintln!("gpu_bench: no GPU adapter: {reason}");
            std::process::exit(1);
        }
    };
    let mut cpu = FastCpu::new(None).expect("threads");
    println!("adapter: {}", ctx.adapter);
    // `Context::adapter` ends with the device type: "llvmpipe (...) (Vulkan, Cpu)".
    if ctx.adapter.ends_with(", Cpu)") {
        println!(
            "(a CPU adapter: the GPU kernels run on the same cores as the CPU backend; {how})"
        );
    }
    println!(
        "(CPU = ckptcheck's fast CPU backend on {} threads; ratios > 1 mean the GPU is faster; median of 3-7 after a warm-up)",
        cpu.thread_count()
    );
    let mut shapes = vec![
        ("ViT-B-16 qkv", (197, 768, 2304)),
        ("ViT-B-16 mlp up", (197, 768, 3072)),
        ("ViT-B-16 mlp down", (197, 3072, 768)),
        ("ViT-L-14-336 qkv", (577, 1024, 3072)),
        ("ViT-L-14-336 mlp up", (577, 1024, 4096)),
        ("ViT-L-14-336 mlp down", (577, 4096, 1024)),
        ("LLaMA-7B q/k/v/o", (128, 4096, 4096)),
        ("LLaMA-7B gate/up", (128, 4096, 11008)),
        ("LLaMA-7B down", (128, 11008, 4096)),
    ];
    if full || peak_gflops.is_some() {
        shapes.push(("square 4096", (4096, 4096, 4096)));
    }
    for (name, shape) in shapes {
        matmul_row(&ctx, &mut cpu, name, shape, peak_gflops);
    }
    let clip = model::from_preset("ViT-B-16@RoBERTa-wwm-ext-base-chinese").expect("preset");
    let clip_l = model::from_preset("ViT-L-14-336@RoBERTa-wwm-ext-base-chinese").expect("preset");
    model_row(
        &ctx,
        &mut cpu,
        "cn_clip ViT-B-16 (encode_image)",
        clip.image_tower.as_ref().expect("vit"),
        layers,
    );
    model_row(
        &ctx,
        &mut cpu,
        "cn_clip ViT-L-14-336 (encode_image)",
        clip_l.image_tower.as_ref().expect("vit"),
        layers,
    );
    model_row(
        &ctx,
        &mut cpu,
        "cn_clip RoBERTa-base (encode_text)",
        clip.text_tower.as_ref().expect("bert"),
        layers,
    );
    let gpt2 = hf(
        r#"{"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12, "vocab_size": 50257}"#,
    );
    model_row(&ctx, &mut cpu, "gpt2 (124M)", &gpt2, layers);
    let llama = hf(
        r#"{"model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 4, "num_hidden_layers": 22, "intermediate_size": 5632, "vocab_size": 32000, "rms_norm_eps": 1e-5}"#,
    );
    model_row(
        &ctx,
        &mut cpu,
        "llama TinyLlama-1.1B shape (GQA)",
        &llama,
        layers,
    );
}
