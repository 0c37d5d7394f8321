// The page's entry point: wires the controls in index.html to the views in
// app/ and starts the page (presets, the URL hash, the service worker). The
// views are plain ES modules, one job each:
//
//   app/dom.js       the page's fixed elements; card, copy button, sentence
//   app/session.js   the worker client, the files last checked, progress
//   app/presets.js   the preset picker and its search
//   app/hash.js      preset and loader in the URL hash
//   app/intake.js    the drop zone, the file picker, the demo
//   app/check.js     running a check, and again when the pickers change
//   app/verdict.js   the verdict banner and the order of the cards
//   app/explain.js   why, the fix, PyTorch's text, notes
//   app/findings.js  missing, unexpected, size mismatches
//   app/tensors.js   the tensor tree, other entries and metadata
//   app/audit.js     the pickle audit
//   app/verify.js    "Prove it loads"
//   app/scan.js      "Scan weights"
//   app/write.js     "Write safetensors", "Write fixed file"
//
// Nothing here or there decides anything about checkpoints: the wasm does,
// in worker.js.

import { rerun, settingsChanged } from "./app/check.js";
import { copyButton, els } from "./app/dom.js";
import { applyHash } from "./app/hash.js";
import { runDemo, setUpDropZone } from "./app/intake.js";
import { filterPresets, loadPresets } from "./app/presets.js";
import { client } from "./app/session.js";
import { showError } from "./app/verdict.js";

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
els.presetSearch.addEventListener("input", () => {
  if (filterPresets()) settingsChanged();
});
els.demo.addEventListener("click", runDemo);
els.reference.addEventListener("change", rerun);
// The dump snippet comes from the wasm (one copy of it, the one the CLI prints).
els.snippetHelp.addEventListener("toggle", async () => {
  if (!els.snippetHelp.open || els.snippet.textContent) return;
  const { snippet } = await client.request("snippet");
  els.snippet.textContent = snippet;
  els.snippet.before(copyButton(snippet, els.snippet, "Copy the snippet"));
});
els.cancel.addEventListener("click", () => client.cancel());
window.addEventListener("hashchange", () => {
  applyHash();
  rerun();
});
applyHash();
loadPresets().then(applyHash, (error) => showError(error));
registerServiceWorker();
