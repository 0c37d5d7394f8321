//! The fix: what to change so that the checkpoint loads, as a one-line
//! summary and copyable remedies (training flags, an inferred config JSON,
//! a Python snippet), from the causes `explain` found.

use super::{display, Cause, Fix, Remedy};
use crate::arch::{self, Inferred, ModelSpec};
use crate::loader::Loader;

/// The fix for a load that fails (`None` when it loads).
pub fn fix(
    loads: bool,
    model: &ModelSpec,
    inferred: &Inferred,
    loader: Loader,
    causes: &[Cause],
) -> Option<Fix> {
    if loads {
        return None;
    }
    let mut remedies = Vec::new();
    let differing: Vec<String> = causes
        .iter()
        .filter(|c| c.cause == "config-field" || c.cause == "model-family")
        .map(|c| {
            format!(
                "{} {} vs {}",
                c.field.replace('_', " "),
                display(&c.checkpoint),
                display(&c.model)
            )
        })
        .collect();
    let prefix_cause = causes.iter().find(|c| c.field == "prefix");
    let mut summary;
    match &inferred.preset {
        Some(preset)
            if Some(preset) != model.preset.as_ref()
                || model.preset.is_none() && !differing.is_empty() =>
        {
            summary = format!("this checkpoint is {preset}");
            if !differing.is_empty() {
                summary.push_str(&format!(" ({})", differing.join(", ")));
            }
            if inferred.family == "cn_clip" {
                let flags = arch::cn_clip::fix_for_preset(preset);
                if let Some(first) = flags.first() {
                    summary.push_str(&format!("; run with `{first}`"));
                }
                for (label, text) in ["cn_clip training flags", "cn_clip Python"]
                    .iter()
                    .zip(flags)
                {
                    remedies.push(Remedy {
                        label: label.to_string(),
                        text,
                    });
                }
            } else {
                summary.push_str(&format!("; check it against the preset {preset}"));
                remedies.push(Remedy {
                    label: "preset".to_string(),
                    text: preset.clone(),
                });
            }
        }
        Some(_) => {
            summary = "the model config is right; the keys are not".to_string();
        }
        None if !differing.is_empty() => {
            summary = format!("no built-in preset matches this checkpoint ({}); use a config that matches its shapes", differing.join(", "));
            if let Some(best) = inferred.ranking.first() {
                summary.push_str(&format!(
                    " (closest preset: {}, {} findings)",
                    best.preset, best.findings
                ));
            }
            if !inferred.config.is_null() {
                // Fields the shapes cannot tell are in the JSON as guesses:
                // say which, so nobody takes them for facts.
                let guessed: Vec<&str> = inferred
                    .undetermined
                    .iter()
                    .filter_map(|why| why.split_once(':').map(|(fields, _)| fields.trim()))
                    .filter(|fields| !fields.starts_with("architecture"))
                    .collect();
                remedies.push(Remedy {
                    label: if guessed.is_empty() {
                        "config JSON inferred from the checkpoint".to_string()
                    } else {
                        format!(
                            "config JSON inferred from the checkpoint (guessed, not read from shapes: {})",
                            guessed.join(", ")
                        )
                    },
                    text: serde_json::to_string_pretty(&inferred.config).unwrap_or_default(),
                });
            }
        }
        None => {
            summary = "the findings are not explained by a config difference".to_string();
        }
    }
    if let Some(cause) = prefix_cause {
        if let Some(prefix) = cause.checkpoint.as_str().filter(|p| !p.is_empty()) {
            summary.push_str(&format!("; strip the `{prefix}` prefix from the keys"));
            if model.family == "cn_clip" && loader == Loader::Strict {
                remedies.push(Remedy {
                    label: "loader".to_string(),
                    text: "--loader cn-clip (what cn_clip's create_model does)".to_string(),
                });
            }
            remedies.push(Remedy {
                label: "Python: strip the prefix".to_string(),
                text: format!(
                    "sd = checkpoint[\"state_dict\"] if \"state_dict\" in checkpoint else checkpoint\nsd = {{k.removeprefix(\"{prefix}\"): v for k, v in sd.items()}}\nmodel.load_state_dict(sd)"
                ),
            });
            if let Some(save) = unwrapped_save(prefix) {
                remedies.push(Remedy {
                    label: "Python: save without the wrapper next time".to_string(),
                    text: save.to_string(),
                });
            }
        } else if let Some(prefix) = cause.model.as_str().filter(|p| !p.is_empty()) {
            summary.push_str(&format!(
                "; add the `{prefix}` prefix the wrapped model expects"
            ));
            remedies.push(Remedy {
                label: "Python: add the prefix".to_string(),
                text: format!("sd = {{\"{prefix}\" + k: v for k, v in sd.items()}}\nmodel.load_state_dict(sd)"),
            });
        }
    }
    if causes.iter().any(|c| c.cause == "tied-weights") && loader == Loader::Strict {
        remedies.push(Remedy {
            label: "tied weights".to_string(),
            text: "--loader hf (from_pretrained re-ties them), or in Python:\nmissing, unexpected = model.load_state_dict(sd, strict=False)\nmodel.tie_weights()".to_string(),
        });
    }
    if let Some(stale) = causes.iter().find(|c| c.cause == "stale-buffer") {
        let keys: Vec<String> = stale
            .checkpoint
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str())
                    .map(|k| format!("\"{k}\""))
                    .collect()
            })
            .unwrap_or_default();
        remedies.push(Remedy {
            label: "Python: drop the stale buffers".to_string(),
            text: format!(
                "for key in [{}]:\n    sd.pop(key, None)\nmodel.load_state_dict(sd)",
                keys.join(", ")
            ),
        });
    }
    if causes.iter().any(|c| c.field.starts_with("bert.pooler")) && loader == Loader::Strict {
        remedies.push(Remedy {
            label: "Python: drop the old pooler".to_string(),
            text: "sd = {k: v for k, v in sd.items() if \"bert.pooler\" not in k}".to_string(),
        });
    }
    Some(Fix { summary, remedies })
}

/// How to save the bare model's weights from inside a wrapper.
fn unwrapped_save(prefix: &str) -> Option<&'static str> {
    Some(match prefix {
        "_orig_mod." => "torch.save(compiled_model._orig_mod.state_dict(), path)  # torch.compile keeps the model as ._orig_mod",
        "module." => "torch.save(ddp_model.module.state_dict(), path)  # DistributedDataParallel keeps the model as .module",
        "module._orig_mod." => "torch.save(ddp_model.module._orig_mod.state_dict(), path)",
        "_orig_mod.module." => "torch.save(compiled_model._orig_mod.module.state_dict(), path)",
        _ => return None,
    })
}
