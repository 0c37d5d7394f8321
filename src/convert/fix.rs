//! `fix`'s key edits: what the check's findings ask of the file, for the
//! loader that will read it. A wrapper prefix is stripped (or added), stale
//! buffers go, and for `load_state_dict(strict=True)` every key the model
//! lacks goes and a tied weight the file stores once is written again under
//! its second name. Shapes are not keys: a size mismatch stays and says so.

use super::Edits;
use crate::arch::ModelSpec;
use crate::diagnosis::CheckReport;
use crate::loader::Loader;
use std::collections::HashSet;

/// The key edits that answer a check's findings, for the loader used.
pub fn edits_for(report: &CheckReport, model: &ModelSpec, renames: &[(String, String)]) -> Edits {
    let mut edits = Edits {
        renames: renames.to_vec(),
        ..Edits::default()
    };
    if let Some(prefix) = report.explanation.iter().find(|c| c.field == "prefix") {
        if let Some(strip) = prefix.checkpoint.as_str().filter(|p| !p.is_empty()) {
            edits.strip_prefix = Some(strip.to_string());
        } else if let Some(add) = prefix.model.as_str().filter(|p| !p.is_empty()) {
            edits.add_prefix = Some(add.to_string());
        }
    }
    let model_keys: HashSet<&str> = model.tensors.iter().map(|t| t.name.as_str()).collect();
    let stale: HashSet<String> = report
        .explanation
        .iter()
        .filter(|c| c.cause == "stale-buffer")
        .filter_map(|c| c.checkpoint.as_array())
        .flatten()
        .filter_map(|k| k.as_str().map(|k| edits.apply(k)))
        .collect();
    for key in &report.unexpected_keys {
        let edited = edits.apply(key);
        // strict rejects every key the model lacks; from_pretrained only
        // warns, so only the stale buffers go.
        let rejected = report.loader == Loader::Strict && !model_keys.contains(edited.as_str());
        if (rejected || stale.contains(&edited)) && !edits.drop.contains(&edited) {
            edits.drop.push(edited);
        }
    }
    if report.loader == Loader::Strict {
        // A tied weight the file stores once: written again under the name
        // load_state_dict expects.
        for (target, source) in crate::arch::hf::tied_weights(model) {
            if report.missing_keys.contains(&target) {
                edits.materialise.push((target, source));
            }
        }
    }
    edits
}
