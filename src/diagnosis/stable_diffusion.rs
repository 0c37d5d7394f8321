//! The Stable Diffusion (SD3, FLUX.1) release cause: a single-file
//! checkpoint of one release checked against another release's model (an SD 2.x file with
//! v1-inference.yaml, whose failure is hundreds of `attn2.to_k` size
//! mismatches) is explained as the release the file is, with the YAML that
//! builds its model. Releases with the same shapes (SD 2.x at 512 and at
//! 768-v) are named together: the tensors cannot tell them apart. SD3 and
//! FLUX.1 releases have no YAML: the cause gives the diffusers class and
//! config that build them instead.

use super::explain::{counts_text, Findings};
use super::Cause;
use crate::arch::stable_diffusion::{release_facts, release_label};
use serde_json::Value;

pub(super) fn release_cause(f: &Findings) -> Option<Cause> {
    if f.model.family != "sd" || f.inferred.family != "sd" {
        return None;
    }
    let model_release = f.model.preset.as_deref()?;
    let ranking = &f.inferred.ranking;
    let best = ranking.first()?;
    let model_score = ranking.iter().find(|s| s.preset == model_release)?;
    if model_score.findings == best.findings {
        return None;
    }
    let (yaml, about) = release_facts(&best.preset)?;
    let (model_yaml, model_about) = release_facts(model_release)?;
    let alike: Vec<String> = ranking
        .iter()
        .skip(1)
        .filter(|s| s.findings == best.findings)
        .filter_map(|s| release_facts(&s.preset).map(|(y, _)| format!("{} ({y})", s.preset)))
        .collect();
    let or_alike = if alike.is_empty() {
        String::new()
    } else {
        format!(" (or {}: the same shapes)", alike.join(", "))
    };
    let closest = if best.exact { "" } else { "closest to " };
    let kind = release_label(&best.preset);
    let missing = f.result.missing_keys.len();
    let unexpected = f.result.unexpected_keys.len();
    let size_mismatches = f.result.size_mismatches.len();
    Some(Cause {
        cause: "sd-release".to_string(),
        field: "release".to_string(),
        checkpoint: Value::String(best.preset.clone()),
        model: Value::String(model_release.to_string()),
        missing,
        unexpected,
        size_mismatches,
        text: format!(
            "{kind} release: the checkpoint is {closest}{about} ({}); the model is {model_about} ({model_release}, {model_yaml}): use {yaml}{or_alike} — {}",
            best.preset,
            counts_text(missing, unexpected, size_mismatches)
        ),
    })
}
