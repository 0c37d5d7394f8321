//! Config fields the tensors show only indirectly, for inference: a head
//! count no shape shows but whose default the width shows to be wrong, and
//! flags read off which of the keys they add are present (a SigLIP tower
//! saved without its pooling head has `vision_use_head` off).

use super::infer::{insert, walk, KeysByPattern, ASSUMED};
use super::{child, entries, field_name, resolved};
use crate::arch::{Inferred, InferredField};
use serde_json::{json, Value};

/// A head count no shape shows, whose default does not divide the width
/// the shapes show (a SigLIP tower 32 wide: SigLIP's default 12 heads would
/// be refused): the largest count below the default that divides it is
/// taken and said to be, so the inferred config builds. Pairs from the
/// data's `multiples` and `divides` (sizes the heads must divide).
pub(super) fn heads_that_divide(
    desc: &'static Value,
    known: &mut Vec<(&'static str, u64, String)>,
    assumed: &mut Vec<String>,
) {
    for pair in ["multiples", "divides"]
        .into_iter()
        .flat_map(|list| entries(desc, list))
    {
        let size = field_name(desc, pair[0].as_str().unwrap_or(""));
        let heads = field_name(desc, pair[1].as_str().unwrap_or(""));
        // A required field's "default" is a placeholder (checks::is_required).
        if size.is_empty()
            || heads.is_empty()
            || known.iter().any(|(k, _, _)| *k == heads)
            || super::checks::is_required(desc, heads)
        {
            continue;
        }
        let Some(size_value) = known
            .iter()
            .find(|(k, _, _)| *k == size)
            .map(|(_, v, _)| *v)
        else {
            continue;
        };
        let Some(default) = desc["fields"][heads]["default"].as_u64().filter(|d| *d > 0) else {
            continue;
        };
        if size_value % default == 0 {
            continue;
        }
        let Some(taken) = (1..default).rev().find(|count| size_value % count == 0) else {
            continue;
        };
        assumed.push(format!(
            "{heads}: no tensor shape shows it, and the default {default} does not divide {size} = {size_value}; {taken} (the largest count below it that does) is taken"
        ));
        known.push((heads, taken, format!("{ASSUMED} {heads}")));
    }
}

/// The flags whose keys tell their value: a flag that adds keys the
/// tensors hold is on; one whose keys (entries with it as their one
/// condition) are all absent is off; the default stands where the keys
/// say nothing or disagree. Set in the inference's config where they
/// differ from the default, each with its evidence.
pub(super) fn flags_from_keys(
    desc: &'static Value,
    keys_by_pattern: &KeysByPattern,
    inferred: &mut Inferred,
) {
    // (flag, the value the entry needs, whether its keys are present, a key).
    let mut seen: Vec<(&'static str, bool, bool, String)> = Vec::new();
    visit(desc, &desc["tree"], "", keys_by_pattern, &mut seen, 0);
    let mut flags: Vec<&'static str> = seen.iter().map(|(flag, ..)| *flag).collect();
    flags.sort();
    flags.dedup();
    for flag in flags {
        let Some(default) = desc["fields"][flag]["default"].as_bool() else {
            continue;
        };
        let entries: Vec<&(&str, bool, bool, String)> =
            seen.iter().filter(|(f, ..)| *f == flag).collect();
        let present = |value: bool| {
            entries
                .iter()
                .find(|(_, wanted, present, _)| *wanted == value && *present)
                .map(|(.., key)| key.clone())
        };
        let (value, evidence) = match (present(!default), present(default)) {
            (Some(key), None) => (!default, format!("`{key}` is present")),
            (None, None) => match entries.iter().find(|(_, wanted, ..)| *wanted == default) {
                Some((.., key)) => (!default, format!("no key it adds is present (`{key}`)")),
                None => continue,
            },
            _ => continue,
        };
        if value == default || super::read_path(&inferred.config, flag).is_some() {
            continue;
        }
        // A sub-config's flag (`text_config.attention_bias`) goes into it.
        if let Some(config) = inferred.config.as_object_mut() {
            insert(config, flag, json!(value));
        }
        inferred
            .undetermined
            .retain(|line| !line.starts_with(&format!("{flag}: ")));
        inferred.fields.push(InferredField {
            field: flag.to_string(),
            value: json!(value),
            evidence,
            range: None,
            given: Vec::new(),
        });
    }
}

fn visit(
    desc: &'static Value,
    node: &'static Value,
    prefix: &str,
    keys_by_pattern: &KeysByPattern,
    seen: &mut Vec<(&'static str, bool, bool, String)>,
    depth: usize,
) {
    let Some(node) = resolved(node).filter(|_| depth <= 64) else {
        return;
    };
    let single_condition = |name: &str| -> Option<(&'static str, bool)> {
        let conditions = node.get("if")?.get(name)?.as_array()?;
        let [condition] = conditions.as_slice() else {
            return None;
        };
        let flag = field_name(desc, condition[0].as_str()?);
        (!flag.is_empty()).then_some((flag, condition[1].as_bool()?))
    };
    for tensor in entries(node, "t") {
        let name = tensor[0].as_str().unwrap_or("");
        if let Some((flag, wanted)) = single_condition(name) {
            let key = format!("{prefix}{name}");
            seen.push((flag, wanted, keys_by_pattern.contains_key(&key), key));
        }
    }
    let nested = format!("{prefix}#.");
    for item in entries(node, "items").chain(entries(node, "last")) {
        visit(desc, item, &nested, keys_by_pattern, seen, depth + 1);
    }
    for (_, body) in entries(node, "kinds").map(child) {
        visit(desc, body, &nested, keys_by_pattern, seen, depth + 1);
    }
    for body in ["body", "rest"]
        .into_iter()
        .filter_map(|kind| node.get(kind))
    {
        visit(desc, body, &nested, keys_by_pattern, seen, depth + 1);
    }
    for entry in entries(node, "c") {
        let (name, subtree) = child(entry);
        let under = format!("{prefix}{name}.");
        if let Some((flag, wanted)) = single_condition(name) {
            let mut keys = Vec::new();
            walk(subtree, &under, &mut |key, _| keys.push(key));
            if let Some(first) = keys.first().cloned() {
                let present = keys.iter().any(|key| keys_by_pattern.contains_key(key));
                seen.push((flag, wanted, present, first));
            }
        }
        visit(desc, subtree, &under, keys_by_pattern, seen, depth + 1);
    }
}
