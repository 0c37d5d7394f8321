// The report's words, as cards: why it does not load (causes in config
// terms, with their counts), the fix (remedies to copy), PyTorch's error
// text verbatim, and the notes. The wasm writes every sentence; this only
// lays them out.

import { h, withCode } from "../client.js";
import { card, copyButton, sentence } from "./dom.js";

export function explanationCard(report) {
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

/** The fix; `write` (optional) is the "Write fixed file" button that
 * applies it and saves the result. */
export function fixCard(fix, write = null) {
  return card(
    "Fix",
    { id: "fix", className: "fix" },
    h("p", { id: "fix-summary", class: "fix-summary" }, withCode(sentence(fix.summary))),
    write,
    fix.remedies.map((remedy) => {
      const pre = h("pre", { class: "remedy-text" }, remedy.text);
      return h("div", { class: "remedy" }, h("div", { class: "remedy-head" }, h("span", { class: "remedy-label" }, remedy.label), copyButton(remedy.text, pre)), pre);
    })
  );
}

export function notesCard(notes) {
  return card("Notes", { id: "notes", count: notes.length }, h("ul", { class: "notes" }, notes.map((note) => h("li", {}, withCode(sentence(note))))));
}

/** What the loader logs though the load does not raise: transformers'
 * LOAD REPORT table, or PEFT's warning. */
export function loadReportCard(text, loader) {
  const pre = h("pre", { class: "pytorch-error", id: "load-report" }, text);
  const who = loader === "peft" ? "What PEFT warns" : "What transformers logs";
  return card(who, { id: "load-report-card", collapsible: true, open: true }, h("div", { class: "remedy-head" }, h("span", { class: "meta" }, "Logged as a warning, verbatim; the load goes on:"), copyButton(text, pre)), pre);
}

export function pytorchCard(text) {
  const pre = h("pre", { class: "pytorch-error", id: "pytorch-error" }, text);
  const lines = text.split("\n").length;
  return card("What PyTorch says", { id: "pytorch", count: `${lines} line${lines === 1 ? "" : "s"}`, collapsible: true, open: false }, h("div", { class: "remedy-head" }, h("span", { class: "meta" }, "The RuntimeError load_state_dict(strict=True) raises, verbatim:"), copyButton(text, pre)), pre);
}
