// "Verify on GPU" in the browser: headless Chromium with
// --enable-unsafe-webgpu (a SwiftShader WebGPU adapter, no GPU needed) runs
// ckptcheck's verify in a module Web Worker on PyTorch fixtures
// (tests/fixtures/models) through WebGPU and through the wasm CPU backend,
// and the two must agree.
//
// Needs www/pkg built with the gpu feature (`cargo xtask test` builds it).
// Run: node --test tests/e2e/verify.test.mjs

import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const MIME = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

function startServer() {
  const server = http.createServer((request, response) => {
    const relative = decodeURIComponent(new URL(request.url, "http://127.0.0.1").pathname);
    const file = path.resolve(ROOT, `.${relative}`);
    if (!file.startsWith(ROOT + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      response.writeHead(404).end("not found");
      return;
    }
    response.writeHead(200, { "Content-Type": MIME[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(response);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ origin: `http://127.0.0.1:${server.address().port}`, stop: () => server.close() })),
  );
}

const maxAbsDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

test("verify runs in a worker on WebGPU and on the wasm CPU backend, and they agree", { timeout: 180_000 }, async (t) => {
  const pkg = path.join(ROOT, "www/pkg/ckptcheck.js");
  assert.ok(fs.existsSync(pkg), "www/pkg is missing: build it with `cargo xtask serve` or `cargo xtask test`");
  assert.ok(fs.readFileSync(pkg, "utf8").includes("verify_files"), "www/pkg was built without verify_files");
  const server = await startServer();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
  });
  t.after(async () => {
    await browser.close();
    server.stop();
  });
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (message) => logs.push(message.text()));
  await page.goto(`${server.origin}/tests/e2e/verify.html`);
  await page.waitForFunction(() => window.harnessReady === true);

  // Chinese-CLIP tiny: ViT image tower (head width 16) on its default input,
  // with the vision + text config JSON pair dropped beside the checkpoint.
  const files = ["cn_clip_tiny.pt", "cn_clip_tiny.vision.json", "cn_clip_tiny.text.json"];
  const cpu = await page.evaluate((files) => window.runVerify(files, "cpu"), files);
  assert.equal(cpu.type, "result", JSON.stringify(cpu));
  assert.equal(cpu.verdict.passed, true, JSON.stringify(cpu.verdict.problems));
  // The wasm CPU backend runs on the worker's one thread.
  assert.equal(cpu.verdict.device, "cpu (1 thread)");
  assert.deepEqual(cpu.verdict.output_shape, [1, 16]);
  // The progress callback hears every stage once, in order, with the blocks
  // done and the blocks of the run; the verdict times the same stages.
  assert.deepEqual(
    cpu.stages.map((s) => [s.text, s.done, s.total]),
    [
      ["CPU: embeddings", 0, 2],
      ["CPU: block 1 of 2", 0, 2],
      ["CPU: block 2 of 2", 1, 2],
      ["CPU: head", 2, 2],
    ]
  );
  assert.deepEqual(
    cpu.verdict.run.stages.map((s) => s.name),
    ["embeddings", "block 1", "block 2", "head"]
  );

  const gpu = await page.evaluate((files) => window.runVerify(files, "gpu"), files);
  assert.equal(gpu.type, "result", `WebGPU verify failed: ${JSON.stringify(gpu)}\n${logs.join("\n")}`);
  const verdict = gpu.verdict;
  assert.equal(verdict.passed, true, JSON.stringify(verdict.problems));
  assert.ok(!verdict.device.startsWith("cpu"), verdict.device);
  assert.equal(verdict.comparison.against, "cpu");
  assert.ok(verdict.comparison.max_rel_err < 1e-5, JSON.stringify(verdict.comparison));
  // The GPU's first values equal the wasm CPU run's.
  assert.ok(maxAbsDiff(verdict.output_head, cpu.verdict.output_head) < 1e-4);
  console.log(`webgpu adapter: ${verdict.device}; gpu vs cpu max rel error ${verdict.comparison.max_rel_err}`);

  // A decoder with grouped-query attention and RoPE, first block only. (The
  // CPU reference itself is checked against PyTorch in tests/models.rs.)
  const llama = await page.evaluate(() => window.runVerify(["hf_llama/model.safetensors", "hf_llama/config.json"], "gpu", "", 1));
  assert.equal(llama.type, "result", JSON.stringify(llama));
  assert.equal(llama.verdict.passed, true, JSON.stringify(llama.verdict.problems));
  assert.equal(llama.verdict.layers_run, 1);
  // The GPU's stages, then those of the CPU run it is compared with.
  assert.deepEqual(
    llama.stages.map((s) => s.text),
    ["GPU: embeddings", "GPU: block 1 of 1", "GPU: head", "GPU: read back", "CPU: embeddings", "CPU: block 1 of 1", "CPU: head"]
  );
  assert.ok(llama.verdict.comparison.max_rel_err < 1e-5);
});
