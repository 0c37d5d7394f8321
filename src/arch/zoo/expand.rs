//! A description's tree expanded for one config: its tensors in
//! `state_dict()` order, each shape a formula over the config's fields,
//! alike layers repeated as the config's counts say, conditional entries
//! where their flags hold, and swapped sub-models (swaps.rs) grafted in
//! place of the composite's default subtree.

use super::{
    child, entries, field_name, layer_kinds, resolved, swaps, Fields, MAX_TENSORS, MAX_TREE_DEPTH,
};
use crate::arch::{ExpectedTensor, ModuleKind};
use crate::error::{err, ErrorKind, Result};
use serde_json::Value;

pub(super) struct Expansion<'a, 'b> {
    pub fields: &'a mut Fields<'b>,
    /// A formula's value is the same in every layer: each is evaluated once.
    pub values: rustc_hash::FxHashMap<&'static str, (u64, Vec<&'static str>)>,
    /// Likewise each layer count (below zero it is 0, where a size is refused).
    pub counts: rustc_hash::FxHashMap<&'static str, (u64, Vec<&'static str>)>,
    pub tensors: Vec<ExpectedTensor>,
    /// Fields that decide whether the current subtree exists.
    pub exists_if: Vec<&'static str>,
    /// Fields that decide the current subtree's shapes besides its
    /// formulas' own (a list of layer indexes choosing a layer's kind).
    pub shaped_by: Vec<&'static str>,
    /// Modules whose kind the data marks (`"k"`): `Conv1D` and `Embedding`
    /// for a PEFT adapter's shapes, BatchNorm for `num_batches_tracked`.
    pub module_kinds: Vec<(String, ModuleKind)>,
    pub batchnorm_modules: Vec<String>,
    /// Sub-models built in the place of the composite's defaults.
    pub grafts: &'a [swaps::Graft],
    /// The class, named in errors.
    pub class: &'a str,
}

impl Expansion<'_, '_> {
    fn evaluate(&mut self, text: &'static str) -> Result<(u64, Vec<&'static str>)> {
        if let Some(known) = self.values.get(text) {
            return Ok(known.clone());
        }
        let evaluated = self.evaluate_once(text)?;
        self.values.insert(text, evaluated.clone());
        Ok(evaluated)
    }

    fn evaluate_count(&mut self, text: &'static str) -> Result<(u64, Vec<&'static str>)> {
        if let Some(known) = self.counts.get(text) {
            return Ok(known.clone());
        }
        let evaluated = self.fields.evaluate_count(text)?;
        self.counts.insert(text, evaluated.clone());
        Ok(evaluated)
    }

    fn evaluate_once(&mut self, text: &'static str) -> Result<(u64, Vec<&'static str>)> {
        self.fields.evaluate(text)
    }

    /// Whether an entry's conditions hold (`"if": {"bias": [["mlp_bias", true]]}`).
    fn holds(&mut self, node: &'static Value, name: &str) -> Result<Option<Vec<&'static str>>> {
        let Some(conditions) = node
            .get("if")
            .and_then(|c| c.get(name))
            .and_then(Value::as_array)
        else {
            return Ok(Some(Vec::new()));
        };
        let mut fields = Vec::new();
        for condition in conditions {
            let field = field_name(self.fields.desc, condition[0].as_str().unwrap_or(""));
            let wanted = condition[1].as_bool().unwrap_or(true);
            if field.is_empty() || self.fields.flag(field)? != wanted {
                return Ok(None);
            }
            fields.push(field);
        }
        Ok(Some(fields))
    }

    /// A swapped sub-model's tensors and module facts, under its path.
    fn graft(&mut self, graft: &swaps::Graft) -> Result<()> {
        if (self.tensors.len() + graft.model.tensors.len()) as u64 > MAX_TENSORS {
            return Err(err(
                ErrorKind::LimitExceeded,
                format!("the config describes more than {MAX_TENSORS} tensors"),
            ));
        }
        for tensor in &graft.model.tensors {
            let mut grafted = swaps::grafted_tensor(graft, tensor, self.fields.desc);
            grafted
                .exists_if
                .splice(0..0, self.exists_if.iter().copied());
            self.tensors.push(grafted);
        }
        let under = |module: &str| match module {
            "" => graft.prefix.trim_end_matches('.').to_string(),
            module => format!("{}{module}", graft.prefix),
        };
        for (module, kind) in &graft.model.module_kinds {
            self.module_kinds.push((under(module), *kind));
        }
        for module in &graft.model.batchnorm_modules {
            self.batchnorm_modules.push(under(module));
        }
        Ok(())
    }

    pub(super) fn node(&mut self, node: &'static Value, prefix: &str, depth: usize) -> Result<()> {
        if depth > MAX_TREE_DEPTH {
            return Err(err(ErrorKind::BadConfig, "zoo data nests too deep"));
        }
        let node = resolved(node).ok_or_else(|| {
            err(
                ErrorKind::BadConfig,
                "zoo data: a subtree reference to nothing",
            )
        })?;
        if let Some(graft) = self.grafts.iter().find(|graft| graft.prefix == prefix) {
            return self.graft(graft);
        }
        let module = prefix.strip_suffix('.').unwrap_or(prefix);
        match node.get("k").and_then(Value::as_str) {
            Some("Conv1D") => self
                .module_kinds
                .push((module.to_string(), ModuleKind::Conv1D)),
            Some("Embedding") => self
                .module_kinds
                .push((module.to_string(), ModuleKind::Embedding)),
            Some("BatchNorm") => self.batchnorm_modules.push(module.to_string()),
            _ => {}
        }
        for tensor in entries(node, "t") {
            let name = tensor[0].as_str().unwrap_or("");
            let Some(conditions) = self.holds(node, name)? else {
                continue;
            };
            let mut shape = Vec::new();
            let mut depends_on = Vec::new();
            for dim in tensor[1].as_array().into_iter().flatten() {
                let (value, fields) = self.evaluate(dim.as_str().unwrap_or(""))?;
                shape.push(value);
                for field in fields.into_iter().chain(self.shaped_by.iter().copied()) {
                    if !depends_on.contains(&field) {
                        depends_on.push(field);
                    }
                }
            }
            let torch_dtype = tensor.get(2).and_then(Value::as_str).unwrap_or("float32");
            let dtype = crate::format::pytorch::torch_dtype(torch_dtype).unwrap_or("F32");
            if self.tensors.len() as u64 >= MAX_TENSORS {
                return Err(err(
                    ErrorKind::LimitExceeded,
                    format!("the config describes more than {MAX_TENSORS} tensors"),
                ));
            }
            let mut exists_if = self.exists_if.clone();
            exists_if.extend(conditions);
            self.tensors.push(ExpectedTensor {
                name: format!("{prefix}{name}"),
                shape,
                dtype: dtype.to_string(),
                depends_on,
                exists_if,
            });
        }
        // A ModuleList: its first layers when they differ (T5's first block
        // holds the relative attention bias), then the alike rest, then a
        // last layer when it differs (SD3's last joint block has no context
        // output). The alike rest may be of two kinds, split at an index a
        // config field gives (DeepSeek-V3's first `first_k_dense_replace`
        // layers are dense, the rest have experts); an index past the last
        // layer leaves them all of the first kind, as in transformers.
        let items = node.get("items").and_then(Value::as_array);
        let first = items.map_or(0, Vec::len) as u64;
        for (index, item) in items.into_iter().flatten().enumerate() {
            self.node(item, &format!("{prefix}{index}."), depth + 1)?;
        }
        // Layers whose kind a list of names chooses (layer_kinds.rs): each
        // is of its kind because of the list. A list of layer indexes
        // (SAM's `global_attn_indexes`) picks shapes, not keys: a layer
        // past the first exists because of the count, and its shapes
        // follow the list too, so a diagnosis names the list for a shape
        // and the count for a layer too many.
        if let Some(paths) = node.get("by").and_then(Value::as_array) {
            let names = layer_kinds::kinds_of_layers(self.fields, paths, self.class)?;
            let chooser: Vec<&'static str> = paths.iter().filter_map(Value::as_str).collect();
            let counted = layer_kinds::index_list_count(self.fields.desc, &chooser);
            for (index, name) in names.iter().enumerate() {
                let body = layer_kinds::body_of_kind(node, &chooser, index, name, self.class)?;
                let (exists, shaped) = match counted {
                    Some(count) if index > 0 => (vec![count], chooser.clone()),
                    Some(_) => (Vec::new(), chooser.clone()),
                    None => (chooser.clone(), Vec::new()),
                };
                self.exists_if.extend(&exists);
                self.shaped_by.extend(&shaped);
                let at = format!("{prefix}{}.", first + index as u64);
                self.node(body, &at, depth + 1)?;
                self.exists_if.truncate(self.exists_if.len() - exists.len());
                self.shaped_by.truncate(self.shaped_by.len() - shaped.len());
            }
        }
        let mut repeated = 0;
        if let Some(count) = node.get("repeat").and_then(Value::as_str) {
            let (count, fields) = self.evaluate_count(count)?;
            repeated = count;
            if count > MAX_TENSORS {
                return Err(err(
                    ErrorKind::LimitExceeded,
                    format!("a layer count of {count} (at most {MAX_TENSORS})"),
                ));
            }
            let split = match node.get("split").and_then(Value::as_str) {
                Some(split) => Some(self.evaluate(split)?),
                None => None,
            };
            for index in 0..count {
                let (body, split_fields) = match &split {
                    Some((at, split_fields)) if index >= *at => {
                        (&node["rest"], split_fields.as_slice())
                    }
                    Some((_, split_fields)) => (&node["body"], split_fields.as_slice()),
                    None => (&node["body"], &[][..]),
                };
                // A layer past the first exists because of the count, and
                // any layer is of its kind because of the split index.
                let pushed = if index > 0 { fields.len() } else { 0 } + split_fields.len();
                if index > 0 {
                    self.exists_if.extend(&fields);
                }
                self.exists_if.extend(split_fields);
                self.node(body, &format!("{prefix}{}.", first + index), depth + 1)?;
                let keep = self.exists_if.len() - pushed;
                self.exists_if.truncate(keep);
            }
        }
        for (index, item) in entries(node, "last").enumerate() {
            let at = first + repeated + index as u64;
            self.node(item, &format!("{prefix}{at}."), depth + 1)?;
        }
        for entry in entries(node, "c") {
            let (name, subtree) = child(entry);
            let Some(conditions) = self.holds(node, name)? else {
                continue;
            };
            let pushed = conditions.len();
            self.exists_if.extend(conditions);
            self.node(subtree, &format!("{prefix}{name}."), depth + 1)?;
            let keep = self.exists_if.len() - pushed;
            self.exists_if.truncate(keep);
        }
        Ok(())
    }
}
