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
            // A sub-config's field is a path to edit (`vision_config.hidden_size`),
            // kept as written; a flat one reads as words ("vision width").
            let field = if c.field.contains('.') {
                c.field.clone()
            } else {
                c.field.replace('_', " ")
            };
            format!(
                "{} {} vs {}",
                field,
                display(&c.checkpoint),
                display(&c.model)
            )
        })
        .collect();
    let prefix_cause = causes.iter().find(|c| c.field == "prefix");
    let mut summary;
    let by_structure = matches!(model.family.as_str(), "dump" | "reference");
    match &inferred.preset {
        _ if by_structure => {
            let (summaries, structural) = super::structure::structure_remedies(causes);
            summary = if summaries.is_empty() && prefix_cause.is_some() {
                "the model matches; the keys do not".to_string()
            } else if summaries.is_empty() {
                "the findings are not explained by the model's structure".to_string()
            } else {
                summaries.join("; ")
            };
            remedies.extend(structural);
        }
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
        None if prefix_cause.is_some() => {
            summary = "the config matches; the keys do not".to_string();
        }
        None => {
            summary = "the findings are not explained by a config difference".to_string();
        }
    }
    if let Some(head) = causes.iter().find(|c| c.cause == "num-labels") {
        summary = resized_summary(&summary, &num_labels_summary(head));
        remedies.extend(num_labels_remedies(head, loader, &model.class_name));
    }
    if let Some(vocab) = causes.iter().find(|c| c.cause == "vocab-resized") {
        let tokens = display(&vocab.checkpoint);
        summary = resized_summary(
            &summary,
            &format!(
                "resize the model's embeddings to the checkpoint's {tokens} tokens before loading"
            ),
        );
        remedies.push(Remedy {
            label: "Python: resize, then load".to_string(),
            text: format!(
                "model.resize_token_embeddings({tokens})  # the tokenizer that goes with the checkpoint has {tokens} tokens\nmodel.load_state_dict(sd)"
            ),
        });
        remedies.push(Remedy {
            label: "or in config.json".to_string(),
            text: format!(
                "\"{}\": {tokens}",
                vocab.field.rsplit('.').next().unwrap_or("vocab_size")
            ),
        });
        remedies.push(Remedy {
            label: "a LoRA adapter trained on the resized model".to_string(),
            text: format!(
                "base = AutoModel.from_pretrained(base_id)\nbase.resize_token_embeddings({tokens})  # before the adapter is applied or merged\nmodel = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()"
            ),
        });
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

/// The summary when a size was changed on purpose: that fix replaces the
/// generic "not explained" line, and is added to any other.
fn resized_summary(summary: &str, fix: &str) -> String {
    if summary.starts_with("the findings are not explained") || summary.is_empty() {
        fix.to_string()
    } else {
        format!("{summary}; {fix}")
    }
}

fn num_labels_summary(head: &Cause) -> String {
    format!(
        "the classifier head has {} labels in the checkpoint and {} in the model: pass `ignore_mismatched_sizes=True` to start a new head, or set `num_labels` to {} to keep the checkpoint's",
        display(&head.checkpoint),
        display(&head.model),
        display(&head.checkpoint)
    )
}

fn num_labels_remedies(head: &Cause, loader: Loader, class_name: &str) -> Vec<Remedy> {
    let (checkpoint, model) = (display(&head.checkpoint), display(&head.model));
    let mut remedies = vec![
        Remedy {
            label: format!("Python: a new {model}-label head (fine-tuning on other labels)"),
            text: format!(
                "model = {class_name}.from_pretrained(path, num_labels={model}, ignore_mismatched_sizes=True)\n# the checkpoint's {checkpoint}-label head is dropped and a new one initialized"
            ),
        },
        Remedy {
            label: format!("Python: keep the checkpoint's {checkpoint}-label head"),
            text: format!(
                "model = {class_name}.from_pretrained(path, num_labels={checkpoint})\n# or give config.json an id2label with {checkpoint} entries"
            ),
        },
    ];
    if loader == Loader::Strict {
        remedies.push(Remedy {
            label: "Python: load_state_dict without the head".to_string(),
            text: "sd = {k: v for k, v in sd.items() if not k.startswith((\"classifier.\", \"score.\"))}\nmodel.load_state_dict(sd, strict=False)".to_string(),
        });
    }
    remedies
}
