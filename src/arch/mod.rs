//! Model families: a config in the family's own terms becomes the exact list
//! of tensors the model's `state_dict()` holds (names, shapes, order), and a
//! checkpoint's tensors become an inferred config. Each expected tensor is
//! tagged with the config fields that decide whether it exists and its shape,
//! which is how `check` explains findings in config terms.
//!
//! One file per family; this one holds the shared types, the preset registry
//! and config-JSON recognition.

pub mod cn_clip;
pub mod dump;
pub mod hf;
mod key_rules;
pub mod open_clip;
pub mod sd_bundled;
pub mod sd_layout;
pub mod sd_yaml;
pub mod stable_diffusion;
pub mod zoo;

pub use key_rules::*;

use crate::error::{err, ErrorKind, Result};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectedTensor {
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: String,
    /// Config fields that decide this tensor's shape.
    #[serde(skip)]
    pub depends_on: Vec<&'static str>,
    /// Config fields that decide whether it exists (layer counts).
    #[serde(skip)]
    pub exists_if: Vec<&'static str>,
}

/// A model as `load_state_dict` sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    /// `cn_clip`, `open_clip`, `hf`.
    pub family: String,
    /// The class name PyTorch puts in its error text (`CLIP`, `BertModel`).
    pub class_name: String,
    /// Preset name when built from one.
    pub preset: Option<String>,
    /// The config in the family's own field names.
    pub config: serde_json::Value,
    #[serde(skip)]
    pub tensors: Vec<ExpectedTensor>,
    /// Module prefixes (no trailing dot) of BatchNorm layers, whose
    /// `num_batches_tracked` PyTorch fills in for old state dicts.
    #[serde(skip)]
    pub batchnorm_modules: Vec<String>,
    /// Prefix that from_pretrained adds or strips (`bert`, `model`,
    /// `transformer`) for HF models; empty elsewhere.
    #[serde(skip)]
    pub base_model_prefix: String,
    /// HF: keys allowed to be missing (tied or re-created weights).
    #[serde(skip)]
    pub tied_keys: Vec<String>,
    /// The layer kind of modules whose kind decides something the check
    /// needs (a PEFT adapter's shapes): every `nn.Linear`, `nn.Embedding`
    /// and transformers `Conv1D` the builder made, by module name.
    #[serde(skip)]
    pub module_kinds: Vec<(String, ModuleKind)>,
    /// Every module in `named_modules(remove_duplicate=False)` order, when
    /// known (a model dump); empty when the tree follows from the keys.
    #[serde(skip)]
    pub module_names: Vec<String>,
    /// Buffers the model has but `state_dict()` leaves out
    /// (`persistent=False`), when known (a dump): a checkpoint that holds
    /// them carries stale copies, not weights.
    #[serde(skip)]
    pub non_persistent: Vec<String>,
}

/// A layer kind, where it matters: LoRA wraps these three, and their
/// weights are laid out differently (`Linear` `[out, in]`, `Conv1D`
/// `[in, out]`, `Embedding` `[count, dim]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    Linear,
    Embedding,
    Conv1D,
}

/// Builds expected tensor lists in `state_dict()` order.
#[derive(Default)]
pub struct TensorListBuilder {
    pub tensors: Vec<ExpectedTensor>,
    pub batchnorm_modules: Vec<String>,
    pub module_kinds: Vec<(String, ModuleKind)>,
    depends_stack: Vec<&'static str>,
}

/// `prefix.suffix`, the way every tensor and module name is built
/// (`format!` cost several times more, and the page builds every preset's
/// names on each drop to rank them).
pub fn dotted(prefix: &str, suffix: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + 1 + suffix.len());
    name.push_str(prefix);
    name.push('.');
    name.push_str(suffix);
    name
}

impl TensorListBuilder {
    /// Fields that decide whether the tensors pushed until the matching
    /// `pop_depends` exist (a block index beyond a layer count).
    pub fn push_depends(&mut self, fields: &[&'static str]) {
        self.depends_stack.extend_from_slice(fields);
    }
    pub fn pop_depends(&mut self, count: usize) {
        let keep = self.depends_stack.len().saturating_sub(count);
        self.depends_stack.truncate(keep);
    }

    /// Tensors that exist only when the config's `field` says so: `add`
    /// runs when `present`, its tensors tagged as depending on `field`.
    pub fn optional(
        &mut self,
        field: &'static str,
        present: bool,
        add: impl FnOnce(&mut TensorListBuilder),
    ) {
        if present {
            self.push_depends(&[field]);
            add(self);
            self.pop_depends(1);
        }
    }

    pub fn tensor(&mut self, name: impl Into<String>, shape: &[u64], depends_on: &[&'static str]) {
        self.tensor_typed(name, shape, "F32", depends_on);
    }

    pub fn tensor_typed(
        &mut self,
        name: impl Into<String>,
        shape: &[u64],
        dtype: &str,
        depends_on: &[&'static str],
    ) {
        self.tensors.push(ExpectedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: dtype.to_string(),
            depends_on: depends_on.to_vec(),
            exists_if: self.depends_stack.clone(),
        });
    }

    /// `nn.Linear(in, out)`: weight `[out, in]`, bias `[out]`.
    pub fn linear(
        &mut self,
        prefix: &str,
        out_features: u64,
        in_features: u64,
        bias: bool,
        depends_on: &[&'static str],
    ) {
        self.tensor(
            dotted(prefix, "weight"),
            &[out_features, in_features],
            depends_on,
        );
        if bias {
            self.tensor(dotted(prefix, "bias"), &[out_features], depends_on);
        }
        self.module_kinds
            .push((prefix.to_string(), ModuleKind::Linear));
    }

    /// transformers' `Conv1D(out, in)` (GPT-2): weight `[in, out]`, bias
    /// `[out]`.
    pub fn conv1d(
        &mut self,
        prefix: &str,
        in_features: u64,
        out_features: u64,
        depends_on: &[&'static str],
    ) {
        self.tensor(
            dotted(prefix, "weight"),
            &[in_features, out_features],
            depends_on,
        );
        self.tensor(dotted(prefix, "bias"), &[out_features], depends_on);
        self.module_kinds
            .push((prefix.to_string(), ModuleKind::Conv1D));
    }

    /// `nn.LayerNorm(n)` (or RMSNorm with `bias = false`).
    pub fn norm(&mut self, prefix: &str, n: u64, bias: bool, depends_on: &[&'static str]) {
        self.tensor(dotted(prefix, "weight"), &[n], depends_on);
        if bias {
            self.tensor(dotted(prefix, "bias"), &[n], depends_on);
        }
    }

    /// `nn.BatchNorm2d(n)` with running statistics.
    pub fn batch_norm(&mut self, prefix: &str, n: u64, depends_on: &[&'static str]) {
        for name in ["weight", "bias", "running_mean", "running_var"] {
            self.tensor(format!("{prefix}.{name}"), &[n], depends_on);
        }
        self.tensor_typed(
            dotted(prefix, "num_batches_tracked"),
            &[],
            "I64",
            depends_on,
        );
        self.batchnorm_modules.push(prefix.to_string());
    }

    pub fn embedding(&mut self, prefix: &str, count: u64, dim: u64, depends_on: &[&'static str]) {
        self.tensor(dotted(prefix, "weight"), &[count, dim], depends_on);
        self.module_kinds
            .push((prefix.to_string(), ModuleKind::Embedding));
    }
}

/// One (sub-)config of a config JSON and its dotted path, so errors name the
/// field as the user wrote it (`vision_cfg.width`, `text_config.hidden_size`).
/// Families add their own typed readers in `impl ConfigSection` blocks.
#[derive(Clone, Copy)]
pub struct ConfigSection<'a> {
    pub value: &'a serde_json::Value,
    pub path: &'static str,
}

impl ConfigSection<'_> {
    /// `path.field`, or `field` at the top level.
    pub fn field_name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// The field, treating JSON null as absent.
    pub fn get(&self, field: &str) -> Option<&serde_json::Value> {
        self.value.get(field).filter(|v| !v.is_null())
    }

    /// "config field \"vision_cfg.width\" must be an integer, got \"wide\"".
    pub fn bad(&self, field: &str, what: &str, got: &serde_json::Value) -> crate::error::Error {
        err(
            ErrorKind::BadConfig,
            format!(
                "config field {:?} must be {what}, got {got}",
                self.field_name(field)
            ),
        )
    }
}

/// The config field names a family uses for what shapes a ModifiedResNet.
pub struct ResNetFields {
    pub width: &'static str,
    pub layers: &'static str,
    pub resolution: &'static str,
    pub embed_dim: &'static str,
}

/// OpenAI CLIP's ModifiedResNet image tower (a 3-conv stem with BatchNorms,
/// four bottleneck stages whose first block downsamples, an attention pool),
/// as Chinese-CLIP and open_clip both build it (clip/model.py
/// `ModifiedResNet`), in `state_dict()` order.
pub fn modified_resnet(
    b: &mut TensorListBuilder,
    width: u64,
    stages: &[u64],
    resolution: u64,
    embed_dim: u64,
    fields: &ResNetFields,
) {
    let w = &[fields.width];
    b.tensor("visual.conv1.weight", &[width / 2, 3, 3, 3], w);
    b.batch_norm("visual.bn1", width / 2, w);
    b.tensor("visual.conv2.weight", &[width / 2, width / 2, 3, 3], w);
    b.batch_norm("visual.bn2", width / 2, w);
    b.tensor("visual.conv3.weight", &[width, width / 2, 3, 3], w);
    b.batch_norm("visual.bn3", width, w);
    let mut inplanes = width;
    for (stage, depth) in stages.iter().enumerate() {
        let planes = width << stage;
        let stride = if stage == 0 { 1 } else { 2 };
        for block in 0..*depth {
            let p = format!("visual.layer{}.{block}", stage + 1);
            // Blocks past the first exist because of the stage depth.
            let layer_exists: &[&'static str] = if block > 0 { &[fields.layers] } else { &[] };
            b.push_depends(layer_exists);
            b.tensor(format!("{p}.conv1.weight"), &[planes, inplanes, 1, 1], w);
            b.batch_norm(&dotted(&p, "bn1"), planes, w);
            b.tensor(format!("{p}.conv2.weight"), &[planes, planes, 3, 3], w);
            b.batch_norm(&dotted(&p, "bn2"), planes, w);
            b.tensor(format!("{p}.conv3.weight"), &[planes * 4, planes, 1, 1], w);
            b.batch_norm(&dotted(&p, "bn3"), planes * 4, w);
            if block == 0 && (stride > 1 || inplanes != planes * 4) {
                b.tensor(
                    format!("{p}.downsample.0.weight"),
                    &[planes * 4, inplanes, 1, 1],
                    w,
                );
                b.batch_norm(&format!("{p}.downsample.1"), planes * 4, w);
            }
            b.pop_depends(layer_exists.len());
            inplanes = planes * 4;
        }
    }
    let attention_dim = width * 32;
    let spatial = resolution / 32;
    b.tensor(
        "visual.attnpool.positional_embedding",
        &[spatial * spatial + 1, attention_dim],
        &[fields.resolution, fields.width],
    );
    for projection in ["k_proj", "q_proj", "v_proj"] {
        b.linear(
            &format!("visual.attnpool.{projection}"),
            attention_dim,
            attention_dim,
            true,
            w,
        );
    }
    b.linear(
        "visual.attnpool.c_proj",
        embed_dim,
        attention_dim,
        true,
        &[fields.width, fields.embed_dim],
    );
}

/// One field of an inferred config with the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InferredField {
    pub field: String,
    pub value: serde_json::Value,
    /// "visual.conv1.weight shape[0]".
    pub evidence: String,
    /// The least and the most value the shapes allow, where a floor
    /// division shows a range (Parakeet's mel bins: any of 128 to 135 gives
    /// a 16-row subsampled axis); `value` is the one taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<[u64; 2]>,
    /// The assumed fields and values this one rests on (in
    /// `Inferred::conditional` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<(String, u64)>,
}

/// What the shapes say about the model a checkpoint was saved from.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Inferred {
    pub family: String,
    pub fields: Vec<InferredField>,
    /// The config as the family's JSON would hold it, undetermined fields
    /// filled from the closest preset.
    pub config: serde_json::Value,
    /// The preset whose expected tensors equal the checkpoint's, if any.
    pub preset: Option<String>,
    /// Presets ranked by how well they match: `(name, findings)`, best first.
    pub ranking: Vec<PresetScore>,
    /// Fields shapes cannot tell, with why.
    pub undetermined: Vec<String>,
    /// Fields the shapes show only once another field's value is assumed
    /// (Parakeet's mel bins at the default subsampling stride of 2, a
    /// Llama's key/value heads at the default head count), each with that
    /// assumption in `given`: a fact about a model that has the assumed
    /// value, which the diagnosis names only against such a model.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditional: Vec<InferredField>,
    /// The released size the checkpoint departs from in a field or two
    /// ("Qwen2.5 3B-shaped (hf/qwen2.5-3b), vocab_size 151666 where the
    /// release has 151936"), when no preset matches exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shaped_like: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresetScore {
    pub preset: String,
    /// missing + unexpected + size mismatches when loading into this preset.
    pub findings: usize,
    pub exact: bool,
}

impl Inferred {
    pub fn field(&self, name: &str) -> Option<&serde_json::Value> {
        self.fields
            .iter()
            .find(|f| f.field == name)
            .map(|f| &f.value)
    }
}

/// Every built-in preset: `(name, family, description)`.
pub fn presets() -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    out.extend(cn_clip::preset_list());
    out.extend(open_clip::preset_list());
    out.extend(zoo::presets::preset_list());
    out.extend(stable_diffusion::preset_list());
    out
}

/// Build a model from a preset name (or alias).
pub fn model_from_preset(name: &str) -> Result<ModelSpec> {
    if let Some(model) = cn_clip::from_preset(name)? {
        return Ok(model);
    }
    if let Some(model) = open_clip::from_preset(name)? {
        return Ok(model);
    }
    if let Some(model) = zoo::presets::from_preset(name)? {
        return Ok(model);
    }
    if let Some(model) = stable_diffusion::from_preset(name)? {
        return Ok(model);
    }
    Err(err(
        ErrorKind::UnknownPreset,
        format!("unknown preset {name:?}; `ckptcheck presets` lists them"),
    ))
}

/// Build a model from config JSON text(s) the user gave, recognised by
/// content: a cn_clip vision + text pair, an open_clip config, an HF
/// config.json.
pub fn model_from_config_json(texts: &[(String, String)]) -> Result<ModelSpec> {
    let mut values = Vec::new();
    for (file, text) in texts {
        if [".yaml", ".yml"].iter().any(|end| file.ends_with(end)) {
            if texts.len() > 1 {
                return Err(err(
                    ErrorKind::BadConfig,
                    "a Stable Diffusion inference YAML is the whole config: give it alone",
                )
                .in_file(file));
            }
            return stable_diffusion::from_yaml(text).map_err(|e| e.in_file(file));
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            err(
                ErrorKind::BadConfig,
                format!("config is not valid JSON: {e}"),
            )
            .in_file(file)
        })?;
        if !value.is_object() {
            return Err(err(ErrorKind::BadConfig, "config JSON must be an object").in_file(file));
        }
        values.push((file.clone(), value));
    }
    if values.iter().any(|(_, v)| cn_clip::looks_like_config(v)) {
        return cn_clip::from_config_values(&values);
    }
    if let [(file, value)] = values.as_slice() {
        if open_clip::looks_like_config(value) {
            return open_clip::from_config_value(value, None).map_err(|e| e.in_file(file));
        }
        if value.get("_class_name").is_some() {
            return zoo::diffusers::from_diffusers_config(value).map_err(|e| e.in_file(file));
        }
        if value.get("model_type").is_some() || value.get("architectures").is_some() {
            return hf::from_config_value(value).map_err(|e| e.in_file(file));
        }
    }
    let files: Vec<&str> = values.iter().map(|(f, _)| f.as_str()).collect();
    Err(err(
        ErrorKind::BadConfig,
        "unknown config family: expected a Chinese-CLIP vision+text JSON pair, an open_clip model config, a Hugging Face config.json (with model_type) or a diffusers model config.json (with _class_name)",
    )
    .in_file(&files.join(", ")))
}

/// Read an unsigned integer field, or say which field is wrong.
pub fn config_u64(value: &serde_json::Value, field: &str) -> Result<u64> {
    match value.get(field) {
        Some(v) => v.as_u64().ok_or_else(|| {
            err(
                ErrorKind::BadConfig,
                format!("config field {field:?} must be a non-negative integer, got {v}"),
            )
        }),
        None => Err(err(
            ErrorKind::BadConfig,
            format!("config field {field:?} is missing"),
        )),
    }
}

pub fn config_u64_or(value: &serde_json::Value, field: &str, default: u64) -> Result<u64> {
    match value.get(field) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(_) => config_u64(value, field),
    }
}

/// Infer what the checkpoint is: family-specific field inference plus a
/// ranking of every preset of that family by how well it loads.
pub fn infer(names_shapes: &[(String, Vec<u64>)]) -> Inferred {
    // One check asks twice (the page picks the model by inference, then the
    // diagnosis explains against it), and inference builds and ranks every
    // preset of the family: the last answer is kept for the same tensors.
    type Names = Vec<(String, Vec<u64>)>;
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Names, Inferred)>> =
            const { std::cell::RefCell::new(None) };
    }
    let cached = LAST.with(|last| {
        last.borrow()
            .as_ref()
            .filter(|(names, _)| names.as_slice() == names_shapes)
            .map(|(_, inferred)| inferred.clone())
    });
    if let Some(inferred) = cached {
        return inferred;
    }
    let inferred = infer_uncached(names_shapes);
    LAST.with(|last| *last.borrow_mut() = Some((names_shapes.to_vec(), inferred.clone())));
    inferred
}

fn infer_uncached(names_shapes: &[(String, Vec<u64>)]) -> Inferred {
    if let Some(inferred) = stable_diffusion::infer(names_shapes) {
        return inferred;
    }
    if let Some(inferred) = cn_clip::infer(names_shapes) {
        return inferred;
    }
    if let Some(inferred) = open_clip::infer(names_shapes) {
        return inferred;
    }
    let hand_written = hf::infer(names_shapes);
    // The zoo answers too; the hand-written inference keeps a tie (it reads
    // cues the names alone do not give, such as LLaMA versus Mistral).
    let chosen = match (hand_written, zoo::infer::infer(names_shapes)) {
        (Some(hand), Some((described, findings))) => {
            let hand_findings = model_for_inferred(&hand)
                .and_then(|model| {
                    rank_presets(names_shapes, &[model])
                        .first()
                        .map(|s| s.findings)
                })
                .unwrap_or(usize::MAX);
            Some(if findings < hand_findings {
                described
            } else {
                hand
            })
        }
        (Some(hand), None) => Some(hand),
        (None, Some((described, _))) => Some(described),
        (None, None) => None,
    };
    if let Some(mut inferred) = chosen {
        zoo::presets::name_inferred(&mut inferred, names_shapes);
        return inferred;
    }
    Inferred {
        family: "unknown".to_string(),
        undetermined: vec!["no known model family matches these tensor names".to_string()],
        ..Default::default()
    }
}

/// Rank presets by findings when the checkpoint's tensors (already
/// normalised) load into each; `exact` when there are none.
pub fn rank_presets(names_shapes: &[(String, Vec<u64>)], models: &[ModelSpec]) -> Vec<PresetScore> {
    let checkpoint: rustc_hash::FxHashMap<&str, &Vec<u64>> =
        names_shapes.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut scores: Vec<PresetScore> = models
        .iter()
        .map(|model| {
            let mut findings = 0usize;
            let mut expected = rustc_hash::FxHashSet::default();
            for tensor in &model.tensors {
                expected.insert(tensor.name.as_str());
                match checkpoint.get(tensor.name.as_str()) {
                    None => {
                        if !tensor.name.ends_with("num_batches_tracked") {
                            findings += 1
                        }
                    }
                    Some(shape) if **shape != tensor.shape => findings += 1,
                    Some(_) => {}
                }
            }
            findings += names_shapes
                .iter()
                .filter(|(n, _)| !expected.contains(n.as_str()))
                .count();
            PresetScore {
                preset: model.preset.clone().unwrap_or_default(),
                findings,
                exact: findings == 0,
            }
        })
        .collect();
    scores.sort_by_key(|s| s.findings);
    scores
}

/// Count distinct `prefix{index}.` block indices among names.
pub fn count_blocks(names: &[(String, Vec<u64>)], prefix: &str) -> u64 {
    let mut indices = std::collections::BTreeSet::new();
    for (name, _) in names {
        if let Some(rest) = name.strip_prefix(prefix) {
            if let Some(index) = rest.split('.').next().and_then(|i| i.parse::<u64>().ok()) {
                indices.insert(index);
            }
        }
    }
    indices.len() as u64
}

pub fn shape_of<'a>(names: &'a [(String, Vec<u64>)], name: &str) -> Option<&'a Vec<u64>> {
    names.iter().find(|(n, _)| n == name).map(|(_, s)| s)
}

/// Integer square root for grid sizes (`None` unless exact).
pub fn exact_sqrt(n: u64) -> Option<u64> {
    let root = (n as f64).sqrt().round() as u64;
    (root * root == n).then_some(root)
}

/// Rebuild a model from an inferred config of a family other than cn_clip.
pub fn model_for_inferred(inferred: &Inferred) -> Option<ModelSpec> {
    match inferred.family.as_str() {
        "open_clip" => open_clip::from_config_value(&inferred.config, None).ok(),
        family if family.starts_with("hf") => hf::from_config_value(&inferred.config).ok(),
        "diffusers" => zoo::diffusers::from_diffusers_config(&inferred.config).ok(),
        "sd" => stable_diffusion::from_preset(inferred.config["release"].as_str()?)
            .ok()
            .flatten(),
        _ => None,
    }
}
