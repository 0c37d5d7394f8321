//! The `cn-clip-resume` loader: Chinese-CLIP's fine-tune script with
//! `--resume` (training/main.py): drop `bert.pooler.*`, resize the position
//! grid to the model's (`resize_pos_embed`), and load into the DDP-wrapped
//! model, whose keys start with `module.`.

use super::Prepared;
use crate::arch::{self, ModelSpec};
use crate::state_dict::StateDict;

pub fn prepare(state_dict: &StateDict, model: &ModelSpec) -> Prepared {
    let mut prepared = Prepared::unchanged(state_dict, model);
    let mut state_dict = std::mem::take(&mut prepared.state_dict);
    let mut model_keys = std::mem::take(&mut prepared.model_keys);
    let mut batchnorm_modules = std::mem::take(&mut prepared.batchnorm_modules);
    let notes = &mut prepared.notes;
    // training/main.py --resume: drop bert.pooler, resize the position
    // grid, load into the DDP-wrapped model (keys gain "module.").
    let before = state_dict.entries.len();
    state_dict
        .entries
        .retain(|e| !e.key.contains("bert.pooler"));
    state_dict.metadata = None;
    if before != state_dict.entries.len() {
        notes.push(format!(
            "cn-clip-resume loader: dropped {} bert.pooler keys",
            before - state_dict.entries.len()
        ));
    }
    let model_positions = model
        .tensors
        .iter()
        .find(|t| t.name == "visual.positional_embedding")
        .map(|t| t.shape.clone());
    if let Some(model_shape) = model_positions {
        if let Some(entry) = state_dict
            .entries
            .iter_mut()
            .find(|e| e.key == "module.visual.positional_embedding")
        {
            let new_len = model_shape.first().copied().unwrap_or(0);
            if entry.shape.first().copied() != Some(new_len) && entry.shape.len() == 2 {
                let old_grid = arch::exact_sqrt(entry.shape[0].saturating_sub(1));
                notes.push(format!(
                    "cn-clip-resume loader: resize_pos_embed interpolates visual.positional_embedding from {} to {} positions (grid {}x{} -> {})",
                    entry.shape[0],
                    new_len,
                    old_grid.unwrap_or(0),
                    old_grid.unwrap_or(0),
                    arch::exact_sqrt(new_len.saturating_sub(1)).map_or(String::new(), |g| format!("{g}x{g}"))
                ));
                entry.shape = vec![new_len, entry.shape[1]];
            }
        }
    }
    model_keys = model_keys
        .into_iter()
        .map(|(k, s)| (format!("module.{k}"), s))
        .collect();
    batchnorm_modules = batchnorm_modules
        .into_iter()
        .map(|m| format!("module.{m}"))
        .collect();
    prepared.class_name = "DistributedDataParallel".to_string();
    prepared.state_dict = state_dict;
    prepared.model_keys = model_keys;
    prepared.batchnorm_modules = batchnorm_modules;
    prepared
}
