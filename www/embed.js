// `<ckpt-check preset="..." loader="..." compact>`: the checker as a widget
// for documentation pages, in shadow DOM, with its own drop zone and demo
// button. It runs the same worker.js and wasm as the page (one worker per
// widget, started on first use) and shows the verdict, the reasons and the
// fix; the full report is one link away on the page. One script tag:
//   <script type="module" src="https://…/www/embed.js"></script>
// It dispatches `ckpt-check-result` (detail: the report) after each check.

import { CheckClient, copyText, h, humanBytes, isUnreadable, verdictLine, withCode } from "./client.js";

const STYLE_URL = new URL("./embed.css", import.meta.url);
const DEMO_URL = new URL("./demo/clip_cn_vit-l-14-336.shapes.pt", import.meta.url);
const PAGE_URL = new URL("../index.html", import.meta.url);

class CkptCheck extends HTMLElement {
  static observedAttributes = ["preset", "loader", "compact"];

  constructor() {
    super();
    this.client = null;
    this.files = null;
    this.runs = 0;
    this.busy = false;
    const root = this.attachShadow({ mode: "open" });
    this.input = h("input", { type: "file", multiple: true, tabindex: "-1", class: "drop-input", "aria-label": "Choose checkpoint files" });
    this.prompt = h("span", { class: "prompt" });
    this.drop = h("div", { class: "drop", tabindex: "0", role: "button", part: "drop" }, this.input, h("strong", {}, "Drop a checkpoint"), this.prompt);
    this.demo = h("button", { type: "button", class: "button", part: "demo-button" }, "Try the demo");
    this.progress = h("progress", { hidden: true, "aria-label": "Checking" });
    this.cancel = h("button", { type: "button", class: "button", hidden: true }, "Cancel");
    this.out = h("div", { class: "out", "aria-live": "polite", part: "result", "data-state": "idle" });
    root.append(
      h("link", { rel: "stylesheet", href: STYLE_URL.href }),
      h("div", { class: "box" }, this.drop, h("div", { class: "bar" }, this.demo, this.progress, this.cancel, h("span", { class: "brand" }, "ckptcheck · runs in your browser, uploads nothing")), this.out)
    );
    this.drop.addEventListener("dragenter", (event) => {
      event.preventDefault();
      this.drop.classList.add("over");
    });
    this.drop.addEventListener("dragover", (event) => event.preventDefault());
    this.drop.addEventListener("dragleave", (event) => {
      if (!this.drop.contains(event.relatedTarget)) this.drop.classList.remove("over");
    });
    this.drop.addEventListener("drop", (event) => {
      event.preventDefault();
      this.drop.classList.remove("over");
      const files = [...(event.dataTransfer?.files || [])];
      if (files.length) this.check(files);
    });
    this.drop.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.input.click();
      }
    });
    this.input.addEventListener("change", () => {
      const files = [...this.input.files];
      this.input.value = "";
      if (files.length) this.check(files);
    });
    this.demo.addEventListener("click", () => this.runDemo());
    this.cancel.addEventListener("click", () => this.client?.cancel());
  }

  get preset() {
    return this.getAttribute("preset") ?? "infer";
  }

  get loader() {
    return this.getAttribute("loader") ?? "strict";
  }

  connectedCallback() {
    this.describe();
  }

  attributeChangedCallback(name) {
    this.describe();
    if (name !== "compact" && this.files && this.isConnected) this.check(this.files);
  }

  describe() {
    const target = this.preset === "infer" ? "the model it matches" : this.preset;
    this.prompt.replaceChildren(" to check it against ", h("code", {}, target), ` (loader ${this.loader}). Or click to choose.`);
  }

  async runDemo() {
    try {
      const response = await fetch(DEMO_URL);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const file = new File([await response.blob()], "clip_cn_vit-l-14-336.shapes.pt");
      await this.check([file]);
    } catch (error) {
      this.showError({ kind: "demo_unavailable", message: `could not fetch the demo checkpoint: ${error.message}` });
    }
  }

  async check(files) {
    this.client ??= new CheckClient();
    if (this.busy) this.client.cancel();
    this.busy = true;
    this.files = files;
    const run = ++this.runs;
    this.progress.hidden = false;
    this.cancel.hidden = false;
    this.out.dataset.state = "running";
    try {
      const result = await this.client.request("check", { files, preset: this.preset, loader: this.loader });
      if (run !== this.runs) return;
      this.render(result);
      this.dispatchEvent(new CustomEvent("ckpt-check-result", { detail: result.report, bubbles: true, composed: true }));
      this.done("done");
    } catch (error) {
      if (run !== this.runs) return;
      this.showError(error);
    }
  }

  done(state) {
    this.busy = false;
    this.progress.hidden = true;
    this.cancel.hidden = true;
    this.out.dataset.state = state;
  }

  render(result) {
    const { report, checkpoint } = result;
    const compact = this.hasAttribute("compact");
    const dangerous = [...(checkpoint.pickle_audit?.dangerous || []), ...(checkpoint.pickle_audit?.suspicious || [])];
    const link = new URL(PAGE_URL);
    link.hash = new URLSearchParams({ preset: this.preset, loader: this.loader }).toString();
    const parts = [
      h(
        "div",
        { class: `verdict ${report.verdict === "loads-with-warnings" ? "warn" : report.loads ? "ok" : "bad"}`, part: "verdict" },
        h("strong", { class: "verdict-text" }, verdictLine(result)),
        h("span", { class: "meta" }, `${report.file} · ${humanBytes(report.file_bytes)} · read ${humanBytes(report.bytes_read)} · into ${report.model}, loader ${report.loader}`)
      ),
    ];
    if (dangerous.length) parts.push(h("p", { class: "danger" }, "Unsafe pickle: unpickling it imports and calls ", dangerous.join(", "), ". Do not torch.load it."));
    if (report.inferred?.preset && report.inferred.preset !== report.model) {
      parts.push(h("p", { class: "match" }, "The checkpoint is ", h("code", {}, report.inferred.preset), "."));
    }
    if (!compact && report.explanation.length) {
      parts.push(h("ul", { class: "why" }, report.explanation.map((cause) => h("li", {}, withCode(cause.text)))));
    }
    if (report.fix) {
      parts.push(h("p", { class: "fix" }, h("strong", {}, "Fix: "), withCode(report.fix.summary)));
      if (!compact) {
        for (const remedy of report.fix.remedies) {
          const pre = h("pre", {}, remedy.text);
          const button = h("button", { type: "button", class: "button small" }, "Copy");
          button.addEventListener("click", () => copyText(remedy.text, button, pre));
          parts.push(h("div", { class: "remedy" }, h("div", { class: "remedy-head" }, h("span", {}, remedy.label), button), pre));
        }
      }
    }
    parts.push(h("p", { class: "more" }, h("a", { href: link.href, target: "_blank", rel: "noopener" }, "Full report on the ckptcheck page"), " (drop the file there again: it never leaves your computer)"));
    this.out.replaceChildren(...parts);
  }

  showError(error) {
    const kind = error.kind || "internal";
    const text = kind === "cancelled" ? "Cancelled" : `${kind === "unsafe_pickle" ? "Unsafe" : isUnreadable(kind) ? "Unreadable" : "Can't check"}: ${error.message}`;
    const dangerous = [...(error.checkpoint?.pickle_audit?.dangerous || []), ...(error.checkpoint?.pickle_audit?.suspicious || [])];
    this.out.replaceChildren(
      h("div", { class: `verdict ${kind === "cancelled" ? "neutral" : "error"}`, part: "verdict" }, h("strong", { class: "verdict-text" }, text)),
      dangerous.length ? h("p", { class: "danger" }, "Unsafe pickle: unpickling it imports and calls ", dangerous.join(", "), ". Do not torch.load it.") : null
    );
    this.done(kind === "cancelled" ? "cancelled" : "error");
  }
}

if (!customElements.get("ckpt-check")) customElements.define("ckpt-check", CkptCheck);
