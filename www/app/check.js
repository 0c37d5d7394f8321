// Runs a check: one at a time (a new one cancels whatever runs), with the
// progress line, and hands the answer to the verdict view; runs it again
// when the preset or the loader changes. It decides nothing about
// checkpoints: every verdict, explanation and fix comes from the wasm,
// through worker.js.

import { humanBytes } from "../client.js";
import { els } from "./dom.js";
import { writeHash } from "./hash.js";
import { ensurePresetOption } from "./presets.js";
import { client, finish, session, showProgress } from "./session.js";
import { renderPipeline } from "./pipeline.js";
import { renderReport, showError } from "./verdict.js";

/** Check `files` against the picked preset and loader. `pick` says how
 * they were chosen (`{files, skipped, folder, demo}`), for the banner. */
export async function run(files, pick = null) {
  // One check at a time: a new one replaces whatever runs.
  if (session.checking) client.cancel();
  session.checking = true;
  session.files = files;
  session.pick = pick;
  const run = ++session.runCount;
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const name = files.length === 1 ? files[0].name : `${files.length} files`;
  els.result.dataset.state = "running";
  els.result.setAttribute("aria-busy", "true");
  showProgress(`Checking ${pick?.pipeline ? `the pipeline ${pick.pipeline}` : name} (${humanBytes(total)})`);
  try {
    if (pick?.pipeline) {
      const result = await client.request("pipeline", { files, paths: pick.paths, folder: pick.pipeline, variant: "" });
      if (run !== session.runCount) return;
      session.checking = false;
      renderPipeline(result);
      finish("done");
      return;
    }
    const result = await client.request("check", {
      files,
      preset: els.preset.value,
      loader: els.loader.value,
      reference: [...(els.reference?.files || [])],
      onProgress: (message) => {
        if (run === session.runCount) els.progressText.textContent = `${message.text[0].toUpperCase()}${message.text.slice(1)} (${humanBytes(total)})`;
      },
    });
    if (run !== session.runCount) return;
    session.checking = false;
    renderReport(result, pick, { usePreset });
    finish("done");
  } catch (error) {
    if (run !== session.runCount) return;
    session.checking = false;
    showError(error, pick);
  }
}

/** The files of the last check, checked again with the pickers as they are. */
export function rerun() {
  if (session.files) run(session.files, session.pick);
}

export function settingsChanged() {
  writeHash();
  rerun();
}

function usePreset(name) {
  ensurePresetOption(name);
  els.preset.value = name;
  settingsChanged();
}
