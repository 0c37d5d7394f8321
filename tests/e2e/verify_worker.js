// The verify message as the page's worker would handle it (see the report
// for www/worker.js): {type: "verify", id, files, preset, device, layers} in,
// {type: "result", id, verdict, text, stages} or {type: "error", id, kind,
// message} out, `stages` being the progress the run reported, in order
// ([{text, done, total}]); {type: "gpu_status", id} in, {type: "result", id,
// reason} out (reason null when a WebGPU adapter exists).
// Errors cross from Rust as "kind|message"; kind "io" with a message starting
// "no GPU adapter" means the browser has no WebGPU adapter.

import init, { verify_files, gpu_unavailable_reason } from "../../www/pkg/ckptcheck.js";

const ready = init();

self.onmessage = async (event) => {
  const { type, id, files, preset, device, layers } = event.data;
  await ready;
  if (type === "gpu_status") {
    self.postMessage({ type: "result", id, reason: await gpu_unavailable_reason() });
    return;
  }
  if (type !== "verify") return;
  try {
    const stages = [];
    const { verdict, text } = await verify_files(files, preset ?? "", device, layers ?? undefined, (text, done, total) => {
      stages.push({ text, done, total });
    });
    self.postMessage({ type: "result", id, verdict, text, stages });
  } catch (error) {
    const text = String(error?.message ?? error);
    const bar = text.indexOf("|");
    self.postMessage({ type: "error", id, kind: bar > 0 ? text.slice(0, bar) : "io", message: bar > 0 ? text.slice(bar + 1) : text });
  }
};
