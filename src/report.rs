//! Turns a load result into what a person reads: the causes grouped and
//! mapped to config fields (`explain`), the remedy (`fix`), and text and
//! Markdown renderings of a `CheckReport` shared by the CLI and the page
//! (the page renders the JSON itself, and exports this Markdown).

use crate::arch::{self, Inferred, ModelSpec};
use crate::check::{Cause, CheckReport, Fix, LoadResult, Loader, Prepared, Remedy};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

fn normalised(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace(' ', "")),
        other => other.clone(),
    }
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

fn counts_text(missing: usize, unexpected: usize, mismatches: usize) -> String {
    let mut parts = Vec::new();
    if mismatches > 0 {
        parts.push(plural(mismatches, "size mismatch", "size mismatches"));
    }
    if unexpected > 0 {
        parts.push(plural(unexpected, "unexpected key", "unexpected keys"));
    }
    if missing > 0 {
        parts.push(plural(missing, "missing key", "missing keys"));
    }
    parts.join(", ")
}

/// Re-key findings so a shared prefix problem does not hide config causes.
fn aligned(key: &str, prefix: Option<&str>) -> String {
    match prefix {
        Some(p) => key.strip_prefix(p).unwrap_or(key).to_string(),
        None => key.to_string(),
    }
}

pub fn explain(
    result: &LoadResult,
    prepared: &Prepared,
    model: &ModelSpec,
    inferred: &Inferred,
    checkpoint_prefix: Option<&str>,
    loader: Loader,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let model_keys: std::collections::HashSet<&str> =
        model.tensors.iter().map(|t| t.name.as_str()).collect();
    let model_prefix = prepared.model_keys.first().and_then(|(k, _)| {
        let p = "module.";
        (k.starts_with(p) && prepared.model_keys.iter().all(|(k, _)| k.starts_with(p))).then_some(p)
    });
    let state_prefixed = checkpoint_prefix.filter(|_| {
        !prepared.state_dict.entries.is_empty()
            && prepared
                .state_dict
                .entries
                .iter()
                .all(|e| checkpoint_prefix.is_some_and(|p| e.key.starts_with(p)))
    });

    // 1. Prefix problems: one side's keys carry a wrapper prefix the other's lack.
    let mut explained_by_prefix = (0usize, 0usize);
    if let (Some(prefix), None) = (state_prefixed, model_prefix) {
        let unexpected = result
            .unexpected_keys
            .iter()
            .filter(|k| {
                k.strip_prefix(prefix)
                    .is_some_and(|s| model_keys.contains(s))
            })
            .count();
        if unexpected > 0 {
            let missing = result.missing_keys.len();
            explained_by_prefix = (missing, unexpected);
            causes.push(Cause {
                field: "prefix".to_string(),
                checkpoint: Value::String(prefix.to_string()),
                model: Value::String(String::new()),
                missing,
                unexpected,
                size_mismatches: 0,
                text: format!(
                    "all {} checkpoint keys carry the `{prefix}` prefix (saved from a DistributedDataParallel-wrapped model); the model's keys do not{}",
                    prepared.state_dict.entries.len(),
                    if loader == Loader::Strict { ": strip it (loader cn-clip does) before load_state_dict" } else { "" }
                ),
            });
        }
    } else if let (None, Some(prefix)) = (state_prefixed, model_prefix) {
        let missing = result.missing_keys.len();
        let unexpected = result
            .unexpected_keys
            .iter()
            .filter(|k| model_keys.contains(k.as_str()))
            .count();
        if unexpected > 0 {
            explained_by_prefix = (missing, unexpected);
            causes.push(Cause {
                field: "prefix".to_string(),
                checkpoint: Value::String(String::new()),
                model: Value::String(prefix.to_string()),
                missing,
                unexpected,
                size_mismatches: 0,
                text: format!("the model is wrapped in DistributedDataParallel and expects `{prefix}` on every key; the checkpoint's keys have no prefix (it was saved from an unwrapped model)"),
            });
        }
    }

    // A checkpoint of another family: that is the cause of everything.
    if inferred.family != model.family
        && inferred.family != "unknown"
        && !inferred.family.is_empty()
    {
        let missing = result.missing_keys.len();
        let unexpected = result.unexpected_keys.len();
        let size_mismatches = result.size_mismatches.len();
        causes.push(Cause {
            field: "family".to_string(),
            checkpoint: Value::String(inferred.family.clone()),
            model: Value::String(model.family.clone()),
            missing,
            unexpected,
            size_mismatches,
            text: format!(
                "model family: the checkpoint is a {} model{}, the model is {} — {}",
                family_name(&inferred.family),
                inferred
                    .preset
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default(),
                family_name(&model.family),
                counts_text(missing, unexpected, size_mismatches)
            ),
        });
        return causes;
    }

    // 2. Config fields that differ, with the findings they cause, counted on
    // the keys aligned as if the prefix were right.
    let checkpoint_model = rebuild(model, inferred);
    // Size mismatches come from shape fields; missing and unexpected keys from
    // existence fields (layer counts).
    let shape_model: HashMap<&str, &Vec<&'static str>> = model
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), &t.depends_on))
        .collect();
    let exists_model: HashMap<&str, &Vec<&'static str>> = model
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), &t.exists_if))
        .collect();
    let exists_checkpoint: HashMap<&str, &Vec<&'static str>> = checkpoint_model
        .as_ref()
        .map(|m| {
            m.tensors
                .iter()
                .map(|t| (t.name.as_str(), &t.exists_if))
                .collect()
        })
        .unwrap_or_default();
    let aligned_result = if explained_by_prefix != (0, 0) {
        let prefix = state_prefixed.or(model_prefix);
        let mut state_dict = prepared.state_dict.clone();
        for entry in &mut state_dict.entries {
            entry.key = aligned(&entry.key, prefix);
        }
        let keys: Vec<(String, Vec<u64>)> = prepared
            .model_keys
            .iter()
            .map(|(k, s)| (aligned(k, prefix), s.clone()))
            .collect();
        let batchnorm: Vec<String> = prepared
            .batchnorm_modules
            .iter()
            .map(|m| aligned(m, prefix))
            .collect();
        Some(crate::check::load_state_dict(
            &state_dict,
            &keys,
            &batchnorm,
        ))
    } else {
        None
    };
    let counted = aligned_result.as_ref().unwrap_or(result);
    let strip = |k: &str| aligned(k, model_prefix.or(state_prefixed)).to_string();
    let mut attributed: std::collections::HashSet<String> = std::collections::HashSet::new();
    for field in &inferred.fields {
        let Some(model_value) = config_field(&model.config, &field.field) else {
            continue;
        };
        if normalised(model_value) == normalised(&field.value) {
            continue;
        }
        let name = field.field.as_str();
        let missing: Vec<&String> = counted
            .missing_keys
            .iter()
            .filter(|k| {
                exists_model
                    .get(strip(k).as_str())
                    .is_some_and(|d| d.contains(&name))
            })
            .collect();
        let unexpected: Vec<&String> = counted
            .unexpected_keys
            .iter()
            .filter(|k| {
                exists_checkpoint
                    .get(strip(k).as_str())
                    .is_some_and(|d| d.contains(&name))
            })
            .collect();
        let mismatched: Vec<&String> = counted
            .size_mismatches
            .iter()
            .map(|m| &m.key)
            .filter(|k| {
                shape_model
                    .get(strip(k).as_str())
                    .is_some_and(|d| d.contains(&name))
            })
            .collect();
        for key in missing.iter().chain(&unexpected).chain(&mismatched) {
            attributed.insert((*key).clone());
        }
        let counts = counts_text(missing.len(), unexpected.len(), mismatched.len());
        causes.push(Cause {
            field: field.field.clone(),
            checkpoint: field.value.clone(),
            model: model_value.clone(),
            missing: missing.len(),
            unexpected: unexpected.len(),
            size_mismatches: mismatched.len(),
            text: format!(
                "{}: checkpoint {}, model {}{}",
                field.field,
                display(&field.value),
                display(model_value),
                if counts.is_empty() {
                    String::new()
                } else {
                    format!(" — {counts}")
                }
            ),
        });
    }

    // 3. Whatever no field explains, grouped by the first two name parts.
    let mut groups: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let group_of = |key: &str| -> String {
        let key = strip(key);
        let parts: Vec<&str> = key.split('.').collect();
        if parts.len() > 2 {
            format!("{}.{}.*", parts[0], parts[1])
        } else {
            key.to_string()
        }
    };
    if explained_by_prefix == (0, 0) || aligned_result.is_some() {
        for key in &counted.missing_keys {
            if !attributed.contains(key) {
                groups.entry(group_of(key)).or_default().0 += 1;
            }
        }
        for key in &counted.unexpected_keys {
            if !attributed.contains(key) {
                groups.entry(group_of(key)).or_default().1 += 1;
            }
        }
        for mismatch in &counted.size_mismatches {
            if !attributed.contains(&mismatch.key) {
                groups.entry(group_of(&mismatch.key)).or_default().2 += 1;
            }
        }
    }
    for (group, (missing, unexpected, mismatches)) in groups {
        let hint = if group.starts_with("bert.pooler") {
            " (an old BERT pooler that Chinese-CLIP no longer has; the cn-clip loaders drop it)"
        } else if group.ends_with("num_batches_tracked") || group.contains("position_ids") {
            " (a buffer, not a weight)"
        } else {
            ""
        };
        causes.push(Cause {
            field: group.clone(),
            checkpoint: Value::Null,
            model: Value::Null,
            missing,
            unexpected,
            size_mismatches: mismatches,
            text: format!(
                "{group}: {}{hint}",
                counts_text(missing, unexpected, mismatches)
            ),
        });
    }
    causes.sort_by_key(|c| std::cmp::Reverse(c.missing + c.unexpected + c.size_mismatches));
    causes
}

/// A config field by name; families with nested configs (open_clip's
/// `vision_cfg`, HF CLIP's `text_config`) name inner fields with dots.
fn config_field<'a>(config: &'a Value, field: &str) -> Option<&'a Value> {
    config.get(field).or_else(|| {
        field
            .split('.')
            .try_fold(config, |value, part| value.get(part))
    })
}

fn family_name(family: &str) -> &str {
    match family {
        "cn_clip" => "Chinese-CLIP",
        "open_clip" => "OpenAI CLIP / open_clip",
        "hf" => "Hugging Face transformers",
        other => other,
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The model the checkpoint's inferred config describes, same family.
fn rebuild(model: &ModelSpec, inferred: &Inferred) -> Option<ModelSpec> {
    match (model.family.as_str(), inferred.family.as_str()) {
        ("cn_clip", "cn_clip") => {
            let flash = inferred
                .config
                .get("use_flash_attention")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            arch::cn_clip::build(&inferred.config, flash).ok()
        }
        (a, b) if a == b => arch::model_for_inferred(inferred),
        _ => None,
    }
}

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
        .filter(|c| !c.checkpoint.is_null() && c.field != "prefix")
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
                remedies.push(Remedy {
                    label: "config JSON inferred from the checkpoint".to_string(),
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
    if causes.iter().any(|c| c.field.starts_with("bert.pooler")) && loader == Loader::Strict {
        remedies.push(Remedy {
            label: "Python: drop the old pooler".to_string(),
            text: "sd = {k: v for k, v in sd.items() if \"bert.pooler\" not in k}".to_string(),
        });
    }
    Some(Fix { summary, remedies })
}

/// One-line verdict: "Loads" or "Won't load: 0 missing, 144 unexpected, 153 size mismatches".
pub fn verdict_line(report: &CheckReport) -> String {
    if report.loads {
        "Loads".to_string()
    } else {
        format!(
            "Won't load: {} missing, {} unexpected, {} size mismatches",
            report.missing_keys.len(),
            report.unexpected_keys.len(),
            report.size_mismatches.len()
        )
    }
}

pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// The report as Markdown: verdict, why, fix, notes, PyTorch's text.
pub fn to_markdown(report: &CheckReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("# ckptcheck: {}\n\n", verdict_line(report)));
    out.push_str(&format!(
        "- checkpoint: `{}` ({}, {}, {} read)\n- model: `{}` ({}), loader `{}`\n",
        report.file,
        report.format,
        human_bytes(report.file_bytes),
        human_bytes(report.bytes_read),
        report.model,
        report.model_family,
        report.loader.name()
    ));
    if let Some(preset) = &report.inferred.preset {
        out.push_str(&format!("- the checkpoint matches the preset `{preset}`\n"));
    }
    if !report.explanation.is_empty() {
        out.push_str("\n## Why\n\n");
        for cause in &report.explanation {
            out.push_str(&format!("- {}\n", cause.text));
        }
    }
    if let Some(fix) = &report.fix {
        out.push_str(&format!("\n## Fix\n\n{}\n", fix.summary));
        for remedy in &fix.remedies {
            out.push_str(&format!(
                "\n{}:\n\n```\n{}\n```\n",
                remedy.label, remedy.text
            ));
        }
    }
    if !report.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for note in &report.notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    if !report.unsafe_globals.is_empty() {
        out.push_str(&format!(
            "\n**Unsafe pickle**: references {}\n",
            report.unsafe_globals.join(", ")
        ));
    }
    if let Some(error) = &report.pytorch_error {
        out.push_str(&format!("\n## What PyTorch says\n\n```\n{error}\n```\n"));
    }
    out
}

/// The report for a terminal: one screen, PyTorch's text shortened.
pub fn to_text(report: &CheckReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} {}\n",
        if report.loads { "OK " } else { "ERR" },
        verdict_line(report)
    ));
    out.push_str(&format!(
        "    {} ({}, {}; read {}) into {} [{}], loader {}\n",
        report.file,
        report.format,
        human_bytes(report.file_bytes),
        human_bytes(report.bytes_read),
        report.model,
        report.model_family,
        report.loader.name()
    ));
    if let Some(preset) = &report.inferred.preset {
        out.push_str(&format!("    checkpoint matches preset {preset}\n"));
    }
    if !report.explanation.is_empty() {
        out.push_str("why:\n");
        for cause in &report.explanation {
            out.push_str(&format!("  - {}\n", cause.text));
        }
    }
    if let Some(fix) = &report.fix {
        out.push_str(&format!("fix: {}\n", fix.summary));
        for remedy in &fix.remedies {
            out.push_str(&format!("  {}:\n", remedy.label));
            for line in remedy.text.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    if !report.unsafe_globals.is_empty() {
        out.push_str(&format!(
            "UNSAFE pickle: references {} (never evaluated)\n",
            report.unsafe_globals.join(", ")
        ));
    }
    if let Some(error) = &report.pytorch_error {
        let lines: Vec<&str> = error.lines().collect();
        out.push_str("pytorch says:\n");
        for line in lines.iter().take(6) {
            let shown: String = line.chars().take(200).collect();
            out.push_str(&format!(
                "  {shown}{}\n",
                if line.chars().count() > 200 {
                    " ..."
                } else {
                    ""
                }
            ));
        }
        if lines.len() > 6 {
            out.push_str(&format!(
                "  ... {} more lines (--json has the full text)\n",
                lines.len() - 6
            ));
        }
    }
    out
}
