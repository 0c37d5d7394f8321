//! Loaders: the code paths people load checkpoints through, each one file
//! behind one interface. A loader takes the state dict found in the file
//! and the model spec, and returns the state dict as that code path hands
//! it to the model (keys stripped, renamed, dropped, resized), the model's
//! keys as it sees them (a DDP wrapper prefixes them), the class name its
//! error text names, what it did (notes), and how the load is judged:
//! PyTorch's strict `load_state_dict`, or transformers' `from_pretrained`
//! report. The check (`crate::check`) then does the comparison; loaders
//! never compare and never explain.
//!
//! The interface is one function per loader file, `prepare(state_dict,
//! model) -> Prepared`. Adding a loader: a file here with that function, a
//! `Loader` variant, its name in `parse`/`name`, and a line in `prepare`
//! below.

mod cn_clip;
mod cn_clip_resume;
mod hf;
mod ldm;
pub mod peft;
mod strict;

use crate::arch::ModelSpec;
use crate::error::{err, ErrorKind, Result};
use crate::state_dict::StateDict;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loader {
    /// `model.load_state_dict(state_dict)`.
    Strict,
    /// `cn_clip.clip.utils.create_model`.
    CnClip,
    /// Chinese-CLIP's fine-tune script with `--resume`.
    CnClipResume,
    /// transformers' `Class.from_pretrained`.
    Hf,
    /// `PeftModel.from_pretrained(base_model, adapter_dir)`: a LoRA
    /// adapter onto the base model the config describes.
    Peft,
    /// Stable Diffusion's LDM and sgm code: `load_state_dict(strict=False)`.
    Ldm,
    /// diffusers' `ModelMixin.from_pretrained`: a size mismatch raises,
    /// missing and unexpected keys are logged.
    Diffusers,
}

impl Loader {
    pub fn parse(text: &str) -> Result<Loader> {
        Ok(match text {
            "strict" => Loader::Strict,
            "cn-clip" => Loader::CnClip,
            "cn-clip-resume" => Loader::CnClipResume,
            "hf" => Loader::Hf,
            "peft" => Loader::Peft,
            "ldm" => Loader::Ldm,
            "diffusers" => Loader::Diffusers,
            other => {
                return Err(err(
                    ErrorKind::BadArgument,
                    format!(
                        "unknown loader {other:?}: use strict, cn-clip, cn-clip-resume, hf, peft, ldm or diffusers"
                    ),
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Loader::Strict => "strict",
            Loader::CnClip => "cn-clip",
            Loader::CnClipResume => "cn-clip-resume",
            Loader::Hf => "hf",
            Loader::Peft => "peft",
            Loader::Ldm => "ldm",
            Loader::Diffusers => "diffusers",
        }
    }
}

/// How a prepared load is judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// `load_state_dict(strict=False)`: only size mismatches raise; missing
    /// and unexpected keys are the caller's to report.
    NonStrict,
    /// `load_state_dict(strict=True)`: the module-tree walk; any finding
    /// raises.
    Strict,
    /// diffusers' `from_pretrained`: judged as `NonStrict`, but what it
    /// raises is diffusers' own text for the first size mismatch.
    Diffusers,
    /// `from_pretrained`'s load report: one of a tied pair present makes
    /// the other not missing; some unexpected keys are ignored; only size
    /// mismatches raise.
    FromPretrained {
        /// `(target, source)` pairs re-tied on load.
        tied: Vec<(String, String)>,
        ignore_unexpected: Vec<crate::arch::IgnoreKey>,
    },
    /// PEFT's adapter load: `raises` when PEFT stops before loading (no
    /// module matched `target_modules`), else `load_state_dict(strict=
    /// False)`: size mismatches raise, missing adapter keys warn, other
    /// keys are dropped silently.
    Peft {
        raises: Option<String>,
        injected: peft::Injected,
        /// Boxed: the config is large and the other judgements small.
        config: Box<peft::AdapterConfig>,
    },
}

/// The state dict and the model as the loader hands them to each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub state_dict: StateDict,
    pub model_keys: Vec<(String, Vec<u64>)>,
    pub batchnorm_modules: Vec<String>,
    /// The model's modules in `named_modules()` order when known (a model
    /// dump), so that modules without parameters take their keys.
    pub module_names: Vec<String>,
    pub class_name: String,
    /// What the loader did, for people.
    pub notes: Vec<String>,
    pub judgement: Judgement,
}

impl Prepared {
    /// The model and state dict untouched, judged strictly.
    fn unchanged(state_dict: &StateDict, model: &ModelSpec) -> Prepared {
        Prepared {
            state_dict: state_dict.clone(),
            model_keys: model
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone()))
                .collect(),
            batchnorm_modules: model.batchnorm_modules.clone(),
            module_names: model.module_names.clone(),
            class_name: model.class_name.clone(),
            notes: Vec::new(),
            judgement: Judgement::Strict,
        }
    }
}

/// What `loader` makes of `state_dict` and `model`; `adapter_config` is
/// the adapter_config.json found beside the weights (the `peft` loader
/// reads it, as PEFT does).
pub fn prepare(
    loader: Loader,
    state_dict: &StateDict,
    model: &ModelSpec,
    adapter_config: Option<&serde_json::Value>,
) -> Prepared {
    match loader {
        Loader::Strict => strict::prepare(state_dict, model),
        Loader::CnClip => cn_clip::prepare(state_dict, model),
        Loader::CnClipResume => cn_clip_resume::prepare(state_dict, model),
        Loader::Hf => hf::prepare(state_dict, model),
        Loader::Peft => peft::prepare(state_dict, model, adapter_config),
        Loader::Ldm => ldm::prepare(state_dict, model),
        Loader::Diffusers => {
            let mut prepared = Prepared::unchanged(state_dict, model);
            prepared.judgement = Judgement::Diffusers;
            prepared
        }
    }
}
