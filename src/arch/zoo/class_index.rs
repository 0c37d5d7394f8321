//! The index inference looks classes up in: every described class by the
//! keys its description has (`#` for layer indices), all of them and those
//! it has with its flags at their defaults, so a checkpoint's keys vote for
//! the classes that have them.

use super::infer::walk;
use super::{child, entries, model_types, resolved};
use rustc_hash::FxHashMap as HashMap;
use serde_json::Value;
use std::sync::OnceLock;

/// One described class, by position in the index.
pub(super) struct IndexedClass {
    pub model_type: &'static str,
    pub class: &'static str,
    pub desc: &'static Value,
    pub patterns: usize,
}

pub(super) struct Index {
    pub classes: Vec<IndexedClass>,
    /// Key with `#` for layer indices -> the classes that have it.
    pub by_pattern: HashMap<String, Vec<u32>>,
    /// The same, for the keys a class has with its flags at their defaults.
    pub by_default_pattern: HashMap<String, Vec<u32>>,
}

pub(super) fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut classes = Vec::new();
        let mut by_pattern: HashMap<String, Vec<u32>> = HashMap::default();
        let mut by_default_pattern: HashMap<String, Vec<u32>> = HashMap::default();
        for entry in model_types() {
            for (class, desc) in &entry.classes {
                let id = classes.len() as u32;
                let mut patterns = Vec::new();
                walk(&desc["tree"], "", &mut |key, _| patterns.push(key));
                patterns.sort();
                patterns.dedup();
                let defaults = default_patterns(desc);
                classes.push(IndexedClass {
                    model_type: entry.name,
                    class,
                    desc,
                    patterns: defaults.len(),
                });
                for pattern in patterns {
                    by_pattern.entry(pattern).or_default().push(id);
                }
                for pattern in defaults {
                    by_default_pattern.entry(pattern).or_default().push(id);
                }
            }
        }
        Index {
            classes,
            by_pattern,
            by_default_pattern,
        }
    })
}

/// The distinct keys (`#` for layer indices) the class has with its flags
/// at their defaults: the tie-break "fewest keys the class adds" must not
/// count the biases a flag adds only when set (Qwen3-MoE's `attention_bias`
/// would otherwise lose to a class with one more key), and a class that
/// explains a checkpoint with its flags as they are wins over one that
/// needs one flipped (mT5's gated MLP is T5's `is_gated_act`).
fn default_patterns(desc: &'static Value) -> Vec<String> {
    fn holds(desc: &Value, node: &Value, name: &str) -> bool {
        node.get("if")
            .and_then(|conditions| conditions.get(name))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|condition| {
                let field = condition[0].as_str().unwrap_or("");
                let default = desc["fields"][field]["default"].as_bool().unwrap_or(false);
                condition[1].as_bool() == Some(default)
            })
    }
    fn visit(
        desc: &Value,
        node: &'static Value,
        prefix: &str,
        out: &mut Vec<String>,
        depth: usize,
    ) {
        let Some(node) = resolved(node).filter(|_| depth <= 64) else {
            return;
        };
        for tensor in entries(node, "t") {
            let name = tensor[0].as_str().unwrap_or("");
            if holds(desc, node, name) {
                out.push(format!("{prefix}{name}"));
            }
        }
        let nested = format!("{prefix}#.");
        for item in entries(node, "items").chain(entries(node, "last")) {
            visit(desc, item, &nested, out, depth + 1);
        }
        for (_, body) in entries(node, "kinds").map(child) {
            visit(desc, body, &nested, out, depth + 1);
        }
        for body in ["body", "rest"]
            .into_iter()
            .filter_map(|kind| node.get(kind))
        {
            visit(desc, body, &nested, out, depth + 1);
        }
        for entry in entries(node, "c") {
            let (name, subtree) = child(entry);
            if holds(desc, node, name) {
                visit(desc, subtree, &format!("{prefix}{name}."), out, depth + 1);
            }
        }
    }
    let mut patterns = Vec::new();
    visit(desc, &desc["tree"], "", &mut patterns, 0);
    // Keys that exist only while two sizes differ (ELECTRA's
    // `embeddings_project`, absent where `embedding_size` is the hidden
    // size, as in electra-base) are not keys the class always adds.
    let optional: Vec<&str> = entries(desc, "keys_if_distinct")
        .flat_map(|rule| rule[2].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    patterns.retain(|pattern| !optional.contains(&pattern.as_str()));
    patterns.sort();
    patterns.dedup();
    patterns
}
