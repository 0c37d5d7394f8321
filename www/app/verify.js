// The "Prove it loads" card, offered when the shapes match: runs the model
// on a fixed input on WebGPU (checked against the CPU run), or on the
// wasm CPU backend where the browser has no GPU, and shows the verdict
// and the report text the wasm wrote.

import { h } from "../client.js";
import { card, sentence } from "./dom.js";
import { client, hideProgress, session, showProgress } from "./session.js";

export function verifyCard(report) {
  const preset = report.model === "config JSON" ? "" : report.model;
  const output = h("div", { id: "verify-output" });
  const status = h("p", { class: "meta", id: "verify-status" }, "Shapes that match are necessary, not sufficient: run the model on a fixed input and check its output is finite and agrees with the CPU.");
  const start = async (device) => {
    const files = session.files;
    if (!files) return;
    buttons.forEach((b) => (b.disabled = true));
    showProgress(device === "gpu" ? "Running the model on the GPU" : "Running the model on the CPU");
    try {
      if (device === "gpu") {
        const { reason } = await client.request("gpu_status");
        if (reason) {
          hideProgress();
          status.replaceChildren(h("strong", {}, "No GPU here: "), sentence(reason), ". The CPU runs the same graph in WebAssembly.");
          cpu.hidden = false;
          cpu.disabled = false;
          return;
        }
      }
      const result = await client.request("verify", { files, preset, device });
      const verdict = result.verdict;
      const compared = verdict.comparison ? ` · GPU vs CPU max abs error ${verdict.comparison.max_abs_err.toExponential(1)}` : "";
      status.replaceChildren(
        h("strong", { id: "verify-verdict" }, verdict.passed ? "✓ Runs: finite output of the expected shape" : "✗ Does not run cleanly"),
        ` · ${verdict.device} · ${verdict.output_name} ${JSON.stringify(verdict.output_shape)}${compared}`
      );
      output.replaceChildren(h("pre", { class: "error-text", id: "verify-text" }, result.text));
    } catch (error) {
      status.replaceChildren(h("strong", {}, error.kind === "cancelled" ? "Cancelled" : "Could not run the model: "), error.kind === "cancelled" ? "" : sentence(error.message));
    } finally {
      hideProgress();
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  const gpu = h("button", { type: "button", class: "button", id: "verify-gpu", onclick: () => start("gpu") }, "Verify on GPU");
  const cpu = h("button", { type: "button", class: "button small", id: "verify-cpu", onclick: () => start("cpu") }, "Run on the CPU");
  const buttons = [gpu, cpu];
  return card("Prove it loads", { id: "verify" }, status, h("div", { class: "export" }, gpu, cpu), output);
}
