// What the checkpoint holds: the tensor tree (a node per dotted prefix,
// children drawn when first opened, a search that lists matches flat) and
// the card of its other entries and metadata. It reads the checkpoint the
// wasm listed; it checks nothing.

import { h, humanCount, numel, shapeText } from "../client.js";
import { ROW_LIMIT, breakable, card } from "./dom.js";

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

export function tensorCard(checkpoint) {
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

function shortJson(value, limit = 240) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit)}… (${text.length} characters)` : text;
}

/** Non-tensor entries and the file's metadata; null when there are none. */
export function valuesCard(checkpoint) {
  const rows = [
    ...checkpoint.values.map((v) => [v.path.map((k) => `[${JSON.stringify(k)}]`).join(""), v.value]),
    ...Object.entries(checkpoint.metadata).map(([key, value]) => [`metadata ${key}`, value]),
  ];
  if (!rows.length) return null;
  const table = h("table", { class: "values" }, h("tbody", {}, rows.slice(0, ROW_LIMIT).map(([key, value]) => h("tr", {}, h("th", { scope: "row", class: "key" }, key), h("td", { class: "value" }, shortJson(value))))));
  return card("Other entries and metadata", { id: "values", count: rows.length, collapsible: true, open: false }, h("div", { class: "table-wrap" }, table));
}
