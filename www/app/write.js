// "Write safetensors" and "Write fixed file": the file is assembled here
// from the plan the wasm makes (worker.js `plan_write`): header bytes as
// they are, verbatim ranges as `File.slice`s of the dropped files (a Blob of
// slices is not copied into memory), and the tensors whose bytes change
// (dtype, byte order, strided views) from `write_part`, one at a time. With
// the File System Access API the file streams to disk; otherwise it is a
// download. No byte leaves the machine.

import { h, humanBytes } from "../client.js";
import { els } from "./dom.js";
import { client, hideProgress, session, showProgress } from "./session.js";

/** The status line beside the buttons, and the page's progress line (with
 * its Cancel, which stops the worker and so the write) while writing. */
function status(text, writing = true) {
  const line = document.getElementById("write-status");
  if (line) line.textContent = text;
  if (writing) {
    els.progressText.textContent = text;
  } else {
    hideProgress();
  }
}

async function save(blob, name) {
  if (typeof window.showSaveFilePicker === "function") {
    const handle = await window.showSaveFilePicker({ suggestedName: name });
    const writable = await handle.createWritable();
    await blob.stream().pipeTo(writable);
    return;
  }
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Plan, assemble and save the output of `mode` ("convert" or "fix"). */
async function write(mode) {
  const files = session.files;
  if (!files) return;
  showProgress(mode === "fix" ? "Planning the fixed file…" : "Planning the safetensors file…");
  status(mode === "fix" ? "Planning the fixed file…" : "Planning the safetensors file…");
  try {
    const result = await client.request("plan_write", {
      files,
      mode,
      dtype: "keep",
      preset: els.preset.value,
      loader: els.loader.value,
      reference: [...(els.reference?.files || [])],
    });
    const byName = new Map(files.map((file) => [file.name, file]));
    const started = performance.now();
    let converted = 0;
    let rewritten = 0;
    for (const out of result.plan.files) {
      const parts = [];
      for (const part of out.parts) {
        if (part.bytes) {
          parts.push(new Uint8Array(part.bytes));
        } else if (part.copy) {
          const { source, offset, len } = part.copy;
          parts.push(byName.get(result.sources[source]).slice(Number(offset), Number(offset) + Number(len)));
        } else if (part.convert) {
          converted += 1;
          const seconds = (performance.now() - started) / 1000;
          status(`Rewriting ${part.convert.name} (${converted}): ${humanBytes(rewritten)} rewritten, ${humanBytes(rewritten / Math.max(seconds, 1e-3))}/s`);
          // Only the file the job reads goes to the worker: nothing is parsed again.
          const file = byName.get(result.sources[part.convert.source]);
          const { bytes } = await client.request("write_part", { files: [file], job: part.convert });
          rewritten += bytes.length;
          parts.push(bytes);
        }
      }
      await save(new Blob(parts, { type: "application/octet-stream" }), out.name);
    }
    const tensors = result.plan.tensors.length;
    const before = result.before ? ` Before: ${result.before}.` : "";
    status(`Wrote ${result.plan.files.map((f) => f.name).join(", ")}: ${tensors} tensors, ${humanBytes(result.plan.total_size)}.${before}`, false);
    document.getElementById("write-status")?.setAttribute("data-done", mode);
  } catch (error) {
    status(error.kind === "cancelled" ? "Cancelled: nothing written." : `Could not write: ${error.message || error}`, false);
  }
}

/** Whether key edits answer the check: it fails, for a loader fix
 * writes for, with no size mismatch (a shape is not a key). */
function fixable(report) {
  return !report.loads && report.fix && ["strict", "hf"].includes(report.loader) && report.size_mismatches.length === 0;
}

/** "Write fixed file", or null when no key edit would fix the load. */
export function fixButton(report, id = "write-fixed") {
  return fixable(report) ? h("button", { type: "button", class: "button small", id, onclick: () => write("fix") }, "Write fixed file") : null;
}

/** The buttons for a checked file: always "Write safetensors", and "Write
 * fixed file" when key edits answer the check. */
export function writeBar(report) {
  return h(
    "div",
    { class: "export write" },
    h("button", { type: "button", class: "button small", id: "write-safetensors", onclick: () => write("convert") }, "Write safetensors"),
    fixButton(report),
    h("span", { class: "meta", id: "write-status", role: "status" })
  );
}
