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

use super::{
    count_blocks, exact_sqrt, rank_presets, shape_of, Inferred, InferredField, ModelSpec,
    TensorListBuilder,
};
use crate::error::{err, ErrorKind, Result};
use serde_json::{json, Map, Value};

/// Every preset name starts with this.
pub const PRESET_PREFIX: &str = "open_clip/";

/// Model configs as open_clip ships them (open_clip/model_configs/*.json),
/// chosen so that no two have the same state dict.
pub const MODEL_CONFIGS: &[(&str, &str)] = &[
    (
        "RN50",
        r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "RN101",
        r#"{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": [3, 4, 23, 3], "width": 64, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "RN50x4",
        r#"{"embed_dim": 640, "vision_cfg": {"image_size": 288, "layers": [4, 6, 10, 6], "width": 80, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 640, "heads": 10, "layers": 12}}"#,
    ),
    (
        "RN50x16",
        r#"{"embed_dim": 768, "vision_cfg": {"image_size": 384, "layers": [6, 8, 18, 8], "width": 96, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}"#,
    ),
    (
        "RN50x64",
        r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 448, "layers": [3, 15, 36, 10], "width": 128, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 12}}"#,
    ),
    (
        "ViT-B-32",
        r#"{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "ViT-B-32-256",
        r#"{"embed_dim": 512, "vision_cfg": {"image_size": 256, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "ViT-B-16",
        r#"{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#,
    ),
    (
        "ViT-B-16-plus-240",
        r#"{"embed_dim": 640, "vision_cfg": {"image_size": 240, "layers": 12, "width": 896, "patch_size": 16}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 640, "heads": 10, "layers": 12}}"#,
    ),
    (
        "ViT-L-14",
        r#"{"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}"#,
    ),
    (
        "ViT-L-14-336",
        r#"{"embed_dim": 768, "vision_cfg": {"image_size": 336, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}"#,
    ),
    (
        "ViT-H-14",
        r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}}"#,
    ),
    (
        "ViT-g-14",
        r#"{"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": 40, "width": 1408, "head_width": 88, "mlp_ratio": 4.3637, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}}"#,
    ),
    (
        "ViT-bigG-14",
        r#"{"embed_dim": 1280, "vision_cfg": {"image_size": 224, "layers": 48, "width": 1664, "head_width": 104, "mlp_ratio": 4.9231, "patch_size": 14}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1280, "heads": 20, "layers": 32}}"#,
    ),
    (
        "ViT-M-16-alt",
        r#"{"embed_dim": 384, "vision_cfg": {"image_size": 224, "layers": 12, "width": 512, "patch_size": 16, "ls_init_value": 0.0001}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 384, "heads": 6, "layers": 12}}"#,
    ),
    (
        "ViT-L-14-CLIPA",
        r#"{"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14, "no_ln_pre": true, "pool_type": "avg", "final_ln_after_pool": true}, "text_cfg": {"context_length": 32, "vocab_size": 32000, "hf_tokenizer_name": "bert-base-uncased", "tokenizer_kwargs": {"strip_sep_token": true}, "width": 768, "heads": 12, "layers": 12, "pool_type": "last", "no_causal_mask": true}}"#,
    ),
];
