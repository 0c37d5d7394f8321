//! The checks a config must pass before a zoo description builds it: the
//! fields the description holds fixed (a config that changes one is
//! refused, never guessed), lists of the described length (but those whose
//! length changes no tensor, `free_lengths`), sub-configs that
//! are objects and name the default sub-models, sub-configs written in part
//! without a field the description needs written with them
//! (`given_with_parent`), the sizes transformers refuses unless a head count
//! divides them (or floors where it does not), quotients it clamps at 1
//! (`clamped`), sizes the description holds at only for multiples of a
//! number (`rounded`), floats it follows above 0 only (`nonzero`), flags it
//! refuses without a companion flag, and lists of layer names
//! (`mlp_layer_types`) that disagree with the fields they follow.

use super::{as_flag, field_name, fixed_disagreement, read_path, strings, Fields};
use crate::error::{err, ErrorKind, Result};
use serde_json::Value;

/// A sub-config the description reads fields of (`text_config`) must be an
/// object when the config gives it.
pub(super) fn check_sub_configs(config: &Value, desc: &'static Value) -> Result<()> {
    let Some(fields) = desc.get("fields").and_then(Value::as_object) else {
        return Ok(());
    };
    for field in fields.keys() {
        let parts: Vec<&str> = field.split('.').collect();
        for end in 1..parts.len() {
            let path = parts[..end].join(".");
            if let Some(value) = read_path(config, &path) {
                if !(value.is_null() || value.is_object() || value.is_array()) {
                    return Err(err(
                        ErrorKind::BadConfig,
                        format!("config field {path:?} must be an object of fields, got {value}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A sub-config's names (its `model_type`, a timm `architecture`) choose its
/// modules, so the description holds for the composite config's default
/// names only (LLaVA's text model is LLaMA, FastVLM's vision tower timm's
/// `fastvit_mci3`): a config.json whose sub-config names another is
/// refused, and so is one whose sub-config leaves out a name the composite
/// default sets, `model_type` apart (transformers then takes the sub-config
/// class's own default: timm_wrapper's `resnet50`). save_pretrained writes
/// each of these names, as it writes every field that differs from the
/// sub-config class's own default.
pub(super) fn check_sub_config_names(
    config: &Value,
    sub_configs: Option<&'static Value>,
    model_type: &str,
    class: &str,
) -> Result<()> {
    for (parent, facts) in sub_configs.and_then(Value::as_object).into_iter().flatten() {
        let Some(given) = config.get(parent).and_then(Value::as_object) else {
            continue;
        };
        for (name, default) in facts.as_object().into_iter().flatten() {
            let Some(default) = default.as_str() else {
                continue;
            };
            if is_activation(name) || name.starts_with("attn_impl") {
                // An activation's name, or the attention kernel's, changes
                // no tensor.
                continue;
            }
            let why = match given.get(name) {
                Some(Value::String(value)) if value == default => continue,
                None | Some(Value::Null) if name == "model_type" => continue,
                None | Some(Value::Null) => {
                    "leaves it out (transformers then takes the sub-config class's own default)"
                        .to_string()
                }
                Some(value) => format!("names {value}"),
            };
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field \"{parent}.{name}\" {why}; ckptcheck's description of {class} holds for {model_type}'s default {default:?} only (the name chooses the sub-model's modules)"
                ),
            ));
        }
    }
    Ok(())
}

/// A sub-config written in part takes the sub-config class's own default
/// for what it leaves out, and where the description reads such a field
/// at the composite's default (PaliGemma's SigLIP tower without its
/// pooling head, Mask2Former's Swin with 18 blocks in its third stage) it
/// needs the field written with it (written_in_part.py's
/// `given_with_parent`: `{sub-config: {field: the default's value}}`;
/// `"*"`: the whole sub-config). save_pretrained writes each, as each
/// differs from the sub-config class's own default.
pub(super) fn check_given_with_parent(
    config: &Value,
    desc: &'static Value,
    model_type: &str,
    class: &str,
) -> Result<()> {
    for (parent, values) in given_with_parent(desc) {
        let Some(written) = read_path(config, parent).filter(|value| value.is_object()) else {
            continue;
        };
        for (key, value) in values {
            let left_out = key == "*" || read_path(written, key).is_none_or(Value::is_null);
            if !left_out {
                continue;
            }
            if key == "model_type" {
                return Err(err(
                    ErrorKind::BadConfig,
                    format!(
                        "config field \"{parent}.model_type\" is left out of {parent:?}: transformers refuses {class} with such a {parent} (it picks the sub-config class by that name; {model_type}'s default is {value}): write it (save_pretrained does)"
                    ),
                ));
            }
            let what = if key == "*" {
                format!("config field {parent:?} is written in part")
            } else {
                format!("config field \"{parent}.{key}\" is left out of {parent:?}")
            };
            let default = if value.is_null() {
                String::new()
            } else {
                format!(" ({value})")
            };
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "{what}: transformers then takes the sub-config class's own default there, where {model_type}'s default config differs, and ckptcheck's description of {class} holds for the composite default's value{default} only: write it (save_pretrained does)"
                ),
            ));
        }
    }
    Ok(())
}

/// What an inferred config that writes a sub-config writes with it, as
/// the composite default has it, where the description needs it written
/// (`given_with_parent`, above) and the shapes did not give it.
pub(super) fn write_given_with_parent(
    desc: &'static Value,
    config: &mut serde_json::Map<String, Value>,
) {
    for (parent, values) in given_with_parent(desc) {
        let (top, rest) = parent.split_once('.').unwrap_or((parent, ""));
        let Some(Value::Object(written)) = config
            .get_mut(top)
            .and_then(|node| super::path_mut(node, rest))
        else {
            continue;
        };
        for (key, value) in values.filter(|(key, value)| *key != "*" && !value.is_null()) {
            written.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
}

/// The data's `given_with_parent`: each sub-config with its fields.
fn given_with_parent(
    desc: &'static Value,
) -> impl Iterator<
    Item = (
        &'static String,
        impl Iterator<Item = (&'static String, &'static Value)>,
    ),
> {
    let needed = desc.get("given_with_parent").and_then(Value::as_object);
    needed
        .into_iter()
        .flatten()
        .map(|(parent, values)| (parent, values.as_object().into_iter().flatten()))
}

/// `hidden_act`, `projector_hidden_act`, `activation_function`: as
/// generate.py's `(^|_)act(_|$)|activation`.
fn is_activation(name: &str) -> bool {
    name.contains("activation") || name.split('_').any(|part| part == "act")
}

/// A count below which the described structure is another (SD3.5 Medium's
/// last block would be one of its 13 dual-attention blocks): the data
/// records the least value (`least`), and a config below it is refused
/// rather than built with the wrong blocks.
pub(super) fn check_least(fields: &mut Fields, class: &str) -> Result<()> {
    let Some(least) = fields.desc.get("least").and_then(Value::as_object) else {
        return Ok(());
    };
    for (field, minimum) in least {
        let field = field_name(fields.desc, field);
        let Some(minimum) = minimum.as_u64() else {
            continue;
        };
        if field.is_empty() {
            continue;
        }
        let value = fields.number(field)?;
        if value < minimum {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {field:?} = {value} is below {minimum}, the least for which ckptcheck's description of {class} holds (with fewer, its layers are of other kinds than the description's)"
                ),
            ));
        }
    }
    Ok(())
}

/// transformers refuses a size that is not a multiple of its head count
/// (BERT: "The hidden size (30) is not a multiple of the number of
/// attention heads (4)"), though the head count may size no tensor; the
/// data lists such pairs (`multiples`). Other modules build such a size
/// with the head size floored (ViT-MAE: 1000 wide with 12 heads gives
/// 996-wide projections), which the description, derived from sizes the
/// heads divide, does not follow: divides.py lists those pairs
/// (`divides`), and such a config is refused too, never given the
/// unfloored shapes.
pub(super) fn check_multiples(fields: &mut Fields, class: &str) -> Result<()> {
    for (list, refused_by_transformers) in [("multiples", true), ("divides", false)] {
        let Some(pairs) = fields.desc.get(list).and_then(Value::as_array) else {
            continue;
        };
        for pair in pairs {
            let size = field_name(fields.desc, pair[0].as_str().unwrap_or(""));
            let heads = field_name(fields.desc, pair[1].as_str().unwrap_or(""));
            if size.is_empty() || heads.is_empty() {
                continue;
            }
            let (size_value, heads_value) = (fields.number(size)?, fields.number(heads)?);
            if heads_value != 0 && size_value % heads_value == 0 {
                continue;
            }
            let why = if refused_by_transformers || heads_value == 0 {
                format!(
                    "transformers refuses to build {class} (each of the heads takes an equal share of {size})"
                )
            } else {
                format!(
                    "transformers builds {class} anyway, with other shapes (a head size floored to {}, a width rounded), and ckptcheck's description of it, derived from sizes the heads divide, holds only for those",
                    size_value / heads_value
                )
            };
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {size:?} = {size_value} is not a multiple of {heads:?} = {heads_value}: {why}"
                ),
            ));
        }
    }
    Ok(())
}

/// A quotient the library clamps at 1 (clamped.py: ConvBERT takes
/// `num_attention_heads // head_ratio` heads, and 1 head where that comes
/// to 0): the description, fitted where it was at least 1, holds only
/// there (`clamped`: [[dividend, divisor]]); a config where it comes to 0
/// is refused, naming both, never built with empty modules.
pub(super) fn check_clamped(fields: &mut Fields, class: &str) -> Result<()> {
    let desc: &'static Value = fields.desc;
    for pair in desc
        .get("clamped")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let dividend = field_name(desc, pair[0].as_str().unwrap_or(""));
        let divisor = field_name(desc, pair[1].as_str().unwrap_or(""));
        if dividend.is_empty() || divisor.is_empty() {
            continue;
        }
        let (above, below) = (fields.number(dividend)?, fields.number(divisor)?);
        if below == 0 || above / below > 0 {
            continue;
        }
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "config field {divisor:?} = {below} is above {dividend:?} = {above}: transformers clamps {dividend} // {divisor} to 1 there and builds {class} with other shapes, and ckptcheck's description of it holds while the quotient is at least 1"
            ),
        ));
    }
    Ok(())
}

/// A size the library floors or rounds where the description divides it,
/// which no rounding formula or head rule followed (rounded_sizes.py:
/// ConvBERT's token-classification head, Gemma 4's audio subsampling): the
/// description, derived from values where the flooring does nothing, holds
/// only for multiples of a number the pass found (`rounded`: 16 for that
/// ConvBERT's `hidden_size`); any other value is refused, naming it, never
/// given the unfloored shapes.
pub(super) fn check_rounded(fields: &mut Fields, class: &str) -> Result<()> {
    let desc: &'static Value = fields.desc;
    let Some(rounded) = desc.get("rounded").and_then(Value::as_object) else {
        return Ok(());
    };
    for (field, multiple) in rounded {
        let field = field_name(desc, field);
        let Some(multiple) = multiple.as_u64().filter(|m| *m > 1) else {
            continue;
        };
        if field.is_empty() {
            continue;
        }
        let value = fields.number(field)?;
        if value % multiple != 0 {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {field:?} = {value} is not a multiple of {multiple}: transformers builds other shapes off these multiples (a size floored or rounded), and ckptcheck's description of {class}, derived from multiples of {multiple}, holds only for those"
                ),
            ));
        }
    }
    Ok(())
}

/// The keys that exist only while two sizes differ (`keys_if_distinct`:
/// ELECTRA's `embeddings_project` where `embedding_size` is `hidden_size`,
/// ResNet's first shortcut where the stem is as wide as the first stage),
/// for the config's sizes: those to leave out.
pub(super) fn keys_absent_at_equal_sizes(fields: &mut Fields) -> Result<Vec<&'static str>> {
    let mut absent = Vec::new();
    let Some(rules) = fields
        .desc
        .get("keys_if_distinct")
        .and_then(Value::as_array)
    else {
        return Ok(absent);
    };
    for rule in rules {
        let first = field_name(fields.desc, rule[0].as_str().unwrap_or(""));
        let second = field_name(fields.desc, rule[1].as_str().unwrap_or(""));
        if first.is_empty() || second.is_empty() {
            continue;
        }
        if fields.number(first)? == fields.number(second)? {
            absent.extend(
                rule[2]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str),
            );
        }
    }
    Ok(absent)
}

/// A float that changes which tensors exist at 0 only (unvaried_fields.py:
/// wav2vec2's `mask_time_prob` adds `masked_spec_embed` while it is above
/// 0, or `mask_feature_prob` is; 0.05 and 0.075 build alike) is refused at
/// 0, where the description's tensors are not the library's, unless one of
/// its `nonzero_unless` floats (0 by default) is above 0 and builds them.
pub(super) fn check_nonzero(config: &Value, desc: &'static Value, class: &str) -> Result<()> {
    let unless = desc.get("nonzero_unless");
    for field in strings(desc, "nonzero") {
        let made_up = unless.is_some_and(|unless| {
            strings(unless, field).iter().any(|other| {
                read_path(config, other)
                    .and_then(Value::as_f64)
                    .is_some_and(|v| v != 0.0)
            })
        });
        if !made_up && read_path(config, field).and_then(Value::as_f64) == Some(0.0) {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {field:?} = 0: transformers then builds other tensors for {class} (it adds some only while the field is above 0), and ckptcheck's description holds for values above 0 only"
                ),
            ));
        }
    }
    Ok(())
}

/// A config that changes a field the description cannot follow is refused.
pub(super) fn check_fixed(
    config: &Value,
    desc: &'static Value,
    model_type: &str,
    class: &str,
) -> Result<()> {
    if let Some((field, given, default)) = fixed_disagreement(desc, config) {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "config field {field:?} = {given} differs from {model_type}'s default {default}, and ckptcheck's description of {class} holds only for the default (at other values transformers builds other tensors, or other sizes by a rule the description does not follow)"
            ),
        ));
    }
    if let Some(lists) = desc.get("lists").and_then(Value::as_object) {
        // Lists whose length changes no tensor (list_lengths.py: DINOv2's
        // backbone `out_indices`) are taken at any length.
        let free = strings(desc, "free_lengths");
        for (field, length) in lists {
            if free.contains(&field.as_str()) {
                continue;
            }
            if let Some(Value::Array(items)) = read_path(config, field) {
                if Some(items.len() as u64) != length.as_u64() {
                    return Err(err(
                        ErrorKind::BadConfig,
                        format!(
                            "config field {field:?} has {} entries; ckptcheck's description of {class} holds for {length}",
                            items.len()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A field the config class leaves without a usable default (EsmConfig's
/// `vocab_size`, MinistralConfig's `head_dim` are null, DBRX's attention
/// config has no `rope_theta`): transformers cannot build the model from a
/// config.json that leaves it out, so neither does ckptcheck (the value the
/// description was derived at is no default anyone released). A field under
/// a sub-config another model type fills (`swapped`) is that type's to
/// require.
pub(super) fn check_required(
    config: &Value,
    swapped: &[&str],
    desc: &'static Value,
    model_type: &str,
    class: &str,
) -> Result<()> {
    for field in desc
        .get("required")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|required| required.keys())
    {
        let section = field.split_once('.').map(|(section, _)| section);
        if section.is_some_and(|section| swapped.contains(&section)) {
            continue;
        }
        if read_path(config, field).is_none_or(Value::is_null) {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {field:?} is missing: {model_type}'s config class has no default for it, and transformers cannot build {class} unless it (or a key the config class maps to it) is set; ckptcheck reads it under this name: set it as the released config.json does"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether the description requires `field` of a config.json: its
/// "default" is then the value the derivation filled in (required.py), no
/// default of the library's.
pub(super) fn is_required(desc: &Value, field: &str) -> bool {
    desc.get("required")
        .and_then(|required| required.get(field))
        .is_some()
}

/// The fields inference may assume a default for where the shapes show
/// only their products, each once: a required field only where no other is
/// left (Ministral's placeholder `head_dim` 8 would otherwise be assumed,
/// and 4096 query features read as 512 heads of 8).
pub(super) fn assumable(desc: &Value, stuck: Vec<&'static str>) -> Vec<&'static str> {
    let mut fields: Vec<&'static str> = Vec::new();
    for field in stuck {
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    if fields.iter().any(|field| !is_required(desc, field)) {
        fields.retain(|field| !is_required(desc, field));
    }
    fields
}

/// An inferred config gets each required field the shapes left out, at the
/// value the description was derived at (transformers cannot build the
/// model without it), and a line saying so for the undetermined list; not
/// under a sub-config the inference wrote as another model type than the
/// composite's default (`sub_configs`), whose own description requires
/// what it needs.
pub(super) fn write_required(
    desc: &Value,
    sub_configs: Option<&Value>,
    config: &mut serde_json::Map<String, Value>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (field, value) in desc
        .get("required")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some((section, _)) = field.split_once('.') {
            let written = config
                .get(section)
                .and_then(|inner| inner.get("model_type"));
            let default = sub_configs.and_then(|facts| facts[section].get("model_type"));
            if written.is_some() && written != default {
                continue;
            }
        }
        let given = match field.split_once('.') {
            Some((section, rest)) => config.get(section).and_then(|inner| read_path(inner, rest)),
            None => config.get(field.as_str()),
        };
        if given.is_none_or(Value::is_null) {
            super::infer::insert(config, field, value.clone());
            lines.push(format!(
                "{field}: no tensor shape shows it and the config class has no default for it; {value} is written, as transformers needs a value: set the released one"
            ));
        }
    }
    lines
}

/// A flag transformers refuses to build flipped unless another is flipped
/// too (BERT's `add_cross_attention` wants `is_decoder`: "should be used as
/// a decoder model if cross attention is added"); the data records it as
/// `"needs": [companion, value it needs, its default]`.
pub(super) fn check_companions(fields: &mut Fields, class: &str) -> Result<()> {
    let desc: &'static Value = fields.desc;
    let Some(specs) = desc.get("fields").and_then(Value::as_object) else {
        return Ok(());
    };
    for (field, spec) in specs {
        let Some(needs) = spec.get("needs").and_then(Value::as_array) else {
            continue;
        };
        let (Some(companion), Some(needed), Some(default)) = (
            needs.first().and_then(Value::as_str),
            needs.get(1).and_then(Value::as_bool),
            needs.get(2).and_then(Value::as_bool),
        ) else {
            continue;
        };
        let flag_default = spec.get("default").and_then(Value::as_bool);
        if Some(fields.flag(field.as_str())?) == flag_default {
            continue;
        }
        let given = read_path(fields.config, companion)
            .filter(|value| !value.is_null())
            .map_or(default, as_flag);
        if given != needed {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {field:?} is set but {companion:?} is {given}: transformers refuses to build {class} unless {companion:?} is {needed}"
                ),
            ));
        }
    }
    Ok(())
}

/// A list of layer types with the older names the config class renames
/// (`"mamba"` is `"linear_attention"`, `"attention"` is `"full_attention"`,
/// as Granite 4's config.json writes them) read as transformers reads them.
fn renamed_layer_types(given: &Value, aliases: Option<&Value>) -> Value {
    let (Some(items), Some(aliases)) = (given.as_array(), aliases.and_then(Value::as_object))
    else {
        return given.clone();
    };
    Value::Array(
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .and_then(|name| aliases.get(name))
                    .unwrap_or(item)
                    .clone()
            })
            .collect(),
    )
}

/// A list with a name per layer that the config class derives from other
/// fields when config.json leaves it out (GLM-MoE-DSA's `mlp_layer_types`
/// from `first_k_dense_replace`). transformers builds from the list when
/// config.json gives one, ckptcheck's description from the fields, so a
/// given list must be the one the fields give (the data's `named_lists`:
/// the first `split` layers of one name and the rest of another, every
/// layer of one name, or exactly the default's list); one that is not is
/// refused, never built past.
pub(super) fn check_named_lists(fields: &mut Fields, class: &str) -> Result<()> {
    let desc: &'static Value = fields.desc;
    let Some(lists) = desc.get("named_lists").and_then(Value::as_object) else {
        return Ok(());
    };
    for (path, form) in lists {
        // A list that chooses each layer's kind is built from, not
        // compared: the expansion reads it (layer_kinds.rs) and refuses
        // what transformers refuses or ckptcheck cannot derive.
        if form.get("by").is_some() {
            continue;
        }
        let Some(given) = read_path(fields.config, path).filter(|v| !v.is_null()) else {
            continue;
        };
        let given = &renamed_layer_types(given, form.get("aliases"));
        let (expected, what) = if let Some(exactly) = form.get("exactly") {
            (exactly.clone(), format!("{class}'s default list"))
        } else {
            let names: Vec<&Value> = form["names"].as_array().into_iter().flatten().collect();
            let (Some(first), Some(count_formula)) = (names.first(), form["count"].as_str()) else {
                continue;
            };
            let (count, mut read) = fields.evaluate(count_formula)?;
            let split = match form.get("split").and_then(Value::as_str) {
                Some(formula) => {
                    let (at, split_fields) = fields.evaluate(formula)?;
                    read.extend(split_fields);
                    at.min(count)
                }
                None => count,
            };
            let rest = names.get(1).unwrap_or(first);
            let name_at = |layer: u64| if layer < split { *first } else { *rest };
            // The count comes from the config: the list it gives is compared
            // entry by entry, never built at a length the config alone sets.
            let items = given.as_array().map(Vec::as_slice).unwrap_or_default();
            if items.len() as u64 == count
                && (0u64..)
                    .zip(items)
                    .all(|(layer, item)| item == name_at(layer))
            {
                continue;
            }
            let mut given_fields = Vec::new();
            for field in read {
                if !given_fields.iter().any(|(name, _)| *name == field) {
                    given_fields.push((field, fields.number(field)?));
                }
            }
            let because = given_fields
                .iter()
                .map(|(name, value)| format!("{name} = {value}"))
                .collect::<Vec<_>>()
                .join(", ");
            if items.len() as u64 != count {
                return Err(err(
                    ErrorKind::BadConfig,
                    format!(
                        "config field {path:?} has {} entries where {because} give {count} layers: transformers builds {class} from the list, ckptcheck's description from the fields, so it holds only where they agree",
                        items.len()
                    ),
                ));
            }
            let expected: Vec<Value> = (0..count).map(|layer| name_at(layer).clone()).collect();
            (Value::Array(expected), format!("the list {because} give"))
        };
        if *given != expected {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {path:?} = {given} is not {what} ({expected}): transformers builds {class} from the list, ckptcheck's description from the fields, so it holds only where they agree"
                ),
            ));
        }
    }
    Ok(())
}

/// A size the modeling code reads that the config class does not declare
/// (undeclared.py: Qwen3-MoE's and GLM-4.5's `head_dim`, read as
/// `getattr(config, "head_dim", hidden_size // num_attention_heads)`): the
/// description was derived at its default, so a config that sets another
/// value builds a model ckptcheck does not describe, and is refused.
pub(super) fn check_undeclared(fields: &mut Fields, class: &str) -> Result<()> {
    let desc: &'static Value = fields.desc;
    let Some(undeclared) = desc.get("undeclared").and_then(Value::as_object) else {
        return Ok(());
    };
    for (field, formula) in undeclared {
        let Some(given) = read_path(fields.config, field).filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(formula) = formula.as_str() else {
            continue;
        };
        let (default, _) = fields.evaluate(formula)?;
        if given.as_u64() != Some(default) {
            return Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {field:?} = {given}: {class}'s modeling code reads it (default {formula} = {default}) though its config class does not declare it, and ckptcheck's description holds only at that default (transformers builds other sizes with it)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn required_desc() -> &'static Value {
        Box::leak(Box::new(json!({"required": {
            "head_dim": 8, "text_config.head_dim": 8, "attn_config.rope_theta": 8}})))
    }

    #[test]
    fn a_required_field_left_out_or_null_is_refused_unless_another_type_fills_its_section() {
        let desc = required_desc();
        let whole = json!({"head_dim": 128, "text_config": {"head_dim": 64},
            "attn_config": {"rope_theta": 500000}});
        assert!(check_required(&whole, &[], desc, "t", "C").is_ok());
        let mut null = whole.clone();
        null["attn_config"]["rope_theta"] = Value::Null;
        let error = check_required(&null, &[], desc, "t", "C").unwrap_err();
        assert!(
            error
                .message
                .contains("\"attn_config.rope_theta\" is missing"),
            "{error}"
        );
        let mut swapped = whole.clone();
        swapped.as_object_mut().unwrap().remove("text_config");
        assert!(check_required(&swapped, &["text_config"], desc, "t", "C").is_ok());
        let error = check_required(&swapped, &[], desc, "t", "C").unwrap_err();
        assert!(
            error.message.contains("\"text_config.head_dim\""),
            "{error}"
        );
    }

    fn names_and_shapes(model: &crate::arch::ModelSpec) -> Vec<(String, Vec<u64>)> {
        let tensors = model.tensors.iter();
        tensors.map(|t| (t.name.clone(), t.shape.clone())).collect()
    }

    /// Ministral-8B's tensors show heads only times the head size (Llama's
    /// keys, so inference names Llama; solved as Ministral here): the
    /// default head count (32) is assumed, never the derivation's
    /// placeholder `head_dim` 8, which would read 512 heads of 8.
    #[test]
    fn a_required_fields_placeholder_is_never_assumed_as_a_default() {
        use super::super::infer::{by_pattern, index, solve};
        let config = json!({"model_type": "ministral", "hidden_size": 4096,
            "intermediate_size": 12288, "num_hidden_layers": 1, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072});
        let model = super::super::from_config_value(&config, "ministral", Some("MinistralModel"))
            .unwrap_or_else(|e| panic!("{e}"));
        let names = names_and_shapes(&model);
        let class = index()
            .classes
            .iter()
            .find(|class| class.model_type == "ministral" && class.class == "MinistralModel")
            .expect("MinistralModel is described");
        let inferred = solve(class, &names, &by_pattern(&names));
        assert_eq!(inferred.config["head_dim"], 128, "{}", inferred.config);
        assert_eq!(
            inferred.config["num_key_value_heads"], 8,
            "{}",
            inferred.config
        );
        let rebuilt = super::super::from_config_value(&inferred.config, "ministral", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names_and_shapes(&rebuilt), names);
    }

    #[test]
    fn an_inferred_config_gets_the_required_fields_the_shapes_left_out() {
        let facts = json!({"text_config": {"model_type": "hunyuan_vl_text"}});
        let inferred = json!({"head_dim": 128, "text_config": {"model_type": "llama"}});
        let mut config = inferred.as_object().unwrap().clone();
        let lines = write_required(required_desc(), Some(&facts), &mut config);
        // The shapes' 128 stays; the sub-config of another type is left to
        // that type; the rope base no shape shows is written and said.
        assert_eq!(config["head_dim"], 128);
        assert_eq!(config["text_config"], json!({"model_type": "llama"}));
        assert_eq!(config["attn_config"]["rope_theta"], 8);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("attn_config.rope_theta: "),
            "{lines:?}"
        );
        let mut own = json!({"text_config": {"model_type": "hunyuan_vl_text"}})
            .as_object()
            .unwrap()
            .clone();
        write_required(required_desc(), Some(&facts), &mut own);
        assert_eq!(own["text_config"]["head_dim"], 8);
    }
}
