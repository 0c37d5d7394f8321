#!/usr/bin/env bash
# GPU benchmark on a machine with a real GPU (Vulkan, Metal or DX12 drivers
# installed). Prints matmul GFLOP/s (ViT-B-16, ViT-L-14-336 and LLaMA-7B
# block shapes, and 4096^3) and per-model forward time as GPU / fast-CPU
# ratios from one run. Full depth by default. Pass `--peak-gflops P`, the
# adapter's fp32 peak from its spec sheet (e.g. 67000 for an H100/H200 SXM),
# to print each matmul as a percentage of it (the goal: 25% at 4096^3), and
# `--layers K` to run fewer blocks:
#   bench/gpu_bench.sh --peak-gflops 67000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --features gpu --bench gpu_bench -- --full "$@"
