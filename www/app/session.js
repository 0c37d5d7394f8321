// The state of the check in progress: the one worker client, the files and
// folder pick it runs on (the scan and verify cards reuse them), the run
// number that lets a newer check win over an older one, and the progress
// line with its timer and Cancel. It renders no result.

import { CheckClient } from "../client.js";
import { els } from "./dom.js";

export const client = new CheckClient();

/** `files` and `pick` of the last check, `runCount` numbering checks, and
 * `checking` while one runs. */
export const session = { files: null, pick: null, runCount: 0, checking: false };

let timer = null;

export function showProgress(text) {
  const started = performance.now();
  els.progress.hidden = false;
  els.progressText.textContent = text;
  els.progressTime.textContent = "";
  clearInterval(timer);
  timer = setInterval(() => {
    els.progressTime.textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
  }, 100);
}

export function hideProgress() {
  clearInterval(timer);
  els.progress.hidden = true;
}

/** Marks the result region settled: tests and the page bench wait on
 * `data-state` and `data-run`. */
export function finish(state) {
  hideProgress();
  els.result.dataset.state = state;
  els.result.dataset.run = String(session.runCount);
  els.result.removeAttribute("aria-busy");
}
