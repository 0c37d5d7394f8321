//! What an SD3, SD3.5 or FLUX.1 single file bundles beside its MMDiT or
//! transformer: Stability AI's `_incl_clips` files and ComfyUI's
//! all-in-one checkpoints carry the text encoders under
//! `text_encoders.clip_l.transformer.`, `text_encoders.clip_g.transformer.`
//! and `text_encoders.t5xxl.transformer.`, and the VAE under
//! `first_stage_model.` or `vae.`, where diffusers' `from_single_file`
//! reads them. Each part found is checked against the model diffusers
//! builds for it (stable_diffusion.json's `bundled`, which
//! zoo/stable_diffusion.py derives from transformers and checks with
//! diffusers' single-file converters): exact, or what is missing, extra or
//! of another shape. A transformer-only loader (diffusers'
//! `FluxTransformer2DModel`, ComfyUI's diffusion-model loader) does not take
//! such a file whole; explanations say which parts it holds.

use super::sd_layout::Listed;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// One bundled part a file holds, against the part's model.
#[derive(Debug, Clone, PartialEq)]
pub struct BundledPart {
    /// `text_encoders.clip_l.transformer.`, `vae.`.
    pub prefix: String,
    /// `CLIP-L`, `T5-XXL`, `VAE`.
    pub name: String,
    /// What the part is, for explanations.
    pub about: String,
    /// The file's tensors under the prefix (old `position_ids` buffers,
    /// which loaders drop, not counted).
    pub tensors: usize,
    /// Keys of the part's model the file lacks (its optional keys aside).
    pub missing: Vec<String>,
    /// Keys under the prefix the part's model does not have.
    pub unexpected: Vec<String>,
    /// `(key, file's shape, model's shape)`.
    pub mismatched: Vec<(String, Vec<u64>, Vec<u64>)>,
}

impl BundledPart {
    pub fn exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// "exact" or what differs, with the first key of each kind.
    pub fn status(&self) -> String {
        if self.exact() {
            return "exact".to_string();
        }
        let mut parts = Vec::new();
        if let Some(first) = self.missing.first() {
            parts.push(format!("{} missing ({first}, …)", self.missing.len()));
        }
        if let Some(first) = self.unexpected.first() {
            parts.push(format!("{} unexpected ({first}, …)", self.unexpected.len()));
        }
        if let Some((key, file, model)) = self.mismatched.first() {
            parts.push(format!(
                "{} of another shape ({key}: {file:?} where the model has {model:?}, …)",
                self.mismatched.len()
            ));
        }
        parts.join(", ")
    }
}

/// The parts of `names_shapes` under each bundled prefix, checked;
/// `data` is stable_diffusion.json, `component` its listings by name (as
/// stable_diffusion.rs reads them).
pub fn bundled_parts(
    names_shapes: &[(String, Vec<u64>)],
    data: &Value,
    component: impl Fn(&str) -> Vec<Listed>,
) -> Vec<BundledPart> {
    let mut out = Vec::new();
    for spec in data["bundled"].as_array().into_iter().flatten() {
        let text = |field: &str| spec[field].as_str().unwrap_or("").to_string();
        let prefix = text("prefix");
        let held: HashMap<&str, &Vec<u64>> = names_shapes
            .iter()
            .filter_map(|(name, shape)| Some((name.strip_prefix(prefix.as_str())?, shape)))
            .filter(|(name, _)| !name.ends_with("position_ids"))
            .collect();
        if held.is_empty() {
            continue;
        }
        let optional: Vec<&str> = spec["optional"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let model = component(spec["component"].as_str().unwrap_or(""));
        let model_names: HashSet<&str> = model.iter().map(|(name, _, _)| name.as_str()).collect();
        let mut part = BundledPart {
            prefix: prefix.clone(),
            name: text("name"),
            about: text("about"),
            tensors: held.len(),
            missing: Vec::new(),
            unexpected: Vec::new(),
            mismatched: Vec::new(),
        };
        for (name, shape, _) in &model {
            match held.get(name.as_str()) {
                Some(held_shape) if *held_shape != shape => part.mismatched.push((
                    format!("{prefix}{name}"),
                    (*held_shape).clone(),
                    shape.clone(),
                )),
                Some(_) => {}
                None if optional.contains(&name.as_str()) => {}
                None => part.missing.push(format!("{prefix}{name}")),
            }
        }
        // In the file's order, as the other findings are listed.
        for (name, _) in names_shapes {
            let Some(bare) = name.strip_prefix(prefix.as_str()) else {
                continue;
            };
            if held.contains_key(bare) && !model_names.contains(bare) {
                part.unexpected.push(name.clone());
            }
        }
        out.push(part);
    }
    out
}
