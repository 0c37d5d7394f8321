// The findings table of a checkpoint that does not load: missing keys,
// unexpected keys and size mismatches in PyTorch's order, with the shapes
// on both sides, a key filter and a toggle per kind. Long lists draw the
// first ROW_LIMIT rows; the filter narrows the rest.

import { h, shapeText } from "../client.js";
import { ROW_LIMIT, breakable, card } from "./dom.js";

export function findingsCard(report, checkpoint) {
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
