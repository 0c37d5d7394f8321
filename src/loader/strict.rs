//! The `strict` loader: `model.load_state_dict(state_dict)` on the state
//! dict found in the file, keys untouched.

use super::Prepared;
use crate::arch::ModelSpec;
use crate::state_dict::StateDict;

pub fn prepare(state_dict: &StateDict, model: &ModelSpec) -> Prepared {
    Prepared::unchanged(state_dict, model)
}
