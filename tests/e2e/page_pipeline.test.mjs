// A diffusers pipeline folder dropped on the page is checked component by
// component. The folders are written from tests/fixtures/pipeline/
// pipelines.json (made by make_pipelines.py, which recorded what
// DiffusionPipeline.from_pretrained did with each): the released SD 1.x UNet
// behind its 1.7 GB of fp16 weights, as a sparse file the page reads only
// the header of. A synthetic DataTransfer cannot hold a directory, so the
// drop carries FileSystemEntry look-alikes over File objects Playwright
// hands the page from disk.
// Run: node --test tests/e2e/ (after `cargo xtask build-web`).

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { ROOT, launch, startServer, tempDir } from "./lib.mjs";

const FIXTURE = JSON.parse(fs.readFileSync(path.join(ROOT, "tests/fixtures/pipeline/pipelines.json"), "utf8"));
const BYTES = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2 };

let server;
let browser;
let scratch;

before(async () => {
  server = await startServer();
  browser = await launch();
  scratch = tempDir();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

/** The case's folder on disk; returns [relative path, absolute path] pairs. */
function writeCase(name) {
  const cases = FIXTURE.cases;
  const which = cases.find((c) => c.name === name);
  const out = [];
  for (const [relative, stored] of Object.entries(which.files)) {
    const content = stored.same_as ? cases.find((c) => c.name === stored.same_as).files[relative] : stored;
    const file = path.join(scratch, name, relative);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (content.safetensors) {
      const header = content.metadata ? { __metadata__: content.metadata } : {};
      let offset = 0;
      for (const [tensor, shape, dtype] of content.safetensors) {
        const length = shape.reduce((a, d) => a * d, 1) * (BYTES[dtype] ?? 1);
        header[tensor] = { dtype, shape, data_offsets: [offset, offset + length] };
        offset += length;
      }
      const json = Buffer.from(JSON.stringify(header));
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(json.length));
      fs.writeFileSync(file, Buffer.concat([prefix, json]));
      fs.truncateSync(file, 8 + json.length + offset);
    } else {
      fs.writeFileSync(file, content.json ?? content.text);
    }
    out.push([relative, file]);
  }
  return out;
}

/** Drop the folder `name` (written by writeCase) and wait for the result. */
async function dropFolder(page, name) {
  const files = writeCase(name);
  await page.evaluate(() => {
    const input = Object.assign(document.createElement("input"), { type: "file", multiple: true, id: "pipeline-files", hidden: true });
    document.body.append(input);
  });
  await page.setInputFiles("#pipeline-files", files.map(([, file]) => file));
  const before = await page.evaluate(() => Number(document.querySelector("#result").dataset.run || 0));
  await page.evaluate(
    ({ name, paths }) => {
      const input = document.getElementById("pipeline-files");
      const files = [...input.files];
      input.remove();
      // A directory entry per folder level, file entries at the leaves.
      const directory = (dirName, prefix) => {
        const children = [];
        const seen = new Set();
        paths.forEach((relative, index) => {
          if (!relative.startsWith(prefix)) return;
          const rest = relative.slice(prefix.length);
          const [head, ...tail] = rest.split("/");
          if (!tail.length) children.push({ isFile: true, isDirectory: false, name: head, file: (ok) => ok(files[index]) });
          else if (!seen.has(head)) {
            seen.add(head);
            children.push(directory(head, `${prefix}${head}/`));
          }
        });
        const batches = [children, []];
        return { isFile: false, isDirectory: true, name: dirName, createReader: () => ({ readEntries: (ok) => ok(batches.shift() || []) }) };
      };
      const item = { kind: "file", webkitGetAsEntry: () => directory(name, ""), getAsFile: () => null };
      const event = new Event("drop", { bubbles: true, cancelable: true });
      Object.defineProperty(event, "dataTransfer", { value: { items: [item], files: [] } });
      document.getElementById("drop").dispatchEvent(event);
    },
    { name, paths: files.map(([relative]) => relative) }
  );
  await page.waitForFunction((n) => Number(document.querySelector("#result").dataset.run || 0) > n && document.querySelector("#result").dataset.state !== "running", before, { timeout: 60_000 });
  const rows = await page.$$eval("#components tr[data-component]", (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.component, { status: tr.dataset.status, text: tr.textContent }])));
  return { verdict: (await page.textContent("#verdict-text")).trim(), rows };
}

test("a diffusers pipeline folder is checked component by component, as from_pretrained loads it", { timeout: 180_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${server.origin}/`);
  await page.waitForFunction(() => document.querySelectorAll("#preset option").length > 2);

  // from_pretrained loads it and one step runs.
  const good = await dropFolder(page, "sd");
  assert.equal(good.verdict, "Loads: every component loads and fits the others");
  assert.equal(await page.textContent("#pipeline-class"), "StableDiffusionPipeline");
  for (const name of ["unet", "vae", "text_encoder"]) assert.equal(good.rows[name].status, "checked", name);
  assert.match(good.rows.unet.text, /^unetUNet2DConditionModelLoads · unet\/diffusion_pytorch_model\.safetensors · loader diffusers/);
  assert.equal(good.rows.scheduler.status, "no-weights");
  assert.equal(good.rows.safety_checker.status, "absent");

  // A UNet of another cross-attention width behind the config: diffusers
  // raises its own text, which the row carries.
  const swapped = await dropFolder(page, "sd-swapped-unet");
  const raised = FIXTURE.cases.find((c) => c.name === "sd-swapped-unet").error.replace(/^ValueError: /, "");
  assert.equal(swapped.verdict, "Won't load");
  assert.ok(swapped.rows.unet.text.includes(raised), swapped.rows.unet.text);
  assert.match(swapped.rows.unet.text, /Won't load: 0 missing, 0 unexpected, 32 size mismatches/);

  // Every component loads; the first call fails in the UNet.
  const wider = await dropFolder(page, "sd-wider-text-encoder");
  assert.equal(wider.verdict, "Loads, but the components do not fit each other");
  assert.match(await page.textContent("#disagreements"), /unet cross_attention_dim 32 but text_encoder hidden_size 64/);
  assert.ok(FIXTURE.cases.find((c) => c.name === "sd-wider-text-encoder").runtime_error.endsWith("x64 and 32x320)"));
  assert.match(await page.textContent("#disagreements"), /x64 and 32x320\)/);

  // SD3 saved without its T5: every component loads, and from_pretrained
  // refuses the pipeline unless text_encoder_3=None, tokenizer_3=None are
  // passed, which is what the page says to do.
  const withoutT5 = await dropFolder(page, "sd3-without-t5");
  assert.equal(withoutT5.verdict, "Won't load");
  assert.equal(withoutT5.rows.text_encoder_3.status, "fails");
  assert.equal(withoutT5.rows.transformer.status, "checked");
  assert.match(await page.textContent("#result"), /StableDiffusion3Pipeline\.from_pretrained\(folder, text_encoder_3=None, tokenizer_3=None\)/);
  fs.mkdirSync(path.join(ROOT, "tests/e2e/artifacts"), { recursive: true });
  await page.screenshot({ path: path.join(ROOT, "tests/e2e/artifacts/pipeline.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await context.close();
});
