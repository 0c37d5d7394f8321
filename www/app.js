// The page: drag and drop, the preset and loader pickers (kept in the URL
// hash), the progress and Cancel controls, and rendering the wasm's report.
// It decides nothing about checkpoints: every verdict, explanation and fix
// comes from the wasm (through worker.js); this file only lays them out.

import {
  CheckClient,
  copyText,
  download,
  h,
  humanBytes,
  humanCount,
  isUnreadable,
  numel,
  shapeText,
  verdictLine,
  withCode,
} from "./client.js";

const DEMO_URL = new URL("./demo/clip_cn_vit-l-14-336.shapes.pt", import.meta.url);
const DEMO_PRESET = "ViT-B-16@RoBERTa-wwm-ext-base-chinese";
// The loader cn_clip's fine-tune script uses: what people who hit this run.
const DEMO_LOADER = "cn-clip";
// Rows rendered at once in long lists; the filter narrows the rest.
const ROW_LIMIT = 1000;
const FAMILY_NAMES = { cn_clip: "Chinese-CLIP (cn_clip)", open_clip: "OpenCLIP", hf: "Hugging Face transformers" };

const $ = (id) => document.getElementById(id);
const els = {
  drop: $("drop"),
  file: $("file"),
  preset: $("preset"),
  presetSearch: $("preset-search"),
  presetNames: $("preset-names"),
  loader: $("loader"),
  demo: $("demo"),
  progress: $("progress"),
  progressText: $("progress-text"),
  progressTime: $("progress-time"),
  cancel: $("cancel"),
  result: $("result"),
};

const client = new CheckClient();
let lastFiles = null;
let lastPick = null;
let runCount = 0;
let checking = false;
let timer = null;

// ---------------------------------------------------------------- presets

async function loadPresets(attempt = 0) {
  let presets;
  try {
    ({ presets } = await client.request("presets"));
  } catch (error) {
    // A Cancel during start-up kills this request too; ask the new worker.
    if (attempt < 2) return loadPresets(attempt + 1);
    showError(error);
    return;
  }
  const families = new Map();
  for (const preset of presets) {
    if (!families.has(preset.family)) families.set(preset.family, []);
    families.get(preset.family).push(preset);
  }
  for (const [family, list] of families) {
    const group = h("optgroup", { label: FAMILY_NAMES[family] || family });
    for (const preset of list) {
      const described = preset.description && !/^[^,]+$/.test(preset.description) ? ` (${preset.description.split(", ").slice(1).join(", ")})` : "";
      group.append(h("option", { value: preset.name, "data-family": family }, preset.name + described));
      els.presetNames.append(h("option", { value: preset.name }, `${FAMILY_NAMES[family] || family}: ${preset.description}`));
    }
    els.preset.append(group);
  }
  applyHash();
}

/** Filter the select by the search box; pick an exact match. */
function filterPresets() {
  const query = els.presetSearch.value.trim().toLowerCase();
  let exact = null;
  for (const option of els.preset.querySelectorAll("option")) {
    const match = !query || option.value === "infer" || option.textContent.toLowerCase().includes(query);
    option.hidden = !match;
    if (query && option.value.toLowerCase() === query) exact = option.value;
  }
  if (exact !== null && els.preset.value !== exact) {
    els.preset.value = exact;
    settingsChanged();
  }
}

function ensurePresetOption(name) {
  if ([...els.preset.options].some((option) => option.value === name)) return;
  let group = els.preset.querySelector("optgroup[data-from-link]");
  if (!group) {
    group = h("optgroup", { label: "From the link", "data-from-link": true });
    els.preset.append(group);
  }
  group.append(h("option", { value: name }, name));
}

// ---------------------------------------------------------------- URL hash

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { preset: params.get("preset"), loader: params.get("loader") };
}

function applyHash() {
  const { preset, loader } = readHash();
  if (preset !== null) {
    ensurePresetOption(preset);
    els.preset.value = preset;
  }
  if (loader !== null && [...els.loader.options].some((option) => option.value === loader)) {
    els.loader.value = loader;
  }
}

function writeHash() {
  const params = new URLSearchParams();
  params.set("preset", els.preset.value);
  params.set("loader", els.loader.value);
  history.replaceState(null, "", `#${params}`);
}

function settingsChanged() {
  writeHash();
  if (lastFiles) run(lastFiles, lastPick);
}

// ---------------------------------------------------------------- input

async function readDirectory(entry, depth = 0, out = []) {
  if (depth > 3 || out.length > 5000) return out;
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) {
      if (child.isDirectory) await readDirectory(child, depth + 1, out);
      else out.push(await new Promise((resolve, reject) => child.file(resolve, reject)));
    }
  }
  return out;
}

/** From a dropped folder keep the checkpoint: weights, shard indexes and
 * config.json; safetensors over pickles when a folder has both (the way
 * transformers picks). Tokenizers, READMEs and images stay out. */
function pickCheckpointFiles(files) {
  const weights = /\.(safetensors|bin|pt|pth|ckpt|gguf)$/i;
  let keep = files.filter((f) => weights.test(f.name) || /\.index\.json$/i.test(f.name) || f.name === "config.json");
  if (keep.some((f) => /\.safetensors$/i.test(f.name))) {
    keep = keep.filter((f) => !/\.(bin|pt|pth|ckpt)$/i.test(f.name) && !/\.bin\.index\.json$/i.test(f.name));
  }
  return { files: keep, skipped: files.length - keep.length };
}

async function filesFromDrop(dataTransfer) {
  // Items and their entries must be taken now: the DataTransfer is emptied
  // once the drop handler returns.
  const items = [...(dataTransfer.items || [])].filter((item) => item.kind === "file");
  const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  const plain = items.map((item) => item.getAsFile());
  if (!items.length) return { files: [...(dataTransfer.files || [])], skipped: 0, folder: false };
  const files = [];
  let folder = false;
  for (let index = 0; index < items.length; index++) {
    const entry = entries[index];
    if (entry && entry.isDirectory) {
      folder = true;
      files.push(...(await readDirectory(entry)));
    } else if (plain[index]) {
      files.push(plain[index]);
    }
  }
  return folder ? { ...pickCheckpointFiles(files), folder } : { files, skipped: 0, folder };
}

function setUpDropZone() {
  let depth = 0;
  const over = (on) => els.drop.classList.toggle("over", on);
  els.drop.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    over(true);
  });
  els.drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
  });
  els.drop.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) over(false);
  });
  els.drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    depth = 0;
    over(false);
    const picked = await filesFromDrop(event.dataTransfer);
    if (!picked.files.length) {
      showError({ kind: "bad_argument", message: picked.folder ? "the folder holds no checkpoint files (.safetensors, .bin, .pt, .gguf, index.json)" : "nothing to check: drop files" });
      return;
    }
    run(picked.files, picked);
  });
  // A drop that misses the zone must not navigate away from the page.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (!els.drop.contains(event.target)) event.preventDefault();
    });
  }
  els.drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      els.file.click();
    }
  });
  els.file.addEventListener("change", () => {
    const files = [...els.file.files];
    // Cleared so choosing the same file again runs again.
    els.file.value = "";
    if (files.length) run(files, { files, skipped: 0, folder: false });
  });
}

// ---------------------------------------------------------------- running

function showProgress(text) {
  const started = performance.now();
  els.progress.hidden = false;
  els.progressText.textContent = text;
  els.progressTime.textContent = "";
  clearInterval(timer);
  timer = setInterval(() => {
    els.progressTime.textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
  }, 100);
}

function hideProgress() {
  clearInterval(timer);
  els.progress.hidden = true;
}

async function run(files, pick = null) {
  // One check at a time: a new one replaces whatever runs.
  if (checking) client.cancel();
  checking = true;
  lastFiles = files;
  lastPick = pick;
  const run = ++runCount;
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const name = files.length === 1 ? files[0].name : `${files.length} files`;
  els.result.dataset.state = "running";
  els.result.setAttribute("aria-busy", "true");
  showProgress(`Checking ${name} (${humanBytes(total)})`);
  try {
    const result = await client.request("check", {
      files,
      preset: els.preset.value,
      loader: els.loader.value,
      onProgress: (message) => {
        if (run === runCount) els.progressText.textContent = `${message.text[0].toUpperCase()}${message.text.slice(1)} (${humanBytes(total)})`;
      },
    });
    if (run !== runCount) return;
    checking = false;
    renderReport(result, pick);
    finish("done");
  } catch (error) {
    if (run !== runCount) return;
    checking = false;
    showError(error, pick);
  }
}

function finish(state) {
  hideProgress();
  els.result.dataset.state = state;
  els.result.dataset.run = String(runCount);
  els.result.removeAttribute("aria-busy");
}

async function runDemo() {
  ensurePresetOption(DEMO_PRESET);
  els.preset.value = DEMO_PRESET;
  els.loader.value = DEMO_LOADER;
  els.presetSearch.value = "";
  filterPresets();
  writeHash();
  showProgress("Fetching the demo checkpoint");
  try {
    const response = await fetch(DEMO_URL);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const blob = await response.blob();
    const file = new File([blob], "clip_cn_vit-l-14-336.shapes.pt", { type: "application/octet-stream" });
    await run([file], { files: [file], skipped: 0, folder: false, demo: true });
  } catch (error) {
    showError({ kind: "demo_unavailable", message: `could not fetch the demo checkpoint: ${error.message}` });
  }
}

// ---------------------------------------------------------------- rendering

function card(title, { id, count, open = true, collapsible = false, className = "" } = {}, ...body) {
  const heading = [title, count !== undefined ? h("span", { class: "count" }, String(count)) : null];
  if (collapsible) {
    return h("details", { class: `card ${className}`, id, open: open || null }, h("summary", {}, h("h2", {}, heading)), body);
  }
  return h("section", { class: `card ${className}`, id, "aria-label": title }, h("h2", {}, heading), body);
}

function copyButton(text, target, label = "Copy") {
  const button = h("button", { type: "button", class: "button small copy" }, label);
  button.addEventListener("click", () => copyText(text, button, target));
  return button;
}

function baseName(name) {
  return String(name).split(/[\\/]/).pop().replace(/\.[^.]+$/, "") || "checkpoint";
}

function readLine(bytesRead, fileBytes, elapsedMs) {
  // The count includes bytes read twice (format detection, then parsing), so
  // a small file can show more read than it holds.
  const text =
    bytesRead >= fileBytes
      ? `Read all ${humanBytes(fileBytes)} (${humanBytes(bytesRead)} counting re-reads)`
      : `Read ${humanBytes(bytesRead)} of ${humanBytes(fileBytes)} (${((100 * bytesRead) / fileBytes).toFixed(bytesRead / fileBytes < 0.01 ? 3 : 0)}%)`;
  return h(
    "span",
    { id: "bytes-read", class: "bytes-read", "data-bytes-read": bytesRead, "data-file-bytes": fileBytes, "data-elapsed-ms": elapsedMs },
    text,
    elapsedMs !== undefined ? ` in ${(elapsedMs / 1000).toFixed(2)} s` : ""
  );
}

function pickNote(pick) {
  if (!pick || !pick.folder) return null;
  return h(
    "p",
    { class: "meta" },
    `From the folder: ${pick.files.length} file${pick.files.length === 1 ? "" : "s"} (${pick.files.map((f) => f.name).join(", ")})`,
    pick.skipped ? `; ${pick.skipped} other file${pick.skipped === 1 ? "" : "s"} left out` : ""
  );
}

function renderReport(result, pick) {
  const { report, checkpoint, markdown } = result;
  const verdict = verdictLine(result);
  const audit = checkpoint.pickle_audit || null;
  const dangerous = audit?.dangerous?.length ? audit.dangerous : report.unsafe_globals || [];
  const matches = report.inferred?.preset || null;
  const best = report.inferred?.ranking?.[0] || null;
  const inferred = els.preset.value === "infer";

  const exportBar = h(
    "div",
    { class: "export" },
    h("button", { type: "button", class: "button small", id: "export-md", onclick: () => download(`${baseName(report.file)}.ckptcheck.md`, markdown, "text/markdown") }, "Export Markdown"),
    h("button", { type: "button", class: "button small", id: "export-json", onclick: () => download(`${baseName(report.file)}.ckptcheck.json`, `${JSON.stringify(report, null, 2)}\n`, "application/json") }, "Export JSON")
  );

  let matchLine = null;
  if (matches) {
    const recheck = matches !== report.model ? h("button", { type: "button", class: "button small", id: "use-match", onclick: () => usePreset(matches) }, "Check against it") : null;
    matchLine = h("p", { class: "meta match" }, "The checkpoint matches the preset ", h("strong", { id: "matches" }, matches), matches === report.model ? " (the one checked). " : ". ", recheck);
  } else if (best) {
    matchLine = h("p", { class: "meta match" }, "No preset matches exactly; closest: ", h("strong", { id: "closest" }, best.preset), ` (${best.findings} finding${best.findings === 1 ? "" : "s"}).`);
  }

  const banner = h(
    "section",
    { class: `verdict ${report.loads ? "ok" : "bad"}`, id: "verdict", "aria-label": "Verdict" },
    h("div", { class: "verdict-head" }, h("span", { class: "verdict-icon", "aria-hidden": "true" }, report.loads ? "✓" : "✗"), h("h2", { id: "verdict-text" }, verdict), exportBar),
    h("p", { class: "meta" }, h("code", { class: "file" }, report.file), ` · ${report.format} · ${humanBytes(report.file_bytes)} · ${report.n_checkpoint_tensors} tensors`),
    h("p", { class: "meta" }, readLine(report.bytes_read, report.file_bytes, result.elapsed_ms)),
    h(
      "p",
      { class: "meta" },
      "Checked against ",
      h("strong", { id: "checked-model" }, report.model),
      inferred ? " (inferred from the checkpoint)" : "",
      ` · ${report.class_name}, ${report.n_model_tensors} tensors · loader `,
      h("code", {}, report.loader),
      report.state_dict_path.length ? [" · state dict at ", h("code", {}, report.state_dict_path.map((k) => `[${JSON.stringify(k)}]`).join(""))] : null
    ),
    matchLine,
    pickNote(pick)
  );

  const parts = [banner];
  if (dangerous.length) parts.push(dangerAlert(dangerous));
  if (report.explanation.length) parts.push(explanationCard(report));
  if (report.fix) parts.push(fixCard(report.fix));
  if (!report.loads) parts.push(findingsCard(report, checkpoint));
  parts.push(tensorCard(checkpoint));
  if (audit) parts.push(auditCard(audit));
  const notes = [...report.notes, ...checkpoint.notes.filter((note) => !report.notes.includes(note))];
  if (notes.length) parts.push(card("Notes", { id: "notes", count: notes.length }, h("ul", { class: "notes" }, notes.map((note) => h("li", {}, withCode(sentence(note)))))));
  const more = valuesCard(checkpoint);
  if (more) parts.push(more);
  if (report.pytorch_error) parts.push(pytorchCard(report.pytorch_error));
  // Shapes that match are necessary, not sufficient: offer to run the model.
  if (report.loads) parts.splice(1, 0, verifyCard(report));
  parts.splice(report.loads ? 2 : 1, 0, scanCard());
  els.result.replaceChildren(...parts);
}

/** "Scan weights": read every weight once and report NaN, Inf and all-zero
 * tensors, with a progress bar (bytes done of total, rate) and Cancel. */
function scanCard() {
  const status = h("p", { class: "meta", id: "scan-status" }, "Read every weight once to find values that break training: NaN, Inf, all-zero tensors.");
  const output = h("div", { id: "scan-output" });
  const button = h("button", { type: "button", class: "button", id: "scan-weights" }, "Scan weights");
  button.onclick = async () => {
    const files = lastFiles;
    if (!files) return;
    button.disabled = true;
    const started = performance.now();
    showProgress("Scanning weights");
    const bar = els.progress.querySelector("progress");
    try {
      const { scan } = await client.request("scan", {
        files,
        onProgress: (message) => {
          if (message.stage !== "scan" || !message.total) return;
          const seconds = (performance.now() - started) / 1000;
          bar.max = message.total;
          bar.value = message.done;
          const rate = seconds > 0 ? ` · ${humanBytes(message.done / seconds)}/s` : "";
          els.progressText.textContent = `Scanning weights: ${humanBytes(message.done)} of ${humanBytes(message.total)}${rate}`;
        },
      });
      const seconds = (performance.now() - started) / 1000;
      const summary = scan.summary;
      status.replaceChildren(
        h("strong", { id: "scan-verdict" }, scan.ok ? "✓ No NaN, no Inf, no all-zero tensor" : `✗ ${summary.problems.length} problem${summary.problems.length === 1 ? "" : "s"}`),
        ` · ${summary.scanned} of ${summary.tensors} tensors · ${humanBytes(scan.bytes_scanned)} in ${seconds.toFixed(2)} s`
      );
      const flagged = scan.tensors.filter((t) => t.nan || t.inf || t.all_zero);
      const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toPrecision(4));
      const rows = (flagged.length ? flagged : scan.tensors).slice(0, ROW_LIMIT);
      output.replaceChildren(
        summary.problems.length ? h("ul", { class: "notes", id: "scan-problems" }, summary.problems.map((p) => h("li", {}, withCode(sentence(p))))) : "",
        h("p", { class: "meta" }, flagged.length ? "Tensors with problems:" : "Every tensor:"),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "findings", id: "scan-table" },
            h("thead", {}, h("tr", {}, ["tensor", "dtype", "NaN", "Inf", "min", "max", "mean", "std"].map((c) => h("th", {}, c)))),
            h("tbody", {}, rows.map((t) => h("tr", { class: t.nan || t.inf || t.all_zero ? "bad" : "" }, h("td", { class: "key" }, breakable(t.name)), h("td", {}, t.dtype), h("td", { class: "num" }, String(t.nan)), h("td", { class: "num" }, String(t.inf)), h("td", { class: "num" }, fmt(t.min)), h("td", { class: "num" }, fmt(t.max)), h("td", { class: "num" }, fmt(t.mean)), h("td", { class: "num" }, fmt(t.std)))))
          )
        )
      );
    } catch (error) {
      status.replaceChildren(h("strong", {}, error.kind === "cancelled" ? "Scan cancelled" : "Could not scan: "), error.kind === "cancelled" ? "" : sentence(error.message));
    } finally {
      bar.removeAttribute("value");
      hideProgress();
      button.disabled = false;
    }
  };
  return card("Scan weights", { id: "scan" }, status, h("div", { class: "export" }, button), output);
}

/** "Prove it loads": run the model on WebGPU (checked against the CPU
 * reference), or on the wasm CPU reference where the browser has no GPU. */
function verifyCard(report) {
  const preset = report.model === "config JSON" ? "" : report.model;
  const output = h("div", { id: "verify-output" });
  const status = h("p", { class: "meta", id: "verify-status" }, "Shapes that match are necessary, not sufficient: run the model on a fixed input and check its output is finite and agrees with the CPU reference.");
  const start = async (device) => {
    const files = lastFiles;
    if (!files) return;
    buttons.forEach((b) => (b.disabled = true));
    showProgress(device === "gpu" ? "Running the model on the GPU" : "Running the CPU reference");
    try {
      if (device === "gpu") {
        const { reason } = await client.request("gpu_status");
        if (reason) {
          hideProgress();
          status.replaceChildren(h("strong", {}, "No GPU here: "), sentence(reason), ". The CPU reference runs the same graph in WebAssembly.");
          cpu.hidden = false;
          cpu.disabled = false;
          return;
        }
      }
      const result = await client.request("verify", { files, preset, device });
      const verdict = result.verdict;
      const compared = verdict.comparison ? ` · GPU vs CPU max abs error ${verdict.comparison.max_abs_err.toExponential(1)}` : "";
      status.replaceChildren(
        h("strong", { id: "verify-verdict" }, verdict.passed ? "✓ Runs: finite output of the expected shape" : "✗ Does not run cleanly"),
        ` · ${verdict.device} · ${verdict.output_name} ${JSON.stringify(verdict.output_shape)}${compared}`
      );
      output.replaceChildren(h("pre", { class: "error-text", id: "verify-text" }, result.text));
    } catch (error) {
      status.replaceChildren(h("strong", {}, error.kind === "cancelled" ? "Cancelled" : "Could not run the model: "), error.kind === "cancelled" ? "" : sentence(error.message));
    } finally {
      hideProgress();
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  const gpu = h("button", { type: "button", class: "button", id: "verify-gpu", onclick: () => start("gpu") }, "Verify on GPU");
  const cpu = h("button", { type: "button", class: "button small", id: "verify-cpu", onclick: () => start("cpu") }, "Run the CPU reference");
  const buttons = [gpu, cpu];
  return card("Prove it loads", { id: "verify" }, status, h("div", { class: "export" }, gpu, cpu), output);
}

/** A dotted key that wraps at its dots on narrow screens. */
function breakable(key) {
  return String(key)
    .split(/(?<=\.)/)
    .flatMap((part, i) => (i ? [h("wbr"), part] : [part]));
}

/** Rust messages are lowercase (the error style); a paragraph starts with a capital. */
function sentence(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

function usePreset(name) {
  ensurePresetOption(name);
  els.preset.value = name;
  settingsChanged();
}

function dangerAlert(names) {
  return h(
    "section",
    { class: "alert danger", id: "danger", role: "alert" },
    h("h2", {}, "Dangerous pickle: do not torch.load this file"),
    h("p", {}, "Unpickling it calls ", names.map((name, i) => [i ? ", " : "", h("code", { class: "global" }, name)]), ". ", h("code", {}, "torch.load(..., weights_only=False)"), " would run that on your machine; ", h("code", {}, "weights_only=True"), " refuses the file. ckptcheck read the pickle symbolically and ran nothing.")
  );
}

function explanationCard(report) {
  const list = h(
    "ul",
    { class: "causes" },
    report.explanation.map((cause) => {
      const counts = [
        cause.missing ? h("span", { class: "chip missing" }, `${cause.missing} missing`) : null,
        cause.unexpected ? h("span", { class: "chip unexpected" }, `${cause.unexpected} unexpected`) : null,
        cause.size_mismatches ? h("span", { class: "chip mismatch" }, `${cause.size_mismatches} size`) : null,
      ];
      return h("li", {}, h("span", { class: "cause-text" }, withCode(cause.text)), h("span", { class: "chips" }, counts));
    })
  );
  return card("Why", { id: "why" }, list);
}

function fixCard(fix) {
  return card(
    "Fix",
    { id: "fix", className: "fix" },
    h("p", { id: "fix-summary", class: "fix-summary" }, withCode(sentence(fix.summary))),
    fix.remedies.map((remedy) => {
      const pre = h("pre", { class: "remedy-text" }, remedy.text);
      return h("div", { class: "remedy" }, h("div", { class: "remedy-head" }, h("span", { class: "remedy-label" }, remedy.label), copyButton(remedy.text, pre)), pre);
    })
  );
}

function findingsCard(report, checkpoint) {
  const shapes = new Map();
  for (const tensor of checkpoint.tensors) {
    shapes.set(tensor.name, tensor.shape);
    if (tensor.name.startsWith("module.")) shapes.set(tensor.name.slice(7), tensor.shape);
  }
  const rows = [
    ...report.missing_keys.map((key) => ({ kind: "missing", key, checkpoint: "not in the file", model: "" })),
    ...report.unexpected_keys.map((key) => ({ kind: "unexpected", key, checkpoint: shapes.has(key) ? shapeText(shapes.get(key)) : "", model: "not in the model" })),
    ...report.size_mismatches.map((m) => ({ kind: "mismatch", key: m.key, checkpoint: shapeText(m.checkpoint_shape), model: shapeText(m.model_shape) })),
  ];
  const labels = { missing: "Missing", unexpected: "Unexpected", mismatch: "Size mismatch" };
  const counts = { missing: report.missing_keys.length, unexpected: report.unexpected_keys.length, mismatch: report.size_mismatches.length };
  const shown = new Set(Object.keys(counts).filter((kind) => counts[kind] > 0));
  const search = h("input", { type: "search", class: "filter", placeholder: "Filter keys", "aria-label": "Filter findings" });
  const toggles = Object.keys(labels).map((kind) =>
    h("button", { type: "button", class: `toggle ${kind}`, "aria-pressed": String(shown.has(kind)), disabled: counts[kind] === 0 || null, "data-kind": kind }, `${labels[kind]} `, h("span", { class: "count" }, String(counts[kind])))
  );
  const body = h("tbody");
  const status = h("p", { class: "meta table-status" });
  const draw = () => {
    const query = search.value.trim().toLowerCase();
    const matching = rows.filter((row) => shown.has(row.kind) && (!query || row.key.toLowerCase().includes(query)));
    body.replaceChildren(
      ...matching.slice(0, ROW_LIMIT).map((row) =>
        h("tr", { class: row.kind }, h("td", {}, h("span", { class: `chip ${row.kind}` }, labels[row.kind])), h("td", { class: "key" }, breakable(row.key)), h("td", { class: "shape" }, row.checkpoint), h("td", { class: "shape" }, row.model))
      )
    );
    status.textContent = matching.length > ROW_LIMIT ? `Showing ${ROW_LIMIT} of ${matching.length}; filter to narrow.` : `${matching.length} of ${rows.length} shown, in PyTorch's order.`;
  };
  for (const toggle of toggles) {
    toggle.addEventListener("click", () => {
      const kind = toggle.dataset.kind;
      if (shown.has(kind)) shown.delete(kind);
      else shown.add(kind);
      toggle.setAttribute("aria-pressed", String(shown.has(kind)));
      draw();
    });
  }
  search.addEventListener("input", draw);
  draw();
  const table = h("table", { class: "findings" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Finding"), h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Checkpoint"), h("th", { scope: "col" }, "Model"))), body);
  return card("Findings", { id: "findings", count: rows.length }, h("div", { class: "table-tools" }, search, h("div", { class: "toggles", role: "group", "aria-label": "Show findings of kind" }, toggles)), h("div", { class: "table-wrap" }, table), status);
}

// Tensor tree: a node per dotted prefix, children drawn when first opened.
function buildTree(tensors) {
  const root = { label: "", children: new Map(), leaves: [], count: 0, params: 0 };
  for (const tensor of tensors) {
    const parts = [...tensor.path.slice(0, -1), ...tensor.name.split(".")];
    const n = numel(tensor.shape);
    let node = root;
    node.count += 1;
    node.params += n;
    for (const part of parts.slice(0, -1)) {
      if (!node.children.has(part)) node.children.set(part, { label: part, children: new Map(), leaves: [], count: 0, params: 0 });
      node = node.children.get(part);
      node.count += 1;
      node.params += n;
    }
    node.leaves.push({ label: parts[parts.length - 1], tensor, n });
  }
  return root;
}

function leafRow(label, tensor, n) {
  return h(
    "div",
    { class: "leaf" },
    h("code", { class: "leaf-name", title: tensor.path.join(" › ") }, breakable(label)),
    h("span", { class: "dtype" }, tensor.dtype),
    h("span", { class: "shape" }, shapeText(tensor.shape)),
    h("span", { class: "params" }, humanCount(n))
  );
}

function treeNode(node, open = false) {
  // Chains of single children read as one prefix: "state_dict.module.".
  let label = node.label;
  while (node.children.size === 1 && node.leaves.length === 0) {
    node = node.children.values().next().value;
    label += `.${node.label}`;
  }
  const body = h("div", { class: "node-body" });
  const details = h(
    "details",
    { class: "node", open: open || null },
    h("summary", {}, h("code", { class: "node-name" }, `${label}.`), h("span", { class: "node-meta" }, `${node.count} tensor${node.count === 1 ? "" : "s"} · ${humanCount(node.params)}`)),
    body
  );
  let drawn = false;
  const draw = () => {
    if (drawn || !details.open) return;
    drawn = true;
    body.append(...treeChildren(node));
  };
  details.addEventListener("toggle", draw);
  if (open) draw();
  return details;
}

function treeChildren(node) {
  return [...node.leaves.map((leaf) => leafRow(leaf.label, leaf.tensor, leaf.n)), ...[...node.children.values()].map((child) => treeNode(child))];
}

function tensorCard(checkpoint) {
  const tensors = checkpoint.tensors;
  const byDtype = new Map();
  let total = 0;
  for (const tensor of tensors) {
    const n = numel(tensor.shape);
    total += n;
    byDtype.set(tensor.dtype, (byDtype.get(tensor.dtype) || 0) + n);
  }
  const summary = h("p", { class: "meta" }, `${tensors.length} tensor${tensors.length === 1 ? "" : "s"}, ${humanCount(total)} parameter${total === 1 ? "" : "s"}: `, [...byDtype].map(([dtype, n], i) => [i ? ", " : "", h("span", { class: "dtype" }, dtype), ` ${humanCount(n)}`]));
  const search = h("input", { type: "search", class: "filter", placeholder: "Search tensors (name, dtype)", "aria-label": "Search tensors" });
  const root = buildTree(tensors);
  // The first level opens by itself: that is where people look.
  const treeView = h(
    "div",
    { class: "tree", "aria-label": "Tensors by prefix" },
    root.leaves.map((leaf) => leafRow(leaf.label, leaf.tensor, leaf.n)),
    [...root.children.values()].map((child) => treeNode(child, true))
  );
  const flat = h("div", { class: "tree flat", hidden: true, "aria-label": "Matching tensors" });
  const status = h("p", { class: "meta table-status", hidden: true });
  search.addEventListener("input", () => {
    const query = search.value.trim().toLowerCase();
    treeView.hidden = Boolean(query);
    flat.hidden = !query;
    status.hidden = !query;
    if (!query) return;
    const matching = tensors.filter((t) => t.path.join(".").toLowerCase().includes(query) || t.dtype.toLowerCase() === query);
    flat.replaceChildren(...matching.slice(0, ROW_LIMIT).map((t) => leafRow(t.path.join(" › "), t, numel(t.shape))));
    status.textContent = matching.length > ROW_LIMIT ? `Showing ${ROW_LIMIT} of ${matching.length} matches.` : `${matching.length} match${matching.length === 1 ? "" : "es"}.`;
  });
  return card("Tensors", { id: "tensors", count: tensors.length }, summary, h("div", { class: "table-tools" }, search), treeView, flat, status);
}

function auditCard(audit) {
  const order = { dangerous: 0, not_allowlisted: 1, allowed: 2 };
  const labels = { dangerous: "dangerous", not_allowlisted: "not allowlisted", allowed: "allowed" };
  const globals = [...audit.globals].sort((a, b) => order[a.verdict] - order[b.verdict]);
  const verdict = audit.dangerous.length
    ? h("p", { class: "audit-verdict danger" }, "Unsafe: the pickle calls code that touches your system.")
    : audit.weights_only_loads
      ? h("p", { class: "audit-verdict ok" }, h("code", {}, "torch.load(weights_only=True)"), " accepts every global in this file.")
      : h("p", { class: "audit-verdict warn" }, h("code", {}, "torch.load(weights_only=True)"), " refuses this file: some globals are not on its allowlist (not known to be harmful).");
  const table = h(
    "table",
    { class: "audit" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Global"), h("th", { scope: "col" }, "Verdict"), h("th", { scope: "col", class: "num" }, "Uses"))),
    h("tbody", {}, globals.map((g) => h("tr", { class: g.verdict }, h("td", { class: "key" }, `${g.module}.${g.name}`), h("td", {}, h("span", { class: `chip ${g.verdict}` }, labels[g.verdict] || g.verdict)), h("td", { class: "num" }, String(g.count)))))
  );
  return card("Pickle audit", { id: "audit", count: audit.globals.length, collapsible: true, open: audit.dangerous.length > 0 || !audit.weights_only_loads }, verdict, h("div", { class: "table-wrap" }, table));
}

function shortJson(value, limit = 240) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit)}… (${text.length} characters)` : text;
}

function valuesCard(checkpoint) {
  const rows = [
    ...checkpoint.values.map((v) => [v.path.map((k) => `[${JSON.stringify(k)}]`).join(""), v.value]),
    ...Object.entries(checkpoint.metadata).map(([key, value]) => [`metadata ${key}`, value]),
  ];
  if (!rows.length) return null;
  const table = h("table", { class: "values" }, h("tbody", {}, rows.slice(0, ROW_LIMIT).map(([key, value]) => h("tr", {}, h("th", { scope: "row", class: "key" }, key), h("td", { class: "value" }, shortJson(value))))));
  return card("Other entries and metadata", { id: "values", count: rows.length, collapsible: true, open: false }, h("div", { class: "table-wrap" }, table));
}

function pytorchCard(text) {
  const pre = h("pre", { class: "pytorch-error", id: "pytorch-error" }, text);
  const lines = text.split("\n").length;
  return card("What PyTorch says", { id: "pytorch", count: `${lines} line${lines === 1 ? "" : "s"}`, collapsible: true, open: false }, h("div", { class: "remedy-head" }, h("span", { class: "meta" }, "The RuntimeError load_state_dict(strict=True) raises, verbatim:"), copyButton(text, pre)), pre);
}

function showError(error, pick = null) {
  const kind = error.kind || "internal";
  const message = error.message || String(error);
  let title;
  let className;
  if (kind === "cancelled") {
    title = "Cancelled";
    className = "neutral";
  } else if (isUnreadable(kind)) {
    title = `Unreadable: ${message}`;
    className = "error";
  } else {
    title = `Can't check: ${message}`;
    className = "warn";
  }
  const banner = h(
    "section",
    { class: `verdict ${className}`, id: "verdict", "aria-label": "Verdict", "data-kind": kind },
    h("div", { class: "verdict-head" }, h("span", { class: "verdict-icon", "aria-hidden": "true" }, kind === "cancelled" ? "–" : "!"), h("h2", { id: "verdict-text" }, title)),
    kind === "cancelled" ? h("p", { class: "meta" }, "Nothing was checked. Drop the file again or change the model to run again.") : h("p", { class: "meta" }, "Error kind ", h("code", {}, kind), isUnreadable(kind) ? ". The file is not a checkpoint ckptcheck can read, or it is damaged. Another file will work as usual." : ". Pick a preset or a loader above, or drop a config JSON with the checkpoint."),
    pickNote(pick)
  );
  const parts = [banner];
  const checkpoint = error.checkpoint;
  if (checkpoint) {
    banner.append(h("p", { class: "meta" }, h("code", { class: "file" }, checkpoint.file), ` · ${checkpoint.format} · ${humanBytes(checkpoint.file_bytes)} · `, readLine(checkpoint.bytes_read, checkpoint.file_bytes)));
    if (checkpoint.pickle_audit?.dangerous?.length) parts.push(dangerAlert(checkpoint.pickle_audit.dangerous));
    // The file is readable even if no model was chosen: its weights can be scanned.
    parts.push(scanCard());
    parts.push(tensorCard(checkpoint));
    if (checkpoint.pickle_audit) parts.push(auditCard(checkpoint.pickle_audit));
    if (checkpoint.notes.length) parts.push(card("Notes", { id: "notes", count: checkpoint.notes.length }, h("ul", { class: "notes" }, checkpoint.notes.map((note) => h("li", {}, withCode(sentence(note)))))));
    const more = valuesCard(checkpoint);
    if (more) parts.push(more);
  }
  els.result.replaceChildren(...parts);
  finish(kind === "cancelled" ? "cancelled" : "error");
}

// ---------------------------------------------------------------- start

function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  const script = new URL("./sw.js", import.meta.url);
  // The page lives one level above the worker script; the server must send
  // `Service-Worker-Allowed: /` for that scope. Without it the worker still
  // serves www/ (the embed page) and this page simply is not offline.
  navigator.serviceWorker
    .register(script, { scope: new URL("../", import.meta.url).pathname })
    .catch(() => navigator.serviceWorker.register(script))
    .catch(() => {});
}

setUpDropZone();
els.preset.addEventListener("change", settingsChanged);
els.loader.addEventListener("change", settingsChanged);
els.presetSearch.addEventListener("input", filterPresets);
els.demo.addEventListener("click", runDemo);
els.cancel.addEventListener("click", () => client.cancel());
window.addEventListener("hashchange", () => {
  applyHash();
  if (lastFiles) run(lastFiles, lastPick);
});
applyHash();
loadPresets();
registerServiceWorker();
