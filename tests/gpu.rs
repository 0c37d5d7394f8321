//! Each GPU kernel against the CPU reference (`reference::ops` through the
//! `Cpu` backend) on odd shapes, none a multiple of a workgroup size, and
//! weights split across several buffers. Runs on whatever adapter wgpu
//! finds: Mesa's lavapipe (Debian mesa-vulkan-drivers) on a machine without
//! a GPU. Without an adapter each test prints why and passes, unless
//! CKPTCHECK_REQUIRE_GPU=1 (as in CI), where it fails.
#![cfg(feature = "gpu")]

use ckptcheck::dtype;
use ckptcheck::gpu::{Context, GpuBackend, GpuTensor, Kernel};
use ckptcheck::reference::{Activation, AttentionMask, Backend, Cpu, Heads, Layout, Mat, Stored};

fn context() -> Option<Context> {
    match pollster::block_on(Context::new()) {
        Ok(ctx) => Some(ctx),
        Err(reason) => {
            if std::env::var("CKPTCHECK_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("no GPU adapter but CKPTCHECK_REQUIRE_GPU=1: {reason}");
            }
            eprintln!("skipped: no GPU adapter: {reason}");
            None
        }
    }
}

fn clock() -> f64 {
    0.0
}

/// Deterministic values in [-scale, scale].
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Both backends' inputs.
struct Pair {
    cpu: Mat,
    gpu: GpuTensor,
}

fn pair(gpu: &mut GpuBackend, rows: usize, cols: usize, seed: u64, scale: f32) -> Pair {
    let data = values(rows * cols, seed, scale);
    Pair {
        cpu: Cpu.upload(data.clone(), rows, cols).expect("cpu"),
        gpu: gpu.upload(data, rows, cols).expect("gpu"),
    }
}

fn check(name: &str, gpu: &mut GpuBackend, got: GpuTensor, want: Mat, tolerance: f32) {
    assert_eq!((got.rows, got.cols), (want.rows, want.cols), "{name}: dims");
    let got = pollster::block_on(gpu.read(&got)).expect("read back");
    let scale = want.data.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(&want.data).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * scale,
            "{name}: element {i}: gpu {g}, cpu {w} (tolerance {tolerance} x {scale})"
        );
    }
}

#[test]
fn matmul_matches_in_both_layouts_with_bias_on_odd_shapes() {
    let Some(ctx) = context() else { return };
    let mut gpu = GpuBackend::new(&ctx, &clock);
    for (m, k, n) in [(7, 37, 19), (1, 5, 3), (33, 17, 65), (130, 70, 131)] {
        let x = pair(&mut gpu, m, k, 1, 1.0);
        let bias = pair(&mut gpu, 1, n, 2, 1.0);
        let w_out_in = pair(&mut gpu, n, k, 3, 0.5);
        let w_in_out = pair(&mut gpu, k, n, 4, 0.5);
        let got = gpu
            .linear(&x.gpu, &w_out_in.gpu, Layout::OutIn, Some(&bias.gpu))
            .expect("gpu");
        let want = Cpu
            .linear(&x.cpu, &w_out_in.cpu, Layout::OutIn, Some(&bias.cpu))
            .expect("cpu");
        check(
            &format!("linear out-in {m}x{k}x{n}"),
            &mut gpu,
            got,
            want,
            1e-5,
        );
        let got = gpu
            .linear(&x.gpu, &w_in_out.gpu, Layout::InOut, None)
            .expect("gpu");
        let want = Cpu
            .linear(&x.cpu, &w_in_out.cpu, Layout::InOut, None)
            .expect("cpu");
        check(
            &format!("linear in-out {m}x{k}x{n}"),
            &mut gpu,
            got,
            want,
            1e-5,
        );
    }
}

#[test]
fn weights_split_across_buffers_give_the_same_matmul_and_gather() {
    let Some(ctx) = context() else { return };
    // 7 rows of 37 floats per buffer: a [19, 37] weight becomes 3 chunks.
    ctx.max_binding_bytes.set(7 * 37 * 4);
    let mut gpu = GpuBackend::new(&ctx, &clock);
    let x = pair(&mut gpu, 5, 37, 1, 1.0);
    let w = pair(&mut gpu, 19, 37, 2, 0.5);
    assert_eq!(w.gpu.chunks.len(), 3);
    let bias = pair(&mut gpu, 1, 19, 3, 1.0);
    let got = gpu
        .linear(&x.gpu, &w.gpu, Layout::OutIn, Some(&bias.gpu))
        .expect("gpu");
    let want = Cpu
        .linear(&x.cpu, &w.cpu, Layout::OutIn, Some(&bias.cpu))
        .expect("cpu");
    check("split linear out-in", &mut gpu, got, want, 1e-5);
    // [37, 5] in-out weight: k is split, chunks accumulate.
    ctx.max_binding_bytes.set(6 * 5 * 4);
    let w = pair(&mut gpu, 37, 5, 4, 0.5);
    assert_eq!(w.gpu.chunks.len(), 7);
    let bias = pair(&mut gpu, 1, 5, 5, 1.0);
    ctx.max_binding_bytes.set(1 << 20);
    let got = gpu
        .linear(&x.gpu, &w.gpu, Layout::InOut, Some(&bias.gpu))
        .expect("gpu");
    let want = Cpu
        .linear(&x.cpu, &w.cpu, Layout::InOut, Some(&bias.cpu))
        .expect("cpu");
    check("split linear in-out", &mut gpu, got, want, 1e-5);
    ctx.max_binding_bytes.set(4 * 11 * 4);
    let table = pair(&mut gpu, 23, 11, 6, 1.0);
    assert_eq!(table.gpu.chunks.len(), 6);
    ctx.max_binding_bytes.set(1 << 20);
    let ids = [22, 0, 5, 4, 17, 3];
    let got = gpu.gather(&table.gpu, &ids).expect("gpu");
    let want = Cpu.gather(&table.cpu, &ids).expect("cpu");
    check("split gather", &mut gpu, got, want, 0.0);
}

/// `values` rounded to what `stored` holds exactly (f16: 11 significant
/// bits; bf16: 8), the way a checkpoint's 16-bit weights decode.
fn rounded(values: Vec<f32>, stored: Stored) -> Vec<f32> {
    values
        .into_iter()
        .map(|v| match stored {
            Stored::F16 => dtype::f16_to_f32(
                dtype::f16_bits_exact((v * 1024.0).round() / 1024.0).expect("exact"),
            ),
            Stored::Bf16 => dtype::bf16_to_f32((v.to_bits() >> 16) as u16),
            Stored::F32 => v,
        })
        .collect()
}

#[test]
fn half_weights_stay_half_on_the_gpu_and_give_what_their_f32_copy_gives() {
    let Some(ctx) = context() else { return };
    let mut gpu = GpuBackend::new(&ctx, &clock);
    let x = pair(&mut gpu, 9, 37, 1, 1.0);
    let bias = pair(&mut gpu, 1, 67, 2, 1.0);
    // Odd element counts (a padded last word), both layouts, both formats,
    // whole and split into chunks of 5 rows.
    for stored in [Stored::F16, Stored::Bf16] {
        for layout in [Layout::OutIn, Layout::InOut] {
            for binding_bytes in [1u64 << 20, 5 * 67 * 2] {
                let (rows, cols) = match layout {
                    Layout::OutIn => (67, 37),
                    Layout::InOut => (37, 67),
                };
                let mut data = rounded(values(rows * cols, 3, 0.5), stored);
                // The edges of the format: subnormal halves (the smallest,
                // the largest), the smallest normal one, zero, minus zero.
                if stored == Stored::F16 {
                    for (i, bits) in [0x0001u16, 0x83ff, 0x0400, 0x0000, 0x8000]
                        .into_iter()
                        .enumerate()
                    {
                        data[i * 7] = dtype::f16_to_f32(bits);
                    }
                }
                ctx.max_binding_bytes.set(binding_bytes);
                let upload_before = gpu.upload.bytes;
                let half = gpu
                    .upload_matrix(data.clone(), rows, cols, stored)
                    .expect("half");
                let half_bytes = gpu.upload.bytes - upload_before;
                // The f32 copy split at the same rows, so that split [in,
                // out] chunks accumulate in the same order.
                ctx.max_binding_bytes.set(binding_bytes * 2);
                let full = gpu.upload(data.clone(), rows, cols).expect("f32");
                assert_eq!(full.chunks.len(), half.chunks.len());
                let full_bytes = gpu.upload.bytes - upload_before - half_bytes;
                ctx.max_binding_bytes.set(1 << 20);
                let name = format!("{stored:?} {layout:?} chunks {}", half.chunks.len());
                assert_eq!(half.stored, stored, "{name}");
                assert!(
                    half_bytes * 2 <= full_bytes + 4 * half.chunks.len() as u64,
                    "{name}: {half_bytes} vs {full_bytes} bytes"
                );
                let layout_bias = if layout == Layout::OutIn {
                    Some(&bias.gpu)
                } else {
                    None
                };
                let got = gpu
                    .linear(&x.gpu, &half, layout, layout_bias)
                    .expect("half linear");
                let want = gpu
                    .linear(&x.gpu, &full, layout, layout_bias)
                    .expect("f32 linear");
                let want = pollster::block_on(gpu.read(&want)).expect("read");
                let got = pollster::block_on(gpu.read(&got)).expect("read");
                if let Some(i) = (0..got.len()).find(|i| got[*i].to_bits() != want[*i].to_bits()) {
                    panic!(
                        "{name}: element {i}: half weight {}, f32 weight {}: must be equal",
                        got[i], want[i]
                    );
                }
                let cpu_w = Cpu.upload(data, rows, cols).expect("cpu");
                let cpu_bias = if layout == Layout::OutIn {
                    Some(&bias.cpu)
                } else {
                    None
                };
                let cpu = Cpu.linear(&x.cpu, &cpu_w, layout, cpu_bias).expect("cpu");
                let scale = cpu.data.iter().fold(1f32, |m, v| m.max(v.abs()));
                for (g, c) in got.iter().zip(&cpu.data) {
                    assert!((g - c).abs() <= 1e-5 * scale, "{name}: gpu {g}, cpu {c}");
                }
            }
        }
    }
    // A value no half holds keeps the weight in f32.
    let mut data = rounded(values(6, 4, 0.5), Stored::F16);
    data[3] = 1.0 + f32::EPSILON;
    let kept = gpu.upload_matrix(data, 2, 3, Stored::F16).expect("f32");
    assert_eq!(kept.stored, Stored::F32);
    // Only linear reads halves: any other kernel refuses them.
    let half = gpu
        .upload_matrix(rounded(values(6, 5, 0.5), Stored::F16), 2, 3, Stored::F16)
        .expect("half");
    assert!(gpu.gather(&half, &[0]).is_err());
    assert!(gpu.add(&half, &half).is_err());
}

#[test]
fn norms_match_on_rows_wider_than_a_workgroup() {
    let Some(ctx) = context() else { return };
    let mut gpu = GpuBackend::new(&ctx, &clock);
    for (rows, cols) in [(5, 301), (3, 7), (2, 1000)] {
        let x = pair(&mut gpu, rows, cols, 1, 3.0);
        let gamma = pair(&mut gpu, 1, cols, 2, 1.0);
        let beta = pair(&mut gpu, 1, cols, 3, 1.0);
        let got = gpu
            .layer_norm(&x.gpu, &gamma.gpu, &beta.gpu, 1e-5)
            .expect("gpu");
        let want = Cpu
            .layer_norm(&x.cpu, &gamma.cpu, &beta.cpu, 1e-5)
            .expect("cpu");
        check(
            &format!("layer_norm {rows}x{cols}"),
            &mut gpu,
            got,
            want,
            1e-5,
        );
        let got = gpu.rms_norm(&x.gpu, &gamma.gpu, 1e-6).expect("gpu");
        let want = Cpu.rms_norm(&x.cpu, &gamma.cpu, 1e-6).expect("cpu");
        check(
            &format!("rms_norm {rows}x{cols}"),
            &mut gpu,
            got,
            want,
            1e-5,
        );
    }
}

#[test]
fn activations_swiglu_and_add_match_including_large_inputs() {
    let Some(ctx) = context() else { return };
    let mut gpu = GpuBackend::new(&ctx, &clock);
    let mut data = values(997, 1, 8.0);
    data.extend([-60.0, -30.0, 0.0, 30.0, 60.0]);
    let x = Pair {
        cpu: Cpu.upload(data.clone(), 1, data.len()).expect("cpu"),
        gpu: gpu.upload(data.clone(), 1, data.len()).expect("gpu"),
    };
    for act in [
        Activation::GeluErf,
        Activation::GeluTanh,
        Activation::QuickGelu,
        Activation::Silu,
    ] {
        let got = gpu.activation(act, &x.gpu).expect("gpu");
        let want = Cpu.activation(act, &x.cpu).expect("cpu");
        check(&format!("{act:?}"), &mut gpu, got, want, 2e-6);
    }
    let up = pair(&mut gpu, 1, data.len(), 2, 2.0);
    let got = gpu.swiglu(&x.gpu, &up.gpu).expect("gpu");
    let want = Cpu.swiglu(&x.cpu, &up.cpu).expect("cpu");
    check("swiglu", &mut gpu, got, want, 2e-6);
    let got = gpu.add(&x.gpu, &up.gpu).expect("gpu");
    let want = Cpu.add(&x.cpu, &up.cpu).expect("cpu");
    check("add", &mut gpu, got, want, 0.0);
}

#[test]
fn softmax_subtracts_the_row_max() {
    let Some(ctx) = context() else { return };
    let mut gpu = GpuBackend::new(&ctx, &clock);
    let mut data = values(3 * 301, 1, 5.0);
    data[0] = 1000.0;
    data[301] = -1000.0;
    let cpu = ckptcheck::reference::ops::softmax(&data, 301);
    let x = gpu.upload(data, 3, 301).expect("gpu");
    let got = gpu.softmax(&x).expect("softmax");
    check(
        "softmax",
        &mut gpu,
        got,
        Mat {
            rows: 3,
            cols: 301,
            data: cpu,
        },
        1e-6,
    );
}

#[test]
fn attention_matches_with_causal_padding_and_grouped_query_masks() {
    let Some(ctx) = context() else { return };
    let mut gpu = GpuBackend::new(&ctx, &clock);
    let cases = [
        (
            "causal gqa",
            7,
            7,
            6,
            2,
            5,
            AttentionMask {
                causal: true,
                key_valid: vec![],
            },
        ),
        (
            "padding",
            9,
            9,
            3,
            3,
            8,
            AttentionMask {
                causal: false,
                key_valid: vec![true, true, true, true, true, true, false, true, false],
            },
        ),
        ("cross", 5, 11, 2, 1, 3, AttentionMask::default()),
        // More keys than the fused kernel's 64 lanes and a head wider
        // than them.
        (
            "long rows, wide heads",
            70,
            130,
            4,
            2,
            80,
            AttentionMask {
                causal: true,
                key_valid: vec![],
            },
        ),
        // Past the fused kernel's 2048 keys: scores, softmax, weighted sum.
        (
            "keys past the fused limit",
            3,
            2100,
            2,
            2,
            8,
            AttentionMask {
                causal: false,
                key_valid: (0..2100).map(|j| j % 7 != 3).collect(),
            },
        ),
        // More (head, row) pairs than one dispatch dimension's 65535.
        (
            "rows past one dispatch dimension",
            22_000,
            3,
            3,
            1,
            4,
            AttentionMask::default(),
        ),
    ];
    for (name, t, s, n_heads, n_kv_heads, d, mask) in cases {
        let heads = Heads {
            n_heads,
            n_kv_heads,
            head_dim: d,
        };
        let q = pair(&mut gpu, t, n_heads * d, 1, 2.0);
        let k = pair(&mut gpu, s, n_kv_heads * d, 2, 2.0);
        let v = pair(&mut gpu, s, n_kv_heads * d, 3, 1.0);
        let got = gpu
            .attention(&q.gpu, &k.gpu, &v.gpu, heads, &mask)
            .expect("gpu");
        let want = Cpu
            .attention(&q.cpu, &k.cpu, &v.cpu, heads, &mask)
            .expect("cpu");
        check(name, &mut gpu, got, want, 1e-5);
    }
}

#[test]
fn rope_gather_im2col_slice_and_concat_match() {
    let Some(ctx) = context() else { return };
    let mut gpu = GpuBackend::new(&ctx, &clock);
    let x = pair(&mut gpu, 6, 3 * 10, 1, 2.0);
    let got = gpu.rope(&x.gpu, 3, 10, 10000.0).expect("gpu");
    let want = Cpu.rope(&x.cpu, 3, 10, 10000.0).expect("cpu");
    check("rope", &mut gpu, got, want, 1e-6);
    let table = pair(&mut gpu, 13, 7, 2, 1.0);
    let ids = [12, 0, 3, 3];
    let got = gpu.gather(&table.gpu, &ids).expect("gpu");
    let want = Cpu.gather(&table.cpu, &ids).expect("cpu");
    check("gather", &mut gpu, got, want, 0.0);
    let image = pair(&mut gpu, 3, 15 * 15, 3, 1.0);
    let got = gpu.im2col(&image.gpu, 3, 15, 5).expect("gpu");
    let want = Cpu.im2col(&image.cpu, 3, 15, 5).expect("cpu");
    check("im2col", &mut gpu, got, want, 0.0);
    let got = gpu.slice_cols(&x.gpu, 7, 11).expect("gpu");
    let want = Cpu.slice_cols(&x.cpu, 7, 11).expect("cpu");
    check("slice_cols", &mut gpu, got, want, 0.0);
    let row = pair(&mut gpu, 1, 30, 4, 1.0);
    let got = gpu.concat_rows(&row.gpu, &x.gpu).expect("gpu");
    let want = Cpu.concat_rows(&row.cpu, &x.cpu).expect("cpu");
    check("concat_rows", &mut gpu, got, want, 0.0);
}

#[test]
fn every_kernel_compiles_into_a_pipeline() {
    let Some(ctx) = context() else { return };
    for kernel in Kernel::ALL {
        ctx.pipeline(kernel);
    }
    assert_eq!(ctx.n_pipelines(), Kernel::ALL.len());
    ctx.take_errors().expect("no device errors");
}

#[test]
fn head_width_80_vit_and_gqa_decoder_graphs_match_with_made_up_weights() {
    use ckptcheck::reference::model::{self, default_image, default_tokens, forward, Input};
    use ckptcheck::weights::RandomWeights;
    let Some(ctx) = context() else { return };
    // ViT-H-14's head width (80) on a small image; a LLaMA-style decoder with
    // 6 query heads sharing 2 kv heads of width 80 (odd multiples of 16).
    let vision = r#"{"embed_dim": 24, "image_resolution": 28, "vision_layers": 2, "vision_width": 160, "vision_head_width": 80, "vision_patch_size": 14}"#;
    let text = r#"{"vocab_size": 50, "text_attention_probs_dropout_prob": 0.0, "text_hidden_act": "gelu", "text_hidden_dropout_prob": 0.0, "text_hidden_size": 40, "text_initializer_range": 0.02, "text_intermediate_size": 72, "text_max_position_embeddings": 16, "text_num_attention_heads": 5, "text_num_hidden_layers": 1, "text_type_vocab_size": 2}"#;
    let clip = model::from_config_texts(&[
        ("v.json".into(), vision.into()),
        ("t.json".into(), text.into()),
    ])
    .expect("clip");
    let llama = r#"{"model_type": "llama", "hidden_size": 480, "num_attention_heads": 6, "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 200, "vocab_size": 77}"#;
    let llama = model::from_config_texts(&[("config.json".into(), llama.into())]).expect("llama");
    let vit = clip.image_tower.expect("vit");
    let towers = [
        (
            vit.clone(),
            Input::Image {
                res: 28,
                data: default_image(28),
            },
        ),
        (
            clip.text_tower.clone().expect("bert"),
            Input::Tokens(default_tokens(clip.text_tower.as_ref().expect("bert"))),
        ),
        (
            llama.text_tower.clone().expect("llama"),
            Input::Tokens(default_tokens(llama.text_tower.as_ref().expect("llama"))),
        ),
    ];
    for (tower, input) in towers {
        let want = forward(&mut Cpu, &RandomWeights, &tower, &input, usize::MAX).expect("cpu");
        let mut gpu = GpuBackend::new(&ctx, &clock);
        let got = forward(&mut gpu, &RandomWeights, &tower, &input, usize::MAX).expect("gpu");
        check(tower.output_name(), &mut gpu, got, want, 1e-5);
    }
}

/// The GPU holds about one block at a time: each block's weights are
/// uploaded as the block runs and freed when it is done, so a model far
/// deeper than the device could hold runs layer by layer. Peak device
/// memory (what the verdict reports) is the same for 1 block and for 8.
#[test]
fn peak_device_memory_does_not_grow_with_depth() {
    use ckptcheck::reference::model::{self, default_image, forward, Input};
    use ckptcheck::weights::RandomWeights;
    let Some(ctx) = context() else { return };
    let vision = r#"{"embed_dim": 32, "image_resolution": 56, "vision_layers": 8, "vision_width": 128, "vision_head_width": 64, "vision_patch_size": 14}"#;
    let text = r#"{"vocab_size": 50, "text_attention_probs_dropout_prob": 0.0, "text_hidden_act": "gelu", "text_hidden_dropout_prob": 0.0, "text_hidden_size": 40, "text_initializer_range": 0.02, "text_intermediate_size": 72, "text_max_position_embeddings": 16, "text_num_attention_heads": 5, "text_num_hidden_layers": 1, "text_type_vocab_size": 2}"#;
    let clip = model::from_config_texts(&[
        ("v.json".into(), vision.into()),
        ("t.json".into(), text.into()),
    ])
    .expect("clip");
    let vit = clip.image_tower.expect("vit");
    let input = Input::Image {
        res: 56,
        data: default_image(56),
    };
    let peak = |layers: usize| {
        ctx.memory.peak.set(ctx.memory.live.get());
        let mut gpu = GpuBackend::new(&ctx, &clock);
        let out = forward(&mut gpu, &RandomWeights, &vit, &input, layers).expect("gpu");
        pollster::block_on(gpu.read(&out)).expect("read");
        ctx.memory.peak.get()
    };
    let (one, eight) = (peak(1), peak(8));
    // One block of this tower is 128 x 128 x 12 floats of weights (~786 KB).
    assert!(one > 700_000, "{one} bytes for one block");
    assert!(
        eight <= one + one / 10,
        "8 blocks peaked at {eight} bytes, 1 block at {one}"
    );
}
