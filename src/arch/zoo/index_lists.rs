//! Reading a list of layer indexes off a checkpoint's shapes. SAM's ViT
//! builds layer `i` with global attention where `i` is in
//! `global_attn_indexes` (index_kinds.py): its two kinds of layer have the
//! same keys and differ in shapes only (relative positions of
//! `2*image_size/patch_size - 1` rows, or `2*window_size - 1`), so the
//! keys tell nothing (layer_kinds.rs reads lists of names that way) and a
//! kind's shapes read off the first layer of its keys would be the other
//! kind's. Here the layers under such a chooser are grouped by their
//! shapes (at most two groups), each way of naming the groups is solved
//! (`infer::solve_as`, each kind's shapes read off the first layer of its
//! group, the list the layers of the listed group), and the reading whose
//! inferred model loads the checkpoint with the fewest findings is taken
//! (on a tie, one that gives the class's default list).

use super::infer::{solve_as, IndexedClass, KeysByPattern};
use super::layer_kinds::MAX_LAYERS;
use super::{child, entries, field_name, resolved};
use crate::arch::Inferred;
use serde_json::{json, Value};

/// A list of layer indexes as one reading gives it.
struct ReadList {
    path: String,
    /// Its layer count field and the layers the checkpoint has.
    count: &'static str,
    layers: usize,
    listed: Vec<usize>,
    evidence: String,
    count_evidence: String,
}

/// Where each chosen layer's kind is read, and the lists that follows.
#[derive(Default)]
pub(super) struct Reading {
    /// (chooser prefix, kind, the layer its shapes are read off); a kind of
    /// an index chooser with no layer here is read off nothing.
    layers_of_kinds: Vec<(String, String, Option<usize>)>,
    /// Each list this reading gives.
    lists: Vec<ReadList>,
    /// What another reading gives as well (a lone group of shapes where
    /// both kinds' shapes agree), said where this reading is taken.
    alike: Option<String>,
}

impl Reading {
    /// A key as `infer::walk_with` gives it where shapes are read, with a
    /// chooser's `@kind` placed: at the layer this reading reads the kind
    /// off, or through `#` for a list of names (its kinds' keys differ).
    pub(super) fn placed(&self, key: &str) -> String {
        let Some(at) = key.find('@') else {
            return key.to_string();
        };
        let (prefix, rest) = key.split_at(at);
        let (kind, tail) = rest[1..].split_once('.').unwrap_or((&rest[1..], ""));
        let layer = self
            .layers_of_kinds
            .iter()
            .find(|(p, k, _)| p == prefix && k == kind)
            .map(|(_, _, layer)| layer);
        let placed = match layer {
            Some(Some(layer)) => format!("{prefix}{layer}.{tail}"),
            // No layer of this kind: a key no checkpoint has.
            Some(None) => return key.to_string(),
            None => format!("{prefix}#.{tail}"),
        };
        self.placed(&placed)
    }

    /// Each chooser's layer count, as the solver's first known values.
    pub(super) fn counts(&self) -> Vec<(&'static str, u64, String)> {
        self.lists
            .iter()
            .map(|list| (list.count, list.layers as u64, list.count_evidence.clone()))
            .collect()
    }

    /// Each list as this reading gives it: (config field, value, evidence).
    pub(super) fn lists(&self) -> Vec<(String, Value, String)> {
        self.lists
            .iter()
            .map(|list| (list.path.clone(), json!(list.listed), list.evidence.clone()))
            .collect()
    }
}

/// The class solved as each reading of its index lists gives it, the one
/// loading the checkpoint with the fewest findings kept; a class with no
/// such list is solved once, as before.
pub(super) fn solve_each_reading<'a>(
    class: &IndexedClass,
    names_shapes: &'a [(String, Vec<u64>)],
    keys_by_pattern: &KeysByPattern<'a>,
) -> Inferred {
    let readings = readings(class.desc, names_shapes);
    let mut solved: Vec<(usize, Inferred, &Reading)> = Vec::new();
    for reading in &readings {
        let inferred = solve_as(class, names_shapes, keys_by_pattern, reading);
        if readings.len() == 1 {
            return inferred;
        }
        let findings =
            super::infer::findings_loading(&inferred, names_shapes).unwrap_or(usize::MAX);
        solved.push((findings, inferred, reading));
    }
    let least = solved.iter().map(|(findings, _, _)| *findings).min();
    let tied = solved
        .iter()
        .filter(|(findings, _, _)| Some(*findings) == least)
        .count();
    let Some((_, mut inferred, reading)) = solved
        .into_iter()
        .find(|(findings, _, _)| Some(*findings) == least)
    else {
        return solve_as(class, names_shapes, keys_by_pattern, &Reading::default());
    };
    // Both readings load alike (SAM layers whose window is the whole
    // grid): the list is no fact the shapes give.
    if let (true, Some(alike)) = (tied > 1, &reading.alike) {
        let paths: Vec<&String> = reading.lists.iter().map(|list| &list.path).collect();
        inferred
            .fields
            .retain(|field| !paths.contains(&&field.field));
        inferred.undetermined.push(alike.clone());
    }
    inferred
}

/// The ways to read the class's one index chooser off the checkpoint, the
/// one giving the default list first; one plain reading where the class
/// has none, or where its layers are not two groups of shapes at most.
fn readings(desc: &'static Value, names_shapes: &[(String, Vec<u64>)]) -> Vec<Reading> {
    // Inference solves many classes; only those with an index list have
    // their trees walked.
    let has_index_list = desc["named_lists"]
        .as_object()
        .is_some_and(|lists| lists.values().any(|form| form.get("indexes").is_some()));
    if !has_index_list {
        return vec![Reading::default()];
    }
    let mut choosers = Vec::new();
    find_index_choosers(desc, &desc["tree"], "", &mut choosers, 0);
    let [(prefix, path, node)] = choosers.as_slice() else {
        return vec![Reading::default()];
    };
    let form = &desc["named_lists"][path.as_str()];
    let count = field_name(desc, form["count"].as_str().unwrap_or(""));
    let kinds: Vec<&str> = entries(node, "kinds")
        .map(child)
        .map(|(kind, _)| kind)
        .collect();
    let names: Vec<&str> = form["kinds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let ([unlisted, listed], false) = (names.as_slice(), count.is_empty()) else {
        return vec![Reading::default()];
    };
    if kinds.len() != 2 || !kinds.contains(unlisted) || !kinds.contains(listed) {
        return vec![Reading::default()];
    }
    let Some(groups) = shape_groups(prefix, names_shapes) else {
        return vec![Reading::default()];
    };
    let layers = groups.iter().map(Vec::len).sum::<usize>();
    let evidence = format!("the shapes of each of the {layers} layers under {prefix}");
    let alike = (groups.len() == 1).then(|| {
        format!(
            "{path}: each of the {layers} layers under {prefix} has the shapes of either kind; the list the default gives for them, else none, is taken"
        )
    });
    // Which group is listed: none, the first, the second (a lone group is
    // all listed or none).
    let mut choices: Vec<Option<usize>> = vec![None, Some(0)];
    if groups.len() == 2 {
        choices = vec![Some(1), Some(0)];
    }
    let default: Vec<u64> = form["default"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let mut readings: Vec<(bool, Reading)> = choices
        .into_iter()
        .map(|listed_group| {
            let listed_layers: Vec<usize> = match listed_group {
                Some(group) => groups[group].clone(),
                None => Vec::new(),
            };
            let mut is_listed = vec![false; layers];
            for layer in &listed_layers {
                if let Some(slot) = is_listed.get_mut(*layer) {
                    *slot = true;
                }
            }
            let first_of = |kind: bool| (0..layers).find(|layer| is_listed[*layer] == kind);
            let gives_default =
                (0..layers).all(|layer| is_listed[layer] == default.contains(&(layer as u64)));
            let reading = Reading {
                layers_of_kinds: vec![
                    (prefix.clone(), unlisted.to_string(), first_of(false)),
                    (prefix.clone(), listed.to_string(), first_of(true)),
                ],
                lists: vec![ReadList {
                    path: path.clone(),
                    count,
                    layers,
                    listed: listed_layers,
                    evidence: evidence.clone(),
                    count_evidence: format!("{layers} layers under {prefix}"),
                }],
                alike: alike.clone(),
            };
            (gives_default, reading)
        })
        .collect();
    readings.sort_by_key(|(gives_default, _)| !gives_default);
    readings.into_iter().map(|(_, reading)| reading).collect()
}

/// (concrete prefix, list path, node) of each ModuleList an index list
/// chooses, outside any repeated layers (whose prefix has no one place).
fn find_index_choosers(
    desc: &'static Value,
    node: &'static Value,
    prefix: &str,
    found: &mut Vec<(String, String, &'static Value)>,
    depth: usize,
) {
    let Some(node) = resolved(node).filter(|_| depth <= 64) else {
        return;
    };
    if let Some([path]) = node.get("by").and_then(Value::as_array).map(Vec::as_slice) {
        let path = path.as_str().unwrap_or("");
        if desc["named_lists"][path].get("indexes").is_some() {
            found.push((prefix.to_string(), path.to_string(), node));
        }
    }
    for (index, item) in entries(node, "items").enumerate() {
        find_index_choosers(desc, item, &format!("{prefix}{index}."), found, depth + 1);
    }
    for (name, subtree) in entries(node, "c").map(child) {
        find_index_choosers(desc, subtree, &format!("{prefix}{name}."), found, depth + 1);
    }
}

/// The layers under `prefix` (0, 1, … with none missing) in groups of
/// alike shapes, in the order each group's first layer comes; None where
/// there are no layers, a layer is missing, or there are more than two
/// groups.
fn shape_groups(prefix: &str, names_shapes: &[(String, Vec<u64>)]) -> Option<Vec<Vec<usize>>> {
    let mut layers: Vec<Vec<(&str, &Vec<u64>)>> = Vec::new();
    for (name, shape) in names_shapes {
        let Some((index, key)) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        let Some(index) = index.parse::<usize>().ok().filter(|i| *i < MAX_LAYERS) else {
            continue;
        };
        if layers.len() <= index {
            layers.resize_with(index + 1, Vec::new);
        }
        layers[index].push((key, shape));
    }
    if layers.is_empty() || layers.iter().any(Vec::is_empty) {
        return None;
    }
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        let found = groups
            .iter()
            .position(|(first, _)| layers[*first] == *layer);
        match found {
            Some(group) => groups[group].1.push(index),
            None if groups.len() == 2 => return None,
            None => groups.push((index, vec![index])),
        }
    }
    Some(groups.into_iter().map(|(_, members)| members).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(rows: &[u64]) -> Vec<(String, Vec<u64>)> {
        let mut names_shapes = vec![("embed.weight".to_string(), vec![8, 4])];
        for (layer, rows) in rows.iter().enumerate() {
            names_shapes.push((format!("layers.{layer}.rel_pos"), vec![*rows, 4]));
            names_shapes.push((format!("layers.{layer}.proj.weight"), vec![4, 4]));
        }
        names_shapes
    }

    #[test]
    fn layers_are_grouped_by_their_shapes_in_the_order_they_come() {
        assert_eq!(
            shape_groups("layers.", &layers(&[27, 127, 27, 127, 27])),
            Some(vec![vec![0, 2, 4], vec![1, 3]])
        );
        assert_eq!(
            shape_groups("layers.", &layers(&[7, 7])),
            Some(vec![vec![0, 1]])
        );
        // Three kinds of shapes, or none, is no index list's reading.
        assert_eq!(shape_groups("layers.", &layers(&[7, 9, 11])), None);
        assert_eq!(shape_groups("blocks.", &layers(&[7, 9])), None);
        // A layer missing from the file (layer 1 here) is no reading either.
        let mut gap = layers(&[7, 9, 7]);
        gap.retain(|(name, _)| !name.starts_with("layers.1."));
        assert_eq!(shape_groups("layers.", &gap), None);
    }

    #[test]
    fn a_kind_is_read_off_the_first_layer_of_its_group() {
        let reading = Reading {
            layers_of_kinds: vec![
                ("vision.layers.".into(), "unlisted".into(), Some(0)),
                ("vision.layers.".into(), "listed".into(), Some(3)),
                ("other.".into(), "listed".into(), None),
            ],
            lists: Vec::new(),
            alike: None,
        };
        for (key, placed) in [
            (
                "vision.layers.@listed.attn.rel_pos_h",
                "vision.layers.3.attn.rel_pos_h",
            ),
            (
                "vision.layers.@unlisted.mlp.weight",
                "vision.layers.0.mlp.weight",
            ),
            // A kind with no layer in the file reads nothing.
            ("other.@listed.weight", "other.@listed.weight"),
            // A list of names: its kinds' keys differ, read through `#`.
            ("model.layers.@linear_attention.a", "model.layers.#.a"),
            ("embed.weight", "embed.weight"),
        ] {
            assert_eq!(reading.placed(key), placed, "{key}");
        }
    }
}
