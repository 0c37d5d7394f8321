//! The `ldm` loader: how Stable Diffusion's own code loads a single-file
//! checkpoint. LDM's `load_model_from_config` and `init_from_ckpt`, sgm's
//! `DiffusionEngine.init_from_ckpt` (and the UIs built on them) call
//! `model.load_state_dict(sd, strict=False)`: keys untouched, a size
//! mismatch raises, missing keys keep their initial values and unexpected
//! ones (the noise schedule, EMA copies, an old `position_ids`) are dropped;
//! the missing and unexpected keys are printed, not raised.

use super::{Judgement, Prepared};
use crate::arch::ModelSpec;
use crate::state_dict::StateDict;

pub fn prepare(state_dict: &StateDict, model: &ModelSpec) -> Prepared {
    let mut prepared = Prepared::unchanged(state_dict, model);
    prepared.judgement = Judgement::NonStrict;
    prepared
}
