// Lays out a result in #result: the verdict banner of a report (or of an
// error, with whatever of the checkpoint could still be read) and the cards
// under it, in the page's order. Each card comes from its own view module;
// this decides only which cards a result gets and where.

import { download, h, humanBytes, isUnreadable, verdictLine } from "../client.js";
import { auditCard, dangerAlert, unsafeNames } from "./audit.js";
import { els } from "./dom.js";
import { explanationCard, fixCard, loadReportCard, notesCard, pytorchCard } from "./explain.js";
import { findingsCard } from "./findings.js";
import { scanCard } from "./scan.js";
import { finish } from "./session.js";
import { tensorCard, valuesCard } from "./tensors.js";
import { verifyCard } from "./verify.js";
import { fixButton, writeBar } from "./write.js";

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

/** The banner's colour: loads, loads with warnings (from_pretrained or
 * PEFT only logs what it left out), or won't load. */
export function verdictClass(report) {
  if (report.verdict === "loads-with-warnings") return "warn";
  return report.loads ? "ok" : "bad";
}

/** A check's answer. `usePreset(name)` re-checks against the preset the
 * checkpoint matches ("Check against it"). */
export function renderReport(result, pick, { usePreset }) {
  const { report, checkpoint, markdown } = result;
  const verdict = verdictLine(result);
  const audit = checkpoint.pickle_audit || null;
  const dangerous = audit ? unsafeNames(audit) : report.unsafe_globals || [];
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
    { class: `verdict ${verdictClass(report)}`, id: "verdict", "aria-label": "Verdict" },
    h("div", { class: "verdict-head" }, h("span", { class: "verdict-icon", "aria-hidden": "true" }, { ok: "✓", warn: "!", bad: "✗" }[verdictClass(report)]), h("h2", { id: "verdict-text" }, verdict), exportBar),
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
    pickNote(pick),
    writeBar(report)
  );

  const parts = [banner];
  if (dangerous.length) parts.push(dangerAlert(dangerous));
  if (report.explanation.length) parts.push(explanationCard(report));
  if (report.fix) parts.push(fixCard(report.fix, fixButton(report, "write-fixed-remedy")));
  if (report.verdict !== "loads") parts.push(findingsCard(report, checkpoint));
  if (report.load_report) parts.push(loadReportCard(report.load_report, report.loader));
  parts.push(tensorCard(checkpoint));
  if (audit) parts.push(auditCard(audit));
  const notes = [...report.notes, ...checkpoint.notes.filter((note) => !report.notes.includes(note))];
  if (notes.length) parts.push(notesCard(notes));
  const more = valuesCard(checkpoint);
  if (more) parts.push(more);
  if (report.pytorch_error) parts.push(pytorchCard(report.pytorch_error));
  // Shapes that match are necessary, not sufficient: offer to run the model
  // (not for an adapter: it is not a model of its own).
  const runnable = report.loads && report.loader !== "peft";
  if (runnable) parts.splice(1, 0, verifyCard(report));
  parts.splice(runnable ? 2 : 1, 0, scanCard());
  els.result.replaceChildren(...parts);
}

/** A check that failed, was cancelled, or never started; with the
 * checkpoint the error carries, what it holds is still shown. */
export function showError(error, pick = null) {
  const kind = error.kind || "internal";
  const message = error.message || String(error);
  let title;
  let className;
  if (kind === "cancelled") {
    title = "Cancelled";
    className = "neutral";
  } else if (kind === "unsafe_pickle") {
    // A pickle file (plain, joblib, .npy/.npz, in a zip or 7z) that could
    // run code: the answer is the audit's, not "unreadable".
    title = `Unsafe: ${message}`;
    className = "error";
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
    // Converting needs no model: the file can still be written as safetensors.
    if (!checkpoint.pickle_audit?.dangerous?.length) banner.append(writeBar({ loads: true }));
    if (unsafeNames(checkpoint.pickle_audit).length) parts.push(dangerAlert(unsafeNames(checkpoint.pickle_audit)));
    // The file is readable even if no model was chosen: its weights can be scanned.
    parts.push(scanCard());
    parts.push(tensorCard(checkpoint));
    if (checkpoint.pickle_audit) parts.push(auditCard(checkpoint.pickle_audit));
    if (checkpoint.notes.length) parts.push(notesCard(checkpoint.notes));
    const more = valuesCard(checkpoint);
    if (more) parts.push(more);
  }
  els.result.replaceChildren(...parts);
  finish(kind === "cancelled" ? "cancelled" : "error");
}
