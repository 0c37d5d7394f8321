// The page's fixed elements (by id, from index.html) and the small DOM
// pieces every view builds with: a titled card, a copy button, keys that
// wrap at their dots, and Rust's lowercase messages turned into sentences.
// It knows nothing of checkpoints; `h()` itself lives in client.js, shared
// with the widget.

import { copyText, h } from "../client.js";

// Rows rendered at once in long lists; the filter narrows the rest.
export const ROW_LIMIT = 1000;

const $ = (id) => document.getElementById(id);
export const els = {
  drop: $("drop"),
  file: $("file"),
  preset: $("preset"),
  presetSearch: $("preset-search"),
  presetNames: $("preset-names"),
  loader: $("loader"),
  reference: $("reference"),
  snippetHelp: $("snippet-help"),
  snippet: $("snippet"),
  demo: $("demo"),
  progress: $("progress"),
  progressText: $("progress-text"),
  progressTime: $("progress-time"),
  cancel: $("cancel"),
  result: $("result"),
};

export function card(title, { id, count, open = true, collapsible = false, className = "" } = {}, ...body) {
  const heading = [title, count !== undefined ? h("span", { class: "count" }, String(count)) : null];
  if (collapsible) {
    return h("details", { class: `card ${className}`, id, open: open || null }, h("summary", {}, h("h2", {}, heading)), body);
  }
  return h("section", { class: `card ${className}`, id, "aria-label": title }, h("h2", {}, heading), body);
}

export function copyButton(text, target, label = "Copy") {
  const button = h("button", { type: "button", class: "button small copy" }, label);
  button.addEventListener("click", () => copyText(text, button, target));
  return button;
}

/** A dotted key that wraps at its dots on narrow screens. */
export function breakable(key) {
  return String(key)
    .split(/(?<=\.)/)
    .flatMap((part, i) => (i ? [h("wbr"), part] : [part]));
}

/** Rust messages are lowercase (the error style); a paragraph starts with a capital. */
export function sentence(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}
