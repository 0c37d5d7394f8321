//! The explanation: the check's findings grouped into causes, each with how
//! many missing keys, unexpected keys and size mismatches it accounts for.
//! One function per cause, tried in this order:
//!
//! 1. `prefix_cause`: one side's keys carry a wrapper prefix (`module.`)
//!    the other's lack;
//! 2. `family_cause`: the checkpoint is of another model family (then that
//!    is the whole story);
//! 3. `config_field_causes`: config fields whose inferred value differs
//!    from the model's, each with the findings that field decides (counted
//!    as if the prefix were right);
//!    then `variant::variant_cause`: a diffusers checkpoint of another
//!    released structure of the model's class (SD3.5 Medium's dual
//!    attention blocks against SD3's), with the findings no size field
//!    decides;
//! 4. `known_key_causes`: keys whose story is known whatever the config:
//!    tied weights (`tie_word_embeddings`) and stale buffers
//!    (`position_ids`, `rotary_emb.inv_freq`, `attn.bias`); and sizes
//!    changed on purpose (`resized`): a classifier head's `num_labels`, a
//!    vocabulary resized after tokens were added;
//! 5. `leftover_causes`: whatever no field explains, grouped by the first
//!    two name parts.

use super::{display, family_name, Cause};
use crate::arch::{self, Inferred, ModelSpec};
use crate::check::load_state_dict_in_tree;
use crate::loader::{Loader, Prepared};
use crate::state_dict::LoadResult;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde_json::Value;
use std::collections::BTreeMap;

/// What every cause looks at.
pub(super) struct Findings<'a> {
    pub(super) result: &'a LoadResult,
    pub(super) prepared: &'a Prepared,
    pub(super) model: &'a ModelSpec,
    pub(super) inferred: &'a Inferred,
    pub(super) loader: Loader,
    pub(super) model_keys: HashSet<&'a str>,
    /// A prefix the model's keys carry and the checkpoint's lack (a
    /// DDP-wrapping loader's `module.`, or any wrapper).
    pub(super) model_prefix: Option<String>,
    /// A prefix the checkpoint's keys carry and the model's lack.
    pub(super) state_prefix: Option<String>,
}

impl Findings<'_> {
    /// A key without the wrapper prefix that one side carries.
    pub(super) fn bare(&self, key: &str) -> String {
        aligned(
            key,
            self.model_prefix
                .as_deref()
                .or(self.state_prefix.as_deref()),
        )
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
    let ddp_prefix = prepared.model_keys.first().and_then(|(first, _)| {
        let p = "module.";
        (first.starts_with(p) && prepared.model_keys.iter().all(|(k, _)| k.starts_with(p)))
            .then(|| p.to_string())
    });
    let common_prefix = checkpoint_prefix
        .filter(|prefix| {
            !prepared.state_dict.entries.is_empty()
                && prepared
                    .state_dict
                    .entries
                    .iter()
                    .all(|e| e.key.starts_with(prefix))
        })
        .map(str::to_string);
    // A wrapper prefix on one side only: a known one, else any prefix that
    // turns one side's leftover keys into the other side's.
    // The other side's leftovers only: a key the model expects and the file
    // has (`bn1.bias`) is no evidence that `layer4.1.` is a wrapper.
    let missing: HashSet<&str> = result.missing_keys.iter().map(String::as_str).collect();
    let unexpected: HashSet<&str> = result.unexpected_keys.iter().map(String::as_str).collect();
    let (model_prefix, state_prefix) = match (ddp_prefix, common_prefix) {
        (None, None) => match shared_prefix(&result.unexpected_keys, &missing) {
            Some(state) => (None, Some(state)),
            None => (shared_prefix(&result.missing_keys, &unexpected), None),
        },
        known => known,
    };
    let findings = Findings {
        result,
        prepared,
        model,
        inferred,
        loader,
        model_keys: model.tensors.iter().map(|t| t.name.as_str()).collect(),
        model_prefix,
        state_prefix,
    };
    let mut causes = Vec::new();
    let prefix = prefix_cause(&findings);
    let explained_by_prefix = prefix
        .as_ref()
        .map_or((0, 0), |cause| (cause.missing, cause.unexpected));
    causes.extend(prefix);
    let bundled = super::stable_diffusion::bundled_cause(&findings, result);
    let (bundled, bundled_keys) = match bundled {
        Some((cause, keys)) => (Some(cause), keys),
        None => (None, Vec::new()),
    };
    let by_structure = matches!(model.family.as_str(), "dump" | "reference");
    if let Some(cause) = family_cause(&findings).filter(|_| !by_structure) {
        causes.push(cause);
        return causes;
    }
    if let Some(cause) = super::stable_diffusion::release_cause(&findings) {
        causes.push(cause);
        causes.extend(bundled);
        return causes;
    }
    causes.extend(bundled);
    let aligned = (explained_by_prefix != (0, 0)).then(|| aligned_result(&findings));
    let counted = aligned.as_ref().unwrap_or(result);
    let (key_causes, mut attributed) = known_key_causes(&findings, counted);
    attributed.extend(bundled_keys);
    causes.extend(key_causes);
    if let Some((cause, keys)) = super::resized::num_labels_cause(&findings, counted) {
        causes.push(cause);
        attributed.extend(keys);
    }
    // The model the checkpoint's inferred config describes: the sub-model,
    // field and structure causes all read its tensors.
    let checkpoint_model = if by_structure {
        None
    } else {
        rebuild(model, inferred)
    };
    if let Some((cause, keys)) =
        super::sub_model::sub_model_cause(&findings, counted, checkpoint_model.as_ref())
    {
        causes.push(cause);
        attributed.extend(keys);
    }
    let (field_causes, field_keys) = if by_structure {
        // No config: the findings are read by structure.
        super::structure::structure_causes(&findings, counted)
    } else {
        // A field a cause above already explains (`num_labels`, by the
        // classifier head) is not explained a second time.
        let explained: Vec<String> = causes.iter().map(|c| c.field.clone()).collect();
        config_field_causes(&findings, counted, &explained, checkpoint_model.as_ref())
    };
    causes.extend(field_causes);
    attributed.extend(field_keys);
    if let Some((cause, keys)) = checkpoint_model.as_ref().and_then(|checkpoint_model| {
        super::variant::variant_cause(&findings, counted, &attributed, checkpoint_model)
    }) {
        causes.push(cause);
        attributed.extend(keys);
    }
    super::resized::vocab_resized(&mut causes);
    if explained_by_prefix == (0, 0) || aligned.is_some() {
        causes.extend(leftover_causes(&findings, counted, &attributed));
    }
    causes.sort_by_key(|c| std::cmp::Reverse(c.missing + c.unexpected + c.size_mismatches));
    causes
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// `counts_text` after a dash, as a cause's text ends; empty when there
/// are no findings.
pub(super) fn counts_suffix(missing: usize, unexpected: usize, mismatches: usize) -> String {
    let counts = counts_text(missing, unexpected, mismatches);
    if counts.is_empty() {
        counts
    } else {
        format!(" — {counts}")
    }
}

pub(super) fn counts_text(missing: usize, unexpected: usize, mismatches: usize) -> String {
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

/// A key with the wrapper prefix removed, so that a prefix problem does
/// not hide config causes.
fn aligned(key: &str, prefix: Option<&str>) -> String {
    match prefix {
        Some(p) => key.strip_prefix(p).unwrap_or(key).to_string(),
        None => key.to_string(),
    }
}

/// The prefix that turns most of `keys` into keys of `other` (`P` with
/// `key == P + other_key`), if one does for at least half of them.
fn shared_prefix(keys: &[String], other: &HashSet<&str>) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::default();
    for key in keys {
        // The shortest prefix (ending at a dot) that makes a key of `other`.
        let found = key
            .match_indices('.')
            .map(|(dot, _)| dot + 1)
            .find(|&end| other.contains(&key[end..]));
        if let Some(end) = found {
            *counts.entry(&key[..end]).or_default() += 1;
        }
    }
    let (prefix, count) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
    (count * 2 >= keys.len()).then(|| prefix.to_string())
}

/// The wrapper a key prefix comes from, as the ecosystem names it, with a
/// stable cause id.
pub fn wrapper_of(prefix: &str) -> (&'static str, &'static str) {
    match prefix {
        "module." => (
            "ddp-prefix",
            "\"DistributedDataParallel\" or \"DataParallel\" (`module.`)",
        ),
        "_orig_mod." => ("torch-compile-prefix", "\"torch.compile\" (`_orig_mod.`)"),
        "module._orig_mod." | "_orig_mod.module." => (
            "torch-compile-prefix",
            "\"torch.compile\" and \"DistributedDataParallel\"",
        ),
        "base_model.model." => ("peft-prefix", "a PEFT \"PeftModel\" (`base_model.model.`)"),
        "model." | "net." => (
            "lightning-prefix",
            "a \"PyTorch Lightning\" module holding the network as `self.model` / `self.net`",
        ),
        _ => ("wrapper-prefix", "a wrapper module"),
    }
}

/// Cause 1: a wrapper prefix on one side only.
fn prefix_cause(f: &Findings) -> Option<Cause> {
    match (f.state_prefix.as_deref(), f.model_prefix.as_deref()) {
        (Some(prefix), None) => {
            let unexpected = f
                .result
                .unexpected_keys
                .iter()
                .filter(|k| {
                    k.strip_prefix(prefix)
                        .is_some_and(|s| f.model_keys.contains(s))
                })
                .count();
            let (cause, wrapper) = wrapper_of(prefix);
            let carrying = f
                .prepared
                .state_dict
                .entries
                .iter()
                .filter(|e| e.key.starts_with(prefix))
                .count();
            (unexpected > 0).then(|| Cause {
                cause: cause.to_string(),
                field: "prefix".to_string(),
                checkpoint: Value::String(prefix.to_string()),
                model: Value::String(String::new()),
                missing: f.result.missing_keys.len(),
                unexpected,
                size_mismatches: 0,
                text: format!(
                    "{carrying} of {} checkpoint keys carry the `{prefix}` prefix: the weights were saved from the model wrapped in {wrapper}; the model's keys do not have it{}",
                    f.prepared.state_dict.entries.len(),
                    if f.loader == Loader::Strict && prefix == "module." && f.model.family == "cn_clip" {
                        " (loader cn-clip strips it)"
                    } else {
                        ""
                    }
                ),
            })
        }
        (None, Some(prefix)) => {
            let unexpected = f
                .result
                .unexpected_keys
                .iter()
                .filter(|k| f.model_keys.contains(k.as_str()))
                .count();
            let (cause, wrapper) = wrapper_of(prefix);
            (unexpected > 0).then(|| Cause {
                cause: cause.to_string(),
                field: "prefix".to_string(),
                checkpoint: Value::String(String::new()),
                model: Value::String(prefix.to_string()),
                missing: f.result.missing_keys.len(),
                unexpected,
                size_mismatches: 0,
                text: format!("the model is wrapped in {wrapper} and expects `{prefix}` on every key; the checkpoint's keys have no prefix (it was saved from the unwrapped model)"),
            })
        }
        _ => None,
    }
}

/// Cause 2: a checkpoint of another family: that is the cause of everything.
fn family_cause(f: &Findings) -> Option<Cause> {
    let family = &f.inferred.family;
    if family == &f.model.family || family == "unknown" || family.is_empty() {
        return None;
    }
    let missing = f.result.missing_keys.len();
    let unexpected = f.result.unexpected_keys.len();
    let size_mismatches = f.result.size_mismatches.len();
    Some(Cause {
        cause: "model-family".to_string(),
        field: "family".to_string(),
        checkpoint: Value::String(family.clone()),
        model: Value::String(f.model.family.clone()),
        missing,
        unexpected,
        size_mismatches,
        text: format!(
            "model family: the checkpoint is a {} model{}, the model is {} — {}",
            family_name(family),
            f.inferred
                .preset
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            family_name(&f.model.family),
            counts_text(missing, unexpected, size_mismatches)
        ),
    })
}

/// The load redone with the wrapper prefix removed from both sides.
fn aligned_result(f: &Findings) -> LoadResult {
    let prefix = f.state_prefix.as_deref().or(f.model_prefix.as_deref());
    let mut state_dict = f.prepared.state_dict.clone();
    for entry in &mut state_dict.entries {
        entry.key = aligned(&entry.key, prefix);
    }
    let keys: Vec<(String, Vec<u64>)> = f
        .prepared
        .model_keys
        .iter()
        .map(|(k, s)| (aligned(k, prefix), s.clone()))
        .collect();
    let batchnorm: Vec<String> = f
        .prepared
        .batchnorm_modules
        .iter()
        .map(|m| aligned(m, prefix))
        .collect();
    let modules: Vec<String> = f
        .prepared
        .module_names
        .iter()
        .map(|m| aligned(m, prefix))
        .collect();
    load_state_dict_in_tree(&state_dict, &keys, &batchnorm, &modules)
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

fn normalised(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace(' ', "")),
        other => other.clone(),
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

/// Cause 3: config fields that differ, with the findings they decide: size
/// mismatches from shape fields, missing and unexpected keys from
/// existence fields (layer counts). Returns the causes and the keys they
/// account for.
fn config_field_causes(
    f: &Findings,
    counted: &LoadResult,
    explained: &[String],
    checkpoint_model: Option<&ModelSpec>,
) -> (Vec<Cause>, HashSet<String>) {
    let shape_model: HashMap<&str, &Vec<&'static str>> = f
        .model
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), &t.depends_on))
        .collect();
    let exists_model: HashMap<&str, &Vec<&'static str>> = f
        .model
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), &t.exists_if))
        .collect();
    let exists_checkpoint: HashMap<&str, &Vec<&'static str>> = checkpoint_model
        .map(|m| {
            m.tensors
                .iter()
                .map(|t| (t.name.as_str(), &t.exists_if))
                .collect()
        })
        .unwrap_or_default();
    let strip = |k: &str| f.bare(k);
    let mut causes = Vec::new();
    let mut attributed: HashSet<String> = HashSet::default();
    for field in f.inferred.fields.iter().chain(&f.inferred.conditional) {
        if explained.contains(&field.field) {
            continue;
        }
        let Some(model_value) = config_field(&f.model.config, &field.field) else {
            continue;
        };
        if normalised(model_value) == normalised(&field.value) {
            continue;
        }
        // A field read with an assumed value (Parakeet's mel bins at a
        // subsampling stride of 2) is a cause only against a model that has
        // that value: it writes it, or leaves it to the same model type's
        // default, the inferred config leaving the assumed default out too.
        let same_type = f.model.config.get("model_type").is_some()
            && f.model.config.get("model_type") == f.inferred.config.get("model_type");
        let as_model = |(given, value): &(String, u64)| match config_field(&f.model.config, given) {
            Some(written) => written.as_u64() == Some(*value),
            None => same_type && config_field(&f.inferred.config, given).is_none(),
        };
        if !field.given.iter().all(as_model) {
            continue;
        }
        let given_text: Vec<String> = field
            .given
            .iter()
            .map(|(given, value)| format!("{given} {value}"))
            .collect();
        let given_text = if given_text.is_empty() {
            String::new()
        } else {
            format!(" (with {}, as in the model)", given_text.join(", "))
        };
        // A field the shapes show as a range differs only outside it.
        let checkpoint_value = match field.range {
            Some([least, most]) => {
                if model_value
                    .as_u64()
                    .is_some_and(|v| (least..=most).contains(&v))
                {
                    continue;
                }
                format!("{least} to {most}")
            }
            None => display(&field.value),
        };
        let name = field.field.as_str();
        let decided_by = |table: &HashMap<&str, &Vec<&'static str>>, key: &str| {
            table
                .get(strip(key).as_str())
                .is_some_and(|fields| fields.contains(&name))
        };
        let missing: Vec<&String> = counted
            .missing_keys
            .iter()
            .filter(|k| decided_by(&exists_model, k))
            .collect();
        let unexpected: Vec<&String> = counted
            .unexpected_keys
            .iter()
            .filter(|k| decided_by(&exists_checkpoint, k))
            .collect();
        let mismatched: Vec<&String> = counted
            .size_mismatches
            .iter()
            .map(|m| &m.key)
            .filter(|k| decided_by(&shape_model, k))
            .collect();
        for key in missing.iter().chain(&unexpected).chain(&mismatched) {
            attributed.insert((*key).clone());
        }
        causes.push(Cause {
            cause: "config-field".to_string(),
            field: field.field.clone(),
            checkpoint: field.value.clone(),
            model: model_value.clone(),
            missing: missing.len(),
            unexpected: unexpected.len(),
            size_mismatches: mismatched.len(),
            text: format!(
                "{}: checkpoint {}{given_text}, model {}{}",
                field.field,
                checkpoint_value,
                display(model_value),
                counts_suffix(missing.len(), unexpected.len(), mismatched.len())
            ),
        });
    }
    (causes, attributed)
}

/// Buffers that older libraries saved and newer models no longer have (or
/// never persist): a checkpoint carrying them is not a different model.
fn is_stale_buffer(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last == "position_ids"
        || key.ends_with("rotary_emb.inv_freq")
        || key.ends_with("attn.masked_bias")
        || (key.ends_with("attn.bias") && !key.contains("c_attn"))
}

/// Cause 4: keys whose story is known whatever the config: a tied weight
/// the file stores once, and stale buffers. Returns the causes and the keys
/// they account for.
fn known_key_causes(f: &Findings, counted: &LoadResult) -> (Vec<Cause>, HashSet<String>) {
    let mut causes = Vec::new();
    let mut attributed = HashSet::default();
    let strip = |k: &str| f.bare(k);
    let present: HashSet<String> = f
        .prepared
        .state_dict
        .entries
        .iter()
        .map(|e| strip(&e.key))
        .collect();
    if f.model.family == "hf" {
        let tied = arch::hf::tied_weights(f.model);
        let retied: Vec<(&String, &String)> = counted
            .missing_keys
            .iter()
            .filter_map(|key| {
                let bare = strip(key);
                tied.iter()
                    .find(|(target, source)| *target == bare && present.contains(source))
                    .map(|(_, source)| (key, source))
            })
            .collect();
        if !retied.is_empty() {
            for (key, _) in &retied {
                attributed.insert((*key).clone());
            }
            let pairs: Vec<String> = retied
                .iter()
                .map(|(key, source)| format!("`{key}` is tied to `{source}`"))
                .collect();
            causes.push(Cause {
                cause: "tied-weights".to_string(),
                field: "tie_word_embeddings".to_string(),
                checkpoint: Value::Bool(true),
                model: f.model.config.get("tie_word_embeddings").cloned().unwrap_or(Value::Null),
                missing: retied.len(),
                unexpected: 0,
                size_mismatches: 0,
                text: format!(
                    "tied weights (\"tie_word_embeddings\"): {}; the file stores the shared tensor once, from_pretrained re-ties it, a strict load_state_dict reports the tied copy missing",
                    pairs.join(", ")
                ),
            });
        }
        let untied = f.model.config.get("tie_word_embeddings") == Some(&Value::Bool(false));
        let head_missing: Vec<&String> = counted
            .missing_keys
            .iter()
            .filter(|key| untied && strip(key) == "lm_head.weight")
            .collect();
        if !head_missing.is_empty() {
            attributed.extend(head_missing.iter().map(|k| (*k).clone()));
            causes.push(Cause {
                cause: "untied-head-missing".to_string(),
                field: "tie_word_embeddings".to_string(),
                checkpoint: Value::Null,
                model: Value::Bool(false),
                missing: head_missing.len(),
                unexpected: 0,
                size_mismatches: 0,
                text: "`lm_head.weight` is missing and the config says \"tie_word_embeddings\": false, so the head is a weight of its own that this file lacks (it is not re-tied): a real problem, not a saving convention".to_string(),
            });
        }
    }
    let stale: Vec<&String> = counted
        .unexpected_keys
        .iter()
        .filter(|key| is_stale_buffer(key) || f.model.non_persistent.contains(&strip(key)))
        .collect();
    if !stale.is_empty() {
        attributed.extend(stale.iter().map(|k| (*k).clone()));
        causes.push(Cause {
            cause: "stale-buffer".to_string(),
            field: "buffers".to_string(),
            checkpoint: Value::Array(stale.iter().map(|k| Value::String((*k).clone())).collect()),
            model: Value::Null,
            missing: 0,
            unexpected: stale.len(),
            size_mismatches: 0,
            text: if stale.iter().any(|k| f.model.non_persistent.contains(&strip(k))) {
                format!(
                    "stale buffers ({}): the model registers them with persistent=False, so its state_dict() leaves them out and load_state_dict does not expect them; the checkpoint holds them (an older version of the class saved them): they hold no weights",
                    stale.iter().take(3).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                )
            } else {
                format!(
                    "stale buffers ({}): older library versions saved them (transformers 4.31+ stopped saving \"position_ids\"; `rotary_emb.inv_freq` and GPT-2's `attn.bias` are not persistent), the model does not expect them: they hold no weights",
                    stale.iter().take(3).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                )
            },
        });
    }
    (causes, attributed)
}

/// Cause 5: whatever no field explains, grouped by the first two name parts.
fn leftover_causes(f: &Findings, counted: &LoadResult, attributed: &HashSet<String>) -> Vec<Cause> {
    let strip = |k: &str| f.bare(k);
    let group_of = |key: &str| -> String {
        let key = strip(key);
        let parts: Vec<&str> = key.split('.').collect();
        if parts.len() > 2 {
            format!("{}.{}.*", parts[0], parts[1])
        } else {
            key.to_string()
        }
    };
    let mut groups: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
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
    groups
        .into_iter()
        .map(|(group, (missing, unexpected, mismatches))| {
            // Say what the loader in use does with the pooler, never what
            // another one would have done.
            let hint = if group.starts_with("bert.pooler") {
                match f.loader {
                    Loader::CnClip => " (an old BERT pooler that Chinese-CLIP no longer has; create_model drops it only when the keys start with `module`, and these do not)",
                    Loader::CnClipResume => " (an old BERT pooler that Chinese-CLIP no longer has)",
                    _ => " (an old BERT pooler that Chinese-CLIP no longer has; --loader cn-clip-resume drops it, as the fine-tune script does)",
                }
            } else if group.ends_with("num_batches_tracked") || group.contains("position_ids") {
                " (a buffer, not a weight)"
            } else {
                ""
            };
            Cause {
                cause: "unexplained-keys".to_string(),
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
            }
        })
        .collect()
}
