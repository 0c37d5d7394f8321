//! Stable Diffusion inference YAMLs (`v1-inference.yaml`,
//! `sd_xl_base.yaml`, ...): a reader for the block YAML they are written in
//! (mappings and sequences by indentation, flow lists, plain and quoted
//! scalars, comments), and the facts a YAML gives of the model's shapes,
//! read as diffusers' `create_unet_diffusers_config_from_ldm` reads them
//! (block widths from `model_channels * channel_mult`, attention blocks
//! from `attention_resolutions`, `context_dim`, `transformer_depth`,
//! `use_linear_in_transformer`, `adm_in_channels`), with the text encoders'
//! targets and the VAE's `ddconfig`. zoo/stable_diffusion.py records the
//! same facts of each release's YAML; a dropped YAML is the release whose
//! facts it equals. Anchors, tags, multi-line scalars and flow mappings
//! with content are refused with the line, not guessed.

use crate::error::{err, ErrorKind, Result};
use serde_json::{json, Map, Value};

/// Nesting a YAML may reach (the releases' reach 7).
const MAX_DEPTH: usize = 64;

struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

fn bad(line: usize, what: impl std::fmt::Display) -> crate::error::Error {
    err(ErrorKind::BadConfig, format!("YAML line {line}: {what}"))
}

/// The text up to a comment (`#` at the start or after a space, outside
/// quotes).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

/// Parse a YAML document of the block subset into JSON values.
pub fn parse(text: &str) -> Result<Value> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let content = without_comment(raw).trim_end();
        if content.trim().is_empty() || content.trim() == "---" {
            continue;
        }
        let indent = content.len() - content.trim_start_matches(' ').len();
        if content[indent..].starts_with('\t') {
            return Err(bad(number, "a tab in the indentation"));
        }
        lines.push(Line {
            number,
            indent,
            text: content[indent..].trim_end(),
        });
    }
    let mut position = 0;
    let Some(first_indent) = lines.first().map(|line| line.indent) else {
        return Ok(Value::Null);
    };
    let value = block(&mut lines, &mut position, first_indent, 0)?;
    if let Some(line) = lines.get(position) {
        return Err(bad(
            line.number,
            "indentation does not match any level above",
        ));
    }
    Ok(value)
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key: rest` (rest possibly empty), for a line that is a mapping entry.
fn split_entry(text: &str) -> Option<(&str, &str)> {
    let (key, rest) = if let Some(key) = text.strip_suffix(':') {
        (key, "")
    } else {
        let at = text.find(": ")?;
        (&text[..at], text[at + 2..].trim())
    };
    let key = key.trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    (!key.is_empty()).then_some((key, rest))
}

fn block<'a>(
    lines: &mut [Line<'a>],
    position: &mut usize,
    indent: usize,
    depth: usize,
) -> Result<Value> {
    let Some(line) = lines.get(*position) else {
        return Ok(Value::Null);
    };
    if depth > MAX_DEPTH {
        return Err(bad(
            line.number,
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    if is_item(line.text) {
        sequence(lines, position, indent, depth)
    } else {
        mapping(lines, position, indent, depth)
    }
}

/// The value after `key:` with nothing on its line: a deeper block, a
/// sequence at the key's own indentation, or null.
fn nested<'a>(
    lines: &mut [Line<'a>],
    position: &mut usize,
    indent: usize,
    depth: usize,
) -> Result<Value> {
    match lines.get(*position) {
        Some(next) if next.indent > indent => {
            let deeper = next.indent;
            block(lines, position, deeper, depth + 1)
        }
        Some(next) if next.indent == indent && is_item(next.text) => {
            sequence(lines, position, indent, depth + 1)
        }
        _ => Ok(Value::Null),
    }
}

fn mapping<'a>(
    lines: &mut [Line<'a>],
    position: &mut usize,
    indent: usize,
    depth: usize,
) -> Result<Value> {
    let mut map = Map::new();
    while let Some(line) = lines.get(*position) {
        if line.indent < indent || (line.indent == indent && is_item(line.text)) {
            break;
        }
        if line.indent > indent {
            return Err(bad(line.number, "unexpected indentation"));
        }
        let number = line.number;
        let (key, rest) = split_entry(line.text).ok_or_else(|| {
            bad(
                number,
                format!("expected `key: value`, found {:?}", line.text),
            )
        })?;
        let key = key.to_string();
        let rest = rest.to_string();
        *position += 1;
        let value = if rest.is_empty() {
            nested(lines, position, indent, depth)?
        } else {
            scalar(&rest, number, depth)?
        };
        map.insert(key, value);
    }
    Ok(Value::Object(map))
}

fn sequence<'a>(
    lines: &mut [Line<'a>],
    position: &mut usize,
    indent: usize,
    depth: usize,
) -> Result<Value> {
    let mut items = Vec::new();
    while let Some(line) = lines.get(*position) {
        let (number, text): (usize, &'a str) = (line.number, line.text);
        if line.indent != indent || !is_item(text) {
            if line.indent > indent {
                return Err(bad(number, "unexpected indentation"));
            }
            break;
        }
        let after = text[1..].trim_start();
        if after.is_empty() {
            *position += 1;
            items.push(nested(lines, position, indent, depth)?);
        } else if split_entry(after).is_some() && !after.starts_with(['[', '{', '"', '\'']) {
            // `- key: value` opens a mapping whose keys line up with `key`:
            // the line is read again as that mapping's first entry.
            let item_indent = indent + (text.len() - after.len());
            lines[*position] = Line {
                number,
                indent: item_indent,
                text: after,
            };
            items.push(mapping(lines, position, item_indent, depth + 1)?);
        } else {
            *position += 1;
            items.push(scalar(after, number, depth)?);
        }
    }
    Ok(Value::Array(items))
}

fn scalar(text: &str, line: usize, depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(bad(line, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| bad(line, "a flow list must close on its line"))?;
        let mut items = Vec::new();
        for part in split_flow(inner) {
            if !part.trim().is_empty() {
                items.push(scalar(part, line, depth + 1)?);
            }
        }
        return Ok(Value::Array(items));
    }
    if text == "{}" {
        return Ok(Value::Object(Map::new()));
    }
    if text.starts_with(['{', '&', '*', '!', '|', '>']) {
        return Err(bad(line, format!("{text:?}: this YAML form is not read")));
    }
    for quote in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(quote) {
            let inner = inner
                .strip_suffix(quote)
                .ok_or_else(|| bad(line, "an unclosed quote"))?;
            return Ok(Value::String(inner.to_string()));
        }
    }
    Ok(match text {
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        "null" | "Null" | "NULL" | "~" => Value::Null,
        _ => {
            if let Ok(integer) = text.parse::<i64>() {
                json!(integer)
            } else if let Some(float) = text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && text.bytes().any(|b| b.is_ascii_digit()))
            {
                json!(float)
            } else {
                Value::String(text.to_string())
            }
        }
    })
}

/// A flow list's items, split at commas outside nested brackets and quotes.
fn split_flow(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut quote) = (0usize, 0usize, None);
    for (at, c) in inner.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
}

/// The shape facts of an inference YAML (see the module comment).
pub fn facts(yaml: &Value) -> Result<Value> {
    let missing = |what: &str| {
        err(
            ErrorKind::BadConfig,
            format!("not a Stable Diffusion inference YAML: {what} is missing"),
        )
    };
    let params = &yaml["model"]["params"];
    let unet = ["unet_config", "network_config"]
        .iter()
        .map(|key| &params[*key]["params"])
        .find(|value| value.is_object())
        .ok_or_else(|| missing("model.params.unet_config.params (or network_config)"))?;
    let number = |value: &Value, field: &str| {
        value[field]
            .as_u64()
            .ok_or_else(|| missing(&format!("a whole number at {field}")))
    };
    let numbers = |value: &Value, field: &str| -> Result<Vec<u64>> {
        value[field]
            .as_array()
            .and_then(|items| items.iter().map(Value::as_u64).collect())
            .ok_or_else(|| missing(&format!("a list of whole numbers at {field}")))
    };
    let model_channels = number(unet, "model_channels")?;
    let channel_mult = numbers(unet, "channel_mult")?;
    let attention = numbers(unet, "attention_resolutions")?;
    let blocks = channel_mult.len();
    let block_out_channels: Vec<u64> = channel_mult
        .iter()
        .map(|m| model_channels.checked_mul(*m))
        .collect::<Option<_>>()
        .ok_or_else(|| missing("block widths that fit 64 bits"))?;
    let (mut down, mut up, mut resolution) = (Vec::new(), Vec::new(), 1u64);
    for i in 0..blocks {
        let cross = attention.contains(&resolution);
        down.push(if cross {
            "CrossAttnDownBlock2D"
        } else {
            "DownBlock2D"
        });
        if i + 1 != blocks {
            resolution = resolution.saturating_mul(2);
        }
    }
    for _ in 0..blocks {
        let cross = attention.contains(&resolution);
        up.push(if cross {
            "CrossAttnUpBlock2D"
        } else {
            "UpBlock2D"
        });
        resolution /= 2;
    }
    let context_dim = match &unet["context_dim"] {
        Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    let transformer_depth = match &unet["transformer_depth"] {
        Value::Null => json!(1),
        other => other.clone(),
    };
    let projection = if unet["num_classes"] == "sequential" {
        unet["adm_in_channels"].clone()
    } else {
        Value::Null
    };
    let embedders: Vec<&Value> = match params["cond_stage_config"].is_object() {
        true => vec![&params["cond_stage_config"]],
        false => params["conditioner_config"]["params"]["emb_models"]
            .as_array()
            .map(|items| items.iter().collect())
            .unwrap_or_default(),
    };
    let text_encoders: Vec<String> = embedders
        .iter()
        .filter_map(|e| Some((e["target"].as_str()?, e)))
        .filter(|(target, _)| !target.contains("Timestep"))
        .map(|(target, e)| {
            let name = target.rsplit('.').next().unwrap_or(target);
            match e["params"]["arch"].as_str() {
                Some(arch) => format!("{name}/{arch}"),
                None => name.to_string(),
            }
        })
        .collect();
    let parameterization = if params["cond_stage_config"].is_object() {
        params["parameterization"]
            .as_str()
            .unwrap_or("eps")
            .to_string()
    } else {
        let scaling = params["denoiser_config"]["params"]["scaling_config"]["target"]
            .as_str()
            .unwrap_or("");
        if scaling.ends_with("VScaling") {
            "v"
        } else {
            "eps"
        }
        .to_string()
    };
    let dd = &params["first_stage_config"]["params"]["ddconfig"];
    Ok(json!({
        "in_channels": number(unet, "in_channels")?,
        "block_out_channels": block_out_channels,
        "down_block_types": down,
        "up_block_types": up,
        "layers_per_block": number(unet, "num_res_blocks")?,
        "transformer_layers_per_block": transformer_depth,
        "use_linear_projection": unet["use_linear_in_transformer"].as_bool().unwrap_or(false),
        "cross_attention_dim": context_dim,
        "projection_class_embeddings_input_dim": projection,
        "text_encoders": text_encoders,
        "parameterization": parameterization,
        "vae": {
            "ch": dd["ch"],
            "ch_mult": dd["ch_mult"],
            "z_channels": dd["z_channels"],
            "num_res_blocks": dd["num_res_blocks"],
        },
    }))
}
