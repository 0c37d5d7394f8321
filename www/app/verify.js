// The "Prove it loads" card, offered when the shapes match: runs the model
// on a fixed input on WebGPU (checked against the CPU run), or on the
// wasm CPU backend where the browser has no GPU. While it runs, the
// progress line says which stage runs (the embeddings, each block, the
// head; on the GPU then on the CPU) with a bar over the blocks and Cancel;
// then it shows the verdict, the time per stage and the report text the
// wasm wrote. The stages and their times are the wasm's; this shows them.

import { h, humanBytes } from "../client.js";
import { card, els, sentence } from "./dom.js";
import { client, hideProgress, session, showProgress } from "./session.js";

/** "GPU" or "CPU": what a run's device (an adapter name, "cpu (1 thread)") is. */
function deviceLabel(run) {
  return run.device.startsWith("cpu") ? "CPU" : "GPU";
}

/** One row per stage, two columns per run: its time, and how much of it
 * went to reading the stage's weights from the file. */
function stageTable(verdict) {
  const runs = [verdict.run, verdict.reference_run].filter((run) => run && run.stages && run.stages.length);
  if (!runs.length) return "";
  const names = [];
  for (const run of runs) for (const stage of run.stages) if (!names.includes(stage.name)) names.push(stage.name);
  const ms = (value) => `${value.toFixed(1)} ms`;
  const cells = (run, name) => {
    const stage = run.stages.find((s) => s.name === name);
    return stage ? [h("td", { class: "num" }, ms(stage.ms)), h("td", { class: "num" }, ms(stage.read_ms))] : [h("td", {}, "–"), h("td", {}, "–")];
  };
  const total = (run, key) => run.stages.reduce((sum, stage) => sum + stage[key], 0);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "stages", id: "verify-stages" },
      h("thead", {}, h("tr", {}, h("th", {}, "stage"), runs.map((run) => [h("th", { class: "num" }, deviceLabel(run)), h("th", { class: "num" }, "of it reading weights")]))),
      h(
        "tbody",
        {},
        names.map((name) => h("tr", {}, h("td", {}, name), runs.map((run) => cells(run, name)))),
        h("tr", { class: "total" }, h("th", {}, "total"), runs.map((run) => [h("th", { class: "num" }, ms(total(run, "ms"))), h("th", { class: "num" }, ms(total(run, "read_ms")))]))
      )
    )
  );
}

export function verifyCard(report) {
  // A model from a dropped config JSON or inference YAML has no preset name.
  const preset = ["config JSON", "inference YAML"].includes(report.model) ? "" : report.model;
  const output = h("div", { id: "verify-output" });
  const status = h("p", { class: "meta", id: "verify-status" }, "Shapes that match are necessary, not sufficient: run the model on a fixed input and check its output is finite and agrees with the CPU.");
  // Tests wait on `data-state`: idle, running, done, cancelled, failed.
  const settle = (state) => (section.dataset.state = state);
  const start = async (device) => {
    const files = session.files;
    if (!files) return;
    buttons.forEach((b) => (b.disabled = true));
    settle("running");
    // A cancelled or failed run must not sit above the last run's times.
    output.replaceChildren();
    delete output.dataset.wasmMemoryBytes;
    showProgress(device === "gpu" ? "Running the model on the GPU" : "Running the model on the CPU");
    // The progress line (with Cancel) sits above the result: keep it in view.
    els.progress.scrollIntoView({ block: "nearest" });
    const bar = els.progress.querySelector("progress");
    // Each stage of the run: "CPU: block 3 of 24", with the blocks done so
    // far on the bar (indeterminate while no block count is known).
    const onProgress = (message) => {
      if (message.stage !== "verify") return;
      els.progressText.textContent = `Running the model · ${message.text}`;
      if (message.total > 0) {
        bar.max = message.total;
        bar.value = message.done;
      } else {
        bar.removeAttribute("value");
      }
    };
    try {
      if (device === "gpu") {
        const { reason } = await client.request("gpu_status");
        if (reason) {
          hideProgress();
          status.replaceChildren(h("strong", {}, "No GPU here: "), sentence(reason), ". The CPU runs the same graph in WebAssembly.");
          cpu.hidden = false;
          cpu.disabled = false;
          settle("idle");
          return;
        }
      }
      const result = await client.request("verify", { files, preset, device, onProgress });
      const verdict = result.verdict;
      const compared = verdict.comparison ? ` · GPU vs CPU max abs error ${verdict.comparison.max_abs_err.toExponential(1)}` : "";
      status.replaceChildren(
        h("strong", { id: "verify-verdict" }, verdict.passed ? "✓ Runs: finite output of the expected shape" : "✗ Does not run cleanly"),
        ` · ${verdict.device} · ${verdict.output_name} ${JSON.stringify(verdict.output_shape)}${compared}`
      );
      const memory = result.wasm_memory_bytes;
      output.replaceChildren(
        h("p", { class: "meta" }, "Time per stage (weights are read as each stage needs them):"),
        stageTable(verdict),
        memory ? h("p", { class: "meta", id: "verify-memory" }, `The checker's WebAssembly memory peaked at ${humanBytes(memory)}.`) : "",
        h("pre", { class: "error-text", id: "verify-text" }, result.text)
      );
      if (memory) output.dataset.wasmMemoryBytes = String(memory);
      settle("done");
    } catch (error) {
      const cancelled = error.kind === "cancelled";
      status.replaceChildren(h("strong", { id: "verify-verdict" }, cancelled ? "Cancelled" : "Could not run the model: "), cancelled ? " · the model did not finish; run it again at any time." : sentence(error.message));
      settle(cancelled ? "cancelled" : "failed");
    } finally {
      bar.removeAttribute("value");
      hideProgress();
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  const gpu = h("button", { type: "button", class: "button", id: "verify-gpu", onclick: () => start("gpu") }, "Verify on GPU");
  const cpu = h("button", { type: "button", class: "button small", id: "verify-cpu", onclick: () => start("cpu") }, "Run on the CPU");
  const buttons = [gpu, cpu];
  const section = card("Prove it loads", { id: "verify" }, status, h("div", { class: "export" }, gpu, cpu), output);
  settle("idle");
  return section;
}
