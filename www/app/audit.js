// The pickle audit view: the alert for a pickle that would run code on
// torch.load, and the card listing every global the pickle names with its
// verdict against PyTorch's weights_only allowlist. The verdicts are the
// wasm's; nothing here reads the pickle.

import { h } from "../client.js";
import { card } from "./dom.js";

/** The globals that make a pickle unsafe: known-dangerous ones first, then
 * those not known to be harmless (unsafe by default). */
export function unsafeNames(audit) {
  return [...(audit?.dangerous || []), ...(audit?.suspicious || [])];
}

export function dangerAlert(names) {
  return h(
    "section",
    { class: "alert danger", id: "danger", role: "alert" },
    h("h2", {}, "Unsafe pickle: do not torch.load this file"),
    h("p", {}, "Unpickling it imports and calls ", names.map((name, i) => [i ? ", " : "", h("code", { class: "global" }, name)]), ". ", h("code", {}, "torch.load(..., weights_only=False)"), " would run that on your machine; ", h("code", {}, "weights_only=True"), " refuses the file. ckptcheck read the pickle symbolically and ran nothing.")
  );
}

export function auditCard(audit) {
  const order = { dangerous: 0, suspicious: 1, not_allowlisted: 2, allowed: 3 };
  const labels = { dangerous: "dangerous", suspicious: "not known harmless", not_allowlisted: "harmless, not allowlisted", allowed: "allowed" };
  const globals = [...audit.globals].sort((a, b) => order[a.verdict] - order[b.verdict]);
  const unsafe = unsafeNames(audit).length > 0;
  const verdict = unsafe
    ? h("p", { class: "audit-verdict danger" }, audit.dangerous.length ? "Unsafe: the pickle calls code that touches your system." : "Unsafe: the pickle imports and calls globals nobody vouches for; loading it could run their code.")
    : audit.weights_only_loads
      ? h("p", { class: "audit-verdict ok" }, h("code", {}, "torch.load(weights_only=True)"), " accepts every global in this file.")
      : h(
          "p",
          { class: "audit-verdict warn" },
          h("code", {}, "torch.load(weights_only=True)"),
          " refuses this file: ",
          [
            globals.some((g) => g.verdict === "not_allowlisted") ? "some globals are not on its allowlist (known to be harmless)" : null,
            audit.unsupported_opcodes?.length ? `its pickle uses opcodes the weights_only unpickler does not execute (${audit.unsupported_opcodes.join(", ")}), as pickle protocol 4 and 5 write them` : null,
          ]
            .filter(Boolean)
            .join("; ") + "."
        );
  const table = h(
    "table",
    { class: "audit" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Global"), h("th", { scope: "col" }, "Verdict"), h("th", { scope: "col", class: "num" }, "Uses"))),
    h("tbody", {}, globals.map((g) => h("tr", { class: g.verdict }, h("td", { class: "key" }, `${g.module}.${g.name}`), h("td", {}, h("span", { class: `chip ${g.verdict}` }, labels[g.verdict] || g.verdict)), h("td", { class: "num" }, String(g.count)))))
  );
  const fix = audit.fix ? h("p", { class: "audit-fix" }, h("strong", {}, "Fix: "), audit.fix) : null;
  return card("Pickle audit", { id: "audit", count: audit.globals.length, collapsible: true, open: unsafe || !audit.weights_only_loads }, verdict, fix, h("div", { class: "table-wrap" }, table));
}
