// The "Scan weights" card: reads every weight of the files last checked
// once, in the worker, and reports NaN, Inf and all-zero tensors, with the
// progress bar (bytes done of total, rate) and Cancel. The statistics are
// the wasm's scan report; this shows them.

import { h, humanBytes, withCode } from "../client.js";
import { ROW_LIMIT, breakable, card, els, sentence } from "./dom.js";
import { client, hideProgress, session, showProgress } from "./session.js";

export function scanCard() {
  const status = h("p", { class: "meta", id: "scan-status" }, "Read every weight once to find values that break training: NaN, Inf, all-zero tensors.");
  const output = h("div", { id: "scan-output" });
  const button = h("button", { type: "button", class: "button", id: "scan-weights" }, "Scan weights");
  button.onclick = async () => {
    const files = session.files;
    if (!files) return;
    button.disabled = true;
    const started = performance.now();
    showProgress("Scanning weights");
    const bar = els.progress.querySelector("progress");
    try {
      const { scan } = await client.request("scan", {
        files,
        onProgress: (message) => {
          if (message.stage !== "scan" || !message.total) return;
          const seconds = (performance.now() - started) / 1000;
          bar.max = message.total;
          bar.value = message.done;
          const rate = seconds > 0 ? ` · ${humanBytes(message.done / seconds)}/s` : "";
          els.progressText.textContent = `Scanning weights: ${humanBytes(message.done)} of ${humanBytes(message.total)}${rate}`;
        },
      });
      const seconds = (performance.now() - started) / 1000;
      const summary = scan.summary;
      status.replaceChildren(
        h("strong", { id: "scan-verdict" }, scan.ok ? "✓ No NaN, no Inf, no all-zero tensor" : `✗ ${summary.problems.length} problem${summary.problems.length === 1 ? "" : "s"}`),
        ` · ${summary.scanned} of ${summary.tensors} tensors · ${humanBytes(scan.bytes_scanned)} in ${seconds.toFixed(2)} s`
      );
      const flagged = scan.tensors.filter((t) => t.nan || t.inf || t.all_zero);
      const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toPrecision(4));
      const rows = (flagged.length ? flagged : scan.tensors).slice(0, ROW_LIMIT);
      output.replaceChildren(
        summary.problems.length ? h("ul", { class: "notes", id: "scan-problems" }, summary.problems.map((p) => h("li", {}, withCode(sentence(p))))) : "",
        h("p", { class: "meta" }, flagged.length ? "Tensors with problems:" : "Every tensor:"),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "findings", id: "scan-table" },
            h("thead", {}, h("tr", {}, ["tensor", "dtype", "NaN", "Inf", "min", "max", "mean", "std"].map((c) => h("th", {}, c)))),
            h("tbody", {}, rows.map((t) => h("tr", { class: t.nan || t.inf || t.all_zero ? "bad" : "" }, h("td", { class: "key" }, breakable(t.name)), h("td", {}, t.dtype), h("td", { class: "num" }, String(t.nan)), h("td", { class: "num" }, String(t.inf)), h("td", { class: "num" }, fmt(t.min)), h("td", { class: "num" }, fmt(t.max)), h("td", { class: "num" }, fmt(t.mean)), h("td", { class: "num" }, fmt(t.std)))))
          )
        )
      );
    } catch (error) {
      status.replaceChildren(h("strong", {}, error.kind === "cancelled" ? "Scan cancelled" : "Could not scan: "), error.kind === "cancelled" ? "" : sentence(error.message));
    } finally {
      bar.removeAttribute("value");
      hideProgress();
      button.disabled = false;
    }
  };
  return card("Scan weights", { id: "scan" }, status, h("div", { class: "export" }, button), output);
}
