//! GPU vs CPU reference, from one run: matmul GFLOP/s and whole-model
//! forward time, printed as ratios. Models use made-up weights
//! (`weights::RandomWeights`) at their real widths, so no checkpoint is
//! needed; by default only the first blocks run, so the CPU side finishes
//! on a laptop. `bench/gpu_bench.sh` runs the full-depth version on a
//! machine with a real GPU.
//!
//!   cargo bench --features gpu --bench gpu_bench [-- --layers K] [-- --full]
//!
//! The GPU is whatever wgpu picks (lavapipe on a machine without one, where
//! the "GPU" is the same CPU cores and the ratio says little about GPUs).
//! `--hardware-only` (what `cargo xtask bench` passes) runs only on a
//! hardware adapter; with none, or a CPU one, it prints how to run this on a
//! machine with a GPU and exits 0.

use ckptcheck::gpu::{Context, GpuBackend};
use ckptcheck::reference::model::{self, default_image, default_tokens, forward, Input, Tower};
use ckptcheck::reference::{Backend, Cpu, Layout};
use ckptcheck::weights::RandomWeights;
use std::time::Instant;

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn matmul_row(ctx: &Context, m: usize, k: usize, n: usize) {
    let clock = || 0.0;
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let flops = 2.0 * (m * k * n) as f64;
    // CPU reference: one run.
    let (xc, wc) = (
        Cpu.upload(x.clone(), m, k).expect("x"),
        Cpu.upload(w.clone(), n, k).expect("w"),
    );
    let start = Instant::now();
    let _ = Cpu.linear(&xc, &wc, Layout::OutIn, None).expect("cpu");
    let cpu_ms = ms(start);
    // GPU: warm up (pipeline compile), then enough repeats for ~0.2 s.
    let mut gpu = GpuBackend::new(ctx, &clock);
    let (xg, wg) = (
        gpu.upload(x, m, k).expect("x"),
        gpu.upload(w, n, k).expect("w"),
    );
    let y = gpu.linear(&xg, &wg, Layout::OutIn, None).expect("gpu");
    pollster::block_on(gpu.read(&y)).expect("read");
    let mut repeats = 1;
    let gpu_ms = loop {
        let start = Instant::now();
        let mut last = None;
        for _ in 0..repeats {
            last = Some(gpu.linear(&xg, &wg, Layout::OutIn, None).expect("gpu"));
            gpu.flush();
        }
        pollster::block_on(gpu.read(last.as_ref().expect("ran"))).expect("read");
        let total = ms(start);
        if total > 200.0 || repeats >= 256 {
            break total / repeats as f64;
        }
        repeats *= 4;
    };
    println!(
        "matmul {m:>4}x{k:>5}x{n:>5}  cpu {:>8.2} GFLOP/s  gpu {:>8.2} GFLOP/s  gpu/cpu {:>7.1}x",
        flops / cpu_ms / 1e6,
        flops / gpu_ms / 1e6,
        cpu_ms / gpu_ms
    );
}

fn model_row(ctx: &Context, name: &str, tower: &Tower, layers: usize) {
    let input = match tower {
        Tower::Vit(c) => Input::Image {
            res: c.resolution,
            data: default_image(c.resolution),
        },
        other => Input::Tokens(default_tokens(other)),
    };
    let weights = RandomWeights;
    let start = Instant::now();
    let cpu = forward(&mut Cpu, &weights, tower, &input, layers).expect("cpu");
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
        .zip(&cpu.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = cpu.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
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
    let how = "on a machine with a GPU (Vulkan, Metal or DX12 drivers) run bench/gpu_bench.sh [--layers K]";
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
    // `Context::adapter` ends with the device type: "llvmpipe (...) (Vulkan, Cpu)".
    if hardware_only && ctx.adapter.ends_with(", Cpu)") {
        println!(
            "gpu_bench: not run, the only adapter is a CPU one ({}), which would time the CPU against itself; {how}",
            ctx.adapter
        );
        return;
    }
    println!("adapter: {}", ctx.adapter);
    println!("(CPU = ckptcheck's reference, single-threaded f64 accumulation; ratios > 1 mean the GPU is faster)");
    for (m, k, n) in [(64, 768, 768), (197, 768, 3072), (8, 2048, 5632)] {
        matmul_row(&ctx, m, k, n);
    }
    let clip = model::from_preset("ViT-B-16@RoBERTa-wwm-ext-base-chinese").expect("preset");
    model_row(
        &ctx,
        "cn_clip ViT-B-16 (encode_image)",
        clip.image_tower.as_ref().expect("vit"),
        layers,
    );
    model_row(
        &ctx,
        "cn_clip RoBERTa-base (encode_text)",
        clip.text_tower.as_ref().expect("bert"),
        layers,
    );
    let gpt2 = hf(
        r#"{"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12, "vocab_size": 50257}"#,
    );
    model_row(&ctx, "gpt2 (124M)", &gpt2, layers);
    let llama = hf(
        r#"{"model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 4, "num_hidden_layers": 22, "intermediate_size": 5632, "vocab_size": 32000, "rms_norm_eps": 1e-5}"#,
    );
    model_row(&ctx, "llama TinyLlama-1.1B shape (GQA)", &llama, layers);
}
