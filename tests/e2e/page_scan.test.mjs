// "Scan weights" on the page: every weight of a dropped file is read once in
// the worker and the page lists NaN, Inf and all-zero tensors with a progress
// bar. The fixture tests/fixtures/scan/nan_inf.safetensors (made by
// tests/fixtures/scan/make_scan_fixtures.py, statistics checked with numpy in
// expected_stats.json) holds NaN/Inf in every float dtype and all-zero
// tensors; a clean model fixture scans clean.
// Run: node --test tests/e2e/ (after `cargo xtask build-web`).

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { ROOT, launch, startServer } from "./lib.mjs";

const NAN_INF = path.join(ROOT, "tests/fixtures/scan/nan_inf.safetensors");
const CLEAN = path.join(ROOT, "tests/fixtures/formats/small.safetensors");
const EXPECTED = JSON.parse(fs.readFileSync(path.join(ROOT, "tests/fixtures/scan/expected_stats.json"), "utf8"))["scan/nan_inf.safetensors"];

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function dropAndScan(page, file) {
  const before = await page.evaluate(() => Number(document.querySelector("#result").dataset.run || 0));
  await page.setInputFiles("#file", file);
  await page.waitForFunction((n) => Number(document.querySelector("#result").dataset.run || 0) > n && document.querySelector("#result").dataset.state !== "running", before);
  await page.click("#scan-weights");
  await page.waitForSelector("#scan-verdict", { timeout: 60_000 });
  return (await page.textContent("#scan-status")).trim();
}

test("scanning finds every NaN, Inf and all-zero tensor, and a clean file scans clean", { timeout: 120_000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(server.origin);
  await page.waitForFunction(() => document.querySelectorAll("#preset option").length > 2);

  const status = await dropAndScan(page, NAN_INF);
  assert.match(status, /^✗ \d+ problems? · \d+ of \d+ tensors/, status);
  const rows = await page.locator("#scan-table tbody tr").evaluateAll((trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent.trim()))
  );
  const flagged = Object.entries(EXPECTED).filter(([, s]) => s.nan || s.inf || (s.zeros === s.values && s.values > 0));
  for (const [name, stats] of flagged) {
    const row = rows.find((r) => r[0] === name);
    if (stats.nan || stats.inf) {
      assert.ok(row, `${name} must be listed: ${JSON.stringify(rows)}`);
      assert.equal(Number(row[2]), stats.nan, `${name} NaN`);
      assert.equal(Number(row[3]), stats.inf, `${name} Inf`);
    }
  }
  const problems = await page.locator("#scan-problems li").allTextContents();
  assert.ok(problems.some((p) => /nan/i.test(p)), problems.join("\n"));

  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll("#preset option").length > 2);
  const clean = await dropAndScan(page, CLEAN);
  assert.match(clean, /^✓ No NaN, no Inf, no all-zero tensor/, clean);
  assert.deepEqual(errors, []);
});
