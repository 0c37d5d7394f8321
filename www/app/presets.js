// The model picker: fills the preset select and its search list from the
// wasm's preset table, grouped by family, filters it as the user types, and
// adds a preset named by a link or a match that the table lacks. Choosing
// what to do on a change is the caller's (check.js re-runs).

import { h } from "../client.js";
import { els } from "./dom.js";
import { client } from "./session.js";

const FAMILY_NAMES = { cn_clip: "Chinese-CLIP (cn_clip)", open_clip: "OpenCLIP", hf: "Hugging Face transformers", diffusers: "diffusers components", sd: "Stable Diffusion, SD3 and FLUX.1 single files" };

/** Fills the picker; rejects with the worker's error when it cannot. */
export async function loadPresets(attempt = 0) {
  let presets;
  try {
    ({ presets } = await client.request("presets"));
  } catch (error) {
    // A Cancel during start-up kills this request too; ask the new worker.
    if (attempt < 2) return loadPresets(attempt + 1);
    throw error;
  }
  const families = new Map();
  for (const preset of presets) {
    if (!families.has(preset.family)) families.set(preset.family, []);
    families.get(preset.family).push(preset);
  }
  for (const [family, list] of families) {
    const group = h("optgroup", { label: FAMILY_NAMES[family] || family });
    for (const preset of list) {
      const described = preset.description && !/^[^,]+$/.test(preset.description) ? ` (${preset.description.split(", ").slice(1).join(", ")})` : "";
      group.append(h("option", { value: preset.name, "data-family": family }, preset.name + described));
      els.presetNames.append(h("option", { value: preset.name }, `${FAMILY_NAMES[family] || family}: ${preset.description}`));
    }
    els.preset.append(group);
  }
}

/** Filter the select by the search box; pick an exact match. Returns true
 * when that changed the selected preset. */
export function filterPresets() {
  const query = els.presetSearch.value.trim().toLowerCase();
  let exact = null;
  for (const option of els.preset.querySelectorAll("option")) {
    const match = !query || option.value === "infer" || option.textContent.toLowerCase().includes(query);
    option.hidden = !match;
    if (query && option.value.toLowerCase() === query) exact = option.value;
  }
  if (exact !== null && els.preset.value !== exact) {
    els.preset.value = exact;
    return true;
  }
  return false;
}

export function ensurePresetOption(name) {
  if ([...els.preset.options].some((option) => option.value === name)) return;
  let group = els.preset.querySelector("optgroup[data-from-link]");
  if (!group) {
    group = h("optgroup", { label: "From the link", "data-from-link": true });
    els.preset.append(group);
  }
  group.append(h("option", { value: name }, name));
}
