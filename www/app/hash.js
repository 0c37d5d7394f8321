// The URL hash keeps the preset and the loader
// (`#preset=ViT-B-16@RoBERTa-wwm-ext-base-chinese&loader=cn-clip`), so a link
// reopens the page with the same model. It reads the hash into the pickers
// and writes the pickers back; it never starts a check.

import { els } from "./dom.js";
import { ensurePresetOption } from "./presets.js";

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { preset: params.get("preset"), loader: params.get("loader") };
}

export function applyHash() {
  const { preset, loader } = readHash();
  if (preset !== null) {
    ensurePresetOption(preset);
    els.preset.value = preset;
  }
  if (loader !== null && [...els.loader.options].some((option) => option.value === loader)) {
    els.loader.value = loader;
  }
}

export function writeHash() {
  const params = new URLSearchParams();
  params.set("preset", els.preset.value);
  params.set("loader", els.loader.value);
  history.replaceState(null, "", `#${params}`);
}
