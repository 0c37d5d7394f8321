//! OpenAI CLIP and open_clip (PyPI `open-clip-torch`) models from open_clip's
//! model-config JSON `{"embed_dim", "vision_cfg": {..}, "text_cfg": {..}}`:
//! ViT and ModifiedResNet visual towers, the text transformer, LayerScale
//! (`ls_1.gamma` / `ls_2.gamma` when `ls_init_value` is set), open_clip's
//! custom attention blocks, attentional pooling and `custom_text` models.
//! Names, shapes and `state_dict()` order follow open_clip/model.py,
//! transformer.py and modified_resnet.py (open_clip 3.x);
//! tests/fixtures/open_clip/ (made by the real library) checks them.
//!
//! Not covered: towers built by other libraries (`vision_cfg.timm_model_name`,
//! `text_cfg.hf_model_name`) and CoCa (`multimodal_cfg`); those configs are
//! reported as unsupported. Presets are named `open_clip/<model config name>`.
//!
//! Four files: `config.rs` reads the config JSON with open_clip's defaults
//! into the plain structs the builders use; `tensors.rs` builds the
//! `state_dict()` tensor list from them; `presets.rs` holds the shipped
//! model configs (`open_clip/<name>` presets, built by `tensors.rs`);
//! `infer.rs` goes from names and shapes back to a config, ranked against
//! the presets. Each uses only files named before it.

mod config;
mod infer;
mod presets;
mod tensors;

pub use config::looks_like_config;
pub use infer::infer;
pub use presets::{from_preset, preset_list, MODEL_CONFIGS, PRESET_PREFIX};
pub use tensors::from_config_value;
