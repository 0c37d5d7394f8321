// "Prove it loads" on the page: headless Chromium with --enable-unsafe-webgpu
// (a SwiftShader WebGPU adapter) checks a tiny Chinese-CLIP checkpoint made
// by cn_clip (tests/fixtures/models/make_model_fixtures.py) with its vision
// and text config JSONs dropped beside it, then runs the model through the
// "Verify on GPU" button and through the wasm CPU reference.
// Run: node --test tests/e2e/ (after `cargo xtask build-web`).

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { ROOT, launch, startServer } from "./lib.mjs";

const MODEL_DIR = path.join(ROOT, "tests/fixtures/models");
const FILES = ["cn_clip_tiny.pt", "cn_clip_tiny.vision.json", "cn_clip_tiny.text.json"].map((f) => path.join(MODEL_DIR, f));

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch(["--enable-unsafe-webgpu"]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function settled(page, selector, before) {
  await page.waitForFunction(
    ({ selector, before }) => {
      const el = document.querySelector(selector);
      return el && el.textContent.trim() !== before;
    },
    { selector, before },
    { timeout: 120_000 }
  );
  return (await page.textContent(selector)).trim();
}

test("a checkpoint that loads is verified on WebGPU and on the CPU reference", { timeout: 240_000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${server.origin}/#loader=cn-clip`);
  await page.waitForFunction(() => document.querySelectorAll("#preset option").length > 2);
  // The config JSONs dropped with the checkpoint are the model (preset: infer).
  await page.setInputFiles("#file", FILES);
  assert.equal(await settled(page, "#verdict-text", ""), "Loads");
  assert.equal(await page.textContent("#checked-model"), "config JSON");

  await page.click("#verify-gpu");
  const gpu = await settled(page, "#verify-status", await page.textContent("#verify-status"));
  assert.match(gpu, /^✓ Runs: finite output of the expected shape · [^·]+ · encode_image \[1,16\] · GPU vs CPU max abs error/, gpu);
  const gpuText = await page.textContent("#verify-text");
  assert.match(gpuText, /PASS/, gpuText);

  await page.click("#verify-cpu");
  const cpu = await settled(page, "#verify-status", gpu);
  assert.match(cpu, /^✓ Runs: finite output of the expected shape · [^·]+ · encode_image \[1,16\]$/, cpu);
  assert.deepEqual(errors, []);
});
