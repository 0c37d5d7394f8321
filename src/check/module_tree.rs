//! PyTorch's `load_state_dict(strict=True)`, exactly: the traversal mirrors
//! torch/nn/modules/module.py `_load_from_state_dict` (modules in
//! pre-order; per module its parameters then persistent buffers; a key is
//! unexpected at the deepest module its prefix reaches), BatchNorm's
//! `num_batches_tracked` filled for old state dicts, and the RuntimeError
//! text verbatim.

use crate::state_dict::{LoadResult, SizeMismatch, StateDict, StateEntry};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

#[derive(Default)]
struct ModuleNode {
    local: Vec<String>,
    children: Vec<String>,
}

/// `keys` are the model's state-dict keys (prefixed for wrappers);
/// `batchnorm_modules` likewise.
pub fn load_state_dict(
    state_dict: &StateDict,
    keys: &[(String, Vec<u64>)],
    batchnorm_modules: &[String],
) -> LoadResult {
    load_state_dict_in_tree(state_dict, keys, batchnorm_modules, &[])
}

/// `load_state_dict` with the model's module tree given: `module_names` in
/// `named_modules(remove_duplicate=False)` order (a model dump has it).
/// Modules without parameters (`act`, `mlp.1`) then take the keys that
/// reach them, as in PyTorch; without the list the tree is rebuilt from
/// the keys and such modules are not known.
pub fn load_state_dict_in_tree(
    state_dict: &StateDict,
    keys: &[(String, Vec<u64>)],
    batchnorm_modules: &[String],
    module_names: &[String],
) -> LoadResult {
    // Module tree: the given modules first, in their order, then any the
    // model's keys name, children in first-appearance order.
    let mut modules: HashMap<String, ModuleNode> = HashMap::default();
    let mut order: Vec<String> = vec![String::new()];
    modules.insert(String::new(), ModuleNode::default());
    for name in module_names.iter().filter(|n| !n.is_empty()) {
        if modules.contains_key(name) {
            continue;
        }
        let (parent, part) = name.rsplit_once('.').unwrap_or(("", name.as_str()));
        let Some(node) = modules.get_mut(parent) else {
            // A module listed before its parent: not a named_modules order.
            continue;
        };
        node.children.push(part.to_string());
        modules.insert(name.clone(), ModuleNode::default());
        order.push(name.clone());
    }
    for (key, _) in keys {
        let (module, local) = key.rsplit_once('.').unwrap_or(("", key.as_str()));
        // Each ancestor is a prefix of the key itself: looked up in place,
        // copied only when it is new.
        let mut parent_end = 0;
        if !module.is_empty() {
            let mut start = 0;
            for part in module.split('.') {
                let end = start + part.len();
                let child = &module[..end];
                if !modules.contains_key(child) {
                    if let Some(node) = modules.get_mut(&module[..parent_end]) {
                        node.children.push(part.to_string());
                    }
                    modules.insert(child.to_string(), ModuleNode::default());
                    order.push(child.to_string());
                }
                parent_end = end;
                start = end + 1;
            }
        }
        if let Some(node) = modules.get_mut(module) {
            node.local.push(local.to_string());
        }
    }
    // Pre-order index: a parent's own keys come before its children's, and
    // children in registration order, which is how first appearance in
    // state_dict() orders them.
    let mut preorder: HashMap<String, usize> = HashMap::default();
    let mut stack = vec![String::new()];
    while let Some(module) = stack.pop() {
        preorder.insert(module.clone(), preorder.len());
        if let Some(node) = modules.get(&module) {
            for child in node.children.iter().rev() {
                stack.push(if module.is_empty() {
                    child.clone()
                } else {
                    format!("{module}.{child}")
                });
            }
        }
    }

    let present: HashMap<&str, &StateEntry> = state_dict
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e))
        .collect();
    // BatchNorm of version < 2 (or without metadata) fills num_batches_tracked.
    let mut filled = Vec::new();
    for module in batchnorm_modules {
        let version = state_dict
            .metadata
            .as_ref()
            .and_then(|m| m.get(module).cloned().flatten());
        let key = format!("{module}.num_batches_tracked");
        if version.is_none_or(|v| v < 2) && !present.contains_key(key.as_str()) {
            filled.push(key);
        }
    }
    let filled_set: HashSet<&str> = filled.iter().map(String::as_str).collect();

    let mut missing_keys = Vec::new();
    let mut size_mismatches = Vec::new();
    for (key, model_shape) in keys {
        match present.get(key.as_str()) {
            None => {
                if !filled_set.contains(key.as_str()) {
                    missing_keys.push(key.clone());
                }
            }
            Some(entry) => {
                // A 1-element 1-d tensor loads into a 0-d parameter.
                let scalar_compat = model_shape.is_empty() && entry.shape == [1];
                if entry.shape != *model_shape && !scalar_compat {
                    size_mismatches.push(SizeMismatch {
                        key: key.clone(),
                        checkpoint_shape: entry.shape.clone(),
                        model_shape: model_shape.clone(),
                    });
                }
            }
        }
    }

    let mut flagged: Vec<(usize, usize, String)> = Vec::new();
    for (index, entry) in state_dict.entries.iter().enumerate() {
        // The module walked so far is the key's first `module_end` bytes.
        let key = entry.key.as_str();
        let mut module_end = 0;
        let mut rest = key;
        loop {
            let module = &key[..module_end];
            let node = &modules[module];
            match rest.split_once('.') {
                Some((first, tail)) => {
                    if node.children.iter().any(|c| c == first) {
                        module_end = if module_end == 0 {
                            first.len()
                        } else {
                            module_end + 1 + first.len()
                        };
                        rest = tail;
                        continue;
                    }
                    flagged.push((preorder[module], index, entry.key.clone()));
                }
                None => {
                    if !node.local.iter().any(|l| l == rest) {
                        flagged.push((preorder[module], index, entry.key.clone()));
                    }
                }
            }
            break;
        }
    }
    flagged.sort();
    LoadResult {
        missing_keys,
        unexpected_keys: flagged.into_iter().map(|(_, _, k)| k).collect(),
        size_mismatches,
        filled,
    }
}

/// `torch.Size([1024, 768])`.
pub fn torch_size(shape: &[u64]) -> String {
    format!(
        "torch.Size([{}])",
        shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// PyTorch's RuntimeError text for a strict load, or `None` if it loads.
pub fn pytorch_error_text(class_name: &str, result: &LoadResult) -> Option<String> {
    let mut messages = Vec::new();
    let quote = |keys: &[String]| {
        keys.iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !result.missing_keys.is_empty() {
        messages.push(format!(
            "Missing key(s) in state_dict: {}. ",
            quote(&result.missing_keys)
        ));
    }
    if !result.unexpected_keys.is_empty() {
        messages.push(format!(
            "Unexpected key(s) in state_dict: {}. ",
            quote(&result.unexpected_keys)
        ));
    }
    for mismatch in &result.size_mismatches {
        messages.push(format!(
            "size mismatch for {}: copying a param with shape {} from checkpoint, the shape in current model is {}.",
            mismatch.key,
            torch_size(&mismatch.checkpoint_shape),
            torch_size(&mismatch.model_shape)
        ));
    }
    if messages.is_empty() {
        return None;
    }
    Some(format!(
        "Error(s) in loading state_dict for {class_name}:\n\t{}",
        messages.join("\n\t")
    ))
}
