//! Where a zoo field's value comes from when config.json leaves it out:
//! the default of the sub-config it sits in, or a name the config class
//! turns into it (T5's `feed_forward_proj` "gated-gelu" sets
//! `is_gated_act`, as flan-t5's config.json relies on).

use super::read_path;
use crate::error::{err, ErrorKind, Result};
use serde_json::Value;

/// Which of a field's defaults holds for `config`: a sub-config's field has
/// a second one, `default_in_parent`, where the composite config's default
/// sub-config differs from the sub-config class's own (LLaVA's CLIP tower is
/// 1024 wide; a `vision_config` written without `hidden_size` gets
/// CLIPVisionConfig's 768).
pub(super) fn default_key(config: &Value, spec: &Value, field: &str) -> &'static str {
    let parent_given = field
        .rsplit_once('.')
        .and_then(|(parent, _)| read_path(config, parent))
        .is_some_and(Value::is_object);
    if parent_given && spec.get("default_in_parent").is_some() {
        "default_in_parent"
    } else {
        "default"
    }
}

/// The value a name gives a field config.json leaves out (`by_name`:
/// `[name field, {name: value}]`, found by names.py: T5's
/// `feed_forward_proj` "gated-gelu" gives `is_gated_act` true). None when
/// the field has no such rule or the config leaves the name out too; a name
/// the data has no value for is refused, naming both fields, rather than
/// given the default's value.
pub(super) fn by_name(config: &Value, spec: &'static Value, field: &str) -> Result<Option<Value>> {
    let Some([name, table]) = spec
        .get("by_name")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    else {
        return Ok(None);
    };
    let Some(name) = name.as_str() else {
        return Ok(None);
    };
    let Some(given) = read_path(config, name).and_then(Value::as_str) else {
        return Ok(None);
    };
    match table.get(given) {
        Some(value) => Ok(Some(value.clone())),
        None => {
            let known: Vec<&String> = table
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            Err(err(
                ErrorKind::BadConfig,
                format!(
                    "config field {name:?} = {given:?} sets {field:?}, and ckptcheck knows the value it gives only for {known:?}: write {field:?} in config.json"
                ),
            ))
        }
    }
}
