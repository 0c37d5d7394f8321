//! The explanation for a model known only by its tensors (a model dump or
//! a reference checkpoint): no config fields to name, so the findings are
//! read by structure. Whole blocks missing or extra (`blocks.{12..23}`), a
//! width that differs across a family of tensors ("384 vs 192 in 150
//! tensors"), a classifier head with another output count, and position
//! embeddings of another grid ("24×24 vs 14×14: resolution 384 vs 224 at
//! patch 16"). Each cause says which findings it accounts for; the rest are
//! left to the generic grouping.

use super::explain::{counts_text, Findings};
use super::{Cause, Remedy};
use crate::state_dict::{LoadResult, SizeMismatch};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A numbered part: `3`, or a name ending in `_3` (torchvision's
/// `encoder_layer_3`): its stem (`""`, `encoder_layer_`) and number.
fn numbered(part: &str) -> Option<(&str, u64)> {
    let digits = part.len() - part.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let (stem, number) = part.split_at(part.len() - digits);
    (stem.is_empty() || stem.ends_with('_')).then(|| Some((stem, number.parse().ok()?)))?
}

/// One container's blocks that one side lacks: extra depth when they come
/// after every block both have, else blocks dropped in the middle.
fn block_cause(
    container: &str,
    indices: &BTreeSet<u64>,
    present: &BTreeSet<u64>,
    keys: usize,
    missing_side: bool,
) -> Cause {
    let beyond = present
        .iter()
        .max()
        .is_none_or(|top| indices.iter().all(|i| i > top));
    let (who_has, who_lacks) = if missing_side {
        ("the model", "the checkpoint")
    } else {
        ("the checkpoint", "the model")
    };
    let counts = if missing_side {
        counts_text(keys, 0, 0)
    } else {
        counts_text(0, keys, 0)
    };
    let depth = beyond && !present.is_empty();
    let text = if depth {
        format!(
            "depth: {who_has} has {} more block(s) in `{}` than {who_lacks} (`{container}{}`; {who_lacks} stops at {}) — {counts}",
            indices.len(),
            container.trim_end_matches(['.', '_']),
            indices_text(indices),
            present.iter().max().copied().unwrap_or(0),
        )
    } else {
        format!(
            "block `{container}{}` is in {who_has} and not in {who_lacks} (its {keys} keys, while the blocks around it are in both) — {counts}",
            indices_text(indices),
        )
    };
    let mut c = Cause::new(
        if depth {
            "layer-count"
        } else {
            "missing-block"
        },
        container.trim_end_matches(['.', '_']),
        text,
    );
    if missing_side {
        c.missing = keys;
    } else {
        c.unexpected = keys;
    }
    let (fewer, more) = (present.len(), present.len() + indices.len());
    c.checkpoint = Value::from(if missing_side { fewer } else { more });
    c.model = Value::from(if missing_side { more } else { fewer });
    c
}

/// "{12..23}", "{3, 5}", "7".
fn indices_text(indices: &BTreeSet<u64>) -> String {
    let list: Vec<u64> = indices.iter().copied().collect();
    match list.as_slice() {
        [one] => one.to_string(),
        [first, .., last] if last - first + 1 == list.len() as u64 => {
            format!("{{{first}..{last}}}")
        }
        _ => format!(
            "{{{}}}",
            list.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Modules one side has whole and the other lacks whole, each at its
/// shallowest: a numbered block (`blocks.11`, `encoder_layer_11`) is
/// extra depth or a block dropped in the middle; a named module
/// (`mid_block`, `roi_heads.box_head`) is a part the other lacks. A module
/// the model's dump lists is never said to be missing from the model (a
/// key under a module without parameters is just unexpected).
fn block_causes(
    f: &Findings,
    counted: &LoadResult,
    attributed: &mut HashSet<String>,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let model_keys: Vec<String> = f
        .prepared
        .model_keys
        .iter()
        .map(|(k, _)| f.bare(k))
        .collect();
    let checkpoint_keys: Vec<String> = f
        .prepared
        .state_dict
        .entries
        .iter()
        .map(|e| f.bare(&e.key))
        .collect();
    let model_modules: HashSet<String> =
        f.prepared.module_names.iter().map(|m| f.bare(m)).collect();
    for (side_missing, keys_missing, keys_other, missing_side) in [
        (&counted.missing_keys, &model_keys, &checkpoint_keys, true),
        (
            &counted.unexpected_keys,
            &checkpoint_keys,
            &model_keys,
            false,
        ),
    ] {
        let findings: HashSet<String> = side_missing.iter().map(|k| f.bare(k)).collect();
        // Per module (every key's ancestors, counted once): how many of
        // this side's keys it holds, how many of them are findings, and
        // whether the other side has any key under it. Linear in the keys.
        let ancestors = |key: &str| -> Vec<String> {
            key.match_indices('.')
                .map(|(dot, _)| key[..dot].to_string())
                .collect()
        };
        let mut counts: HashMap<String, (usize, usize)> = HashMap::default();
        for key in keys_missing.iter() {
            let found = findings.contains(key) as usize;
            for module in ancestors(key) {
                let entry = counts.entry(module).or_default();
                entry.0 += 1;
                entry.1 += found;
            }
        }
        let on_other_side: HashSet<String> = keys_other.iter().flat_map(|k| ancestors(k)).collect();
        let whole = |module: &str| {
            (missing_side || !model_modules.contains(module))
                && counts.get(module).is_some_and(|(all, found)| all == found)
                && !on_other_side.contains(module)
        };
        // container (with the number's stem) -> numbers; named module -> keys.
        let mut blocks: BTreeMap<String, BTreeMap<u64, Vec<&String>>> = BTreeMap::new();
        let mut named: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for key in side_missing.iter() {
            let bare = f.bare(key);
            let parts: Vec<&str> = bare.split('.').collect();
            let Some(depth) = (1..parts.len()).find(|d| whole(&parts[..*d].join("."))) else {
                continue;
            };
            match numbered(parts[depth - 1]) {
                Some((stem, index)) => {
                    let mut container = parts[..depth - 1].join(".");
                    if !container.is_empty() {
                        container.push('.');
                    }
                    container.push_str(stem);
                    blocks
                        .entry(container)
                        .or_default()
                        .entry(index)
                        .or_default()
                        .push(key);
                }
                None => named.entry(parts[..depth].join(".")).or_default().push(key),
            }
        }
        for (container, by_index) in blocks {
            let present: BTreeSet<u64> = keys_other
                .iter()
                .filter_map(|k| k.strip_prefix(container.as_str()))
                .filter_map(|rest| rest.split('.').next()?.parse().ok())
                .collect();
            let indices: BTreeSet<u64> = by_index.keys().copied().collect();
            let keys: Vec<&String> = by_index.into_values().flatten().collect();
            causes.push(block_cause(
                &container,
                &indices,
                &present,
                keys.len(),
                missing_side,
            ));
            attributed.extend(keys.into_iter().cloned());
        }
        for (module, keys) in named {
            let (who_has, who_lacks) = if missing_side {
                ("the model", "the checkpoint")
            } else {
                ("the checkpoint", "the model")
            };
            let counts = if missing_side {
                counts_text(keys.len(), 0, 0)
            } else {
                counts_text(0, keys.len(), 0)
            };
            let mut c = Cause::new("missing-block",
                &module,
                format!(
                    "module `{module}` is in {who_has} and not in {who_lacks} (all its {} keys) — {counts}",
                    keys.len()
                ),
            );
            if missing_side {
                c.missing = keys.len();
            } else {
                c.unexpected = keys.len();
            }
            attributed.extend(keys.into_iter().cloned());
            causes.push(c);
        }
    }
    causes
}

/// The pairs of sizes where the checkpoint's shape differs from the model's.
fn differing(mismatch: &SizeMismatch) -> Vec<(u64, u64)> {
    if mismatch.checkpoint_shape.len() != mismatch.model_shape.len() {
        return Vec::new();
    }
    mismatch
        .checkpoint_shape
        .iter()
        .zip(&mismatch.model_shape)
        .filter(|(c, m)| c != m)
        .map(|(c, m)| (*c, *m))
        .collect()
}

fn square_root(n: u64) -> Option<u64> {
    let root = (n as f64).sqrt().round() as u64;
    (root.checked_mul(root) == Some(n) && root > 1).then_some(root)
}

/// Position embeddings of another grid: `[1, 1 + g², D]` (or `[g², D]`).
fn resolution_cause(f: &Findings, mismatches: &[&SizeMismatch]) -> Option<(Cause, Vec<String>)> {
    for mismatch in mismatches {
        let bare = f.bare(&mismatch.key);
        if !(bare.contains("pos") || bare.contains("position")) {
            continue;
        }
        let tokens = |shape: &[u64]| shape.iter().rev().nth(1).copied();
        let (Some(c), Some(m)) = (
            tokens(&mismatch.checkpoint_shape),
            tokens(&mismatch.model_shape),
        ) else {
            continue;
        };
        let grid = |n: u64| {
            n.checked_sub(1)
                .and_then(square_root)
                .map(|g| (g, 1))
                .or_else(|| square_root(n).map(|g| (g, 0)))
        };
        let (Some((gc, _)), Some((gm, _))) = (grid(c), grid(m)) else {
            continue;
        };
        if gc == gm {
            // The same grid: the embedding differs in width, not resolution.
            continue;
        }
        // The patch size from the patch embedding's kernel, when there is one.
        let patch = f.model.tensors.iter().find_map(|t| {
            let is_patch = t.name.contains("patch_embed")
                || t.name.contains("conv_proj")
                || t.name.contains("patch_embedding");
            (is_patch && t.shape.len() == 4 && t.shape[2] == t.shape[3]).then(|| t.shape[2])
        });
        let resolution = match patch {
            Some(p) => format!(": resolution {} vs {} at patch {p}", gc * p, gm * p),
            None => String::new(),
        };
        let mut c = Cause::new("resolution",
            if patch.is_some() { "image size" } else { "grid" },
            format!(
                "position embeddings: a {gc}×{gc} grid in the checkpoint, {gm}×{gm} in the model{resolution} (`{}`)",
                mismatch.key
            ),
        );
        c.checkpoint = Value::from(patch.map_or(gc, |p| gc * p));
        c.model = Value::from(patch.map_or(gm, |p| gm * p));
        c.size_mismatches = 1;
        return Some((c, vec![mismatch.key.clone()]));
    }
    None
}

/// The classifier head: the model's last module with parameters (with its
/// siblings, as in a detector's `box_predictor.{cls_score, bbox_pred}`),
/// differing in output count (dim 0) only. The class count is the smallest
/// output count among them (`bbox_pred` has four per class).
fn head_cause(f: &Findings, mismatches: &[&SizeMismatch]) -> Option<(Cause, Vec<String>)> {
    let last = f.model.tensors.last()?;
    let module = last.name.rsplit_once('.').map(|(m, _)| m)?;
    let parent = module.rsplit_once('.').map(|(p, _)| p);
    let module_of = |key: &str| f.bare(key).rsplit_once('.').map(|(m, _)| m.to_string());
    let in_head: Vec<&&SizeMismatch> = mismatches
        .iter()
        .filter(|m| {
            module_of(&m.key).is_some_and(|m| {
                m == module
                    || parent.is_some_and(|p| m.rsplit_once('.').is_some_and(|(mp, _)| mp == p))
            })
        })
        .collect();
    if in_head.is_empty()
        || !in_head
            .iter()
            .any(|m| module_of(&m.key).as_deref() == Some(module))
    {
        return None;
    }
    let only_rows = in_head.iter().all(|m| {
        m.checkpoint_shape.len() == m.model_shape.len()
            && m.checkpoint_shape.get(1..) == m.model_shape.get(1..)
    });
    if !only_rows {
        return None;
    }
    let c = in_head
        .iter()
        .filter_map(|m| m.checkpoint_shape.first())
        .min()
        .copied()?;
    let m = in_head
        .iter()
        .filter_map(|m| m.model_shape.first())
        .min()
        .copied()?;
    let several = in_head
        .iter()
        .filter_map(|m| module_of(&m.key))
        .collect::<BTreeSet<_>>()
        .len()
        > 1;
    let head = if several {
        parent.unwrap_or(module)
    } else {
        module
    };
    let keys: Vec<String> = in_head.iter().map(|m| m.key.clone()).collect();
    let mut cause = Cause::new("head-size",
        "classes",
        format!(
            "classifier head `{head}`: {c} outputs in the checkpoint, {m} in the model (another number of classes) — {}",
            counts_text(0, 0, keys.len())
        ),
    );
    cause.checkpoint = Value::from(c);
    cause.model = Value::from(m);
    cause.size_mismatches = keys.len();
    Some((cause, keys))
}

/// `a / b` in lowest terms.
fn ratio(a: u64, b: u64) -> (u64, u64) {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let divisor = gcd(a, b).max(1);
    (a / divisor, b / divisor)
}

/// Sizes that differ in the same proportion across many tensors: one width
/// (a ViT-S against a ViT-Ti differs by 2× in its width, its qkv and its
/// MLP alike), a cause per proportion.
/// A mismatched tensor and its first differing pair of sizes.
type Differing<'a> = (&'a SizeMismatch, (u64, u64));

fn width_causes(mismatches: &[&SizeMismatch], attributed: &mut HashSet<String>) -> Vec<Cause> {
    let mut by_ratio: BTreeMap<(u64, u64), Vec<Differing>> = BTreeMap::new();
    for mismatch in mismatches {
        if let Some(&(c, m)) = differing(mismatch).first() {
            by_ratio
                .entry(ratio(c, m))
                .or_default()
                .push((mismatch, (c, m)));
        }
    }
    let mut groups: Vec<Vec<Differing>> = by_ratio.into_values().collect();
    groups.sort_by_key(|tensors| std::cmp::Reverse(tensors.len()));
    groups
        .into_iter()
        .map(|tensors| {
            // The pair most tensors show is the headline; the rest are its
            // multiples (qkv, MLP).
            let mut pairs: BTreeMap<(u64, u64), usize> = BTreeMap::new();
            for (_, pair) in &tensors {
                *pairs.entry(*pair).or_default() += 1;
            }
            let mut pairs: Vec<((u64, u64), usize)> = pairs.into_iter().collect();
            pairs.sort_by_key(|(pair, count)| (std::cmp::Reverse(*count), *pair));
            let (c, m) = pairs[0].0;
            let others: Vec<String> = pairs[1..]
                .iter()
                .map(|((c, m), _)| format!("{c} vs {m}"))
                .collect();
            let mut cause = Cause::new("width",
                "width",
                format!(
                    "width {c} in the checkpoint where the model has {m}{}, in {} tensor(s) (e.g. `{}`): a {} variant of the model — {}",
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!(" (and in proportion {})", others.join(", "))
                    },
                    tensors.len(),
                    tensors[0].0.key,
                    if c > m { "wider" } else { "narrower" },
                    counts_text(0, 0, tensors.len())
                ),
            );
            cause.checkpoint = Value::from(c);
            cause.model = Value::from(m);
            cause.size_mismatches = tensors.len();
            attributed.extend(tensors.iter().map(|(t, _)| t.key.clone()));
            cause
        })
        .collect()
}

/// Causes read off the structure of a model known only by its tensors.
pub(super) fn structure_causes(
    f: &Findings,
    counted: &LoadResult,
) -> (Vec<Cause>, HashSet<String>) {
    let mut attributed = HashSet::default();
    let mut causes = block_causes(f, counted, &mut attributed);
    let mut mismatches: Vec<&SizeMismatch> = counted.size_mismatches.iter().collect();
    for found in [resolution_cause(f, &mismatches), head_cause(f, &mismatches)]
        .into_iter()
        .flatten()
    {
        let (cause, keys) = found;
        mismatches.retain(|m| !keys.contains(&m.key));
        attributed.extend(keys);
        causes.push(cause);
    }
    causes.extend(width_causes(&mismatches, &mut attributed));
    (causes, attributed)
}

/// The remedies for structural causes, for `fix`.
pub(super) fn structure_remedies(causes: &[Cause]) -> (Vec<String>, Vec<Remedy>) {
    let mut summaries = Vec::new();
    let mut remedies = Vec::new();
    for c in causes {
        match c.cause.as_str() {
            "head-size" => {
                summaries.push(format!(
                    "build the model with {} classes to keep the checkpoint's head, or drop the head to train a new one",
                    c.checkpoint
                ));
                let head = c.text.split('`').nth(1).unwrap_or("head");
                remedies.push(Remedy {
                    label: "Python: load all but the head".to_string(),
                    text: format!(
                        "sd = {{k: v for k, v in sd.items() if not k.startswith(\"{head}.\")}}\nmissing, unexpected = model.load_state_dict(sd, strict=False)  # missing: the new head"
                    ),
                });
            }
            "resolution" => {
                summaries.push(if c.field == "grid" {
                    format!(
                        "build the model for the checkpoint's {0}×{0} grid of positions, or resample its position embeddings",
                        c.checkpoint
                    )
                } else {
                    format!(
                        "build the model at the checkpoint's resolution ({}), or resample its position embeddings",
                        c.checkpoint
                    )
                });
                remedies.push(Remedy {
                    label: "Python (timm): resample the position embeddings".to_string(),
                    text: "from timm.layers import resample_abs_pos_embed\nsd[\"pos_embed\"] = resample_abs_pos_embed(sd[\"pos_embed\"], new_size=model.patch_embed.grid_size)".to_string(),
                });
            }
            "width" => summaries.push(format!(
                "the checkpoint is a variant with width {} where the model has {}: build the model the checkpoint was saved from",
                c.checkpoint, c.model
            )),
            "layer-count" => summaries.push(format!(
                "build the model with the checkpoint's depth ({} blocks in `{}`)",
                c.checkpoint, c.field
            )),
            "missing-block" if c.missing > 0 => summaries.push(
                "a block is missing from the checkpoint: it was saved from a different model, or cut short".to_string(),
            ),
            "missing-block" => summaries.push(
                "the checkpoint has a block the model lacks: it was saved from a different model".to_string(),
            ),
            _ => {}
        }
    }
    summaries.dedup();
    (summaries, remedies)
}
