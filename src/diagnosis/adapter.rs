//! The explanation of a PEFT LoRA adapter applied to a base model (the
//! `peft` loader): why PEFT stops (no module matches `target_modules`),
//! which size mismatches come from the rank and which from a base of
//! another size, an embedding saved from a resized vocabulary, adapter
//! layers the file has no weights for, and weights that match no layer
//! (PEFT drops those without a word). Each with its fix in terms of
//! adapter_config.json or the base model.

use super::{Cause, Fix, Remedy};
use crate::arch::{ModelSpec, ModuleKind};
use crate::loader::peft::AdapterConfig;
use crate::state_dict::{LoadResult, SizeMismatch};
use serde_json::Value;
use std::collections::BTreeMap;

const BASE_PREFIX: &str = "base_model.model.";

/// The LoRA module a key belongs to and the LoRA part (`lora_A` ...).
fn lora_module(key: &str) -> Option<(&str, &str)> {
    let bare = key.strip_prefix(BASE_PREFIX).unwrap_or(key);
    let at = bare.find(".lora_")?;
    let part = bare[at + 1..].split('.').next()?;
    Some((&bare[..at], part))
}

/// "{a, b} (in 2 layers)": module names with layer numbers folded.
fn module_names(modules: &[&str]) -> String {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for module in modules {
        *names
            .entry(module.rsplit('.').next().unwrap_or(module))
            .or_default() += 1;
    }
    names
        .iter()
        .map(|(name, count)| format!("`{name}` ({count}×)"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn base_named(config: &AdapterConfig) -> String {
    match (&config.base_model, &config.base_model_class) {
        (Some(base), _) => format!("; adapter_config.json names its base: `{base}`"),
        (None, Some(class)) => format!("; adapter_config.json says its base was a `{class}`"),
        (None, None) => String::new(),
    }
}

/// Python that applies the adapter to the base it was trained on.
fn own_base_snippet(config: &AdapterConfig) -> String {
    let base = match (&config.base_model, &config.base_model_class) {
        (Some(base), _) => format!("{base:?}"),
        (None, Some(class)) => format!("\"<the {class} it was trained on>\""),
        (None, None) => "\"<the base model it was trained on>\"".to_string(),
    };
    format!("base = AutoModel.from_pretrained({base})\nmodel = PeftModel.from_pretrained(base, adapter_dir)")
}

/// Causes and the fix for an adapter checked with the `peft` loader.
pub(super) fn explain_adapter(
    result: &LoadResult,
    raises: Option<&str>,
    config: &AdapterConfig,
    model: &ModelSpec,
) -> (Vec<Cause>, Option<Fix>) {
    let mut causes = Vec::new();
    let mut remedies = Vec::new();
    let mut summaries = Vec::new();
    if config.peft_type != "LORA" {
        causes.push(Cause::new("peft-type",
            "peft_type",
            format!(
                "a PEFT {} adapter: ckptcheck checks LoRA adapters only, so this verdict is about its keys alone",
                config.peft_type
            ),
        ));
    }
    if let Some(raised) = raises {
        let mut c = Cause::new("peft-target-modules",
            "target_modules",
            format!(
                "target_modules {} in adapter_config.json names no layer of {} that LoRA can wrap, so PEFT stops before loading (\"{}\"): the adapter was made for another architecture{}",
                config.target_modules.display(),
                model.class_name,
                raised.split(": ").skip(1).collect::<Vec<_>>().join(": "),
                base_named(config)
            ),
        );
        c.checkpoint = Value::String(config.target_modules.display());
        causes.push(c);
        summaries.push("apply the adapter to the base model it was trained on".to_string());
        remedies.push(Remedy {
            label: "Python: the adapter's own base".to_string(),
            text: own_base_snippet(config),
        });
        return (causes, Some(fix(summaries, remedies)));
    }
    let mut rank: Vec<(&str, u64, u64)> = Vec::new();
    let mut width: Vec<(&str, String, String)> = Vec::new();
    let mut other: Vec<&SizeMismatch> = Vec::new();
    for mismatch in &result.size_mismatches {
        let (c, m) = (&mismatch.checkpoint_shape, &mismatch.model_shape);
        match lora_module(&mismatch.key) {
            Some((module, part)) if c.len() >= 2 && m.len() >= 2 => {
                // lora_A / lora_embedding_A: [r, in]; lora_B: [out, r].
                let a = part.ends_with('A');
                let (rank_c, rank_m) = if a { (c[0], m[0]) } else { (c[1], m[1]) };
                let (dim_c, dim_m) = if a { (c[1], m[1]) } else { (c[0], m[0]) };
                if dim_c != dim_m {
                    let side = if a { "input" } else { "output" };
                    width.push((module, format!("{side} {dim_c}"), format!("{side} {dim_m}")));
                } else if rank_c != rank_m && !rank.iter().any(|(name, _, _)| *name == module) {
                    rank.push((module, rank_c, rank_m));
                }
            }
            _ => other.push(mismatch),
        }
    }
    let count = |module: &str| {
        result
            .size_mismatches
            .iter()
            .filter(|m| lora_module(&m.key).is_some_and(|(name, _)| name == module))
            .count()
    };
    if !width.is_empty() {
        let modules: Vec<&str> = dedup(width.iter().map(|(m, _, _)| *m));
        let (first, in_file, in_base) = &width[0];
        let mut c = Cause::new("peft-base-mismatch",
            "base model",
            format!(
                "the adapter was trained on a base of another size: `{first}` has {in_file} features in the adapter and {in_base} in {} ({} modules) — {} size mismatches{}",
                model.class_name,
                modules.len(),
                modules.iter().map(|m| count(m)).sum::<usize>(),
                base_named(config)
            ),
        );
        c.size_mismatches = modules.iter().map(|m| count(m)).sum();
        causes.push(c);
        summaries
            .push("apply the adapter to the base model it was trained on (same sizes)".to_string());
        remedies.push(Remedy {
            label: "Python: the adapter's own base".to_string(),
            text: own_base_snippet(config),
        });
    }
    if !rank.is_empty() {
        let file_ranks: Vec<u64> = dedup(rank.iter().map(|(_, c, _)| *c));
        let built = rank.first().map(|(_, _, m)| *m).unwrap_or(config.r);
        let mut c = Cause::new("peft-rank",
            "r",
            format!(
                "LoRA rank: the file's tensors have rank {}, adapter_config.json makes PEFT build rank {built} (\"r\": {}{}) for {} — {} size mismatches",
                file_ranks.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                config.r,
                if config.rank_pattern.is_empty() { "" } else { ", with a rank_pattern" },
                module_names(&rank.iter().map(|(m, _, _)| *m).collect::<Vec<_>>()),
                rank.iter().map(|(m, _, _)| count(m)).sum::<usize>()
            ),
        );
        c.checkpoint = Value::from(file_ranks[0]);
        c.model = Value::from(built);
        c.size_mismatches = rank.iter().map(|(m, _, _)| count(m)).sum();
        causes.push(c);
        summaries.push(format!(
            "set \"r\": {} in adapter_config.json (the tensors are what was trained)",
            file_ranks[0]
        ));
        remedies.push(Remedy {
            label: "adapter_config.json".to_string(),
            text: format!("\"r\": {}", file_ranks[0]),
        });
    }
    if !other.is_empty() {
        let embedding_rows = other.iter().find(|m| {
            let bare = m.key.strip_prefix(BASE_PREFIX).unwrap_or(&m.key);
            let module = bare
                .rsplit_once('.')
                .map(|(module, _)| module)
                .unwrap_or(bare);
            model
                .module_kinds
                .iter()
                .any(|(name, kind)| *kind == ModuleKind::Embedding && name == module)
                && m.checkpoint_shape.get(1..) == m.model_shape.get(1..)
        });
        match embedding_rows {
            Some(rows) => {
                let (file, base) = (rows.checkpoint_shape[0], rows.model_shape[0]);
                let mut c = Cause::new("vocab-resized",
                    "vocab_size",
                    format!(
                        "vocabulary resized (\"resize_token_embeddings\"): the adapter carries `{}` with {file} rows (saved with the adapter because the vocabulary was resized to {file} tokens before training), this base has {base} — {} size mismatch(es)",
                        rows.key.strip_prefix(BASE_PREFIX).unwrap_or(&rows.key),
                        other.len()
                    ),
                );
                c.checkpoint = Value::from(file);
                c.model = Value::from(base);
                c.size_mismatches = other.len();
                causes.push(c);
                summaries.push(format!(
                    "resize the base model's embeddings to {file} tokens before applying the adapter"
                ));
                remedies.push(Remedy {
                    label: "Python: resize the base first".to_string(),
                    text: format!(
                        "base = AutoModel.from_pretrained(base_id)\nbase.resize_token_embeddings({file})  # before PeftModel.from_pretrained and merge_and_unload\nmodel = PeftModel.from_pretrained(base, adapter_dir)"
                    ),
                });
            }
            None => {
                let mut c = Cause::new("peft-saved-module",
                    "modules_to_save",
                    format!(
                        "{} tensor(s) saved whole with the adapter (modules_to_save or embedding layers) differ in size from this base's: `{}`{}",
                        other.len(),
                        other[0].key,
                        base_named(config)
                    ),
                );
                c.size_mismatches = other.len();
                causes.push(c);
            }
        }
    }
    let missing_modules: Vec<&str> = dedup(
        result
            .missing_keys
            .iter()
            .filter_map(|k| lora_module(k).map(|(m, _)| m)),
    );
    if !missing_modules.is_empty() {
        let mut c = Cause::new("peft-missing-adapter-keys",
            "target_modules",
            format!(
                "target_modules {} makes PEFT wrap {} that the file has no LoRA weights for: PEFT warns (\"Found missing adapter keys while loading the checkpoint\") and leaves them at their initialization (lora_B is zero: no effect) — {} missing keys",
                config.target_modules.display(),
                module_names(&missing_modules),
                result.missing_keys.len()
            ),
        );
        c.missing = result.missing_keys.len();
        causes.push(c);
        summaries
            .push("take the modules the file has no weights for out of target_modules".to_string());
    }
    let unused_modules: Vec<&str> = dedup(
        result
            .unexpected_keys
            .iter()
            .filter_map(|k| lora_module(k).map(|(m, _)| m)),
    );
    if !result.unexpected_keys.is_empty() {
        let mut c = Cause::new(
            "peft-unused-tensors",
            "target_modules",
            if unused_modules.is_empty() {
                format!(
                    "{} tensor(s) of the file match no layer PEFT builds (`{}`): PEFT drops them without a word",
                    result.unexpected_keys.len(),
                    result.unexpected_keys[0]
                )
            } else {
                format!(
                    "the file has LoRA weights for {} but target_modules {} leaves them out: PEFT drops those {} tensors without a word, and the adapter runs without them",
                    module_names(&unused_modules),
                    config.target_modules.display(),
                    result.unexpected_keys.len()
                )
            },
        );
        c.unexpected = result.unexpected_keys.len();
        causes.push(c);
        summaries
            .push("name every module the file has LoRA weights for in target_modules".to_string());
    }
    if causes.is_empty() {
        return (causes, None);
    }
    let fix = (!summaries.is_empty()).then(|| fix(summaries, remedies));
    (causes, fix)
}

fn fix(summaries: Vec<String>, remedies: Vec<Remedy>) -> Fix {
    Fix {
        summary: summaries.join("; "),
        remedies,
    }
}

fn dedup<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
