// End-to-end tests of the page and the widget in headless Chromium, through
// playwright-core and node's built-in runner: `cd tests/e2e && node --test`
// (needs the wasm built into www/pkg and the demo in www/demo, which
// `cargo xtask build-web` makes). Every test asserts values the wasm
// computed, read from the page, so none can pass on an empty page.
// Screenshots go to tests/e2e/artifacts/ and docs/screenshot.png.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { ROOT, launch, makeSparseSafetensors, startServer, tempDir } from "./lib.mjs";

const ARTIFACTS = path.join(ROOT, "tests/e2e/artifacts");
const CN_CLIP_L336 = "tests/fixtures/cn_clip/clip_cn_vit-l-14-336.shapes.pt";
const EVIL = "tests/fixtures/formats/evil_os_system.pt";
const B16 = "ViT-B-16@RoBERTa-wwm-ext-base-chinese";
const L336 = "ViT-L-14-336@RoBERTa-wwm-ext-base-chinese";
const H14 = "ViT-H-14@RoBERTa-wwm-ext-large-chinese";
const DEMO_VERDICT = "Won't load: 0 missing, 144 unexpected, 153 size mismatches";
const DEMO_FLAGS = "--vision-model ViT-L-14-336 --text-model RoBERTa-wwm-ext-base-chinese";
const TIMEOUT = { timeout: 120_000 };

let server;
let browser;

before(async () => {
  for (const required of ["www/pkg/ckptcheck.js", "www/pkg/ckptcheck_bg.wasm", "www/demo/clip_cn_vit-l-14-336.shapes.pt"]) {
    assert.ok(fs.existsSync(path.join(ROOT, required)), `${required} is missing: run \`cargo xtask build-web\` first`);
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page whose uncaught errors fail the test that opened it. */
async function openPage(url, { context, viewport = { width: 1200, height: 900 }, colorScheme } = {}) {
  context ??= await browser.newContext({ viewport, colorScheme });
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") page.errors.push(message.text());
  });
  await page.goto(url);
  // The preset list comes from the wasm: once it is there the worker runs.
  await page.waitForFunction(() => document.querySelectorAll("#preset option").length > 2);
  return { context, page };
}

/** Do `action`, then wait until the page has finished one more check. */
async function nextResult(page, action) {
  const before = await page.evaluate(() => Number(document.querySelector("#result").dataset.run || 0));
  await action();
  await page.waitForFunction((n) => {
    const result = document.querySelector("#result");
    return Number(result.dataset.run || 0) > n && result.dataset.state !== "running";
  }, before, { timeout: 60_000 });
  return page.evaluate(() => ({
    state: document.querySelector("#result").dataset.state,
    verdict: document.querySelector("#verdict-text")?.textContent.trim(),
  }));
}

/** Drop a file the server serves onto the drop zone through a DataTransfer
 * built in the page, as a real drag and drop delivers it. */
function dropServedFile(page, urlPath) {
  return page.evaluate(async (urlPath) => {
    const response = await fetch(urlPath);
    const file = new File([await response.arrayBuffer()], urlPath.split("/").pop());
    const dataTransfer = new DataTransfer();
    dataTransfer.items.add(file);
    const zone = document.getElementById("drop");
    for (const type of ["dragenter", "dragover", "drop"]) {
      zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer }));
    }
  }, `/${urlPath}`);
}

/** Drop several served files at once (an adapter with its configs). */
function dropServedFiles(page, urlPaths) {
  return page.evaluate(async (urlPaths) => {
    const dataTransfer = new DataTransfer();
    for (const urlPath of urlPaths) {
      const response = await fetch(urlPath);
      dataTransfer.items.add(new File([await response.arrayBuffer()], urlPath.split("/").pop()));
    }
    const zone = document.getElementById("drop");
    for (const type of ["dragenter", "dragover", "drop"]) {
      zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer }));
    }
  }, urlPaths.map((p) => `/${p}`));
}

function dropBytes(page, name, text) {
  return page.evaluate(
    ({ name, text }) => {
      const dataTransfer = new DataTransfer();
      dataTransfer.items.add(new File([text], name));
      const zone = document.getElementById("drop");
      for (const type of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer }));
      }
    },
    { name, text }
  );
}

async function exported(page, button) {
  const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
  return fs.readFileSync(await download.path(), "utf8");
}

function shot(page, name, options = {}) {
  return page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), ...options });
}

function expectedVerdict(report) {
  return report.loads ? "Loads" : `Won't load: ${report.missing_keys.length} missing, ${report.unexpected_keys.length} unexpected, ${report.size_mismatches.length} size mismatches`;
}

describe("ckptcheck page", () => {
  test("(a) a dropped Chinese-CLIP ViT-L-14-336 checkpoint, checked as ViT-B-16 with the cn-clip loader, won't load and the fix names the right flags", TIMEOUT, async () => {
    const hash = new URLSearchParams({ preset: B16, loader: "cn-clip" });
    const { context, page } = await openPage(`${server.origin}/#${hash}`);
    // The hash restored the pickers.
    assert.equal(await page.inputValue("#preset"), B16);
    assert.equal(await page.inputValue("#loader"), "cn-clip");

    const result = await nextResult(page, () => dropServedFile(page, CN_CLIP_L336));
    assert.equal(result.state, "done");
    assert.equal(result.verdict, DEMO_VERDICT);
    assert.match(await page.textContent("#fix-summary"), new RegExp(DEMO_FLAGS.replace(/[-]/g, "\\-")));
    assert.ok((await page.locator("#fix pre").allTextContents()).includes(DEMO_FLAGS), "a copyable remedy holds exactly the flags");
    assert.equal(await page.textContent("#matches"), L336);
    assert.equal(await page.textContent("#checked-model"), B16);
    // Why, in config terms, and the findings table with every finding.
    const why = await page.locator("#why li").allTextContents();
    assert.ok(why.some((line) => line.includes("vision_width: checkpoint 1024, model 768")), why.join("\n"));
    assert.equal(await page.locator("#findings tbody tr").count(), 144 + 153);
    await page.fill("#findings input[type=search]", "positional_embedding");
    assert.equal(await page.locator("#findings tbody tr").count(), 1);
    assert.match(await page.textContent("#findings tbody tr"), /\[577, 1024\].*\[197, 768\]/);
    // The tensor tree lists all 495 tensors and finds one by name.
    assert.equal(await page.textContent("#tensors h2 .count"), "495");
    await page.fill("#tensors input[type=search]", "visual.conv1.weight");
    assert.match(await page.textContent("#tensors .flat"), /F32\s*\[1024, 3, 14, 14\]/);
    // Bytes read: the pickle and headers, not the whole file.
    const read = await page.locator("#bytes-read").evaluate((el) => ({ read: Number(el.dataset.bytesRead), total: Number(el.dataset.fileBytes) }));
    assert.equal(read.total, fs.statSync(path.join(ROOT, CN_CLIP_L336)).size);
    assert.ok(read.read > 0 && read.read < read.total, JSON.stringify(read));
    // PyTorch's text, collapsed, verbatim.
    assert.equal(await page.locator("#pytorch").getAttribute("open"), null);
    assert.match(await page.textContent("#pytorch-error"), /^Error\(s\) in loading state_dict for CLIP:/);
    await page.fill("#tensors input[type=search]", "");
    await page.fill("#findings input[type=search]", "");
    await shot(page, "a-drop-cn-clip", { fullPage: true });
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("(b) the default inferred preset with the strict loader: the banner says what the exported report says", TIMEOUT, async () => {
    const { context, page } = await openPage(`${server.origin}/`);
    assert.equal(await page.inputValue("#preset"), "infer");
    assert.equal(await page.inputValue("#loader"), "strict");
    const result = await nextResult(page, () => dropServedFile(page, CN_CLIP_L336));
    assert.equal(result.state, "done");

    const report = JSON.parse(await exported(page, "#export-json"));
    assert.equal(report.loader, "strict");
    assert.equal(report.model, L336, "infer checks against the preset the checkpoint matches");
    assert.equal(result.verdict, expectedVerdict(report));
    const markdown = await exported(page, "#export-md");
    assert.equal(markdown.split("\n")[0], `# ckptcheck: ${result.verdict}`);
    if (!report.loads) {
      // Released checkpoints carry DataParallel's `module.` prefix; strict
      // loading sees every key as both missing and unexpected.
      assert.ok(report.unexpected_keys.every((key) => key.startsWith("module.")));
      const why = (await page.locator("#why").textContent()) || "";
      assert.match(why, /module\./);
      // The page shows the report's sentences, `code` spans as <code>.
      assert.ok(report.explanation.every((cause) => why.includes(cause.text.replace(/`/g, ""))));
    }
    await shot(page, "b-infer-strict");
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("(c) Try the demo checks the bundled ViT-L-14-336 checkpoint against the fine-tune defaults", TIMEOUT, async () => {
    const { context, page } = await openPage(`${server.origin}/`);
    const result = await nextResult(page, () => page.click("#demo"));
    assert.equal(result.verdict, DEMO_VERDICT);
    assert.match(await page.textContent("#fix-summary"), /--vision-model ViT-L-14-336 --text-model RoBERTa-wwm-ext-base-chinese/);
    assert.equal(await page.inputValue("#preset"), B16);
    assert.equal(await page.inputValue("#loader"), "cn-clip");
    const hash = new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
    assert.equal(hash.get("preset"), B16);
    assert.equal(hash.get("loader"), "cn-clip");
    await shot(page, "c-demo");
    // For the README: the verdict, why and the fix in one picture.
    const fixBottom = await page.locator("#fix").evaluate((el) => Math.ceil(el.getBoundingClientRect().bottom + window.scrollY + 16));
    await page.screenshot({ path: path.join(ROOT, "docs/screenshot.png"), fullPage: true, clip: { x: 0, y: 0, width: 1200, height: fixBottom } });

    // "Check against it" re-runs the same file against the matching preset.
    const again = await nextResult(page, () => page.click("#use-match"));
    assert.equal(again.verdict, "Loads");
    assert.equal(await page.inputValue("#preset"), L336);

    // Narrow screens and dark mode, for looking at.
    const phone = await openPage(`${server.origin}/`, { viewport: { width: 375, height: 812 }, colorScheme: "dark" });
    const narrow = await nextResult(phone.page, () => phone.page.click("#demo"));
    assert.equal(narrow.verdict, DEMO_VERDICT);
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px at 375px`);
    await shot(phone.page, "c-demo-375-dark", { fullPage: true });
    assert.deepEqual(page.errors, []);
    assert.deepEqual(phone.page.errors, []);
    await phone.context.close();
    await context.close();
  });

  test("(d) a 3.8 GB sparse safetensors checkpoint: verdict from under 1 MiB of reading", TIMEOUT, async () => {
    const dir = tempDir();
    try {
      const sparse = makeSparseSafetensors(dir);
      assert.ok(sparse.size > 3.5e9, `${sparse.size}`);
      const { context, page } = await openPage(`${server.origin}/`);
      const result = await nextResult(page, () => page.setInputFiles("#file", sparse.path));
      assert.equal(result.state, "done");
      const report = JSON.parse(await exported(page, "#export-json"));
      assert.equal(report.format, "safetensors");
      assert.equal(report.n_checkpoint_tensors, sparse.n_tensors);
      assert.equal(report.model, H14);
      assert.equal(result.verdict, expectedVerdict(report));
      assert.equal(result.verdict, "Loads");
      const read = await page.locator("#bytes-read").evaluate((el) => ({ read: Number(el.dataset.bytesRead), total: Number(el.dataset.fileBytes) }));
      assert.equal(read.total, sparse.size);
      assert.ok(read.read >= sparse.header_bytes, `read ${read.read} < header ${sparse.header_bytes}`);
      assert.ok(read.read < 1024 * 1024, `read ${read.read} bytes`);
      await shot(page, "d-sparse-3.8GB");
      assert.deepEqual(page.errors, []);
      await context.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("(e) nothing leaves 127.0.0.1: every request of a visit, a demo run and a drop", TIMEOUT, async () => {
    // Service workers blocked so that every fetch shows up as a request here.
    const context = await browser.newContext({ serviceWorkers: "block" });
    const urls = [];
    context.on("request", (request) => urls.push(request.url()));
    const { page } = await openPage(`${server.origin}/`, { context });
    const csp = [];
    page.on("console", (message) => {
      if (/Content Security Policy|Refused to/i.test(message.text())) csp.push(message.text());
    });
    assert.equal((await nextResult(page, () => dropServedFile(page, EVIL))).state, "error");
    assert.equal((await nextResult(page, () => page.click("#demo"))).verdict, DEMO_VERDICT);
    const outside = urls.filter((url) => !url.startsWith(`${server.origin}/`) && !url.startsWith("data:") && !url.startsWith("blob:"));
    assert.deepEqual(outside, []);
    // Not vacuous: the page, its worker, the wasm and the demo went by here.
    for (const needed of ["/www/app.js", "/www/worker.js", "/www/pkg/ckptcheck_bg.wasm", "/www/demo/clip_cn_vit-l-14-336.shapes.pt"]) {
      assert.ok(urls.includes(`${server.origin}${needed}`), `${needed} not requested: ${urls.join(" ")}`);
    }
    assert.deepEqual(csp, []);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("(f) offline after one visit: the service worker serves the page, the wasm and the demo", TIMEOUT, async () => {
    const own = await startServer();
    try {
      const { context, page } = await openPage(`${own.origin}/`);
      await page.evaluate(async () => {
        await navigator.serviceWorker.ready;
        if (!navigator.serviceWorker.controller) {
          await new Promise((resolve) => navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true }));
        }
      });
      const scope = await page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
      assert.equal(scope, `${own.origin}/`);
      // Gone for real: the server is closed as well as the context offline.
      await own.stop();
      await context.setOffline(true);
      const served = own.requests.length;
      await page.reload();
      await page.waitForFunction(() => document.querySelectorAll("#preset option").length > 2);
      assert.equal(await page.evaluate(() => Boolean(navigator.serviceWorker.controller)), true);
      const result = await nextResult(page, () => page.click("#demo"));
      assert.equal(result.verdict, DEMO_VERDICT);
      assert.equal(own.requests.length, served, "the closed server saw nothing");
      await shot(page, "f-offline");
      await context.close();
    } finally {
      await own.stop();
    }
  });

  test("(g) the <ckpt-check> widget on the docs page renders a verdict after its demo button", TIMEOUT, async () => {
    const context = await browser.newContext({ viewport: { width: 1000, height: 1100 } });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    page.on("console", (message) => {
      if (message.type() === "error") errors.push(message.text());
    });
    await page.goto(`${server.origin}/www/embed-demo.html`);
    const widget = page.locator("ckpt-check");
    assert.equal(await widget.getAttribute("preset"), B16);
    const reported = page.evaluate(() => new Promise((resolve) => document.addEventListener("ckpt-check-result", (event) => resolve(event.detail), { once: true })));
    await widget.getByRole("button", { name: "Try the demo" }).click();
    const report = await reported;
    await page.waitForFunction(() => document.querySelector("ckpt-check").shadowRoot.querySelector(".out").dataset.state === "done");
    assert.equal(await widget.locator(".verdict-text").textContent(), DEMO_VERDICT);
    assert.equal(expectedVerdict(report), DEMO_VERDICT);
    assert.match(await widget.locator(".fix").textContent(), /--vision-model ViT-L-14-336 --text-model RoBERTa-wwm-ext-base-chinese/);
    assert.match(await widget.locator(".match").textContent(), new RegExp(L336.replace(/[.]/g, "\\.")));
    await shot(page, "g-embed", { fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("(h) a hostile pickle shows posix.system prominently, garbage reads as Unreadable, and the next drop works", TIMEOUT, async () => {
    const { context, page } = await openPage(`${server.origin}/`);
    const evil = await nextResult(page, () => dropServedFile(page, EVIL));
    // No preset matches a two-by-two tensor, so the page cannot check it,
    // but it still shows what the pickle would call.
    assert.equal(evil.state, "error");
    assert.match(evil.verdict, /^Can't check: cannot infer a model/);
    const danger = page.locator("#danger");
    assert.ok(await danger.isVisible());
    assert.match(await danger.textContent(), /posix\.system/);
    // Prominent: right under the verdict, before everything else.
    assert.equal(await page.evaluate(() => document.querySelector("#result").children[1]?.id), "danger");
    assert.match(await page.textContent("#audit tr.dangerous"), /posix\.system\s*dangerous/);
    await shot(page, "h-evil", { fullPage: true });

    // Checked against a preset, the hostile file gets a report and the alert.
    await page.selectOption("#preset", B16);
    await page.waitForFunction(() => document.querySelector("#result").dataset.state !== "running" && document.querySelector("#verdict-text")?.textContent.startsWith("Won't load"));
    assert.match(await page.textContent("#danger"), /posix\.system/);
    await page.selectOption("#preset", "infer");
    await page.waitForFunction(() => document.querySelector("#result").dataset.state !== "running" && document.querySelector("#verdict-text")?.textContent.startsWith("Can't check"));

    const garbage = await nextResult(page, () => dropBytes(page, "notes.bin", "this is not a checkpoint, just some words\n".repeat(40)));
    assert.equal(garbage.state, "error");
    assert.match(garbage.verdict, /^Unreadable: .*not a recognised checkpoint/);
    assert.equal(await page.locator("#danger").count(), 0);
    await shot(page, "h-garbage");

    // Pickles that are not checkpoints are audited wherever they hide: in a
    // zip under another path, in a 7z archive.
    for (const file of ["tests/fixtures/pickle_files/evil_zip_other_path.zip", "tests/fixtures/pickle_files/evil.7z"]) {
      const hidden = await nextResult(page, () => dropServedFile(page, file));
      assert.equal(hidden.state, "error");
      assert.match(hidden.verdict, /^Unsafe: .*posix\.system\('id'\)/);
    }

    // Saved with pickle protocol 4: no global is harmful, but torch's
    // weights_only unpickler refuses its opcodes, and the audit says which.
    const protocol4 = await nextResult(page, () => dropServedFile(page, "tests/fixtures/pickle_opcodes/protocol4.pt"));
    assert.equal(protocol4.state, "error");
    assert.equal(await page.locator("#danger").count(), 0);
    assert.match(await page.textContent("#audit .audit-verdict"), /refuses this file: its pickle uses opcodes .*FRAME \(0x95\)/);

    const next = await nextResult(page, () => dropServedFile(page, CN_CLIP_L336));
    assert.equal(next.state, "done");
    assert.equal(next.verdict, "Won't load: 495 missing, 495 unexpected, 0 size mismatches");
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("the drop zone is reached with Tab and Enter opens the file picker", TIMEOUT, async () => {
    const { context, page } = await openPage(`${server.origin}/`);
    // Listening from the start: turning on file chooser interception takes
    // a round trip, and a key press is quicker than that.
    const choosers = [];
    page.on("filechooser", (chooser) => choosers.push(chooser));
    const nextChooser = async (key) => {
      const seen = choosers.length;
      await page.keyboard.press(key);
      for (let waited = 0; choosers.length === seen; waited += 50) {
        if (waited > 10_000) throw new Error(`${key} opened no file chooser`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return choosers[choosers.length - 1];
    };
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.id), "drop");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, "none", "the focused drop zone shows a focus ring");
    const chooser = await nextChooser("Enter");
    assert.equal(chooser.isMultiple(), true);
    const result = await nextResult(page, () => chooser.setFiles(path.join(ROOT, CN_CLIP_L336)));
    assert.equal(result.verdict, "Won't load: 495 missing, 495 unexpected, 0 size mismatches");
    assert.equal((await nextChooser(" ")).isMultiple(), true);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("a dropped folder: the shards and their index are read, the rest left out", TIMEOUT, async () => {
    const { context, page } = await openPage(`${server.origin}/`);
    const folder = "tests/fixtures/formats/sharded";
    const names = fs.readdirSync(path.join(ROOT, folder)).sort();
    const expected = JSON.parse(fs.readFileSync(path.join(ROOT, folder, "model.safetensors.index.json.expected.json"), "utf8"));
    // A synthetic DataTransfer cannot hold a directory, so the drop event
    // carries FileSystemEntry look-alikes with the same interface (readEntries
    // in batches, then an empty batch; file(callback)).
    const result = await nextResult(page, () =>
      page.evaluate(
        async ({ folder, names }) => {
          const files = await Promise.all(names.map(async (name) => new File([await (await fetch(`/${folder}/${name}`)).arrayBuffer()], name)));
          const entries = files.map((file) => ({ isFile: true, isDirectory: false, name: file.name, file: (ok) => ok(file) }));
          const batches = [entries.slice(0, 3), entries.slice(3), []];
          const directory = { isFile: false, isDirectory: true, name: "sharded", createReader: () => ({ readEntries: (ok) => ok(batches.shift() || []) }) };
          const item = { kind: "file", webkitGetAsEntry: () => directory, getAsFile: () => null };
          const event = new Event("drop", { bubbles: true, cancelable: true });
          Object.defineProperty(event, "dataTransfer", { value: { items: [item], files: [] } });
          document.getElementById("drop").dispatchEvent(event);
        },
        { folder, names }
      )
    );
    // A tiny BertModel with its config.json: the config is the model, and
    // transformers' BertModel loads the shards.
    assert.equal(result.verdict, "Loads");
    assert.equal(await page.textContent("#checked-model"), "config JSON");
    assert.match(await page.textContent("#verdict"), /BertModel/);
    assert.equal(await page.textContent("#tensors h2 .count"), String(expected.tensors.length));
    const note = await page.locator("#verdict p", { hasText: "From the folder" }).textContent();
    assert.match(note, /From the folder: 4 files \(.*model\.safetensors\.index\.json.*\); 3 other files left out/);
    assert.match(note, /config\.json/);
    assert.match(await page.textContent("#verdict"), /safetensors-sharded/);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("an SD 2.1 .ckpt dropped with v1-inference.yaml is explained as SD 2.x, and loads with its own YAML", TIMEOUT, async () => {
    // tests/fixtures/sd/make_sd_loads.py wrote the training checkpoint; the
    // YAMLs are the releases' own.
    const hash = new URLSearchParams({ preset: "infer", loader: "ldm" });
    const { context, page } = await openPage(`${server.origin}/#${hash}`);
    const ckpt = "tests/fixtures/sd/sd-2.1-768.shapes.ckpt";
    const wrong = await nextResult(page, () => dropServedFiles(page, [ckpt, "tests/fixtures/sd/yaml/v1-inference.yaml"]));
    assert.equal(wrong.verdict, "Won't load: 196 missing, 294 unexpected, 64 size mismatches");
    assert.equal(await page.textContent("#checked-model"), "sd/1.5");
    const why = (await page.locator("#why li").allTextContents()).join("\n");
    assert.match(why, /the checkpoint is Stable Diffusion 2\.x \(768, v-prediction\): cross-attention dim 1024/);
    assert.match(why, /use v2-inference-v\.yaml/);
    assert.match(await page.textContent("#pytorch-error"), /^Error\(s\) in loading state_dict for LatentDiffusion:\n\tsize mismatch for model\.diffusion_model\.input_blocks\.1\.1\.proj_in\.weight/);
    const right = await nextResult(page, () => dropServedFiles(page, [ckpt, "tests/fixtures/sd/yaml/v2-inference-v.yaml"]));
    assert.equal(right.verdict, "Loads");
    assert.equal(await page.textContent("#checked-model"), "sd/2.1-768");
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("a LoRA adapter dropped with adapter_config.json and its base's config.json is checked as PEFT loads it", TIMEOUT, async () => {
    const hash = new URLSearchParams({ preset: "infer", loader: "peft" });
    const { context, page } = await openPage(`${server.origin}/#${hash}`);
    const dir = "tests/fixtures/diagnoses";
    const result = await nextResult(page, () =>
      dropServedFiles(page, [`${dir}/lora_rank/adapter_model.safetensors`, `${dir}/lora_rank/adapter_config.json`, `${dir}/bert_config.json`])
    );
    assert.equal(result.verdict, "Adapter won't load: 0 missing, 0 unexpected, 8 size mismatches");
    const why = await page.locator("#why li").allTextContents();
    assert.ok(why.some((line) => line.includes("LoRA rank: the file's tensors have rank 4") && line.includes("\"r\": 8")), why.join("\n"));
    assert.ok((await page.locator("#fix pre").allTextContents()).includes('"r": 4'));
    assert.match(await page.textContent("#pytorch-error"), /^Error\(s\) in loading state_dict for PeftModel:/);
    // No forward pass is offered for an adapter.
    assert.equal(await page.locator("#verify").count(), 0);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("a file from_pretrained loads with weights newly initialized is a warning with transformers' load report", TIMEOUT, async () => {
    const hash = new URLSearchParams({ preset: "infer", loader: "hf" });
    const { context, page } = await openPage(`${server.origin}/#${hash}`);
    const dir = "tests/fixtures/diagnoses/no_pooler";
    const result = await nextResult(page, () => dropServedFiles(page, [`${dir}/model.safetensors`, `${dir}/config.json`]));
    assert.match(result.verdict, /^Loads, but 2 of 39 weights newly initialized/);
    assert.match(await page.getAttribute("#verdict", "class"), /\bwarn\b/);
    assert.match(await page.textContent("#load-report"), /^BertModel LOAD REPORT from: model\.safetensors\nKey/);
    assert.match(await page.textContent("#load-report"), /pooler\.dense\.weight\s+\| MISSING/);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("any model: a dump or a reference checkpoint in the 'Your own model' slot is the model, and the snippet is one click away", TIMEOUT, async () => {
    const { context, page } = await openPage(`${server.origin}/#${new URLSearchParams({ preset: "infer", loader: "strict" })}`);
    const dir = "tests/fixtures/any_model";
    const expected = JSON.parse(fs.readFileSync(path.join(ROOT, dir, "expected.json"), "utf8")).cases;
    // The dump the shipped snippet wrote for the custom module: a key under
    // its parameterless `act` is unexpected exactly where PyTorch says.
    await page.setInputFiles("#reference", path.join(ROOT, dir, "mynet.dump.json"));
    let result = await nextResult(page, () => dropServedFile(page, `${dir}/mynet__act_stale.pt`));
    assert.equal(result.verdict, "Won't load: 0 missing, 1 unexpected, 0 size mismatches");
    assert.equal(await page.textContent("#checked-model"), "model dump of MyNet");
    const stale = expected.find((c) => c.checkpoint === "mynet__act_stale.pt");
    assert.equal(await page.textContent("#pytorch-error"), stale.pytorch_error);
    // A reference checkpoint: the official weights' own tensors.
    await page.setInputFiles("#reference", path.join(ROOT, dir, "timm_resnet18__ok.pt"));
    result = await nextResult(page, () => dropServedFile(page, `${dir}/timm_resnet18__other_head.pt`));
    assert.equal(result.verdict, "Won't load: 0 missing, 0 unexpected, 2 size mismatches");
    assert.match(await page.textContent("#checked-model"), /^reference checkpoint timm_resnet18__ok\.pt$/);
    const why = await page.locator("#why li").allTextContents();
    assert.ok(why.some((line) => line.includes("classifier head fc: 10 outputs in the checkpoint, 1000 in the model")), why.join("\n"));
    // The snippet comes from the wasm, with a copy button.
    await page.click("#snippet-help summary");
    await page.waitForFunction(() => document.querySelector("#snippet").textContent.includes("def ckptcheck_dump(model"));
    assert.equal(await page.locator("#snippet-help button.copy").count(), 1);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("Write safetensors and Write fixed file: the downloads hold what torch reads, checked with Python's safetensors", TIMEOUT, async () => {
    // The Python that `cargo xtask test` sets up with safetensors and numpy.
    const python = process.env.CKPTCHECK_E2E_PYTHON;
    assert.ok(python, "CKPTCHECK_E2E_PYTHON is not set: run through `cargo xtask test`");
    const context = await browser.newContext({ acceptDownloads: true });
    // Downloads, not the File System Access dialog, so the test can read them.
    await context.addInitScript(() => {
      delete window.showSaveFilePicker;
    });
    const { page } = await openPage(`${server.origin}/#${new URLSearchParams({ preset: "infer", loader: "strict" })}`, { context });
    const out = tempDir("write");
    const saved = async (button, name) => {
      const [download] = await Promise.all([
        page.waitForEvent("download", { timeout: 30_000 }).catch(async (error) => {
          throw new Error(`${error.message}; the page says: ${await page.textContent("#write-status")}`);
        }),
        page.click(button),
      ]);
      const file = path.join(out, name);
      await download.saveAs(file);
      return file;
    };
    const diagnoses = "tests/fixtures/diagnoses";
    let result = await nextResult(page, () => dropServedFiles(page, [`${diagnoses}/compiled_bert.pt`, `${diagnoses}/bert_config.json`]));
    assert.match(result.verdict, /^Won't load: 39 missing, 39 unexpected/);
    const converted = await saved("#write-safetensors", "converted.safetensors");
    await page.waitForSelector("#write-status[data-done=convert]");
    const fixed = await saved("#write-fixed", "fixed.safetensors");
    // Strided views: their bytes are rewritten through the wasm.
    result = await nextResult(page, () => dropServedFile(page, "tests/fixtures/integrity/strided_views.pt"));
    const views = await saved("#write-safetensors", "views.safetensors");
    const check = `
import hashlib, json, sys
from safetensors import safe_open
expected = json.load(open(sys.argv[1]))
def digests(path, rename=lambda k: k):
    with safe_open(path, "numpy") as f:
        assert f.metadata()["format"] == "pt"
        return {rename(k): hashlib.sha256(f.get_tensor(k).tobytes()).hexdigest() for k in f.keys()}
torch_bert = {k: v["sha256"] for k, v in expected["tests/fixtures/diagnoses/compiled_bert.pt"].items()}
assert digests(sys.argv[2]) == torch_bert, "converted"
assert digests(sys.argv[3], lambda k: "_orig_mod." + k) == torch_bert, "fixed"
with safe_open(sys.argv[3], "numpy") as f:
    assert not any(k.startswith("_orig_mod.") for k in f.keys())
torch_views = {k: v["sha256"] for k, v in expected["tests/fixtures/integrity/strided_views.pt"].items()}
written = digests(sys.argv[4])
assert all(written[k] == torch_views[k] for k in written) and len(written) >= len(torch_views) - 1, (sorted(written), sorted(torch_views))
print("ok", len(torch_bert), len(written))
`;
    const run = spawnSync(python, ["-c", check, path.join(ROOT, "tests/fixtures/convert/expected.json"), converted, fixed, views], { encoding: "utf8" });
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /^ok 39 /);
    assert.deepEqual(page.errors, []);
    await context.close();
  });

  test("Cancel stops a check and the page keeps working", TIMEOUT, async () => {
    const { context, page } = await openPage(`${server.origin}/`);
    // Cancel in the same task that started the check: the worker is still
    // inside the wasm call then, so only terminating it can stop it.
    const cancelled = await nextResult(page, () =>
      page.evaluate(async () => {
        const bytes = await (await fetch("/tests/fixtures/cn_clip/clip_cn_vit-l-14-336.shapes.pt")).arrayBuffer();
        const dataTransfer = new DataTransfer();
        dataTransfer.items.add(new File([bytes], "clip_cn_vit-l-14-336.shapes.pt"));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer }));
        await new Promise((resolve) => setTimeout(resolve, 0));
        if (document.getElementById("progress").hidden) throw new Error("no progress shown while checking");
        document.getElementById("cancel").click();
      })
    );
    assert.equal(cancelled.state, "cancelled");
    assert.equal(cancelled.verdict, "Cancelled");
    // A fresh worker answers the next request.
    const again = await nextResult(page, () => page.click("#demo"));
    assert.equal(again.verdict, DEMO_VERDICT);
    assert.deepEqual(page.errors, []);
    await context.close();
  });
});
