// "Prove it loads" on the page: headless Chromium with --enable-unsafe-webgpu
// (a SwiftShader WebGPU adapter) checks a tiny Chinese-CLIP checkpoint made
// by cn_clip (tests/fixtures/models/make_model_fixtures.py) with its vision
// and text config JSONs dropped beside it, then runs the model through the
// "Verify on GPU" button and through the wasm CPU backend, stage by stage
// on the progress line, with the time per stage in the result. Then the
// demo's ViT-L-14-336 (real names and shapes, stride-0 weights) runs its
// full image tower on the wasm CPU path: once cancelled at its first
// block, once to the end, within the worker's memory.
// Run: node --test tests/e2e/ (after `cargo xtask build-web`).

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { ROOT, launch, startServer } from "./lib.mjs";

const MODEL_DIR = path.join(ROOT, "tests/fixtures/models");
const FILES = ["cn_clip_tiny.pt", "cn_clip_tiny.vision.json", "cn_clip_tiny.text.json"].map((f) => path.join(MODEL_DIR, f));
const L336 = "ViT-L-14-336@RoBERTa-wwm-ext-base-chinese";
/** The weights of ViT-L-14-336's image tower in f32: what a pass that held
 * them all would need (304 M parameters). */
const L336_VISUAL_F32_BYTES = 304e6 * 4;

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

/** From now on, keep every text the progress line shows in
 * `window.progressTexts`: each progress message sets it once, in its own
 * task, so the observer sees every one. */
async function recordProgress(page) {
  await page.evaluate(() => {
    window.progressTexts = [];
    const text = document.querySelector("#progress-text");
    new MutationObserver(() => window.progressTexts.push(text.textContent)).observe(text, { childList: true, characterData: true, subtree: true });
  });
}

/** Click a verify button and wait until the card settles; its state. */
async function verify(page, button) {
  await page.evaluate(() => (window.progressTexts = []));
  await page.click(button);
  await page.waitForFunction(() => document.querySelector("#verify").dataset.state !== "running", null, { timeout: 240_000 });
  return page.evaluate(() => document.querySelector("#verify").dataset.state);
}

/** The stages the progress line named, in order ("CPU: block 1 of 2"). */
async function stagesShown(page) {
  const texts = await page.evaluate(() => window.progressTexts);
  return texts.filter((t) => t.startsWith("Running the model · ") && /(GPU|CPU): /.test(t)).map((t) => t.replace("Running the model · ", ""));
}

/** The time-per-stage table: its first column, and its header. */
async function stageTable(page) {
  return page.evaluate(() => ({
    rows: [...document.querySelectorAll("#verify-stages tbody tr")].map((tr) => tr.firstElementChild.textContent),
    columns: [...document.querySelectorAll("#verify-stages thead th")].map((th) => th.textContent),
  }));
}

const tinyStages = (device) => [`${device}: embeddings`, `${device}: block 1 of 2`, `${device}: block 2 of 2`, `${device}: head`];

test("a checkpoint that loads is verified on WebGPU and on the CPU, stage by stage", { timeout: 240_000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${server.origin}/#loader=cn-clip`);
  await page.waitForFunction(() => document.querySelectorAll("#preset option").length > 2);
  // The config JSONs dropped with the checkpoint are the model (preset: infer).
  await page.setInputFiles("#file", FILES);
  assert.equal(await settled(page, "#verdict-text", ""), "Loads");
  assert.equal(await page.textContent("#checked-model"), "config JSON");
  await recordProgress(page);

  assert.equal(await verify(page, "#verify-gpu"), "done");
  const gpu = (await page.textContent("#verify-status")).trim();
  assert.match(gpu, /^✓ Runs: finite output of the expected shape · [^·]+ · encode_image \[1,16\] · GPU vs CPU max abs error/, gpu);
  const gpuText = await page.textContent("#verify-text");
  assert.match(gpuText, /PASS/, gpuText);
  assert.match(gpuText, /\n {4}by stage: embeddings /, gpuText);
  // Every stage of the GPU run, then of the CPU run it is compared with.
  assert.deepEqual(await stagesShown(page), [...tinyStages("GPU"), "GPU: read back", ...tinyStages("CPU")]);
  const gpuTable = await stageTable(page);
  assert.deepEqual(gpuTable.rows, ["embeddings", "block 1", "block 2", "head", "read back", "total"]);
  assert.deepEqual(gpuTable.columns, ["stage", "GPU", "of it reading weights", "CPU", "of it reading weights"]);

  assert.equal(await verify(page, "#verify-cpu"), "done");
  const cpu = (await page.textContent("#verify-status")).trim();
  assert.match(cpu, /^✓ Runs: finite output of the expected shape · [^·]+ · encode_image \[1,16\]$/, cpu);
  assert.deepEqual(await stagesShown(page), tinyStages("CPU"));
  assert.deepEqual((await stageTable(page)).rows, ["embeddings", "block 1", "block 2", "head", "total"]);
  assert.ok(await page.isHidden("#progress"), "the progress line is put away after the run");
  assert.deepEqual(errors, []);
  await page.close();
});

test("the demo's ViT-L-14-336 runs its whole image tower in the wasm: cancelled at its first block, then to the end", { timeout: 600_000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${server.origin}/`);
  await page.waitForFunction(() => document.querySelectorAll("#preset option").length > 2);
  // The demo is checked against the fine-tune defaults; "Check against it"
  // re-runs it against the preset it matches, where it loads.
  await page.click("#demo");
  await page.waitForSelector("#use-match", { timeout: 120_000 });
  await page.click("#use-match");
  await page.waitForFunction(() => document.querySelector("#verdict-text")?.textContent.trim() === "Loads" && document.querySelector("#verify"), null, { timeout: 120_000 });
  assert.equal(await page.inputValue("#preset"), L336);

  // Cancel as the first block starts: from inside the page, in the task
  // that shows it, while the worker has 23 blocks to go.
  await recordProgress(page);
  await page.evaluate(() => {
    const text = document.querySelector("#progress-text");
    const observer = new MutationObserver(() => {
      if (!/block \d+ of \d+/.test(text.textContent)) return;
      observer.disconnect();
      window.cancelledAt = text.textContent;
      document.getElementById("cancel").click();
    });
    observer.observe(text, { childList: true, characterData: true, subtree: true });
  });
  assert.equal(await verify(page, "#verify-cpu"), "cancelled");
  assert.equal(await page.evaluate(() => window.cancelledAt), "Running the model · CPU: block 1 of 24");
  assert.match((await page.textContent("#verify-status")).trim(), /^Cancelled · /);
  assert.ok(await page.isHidden("#progress"), "the progress line is put away after Cancel");

  // A fresh worker runs the same model to the end: every block in order on
  // the progress line, the time of each in the result.
  assert.equal(await verify(page, "#verify-cpu"), "done");
  const blocks = Array.from({ length: 24 }, (_, k) => `CPU: block ${k + 1} of 24`);
  assert.deepEqual(await stagesShown(page), ["CPU: embeddings", ...blocks, "CPU: head"]);
  const table = await stageTable(page);
  assert.deepEqual(table.rows, ["embeddings", ...blocks.map((b) => b.replace(/^CPU: (block \d+) of 24$/, "$1")), "head", "total"]);
  const text = await page.textContent("#verify-text");
  assert.match(text, /ran: embeddings \+ blocks 0\.\.23 of 24 \+ ln_post and proj/, text);
  assert.match(text, /by stage: embeddings [\d.]+ ms, 24 blocks [\d.]+ ms \(slowest block \d+ [\d.]+ ms\), head /, text);
  // The pass holds one block's weights at a time, never the tower's.
  const memory = Number(await page.getAttribute("#verify-output", "data-wasm-memory-bytes"));
  console.log(`ViT-L-14-336 on the wasm CPU: WebAssembly memory ${(memory / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(memory > 0 && memory < L336_VISUAL_F32_BYTES / 2, `the worker's memory reached ${memory} bytes`);
  assert.deepEqual(errors, []);
  await page.close();
});
