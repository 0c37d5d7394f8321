// Where checkpoints come from: the drop zone (files, or a folder read
// recursively and narrowed to the checkpoint's files, or a diffusers
// pipeline folder kept whole with its paths), the file picker
// behind it (click, Enter or Space), and the demo button, which fetches a
// committed fixture from the site. Each ends in check.js's `run`.

import { run } from "./check.js";
import { els } from "./dom.js";
import { writeHash } from "./hash.js";
import { ensurePresetOption, filterPresets } from "./presets.js";
import { showProgress } from "./session.js";
import { showError } from "./verdict.js";

const DEMO_URL = new URL("../demo/clip_cn_vit-l-14-336.shapes.pt", import.meta.url);
const DEMO_PRESET = "ViT-B-16@RoBERTa-wwm-ext-base-chinese";
// The loader cn_clip's fine-tune script uses: what people who hit this run.
const DEMO_LOADER = "cn-clip";

/** Every file under `entry`, with its path inside the dropped folder
 * (`unet/config.json`), which a diffusers pipeline folder needs. */
async function readDirectory(entry, depth = 0, out = [], prefix = "") {
  if (depth > 3 || out.length > 5000) return out;
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) {
      if (child.isDirectory) await readDirectory(child, depth + 1, out, `${prefix}${child.name}/`);
      else out.push({ file: await new Promise((resolve, reject) => child.file(resolve, reject)), path: `${prefix}${child.name}` });
    }
  }
  return out;
}

/** A diffusers pipeline folder (model_index.json at the top, a subfolder
 * per component): its configs and weights with their paths, checked
 * component by component. Tokenizer vocabularies stay out. */
function pickPipelineFiles(entries, name) {
  if (!entries.some((e) => e.path === "model_index.json")) return null;
  const keep = entries.filter((e) => /\.(json|safetensors|bin)$/i.test(e.path) && !/^tokenizer/.test(e.path));
  return { files: keep.map((e) => e.file), paths: keep.map((e) => e.path), skipped: entries.length - keep.length, folder: true, pipeline: name };
}

/** From a dropped folder keep the checkpoint: weights, shard indexes,
 * config.json and a PEFT adapter's adapter_config.json; safetensors over
 * pickles when a folder has both (the way transformers picks). Tokenizers,
 * READMEs and images stay out. */
function pickCheckpointFiles(files) {
  const weights = /\.(safetensors|bin|pt|pth|ckpt|gguf)$/i;
  let keep = files.filter((f) => weights.test(f.name) || /\.index\.json$/i.test(f.name) || f.name === "config.json" || f.name === "adapter_config.json");
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
      const found = await readDirectory(entry);
      if (items.length === 1) {
        const pipeline = pickPipelineFiles(found, entry.name);
        if (pipeline) return pipeline;
      }
      files.push(...found.map((e) => e.file));
    } else if (plain[index]) {
      files.push(plain[index]);
    }
  }
  return folder ? { ...pickCheckpointFiles(files), folder } : { files, skipped: 0, folder };
}

export function setUpDropZone() {
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

export async function runDemo() {
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
