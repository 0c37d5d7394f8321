//! Single-file diffusion checkpoints. Stable Diffusion's original LDM
//! (SD 1.x, 2.x) and sgm (SDXL) layout, `model.diffusion_model.*` beside
//! `first_stage_model.*` and `cond_stage_model.*` or
//! `conditioner.embedders.*`: one built-in preset per release inference YAML
//! (`sd/1.5` is v1-inference.yaml, `sd/2.1-768` v2-inference-v.yaml,
//! `sd/xl-base` sd_xl_base.yaml, ...). SD3 and SD3.5 in Stability AI's
//! layout (the MMDiT's `joint_blocks.*` under `model.diffusion_model.`
//! beside the VAE): `sd3/medium`, `sd3.5/large`, `sd3.5/medium`. FLUX.1
//! transformers in Black Forest Labs' layout (`double_blocks.*`,
//! `single_blocks.*`; ComfyUI saves them under `model.diffusion_model.`):
//! `flux/dev`, `flux/schnell`, `flux/fill`, `flux/depth`; FLUX.2's and
//! Chroma's, whose blocks are laid out alike (`flux2/dev`, `chroma/hd`).
//! All are read from
//! `zoo/stable_diffusion.json`, which zoo/stable_diffusion.py derives from
//! diffusers, transformers and open_clip and checks with diffusers' own
//! single-file converters. Inference names the release a file is, so that
//! an SD 2.x file checked against v1-inference.yaml is explained as the
//! release it is, with the YAML to use (for SD3 and FLUX.1, the diffusers
//! class and config).

use super::{ExpectedTensor, Inferred, ModelSpec, PresetScore};
use crate::error::Result;
use serde_json::{json, Value};
use std::sync::OnceLock;

const DATA: &str = include_str!("zoo/stable_diffusion.json");

/// Every single-file checkpoint's UNet keys start with this (and SD3's
/// MMDiT keys, and ComfyUI's FLUX.1 files' transformer keys).
pub const UNET_PREFIX: &str = "model.diffusion_model.";
/// Keys only a FLUX.1 transformer holds (after any `UNET_PREFIX`).
const FLUX_BLOCKS: [&str; 2] = ["double_blocks.", "single_blocks."];
/// Keys only an SD3 MMDiT holds (after any `UNET_PREFIX`).
const MMDIT_BLOCKS: [&str; 1] = ["joint_blocks."];

/// What a single file holds, each ranked against its own releases.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// LDM (SD 1.x, 2.x) or sgm (SDXL): a UNet, a VAE, text encoders.
    Unet,
    /// SD3 and SD3.5: an MMDiT and a VAE.
    Mmdit,
    /// FLUX.1, FLUX.2 and Chroma: the transformer alone.
    Flux,
}

/// What a family of releases is, by the start of its preset names: its
/// kind, what explanations call it, the class PyTorch's error texts name
/// (LDM's and sgm's, Black Forest Labs' `Flux` and `Flux2`, SD3 for
/// Stability AI's reference code, whose model holds the MMDiT and the VAE),
/// the diffusers pipeline whose `from_single_file` reads a whole file,
/// whether the parts its all-in-one files bundle are described (FLUX.2's
/// Mistral encoder and VAE are not), and the code that loads its files.
struct Family {
    prefix: &'static str,
    kind: Kind,
    label: &'static str,
    class_name: &'static str,
    pipeline: Option<&'static str>,
    bundles_known: bool,
    loaders: &'static str,
}

const SD_LOADERS: &str = "Stable Diffusion's own code (LDM, sgm) and the UIs on it";

/// The families, the more specific prefix first; the last is the one for
/// any other name.
const FAMILIES: [Family; 6] = [
    Family {
        prefix: "sd/xl",
        kind: Kind::Unet,
        label: "Stable Diffusion",
        class_name: "DiffusionEngine",
        pipeline: None,
        bundles_known: true,
        loaders: SD_LOADERS,
    },
    Family {
        prefix: "sd3",
        kind: Kind::Mmdit,
        label: "Stable Diffusion 3",
        class_name: "SD3",
        pipeline: Some("StableDiffusion3Pipeline"),
        bundles_known: true,
        loaders: "The UIs that load SD3 files (ComfyUI and those built on it)",
    },
    Family {
        prefix: "flux/",
        kind: Kind::Flux,
        label: "FLUX.1",
        class_name: "Flux",
        pipeline: Some("FluxPipeline"),
        bundles_known: true,
        loaders:
            "FLUX.1's reference code (Black Forest Labs' `flux`) and the UIs that load its files",
    },
    Family {
        prefix: "flux2/",
        kind: Kind::Flux,
        label: "FLUX.2",
        class_name: "Flux2",
        pipeline: Some("Flux2Pipeline"),
        bundles_known: false,
        loaders:
            "FLUX.2's reference code (Black Forest Labs' `flux2`) and the UIs that load its files",
    },
    Family {
        prefix: "chroma/",
        kind: Kind::Flux,
        label: "Chroma",
        class_name: "Chroma",
        pipeline: Some("ChromaPipeline"),
        bundles_known: true,
        loaders: "The UIs that load Chroma's files (ComfyUI and those built on it)",
    },
    Family {
        prefix: "",
        kind: Kind::Unet,
        label: "Stable Diffusion",
        class_name: "LatentDiffusion",
        pipeline: None,
        bundles_known: true,
        loaders: SD_LOADERS,
    },
];

fn family(release: &str) -> &'static Family {
    FAMILIES
        .iter()
        .find(|family| release.starts_with(family.prefix))
        .unwrap_or(&FAMILIES[FAMILIES.len() - 1])
}

impl Kind {
    fn of_release(name: &str) -> Kind {
        family(name).kind
    }
}

/// The code that loads a single-file model whose PyTorch class is
/// `class_name` (not strictly: only size mismatches stop it), for notes.
pub fn loaders_of_class(class_name: &str) -> &'static str {
    FAMILIES
        .iter()
        .find(|family| family.class_name == class_name)
        .map_or(SD_LOADERS, |family| family.loaders)
}
/// The modules a release holds: UNet, VAE, text encoders.
const COMPONENT_PREFIXES: [&str; 4] = [
    UNET_PREFIX,
    "first_stage_model.",
    "cond_stage_model.",
    "conditioner.embedders.",
];

struct Release {
    name: &'static str,
    kind: Kind,
    /// The inference YAML; empty for SD3 and FLUX.1, which have none.
    yaml: &'static str,
    about: &'static str,
    /// How to build the model when there is no YAML: the diffusers class
    /// and its config.
    build: &'static str,
    /// `(key prefix, component)` in `state_dict()` order.
    components: Vec<(&'static str, &'static str)>,
}

fn data() -> &'static Value {
    static DATA_VALUE: OnceLock<Value> = OnceLock::new();
    DATA_VALUE.get_or_init(|| serde_json::from_str(DATA).unwrap_or(Value::Null))
}

fn releases() -> &'static [Release] {
    static RELEASES: OnceLock<Vec<Release>> = OnceLock::new();
    RELEASES.get_or_init(|| {
        let text = |value: &'static Value, field: &str| value[field].as_str().unwrap_or("");
        data()["presets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|preset| Release {
                name: text(preset, "name"),
                kind: Kind::of_release(text(preset, "name")),
                yaml: text(preset, "yaml"),
                about: text(preset, "about"),
                build: text(preset, "build"),
                components: preset["components"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|pair| Some((pair[0].as_str()?, pair[1].as_str()?)))
                    .collect(),
            })
            .collect()
    })
}

/// `(name, family, description)` of each release preset.
pub fn preset_list() -> Vec<(String, &'static str, String)> {
    releases()
        .iter()
        .map(|release| {
            (
                release.name.to_string(),
                "sd",
                match release.kind {
                    Kind::Flux => format!(
                        "{} (single-file transformer, Black Forest Labs' layout)",
                        release.about
                    ),
                    Kind::Mmdit => format!(
                        "{} (single-file checkpoint, Stability AI's layout)",
                        release.about
                    ),
                    Kind::Unet => format!(
                        "{} ({}; single-file checkpoint)",
                        release.about, release.yaml
                    ),
                },
            )
        })
        .collect()
}

/// A component's listing in the data (`unet-1.5`, `clip-l`,
/// `ldm-schedule`): name, shape, whether it is int64.
fn component_listing(component: &str) -> Vec<super::sd_layout::Listed> {
    data()["components"][component]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tensor| {
            let shape: Vec<u64> = tensor[1]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            let int = tensor.get(2).and_then(Value::as_str) == Some("int64");
            (tensor[0].as_str().unwrap_or("").to_string(), shape, int)
        })
        .collect()
}

fn expected((name, shape, int): super::sd_layout::Listed) -> ExpectedTensor {
    ExpectedTensor {
        name,
        shape,
        dtype: if int { "I64" } else { "F32" }.to_string(),
        depends_on: Vec::new(),
        exists_if: Vec::new(),
    }
}

/// The model of a release preset, `None` when the name is not one.
pub fn from_preset(name: &str) -> Result<Option<ModelSpec>> {
    let Some(release) = releases().iter().find(|r| r.name == name) else {
        return Ok(None);
    };
    let tensors = release
        .components
        .iter()
        .flat_map(|(prefix, component)| {
            component_listing(component)
                .into_iter()
                .map(move |(name, shape, int)| (format!("{prefix}{name}"), shape, int))
        })
        .map(expected)
        .collect();
    let mut model = sd_model(family(release.name).class_name, tensors);
    model.preset = Some(release.name.to_string());
    model.config = json!({"release": release.name, "yaml": release.yaml, "about": release.about});
    Ok(Some(model))
}

/// A single-file model of these tensors, named as PyTorch's errors name it.
fn sd_model(class_name: &str, tensors: Vec<ExpectedTensor>) -> ModelSpec {
    ModelSpec {
        family: "sd".to_string(),
        class_name: class_name.to_string(),
        preset: None,
        config: Value::Null,
        tensors,
        batchnorm_modules: Vec::new(),
        base_model_prefix: String::new(),
        tied_keys: Vec::new(),
        module_kinds: Vec::new(),
        module_names: Vec::new(),
        non_persistent: Vec::new(),
    }
}

/// The release a preset name is: how to build its model (the inference
/// YAML, or for FLUX.1 the diffusers config) and what it is, for
/// explanations.
pub fn release_facts(name: &str) -> Option<(&'static str, &'static str)> {
    releases().iter().find(|r| r.name == name).map(|r| {
        let build = if r.yaml.is_empty() { r.build } else { r.yaml };
        (build, r.about)
    })
}

/// What explanations call a release: "Stable Diffusion", "Stable
/// Diffusion 3" or "FLUX.1".
pub fn release_label(name: &str) -> &'static str {
    family(name).label
}

/// The parts an SD3 or FLUX.1 single file bundles beside its MMDiT or
/// transformer (text encoders, VAE), each checked (sd_bundled.rs).
pub fn bundled(names_shapes: &[(String, Vec<u64>)]) -> Vec<super::sd_bundled::BundledPart> {
    super::sd_bundled::bundled_parts(names_shapes, data(), component_listing)
}

/// Whether the parts a release's all-in-one files bundle are known: those
/// of SD3 and FLUX.1 (and Chroma, whose files bundle FLUX.1's T5 and VAE);
/// FLUX.2's (a Mistral text encoder, its own VAE) are not described.
pub fn bundled_parts_known(release: &str) -> bool {
    family(release).bundles_known
}

/// What loads a whole single file of a release's kind, for explanations:
/// the diffusers pipeline whose `from_single_file` reads every part.
pub fn pipeline_of_release(name: &str) -> Option<&'static str> {
    family(name).pipeline
}

/// A name without the `UNET_PREFIX` a single file may put before it.
fn without_unet_prefix(name: &str) -> &str {
    name.strip_prefix(UNET_PREFIX).unwrap_or(name)
}

/// A single-file Stable Diffusion checkpoint, ranked against every SD
/// release, or a FLUX.1 transformer against every FLUX.1 release: the exact
/// one is named; otherwise the closest, with how far it is.
pub fn infer(names_shapes: &[(String, Vec<u64>)]) -> Option<Inferred> {
    let all_names_shapes = names_shapes;
    let count = |blocks: &[&str]| {
        names_shapes
            .iter()
            .filter(|(name, _)| {
                let name = without_unet_prefix(name);
                blocks.iter().any(|block| name.starts_with(block))
            })
            .count()
    };
    let unet_keys = names_shapes
        .iter()
        .filter(|(name, _)| name.starts_with(UNET_PREFIX))
        .count();
    let prefixed = unet_keys >= 10;
    let kind = if count(&FLUX_BLOCKS) >= 10 {
        Kind::Flux
    } else if count(&MMDIT_BLOCKS) >= 10 {
        Kind::Mmdit
    } else if prefixed {
        Kind::Unet
    } else {
        return None;
    };
    // Only the modules take part: files also hold the noise schedule
    // (`alphas_cumprod`, absent from some trainers' files), EMA copies
    // (`model_ema.*`), an old text encoder's `position_ids` (which the
    // loaders drop, strict=False) or, in SD3 files, text encoders the
    // releases do not all bundle. A FLUX.1 file is its transformer, ranked
    // without the prefix ComfyUI adds, and an SD3 MMDiT saved alone with
    // the prefix its releases have (a prefix the model lacks, or has, is a
    // cause of its own).
    let names_shapes: Vec<(String, Vec<u64>)> = match kind {
        Kind::Flux => names_shapes
            .iter()
            .filter(|(name, _)| !prefixed || name.starts_with(UNET_PREFIX))
            .map(|(name, shape)| (without_unet_prefix(name).to_string(), shape.clone()))
            .collect(),
        Kind::Mmdit if !prefixed => names_shapes
            .iter()
            .map(|(name, shape)| (format!("{UNET_PREFIX}{name}"), shape.clone()))
            .collect(),
        Kind::Mmdit | Kind::Unet => names_shapes
            .iter()
            .filter(|(name, _)| {
                COMPONENT_PREFIXES.iter().any(|p| name.starts_with(p))
                    && !name.ends_with("position_ids")
            })
            .cloned()
            .collect(),
    };
    // Each kind's releases, ranked by their modules: the noise schedule LDM
    // keeps as buffers says nothing of the release (every one has 1000
    // steps), and files made by other trainers often drop it.
    static MODELS: OnceLock<[Vec<ModelSpec>; 3]> = OnceLock::new();
    let by_kind = MODELS.get_or_init(|| {
        let mut by_kind: [Vec<ModelSpec>; 3] = Default::default();
        for release in releases() {
            if let Ok(Some(mut model)) = from_preset(release.name) {
                if release.kind != Kind::Flux {
                    model
                        .tensors
                        .retain(|t| COMPONENT_PREFIXES.iter().any(|p| t.name.starts_with(p)));
                }
                by_kind[release.kind as usize].push(model);
            }
        }
        by_kind
    });
    let models = &by_kind[kind as usize];
    let ranking: Vec<PresetScore> = super::rank_presets(&names_shapes, models);
    let best = ranking.first()?;
    let (yaml, about) = release_facts(&best.preset)?;
    let mut undetermined = Vec::new();
    // Releases with the same shapes (SD 2.x at 512 and at 768 with
    // v-prediction) differ in what no tensor shows.
    let same: Vec<&str> = ranking
        .iter()
        .skip(1)
        .filter(|s| s.findings == best.findings)
        .map(|s| s.preset.as_str())
        .collect();
    if !same.is_empty() {
        undetermined.push(format!(
            "release: the shapes are {} and equally {} (the prediction type and resolution are in the YAML, not in the tensors)",
            best.preset,
            same.join(", ")
        ));
    }
    let shaped_like = (!best.exact).then(|| {
        format!(
            "closest to {} ({about}; {yaml}): {} finding(s) against it",
            best.preset, best.findings
        )
    });
    // What else the file bundles (text encoders; the VAE, which SD3's
    // releases already hold under `first_stage_model.`), each checked.
    let fields = match kind {
        Kind::Mmdit | Kind::Flux if bundled_parts_known(&best.preset) => bundled(all_names_shapes)
            .into_iter()
            .filter(|part| !(kind == Kind::Mmdit && part.prefix == "first_stage_model."))
            .map(|part| super::InferredField {
                field: format!("bundled {}", part.name),
                value: json!(part.status()),
                evidence: format!(
                    "{} tensors under {}: {}",
                    part.tensors, part.prefix, part.about
                ),
                range: None,
                given: Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(Inferred {
        family: "sd".to_string(),
        fields,
        config: json!({"release": best.preset, "yaml": yaml, "about": about}),
        preset: best.exact.then(|| best.preset.clone()),
        ranking,
        undetermined,
        shaped_like,
        conditional: Vec::new(),
    })
}

/// Where an inference YAML's shape facts (`sd_yaml::facts`) differ from
/// a release's: "cross_attention_dim 768 where sd/2.1-768 has 1024".
pub fn facts_differing(facts: &Value, release: &str) -> Vec<String> {
    data()["presets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|preset| preset["name"] == release)
        .flat_map(|preset| preset["yaml_facts"].as_object())
        .flatten()
        .filter(|(field, value)| facts.get(field.as_str()) != Some(*value))
        .map(|(field, value)| {
            format!(
                "{field} {} where {release} has {value}",
                facts[field.as_str()]
            )
        })
        .collect()
}

/// The model an inference YAML builds, laid out from its fields
/// (sd_layout.rs). A YAML whose shape facts (`sd_yaml::facts`) and tensors
/// are a release's (`v2-inference-v.yaml` is `sd/2.1-768`) is that
/// release's preset. Any other keeps the release closest to it and the
/// facts where they differ in its config, for explanations; one the layout
/// does not build is refused with why and the closest release.
pub fn from_yaml(text: &str) -> Result<ModelSpec> {
    let yaml = super::sd_yaml::parse(text)?;
    let facts = super::sd_yaml::facts(&yaml)?;
    let mut closest: Option<(usize, &'static str, Vec<String>)> = None;
    // FLUX.1 has no inference YAML: only presets with a YAML's facts.
    let with_facts = data()["presets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|preset| preset["yaml_facts"].is_object())
        .filter_map(|preset| preset["name"].as_str());
    for name in with_facts {
        let differing = facts_differing(&facts, name);
        if closest
            .as_ref()
            .is_none_or(|(count, _, _)| differing.len() < *count)
        {
            closest = Some((differing.len(), name, differing));
        }
    }
    let (_, name, differing) = closest.unwrap_or((0, "", Vec::new()));
    let mut model = laid_out(&yaml).map_err(|refusal| {
        let release = if differing.is_empty() {
            format!("the rest of its shape facts are {name}'s")
        } else {
            format!(
                "it describes no release either, the closest is {name}: {}",
                differing.join("; ")
            )
        };
        crate::error::err(
            crate::error::ErrorKind::BadConfig,
            format!("{}; {release}", refusal.message),
        )
    })?;
    if differing.is_empty() {
        if let Some(mut release) = from_preset(name)? {
            if release.tensors == model.tensors {
                if let Some(object) = release.config.as_object_mut() {
                    object.insert("yaml_facts".into(), facts);
                }
                return Ok(release);
            }
        }
    }
    model.config = json!({
        "yaml_facts": facts,
        "closest_release": name,
        "differs_from_release": differing,
    });
    Ok(model)
}

/// The model of an inference YAML laid out from its fields (sd_layout.rs),
/// whether or not it is a release's: a release's YAML gives the release's
/// tensors (tests check each).
pub fn laid_out(yaml: &Value) -> Result<ModelSpec> {
    let (tensors, class_name) = super::sd_layout::layout(yaml, component_listing)?;
    Ok(sd_model(
        class_name,
        tensors.into_iter().map(expected).collect(),
    ))
}
