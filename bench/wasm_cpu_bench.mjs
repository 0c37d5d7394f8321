// The wasm CPU forward pass in headless Chromium against the native one on
// one thread, same checkpoint, same default input, in one run: the verify
// harness (tests/e2e/verify.html, a module Web Worker as the page uses)
// runs `verify_files(..., "cpu")` on the Chinese-CLIP ViT-B-16 checkpoint
// that bench/cpu_verify_bench.py makes, and the native CLI runs
// `verify --device cpu --threads 1` on the same file. Each side reports
// `run.compute_ms` (the forward only; reading the file excluded); median of
// 3 after a warm-up. Goal (issue 13): wasm within 3x of native.
//
// Then the GPU side in the same browser: `verify_files(..., "gpu")` runs the
// forward on WebGPU (SwiftShader, Chromium's CPU adapter, with
// --enable-unsafe-webgpu) and the wasm CPU run it is compared with, so one
// verdict gives both `compute_ms`: WebGPU / wasm CPU (median of 3 after a
// warm-up).
//
// Run from the repository root after `cargo xtask build-web`,
// `cargo build --release` and bench/cpu_verify_bench.py (which calls this):
//   node bench/wasm_cpu_bench.mjs

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import fs from "node:fs";
import path from "node:path";
import { ROOT, launch, startServer } from "../tests/e2e/lib.mjs";

const RUNS = 3;
const CHECKPOINT = "bench/out/cpu_verify/cn_clip_vit-b-16.pt";
const PRESET = "ViT-B-16@RoBERTa-wwm-ext-base-chinese";
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

// Asynchronous, so that the page's server (in this process) keeps serving.
async function nativeComputeMs() {
  const binary = path.join(ROOT, "target/release/ckptcheck");
  const { stdout: out } = await promisify(execFile)(binary, ["verify", CHECKPOINT, "--config", PRESET, "--device", "cpu", "--threads", "1", "--json"], { cwd: ROOT, maxBuffer: 1 << 26 });
  const verdict = JSON.parse(out.toString());
  if (!verdict.passed) throw new Error(`native verify failed: ${verdict.problems}`);
  return verdict.run.compute_ms;
}

async function main() {
  if (!fs.existsSync(path.join(ROOT, CHECKPOINT))) throw new Error(`${CHECKPOINT} is missing: run bench/cpu_verify_bench.py first`);
  const server = await startServer();
  const browser = await launch(["--enable-unsafe-webgpu"]);
  try {
    // The harness fetches paths under tests/fixtures/models/; the
    // checkpoint lies three folders up from there.
    const relative = `../../../${CHECKPOINT}`;
    const wasm = [];
    const native = [];
    let device = "";
    for (let run = 0; run <= RUNS; run++) {
      // A fresh page each run: the 750 MB Blob of the last one is freed
      // (Chromium's blob storage refuses a third one otherwise).
      const page = await browser.newPage();
      await page.goto(`${server.origin}/tests/e2e/verify.html`);
      await page.waitForFunction(() => window.harnessReady === true);
      const result = await page.evaluate(([file, preset]) => window.runVerify([file], "cpu", preset), [relative, PRESET]);
      if (result.type !== "result" || !result.verdict.passed) throw new Error(`wasm verify failed: ${JSON.stringify(result).slice(0, 500)}`);
      await page.close();
      device = result.verdict.run.device;
      const nativeMs = await nativeComputeMs();
      if (run > 0) {
        wasm.push(result.verdict.run.compute_ms);
        native.push(nativeMs);
      }
    }
    const wasmMs = median(wasm);
    const nativeMs = median(native);
    console.log(`ViT-B-16 encode_image (224x224) on the CPU: wasm in Chromium ${wasmMs.toFixed(1)} ms (${device}), native ${nativeMs.toFixed(1)} ms (1 thread); wasm / native ${(wasmMs / nativeMs).toFixed(2)}x (goal <= 3x)`);
    const gpu = [];
    const cpu = [];
    let adapter = "";
    for (let run = 0; run <= RUNS; run++) {
      const page = await browser.newPage();
      await page.goto(`${server.origin}/tests/e2e/verify.html`);
      await page.waitForFunction(() => window.harnessReady === true);
      const result = await page.evaluate(([file, preset]) => window.runVerify([file], "gpu", preset), [relative, PRESET]);
      await page.close();
      if (result.type !== "result" || !result.verdict.passed) throw new Error(`WebGPU verify failed: ${JSON.stringify(result).slice(0, 500)}`);
      adapter = result.verdict.run.device;
      if (run > 0) {
        gpu.push(result.verdict.run.compute_ms + result.verdict.run.upload_ms);
        cpu.push(result.verdict.reference_run.compute_ms);
      }
    }
    const gpuMs = median(gpu);
    const cpuMs = median(cpu);
    console.log(`ViT-B-16 encode_image (224x224) in Chromium: WebGPU ${gpuMs.toFixed(1)} ms (${adapter}; kernels and upload), wasm CPU ${cpuMs.toFixed(1)} ms; WebGPU / wasm CPU speed ${(cpuMs / gpuMs).toFixed(2)}x`);
  } finally {
    await browser.close();
    await server.stop();
  }
}

await main();
