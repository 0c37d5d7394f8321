//! Checkpoints whose shapes are not the architecture's: a DeepSpeed ZeRO-3
//! partitioned save (parameters of shape `[0]`), quantized weights
//! (bitsandbytes, GPTQ, AWQ: packed shapes), and LoRA adapters (low-rank
//! pairs, not a model). Reading config fields off such shapes gives
//! harmful answers ("hidden_size: checkpoint 0"), so when one of these
//! layouts is recognised it is the whole explanation, with its own fix, and
//! no config is inferred from the shapes.

use super::{Cause, Fix, Remedy};
use crate::state_dict::StateEntry;
use serde_json::Value;

/// A recognised layout: the cause (with its evidence) and its fix.
pub struct Layout {
    pub cause: Cause,
    pub fix: Fix,
    /// Why no config is inferred, for `inferred.undetermined`.
    pub why_not_inferred: String,
}

fn count(entries: &[StateEntry], test: impl Fn(&StateEntry) -> bool) -> usize {
    entries.iter().filter(|e| test(e)).count()
}

fn ends_with_any(key: &str, suffixes: &[&str]) -> bool {
    suffixes.iter().any(|suffix| key.ends_with(suffix))
}

fn layout(
    id: &str,
    term: &str,
    evidence: String,
    summary: &str,
    remedies: &[(&str, &str)],
    n_keys: usize,
) -> Layout {
    Layout {
        cause: Cause {
            cause: id.to_string(),
            field: "layout".to_string(),
            checkpoint: Value::String(term.to_string()),
            model: Value::Null,
            missing: 0,
            unexpected: 0,
            size_mismatches: 0,
            text: format!("{term}: {evidence}"),
        },
        fix: Fix {
            summary: summary.to_string(),
            remedies: remedies
                .iter()
                .map(|(label, text)| Remedy {
                    label: label.to_string(),
                    text: text.to_string(),
                })
                .collect(),
        },
        why_not_inferred: format!(
            "{term}: the shapes of its {n_keys} tensors are not the architecture's, so no config field is read from them"
        ),
    }
}

/// The layout of a state dict, if it is one of these.
pub fn recognise(entries: &[StateEntry]) -> Option<Layout> {
    let n = entries.len();
    if n == 0 {
        return None;
    }
    let empty = count(entries, |e| e.shape.contains(&0));
    if empty * 2 >= n && empty >= 2 {
        return Some(layout(
            "deepspeed-zero3",
            "\"DeepSpeed ZeRO-3\" partitioned checkpoint",
            format!(
                "{empty} of {n} tensors have no elements (shape [0]): each rank kept only its partition, so the file holds placeholders, not weights"
            ),
            "gather the full weights with DeepSpeed before loading",
            &[
                (
                    "command (DeepSpeed writes this script next to the checkpoint)",
                    "python zero_to_fp32.py CHECKPOINT_DIR pytorch_model.bin",
                ),
                (
                    "DeepSpeed config, to save whole weights next time",
                    "\"zero_optimization\": {\"stage\": 3, \"stage3_gather_16bit_weights_on_model_save\": true}",
                ),
            ],
            n,
        ));
    }
    let bnb_4bit = count(entries, |e| {
        e.key.contains(".quant_state.")
            || ends_with_any(&e.key, &[".absmax", ".quant_map", ".nested_absmax"])
    });
    let bnb_8bit = count(entries, |e| e.key.ends_with(".SCB"));
    if bnb_4bit > 0 || bnb_8bit > 0 {
        let (bits, keys) = if bnb_4bit > 0 {
            ("4-bit", "`.absmax`, `.quant_map`, `.quant_state.*`")
        } else {
            ("8-bit", "`.SCB`")
        };
        return Some(layout(
            "quantized-bitsandbytes",
            "\"bitsandbytes\" quantized checkpoint",
            format!(
                "{} tensors of its {bits} quantization state ({keys}); the weights are packed, so their shapes are not the model's",
                bnb_4bit + bnb_8bit
            ),
            "load it through the quantization library, or use the unquantized checkpoint",
            &[(
                "Python",
                if bnb_4bit > 0 {
                    "from transformers import AutoModel, BitsAndBytesConfig\nmodel = AutoModel.from_pretrained(path, quantization_config=BitsAndBytesConfig(load_in_4bit=True))  # the class the file was saved from"
                } else {
                    "from transformers import AutoModel, BitsAndBytesConfig\nmodel = AutoModel.from_pretrained(path, quantization_config=BitsAndBytesConfig(load_in_8bit=True))  # the class the file was saved from"
                },
            )],
            n,
        ));
    }
    let packed = count(entries, |e| ends_with_any(&e.key, &[".qweight", ".qzeros"]));
    if packed > 0 {
        let gptq = entries.iter().any(|e| e.key.ends_with(".g_idx"));
        let term = if gptq {
            "\"GPTQ\" quantized checkpoint"
        } else {
            "\"AWQ\" quantized checkpoint"
        };
        return Some(layout(
            if gptq { "quantized-gptq" } else { "quantized-awq" },
            term,
            format!(
                "{packed} packed tensors (`qweight`, `qzeros`{}, with `scales`): int4 values packed into int32, so their shapes are not the model's",
                if gptq { ", `g_idx`" } else { "" }
            ),
            "load it with its quantization config (transformers reads it from config.json with the GPTQ/AWQ kernels installed), or use the unquantized checkpoint",
            &[(
                "Python",
                "from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained(path)  # needs gptqmodel/optimum (GPTQ) or autoawq (AWQ)",
            )],
            n,
        ));
    }
    let lora = count(entries, |e| {
        [
            "lora_A.",
            "lora_B.",
            "lora_up.",
            "lora_down.",
            "lora_A",
            "lora_B",
        ]
        .iter()
        .any(|part| e.key.contains(part))
    });
    if lora * 2 >= n {
        let kohya = entries.iter().any(|e| e.key.contains("lora_up."));
        let rank = entries
            .iter()
            .find(|e| e.key.contains("lora_A.") || e.key.contains("lora_down."))
            .and_then(|e| e.shape.first().copied());
        return Some(layout(
            "lora-adapter",
            "\"LoRA\" adapter",
            format!(
                "{lora} of {n} tensors are low-rank pairs ({}){}: an adapter for a base model, not a model, so it never loads as the model's state dict",
                if kohya { "kohya-style `lora_up`/`lora_down`" } else { "PEFT `lora_A`/`lora_B`" },
                rank.map(|r| format!(", rank {r}")).unwrap_or_default()
            ),
            "load the base model, then apply the adapter (and merge it to get one state dict)",
            &[if kohya {
                ("Python (diffusers)", "pipe.load_lora_weights(path)")
            } else {
                (
                    "Python (PEFT)",
                    "from peft import PeftModel\nmodel = PeftModel.from_pretrained(base_model, adapter_dir)\nmodel = model.merge_and_unload()",
                )
            }],
            n,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(keys: &[(&str, &[u64])]) -> Vec<StateEntry> {
        keys.iter()
            .map(|(key, shape)| StateEntry {
                key: key.to_string(),
                shape: shape.to_vec(),
                dtype: "F32".to_string(),
            })
            .collect()
    }

    #[test]
    fn each_layout_is_recognised_by_its_keys_and_shapes() {
        let cases: Vec<(Vec<StateEntry>, Option<&str>)> = vec![
            (
                entries(&[("a.weight", &[0]), ("a.bias", &[0]), ("b.weight", &[4, 4])]),
                Some("deepspeed-zero3"),
            ),
            (
                entries(&[
                    ("q.weight", &[32, 1]),
                    ("q.weight.absmax", &[4]),
                    ("q.weight.quant_state.bitsandbytes__nf4", &[1]),
                ]),
                Some("quantized-bitsandbytes"),
            ),
            (
                entries(&[("q.weight", &[4, 4]), ("q.SCB", &[4])]),
                Some("quantized-bitsandbytes"),
            ),
            (
                entries(&[
                    ("q.qweight", &[2, 8]),
                    ("q.qzeros", &[1, 1]),
                    ("q.scales", &[1, 8]),
                    ("q.g_idx", &[16]),
                ]),
                Some("quantized-gptq"),
            ),
            (
                entries(&[
                    ("q.qweight", &[2, 8]),
                    ("q.qzeros", &[1, 1]),
                    ("q.scales", &[1, 8]),
                ]),
                Some("quantized-awq"),
            ),
            (
                entries(&[
                    ("base_model.model.q.lora_A.weight", &[8, 64]),
                    ("base_model.model.q.lora_B.weight", &[64, 8]),
                ]),
                Some("lora-adapter"),
            ),
            (
                entries(&[
                    ("lora_unet_x.lora_down.weight", &[4, 32]),
                    ("lora_unet_x.lora_up.weight", &[32, 4]),
                    ("lora_unet_x.alpha", &[]),
                ]),
                Some("lora-adapter"),
            ),
            (entries(&[("a.weight", &[4, 4]), ("a.bias", &[4])]), None),
        ];
        for (entries, expected) in cases {
            let found = recognise(&entries).map(|layout| layout.cause.cause);
            assert_eq!(
                found.as_deref(),
                expected,
                "{:?}",
                entries.iter().map(|e| &e.key).collect::<Vec<_>>()
            );
        }
    }
}
