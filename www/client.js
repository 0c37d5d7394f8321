// The page side of the worker protocol, shared by the page (app.js) and the
// widget (embed.js): numbered requests, promises for their answers, and
// cancellation by terminating the worker and starting a new one. It also
// holds the few display helpers both render with. No DOM beyond `h()`.

const WORKER_URL = new URL("./worker.js", import.meta.url);

/** An error the page shows: `kind` is the wasm's ErrorKind tag. */
export class CheckError extends Error {
  constructor(kind, message, checkpoint = null) {
    super(message);
    this.kind = kind;
    this.checkpoint = checkpoint;
  }
}

export class CheckClient {
  constructor() {
    this.nextId = 1;
    this.pending = new Map();
    this.start();
  }

  start() {
    this.worker = new Worker(WORKER_URL, { type: "module" });
    this.worker.onmessage = (event) => this.receive(event.data);
    // A worker that fails to load (a missing file, a CSP refusal) fails
    // every request it holds; the next request gets a fresh worker.
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.restart(new CheckError("io", `the checker failed to start: ${event.message || "worker error"}`));
    };
  }

  receive(message) {
    const entry = this.pending.get(message.id);
    if (!entry) return;
    if (message.type === "progress") {
      entry.onProgress?.(message);
      return;
    }
    this.pending.delete(message.id);
    if (message.type === "result") {
      entry.resolve(message);
    } else {
      entry.reject(new CheckError(message.kind, message.message, message.checkpoint || null));
      if (message.fatal) this.restart(null);
    }
  }

  /** `type` is "check", "inspect" or "presets"; `files` are File objects. */
  request(type, { files = [], preset = "infer", loader = "strict", onProgress } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ type, id, files, preset, loader });
    });
  }

  /** Stop whatever runs now: the wasm call is synchronous, so only
   * terminating the worker stops it. Pending requests reject as cancelled. */
  cancel() {
    this.restart(new CheckError("cancelled", "cancelled"));
  }

  restart(error) {
    this.worker.terminate();
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.start();
    for (const entry of pending) {
      entry.reject(error || new CheckError("internal", "the checker stopped; try again"));
    }
  }
}

/** "197.3 KiB", as the CLI prints sizes. */
export function humanBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The verdict line, as the wasm words it (`verdict` of check_files). */
export function verdictLine(result) {
  return result.verdict;
}

/** Errors about the file (it could not be read) versus about the request. */
export function isUnreadable(kind) {
  return !["bad_config", "unknown_preset", "bad_argument", "cancelled", "internal", "demo_unavailable"].includes(kind);
}

/** `h("p", {class: "x"}, "text", child)`: elements with text set as text,
 * never as HTML (names in checkpoints are untrusted). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Text with `backticked` spans as <code>, as the report writes commands. */
export function withCode(text) {
  return String(text)
    .split(/(`[^`]*`)/)
    .filter((part) => part !== "")
    .map((part) => (part.startsWith("`") && part.endsWith("`") && part.length > 1 ? h("code", {}, part.slice(1, -1)) : part));
}

/** Copy to the clipboard; falls back to selecting the text for Ctrl+C. */
export async function copyText(text, button, target) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    if (target) window.getSelection()?.selectAllChildren(target);
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

/** Save text as a file through a Blob URL. */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Number of parameters, "428.1M". */
export function humanCount(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function numel(shape) {
  return shape.reduce((acc, d) => acc * d, 1);
}

export function shapeText(shape) {
  return `[${shape.join(", ")}]`;
}
