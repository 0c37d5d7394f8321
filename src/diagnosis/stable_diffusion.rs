//! The Stable Diffusion (SD3, FLUX.1) release cause: a single-file
//! checkpoint of one release checked against another release's model (an SD 2.x file with
//! v1-inference.yaml, whose failure is hundreds of `attn2.to_k` size
//! mismatches) is explained as the release the file is, with the YAML that
//! builds its model. Releases with the same shapes (SD 2.x at 512 and at
//! 768-v) are named together: the tensors cannot tell them apart. SD3 and
//! FLUX.1 releases have no YAML: the cause gives the diffusers class and
//! config that build them instead. A release's file checked against an
//! inference YAML of no release is named likewise, with the YAML's facts
//! that differ from the release's.

use super::explain::{counts_suffix, counts_text, Findings};
use super::Cause;
use crate::arch::stable_diffusion::{release_facts, release_label};
use serde_json::Value;

/// " (or sd/2.1-512 (v2-inference.yaml): the same shapes)" for releases
/// whose shapes equal the best one's; empty when there are none.
fn or_alike<'a>(alike: impl Iterator<Item = &'a crate::arch::PresetScore>) -> String {
    let alike: Vec<String> = alike
        .filter_map(|s| release_facts(&s.preset).map(|(y, _)| format!("{} ({y})", s.preset)))
        .collect();
    if alike.is_empty() {
        String::new()
    } else {
        format!(" (or {}: the same shapes)", alike.join(", "))
    }
}

pub(super) fn release_cause(f: &Findings) -> Option<Cause> {
    if f.model.family != "sd" || f.inferred.family != "sd" {
        return None;
    }
    let Some(model_release) = f.model.preset.as_deref() else {
        return yaml_of_no_release_cause(f);
    };
    let ranking = &f.inferred.ranking;
    let best = ranking.first()?;
    let model_score = ranking.iter().find(|s| s.preset == model_release)?;
    if model_score.findings == best.findings {
        return None;
    }
    let (yaml, about) = release_facts(&best.preset)?;
    let (model_yaml, model_about) = release_facts(model_release)?;
    let or_alike = or_alike(
        ranking
            .iter()
            .skip(1)
            .filter(|s| s.findings == best.findings),
    );
    let closest = if best.exact { "" } else { "closest to " };
    let kind = release_label(&best.preset);
    Some(sd_release(f, &best.preset, model_release, |counts| {
        format!(
            "{kind} release: the checkpoint is {closest}{about} ({}); the model is {model_about} ({model_release}, {model_yaml}): use {yaml}{or_alike} — {counts}",
            best.preset
        )
    }))
}

/// The `sd-release` cause of a file that is `checkpoint` checked against
/// `model`, its text given the counts of the findings.
fn sd_release(
    f: &Findings,
    checkpoint: &str,
    model: &str,
    text: impl FnOnce(String) -> String,
) -> Cause {
    let missing = f.result.missing_keys.len();
    let unexpected = f.result.unexpected_keys.len();
    let size_mismatches = f.result.size_mismatches.len();
    Cause {
        cause: "sd-release".to_string(),
        field: "release".to_string(),
        checkpoint: Value::String(checkpoint.to_string()),
        model: Value::String(model.to_string()),
        missing,
        unexpected,
        size_mismatches,
        text: text(counts_text(missing, unexpected, size_mismatches)),
    }
}

/// A release's file checked against a model built from an inference YAML
/// of no release (sd_layout.rs): the file is named as the release it is and
/// the YAML's facts that differ from that release's are listed, with the
/// release's YAML to use. Only for a file that is a release exactly: of a
/// file of no release, what the YAML should say is not known.
fn yaml_of_no_release_cause(f: &Findings) -> Option<Cause> {
    let facts = f.model.config.get("yaml_facts")?;
    let best = f.inferred.ranking.first().filter(|best| best.exact)?;
    let (yaml, about) = release_facts(&best.preset)?;
    let differing = crate::arch::stable_diffusion::facts_differing(facts, &best.preset);
    if differing.is_empty() {
        return None;
    }
    let or_alike = or_alike(f.inferred.ranking.iter().skip(1).filter(|s| s.exact));
    let model = "inference YAML of no release";
    Some(sd_release(f, &best.preset, model, |counts| {
        format!(
            "{} release: the checkpoint is {about} ({}); the model's inference YAML is no release's, and differs from {}'s: {}: use {yaml}{or_alike} — {counts}",
            release_label(&best.preset),
            best.preset,
            best.preset,
            differing.join("; "),
        )
    }))
}

/// An SD3 or FLUX.1 single file that bundles more than the model checked
/// against (ComfyUI's all-in-one checkpoints, Stability AI's
/// `_incl_clips` files: text encoders, for FLUX.1 the VAE): each part is
/// named with its prefix and checked against the model diffusers builds for
/// it; the file is for a pipeline loader, or its transformer keys alone for
/// a transformer-only one. Returns the cause and the keys it accounts for.
pub(super) fn bundled_cause(
    f: &Findings,
    counted: &crate::state_dict::LoadResult,
) -> Option<(Cause, Vec<String>)> {
    if f.model.family != "sd" {
        return None;
    }
    let release = f.model.preset.as_deref()?;
    if !crate::arch::stable_diffusion::bundled_parts_known(release) {
        return None;
    }
    let pipeline = crate::arch::stable_diffusion::pipeline_of_release(release)?;
    let names_shapes: Vec<(String, Vec<u64>)> = f
        .prepared
        .state_dict
        .entries
        .iter()
        .map(|entry| (entry.key.clone(), entry.shape.clone()))
        .collect();
    let parts: Vec<_> = crate::arch::stable_diffusion::bundled(&names_shapes)
        .into_iter()
        .filter(|part| !f.model_keys.iter().any(|key| key.starts_with(&part.prefix)))
        .collect();
    if parts.is_empty() {
        return None;
    }
    let keys: Vec<String> = counted
        .unexpected_keys
        .iter()
        .filter(|key| parts.iter().any(|part| key.starts_with(&part.prefix)))
        .cloned()
        .collect();
    let listed: Vec<String> = parts
        .iter()
        .map(|part| {
            format!(
                "{} ({}, {} tensor{}: {})",
                part.name,
                part.prefix,
                part.tensors,
                if part.tensors == 1 { "" } else { "s" },
                part.status()
            )
        })
        .collect();
    let label = release_label(release);
    Some((
        Cause {
            cause: "sd-bundled".to_string(),
            field: "bundled".to_string(),
            checkpoint: Value::from(parts.iter().map(|p| p.prefix.clone()).collect::<Vec<_>>()),
            model: Value::String(release.to_string()),
            missing: 0,
            unexpected: keys.len(),
            size_mismatches: 0,
            text: format!(
                "{label} single file with more than the model: it also bundles {}; it is a checkpoint for a pipeline loader (diffusers' {pipeline}.from_single_file, ComfyUI's checkpoint loader), of which the model checked here is one part; a loader of that part alone takes only its keys{}",
                listed.join(", "),
                counts_suffix(0, keys.len(), 0)
            ),
        },
        keys,
    ))
}
