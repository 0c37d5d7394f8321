#!/usr/bin/env bash
# GPU vs CPU-reference benchmark on a machine with a real GPU (Vulkan, Metal
# or DX12 drivers installed). Prints matmul GFLOP/s and per-model forward
# time as GPU/CPU ratios from one run. Full depth by default; pass
# `--layers K` to shorten the CPU side, which is slow on purpose (it is the
# simple reference).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --features gpu --bench gpu_bench -- "${@:---full}"
