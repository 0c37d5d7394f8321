// Lays out a diffusers pipeline folder's result: the verdict banner (every
// component loads and fits the others, or not), one row per component with
// what its library's from_pretrained makes of it, and where components
// disagree. Every judgement comes from the wasm (src/pipeline.rs).

import { h } from "../client.js";
import { els } from "./dom.js";

function componentLine(component) {
  switch (component.status) {
    case "checked": {
      const report = component.report;
      const verdict = {
        loads: "Loads",
        "loads-with-warnings": `Loads with warnings: ${report.warnings.join("; ")}`,
        "wont-load": `Won't load: ${report.missing_keys.length} missing, ${report.unexpected_keys.length} unexpected, ${report.size_mismatches.length} size mismatches`,
      }[report.verdict];
      return [
        h("span", { class: `component-verdict ${report.verdict === "wont-load" ? "bad" : report.verdict === "loads" ? "ok" : "warn"}` }, verdict),
        ` · ${component.files.join(", ")} · loader `,
        h("code", {}, report.loader),
        report.explanation.length ? h("p", { class: "meta" }, report.explanation[0].text) : null,
        report.pytorch_error ? h("pre", { class: "error-text" }, report.pytorch_error) : null,
      ];
    }
    case "no-weights":
      return "no weights (configs or vocabulary)";
    case "absent":
      return "not saved with the pipeline";
    case "not-checked":
      return `not checked: ${component.reason}`;
    case "fails":
      return h("span", { class: "component-verdict bad" }, component.error);
    default:
      return component.status;
  }
}

/** A pipeline check's answer (`{pipeline, text}` from the worker). */
export function renderPipeline(result) {
  const report = result.pipeline;
  const state = report.consistent ? "ok" : "bad";
  const verdict = report.consistent
    ? "Loads: every component loads and fits the others"
    : report.loads
      ? "Loads, but the components do not fit each other"
      : "Won't load";
  const banner = h(
    "section",
    { class: `verdict ${state}`, id: "verdict", "aria-label": "Verdict" },
    h("div", { class: "verdict-head" }, h("span", { class: "verdict-icon", "aria-hidden": "true" }, state === "ok" ? "✓" : "✗"), h("h2", { id: "verdict-text" }, verdict)),
    h("p", { class: "meta" }, h("strong", { id: "pipeline-class" }, report.pipeline_class), ` · the folder `, h("code", { class: "file" }, report.folder), ` · ${report.components.length} components`),
    report.error ? h("p", { class: "meta" }, report.error) : null
  );
  const rows = report.components.map((component) =>
    h(
      "tr",
      { "data-component": component.name, "data-status": component.status },
      h("th", { scope: "row" }, h("code", {}, component.name)),
      h("td", {}, component.class_name || "None"),
      h("td", {}, componentLine(component))
    )
  );
  const components = h(
    "section",
    { class: "card", id: "components", "aria-label": "Components" },
    h("h2", {}, "Components"),
    h("table", { class: "components" }, h("thead", {}, h("tr", {}, h("th", {}, "Component"), h("th", {}, "Class"), h("th", {}, "from_pretrained"))), h("tbody", {}, ...rows))
  );
  const parts = [banner];
  if (report.disagreements.length) {
    parts.push(h("section", { class: "card", id: "disagreements", "aria-label": "Components that do not fit" }, h("h2", {}, "Components that do not fit each other"), h("ul", {}, ...report.disagreements.map((d) => h("li", {}, d.text)))));
  }
  parts.push(components);
  if (report.notes.length) parts.push(h("section", { class: "card" }, h("h2", {}, "Notes"), h("ul", {}, ...report.notes.map((note) => h("li", {}, note)))));
  els.result.replaceChildren(...parts);
}
