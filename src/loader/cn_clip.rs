//! The `cn-clip` loader: what `cn_clip.clip.utils.create_model` does with a
//! checkpoint. If the first key starts with `module`, cut 7 characters off
//! every key and drop `bert.pooler.*`; the result is a plain dict (so
//! BatchNorm fills `num_batches_tracked`).

use super::Prepared;
use crate::arch::ModelSpec;
use crate::state_dict::StateDict;

pub fn prepare(state_dict: &StateDict, model: &ModelSpec) -> Prepared {
    let mut prepared = Prepared::unchanged(state_dict, model);
    let mut state_dict = std::mem::take(&mut prepared.state_dict);
    let notes = &mut prepared.notes;
    // cn_clip.clip.utils.create_model: only when the FIRST key starts
    // with "module", cut 7 characters off every key and drop
    // bert.pooler; the result is a plain dict.
    if state_dict
        .entries
        .first()
        .is_some_and(|e| e.key.starts_with("module"))
    {
        let before = state_dict.entries.len();
        state_dict.entries = state_dict
            .entries
            .into_iter()
            .filter(|e| !e.key.contains("bert.pooler"))
            .map(|mut e| {
                e.key = e.key.chars().skip(7).collect();
                e
            })
            .collect();
        state_dict.metadata = None;
        notes.push(
            "cn-clip loader: stripped the 7-character `module.` prefix from every key".to_string(),
        );
        if before != state_dict.entries.len() {
            notes.push(format!(
                "cn-clip loader: dropped {} bert.pooler keys",
                before - state_dict.entries.len()
            ));
        }
    } else {
        notes.push("cn-clip loader: the first key does not start with `module`, so create_model passes the state dict through unchanged".to_string());
    }
    prepared.state_dict = state_dict;
    prepared
}
