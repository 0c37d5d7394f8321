//! Which zoo class a checkpoint's tensors are, and the config fields their
//! shapes determine. Names decide the class: every key with its layer
//! indices written `#` is looked up in an index of all described classes,
//! and the class whose keys explain the most of the checkpoint wins. Shapes
//! then decide fields: each size formula with one unknown field is solved
//! and checked (`equations.rs`), until nothing more follows; layer counts
//! come from the indices. Fields no shape shows are listed as
//! undetermined, never guessed; a value taken where the shapes allow
//! several (a default in a ratio, the least of a range) says so.

use super::checks;
use super::equations::{
    first_matching, list_equations, search_one, solve_increasing, unrounded_solution, Search,
};
use super::formula::Formula;
use super::{child, entries, field_name, model_types, resolved};
use crate::arch::{Inferred, InferredField};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

pub(super) use super::class_index::{index, IndexedClass};

/// What a walk over a template meets: a tensor (its key, `#` for layer
/// indices unless concrete, and its entry) or a repeat (the prefix its
/// layers sit under, and its node).
enum Seen<'a> {
    Tensor(String, &'static Value),
    Repeat(&'a str, &'static Value),
}

/// Every tensor of a template as `(key with # for indices, its node
/// entry)`, conditional ones included.
pub(super) fn walk(
    node: &'static Value,
    prefix: &str,
    visit: &mut dyn FnMut(String, &'static Value),
) {
    walk_with(
        node,
        prefix,
        &mut |seen| {
            if let Seen::Tensor(key, tensor) = seen {
                visit(key, tensor)
            }
        },
        0,
        false,
    );
}

/// `walk` meeting repeats too, with the first layers of a list (`items`,
/// which differ from each other) at their own indices when
/// `concrete_items`.
fn walk_with(
    node: &'static Value,
    prefix: &str,
    visit: &mut dyn FnMut(Seen),
    depth: usize,
    concrete_items: bool,
) {
    let Some(node) = resolved(node).filter(|_| depth <= 64) else {
        return;
    };
    for tensor in entries(node, "t") {
        let name = tensor[0].as_str().unwrap_or("");
        visit(Seen::Tensor(format!("{prefix}{name}"), tensor));
    }
    if node.get("repeat").is_some() {
        visit(Seen::Repeat(prefix, node));
    }
    let nested = format!("{prefix}#.");
    for (index, item) in entries(node, "items").enumerate() {
        let at = if concrete_items {
            format!("{prefix}{index}.")
        } else {
            nested.clone()
        };
        walk_with(item, &at, visit, depth + 1, concrete_items);
    }
    // Where shapes are read, the repeated layers start right after the
    // list's first items (SDXL's third down block, a repeat of one after
    // two items of their own, is read off `down_blocks.2`, not the first
    // block with the same keys). The second kind of a split list starts
    // where the config says, so it reads through `#`.
    let first_repeated = if concrete_items {
        format!("{prefix}{}.", entries(node, "items").count())
    } else {
        nested.clone()
    };
    if let Some(body) = node.get("body") {
        walk_with(body, &first_repeated, visit, depth + 1, concrete_items);
    }
    if let Some(rest) = node.get("rest") {
        walk_with(rest, &nested, visit, depth + 1, concrete_items);
    }
    // Layers a list chooses: each kind's keys, where shapes are read, as
    // `@kind` for the reading to place (index_lists.rs: off the first layer
    // of that kind), else through `#`.
    for (name, body) in entries(node, "kinds").map(child) {
        let at = match concrete_items {
            true => format!("{prefix}@{name}."),
            false => nested.clone(),
        };
        walk_with(body, &at, visit, depth + 1, concrete_items);
    }
    // A list's last layer of its own sits after a count only the config
    // knows: its keys are patterns like a repeated layer's, but where shapes
    // are read (`concrete_items`) it is left out, as its `#` would read the
    // first layer's shapes, not its own.
    if !concrete_items {
        for item in entries(node, "last") {
            walk_with(item, &nested, visit, depth + 1, concrete_items);
        }
    }
    for entry in entries(node, "c") {
        let (name, subtree) = child(entry);
        walk_with(
            subtree,
            &format!("{prefix}{name}."),
            visit,
            depth + 1,
            concrete_items,
        );
    }
}

/// The evidence of a value that rests on a default taken, not read.
pub(super) const ASSUMED: &str = "assumed:";

/// A key with each all-digit part written `#`.
pub(super) fn pattern_of(key: &str) -> String {
    key.split('.')
        .map(|part| {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                "#"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The zoo class these tensors are, with the fields their shapes
/// determine, and how many findings loading them into it gives (so the
/// caller can weigh it against another family's answer).
pub fn infer(names_shapes: &[(String, Vec<u64>)]) -> Option<(Inferred, usize)> {
    let mut best = infer_names(names_shapes, true);
    if best.as_ref().is_some_and(|(_, findings)| *findings == 0) {
        return best;
    }
    // A checkpoint in a class's older layout (Mixtral's per-expert
    // `block_sparse_moe.experts.N.w1`, LLaVA's `language_model.model.*`
    // that save_pretrained still writes) is read as from_pretrained converts
    // it, once per distinct conversion that changes its names; composites
    // around other sub-models are looked for only in their own layouts.
    let mut tried: Vec<Vec<(String, Vec<u64>)>> = Vec::new();
    for (desc, composite) in converting_classes() {
        let converted = super::convert_names(names_shapes, desc);
        if converted.as_slice() == names_shapes || tried.contains(&converted) {
            continue;
        }
        tried.push(converted.clone());
        if let Some(found) = infer_names(&converted, *composite) {
            if best
                .as_ref()
                .is_none_or(|(_, findings)| found.1 < *findings)
            {
                best = Some(found);
            }
        }
        if best.as_ref().is_some_and(|(_, findings)| *findings == 0) {
            break;
        }
    }
    best
}

/// The classes whose conversion mapping renames keys or merges weights,
/// one of each distinct mapping (a model type's head classes mostly share
/// their base model's: 105 distinct of 256), each with whether a composite
/// with checked sub-models (`swaps`) has that mapping.
fn converting_classes() -> &'static [(&'static Value, bool)] {
    static CONVERTING: OnceLock<Vec<(&'static Value, bool)>> = OnceLock::new();
    CONVERTING.get_or_init(|| {
        let mut distinct: Vec<(&'static Value, bool)> = Vec::new();
        let same_mapping = |a: &Value, b: &Value| {
            a.get("conversions") == b.get("conversions")
                && a.get("base_model_prefix") == b.get("base_model_prefix")
        };
        for desc in model_types()
            .iter()
            .flat_map(|entry| entry.classes.iter().map(|(_, desc)| *desc))
        {
            let converts = entries(desc, "conversions").any(|rule| {
                rule[0] == "convert" || rule[0] == "rename" || rule[0] == "rename_numbered"
            });
            if !converts {
                continue;
            }
            let composite = desc.get("swaps").is_some();
            match distinct
                .iter_mut()
                .find(|(seen, _)| same_mapping(seen, desc))
            {
                Some((_, seen_composite)) => *seen_composite |= composite,
                None => distinct.push((desc, composite)),
            }
        }
        distinct
    })
}

/// The class the names are (see `infer_by_class_names`), or, with
/// `composites`, a composite around other sub-models that loads them with
/// fewer findings.
fn infer_names(names_shapes: &[(String, Vec<u64>)], composites: bool) -> Option<(Inferred, usize)> {
    let plain = infer_by_class_names(names_shapes);
    let findings = plain.as_ref().map_or(usize::MAX, |(_, findings)| *findings);
    if findings == 0 || !composites {
        return plain;
    }
    // A composite around another sub-model than its default (a LLaVA
    // around GPT-2) may explain the names only with that sub-model's.
    super::swap_inference::composite_around_another_sub_model(names_shapes, findings).or(plain)
}

/// At most this many other classes are solved and judged against the
/// tensors, per kind of rival (those with the very same key score; those
/// explaining as many keys with other flags).
const MAX_JUDGED: usize = 8;

/// The class whose own keys explain the most of the checkpoint's, solved.
fn infer_by_class_names(names_shapes: &[(String, Vec<u64>)]) -> Option<(Inferred, usize)> {
    let index = index();
    let keys_by_pattern = by_pattern(names_shapes);
    let mut hits = vec![0usize; index.classes.len()];
    let mut default_hits = vec![0usize; index.classes.len()];
    for pattern in keys_by_pattern.keys() {
        for id in index.by_pattern.get(pattern).into_iter().flatten() {
            hits[*id as usize] += 1;
        }
        for id in index.by_default_pattern.get(pattern).into_iter().flatten() {
            default_hits[*id as usize] += 1;
        }
    }
    // Most checkpoint keys explained, then most explained with the flags at
    // their defaults, then fewest keys the class adds; on a tie the first in
    // the data's order (the most used model types first).
    let score = |id: usize| {
        (
            hits[id],
            default_hits[id],
            std::cmp::Reverse(index.classes[id].patterns),
        )
    };
    let best = (0..hits.len()).filter(|id| hits[*id] > 0).fold(
        None,
        |best: Option<usize>, id| match best {
            Some(b) if score(b) >= score(id) => Some(b),
            _ => Some(id),
        },
    )?;
    // Classes with the same keys may keep them in another order (BERT and
    // RoBERTa embeddings): the one whose order is the checkpoint's wins.
    let order: Vec<String> = {
        let mut seen = HashSet::default();
        names_shapes
            .iter()
            .map(|(name, _)| pattern_of(name))
            .filter(|pattern| seen.insert(pattern.clone()))
            .collect()
    };
    let same_order = |id: usize| {
        let mut patterns = Vec::new();
        let mut seen = HashSet::default();
        walk(
            index.classes[id].desc.get("tree").unwrap_or(&Value::Null),
            "",
            &mut |key, _| {
                if seen.insert(key.clone()) {
                    patterns.push(key);
                }
            },
        );
        patterns == order
    };
    let best = if same_order(best) {
        best
    } else {
        (0..hits.len())
            .find(|id| score(*id) == score(best) && same_order(*id))
            .unwrap_or(best)
    };
    let explained = hits[best];
    let wanted = keys_by_pattern.len();
    if explained < 3 || explained * 10 < wanted * 8 {
        return None;
    }
    let judged = |id: usize| judged(&index.classes[id], names_shapes, &keys_by_pattern);
    let (mut best, mut inferred, mut findings) = match judged(best) {
        Some((inferred, findings)) => (best, inferred, findings),
        None => (
            best,
            solve(&index.classes[best], names_shapes, &keys_by_pattern),
            usize::MAX,
        ),
    };
    // Classes with the same keys may differ in shapes only (diffusers' SD
    // 1.x and SD 2.x UNets: a 1x1 convolution or a linear projection): the
    // one whose model the tensors fit best wins, and only those that fit
    // as well are named as alike.
    let tied: Vec<usize> = (0..hits.len())
        .filter(|id| *id != best && score(*id) == score(best))
        .take(MAX_JUDGED)
        .collect();
    let mut alike_ids = Vec::new();
    for id in tied {
        match judged(id) {
            Some((other, other_findings)) if other_findings < findings => {
                alike_ids.clear();
                (best, inferred, findings) = (id, other, other_findings);
            }
            Some((_, other_findings)) if other_findings == findings => alike_ids.push(id),
            _ => {}
        }
    }
    super::swap_inference::note_alike_classes(best, &alike_ids, &mut inferred);
    (inferred, findings) = read_sub_models(best, names_shapes, inferred, findings);
    // Where still none loads exactly, classes whose keys explain as many
    // of the checkpoint's with other flags than their defaults are judged
    // too (a Falcon with biases and sequential attention has BLOOM's keys,
    // and BLOOM's keys by default): one that fits better wins.
    if findings > 0 {
        let top = score(best);
        let mut explaining: Vec<usize> = (0..hits.len())
            .filter(|id| hits[*id] == explained && score(*id) < top)
            .collect();
        explaining.sort_by_key(|id| std::cmp::Reverse(score(*id)));
        let mut replaced = None;
        let mut alike_ids = Vec::new();
        for id in explaining.into_iter().take(MAX_JUDGED) {
            match judged(id) {
                Some((other, other_findings)) if other_findings < findings => {
                    alike_ids.clear();
                    replaced = Some(id);
                    (inferred, findings) = (other, other_findings);
                }
                Some((_, other_findings)) if replaced.is_some() && other_findings == findings => {
                    alike_ids.push(id)
                }
                _ => {}
            }
        }
        if let Some(id) = replaced {
            super::swap_inference::note_alike_classes(id, &alike_ids, &mut inferred);
            (inferred, findings) = read_sub_models(id, names_shapes, inferred, findings);
        }
    }
    if findings == usize::MAX {
        return None;
    }
    Some((inferred, findings))
}

/// A composite around another sub-model than its default (a LLaVA around
/// Qwen2): where the class does not load the tensors exactly, each
/// sub-model's tensors are read as the types checked in its place; where
/// it does, types that build the same tensors there are named.
fn read_sub_models(
    id: usize,
    names_shapes: &[(String, Vec<u64>)],
    mut inferred: Inferred,
    findings: usize,
) -> (Inferred, usize) {
    let class = &index().classes[id];
    if findings == 0 {
        super::swap_inference::note_alike_sub_models(class, names_shapes, &mut inferred);
        return (inferred, findings);
    }
    match super::swap_inference::with_sub_models(class, names_shapes, &inferred, findings) {
        Some(swapped) => swapped,
        None => (inferred, findings),
    }
}

/// The checkpoint's keys by pattern (`#` for layer indices), in file
/// order.
pub(super) type KeysByPattern<'a> = HashMap<String, Vec<&'a (String, Vec<u64>)>>;

pub(super) fn by_pattern(names_shapes: &[(String, Vec<u64>)]) -> KeysByPattern<'_> {
    let mut keys_by_pattern: KeysByPattern = HashMap::default();
    for named in names_shapes {
        keys_by_pattern
            .entry(pattern_of(&named.0))
            .or_default()
            .push(named);
    }
    keys_by_pattern
}

/// A class solved from the tensors, and how many findings loading them
/// into the model its inferred config builds gives (None where it builds
/// nothing).
pub(super) fn judged(
    class: &IndexedClass,
    names_shapes: &[(String, Vec<u64>)],
    keys_by_pattern: &KeysByPattern,
) -> Option<(Inferred, usize)> {
    let mut inferred = solve(class, names_shapes, keys_by_pattern);
    super::indirect_fields::flags_from_keys(class.desc, keys_by_pattern, &mut inferred);
    let findings = findings_loading(&inferred, names_shapes)?;
    Some((inferred, findings))
}

/// How many findings loading the tensors into the model an inferred config
/// builds gives (None where it builds nothing).
pub(super) fn findings_loading(
    inferred: &Inferred,
    names_shapes: &[(String, Vec<u64>)],
) -> Option<usize> {
    let model = super::super::model_for_inferred(inferred)?;
    Some(
        crate::arch::rank_presets(names_shapes, &[model])
            .first()
            .map_or(usize::MAX, |score| score.findings),
    )
}

pub(super) fn solve<'a>(
    class: &IndexedClass,
    names_shapes: &'a [(String, Vec<u64>)],
    keys_by_pattern: &KeysByPattern<'a>,
) -> Inferred {
    super::index_lists::solve_each_reading(class, names_shapes, keys_by_pattern)
}

/// `solve` with each chosen layer's kind read as `reading` places it.
pub(super) fn solve_as<'a>(
    class: &IndexedClass,
    names_shapes: &'a [(String, Vec<u64>)],
    keys_by_pattern: &KeysByPattern<'a>,
    reading: &super::index_lists::Reading,
) -> Inferred {
    let desc = class.desc;
    // Equations: (formula, observed value, evidence).
    let mut equations: Vec<(&'static str, u64, String)> = Vec::new();
    let concrete: HashMap<&str, &Vec<u64>> =
        names_shapes.iter().map(|(n, s)| (n.as_str(), s)).collect();
    walk_with(
        &desc["tree"],
        "",
        &mut |seen| {
            let (key, tensor) = match seen {
                Seen::Tensor(key, tensor) => (reading.placed(&key), tensor),
                Seen::Repeat(prefix, node) => {
                    equations.extend(list_equations(node, &reading.placed(prefix), names_shapes));
                    return;
                }
            };
            // A pattern names the first layer of alike ones; a concrete key
            // (a list's distinct first layers, or no list) names itself, and
            // may hold digits of its own that are not layer indices.
            let shape = concrete
                .get(key.as_str())
                .copied()
                .or_else(|| first_matching(&key, keys_by_pattern));
            if let Some(shape) = shape {
                for (position, dim) in tensor[1].as_array().into_iter().flatten().enumerate() {
                    if let (Some(formula), Some(value)) = (dim.as_str(), shape.get(position)) {
                        equations.push((formula, *value, format!("{key} shape[{position}]")));
                    }
                }
            }
        },
        0,
        true,
    );
    let mut known: Vec<(&'static str, u64, String)> = reading.counts();
    let mut assumed: Vec<String> = Vec::new();
    // Fields a floor division solves to a range: (field, least, most, evidence).
    let mut ranges: Vec<(&'static str, u64, u64, String)> = Vec::new();
    // Fields solved with assumed values: (field, evidence, the assumptions).
    type Given = Vec<(&'static str, u64)>;
    let mut read_given: Vec<(&'static str, String, Given)> = Vec::new();
    // An equation tried with one unknown is settled, solved or not: its
    // other fields are known and keep their values, so it gives the same
    // answer every time (and a search over values is not run again).
    let mut settled = vec![false; equations.len()];
    let mut candidates = super::equations::Candidates::default();
    loop {
        let mut progress = false;
        let mut stuck: Vec<&'static str> = Vec::new();
        for (at, (text, value, evidence)) in equations.iter().enumerate() {
            if settled[at] {
                continue;
            }
            let Ok(formula) = Formula::parse(text) else {
                settled[at] = true;
                continue;
            };
            let unknown: Vec<&str> = formula
                .fields()
                .into_iter()
                .filter(|f| !known.iter().any(|(k, _, _)| k == f))
                .collect();
            let [field] = unknown.as_slice() else {
                stuck.extend(
                    unknown
                        .iter()
                        .map(|f| field_name(desc, f))
                        .filter(|f| !f.is_empty()),
                );
                continue;
            };
            settled[at] = true;
            let searched = search_one(&formula, field, *value, &known);
            let solved = match searched {
                Search::Solved(solution) => Some((solution, solution)),
                _ => solve_increasing(&formula, field, *value, &known),
            };
            let Some((solution, last)) = solved else {
                candidates.add(field, &formula, (*value, searched), evidence, &known);
                continue;
            };
            let name = field_name(desc, field);
            if !name.is_empty() {
                // A value that rests on an assumed default is no fact: it
                // rebuilds the model but is not reported as read; it is
                // one about models with the assumed values (`conditional`).
                let given: Vec<(&'static str, u64)> = formula
                    .fields()
                    .into_iter()
                    .filter_map(|f| {
                        known
                            .iter()
                            .find(|(k, _, e)| *k == f && e.starts_with(ASSUMED))
                            .map(|(k, v, _)| (*k, *v))
                    })
                    .collect();
                // A rounded size shows a range too (equations.rs).
                let unrounded =
                    unrounded_solution(&formula, field, *value, &known, (solution, last));
                let taken = unrounded.unwrap_or(solution);
                if last > solution {
                    ranges.push((name, solution, last, evidence.clone()));
                }
                if !given.is_empty() {
                    read_given.push((name, evidence.clone(), given.clone()));
                }
                let evidence = match given.first() {
                    Some((assumed_field, _)) => format!("{ASSUMED} {assumed_field}"),
                    // A floor division shows a range (DeiT's `image_size`
                    // 96 to 127 for a grid of 3 patches of 32): the least
                    // is taken, and said to be taken.
                    None if last > solution => {
                        let why = unrounded.map_or("", |_| ", at which the rounding does nothing,");
                        assumed.push(format!(
                            "{name}: any of {solution} to {last} gives these shapes ({evidence}); {taken}{why} is taken"
                        ));
                        format!("{ASSUMED} {name}")
                    }
                    None => evidence.clone(),
                };
                known.push((name, taken, evidence));
                progress = true;
            }
        }
        if progress || candidates.settle(desc, &mut known) {
            continue;
        }
        if !super::equations::assume_for_stuck(
            desc,
            stuck,
            &equations,
            &settled,
            &mut known,
            &mut assumed,
        ) {
            break;
        }
    }
    super::indirect_fields::heads_that_divide(desc, &mut known, &mut assumed);
    let mut config = Map::new();
    config.insert("model_type".into(), json!(class.model_type));
    config.insert("architectures".into(), json!([class.class]));
    // A description derived for another value of a name (ResNet-18's
    // `layer_type` "basic") holds only where the config names it.
    for (field, value) in desc["when"].as_object().into_iter().flatten() {
        config.insert(field.clone(), value.clone());
    }
    let mut fields = Vec::new();
    let mut conditional = Vec::new();
    // Lists that choose each layer's kind (Qwen3.5's `layer_types`), and
    // their layer count, read off each layer's keys.
    let read_lists = super::layer_kinds::read_off_keys(desc, names_shapes);
    for (field, value, evidence) in read_lists.into_iter().chain(reading.lists()) {
        insert(&mut config, &field, value.clone());
        fields.push(InferredField {
            field,
            value,
            evidence,
            range: None,
            given: Vec::new(),
        });
    }
    // A list field (`depths`) goes into the config whole, when every entry
    // is known or held fixed by the class (SegFormer's last `sr_ratios`);
    // otherwise it stays undetermined (a list written with some entries at
    // the class's defaults is no longer the variant's own default list).
    for (list, length) in desc["lists"].as_object().into_iter().flatten() {
        let length = length.as_u64().unwrap_or(0);
        let mut read_any = false;
        let entries: Option<Vec<u64>> = (0..length)
            .map(|i| {
                let entry = format!("{list}.{i}");
                let read = known
                    .iter()
                    .find(|(k, _, _)| *k == entry)
                    .map(|(_, v, _)| *v);
                read_any |= read.is_some();
                read.or_else(|| desc["fixed"][&entry].as_u64())
            })
            .collect();
        let Some(entries) = entries.filter(|_| read_any) else {
            continue;
        };
        insert(&mut config, list, json!(entries));
    }
    let is_list_entry = |field: &str| {
        field
            .split('.')
            .any(|part| part.bytes().all(|b| b.is_ascii_digit()))
    };
    for (field, value, evidence) in &known {
        if is_list_entry(field) {
            continue;
        }
        if evidence == &format!("{ASSUMED} default") {
            // An assumed default is left out, unless the sub-config written
            // in part would take another (LLaVA's `text_config.head_dim`
            // is 128 in LLaVA's default and hidden / heads in a
            // `text_config` that leaves it out).
            let in_parent = &desc["fields"][field]["default_in_parent"];
            if field.contains('.') && !in_parent.is_null() && in_parent != &json!(value) {
                insert(&mut config, field, json!(value));
            }
            continue;
        }
        // A sub-config's field at its default stays out of the config: a
        // sub-config written in part may not read back (DETR's `backbone_config`
        // without its `model_type` is a KeyError in transformers).
        // Only a value both defaults give is left out: a sub-config written
        // in part takes `default_in_parent` (SigLIP's
        // `text_config.projection_size` is then its `hidden_size`), one
        // not written at all `default`.
        let spec = &desc["fields"][field];
        let is_value = |default: &Value| default == &json!(value);
        let nested_default = field.contains('.')
            && !checks::is_required(desc, field)
            && is_value(&spec["default"])
            && spec.get("default_in_parent").is_none_or(is_value);
        if !nested_default {
            insert(&mut config, field, json!(value));
        }
        if let Some(assumed_field) = evidence.strip_prefix(&format!("{ASSUMED} ")) {
            // A value assumed in place of its default was said above; one
            // of a range is a field the shapes show, within its bounds
            // (a config outside them is a finding); one resting on assumed
            // values is a fact about models that have them.
            let range = ranges.iter().find(|r| r.0 == *field);
            let bounds = range.map(|(_, least, most, _)| [*least, *most]);
            let within = |read: &str| match bounds {
                Some([least, most]) => format!("{read}: any of {least} to {most}"),
                None => read.to_string(),
            };
            if assumed_field != *field {
                assumed.push(format!(
                    "{field}: {value} follows from the assumed {assumed_field}, not from the shapes alone"
                ));
            }
            if let Some((_, read, given)) = read_given.iter().find(|g| g.0 == *field) {
                conditional.push(InferredField {
                    field: field.to_string(),
                    value: json!(value),
                    evidence: within(read),
                    range: bounds,
                    given: given.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                });
            } else if let Some((_, _, _, read)) = range {
                fields.push(InferredField {
                    field: field.to_string(),
                    value: json!(value),
                    evidence: within(read),
                    range: bounds,
                    given: Vec::new(),
                });
            }
            continue;
        }
        fields.push(InferredField {
            field: field.to_string(),
            value: json!(value),
            evidence: evidence.clone(),
            range: None,
            given: Vec::new(),
        });
    }
    // A sub-config the config writes gets its `model_type` and the fields
    // where the composite default differs from the sub-config class's own
    // (LLaVA's CLIP tower keeps its 16 heads; DETR's backbone stays timm's
    // resnet50), unless the shapes gave them: transformers builds it as
    // the composite default would have been, with what was inferred.
    let sub_configs = super::model_type(class.model_type).and_then(|entry| entry.sub_configs);
    let required_written = checks::write_required(desc, sub_configs, &mut config);
    for (parent, facts) in sub_configs.and_then(Value::as_object).into_iter().flatten() {
        if let Some(Value::Object(written)) = config.get_mut(parent.as_str()) {
            for (key, value) in facts.as_object().into_iter().flatten() {
                written.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    checks::write_given_with_parent(desc, &mut config);
    let mut undetermined = assumed;
    undetermined.extend(required_written);
    undetermined.extend(
        desc["fields"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(field, _)| !known.iter().any(|(k, _, _)| k == field))
            .filter(|(field, _)| !checks::is_required(desc, field))
            .map(|(field, spec)| {
                format!(
                    "{field}: no tensor shape shows it (the default is {})",
                    spec["default"]
                )
            }),
    );
    let family = if class.model_type.starts_with(super::diffusers::PREFIX) {
        super::diffusers::inferred_config(class.model_type, class.class, desc, &mut config);
        "diffusers"
    } else {
        "hf"
    };
    Inferred {
        family: family.to_string(),
        fields,
        config: Value::Object(config),
        preset: None,
        ranking: Vec::new(),
        undetermined,
        shaped_like: None,
        conditional,
    }
}

/// `text_config.hidden_size` goes into `config["text_config"]["hidden_size"]`.
pub(super) fn insert(config: &mut Map<String, Value>, field: &str, value: Value) {
    match field.split_once('.') {
        Some((section, rest)) if !rest.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
            let entry = config
                .entry(section.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert(inner, rest, value);
            }
        }
        _ => {
            config.insert(field.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_indices_become_hashes() {
        assert_eq!(
            pattern_of("model.layers.12.mlp.up_proj.weight"),
            "model.layers.#.mlp.up_proj.weight"
        );
        assert_eq!(pattern_of("a.0.b.10"), "a.#.b.#");
    }
}
