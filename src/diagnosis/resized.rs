//! Sizes people change on purpose, named as the ecosystem names them: a
//! classifier head built for another label count (`num_labels`, from
//! `id2label`), and a vocabulary resized after tokens were added
//! (`resize_token_embeddings`). Both show up as size mismatches that a
//! generic "config differs" line would explain as a different model, which
//! sends people to the wrong fix: the fix is one argument or one call.

use super::explain::{counts_text, Findings};
use super::Cause;
use crate::state_dict::{LoadResult, SizeMismatch};
use rustc_hash::FxHashSet as HashSet;
use serde_json::Value;

/// The model's label count and where it comes from, as transformers'
/// `PreTrainedConfig` decides it: the size of `id2label`, else
/// `num_labels`, else 2.
fn model_labels_source(config: &Value) -> String {
    if let Some(Value::Object(labels)) = config.get("id2label") {
        return format!("its config's `id2label` has {} entries", labels.len());
    }
    match config.get("num_labels").and_then(Value::as_u64) {
        Some(n) => format!("its config says `num_labels: {n}`"),
        None => "the default `num_labels` of 2: its config has no `id2label`".to_string(),
    }
}

/// A mismatch in the first dimension only (rows of a head or an embedding).
fn rows_differ(mismatch: &SizeMismatch) -> bool {
    mismatch.checkpoint_shape.len() == mismatch.model_shape.len()
        && mismatch.checkpoint_shape.first() != mismatch.model_shape.first()
        && mismatch.checkpoint_shape.get(1..) == mismatch.model_shape.get(1..)
}

/// A classifier head (a tensor whose shape `num_labels` decides) that
/// differs in its label count only.
pub(super) fn num_labels_cause(
    f: &Findings,
    counted: &LoadResult,
) -> Option<(Cause, HashSet<String>)> {
    let heads: Vec<&SizeMismatch> = counted
        .size_mismatches
        .iter()
        .filter(|m| {
            let bare = f.bare(&m.key);
            f.model
                .tensors
                .iter()
                .any(|t| t.name == bare && t.depends_on.contains(&"num_labels"))
                && rows_differ(m)
        })
        .collect();
    let first = heads.first()?;
    let checkpoint_labels = first.checkpoint_shape[0];
    let model_labels = first.model_shape[0];
    let keys: Vec<String> = heads.iter().map(|m| m.key.clone()).collect();
    let text = format!(
        "classifier head size (\"num_labels\"): the checkpoint's head has {checkpoint_labels} labels, the model's {model_labels} ({}) — {}: {}",
        model_labels_source(&f.model.config),
        counts_text(0, 0, heads.len()),
        keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    );
    let cause = Cause {
        cause: "num-labels".to_string(),
        field: "num_labels".to_string(),
        checkpoint: Value::from(checkpoint_labels),
        model: Value::from(model_labels),
        missing: 0,
        unexpected: 0,
        size_mismatches: heads.len(),
        text,
    };
    Some((cause, keys.into_iter().collect()))
}

/// Whether a vocabulary difference looks like a resize of the same
/// tokenizer (a few added tokens, padding to a multiple of 64) rather than
/// another tokenizer (bert-base-chinese's 21128 against bert-base-uncased's
/// 30522): within an eighth of the larger.
fn looks_resized(checkpoint: u64, model: u64) -> bool {
    let difference = checkpoint.abs_diff(model);
    difference > 0 && difference.saturating_mul(8) <= checkpoint.max(model)
}

/// A `vocab_size` cause whose only findings are rows of the embeddings and
/// head: renamed to what it is, a resized vocabulary, when no other field
/// differs in a way that changes shapes.
pub(super) fn vocab_resized(causes: &mut [Cause]) {
    let shape_fields = causes
        .iter()
        .filter(|c| c.cause == "config-field" && c.size_mismatches > 0)
        .count();
    if shape_fields != 1 {
        return;
    }
    let Some(cause) = causes.iter_mut().find(|c| {
        c.cause == "config-field"
            && (c.field == "vocab_size" || c.field.ends_with(".vocab_size"))
            && c.size_mismatches > 0
    }) else {
        return;
    };
    let (Some(checkpoint), Some(model)) = (cause.checkpoint.as_u64(), cause.model.as_u64()) else {
        return;
    };
    if !looks_resized(checkpoint, model) {
        return;
    }
    cause.cause = "vocab-resized".to_string();
    let how = if checkpoint > model {
        format!(
            "{} tokens were added (`tokenizer.add_tokens` + `model.resize_token_embeddings({checkpoint})`) before the checkpoint was saved",
            checkpoint - model
        )
    } else {
        "the model was resized (`resize_token_embeddings`) and the checkpoint was not".to_string()
    };
    cause.text = format!(
        "vocabulary resized (\"resize_token_embeddings\"): the checkpoint's embeddings have {checkpoint} rows, the config's `{}` is {model}: {how} — {}",
        cause.field,
        counts_text(cause.missing, cause.unexpected, cause.size_mismatches)
    );
}
