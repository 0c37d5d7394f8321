//! Layers whose kind a list in the config chooses. Qwen3-Next, Qwen3.5,
//! OLMo-hybrid, MiniMax and Zamba build layer `i` as `layer_types[i]`
//! names it (a linear-attention layer or a full-attention one); kinds.py
//! marks such a list `by` in the class's `named_lists` and its ModuleList
//! `"by": path, "kinds": [[name, subtree], ...]`. This reads the list a
//! config gives (in the names the config class renames older ones to) or,
//! where config.json leaves it out, the default's (for a list whose default
//! names one kind, as Granite 4.0-H's all-Mamba one, that kind once per
//! layer at any depth), and refuses what
//! transformers refuses (a list as long as no layer count) and what
//! ckptcheck cannot derive (a left-out list the config class would derive
//! from a layer count or interval other than the default's).

use super::infer::{pattern_of, walk};
use super::{child, entries, read_path, resolved, Fields};
use crate::error::{err, ErrorKind, Result};
use rustc_hash::FxHashSet as HashSet;
use serde_json::{json, Value};

/// Layers read off a checkpoint under one list at most (an index past it
/// is no layer of a model ckptcheck builds).
pub(super) const MAX_LAYERS: usize = 4096;

/// The layer count of the list of layer indexes `chooser` names (the
/// class's `named_lists` marks it `indexes`), or None for lists of names.
pub(super) fn index_list_count(desc: &'static Value, chooser: &[&str]) -> Option<&'static str> {
    let [path] = chooser else {
        return None;
    };
    let form = desc.get("named_lists")?.get(*path)?;
    form.get("indexes")?;
    let count = super::field_name(desc, form.get("count")?.as_str()?);
    (!count.is_empty()).then_some(count)
}

/// The name of each layer's kind, from the list at `path` that the
/// class's `named_lists` marks `by`.
pub(super) fn chosen_kinds(fields: &mut Fields, path: &str, class: &str) -> Result<Vec<String>> {
    let form = fields
        .desc
        .get("named_lists")
        .and_then(|lists| lists.get(path))
        .filter(|form| form.get("by").is_some())
        .ok_or_else(|| {
            err(
                ErrorKind::BadConfig,
                format!("zoo data: {path:?} chooses layers but is no list of the class"),
            )
        })?;
    if form.get("indexes").is_some() {
        return listed_layers(fields, path, form);
    }
    let when_left_out = form.get("when_left_out").and_then(Value::as_object);
    let count_field = form.get("count").and_then(Value::as_str).unwrap_or("");
    // Read as the config class reads it: under its own name, or an alias
    // its `attribute_map` gives (Nemotron-H's `layer_types`).
    let parent = path.rsplit_once('.').map_or("", |(parent, _)| parent);
    let at_parent = |key: &str| match parent {
        "" => key.to_string(),
        parent => format!("{parent}.{key}"),
    };
    let given = std::iter::once(path.to_string())
        .chain(
            names_of(form.get("read_from"))
                .iter()
                .map(|alias| at_parent(alias)),
        )
        .find_map(|key| read_path(fields.config, &key).filter(|value| !value.is_null()));
    let Some(given) = given else {
        // An older key the config class converts into the list
        // (Nemotron-H's `hybrid_override_pattern`, a character per layer).
        if let Some(key) = names_of(form.get("refused_from"))
            .into_iter()
            .find(|key| read_path(fields.config, &at_parent(key)).is_some_and(|v| !v.is_null()))
        {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config.json gives {key:?}, which the config class turns into {path:?}; ckptcheck builds each layer of {class} as that list names it and reads only the list: give {path:?} (save_pretrained writes it)"
                ),
            ));
        }
        // The config class derives the list from these fields: the
        // default's list is theirs only while they hold their defaults.
        for (field, default) in when_left_out.into_iter().flatten() {
            let Some(value) = read_path(fields.config, field).filter(|v| !v.is_null()) else {
                continue;
            };
            let differs = match (value.as_f64(), default.as_f64()) {
                (Some(value), Some(default)) => value != default,
                // A list held whole (LFM2's `full_attn_idxs`).
                _ => value != default,
            };
            if differs {
                return Err(err(
                    ErrorKind::BadConfig,
                    format!(
                        "config.json leaves out {path:?}, which the config class derives from {field:?} = {value} (default {default}); ckptcheck builds each layer of {class} as that list names it, so give the list (save_pretrained writes it)"
                    ),
                ));
            }
        }
        if form.get("exactly").is_some() {
            return Ok(names_of(form.get("exactly")));
        }
        // A list whose default names one kind (Granite 4.0-H's Mamba
        // layers) is that kind once per layer at any depth.
        let count = fields.number(count_field)?;
        let one = names_of(form.get("names"));
        return match one.as_slice() {
            [name] if count <= MAX_LAYERS as u64 => Ok(vec![name.clone(); count as usize]),
            _ => Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config.json leaves out {path:?} and {count_field:?} is {count}: give the list"
                ),
            )),
        };
    };
    let aliases = form.get("aliases").and_then(Value::as_object);
    let mut names = Vec::new();
    for item in given.as_array().into_iter().flatten() {
        let Some(name) = item.as_str() else {
            return Err(err(
                ErrorKind::BadConfig,
                format!("config field {path:?} must be a list of layer type names, got {item}"),
            ));
        };
        let renamed = aliases
            .and_then(|aliases| aliases.get(name))
            .and_then(Value::as_str)
            .unwrap_or(name);
        names.push(renamed.to_string());
    }
    if !given.is_array() {
        return Err(err(
            ErrorKind::BadConfig,
            format!("config field {path:?} must be a list, got {given}"),
        ));
    }
    // The layer count the config gives or defaults to (a count-form list
    // has no count among its left-out fields).
    let count = match read_path(fields.config, count_field).filter(|value| !value.is_null()) {
        Some(value) => value.as_u64(),
        None => match when_left_out.and_then(|left_out| left_out.get(count_field)) {
            Some(default) => default.as_u64(),
            None if count_field.is_empty() => None,
            None => Some(fields.number(count_field)?),
        },
    };
    if let Some(count) = count {
        if names.len() as u64 != count {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {path:?} has {} entries and {count_field:?} is {count}: transformers refuses a list of layer types that is not one per layer",
                    names.len()
                ),
            ));
        }
    }
    let known = names_of(form.get("kinds"));
    if let Some((layer, name)) = names
        .iter()
        .enumerate()
        .find(|(_, name)| !known.contains(name))
    {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "config field {path:?} makes layer {layer} {name:?}; ckptcheck's description of {class} builds layers of the kinds {}",
                known.join(", ")
            ),
        ));
    }
    Ok(names)
}

/// Each layer's kind where a list of layer indexes chooses (SAM's
/// `global_attn_indexes`, index_kinds.py): layer `i` is the form's second
/// kind where `i` is in the list config.json gives (else the default's),
/// the first elsewhere; an index past the last layer chooses nothing, as
/// transformers' `i in config.global_attn_indexes` does.
fn listed_layers(fields: &mut Fields, path: &str, form: &'static Value) -> Result<Vec<String>> {
    let count_field = form.get("count").and_then(Value::as_str).unwrap_or("");
    let [unlisted, listed] = names_of(form.get("kinds"))
        .try_into()
        .map_err(|_| bad_data(path))?;
    let given = read_path(fields.config, path)
        .filter(|value| !value.is_null())
        .or_else(|| form.get("default"))
        .ok_or_else(|| bad_data(path))?;
    let mut indexes = HashSet::default();
    for item in given.as_array().ok_or_else(|| not_indexes(path, given))? {
        indexes.insert(item.as_u64().ok_or_else(|| not_indexes(path, item))?);
    }
    let count = fields.number(count_field)?;
    if count > MAX_LAYERS as u64 {
        return Err(err(
            ErrorKind::LimitExceeded,
            format!("config field {count_field:?} is {count} layers (at most {MAX_LAYERS})"),
        ));
    }
    Ok((0..count)
        .map(|layer| match indexes.contains(&layer) {
            true => listed.clone(),
            false => unlisted.clone(),
        })
        .collect())
}

/// Zoo data whose index list cannot be read (no default, not two kinds).
fn bad_data(path: &str) -> crate::error::Error {
    err(
        ErrorKind::BadConfig,
        format!("zoo data: the index list {path:?} has no default or no two kinds"),
    )
}

/// A config.json list (or entry, `what`) that is no list of layer
/// indexes: refused rather than read as transformers' `i in list` would
/// (which ignores -1 and takes 2.0 as 2), as no released config writes one.
fn not_indexes(path: &str, what: &Value) -> crate::error::Error {
    let shown: String = what.to_string().chars().take(80).collect();
    err(
        ErrorKind::BadConfig,
        format!("config field {path:?} must be a list of layer indexes (whole numbers from 0), got {shown}"),
    )
}

/// Each layer's kind where several lists choose together (Kimi Linear's
/// `layer_types` and `mlp_layer_types`): its names in them joined by `+`,
/// as kinds.py names the kinds.
pub(super) fn kinds_of_layers(
    fields: &mut Fields,
    paths: &[Value],
    class: &str,
) -> Result<Vec<String>> {
    let mut joined: Vec<String> = Vec::new();
    for (position, path) in paths.iter().filter_map(Value::as_str).enumerate() {
        let names = chosen_kinds(fields, path, class)?;
        if position == 0 {
            joined = names;
            continue;
        }
        if names.len() != joined.len() {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {path:?} has {} entries where {:?} has {}: transformers wants one per layer in each",
                    names.len(),
                    paths[0].as_str().unwrap_or(""),
                    joined.len()
                ),
            ));
        }
        for (layer, name) in joined.iter_mut().zip(names) {
            layer.push('+');
            layer.push_str(&name);
        }
    }
    Ok(joined)
}

/// The subtree of layer `index`'s kind (`name`, joined by `+` where
/// several lists choose), or an error naming the lists: a kind, or a
/// pairing of names, the class's default has no layer of.
pub(super) fn body_of_kind(
    node: &'static Value,
    paths: &[&str],
    index: usize,
    name: &str,
    class: &str,
) -> Result<&'static Value> {
    if let Some((_, body)) = entries(node, "kinds")
        .map(child)
        .find(|(kind, _)| *kind == name)
    {
        return Ok(body);
    }
    let known: Vec<String> = entries(node, "kinds")
        .map(child)
        .map(|(kind, _)| format!("{:?}", kind.replace('+', " with ")))
        .collect();
    let what = match paths {
        [one] => format!("config field {one:?} makes layer {index} {name:?}"),
        several => format!(
            "config fields {} make layer {index} {:?}",
            several.join(" and "),
            name.replace('+', " with ")
        ),
    };
    Err(err(
        ErrorKind::BadConfig,
        format!(
            "{what}; ckptcheck's description of {class} has layers {} only",
            known.join(", ")
        ),
    ))
}

fn names_of(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The lists that choose each layer's kind, read off a checkpoint's keys:
/// under each ModuleList the data marks `by`, layer `i` is of the kind
/// whose keys its keys are (Qwen3.5's `linear_attn.*` or `self_attn.*`).
/// Returns `(config field, value, evidence)` for each list and for its
/// layer count; nothing for a list a layer's keys do not tell (no kind,
/// or two alike).
pub(super) fn read_off_keys(
    desc: &'static Value,
    names_shapes: &[(String, Vec<u64>)],
) -> Vec<(String, Value, String)> {
    let mut found = Vec::new();
    // Most classes have no such list: their trees are not walked (this
    // runs for every class inference solves).
    // A list of layer indexes is read off shapes, not keys (index_lists.rs).
    let chooses = desc["named_lists"].as_object().is_some_and(|lists| {
        lists
            .values()
            .any(|form| form.get("by").is_some() && form.get("indexes").is_none())
    });
    if chooses {
        visit(desc, &desc["tree"], "", names_shapes, &mut found, 0);
    }
    found
}

fn visit(
    desc: &'static Value,
    node: &'static Value,
    prefix: &str,
    names_shapes: &[(String, Vec<u64>)],
    found: &mut Vec<(String, Value, String)>,
    depth: usize,
) {
    let Some(node) = resolved(node).filter(|_| depth <= 64) else {
        return;
    };
    if let Some(paths) = node.get("by").and_then(Value::as_array) {
        let chooser: Vec<&str> = paths.iter().filter_map(Value::as_str).collect();
        if index_list_count(desc, &chooser).is_none() {
            found.extend(read_layers(desc, node, paths, prefix, names_shapes));
        }
    }
    for (index, item) in entries(node, "items").enumerate() {
        visit(
            desc,
            item,
            &format!("{prefix}{index}."),
            names_shapes,
            found,
            depth + 1,
        );
    }
    for (name, subtree) in entries(node, "c").map(child) {
        visit(
            desc,
            subtree,
            &format!("{prefix}{name}."),
            names_shapes,
            found,
            depth + 1,
        );
    }
}

fn read_layers(
    desc: &'static Value,
    node: &'static Value,
    paths: &[Value],
    prefix: &str,
    names_shapes: &[(String, Vec<u64>)],
) -> Vec<(String, Value, String)> {
    // Each layer's keys, as patterns (a nested list's indices as `#`).
    let mut layers: Vec<HashSet<String>> = Vec::new();
    for (name, _) in names_shapes {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some((index, key)) = rest.split_once('.') else {
            continue;
        };
        let Some(index) = index.parse::<usize>().ok().filter(|i| *i < MAX_LAYERS) else {
            continue;
        };
        if layers.len() <= index {
            layers.resize_with(index + 1, HashSet::default);
        }
        layers[index].insert(pattern_of(key));
    }
    if layers.is_empty() || layers.iter().any(HashSet::is_empty) {
        return Vec::new();
    }
    let kinds: Vec<(&str, HashSet<String>)> = entries(node, "kinds")
        .map(child)
        .map(|(name, body)| {
            let mut keys = HashSet::default();
            walk(body, "", &mut |key, _| {
                keys.insert(key);
            });
            (name, keys)
        })
        .collect();
    // The kind whose keys are the layer's; else the one sharing the most
    // and lacking the fewest (a layer without an optional bias), if only
    // one does.
    let mut chosen: Vec<&str> = Vec::new();
    for keys in &layers {
        let score = |kind: &HashSet<String>| {
            let shared = kind.intersection(keys).count() as i64;
            let lacking = kind.difference(keys).count() as i64;
            let extra = keys.difference(kind).count() as i64;
            (shared > 0).then_some(shared - lacking - extra)
        };
        let mut scored: Vec<(i64, &str)> = kinds
            .iter()
            .filter_map(|(name, kind)| Some((score(kind)?, *name)))
            .collect();
        scored.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
        match scored.as_slice() {
            [(_, name)] => chosen.push(name),
            [(best, name), (second, _), ..] if best > second => chosen.push(name),
            _ => return Vec::new(),
        }
    }
    let evidence = format!(
        "the keys of each of the {} layers under {prefix}",
        layers.len()
    );
    let mut read = Vec::new();
    for (position, path) in paths.iter().filter_map(Value::as_str).enumerate() {
        let names: Vec<&str> = chosen
            .iter()
            .map(|kind| kind.split('+').nth(position).unwrap_or(kind))
            .collect();
        read.push((path.to_string(), json!(names), evidence.clone()));
        let count = desc["named_lists"][path]["count"].as_str();
        if let Some(count) = count.filter(|_| position == 0) {
            read.push((count.to_string(), json!(layers.len()), evidence.clone()));
        }
    }
    read
}
