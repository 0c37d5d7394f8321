// The module Web Worker that runs the wasm. It receives `File` objects (no
// copy) and the wasm reads only the byte ranges it needs from them with
// FileReaderSync, which exists only in workers. It makes no decisions about
// checkpoints: it forwards requests to the wasm and reports back.
//
// Protocol, in:  {type: "check" | "inspect" | "presets" | "snippet", id, files, preset, loader,
//                 reference}: reference is the "your model" slot's files
//                (a model dump, or a reference checkpoint), or []
//                {type: "verify", id, files, preset, device: "gpu" | "cpu", layers}
//                {type: "gpu_status", id}
//                {type: "plan_write", id, files, mode: "convert" | "fix", dtype, preset, loader,
//                 reference}: the plan of a safetensors file; {type: "write_part", id,
//                 files: [the job's file], job}: the bytes of one converted tensor, {bytes}
//                {type: "pipeline", id, files, paths, folder, variant}: a diffusers
//                 pipeline folder, paths relative to its model_index.json; the
//                 result is {pipeline, text}
//                {type: "scan", id, files}: progress messages carry {done, total}
//                bytes; the result is {type: "result", id, scan}
//           out: {type: "progress", id, stage, text}
//                verify's progress, one per stage of each run (the embeddings,
//                each block, the head; the GPU's read back; then the CPU run a
//                GPU run is compared with): {type: "progress", id, stage: "verify",
//                text: "CPU: block 3 of 24", done, total}, done and total in blocks
//                verify: {type: "result", id, verdict, text, wasm_memory_bytes}
//                (the wasm's memory, which never shrinks: the worker's peak); gpu_status:
//                {type: "result", id, reason} (reason null with an adapter)
//                {type: "result", id, ...what the wasm returned, elapsed_ms}
//                {type: "error", id, kind, message, fatal, checkpoint?}
// Cancelling is terminating this worker; the page starts a new one.

import init, { check_files, check_pipeline_files, gpu_unavailable_reason, inspect_files, model_snippet, plan_write, presets, scan_files, verify_files, write_part } from "./pkg/ckptcheck.js";

// Started on load so the first request does not pay for compiling the wasm.
const ready = init();

// Error kinds about the model rather than the file: the file was readable, so
// the page can still show what it holds.
const MODEL_ERROR_KINDS = new Set(["bad_config", "unknown_preset", "bad_argument"]);

/** `JsError` messages are "kind|human text"; anything else is a crash. */
function parseError(error) {
  const text = String(error && error.message !== undefined ? error.message : error);
  const bar = text.indexOf("|");
  if (bar > 0 && /^[a-z_]+$/.test(text.slice(0, bar))) {
    return { kind: text.slice(0, bar), message: text.slice(bar + 1), fatal: false };
  }
  // A wasm trap (a panic) leaves the instance unusable: the page recycles us.
  const fatal = error instanceof WebAssembly.RuntimeError;
  return { kind: "internal", message: text, fatal };
}

function describe(files) {
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const names = files.length === 1 ? files[0].name : `${files.length} files`;
  return { names, total };
}

self.onmessage = async (event) => {
  const { type, id, files = [], preset = "infer", loader = "strict", device = "gpu", layers, reference = [], mode, dtype = "keep", job, paths = [], folder = "", variant = "" } = event.data || {};
  const started = performance.now();
  const progress = (stage, text) => self.postMessage({ type: "progress", id, stage, text });
  try {
    progress("init", "starting the checker");
    try {
      await ready;
    } catch (error) {
      // Fatal: the page starts a fresh worker, which fetches the wasm again.
      self.postMessage({ type: "error", id, kind: "io", fatal: true, message: `could not start the checker: ${error}` });
      return;
    }
    let result;
    if (type === "presets") {
      result = { presets: presets() };
    } else if (type === "snippet") {
      result = { snippet: model_snippet() };
    } else if (type === "plan_write") {
      progress("plan", "planning the safetensors file");
      result = plan_write(files, mode, dtype, preset, loader, reference || []);
    } else if (type === "write_part") {
      result = { bytes: write_part(files, job) };
    } else if (type === "scan") {
      // Every weight read once in 4 MiB chunks; progress after each chunk.
      // Cancelling terminates this worker, so the callback never says stop.
      const scan = scan_files(files, (done, total) => {
        self.postMessage({ type: "progress", id, stage: "scan", done, total, text: "scanning weights" });
        return true;
      });
      result = { scan };
    } else if (type === "gpu_status") {
      result = { reason: await gpu_unavailable_reason() };
    } else if (type === "verify") {
      progress("verify", "reading the checkpoint");
      // Posted synchronously from inside the run; the page receives each one
      // as its own message. Cancelling terminates this worker.
      const verify = await verify_files(files, preset === "infer" ? "" : preset, device, layers ?? undefined, (text, done, total) => {
        self.postMessage({ type: "progress", id, stage: "verify", text, done, total });
      });
      result = { ...verify, wasm_memory_bytes: (await ready).memory.buffer.byteLength };
    } else if (type === "pipeline") {
      progress("read", `reading the components of ${folder || "the pipeline"}`);
      result = check_pipeline_files(files, paths, folder, variant);
    } else if (type === "inspect" || type === "check") {
      const { names, total } = describe(files);
      progress("read", `reading the tensor index of ${names}`);
      result = type === "check" ? check_files(files, preset, loader, reference || []) : { checkpoint: inspect_files(files) };
      result.total_bytes = total;
    } else {
      throw new Error(`bad_argument|unknown request type ${JSON.stringify(type)}`);
    }
    self.postMessage({ type: "result", id, ...result, elapsed_ms: performance.now() - started });
  } catch (error) {
    const parsed = parseError(error);
    const reply = { type: "error", id, ...parsed, elapsed_ms: performance.now() - started };
    // The file was fine but the model was not: list what the file holds anyway
    // (a hostile pickle must show its audit even when no preset matches).
    if (type === "check" && MODEL_ERROR_KINDS.has(parsed.kind)) {
      try {
        reply.checkpoint = inspect_files(files);
      } catch {
        // The original error says more than this one would.
      }
    }
    self.postMessage(reply);
  }
};
