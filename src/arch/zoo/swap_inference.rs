//! Inference for a composite around another sub-model than its default: a
//! LLaVA-OneVision or LLaVA fine-tune file holds a Qwen2 language model
//! where LLaVA's default is LLaMA, so the composite's description explains
//! every name but the biases. The tensors under each module a sub-model
//! may be swapped in (`swaps`, checked against transformers by
//! sub_models.py) are read again as each type checked there: the types
//! whose keys explain them best are solved from those tensors alone, the
//! composite is rebuilt around each, and a type is taken only where the
//! composite then loads the checkpoint with fewer findings than around its
//! default. Types that fit equally are all named, never one guessed.

use super::indirect_fields::flags_from_keys;
use super::infer::{
    by_pattern, findings_loading, index, judged, solve, IndexedClass, KeysByPattern,
};
use super::swaps::{swaps_of, Listed};
use crate::arch::{Inferred, InferredField};
use rustc_hash::FxHashMap as HashMap;
use serde_json::json;
use std::sync::OnceLock;

/// At most this many types are solved and built per sub-model (those whose
/// keys explain the tensors best; 25 types are checked in some places).
const MAX_TRIED: usize = 6;

type Named = (String, Vec<u64>);

/// The inference with each swappable sub-model read as the checked type
/// that loads best, where that beats the composite's default; None where
/// no type does.
pub(super) fn with_sub_models(
    class: &IndexedClass,
    names_shapes: &[Named],
    inferred: &Inferred,
    findings: usize,
) -> Option<(Inferred, usize)> {
    let mut best: Option<(Inferred, usize)> = None;
    for (sub_config, path, listed) in swaps_of(class.desc) {
        if sub_config.contains('.') {
            continue;
        }
        let (current, current_findings) = best
            .as_ref()
            .map_or((inferred, findings), |(inferred, findings)| {
                (inferred, *findings)
            });
        if current_findings == 0 {
            break;
        }
        let tried = tried_in_place(current, sub_config, path, &listed, names_shapes);
        let Some(least) = tried.iter().map(|(_, _, findings)| *findings).min() else {
            continue;
        };
        if least >= current_findings {
            continue;
        }
        let mut fitting = tried
            .into_iter()
            .filter(|(_, _, findings)| *findings == least);
        let Some((chosen, mut candidate, _)) = fitting.next() else {
            continue;
        };
        let alike: Vec<String> = fitting
            .map(|(id, _, _)| format!("{:?}", index().classes[id].model_type))
            .collect();
        if !alike.is_empty() {
            let chosen = index().classes[chosen].model_type;
            candidate.undetermined.insert(
                0,
                format!(
                    "{sub_config}.model_type: the tensors under `{path}` fit {chosen:?} and equally {}",
                    alike.join(", ")
                ),
            );
        }
        best = Some((candidate, least));
    }
    best
}

/// Each checked type for one place (the best by keys, `MAX_TRIED`), solved
/// from the tensors under its module and put in the composite's place:
/// `(class index, the inference, findings loading the checkpoint)`.
fn tried_in_place(
    current: &Inferred,
    sub_config: &str,
    path: &str,
    listed: &[Listed],
    names_shapes: &[Named],
) -> Vec<(usize, Inferred, usize)> {
    let prefix = format!("{path}.");
    let under: Vec<Named> = names_shapes
        .iter()
        .filter_map(|(name, shape)| {
            name.strip_prefix(&prefix)
                .map(|rest| (rest.to_string(), shape.clone()))
        })
        .collect();
    if under.is_empty() {
        return Vec::new();
    }
    let keys_by_pattern = by_pattern(&under);
    let mut tried = Vec::new();
    // Types that rank below one that loads exactly are not tried: a type
    // with fewer of the keys, or more keys of its own, cannot load exactly.
    let mut exact_at = None;
    for (id, score) in ranked_candidates(listed, &keys_by_pattern) {
        if exact_at.is_some_and(|exact| score < exact) {
            break;
        }
        let sub_class = &index().classes[id];
        let mut sub = solve(sub_class, &under, &keys_by_pattern);
        flags_from_keys(sub_class.desc, &keys_by_pattern, &mut sub);
        let candidate = swapped_in(current, sub_config, path, sub_class, sub, under.len());
        let Some(findings) = findings_loading(&candidate, names_shapes) else {
            continue;
        };
        if findings == 0 && exact_at.is_none() {
            exact_at = Some(score);
        }
        tried.push((id, candidate, findings));
    }
    tried
}

/// A composite the tensors fit exactly around the sub-models inferred:
/// where another checked type builds the very same tensors in a place (a
/// LLaVA around Mistral is LLaMA's tensors), the shapes cannot tell them
/// apart, and the inference says so rather than name one as read.
pub(super) fn note_alike_sub_models(
    class: &IndexedClass,
    names_shapes: &[Named],
    inferred: &mut Inferred,
) {
    for (sub_config, path, listed) in swaps_of(class.desc) {
        let Some(current) = inferred.config[sub_config]["model_type"].as_str() else {
            continue;
        };
        let alike: Vec<String> = tried_in_place(inferred, sub_config, path, &listed, names_shapes)
            .into_iter()
            .filter(|(id, _, findings)| {
                *findings == 0 && index().classes[*id].model_type != current
            })
            .map(|(id, _, _)| format!("{:?}", index().classes[id].model_type))
            .collect();
        if !alike.is_empty() {
            let line = format!(
                "{sub_config}.model_type: the tensors under `{path}` fit {current:?} and equally {}",
                alike.join(", ")
            );
            inferred.undetermined.insert(0, line);
        }
    }
}

/// Composites whose own keys do not explain the checkpoint's, but do with
/// a checked sub-model's keys under its module (a LLaVA around GPT-2, whose
/// `wte` LLaVA's LLaMA does not have): the few that explain the most are
/// solved around their default, then each sub-model read as above; the
/// one that loads with the fewest findings, where fewer than `findings`.
pub(super) fn composite_around_another_sub_model(
    names_shapes: &[Named],
    findings: usize,
) -> Option<(Inferred, usize)> {
    let index = index();
    let keys_by_pattern = by_pattern(names_shapes);
    let wanted = keys_by_pattern.len();
    // (keys explained, keys explained with flags at their defaults): by
    // the composite's own keys, and with each place's checked types' keys
    // too (a LLaVA around Qwen2 explains the q/k/v biases with Qwen2's
    // defaults, where its LLaMA needs `attention_bias` set).
    type Score = (usize, usize);
    let score = |id: usize, places: &[Place]| -> (Score, Score) {
        let (mut own, mut with_swaps) = ((0, 0), (0, 0));
        for pattern in keys_by_pattern.keys() {
            for (map, own_count, swap_count) in [
                (&index.by_pattern, &mut own.0, &mut with_swaps.0),
                (&index.by_default_pattern, &mut own.1, &mut with_swaps.1),
            ] {
                let has_own = has(map, pattern, id);
                let swapped = places.iter().any(|(prefix, ids)| {
                    pattern
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| ids.iter().any(|sub| has(map, rest, *sub as usize)))
                });
                *own_count += usize::from(has_own);
                *swap_count += usize::from(has_own || swapped);
            }
        }
        (own, with_swaps)
    };
    let mut scored: Vec<(usize, Score)> = composites()
        .iter()
        .filter_map(|(id, places)| {
            let (own, with_swaps) = score(*id, places);
            let explained = with_swaps.0;
            (with_swaps > own && explained >= 3 && explained * 10 >= wanted * 8)
                .then_some((*id, with_swaps))
        })
        .collect();
    // Most explained first; on a tie the data's order.
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut best: Option<(Inferred, usize)> = None;
    for (id, _) in scored.into_iter().take(MAX_TRIED) {
        let class = &index.classes[id];
        let (inferred, around_default) = match judged(class, names_shapes, &keys_by_pattern) {
            Some(judged) => judged,
            None => (solve(class, names_shapes, &keys_by_pattern), usize::MAX),
        };
        let bar = best.as_ref().map_or(findings, |(_, findings)| *findings);
        let found = with_sub_models(class, names_shapes, &inferred, around_default)
            .or(Some((inferred, around_default)))
            .filter(|(_, found)| *found < bar);
        if found.is_some() {
            best = found;
        }
    }
    best
}

/// Whether the class (by index) has the pattern.
fn has(map: &HashMap<String, Vec<u32>>, pattern: &str, id: usize) -> bool {
    map.get(pattern)
        .is_some_and(|ids| ids.contains(&(id as u32)))
}

/// A place a sub-model may be swapped in: its module prefix and the
/// classes checked there, by index.
type Place = (String, Vec<u32>);

/// The composite classes with checked sub-models, by index, each with its
/// places: the module prefix (`model.language_model.`) and the classes
/// checked there, by index.
fn composites() -> &'static [(usize, Vec<Place>)] {
    static COMPOSITES: OnceLock<Vec<(usize, Vec<Place>)>> = OnceLock::new();
    COMPOSITES.get_or_init(|| {
        let index = index();
        let id_of = |model_type: &str, class: &str| {
            index
                .classes
                .iter()
                .position(|c| c.model_type == model_type && c.class == class)
                .map(|id| id as u32)
        };
        index
            .classes
            .iter()
            .enumerate()
            .filter_map(|(id, class)| {
                let places: Vec<Place> = swaps_of(class.desc)
                    .into_iter()
                    .map(|(_, path, listed)| {
                        let ids = listed
                            .iter()
                            .filter_map(|item| id_of(item.model_type, item.class))
                            .collect();
                        (format!("{path}."), ids)
                    })
                    .collect();
                (!places.is_empty()).then_some((id, places))
            })
            .collect()
    })
}

/// The checked types for one place, best first by how many of the
/// tensors' keys each explains (with its flags at their defaults, then the
/// fewest keys it adds), at most `MAX_TRIED`.
/// Keys explained, then explained with flags at their defaults, then the
/// fewest keys the type adds.
type KeyScore = (usize, usize, std::cmp::Reverse<usize>);

fn ranked_candidates(listed: &[Listed], keys_by_pattern: &KeysByPattern) -> Vec<(usize, KeyScore)> {
    let index = index();
    let mut scored: Vec<(usize, KeyScore)> = listed
        .iter()
        .filter_map(|item| {
            let id = index
                .classes
                .iter()
                .position(|c| c.model_type == item.model_type && c.class == item.class)?;
            let hits = keys_by_pattern
                .keys()
                .filter(|pattern| has(&index.by_pattern, pattern, id))
                .count();
            let default_hits = keys_by_pattern
                .keys()
                .filter(|pattern| has(&index.by_default_pattern, pattern, id))
                .count();
            let score = (
                hits,
                default_hits,
                std::cmp::Reverse(index.classes[id].patterns),
            );
            (hits > 0).then_some((id, score))
        })
        .collect();
    // Stable: on a tie the order sub_models.py listed them in.
    scored.sort_by_key(|(_, score)| std::cmp::Reverse(*score));
    scored.into_iter().take(MAX_TRIED).collect()
}

/// The composite's inference with one sub-config replaced by what the
/// sub-model's own tensors gave: its config (the type's `model_type` and
/// the fields its shapes show; the rest are the type's own defaults, as
/// transformers fills a sub-config written in part), its fields and its
/// undetermined ones named under the sub-config.
fn swapped_in(
    composite: &Inferred,
    sub_config: &str,
    path: &str,
    sub_class: &IndexedClass,
    sub: Inferred,
    tensors: usize,
) -> Inferred {
    let mut config = composite.config.clone();
    let mut sub_values = sub.config;
    if let Some(object) = sub_values.as_object_mut() {
        object.remove("architectures");
    }
    if let Some(object) = config.as_object_mut() {
        object.insert(sub_config.to_string(), sub_values);
    }
    let nested = format!("{sub_config}.");
    // The composite's own inferences, those under the swapped sub-config
    // replaced by the sub-model's.
    let outside_sub_config = |list: &[InferredField]| -> Vec<InferredField> {
        list.iter()
            .filter(|field| !field.field.starts_with(&nested))
            .cloned()
            .collect()
    };
    let mut fields = outside_sub_config(&composite.fields);
    fields.push(InferredField {
        field: format!("{sub_config}.model_type"),
        value: json!(sub_class.model_type),
        evidence: format!(
            "the {tensors} tensors under `{path}` are named as {} ({}) names them",
            sub_class.model_type, sub_class.class
        ),
        range: None,
        given: Vec::new(),
    });
    let under_sub_config = |field: InferredField| InferredField {
        field: format!("{nested}{}", field.field),
        given: field
            .given
            .iter()
            .map(|(given, value)| (format!("{nested}{given}"), *value))
            .collect(),
        ..field
    };
    fields.extend(sub.fields.into_iter().map(under_sub_config));
    let mut conditional = outside_sub_config(&composite.conditional);
    conditional.extend(sub.conditional.into_iter().map(under_sub_config));
    let mut undetermined: Vec<String> = composite
        .undetermined
        .iter()
        .filter(|line| !line.starts_with(&nested))
        .cloned()
        .collect();
    undetermined.extend(
        sub.undetermined
            .into_iter()
            .map(|line| format!("{nested}{line}")),
    );
    Inferred {
        config,
        fields,
        undetermined,
        conditional,
        ..composite.clone()
    }
}

/// Classes whose tensors the checkpoint fits as well as `best`'s, named
/// as fitting equally.
pub(super) fn note_alike_classes(best: usize, alike_ids: &[usize], inferred: &mut Inferred) {
    let index = super::infer::index();
    let named = |id: usize| {
        let class = &index.classes[id];
        format!("{} ({})", class.model_type, class.class)
    };
    let alike: Vec<String> = alike_ids.iter().map(|id| named(*id)).collect();
    if !alike.is_empty() {
        inferred.undetermined.insert(
            0,
            format!(
                "model_type: the tensor names fit {} and equally {}",
                named(best),
                alike.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_sub_config_s_fields_are_named_under_it() {
        let composite = Inferred {
            family: "hf".into(),
            fields: vec![
                InferredField {
                    field: "text_config.hidden_size".into(),
                    value: json!(64),
                    evidence: "old".into(),
                    range: None,
                    given: Vec::new(),
                },
                InferredField {
                    field: "projector_hidden_act".into(),
                    value: json!(1),
                    evidence: "kept".into(),
                    range: None,
                    given: Vec::new(),
                },
            ],
            config: json!({"model_type": "llava", "text_config": {"model_type": "llama", "hidden_size": 64}}),
            undetermined: vec!["text_config.rope_theta: old".into(), "other: kept".into()],
            ..Inferred::default()
        };
        let sub = Inferred {
            family: "hf".into(),
            fields: vec![InferredField {
                field: "hidden_size".into(),
                value: json!(32),
                evidence: "embed_tokens.weight shape[1]".into(),
                range: None,
                given: Vec::new(),
            }],
            config: json!({"model_type": "qwen2", "architectures": ["Qwen2Model"], "hidden_size": 32}),
            undetermined: vec!["rope_theta: new".into()],
            ..Inferred::default()
        };
        static NO_DESCRIPTION: Value = Value::Null;
        let class = IndexedClass {
            model_type: "qwen2",
            class: "Qwen2Model",
            desc: &NO_DESCRIPTION,
            patterns: 0,
        };
        let got = swapped_in(
            &composite,
            "text_config",
            "model.language_model",
            &class,
            sub,
            26,
        );
        assert_eq!(
            got.config,
            json!({"model_type": "llava", "text_config": {"model_type": "qwen2", "hidden_size": 32}})
        );
        let named: Vec<(&str, &Value)> = got
            .fields
            .iter()
            .map(|f| (f.field.as_str(), &f.value))
            .collect();
        assert_eq!(
            named,
            [
                ("projector_hidden_act", &json!(1)),
                ("text_config.model_type", &json!("qwen2")),
                ("text_config.hidden_size", &json!(32)),
            ]
        );
        assert_eq!(
            got.undetermined,
            ["other: kept", "text_config.rope_theta: new"]
        );
    }
}
