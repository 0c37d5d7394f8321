//! The `peft` loader: what `PeftModel.from_pretrained(base_model,
//! adapter_dir)` (peft 0.21, LoRA) does with an adapter. It reads
//! `adapter_config.json`, wraps every base module that `target_modules`
//! names (tuners_utils.py `check_target_module_exists`: a list matches a
//! module name or its last parts, a string is a regex `re.fullmatch`,
//! `"all-linear"` every Linear and Conv1D but the output layer) in a LoRA
//! layer of rank `r` (or `rank_pattern`'s), wraps `modules_to_save` in a
//! copy, inserts the adapter name into the file's keys
//! (`lora_A.weight` → `lora_A.default.weight`) and loads them with
//! `load_state_dict(strict=False)`: size mismatches raise, missing adapter
//! keys are a warning, and keys that match no layer are dropped silently.
//!
//! Not covered: PEFT methods other than LoRA, transformers 5's adapter key
//! conversion for models whose layout it converts (MoE fusions), and
//! `ignore_mismatched_sizes=True`.

use super::{Judgement, Prepared};
use crate::arch::{ModelSpec, ModuleKind};
use crate::state_dict::StateDict;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde_json::Value;
use std::collections::BTreeSet;

/// The adapter name `from_pretrained` loads under.
const ADAPTER_NAME: &str = "default";
/// The prefix PeftModel gives the base model's keys.
const BASE_PREFIX: &str = "base_model.model.";

/// How `target_modules` (or `exclude_modules`) names modules.
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleNames {
    Unset,
    /// A list: a module matches when its name is in it or ends with
    /// `.` + an entry.
    Names(Vec<String>),
    /// A string: a Python regex the whole module name must match.
    Pattern(String),
    /// `"all-linear"`.
    AllLinear,
}

impl ModuleNames {
    fn from_json(value: Option<&Value>) -> ModuleNames {
        match value {
            Some(Value::String(text)) if text.eq_ignore_ascii_case("all-linear") => {
                ModuleNames::AllLinear
            }
            Some(Value::String(text)) => ModuleNames::Pattern(text.clone()),
            Some(Value::Array(items)) => ModuleNames::Names(
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => ModuleNames::Unset,
        }
    }

    /// As adapter_config.json writes it, for messages.
    pub fn display(&self) -> String {
        match self {
            ModuleNames::Unset => "none".to_string(),
            ModuleNames::Names(names) => format!(
                "{{{}}}",
                names
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ModuleNames::Pattern(pattern) => format!("{pattern:?}"),
            ModuleNames::AllLinear => "\"all-linear\"".to_string(),
        }
    }
}

/// The fields of adapter_config.json that decide what PEFT builds.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    pub peft_type: String,
    pub r: u64,
    pub lora_alpha: Option<f64>,
    pub target_modules: ModuleNames,
    pub exclude_modules: ModuleNames,
    pub modules_to_save: Vec<String>,
    pub rank_pattern: Vec<(String, u64)>,
    pub layers_to_transform: Vec<u64>,
    pub layers_pattern: Vec<String>,
    pub use_dora: bool,
    pub lora_bias: bool,
    pub task_type: Option<String>,
    /// `base_model_name_or_path`: the Hub id or folder it was trained on.
    pub base_model: Option<String>,
    /// `auto_mapping.base_model_class` (`BertModel`).
    pub base_model_class: Option<String>,
}

impl AdapterConfig {
    /// adapter_config.json with PEFT's defaults (`r` 8, no targets).
    pub fn from_json(value: &Value) -> AdapterConfig {
        let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_string);
        let list = |field: &str| -> Vec<String> {
            match value.get(field) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                Some(Value::String(one)) => vec![one.clone()],
                _ => Vec::new(),
            }
        };
        let layers_to_transform = match value.get("layers_to_transform") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_u64).collect(),
            Some(one) => one.as_u64().into_iter().collect(),
            None => Vec::new(),
        };
        let rank_pattern = value
            .get("rank_pattern")
            .and_then(Value::as_object)
            .map(|patterns| {
                patterns
                    .iter()
                    .filter_map(|(key, rank)| rank.as_u64().map(|r| (key.clone(), r)))
                    .collect()
            })
            .unwrap_or_default();
        let base_model_class = value
            .get("auto_mapping")
            .and_then(|mapping| mapping.get("base_model_class"))
            .and_then(Value::as_str)
            .map(str::to_string);
        AdapterConfig {
            peft_type: text("peft_type").unwrap_or_else(|| "LORA".to_string()),
            r: value.get("r").and_then(Value::as_u64).unwrap_or(8),
            lora_alpha: value.get("lora_alpha").and_then(Value::as_f64),
            target_modules: ModuleNames::from_json(value.get("target_modules")),
            exclude_modules: ModuleNames::from_json(value.get("exclude_modules")),
            modules_to_save: list("modules_to_save"),
            rank_pattern,
            layers_to_transform,
            layers_pattern: list("layers_pattern"),
            use_dora: value
                .get("use_dora")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            lora_bias: value
                .get("lora_bias")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            task_type: text("task_type"),
            base_model: text("base_model_name_or_path"),
            base_model_class,
        }
    }

    /// `modules_to_save` with the heads PeftModelFor* adds for its task.
    fn saved_modules(&self) -> Vec<String> {
        let mut modules = self.modules_to_save.clone();
        let task_heads: &[&str] = match self.task_type.as_deref() {
            Some("SEQ_CLS") => &["classifier", "score"],
            Some("TOKEN_CLS") => &["classifier", "score"],
            Some("QUESTION_ANS") => &["qa_outputs"],
            _ => &[],
        };
        for head in task_heads {
            if !modules.iter().any(|m| m == head) {
                modules.push(head.to_string());
            }
        }
        modules
    }

    /// The class PEFT's error text names (`PeftModelForCausalLM` ...).
    pub fn class_name(&self) -> &'static str {
        match self.task_type.as_deref() {
            Some("SEQ_CLS") => "PeftModelForSequenceClassification",
            Some("CAUSAL_LM") => "PeftModelForCausalLM",
            Some("SEQ_2_SEQ_LM") => "PeftModelForSeq2SeqLM",
            Some("TOKEN_CLS") => "PeftModelForTokenClassification",
            Some("QUESTION_ANS") => "PeftModelForQuestionAnswering",
            Some("FEATURE_EXTRACTION") => "PeftModelForFeatureExtraction",
            _ => "PeftModel",
        }
    }
}

/// A Python `re` pattern compiled for the whole text (`re.fullmatch`), or
/// `None` when the pattern uses syntax the regex engine lacks.
fn full_match(pattern: &str, text: &str) -> Option<bool> {
    regex_lite::Regex::new(&format!("^(?:{pattern})$"))
        .ok()
        .map(|re| re.is_match(text))
}

fn matches_names(key: &str, names: &[String]) -> bool {
    names.iter().any(|name| {
        key == name
            || key
                .strip_suffix(name.as_str())
                .is_some_and(|s| s.ends_with('.'))
    })
}

/// The layer number in a module name, as PEFT finds it for
/// `layers_to_transform`: the first number after `layers_pattern.`, or
/// without a pattern the first number two parts in.
fn layer_index(key: &str, patterns: &[String]) -> Option<u64> {
    let parts: Vec<&str> = key.split('.').collect();
    let number_after = |index: usize| -> Option<u64> {
        // A number followed by another part (the regexes end in `\.`).
        (index + 1 < parts.len())
            .then(|| parts.get(index)?.parse().ok())
            .flatten()
    };
    if patterns.is_empty() {
        // `.*?\.[^.]*\.(?P<idx>\d+)\.`: the first number with at least two
        // parts before it.
        return (2..parts.len()).find_map(number_after);
    }
    patterns.iter().find_map(|pattern| {
        (0..parts.len()).find_map(|start| {
            let pattern_parts = pattern.split('.').count();
            let candidate = parts.get(start..start + pattern_parts)?.join(".");
            (full_match(pattern, &candidate) == Some(true))
                .then(|| number_after(start + pattern_parts))
                .flatten()
        })
    })
}

/// What `check_target_module_exists` says of one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    No,
    Yes,
    Excluded,
}

fn target_of(config: &AdapterConfig, key: &str, all_linear: &[String]) -> Target {
    let excluded = match &config.exclude_modules {
        ModuleNames::Pattern(pattern) => full_match(pattern, key) == Some(true),
        ModuleNames::Names(names) => matches_names(key, names),
        _ => false,
    };
    let saved = config.saved_modules().iter().any(|module| {
        regex_lite::Regex::new(&format!(r"^(?:|.*\.)(?:{module})(?:$|\..*)"))
            .map(|re| re.is_match(key))
            .unwrap_or(false)
    });
    if excluded || saved {
        return Target::Excluded;
    }
    let found = match &config.target_modules {
        ModuleNames::Unset => false,
        ModuleNames::Pattern(pattern) => full_match(pattern, key) == Some(true),
        ModuleNames::AllLinear => matches_names(key, all_linear),
        ModuleNames::Names(names) => {
            matches_names(key, names)
                && (config.layers_to_transform.is_empty()
                    || layer_index(key, &config.layers_pattern)
                        .is_some_and(|index| config.layers_to_transform.contains(&index)))
        }
    };
    if found {
        Target::Yes
    } else {
        Target::No
    }
}

/// `get_pattern_key`: the rank_pattern entry whose pattern ends the name.
fn rank_for(config: &AdapterConfig, key: &str) -> u64 {
    config
        .rank_pattern
        .iter()
        .find(|(pattern, _)| full_match(&format!(r"(?:.*\.)?(?:{pattern})"), key) == Some(true))
        .map(|(_, rank)| *rank)
        .unwrap_or(config.r)
}

/// A module of the base model: its kind and its own tensors (leaf name,
/// shape), in `state_dict()` order.
struct BaseModule {
    kind: Option<Kind>,
    tensors: Vec<(String, Vec<u64>)>,
}

/// LoRA's layer kinds (lora/layer.py), with the shapes they wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Linear,
    Conv1D,
    Embedding,
    Conv2d,
}

/// The model's modules: every prefix of a tensor name, with the kinds the
/// builder recorded; a module holding just a 2-D `weight` (and a bias) is a
/// Linear, one with a 4-D `weight` a Conv2d.
fn base_modules(model: &ModelSpec) -> (Vec<String>, HashMap<String, BaseModule>) {
    let recorded: HashMap<&str, ModuleKind> = model
        .module_kinds
        .iter()
        .map(|(name, kind)| (name.as_str(), *kind))
        .collect();
    let mut order = Vec::new();
    let mut modules: HashMap<String, BaseModule> = HashMap::default();
    for tensor in &model.tensors {
        let (module, leaf) = tensor.name.rsplit_once('.').unwrap_or(("", &tensor.name));
        let mut prefix = String::new();
        for part in module.split('.').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part);
            if !modules.contains_key(&prefix) {
                order.push(prefix.clone());
                modules.insert(
                    prefix.clone(),
                    BaseModule {
                        kind: None,
                        tensors: Vec::new(),
                    },
                );
            }
        }
        if let Some(entry) = modules.get_mut(module) {
            entry.tensors.push((leaf.to_string(), tensor.shape.clone()));
        }
    }
    for (name, module) in modules.iter_mut() {
        let weight = module
            .tensors
            .iter()
            .find(|(leaf, _)| leaf == "weight")
            .map(|(_, shape)| shape.len());
        let only_weight_and_bias = module
            .tensors
            .iter()
            .all(|(leaf, _)| leaf == "weight" || leaf == "bias");
        module.kind = match recorded.get(name.as_str()) {
            Some(ModuleKind::Linear) => Some(Kind::Linear),
            Some(ModuleKind::Conv1D) => Some(Kind::Conv1D),
            Some(ModuleKind::Embedding) => Some(Kind::Embedding),
            None if only_weight_and_bias && weight == Some(2) => Some(Kind::Linear),
            None if only_weight_and_bias && weight == Some(4) => Some(Kind::Conv2d),
            None => None,
        };
    }
    (order, modules)
}

/// The tensors LoRA adds to a module of `kind` whose weight is `weight`.
fn lora_tensors(
    kind: Kind,
    weight: &[u64],
    r: u64,
    config: &AdapterConfig,
) -> Vec<(String, Vec<u64>)> {
    let name = |part: &str| format!("{part}.{ADAPTER_NAME}.weight");
    let (first, second) = (
        weight.first().copied().unwrap_or(0),
        weight.get(1).copied().unwrap_or(0),
    );
    let mut tensors = match kind {
        Kind::Linear => vec![
            (name("lora_A"), vec![r, second]),
            (name("lora_B"), vec![first, r]),
        ],
        Kind::Conv1D => vec![
            (name("lora_A"), vec![r, first]),
            (name("lora_B"), vec![second, r]),
        ],
        Kind::Conv2d => {
            let mut a = vec![r, second];
            a.extend(weight.get(2..).unwrap_or(&[]));
            vec![(name("lora_A"), a), (name("lora_B"), vec![first, r, 1, 1])]
        }
        Kind::Embedding => vec![
            (format!("lora_embedding_A.{ADAPTER_NAME}"), vec![r, first]),
            (format!("lora_embedding_B.{ADAPTER_NAME}"), vec![second, r]),
        ],
    };
    let out = match kind {
        Kind::Linear | Kind::Conv2d => first,
        Kind::Conv1D | Kind::Embedding => second,
    };
    if config.lora_bias && kind != Kind::Embedding {
        tensors.push((format!("lora_B.{ADAPTER_NAME}.bias"), vec![out]));
    }
    if config.use_dora {
        tensors.push((name("lora_magnitude_vector"), vec![out]));
    }
    tensors
}

/// `_insert_adapter_name_into_state_dict` for LoRA (parameter prefix
/// `lora_`), then DoRA's magnitude key remap.
fn adapter_key(key: &str) -> String {
    let Some(at) = key.rfind("lora_") else {
        return key.to_string();
    };
    let suffix = &key[at + "lora_".len()..];
    let renamed = match suffix.split_once('.') {
        Some((_, replaced)) => format!(
            "{}{ADAPTER_NAME}.{replaced}",
            &key[..key.len() - replaced.len()]
        ),
        None => format!("{key}.{ADAPTER_NAME}"),
    };
    if renamed.ends_with(&format!("lora_magnitude_vector.{ADAPTER_NAME}")) {
        format!("{renamed}.weight")
    } else {
        renamed
    }
}

/// Why PEFT stops before loading anything, as it says it.
fn injection_error(
    config: &AdapterConfig,
    targeted: &[String],
    unsupported: &[String],
    excluded: usize,
) -> Option<String> {
    if config.peft_type != "LORA" {
        return None;
    }
    if let Some(module) = unsupported.first() {
        return Some(format!(
            "ValueError: Target module {module} is not supported. Currently, only the following modules are supported: `torch.nn.Linear`, `torch.nn.Embedding`, `torch.nn.Conv1d`, `torch.nn.Conv2d`, `torch.nn.Conv3d`, `transformers.pytorch_utils.Conv1D`, `torch.nn.MultiheadAttention.`."
        ));
    }
    if !targeted.is_empty() {
        return None;
    }
    if excluded > 0 && config.target_modules == ModuleNames::Unset {
        return None;
    }
    Some(match config.target_modules {
        ModuleNames::Unset => "NoMatchingPeftModuleError: No `target_modules` passed but also no `target_parameters` found. Please check the values for these arguments.".to_string(),
        _ => {
            let mut text = format!(
                "NoMatchingPeftModuleError: Target modules {} not found in the base model. Please check the target modules and try again.",
                config.target_modules.display()
            );
            if !config.layers_to_transform.is_empty() {
                text.push_str(&format!(
                    " Note: You specified 'layers_to_transform': {:?}.",
                    config.layers_to_transform
                ));
            }
            text
        }
    })
}

/// What PEFT built: the LoRA-wrapped modules with their rank.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Injected {
    /// (module name, rank) of each LoRA layer, in model order.
    pub lora_modules: Vec<(String, u64)>,
    /// Modules wrapped as `modules_to_save` copies.
    pub saved_modules: Vec<String>,
}

pub fn prepare(
    state_dict: &StateDict,
    model: &ModelSpec,
    adapter_config: Option<&Value>,
) -> Prepared {
    let config = AdapterConfig::from_json(adapter_config.unwrap_or(&Value::Null));
    let (order, modules) = base_modules(model);
    // "all-linear": every Linear and Conv1D but the output layer and the
    // classification heads (tuners_utils.py `_maybe_include_all_linear_layers`).
    let all_linear: Vec<String> = order
        .iter()
        .filter(|name| {
            matches!(modules[*name].kind, Some(Kind::Linear | Kind::Conv1D))
                && !model.tied_keys.contains(&format!("{name}.weight"))
                && *name != "lm_head"
                && !name.ends_with("predictions.decoder")
                && !(config.task_type.as_deref() == Some("SEQ_CLS")
                    && (*name == "classifier" || *name == "score"))
        })
        .cloned()
        .collect();
    let mut targeted: Vec<String> = Vec::new();
    let mut unsupported: Vec<String> = Vec::new();
    let mut excluded = 0usize;
    for name in &order {
        match target_of(&config, name, &all_linear) {
            Target::Yes if modules[name].kind.is_some() => targeted.push(name.clone()),
            Target::Yes => unsupported.push(name.clone()),
            Target::Excluded => excluded += 1,
            Target::No => {}
        }
    }
    // A module inside a LoRA layer is not wrapped again.
    let targeted_set: HashSet<&str> = targeted.iter().map(String::as_str).collect();
    let saved_names = config.saved_modules();
    let saved: BTreeSet<String> = order
        .iter()
        .filter(|name| !modules[*name].tensors.is_empty() && matches_names(name, &saved_names))
        .cloned()
        .collect();
    let mut model_keys: Vec<(String, Vec<u64>)> = Vec::new();
    let mut injected = Injected::default();
    for name in order.iter().chain(std::iter::once(&String::new())) {
        let Some(module) = modules.get(name) else {
            // Tensors of the root module (ViT's `cls_token`).
            for tensor in model.tensors.iter().filter(|t| !t.name.contains('.')) {
                model_keys.push((
                    format!("{BASE_PREFIX}{}", tensor.name),
                    tensor.shape.clone(),
                ));
            }
            continue;
        };
        let dotted = format!("{BASE_PREFIX}{name}.");
        if targeted_set.contains(name.as_str()) {
            let kind = module.kind.unwrap_or(Kind::Linear);
            let weight = module
                .tensors
                .iter()
                .find(|(leaf, _)| leaf == "weight")
                .map(|(_, shape)| shape.clone())
                .unwrap_or_default();
            for (leaf, shape) in &module.tensors {
                model_keys.push((format!("{dotted}base_layer.{leaf}"), shape.clone()));
            }
            let r = rank_for(&config, name);
            injected.lora_modules.push((name.clone(), r));
            for (leaf, shape) in lora_tensors(kind, &weight, r, &config) {
                model_keys.push((format!("{dotted}{leaf}"), shape));
            }
        } else if saved.contains(name) {
            injected.saved_modules.push(name.clone());
            for copy in [
                "original_module".to_string(),
                format!("modules_to_save.{ADAPTER_NAME}"),
            ] {
                for (leaf, shape) in &module.tensors {
                    model_keys.push((format!("{dotted}{copy}.{leaf}"), shape.clone()));
                }
            }
        } else {
            for (leaf, shape) in &module.tensors {
                model_keys.push((format!("{dotted}{leaf}"), shape.clone()));
            }
        }
    }
    let mut prepared = super::Prepared::unchanged(state_dict, model);
    prepared.model_keys = model_keys;
    prepared.batchnorm_modules = model
        .batchnorm_modules
        .iter()
        .map(|m| format!("{BASE_PREFIX}{m}"))
        .collect();
    prepared.class_name = config.class_name().to_string();
    for entry in &mut prepared.state_dict.entries {
        let saved_module = saved.iter().find(|module| {
            entry
                .key
                .strip_prefix(BASE_PREFIX)
                .and_then(|rest| rest.strip_prefix(module.as_str()))
                .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.'))
        });
        entry.key = match saved_module {
            Some(module) => {
                let leaf = &entry.key[BASE_PREFIX.len() + module.len() + 1..];
                format!("{BASE_PREFIX}{module}.modules_to_save.{ADAPTER_NAME}.{leaf}")
            }
            None => adapter_key(&entry.key),
        };
    }
    prepared.notes.push(format!(
        "PEFT wraps {} module(s) of {} in LoRA layers ({}), target_modules {}{}",
        injected.lora_modules.len(),
        model.class_name,
        rank_summary(&injected.lora_modules),
        config.target_modules.display(),
        if injected.saved_modules.is_empty() {
            String::new()
        } else {
            format!(
                ", and keeps copies of {}",
                injected.saved_modules.join(", ")
            )
        }
    ));
    prepared.judgement = Judgement::Peft {
        raises: injection_error(&config, &targeted, &unsupported, excluded),
        injected,
        config: Box::new(config),
    };
    prepared
}

/// "rank 4" or "rank 4 (2 modules), rank 8 (1 module)".
pub fn rank_summary(modules: &[(String, u64)]) -> String {
    let mut ranks: Vec<(u64, usize)> = Vec::new();
    for (_, r) in modules {
        match ranks.iter_mut().find(|(rank, _)| rank == r) {
            Some((_, count)) => *count += 1,
            None => ranks.push((*r, 1)),
        }
    }
    match ranks.as_slice() {
        [] => "no layers".to_string(),
        [(r, _)] => format!("rank {r}"),
        several => several
            .iter()
            .map(|(r, n)| format!("rank {r} ({n} modules)"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapter_name_goes_where_peft_puts_it() {
        let cases = [
            (
                "base_model.model.q.lora_A.weight",
                "base_model.model.q.lora_A.default.weight",
            ),
            (
                "base_model.model.q.lora_B.bias",
                "base_model.model.q.lora_B.default.bias",
            ),
            (
                "base_model.model.e.lora_embedding_A",
                "base_model.model.e.lora_embedding_A.default",
            ),
            (
                "base_model.model.q.lora_magnitude_vector",
                "base_model.model.q.lora_magnitude_vector.default.weight",
            ),
            (
                "base_model.model.embeddings.word_embeddings.weight",
                "base_model.model.embeddings.word_embeddings.weight",
            ),
        ];
        for (saved, loaded) in cases {
            assert_eq!(adapter_key(saved), loaded, "{saved}");
        }
    }

    #[test]
    fn target_modules_match_like_peft() {
        let config = |targets: Value| {
            AdapterConfig::from_json(&serde_json::json!({ "target_modules": targets }))
        };
        let key = "encoder.layer.0.attention.self.query";
        assert_eq!(
            target_of(&config(serde_json::json!(["query"])), key, &[]),
            Target::Yes
        );
        assert_eq!(
            target_of(&config(serde_json::json!(["self.query"])), key, &[]),
            Target::Yes
        );
        // Whole parts only: "uery" is not a module name.
        assert_eq!(
            target_of(&config(serde_json::json!(["uery"])), key, &[]),
            Target::No
        );
        assert_eq!(
            target_of(&config(serde_json::json!(r".*\.(query|value)")), key, &[]),
            Target::Yes
        );
        // A regex must match the whole name (re.fullmatch).
        assert_eq!(
            target_of(&config(serde_json::json!("query")), key, &[]),
            Target::No
        );
        let layers = AdapterConfig::from_json(&serde_json::json!({
            "target_modules": ["query"], "layers_to_transform": [1], "layers_pattern": "layer"
        }));
        assert_eq!(target_of(&layers, key, &[]), Target::No);
        assert_eq!(
            target_of(&layers, "encoder.layer.1.attention.self.query", &[]),
            Target::Yes
        );
        let saved = AdapterConfig::from_json(&serde_json::json!({
            "target_modules": ["dense"], "modules_to_save": ["pooler"]
        }));
        assert_eq!(target_of(&saved, "pooler.dense", &[]), Target::Excluded);
    }

    #[test]
    fn layer_numbers_are_found_as_peft_finds_them() {
        assert_eq!(layer_index("model.layers.3.self_attn.q_proj", &[]), Some(3));
        assert_eq!(
            layer_index("encoder.layer.1.attention.self.query", &[]),
            Some(1)
        );
        assert_eq!(
            layer_index("model.layers.1.experts.0.w1", &["layers".to_string()]),
            Some(1)
        );
        assert_eq!(layer_index("lm_head", &[]), None);
    }
}
