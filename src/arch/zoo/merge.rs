//! transformers' weight converters as they change keys and shapes (a
//! class's conversion mapping in the zoo data: Mixtral's and Qwen2-MoE's
//! per-expert weights merged into one tensor), on any list of named,
//! shaped entries: the `hf` loader's state dict, and inference's names.

use crate::arch::WeightMerge;

/// A named, shaped entry the merge can rebuild under a new key.
pub trait Entry: Sized {
    fn key(&self) -> &str;
    fn shape(&self) -> &[u64];
    /// This entry's kind (dtype ...) under another key and shape.
    fn remade(&self, key: String, shape: Vec<u64>) -> Self;
}

impl Entry for (String, Vec<u64>) {
    fn key(&self) -> &str {
        &self.0
    }
    fn shape(&self) -> &[u64] {
        &self.1
    }
    fn remade(&self, key: String, shape: Vec<u64>) -> Self {
        (key, shape)
    }
}

/// Where a converter source (`.experts.*.w1.weight`, `*` an expert index)
/// matches in `key`: `(start, end, index)` of the first match.
pub fn match_source(source: &str, key: &str) -> Option<(usize, usize, u64)> {
    let (before, after) = source.split_once('*')?;
    let mut from = 0;
    while let Some(found) = key.get(from..)?.find(before) {
        let start = from + found;
        let digits_at = start + before.len();
        let digits = key[digits_at..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits > 0 && key[digits_at + digits..].starts_with(after) {
            let index = key[digits_at..digits_at + digits].parse().ok()?;
            return Some((start, digits_at + digits + after.len(), index));
        }
        from = start + 1;
    }
    None
}

/// transformers' weight converters as they change keys and shapes: the
/// per-expert tensors of each source become one stacked tensor under the
/// target key, the sources joined along the concatenation dim. Returns
/// how many keys were merged into how many.
pub fn merge_weights<E: Entry>(
    entries: &mut Vec<E>,
    merges: &[WeightMerge],
    settle: &dyn Fn(&str) -> String,
) -> (usize, usize) {
    let (mut merged_from, mut merged_into) = (0, 0);
    for merge in merges {
        // target key -> per source: (expert index, entry position).
        type Members = Vec<Vec<(u64, usize)>>;
        let mut groups: Vec<(String, Members)> = Vec::new();
        for (position, entry) in entries.iter().enumerate() {
            for (source_index, source) in merge.sources.iter().enumerate() {
                let Some((start, end, index)) = match_source(source, entry.key()) else {
                    continue;
                };
                let target = format!(
                    "{}{}{}",
                    &entry.key()[..start],
                    merge.target,
                    &entry.key()[end..]
                );
                let group = match groups.iter().position(|(key, _)| *key == target) {
                    Some(found) => found,
                    None => {
                        groups.push((target, vec![Vec::new(); merge.sources.len()]));
                        groups.len() - 1
                    }
                };
                groups[group].1[source_index].push((index, position));
                break;
            }
        }
        let mut remove = Vec::new();
        let mut added = Vec::new();
        for (target, sources) in groups {
            // Each source stacked: [experts, ...shape]; all must be alike.
            let mut stacked: Vec<Vec<u64>> = Vec::new();
            for members in &sources {
                let Some(&(_, first)) = members.first() else {
                    continue;
                };
                let shape = &entries[first].shape();
                if members.iter().any(|(_, p)| entries[*p].shape() != *shape) {
                    stacked.clear();
                    break;
                }
                let mut with_experts = vec![members.len() as u64];
                with_experts.extend_from_slice(shape);
                stacked.push(with_experts);
            }
            let Some(mut shape) = stacked.first().cloned() else {
                continue;
            };
            if let Some(dim) = merge.concatenate {
                let joinable = stacked.iter().all(|s| {
                    s.len() == shape.len()
                        && s.iter()
                            .zip(&shape)
                            .enumerate()
                            .all(|(d, (a, b))| d == dim || a == b)
                });
                if !joinable || dim >= shape.len() {
                    continue;
                }
                shape[dim] = stacked.iter().map(|s| s[dim]).sum();
            }
            let first = sources.iter().flatten().map(|(_, p)| *p).min().unwrap_or(0);

            for (_, position) in sources.iter().flatten() {
                remove.push(*position);
                merged_from += 1;
            }
            merged_into += 1;
            added.push((first, entries[first].remade(settle(&target), shape)));
        }
        if added.is_empty() {
            continue;
        }
        // The merged tensor takes the place of its first source.
        let mut replacement: Vec<Option<E>> =
            std::mem::take(entries).into_iter().map(Some).collect();
        for position in &remove {
            replacement[*position] = None;
        }
        for (position, entry) in added {
            replacement[position] = Some(entry);
        }
        *entries = replacement.into_iter().flatten().collect();
    }
    (merged_from, merged_into)
}
