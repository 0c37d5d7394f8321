//! The transformers model zoo as data: every model type and class whose
//! `state_dict()` generate.py could describe, read from transformers.json
//! (derived from the library itself, see that script) and evaluated here
//! for a user's config.json. A description is a tree of tensors in
//! `state_dict()` order, where alike layers are one `repeat`, every size a
//! formula over config fields (`formula.rs`), each field's default (a number,
//! a flag or a formula over other fields), flags that add tensors as
//! conditions, and the fields the description cannot follow ("fixed": a
//! config that changes them is refused, never guessed), and the fields a
//! config.json must set because the config class has no default the
//! library builds ("required", refused when left out). COVERAGE.md lists
//! what is described and why the rest is not.

mod checks;
mod class_index;
mod classes;
mod defaults;
pub mod diffusers;
mod equations;
mod expand;
mod formula;
mod index_lists;
mod indirect_fields;
pub mod infer;
mod layer_kinds;
pub mod merge;
pub mod presets;
mod swap_inference;
mod swaps;
pub use swaps::sub_model_choices;

use super::{KeyRename, ModelSpec, RenameScope, WeightMerge};
use crate::error::{err, ErrorKind, Result};
use checks::{
    check_clamped, check_companions, check_fixed, check_given_with_parent, check_least,
    check_multiples, check_named_lists, check_nonzero, check_required, check_rounded,
    check_sub_config_names, check_sub_configs, check_undeclared, keys_absent_at_equal_sizes,
};
use classes::description;
pub use classes::{classes, described_model_types, knows, model_type_of_class};
use defaults::{by_name, default_key};
use expand::Expansion;
use formula::Formula;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The generated data, compiled in (the page needs no second download).
const DATA: &str = include_str!("transformers.json");

/// Tensors one description may expand to: a config asking for more (a
/// billion layers) is refused before any list grows.
const MAX_TENSORS: u64 = 1 << 20;
/// Default formulas may refer to other fields' defaults this deep.
const MAX_DEFAULT_DEPTH: usize = 8;
/// Modules nest at most this deep (the deepest real models reach ~12).
const MAX_TREE_DEPTH: usize = 64;

fn data() -> &'static Value {
    static DATA_VALUE: OnceLock<Value> = OnceLock::new();
    DATA_VALUE.get_or_init(|| serde_json::from_str(DATA).unwrap_or(Value::Null))
}

/// One described model type: its classes in order, base model first.
pub(crate) struct ModelType {
    pub name: &'static str,
    pub classes: Vec<(&'static str, &'static Value)>,
    /// Per sub-config (`vision_config`), its `model_type` and the fields
    /// where the composite config's default differs from the sub-config
    /// class's own (assemble.py's `sub_config_facts`).
    pub sub_configs: Option<&'static Value>,
}

/// The data's model types in order (the most used first), read once.
fn model_types() -> &'static [ModelType] {
    static TYPES: OnceLock<Vec<ModelType>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let pair = |item: &'static Value| Some((item.get(0)?.as_str()?, item.get(1)?));
        data()
            .get("model_types")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (name, entry) = pair(item)?;
                let classes = entry
                    .get("classes")?
                    .as_array()?
                    .iter()
                    .filter_map(pair)
                    .collect();
                Some(ModelType {
                    name,
                    classes,
                    sub_configs: entry.get("sub_configs"),
                })
            })
            .collect()
    })
}

pub(crate) fn model_type(name: &str) -> Option<&'static ModelType> {
    model_types().iter().find(|entry| entry.name == name)
}

/// A node's entries of one kind: `t` (tensors), `c` (named children) or
/// `items` (a list's first layers).
fn entries(node: &'static Value, kind: &str) -> impl Iterator<Item = &'static Value> {
    node.get(kind)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A named child entry `[name, subtree]`.
fn child(entry: &'static Value) -> (&'static str, &'static Value) {
    (entry[0].as_str().unwrap_or(""), &entry[1])
}

/// The node itself, or the subtree it refers to in the data's `shared`
/// table (`{"ref": i}`); `None` for a reference to nothing.
fn resolved(node: &'static Value) -> Option<&'static Value> {
    match node.get("ref") {
        None => Some(node),
        Some(index) => data()
            .get("shared")?
            .get(usize::try_from(index.as_u64()?).ok()?),
    }
}

/// The transformers version the data was derived from.
pub fn transformers_version() -> &'static str {
    data()
        .get("transformers")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A model type's sub-config facts (`sub_configs` in the data).
fn sub_configs_of(name: &str) -> Option<&'static Value> {
    model_type(name).and_then(|entry| entry.sub_configs)
}

/// The model a config.json describes, from the zoo. `model_type` is the
/// config's; `architecture` its `architectures[0]`.
pub fn from_config_value(
    config: &Value,
    model_type: &str,
    architecture: Option<&str>,
) -> Result<ModelSpec> {
    build(config, model_type, architecture, true)
}

/// A class's model for a config; `whole` is false for a sub-model built in
/// a composite's place (swaps.rs): it swaps nothing itself, resolves every
/// field of its description for the composite to read, and names no
/// architecture in its config.
fn build(
    config: &Value,
    model_type: &str,
    architecture: Option<&str>,
    whole: bool,
) -> Result<ModelSpec> {
    let (class, desc) = description(model_type, architecture, config)?;
    let renamed = with_renamed_keys(config, desc);
    let config = renamed.as_ref().unwrap_or(config);
    let (grafts, merged) = if whole {
        swaps::grafts(config, desc, model_type, class)?
    } else {
        (Vec::new(), config.clone())
    };
    {
        // The composite's own checks, on its config less the swapped
        // sub-configs (their own descriptions checked those).
        let checked = swaps::without_swapped(config, &grafts);
        let config = &checked;
        let mut fields = Fields {
            config,
            desc,
            resolved: Vec::new(),
        };
        check_fixed(config, desc, model_type, class)?;
        check_nonzero(config, desc, class)?;
        let swapped: Vec<&str> = grafts.iter().map(|graft| graft.sub_config).collect();
        check_required(config, &swapped, desc, model_type, class)?;
        check_sub_configs(config, desc)?;
        check_sub_config_names(config, sub_configs_of(model_type), model_type, class)?;
        check_given_with_parent(config, desc, model_type, class)?;
        check_multiples(&mut fields, class)?;
        check_clamped(&mut fields, class)?;
        check_rounded(&mut fields, class)?;
        check_least(&mut fields, class)?;
        check_companions(&mut fields, class)?;
        check_named_lists(&mut fields, class)?;
        check_undeclared(&mut fields, class)?;
    }
    let config = &merged;
    let mut fields = Fields {
        config,
        desc,
        resolved: Vec::new(),
    };
    let absent = keys_absent_at_equal_sizes(&mut fields)?;
    let tree = desc
        .get("tree")
        .ok_or_else(|| err(ErrorKind::BadConfig, "zoo data has no tree"))?;
    let mut expansion = Expansion {
        fields: &mut fields,
        values: Default::default(),
        counts: Default::default(),
        tensors: Vec::new(),
        exists_if: Vec::new(),
        shaped_by: Vec::new(),
        module_kinds: Vec::new(),
        batchnorm_modules: Vec::new(),
        grafts: &grafts,
        class,
    };
    expansion.node(tree, "", 0)?;
    let Expansion {
        mut tensors,
        mut module_kinds,
        mut batchnorm_modules,
        ..
    } = expansion;
    if !absent.is_empty() {
        // A module whose every tensor is left out is not there at all.
        tensors.retain(|tensor| !absent.contains(&tensor.name.as_str()));
        let under = |name: &str, module: &str| {
            name.strip_prefix(module)
                .is_some_and(|rest| rest.starts_with('.'))
        };
        let emptied = |module: &str| {
            absent.iter().any(|key| under(key, module))
                && !tensors.iter().any(|t| under(&t.name, module))
        };
        module_kinds.retain(|(module, _)| !emptied(module));
        batchnorm_modules.retain(|module| !emptied(module));
    }
    if !whole {
        swaps::resolve_all(&mut fields);
    }
    let mut normalised = config.clone();
    if let Some(object) = normalised.as_object_mut() {
        for (field, value) in &fields.resolved {
            if !field.contains('.') {
                object.entry(field.to_string()).or_insert(value.clone());
            }
        }
        if whole {
            object
                .entry("architectures")
                .or_insert_with(|| json!([class]));
        }
        object
            .entry("model_type")
            .or_insert_with(|| json!(model_type));
    }
    let tied = swaps::tied_pairs_with_swaps(config, desc, model_type, class);
    Ok(ModelSpec {
        family: "hf".to_string(),
        class_name: class.to_string(),
        preset: None,
        config: normalised,
        tensors,
        batchnorm_modules,
        base_model_prefix: text(desc, "base_model_prefix").to_string(),
        tied_keys: tied.into_iter().map(|(target, _)| target).collect(),
        module_kinds,
        module_names: Vec::new(),
        non_persistent: Vec::new(),
    })
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or("")
}

/// `(target, source)` of the weights the class ties for this config: the
/// data records both values of `tie_word_embeddings`.
pub fn tied_pairs(config: &Value, desc: &Value) -> Vec<(String, String)> {
    let default = desc.get("tie_word_embeddings").and_then(Value::as_bool);
    let asked = config.get("tie_word_embeddings").and_then(Value::as_bool);
    let list = match (default, asked) {
        (Some(default), Some(asked)) if default != asked => "tied_if_flipped",
        _ => "tied",
    };
    pairs(desc.get(list))
}

fn pairs(value: Option<&Value>) -> Vec<(String, String)> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|pair| {
                    Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What from_pretrained needs of a zoo class, when `model` came from the
/// zoo: `(base_model_prefix, tied pairs, non-persistent buffer patterns
/// with `*` for a layer index, `_keys_to_ignore_on_load_unexpected`
/// regexes)`.
pub struct PretrainedFacts {
    pub tied: Vec<(String, String)>,
    pub non_persistent: Vec<&'static str>,
    pub ignore_unexpected: Vec<&'static str>,
    /// The class's own renames (the legacy ones every class gets are the
    /// caller's).
    pub renames: Vec<KeyRename>,
    pub merges: Vec<WeightMerge>,
    pub unmodeled: Vec<String>,
}

pub fn pretrained_facts(model: &ModelSpec) -> Option<PretrainedFacts> {
    let model_type = model.config.get("model_type")?.as_str()?;
    let (_, desc) = description(model_type, Some(&model.class_name), &model.config).ok()?;
    let base: &'static str = text(desc, "base_model_prefix");
    let (renames, merges, mut unmodeled) = conversions(desc, base);
    unmodeled.extend(strings(desc, "unmodeled").into_iter().map(str::to_string));
    Some(PretrainedFacts {
        tied: swaps::tied_pairs_with_swaps(&model.config, desc, model_type, &model.class_name),
        non_persistent: {
            let mut patterns = strings(desc, "non_persistent");
            patterns.extend(swaps::swapped_non_persistent(
                &model.config,
                desc,
                model_type,
                &model.class_name,
            ));
            patterns
        },
        ignore_unexpected: strings(desc, "ignore_unexpected"),
        renames,
        merges,
        unmodeled,
    })
}

/// Names and shapes as from_pretrained converts them for this class: its
/// renames (the `hf` loader's rule), then its weight merges.
fn convert_names(
    names_shapes: &[(String, Vec<u64>)],
    desc: &'static Value,
) -> Vec<(String, Vec<u64>)> {
    let (renames, merges, _) = conversions(desc, text(desc, "base_model_prefix"));
    let mut names: Vec<(String, Vec<u64>)> = names_shapes
        .iter()
        .map(|(name, shape)| {
            let mut name = name.clone();
            // The renames as the `hf` loader applies them (prefix changes
            // are the loader's business, not the layout's).
            for rename in &renames {
                if matches!(rename.action, super::RenameAction::RemovePrefix { .. }) {
                    continue;
                }
                if let Some(renamed) = rename.apply(&name) {
                    name = renamed;
                }
            }
            (name, shape.clone())
        })
        .collect();
    merge::merge_weights(&mut names, &merges, &|key| key.to_string());
    names
}

/// The class's conversion mapping as the `hf` loader's rules:
/// `["rename", find, replace, at_start, scope]`,
/// `["remove_prefix", prefix, scope]`,
/// `["rename_numbered", before, after, replace_before, replace_after,
/// at_start, scope]` (`before(\d+)after` -> `replace_before\1replace_after`) and
/// `["convert", [sources], target, [["merge", 0], ["concat", 1]]]`.
fn conversions(
    desc: &'static Value,
    base: &'static str,
) -> (Vec<KeyRename>, Vec<WeightMerge>, Vec<String>) {
    let (mut renames, mut merges, mut unmodeled) = (Vec::new(), Vec::new(), Vec::new());
    let scope_of = |value: &'static Value| {
        value.as_str().map(|scope| RenameScope {
            scope,
            base_model_prefix: base,
        })
    };
    for rule in desc
        .get("conversions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let word = |i: usize| rule.get(i).and_then(Value::as_str);
        match word(0) {
            Some("rename") => {
                if let (Some(find), Some(replace)) = (word(1), word(2)) {
                    let rename = if rule[3].as_bool() == Some(true) {
                        KeyRename::rename_at_start(find, replace)
                    } else {
                        KeyRename::rename(find, replace)
                    };
                    renames.push(rename.within(scope_of(&rule[4])));
                }
            }
            Some("rename_numbered") => {
                if let (Some(before), Some(after), Some(replace_before), Some(replace_after)) =
                    (word(1), word(2), word(3), word(4))
                {
                    let at_start = rule[5].as_bool() == Some(true);
                    renames.push(
                        KeyRename::rename_numbered(
                            (before, after),
                            (replace_before, replace_after),
                            at_start,
                        )
                        .within(scope_of(&rule[6])),
                    );
                }
            }
            Some("remove_prefix") => {
                if let Some(prefix) = word(1) {
                    renames.push(KeyRename::remove_prefix(prefix).within(scope_of(&rule[2])));
                }
            }
            Some("convert") => {
                let sources: Vec<&'static str> = rule[1]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let operations = rule[3].as_array().map(Vec::as_slice).unwrap_or_default();
                let concatenate = operations
                    .iter()
                    .find(|op| op[0] == "concat")
                    .and_then(|op| op[1].as_u64())
                    .and_then(|dim| usize::try_from(dim).ok());
                match word(2) {
                    Some(target) if concatenate.is_some() || sources.len() == 1 => {
                        merges.push(WeightMerge {
                            sources,
                            target,
                            concatenate,
                        })
                    }
                    _ => unmodeled.push(format!("converter {}", rule[1])),
                }
            }
            _ => unmodeled.push(format!("transform {rule}")),
        }
    }
    (renames, merges, unmodeled)
}

/// A class's `_keys_to_ignore_on_load_unexpected` pattern, compiled once
/// (every checkpoint key is matched against it); `None` for one regex-lite
/// cannot read.
pub fn compiled_regex(pattern: &'static str) -> Option<&'static regex_lite::Regex> {
    type Compiled = rustc_hash::FxHashMap<&'static str, Option<&'static regex_lite::Regex>>;
    static COMPILED: OnceLock<std::sync::Mutex<Compiled>> = OnceLock::new();
    let mut compiled = COMPILED.get_or_init(Default::default).lock().ok()?;
    *compiled.entry(pattern).or_insert_with(|| {
        // Patterns come from the compiled-in data: a bounded set, kept for
        // the life of the program.
        regex_lite::Regex::new(pattern)
            .ok()
            .map(|regex| &*Box::leak(Box::new(regex)))
    })
}

/// A key matches a buffer pattern where `*` stands for one layer index.
pub fn matches_buffer_pattern(pattern: &str, key: &str) -> bool {
    let mut key_parts = key.split('.');
    for part in pattern.split('.') {
        let Some(key_part) = key_parts.next() else {
            return false;
        };
        let fits = if part == "*" {
            !key_part.is_empty() && key_part.bytes().all(|b| b.is_ascii_digit())
        } else {
            part == key_part
        };
        if !fits {
            return false;
        }
    }
    key_parts.next().is_none()
}

/// The config as transformers reads it where it gives a key under an older
/// name the config class pops into a field (config_renames.py: LFM2's
/// `block_ff_dim` is its `intermediate_size`, `tie_embedding` its
/// `tie_word_embeddings`; the older key wins, given or not the field);
/// None where it gives none.
fn with_renamed_keys(config: &Value, desc: &Value) -> Option<Value> {
    let renames = desc.get("renamed_keys")?.as_object()?;
    let mut renamed: Option<Value> = None;
    for (older, field) in renames {
        let Some(field) = field.as_str() else {
            continue;
        };
        let Some(value) = read_path(config, older).filter(|v| !v.is_null()).cloned() else {
            continue;
        };
        let target = renamed.get_or_insert_with(|| config.clone());
        let (older_parent, older_key) = older.rsplit_once('.').unwrap_or(("", older));
        if let Some(Value::Object(holder)) = path_mut(target, older_parent) {
            holder.remove(older_key);
        }
        let (parent, key) = field.rsplit_once('.').unwrap_or(("", field));
        if let Some(Value::Object(holder)) = path_mut(target, parent) {
            holder.insert(key.to_string(), value);
        }
    }
    renamed
}

/// A dotted path of objects into the config, mutably ("" is the config).
fn path_mut<'a>(config: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut node = config;
    for part in path.split('.').filter(|part| !part.is_empty()) {
        node = node.as_object_mut()?.get_mut(part)?;
    }
    Some(node)
}

/// A dotted path into the config (`text_config.hidden_size`, `depths.2`).
fn read_path<'a>(config: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = config;
    for part in path.split('.') {
        node = match node {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The strings of a description's list under `key` (`non_persistent`,
/// `nonzero`, `free_lengths`), none where it has none.
fn strings(desc: &'static Value, key: &str) -> Vec<&'static str> {
    desc.get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The first field the description holds fixed that the config gives
/// another value (left out or null agrees), with the config's value and
/// the fixed one: checks.rs refuses such a config, and classes.rs prefers
/// a description without one.
fn fixed_disagreement<'a>(
    desc: &'static Value,
    config: &'a Value,
) -> Option<(&'static str, &'a Value, &'static Value)> {
    desc.get("fixed")
        .and_then(Value::as_object)?
        .iter()
        .find_map(|(field, fixed)| {
            let given = read_path(config, field).filter(|given| !given.is_null())?;
            (!same_number_or_value(given, fixed)).then_some((field.as_str(), given, fixed))
        })
}

/// Whether two config values are equal, numbers by value (4 and 4.0).
fn same_number_or_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A config value read as a flag (`true`, or a non-zero number).
fn as_flag(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        other => other.as_u64().is_some_and(|n| n != 0),
    }
}

/// Field values for one config: the config's own, else the description's
/// default (a number, a flag, or a formula over other fields).
struct Fields<'a> {
    config: &'a Value,
    desc: &'static Value,
    resolved: Vec<(&'static str, Value)>,
}

impl Fields<'_> {
    /// A formula's value over the config's fields, and the fields it read.
    fn evaluate(&mut self, text: &'static str) -> Result<(u64, Vec<&'static str>)> {
        self.evaluate_as(text, false)
    }

    /// A layer count (`repeat`): below 0 it is 0 layers
    /// (`Formula::evaluate_count`).
    fn evaluate_count(&mut self, text: &'static str) -> Result<(u64, Vec<&'static str>)> {
        self.evaluate_as(text, true)
    }

    fn evaluate_as(&mut self, text: &'static str, count: bool) -> Result<(u64, Vec<&'static str>)> {
        let formula = Formula::parse(text)?;
        let mut values = Vec::new();
        let mut names = Vec::new();
        for name in formula.fields() {
            let field = field_name(self.desc, name);
            if field.is_empty() {
                return Err(err(
                    ErrorKind::BadConfig,
                    format!("zoo formula {text:?} names {name:?}, which has no default"),
                ));
            }
            values.push((name, self.number(field)?));
            names.push(field);
        }
        let lookup = |name: &str| values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let value = if count {
            formula.evaluate_count(&lookup)
        } else {
            formula.evaluate(&lookup)
        };
        let value = value.map_err(|e| {
            err(
                ErrorKind::BadConfig,
                format!(
                    "{} ({})",
                    e.message,
                    values
                        .iter()
                        .map(|(n, v)| format!("{n} = {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        Ok((value, names))
    }

    fn number(&mut self, field: &'static str) -> Result<u64> {
        self.number_at(field, 0)
    }

    fn number_at(&mut self, field: &'static str, depth: usize) -> Result<u64> {
        match self.value_at(field, depth)? {
            Value::Bool(b) => Ok(u64::from(b)),
            value => value.as_u64().ok_or_else(|| {
                err(
                    ErrorKind::BadConfig,
                    format!("config field {field:?} must be a non-negative integer, got {value}"),
                )
            }),
        }
    }

    fn flag(&mut self, field: &'static str) -> Result<bool> {
        Ok(as_flag(&self.value_at(field, 0)?))
    }

    fn value_at(&mut self, field: &'static str, depth: usize) -> Result<Value> {
        if let Some((_, value)) = self.resolved.iter().find(|(name, _)| *name == field) {
            return Ok(value.clone());
        }
        if depth > MAX_DEFAULT_DEPTH {
            return Err(err(
                ErrorKind::BadConfig,
                format!("zoo default of {field:?} refers to itself"),
            ));
        }
        let value = if field == "num_labels" {
            match self.config.get("id2label") {
                Some(Value::Object(labels)) => Some(json!(labels.len())),
                _ => self.config.get("num_labels").cloned(),
            }
        } else {
            read_path(self.config, field).cloned()
        };
        let value = match value.filter(|v| !v.is_null()) {
            Some(value) => value,
            None => {
                let spec = self.desc.get("fields").and_then(|fields| fields.get(field));
                if let Some(value) = match spec {
                    Some(spec) => by_name(self.config, spec, field)?,
                    None => None,
                } {
                    self.resolved.push((field, value.clone()));
                    return Ok(value);
                }
                let default = spec
                    .and_then(|spec| spec.get(default_key(self.config, spec, field)))
                    .ok_or_else(|| {
                        err(
                            ErrorKind::BadConfig,
                            format!("zoo data has no default for {field:?}"),
                        )
                    })?;
                match default.as_str() {
                    Some(text) => {
                        let formula = Formula::parse(text)?;
                        let mut values = Vec::new();
                        for name in formula.fields() {
                            values.push((
                                name,
                                self.number_at(field_name(self.desc, name), depth + 1)?,
                            ));
                        }
                        json!(formula.evaluate(&|name| {
                            values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
                        })?)
                    }
                    None => default.clone(),
                }
            }
        };
        self.resolved.push((field, value.clone()));
        Ok(value)
    }
}

/// A field name borrowed from the static data (for `depends_on`).
fn field_name(desc: &'static Value, name: &str) -> &'static str {
    desc.get("fields")
        .and_then(Value::as_object)
        .and_then(|fields| fields.get_key_value(name))
        .map(|(key, _)| key.as_str())
        .unwrap_or("")
}
