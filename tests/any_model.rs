//! Any PyTorch model, PyTorch-exact: tests/fixtures/any_model
//! (make_any_model_fixtures.py) builds real timm, torchvision, diffusers and
//! whisper models and a custom `nn.Module`, dumps each with the snippet
//! ckptcheck ships (src/arch/dump_snippet.py), writes checkpoints that fail
//! the usual ways, and records what `load_state_dict` returns and raises.
//! For every pair, ckptcheck's verdict, lists (in order) and error text
//! must be PyTorch's, against the dump and against a reference checkpoint,
//! and the structural explanation must name the right cause.

use ckptcheck::diagnosis::{check, model_from_reference};
use ckptcheck::loader::Loader;
use ckptcheck::source::FileSource;
use ckptcheck::{arch, format, Checkpoint};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/any_model")
        .join(name)
}

fn read(name: &str) -> Checkpoint {
    let source = FileSource::open(&fixture(name)).expect("open");
    format::read_checkpoint(&source).expect("read")
}

fn dump(model: &str) -> arch::ModelSpec {
    let name = format!("{model}.dump.json");
    let text = std::fs::read_to_string(fixture(&name)).expect("dump");
    let value: Value = serde_json::from_str(&text).expect("json");
    arch::dump::model_from_dump(&name, &value).expect("model")
}

fn pairs() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("expected");
    let expected: Value = serde_json::from_str(&text).expect("json");
    let classes: std::collections::HashMap<&str, &Value> = expected["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| (m["name"].as_str().expect("name"), &m["class"]))
        .collect();
    expected["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|case| {
            let mut case = case.clone();
            case["class"] = classes[case["model"].as_str().expect("model")].clone();
            case
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

/// The causes each kind of failure must be explained by (any of them first).
fn causes_for(case: &str) -> &'static [&'static str] {
    match case {
        "ok" => &[],
        "other_head" => &["head-size"],
        "other_resolution" => &["resolution"],
        "prefix" => &["ddp-prefix"],
        "missing_block" => &["missing-block", "layer-count"],
        "extra_blocks" => &["layer-count"],
        "nonpersistent_saved" => &["stale-buffer"],
        "other_size" => &["width", "layer-count"],
        // The custom module's cases, other families' own mismatches.
        _ => &[
            "width",
            "layer-count",
            "missing-block",
            "head-size",
            "ddp-prefix",
            "unexplained-keys",
        ],
    }
}

#[test]
fn every_pair_gets_pytorchs_verdict_lists_and_text_against_the_dump() {
    let pairs = pairs();
    assert!(pairs.len() >= 30, "{} pairs", pairs.len());
    let mut models = std::collections::BTreeSet::new();
    for pair in &pairs {
        let (model_name, file) = (
            pair["model"].as_str().expect("model"),
            pair["checkpoint"].as_str().expect("checkpoint"),
        );
        models.insert(model_name.to_string());
        let model = dump(model_name);
        let report = check(&read(file), &model, Loader::Strict);
        let what = format!("{file} into {model_name}");
        assert_eq!(
            report.missing_keys,
            strings(&pair["missing_keys"]),
            "{what}: missing"
        );
        assert_eq!(
            report.unexpected_keys,
            strings(&pair["unexpected_keys"]),
            "{what}: unexpected"
        );
        let mismatches: Vec<Value> = report
            .size_mismatches
            .iter()
            .map(|m| serde_json::json!([m.key, m.checkpoint_shape, m.model_shape]))
            .collect();
        assert_eq!(
            Value::Array(mismatches),
            pair["size_mismatches"],
            "{what}: mismatches"
        );
        assert_eq!(
            report.pytorch_error.as_deref(),
            pair["pytorch_error"].as_str(),
            "{what}: text"
        );
        assert_eq!(report.loads, pair["pytorch_error"].is_null(), "{what}");
        let case = pair["case"].as_str().expect("case");
        let expected = if report.loads {
            &[][..]
        } else {
            causes_for(case)
        };
        eprintln!(
            "{what} ({case}): {}",
            report
                .explanation
                .first()
                .map(|c| c.text.as_str())
                .unwrap_or("loads")
        );
        if !expected.is_empty() {
            let first = report
                .explanation
                .first()
                .map(|c| c.cause.as_str())
                .unwrap_or("");
            assert!(
                expected.contains(&first),
                "{what} ({case}): {:#?}",
                report.explanation
            );
        }
    }
    assert!(models.len() >= 12, "{models:?}");
}

#[test]
fn a_reference_checkpoint_is_the_model_its_tensors_describe() {
    // The model's own weights as the reference: the same lists as against
    // the dump (PyTorch's text then names `<reference model>`).
    for pair in pairs() {
        let model_name = pair["model"].as_str().expect("model");
        let file = pair["checkpoint"].as_str().expect("checkpoint");
        let reference = format!("{model_name}__ok.pt");
        if !fixture(&reference).exists() || model_name == "mynet" {
            // MyNet's checkpoints test the module tree, which only a dump has.
            continue;
        }
        let report = check(
            &read(file),
            &model_from_reference(&read(&reference)),
            Loader::Strict,
        );
        let what = format!("{file} against {reference}");
        assert_eq!(
            report.missing_keys,
            strings(&pair["missing_keys"]),
            "{what}"
        );
        assert_eq!(
            report.unexpected_keys,
            strings(&pair["unexpected_keys"]),
            "{what}"
        );
        assert_eq!(
            report.size_mismatches.len(),
            pair["size_mismatches"].as_array().expect("list").len(),
            "{what}"
        );
        if let Some(text) = pair["pytorch_error"].as_str() {
            let class = pair["class"].as_str().unwrap_or_default();
            assert_eq!(
                report
                    .pytorch_error
                    .as_deref()
                    .map(|t| t.replace("<reference model>", class)),
                Some(text.to_string()),
                "{what}"
            );
        }
    }
}

#[test]
fn the_cli_checks_against_a_dump_prints_the_snippet_and_answers_diff() {
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
            .args(args)
            .output()
            .expect("run")
    };
    let snippet = run(&["snippet".as_ref()]);
    assert_eq!(snippet.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&snippet.stdout),
        arch::dump::SNIPPET
    );
    let out = run(&[
        "check".as_ref(),
        fixture("mynet__ok.pt").as_os_str(),
        "--model".as_ref(),
        fixture("mynet.dump.json").as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&[
        "check".as_ref(),
        fixture("mynet__other_head.pt").as_os_str(),
        "--model".as_ref(),
        fixture("mynet.dump.json").as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["class_name"], "MyNet");
    assert_eq!(json["explanation"][0]["cause"], "head-size");
    // --config and --model together are a usage error.
    let out = run(&[
        "check".as_ref(),
        fixture("mynet__ok.pt").as_os_str(),
        "--model".as_ref(),
        fixture("mynet.dump.json").as_os_str(),
        "--config".as_ref(),
        "ViT-B-16@RoBERTa-wwm-ext-base-chinese".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // diff: B against A's tensors, with the structural answer.
    let out = run(&[
        "diff".as_ref(),
        fixture("mynet__ok.pt").as_os_str(),
        fixture("mynet__other_head.pt").as_os_str(),
        "--json".as_ref(),
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["b_loads_into_a"]["loads"], false);
    assert_eq!(
        json["b_loads_into_a"]["explanation"][0]["cause"],
        "head-size"
    );
    assert!(json["shape_changed"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
}

#[test]
fn a_malformed_or_future_dump_is_an_error_naming_the_field() {
    let text = std::fs::read_to_string(fixture("mynet.dump.json")).expect("dump");
    let mut value: Value = serde_json::from_str(&text).expect("json");
    value["version"] = serde_json::json!(2);
    let error = arch::dump::model_from_dump("mynet.dump.json", &value).expect_err("v2");
    assert!(error.message.contains("\"version\""), "{error}");
    value["version"] = serde_json::json!(1);
    value["state_dict"][0]["shape"] = serde_json::json!("big");
    let error = arch::dump::model_from_dump("mynet.dump.json", &value).expect_err("shape");
    assert!(error.message.contains("state_dict[0].shape"), "{error}");
}

#[test]
fn a_transformers_dump_with_the_hf_loader_judges_as_its_config_does() {
    // tests/fixtures/diagnoses: a GPT-2 saved by save_pretrained (tied
    // lm_head stored once) and a BERT state dict with the stale
    // position_ids buffer; the dumps record the tie and the non-persistent
    // buffer, and from_pretrained's rules follow from them.
    let diagnoses = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diagnoses");
    let read_at = |name: &str| {
        let source = FileSource::open(&diagnoses.join(name)).expect("open");
        format::read_checkpoint(&source).expect("read")
    };
    let from_dump = |name: &str| {
        let text = std::fs::read_to_string(diagnoses.join(name)).expect("dump");
        arch::dump::model_from_dump(name, &serde_json::from_str(&text).expect("json"))
            .expect("model")
    };
    let from_config = |name: &str| {
        let text = std::fs::read_to_string(diagnoses.join(name)).expect("config");
        arch::model_from_config_json(&[(name.to_string(), text)]).expect("model")
    };
    for (file, dump_name, config, loads_strictly) in [
        (
            "gpt2/model.safetensors",
            "gpt2.dump.json",
            "gpt2/config.json",
            false,
        ),
        ("old_bert.pt", "bert.dump.json", "bert_config.json", false),
    ] {
        let checkpoint = read_at(file);
        for loader in [Loader::Hf, Loader::Strict] {
            let by_dump = check(&checkpoint, &from_dump(dump_name), loader);
            let by_config = check(&checkpoint, &from_config(config), loader);
            assert_eq!(by_dump.loads, by_config.loads, "{file} {loader:?}");
            assert_eq!(by_dump.verdict, by_config.verdict, "{file} {loader:?}");
            assert_eq!(
                by_dump.missing_keys, by_config.missing_keys,
                "{file} {loader:?}"
            );
            assert_eq!(
                by_dump.unexpected_keys, by_config.unexpected_keys,
                "{file} {loader:?}"
            );
            assert_eq!(
                by_dump.pytorch_error, by_config.pytorch_error,
                "{file} {loader:?}"
            );
            if loader == Loader::Strict {
                assert_eq!(by_dump.loads, loads_strictly, "{file}");
            } else {
                assert!(
                    by_dump.loads && by_dump.warnings.is_empty(),
                    "{file}: {:?}",
                    by_dump.warnings
                );
            }
        }
    }
}

/// A small deterministic generator (no dependency): xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below.max(1)
    }
}

#[test]
fn the_structural_explanation_never_panics_on_odd_shapes_and_names() {
    // Names that look like blocks, heads, position embeddings, prefixes and
    // numbered parts at the end; shapes with zero, one and four dims.
    let names = [
        "blocks.0.w",
        "blocks.1.w",
        "blocks.12.w",
        "blocks.3.attn.0",
        "pos_embed",
        "module.pos_embed",
        "head.weight",
        "head.bias",
        "fc.0",
        "layer_1.x",
        "x",
        "a.b.c.d.e",
        "patch_embed.proj.weight",
        "stages.1.blocks.0.w",
        "0.1.2",
        "_.1",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let shape = |rng: &mut Rng| -> Vec<u64> {
        (0..rng.next(5))
            .map(|_| [0, 1, 2, 3, 17, 197, 577][rng.next(7) as usize])
            .collect()
    };
    for _ in 0..400 {
        let mut seen = std::collections::HashSet::new();
        let mut model_entries = Vec::new();
        for _ in 0..rng.next(8) {
            let name = names[rng.next(names.len() as u64) as usize];
            if seen.insert(name) {
                let dims = shape(&mut rng);
                model_entries
                    .push(serde_json::json!({"key": name, "shape": dims, "dtype": "float32"}));
            }
        }
        let dump = serde_json::json!({"format": "ckptcheck-model-dump", "version": 1, "class": "M",
            "state_dict": model_entries, "modules": [{"name": ""}]});
        let model = arch::dump::model_from_dump("m.json", &dump).expect("model");
        let mut checkpoint = Checkpoint::new("c.pt", "pytorch-zip", 0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..rng.next(8) {
            let name = names[rng.next(names.len() as u64) as usize];
            if seen.insert(name) {
                let dims = shape(&mut rng);
                checkpoint
                    .tensors
                    .push(ckptcheck::TensorInfo::new(name, "F32", dims));
            }
        }
        let report = check(&checkpoint, &model, Loader::Strict);
        let _ = ckptcheck::diagnosis::to_text(&report);
        let reference = check(
            &checkpoint,
            &model_from_reference(&checkpoint),
            Loader::Strict,
        );
        assert!(
            reference.loads,
            "a checkpoint always loads into itself: {:?} {:?}",
            reference.pytorch_error,
            checkpoint
                .tensors
                .iter()
                .map(|t| (&t.name, &t.shape))
                .collect::<Vec<_>>()
        );
    }
}
