//! Diagnoses of the transformers and PEFT causes people post, against
//! fixtures the real libraries made (tests/fixtures/diagnoses,
//! make_diagnosis_fixtures.py and make_library_fixtures.py): a LoRA
//! adapter checked onto its base (`--loader peft`) as
//! `PeftModel.from_pretrained` loads it, a classifier head of another
//! `num_labels`, a resized vocabulary, from_pretrained's load report for a
//! file that loads with weights newly initialized, pickles whose
//! persistent ids are not storages, and the Lightning, timm and
//! bitsandbytes files as those libraries write them. Each library's own
//! text is compared verbatim where it has one.

use ckptcheck::diagnosis::{check, check_at, CheckReport, Verdict};
use ckptcheck::loader::Loader;
use ckptcheck::source::FileSource;
use ckptcheck::{arch, format, Checkpoint, ErrorKind};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/diagnoses")
        .join(name)
}

fn json_file(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).expect("read")).expect("json")
}

fn model(config: &str) -> arch::ModelSpec {
    let text = std::fs::read_to_string(fixture(config)).expect("config");
    arch::model_from_config_json(&[(config.to_string(), text)]).expect("model")
}

fn read(name: &str) -> Checkpoint {
    let source = FileSource::open(&fixture(name)).expect("open");
    format::read_checkpoint(&source).expect("read")
}

/// The adapter in `dir` with its adapter_config.json, as the CLI reads a
/// folder.
fn adapter(dir: &str) -> Checkpoint {
    let mut checkpoint = read(&format!("{dir}/adapter_model.safetensors"));
    let config = FileSource::open(&fixture(&format!("{dir}/adapter_config.json"))).expect("open");
    checkpoint.adapter_config = format::adapter_config(&config).expect("adapter config");
    assert!(checkpoint.adapter_config.is_some(), "{dir}");
    checkpoint
}

fn causes(report: &CheckReport) -> Vec<&str> {
    report
        .explanation
        .iter()
        .map(|c| c.cause.as_str())
        .collect()
}

fn remedies(report: &CheckReport) -> String {
    let fix = report.fix.as_ref().expect("a fix");
    let mut text = fix.summary.clone();
    for remedy in &fix.remedies {
        text.push('\n');
        text.push_str(&remedy.text);
    }
    text
}

/// The rows of transformers' LOAD REPORT table as a set (transformers keeps
/// the keys in sets, so their order is the hash's) with the notes.
fn report_rows(table: &str) -> BTreeSet<String> {
    table
        .lines()
        .map(|line| line.trim_end().to_string())
        .collect()
}

/// (adapter folder, base config, PEFT's outcome in expected.json, the cause
/// ids, words the fix or the verdict must say).
const ADAPTERS: &[(&str, &str, &str, &[&str], &str)] = &[
    ("lora", "bert_config.json", "", &[], ""),
    (
        "lora_wide",
        "bert_config.json",
        "",
        &["peft-base-mismatch"],
        "trained on",
    ),
    (
        "lora_no_targets",
        "bert_config.json",
        "",
        &["peft-target-modules"],
        "GPT2Model",
    ),
    (
        "lora_no_targets",
        "gpt2_model_config.json",
        "on_own_base",
        &[],
        "",
    ),
    (
        "lora_rank",
        "bert_config.json",
        "",
        &["peft-rank"],
        "\"r\": 4",
    ),
    (
        "lora_partial",
        "bert_config.json",
        "",
        &["peft-missing-adapter-keys"],
        "out of target_modules",
    ),
    (
        "lora_narrow",
        "bert_config.json",
        "",
        &["peft-unused-tensors"],
        "in target_modules",
    ),
    (
        "lora_resized",
        "bert_config.json",
        "",
        &["vocab-resized"],
        "resize_token_embeddings(70)",
    ),
];

#[test]
fn a_lora_adapter_is_checked_onto_its_base_as_peft_loads_it() {
    let expected = json_file("expected.json");
    // GPT2Model: the base the lora_no_targets adapter was made for.
    let mut gpt2 = json_file("gpt2/config.json");
    gpt2["architectures"] = serde_json::json!(["GPT2Model"]);
    std::fs::write(
        std::env::temp_dir().join("ckptcheck-gpt2_model_config.json"),
        gpt2.to_string(),
    )
    .expect("write");
    for (dir, base, outcome, cause_ids, says) in ADAPTERS {
        let base_model = if *base == "gpt2_model_config.json" {
            arch::model_from_config_json(&[("config.json".to_string(), gpt2.to_string())])
                .expect("gpt2")
        } else {
            model(base)
        };
        let report = check(&adapter(dir), &base_model, Loader::Peft);
        let recorded = &expected[format!("{dir}/adapter_model.safetensors")];
        let recorded = if outcome.is_empty() {
            recorded
        } else {
            &recorded[*outcome]
        };
        // PEFT's own error, verbatim: RuntimeError's text from
        // load_state_dict, or the error it stops with before loading.
        let peft_error = recorded["peft_error"].as_str();
        let ours = report.pytorch_error.as_deref();
        match peft_error {
            Some(text) if text.starts_with("RuntimeError: ") => {
                assert_eq!(ours, text.strip_prefix("RuntimeError: "), "{dir}")
            }
            other => assert_eq!(ours, other, "{dir} onto {base}"),
        }
        assert_eq!(report.loads, peft_error.is_none(), "{dir} onto {base}");
        // PEFT's warning, verbatim.
        let warned = recorded["peft_warnings"].as_array().expect("warnings");
        match warned.first().and_then(Value::as_str) {
            Some(warning) => assert_eq!(
                report.load_report.as_deref(),
                Some(format!("UserWarning: {warning}").as_str()),
                "{dir}"
            ),
            None => assert_eq!(report.load_report, None, "{dir}"),
        }
        assert_eq!(
            causes(&report),
            *cause_ids,
            "{dir} onto {base}: {:#?}",
            report.explanation
        );
        if cause_ids.is_empty() {
            assert_eq!(report.verdict, Verdict::Loads, "{dir}");
            assert!(ckptcheck::diagnosis::verdict_line(&report).starts_with("Adapter applies"));
        } else if report.loads {
            // PEFT loads it, but silently drops or leaves something out.
            assert_eq!(report.verdict, Verdict::LoadsWithWarnings, "{dir}");
            let text = format!("{} {}", remedies(&report), report.warnings.join(" "));
            assert!(text.contains(says), "{dir}: {text}");
        } else {
            assert!(
                remedies(&report).contains(says) || report.explanation[0].text.contains(says),
                "{dir}: {}",
                remedies(&report)
            );
        }
        // An adapter is never read as a config.
        assert!(report.inferred.fields.is_empty(), "{dir}");
    }
}

#[test]
fn the_cli_finds_adapter_config_beside_the_weights() {
    for target in ["lora_rank", "lora_rank/adapter_model.safetensors"] {
        let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
            .arg("check")
            .arg(fixture(target))
            .arg("--config")
            .arg(fixture("bert_config.json"))
            .args(["--loader", "peft", "--json"])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(1), "{target}");
        let json: Value = serde_json::from_slice(&output.stdout).expect("json");
        assert_eq!(json["explanation"][0]["cause"], "peft-rank", "{target}");
        assert_eq!(json["verdict"], "wont-load");
    }
    // Without --loader peft, the adapter is named and the peft loader offered.
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .arg("check")
        .arg(fixture("lora"))
        .arg("--config")
        .arg(fixture("bert_config.json"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text.contains("\"LoRA\" adapter") && text.contains("--loader peft"),
        "{text}"
    );
}

#[test]
fn a_classifier_head_of_another_num_labels_is_named_with_ignore_mismatched_sizes() {
    let expected = &json_file("expected.json")["seqcls/model.safetensors"];
    let checkpoint = read("seqcls/model.safetensors");
    let report = check(
        &checkpoint,
        &model("seqcls_3labels_config.json"),
        Loader::Hf,
    );
    assert!(!report.loads);
    assert_eq!(
        Some(format!(
            "RuntimeError: {}",
            report.pytorch_error.as_deref().unwrap_or("")
        ))
        .as_deref(),
        expected["from_pretrained_error"].as_str()
    );
    // transformers' LOAD REPORT, line for line.
    let table = report.load_report.as_deref().expect("report");
    let (prelude, table) = table.split_once('\n').expect("prelude");
    assert!(prelude.starts_with("BertForSequenceClassification LOAD REPORT from: "));
    assert_eq!(
        report_rows(table),
        report_rows(expected["load_report"].as_str().expect("report"))
    );
    assert_eq!(causes(&report), ["num-labels"]);
    let cause = &report.explanation[0];
    assert_eq!(
        (cause.checkpoint.as_u64(), cause.model.as_u64()),
        (Some(5), Some(3))
    );
    assert!(
        cause.text.contains("\"num_labels\"") && cause.text.contains("`id2label` has 3 entries"),
        "{}",
        cause.text
    );
    let fix = remedies(&report);
    assert!(
        fix.contains("ignore_mismatched_sizes=True") && fix.contains("num_labels=5"),
        "{fix}"
    );
    assert!(
        fix.contains("BertForSequenceClassification.from_pretrained"),
        "{fix}"
    );
}

#[test]
fn a_resized_vocabulary_is_named_with_resize_token_embeddings() {
    let expected = &json_file("expected.json")["resized_vocab.pt"];
    let report = check(
        &read("resized_vocab.pt"),
        &model("bert_config.json"),
        Loader::Strict,
    );
    assert_eq!(
        report.pytorch_error.as_deref(),
        expected["pytorch_error"].as_str()
    );
    assert_eq!(
        causes(&report),
        [expected["cause"].as_str().expect("cause")]
    );
    assert!(
        report.explanation[0].text.contains("6 tokens were added"),
        "{}",
        report.explanation[0].text
    );
    let fix = remedies(&report);
    assert!(
        fix.contains("model.resize_token_embeddings(70)") && fix.contains("\"vocab_size\": 70"),
        "{fix}"
    );
    // Another tokenizer's vocabulary is not a resize: bert-base-chinese's
    // 21128 tokens against bert-base-uncased's 30522 stays a config field.
    let mut wide = json_file("bert_config.json");
    wide["vocab_size"] = serde_json::json!(640);
    let other = arch::model_from_config_json(&[("config.json".to_string(), wide.to_string())])
        .expect("model");
    let report = check(&read("resized_vocab.pt"), &other, Loader::Strict);
    assert_eq!(
        causes(&report),
        ["config-field"],
        "{:#?}",
        report.explanation
    );
}

#[test]
fn from_pretrained_warnings_are_a_warning_with_transformers_load_report() {
    let expected = json_file("expected.json");
    let bert = model("bert_config.json");
    for (dir, warning) in [
        (
            "no_pooler",
            "2 of 39 weights newly initialized (MISSING from the checkpoint)",
        ),
        (
            "compiled_dir",
            "39 of 39 weights newly initialized (MISSING from the checkpoint): nothing was loaded",
        ),
    ] {
        let file = format!("{dir}/model.safetensors");
        let report = check(&read(&file), &bert, Loader::Hf);
        assert!(report.loads, "{dir}: from_pretrained does not raise");
        assert_eq!(report.verdict, Verdict::LoadsWithWarnings, "{dir}");
        assert_eq!(report.warnings[0], warning, "{dir}");
        let (_, table) = report
            .load_report
            .as_deref()
            .expect("report")
            .split_once('\n')
            .expect("prelude");
        assert_eq!(
            report_rows(table),
            report_rows(expected[&file]["load_report"].as_str().expect("recorded")),
            "{dir}"
        );
        // The command line says WARN and exits 3.
        let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
            .arg("check")
            .arg(fixture(dir))
            .arg("--config")
            .arg(fixture("bert_config.json"))
            .args(["--loader", "hf"])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(3), "{dir}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.starts_with("WARN Loads, but "), "{text}");
    }
}

#[test]
fn a_persistent_id_that_is_not_a_storage_is_an_error_as_in_torch() {
    let expected = json_file("expected.json");
    for (file, torch_says) in [
        ("bare_persistent_id.pt", "saved_id must be a tuple, got int"),
        (
            "foreign_persistent_id.pt",
            "Only persistent_load of storage is allowed, but got <class 'str'>",
        ),
    ] {
        let recorded = expected[file]["torch_load_error"]
            .as_str()
            .expect("recorded");
        assert!(
            recorded.contains(torch_says),
            "the fixture records torch's words: {recorded}"
        );
        let source = FileSource::open(&fixture(file)).expect("open");
        let error = format::read_checkpoint(&source).expect_err(file);
        assert_eq!(error.kind, ErrorKind::BadPickle, "{file}");
        assert!(error.message.contains(torch_says), "{file}: {error}");
        assert!(error.offset.is_some(), "{file}: the byte offset is named");
        assert!(error.to_string().contains(file));
    }
}

#[test]
fn a_lightning_checkpoint_from_the_trainer_is_unwrapped_and_its_prefix_named() {
    let expected = &json_file("library/expected.json")["lightning.ckpt"];
    let report = check(
        &read("library/lightning.ckpt"),
        &model("bert_config.json"),
        Loader::Strict,
    );
    assert_eq!(report.state_dict_path, ["state_dict"]);
    assert_eq!(
        report.pytorch_error.as_deref(),
        expected["state_dict_pytorch_error"].as_str()
    );
    assert_eq!(
        report.whole_file_pytorch_error.as_deref(),
        expected["whole_file_pytorch_error"].as_str()
    );
    assert_eq!(
        causes(&report),
        ["lightning-prefix"],
        "{:#?}",
        report.explanation
    );
    let fix = remedies(&report);
    assert!(fix.contains("removeprefix(\"model.\")"), "{fix}");
}

#[test]
fn timm_ema_weights_from_its_checkpoint_saver_are_named_and_picked() {
    let expected = &json_file("library/expected.json")["timm_ema.pth.tar"];
    // The timm model's own state_dict() keys (recorded by the script).
    let keys = json_file("library/timm_ema_model_keys.json");
    let model = arch::ModelSpec {
        family: "timm".to_string(),
        class_name: "VisionTransformer".to_string(),
        preset: None,
        config: Value::Null,
        tensors: keys
            .as_array()
            .expect("keys")
            .iter()
            .map(|entry| arch::ExpectedTensor {
                name: entry[0].as_str().expect("name").to_string(),
                shape: entry[1]
                    .as_array()
                    .expect("shape")
                    .iter()
                    .filter_map(Value::as_u64)
                    .collect(),
                dtype: "F32".to_string(),
                depends_on: Vec::new(),
                exists_if: Vec::new(),
            })
            .collect(),
        batchnorm_modules: Vec::new(),
        base_model_prefix: String::new(),
        tied_keys: Vec::new(),
        module_kinds: Vec::new(),
        module_names: Vec::new(),
        non_persistent: Vec::new(),
    };
    let checkpoint = read("library/timm_ema.pth.tar");
    let report = check(&checkpoint, &model, Loader::Strict);
    assert!(report.loads, "{:?}", report.pytorch_error);
    assert_eq!(report.state_dict_path, ["state_dict"]);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("--state-dict-path state_dict_ema")),
        "{:?}",
        report.notes
    );
    assert_eq!(
        report.whole_file_pytorch_error.as_deref(),
        expected["whole_file_pytorch_error"].as_str()
    );
    // The saver pickles its argparse.Namespace: torch's refusal, named.
    assert!(expected["weights_only_load"]
        .to_string()
        .contains("argparse.Namespace"));
    let audit = checkpoint.pickle_audit.as_ref().expect("audit");
    assert!(!audit.weights_only_loads && audit.dangerous.is_empty());
    let ema = check_at(
        &checkpoint,
        &model,
        Loader::Strict,
        &["state_dict_ema".to_string()],
    )
    .expect("ema");
    assert!(ema.loads && ema.state_dict_path == ["state_dict_ema"]);
}

#[test]
fn bitsandbytes_files_from_transformers_are_named_with_their_bits() {
    let expected = json_file("library/expected.json");
    for (file, bits) in [
        ("bnb4.safetensors", "load_in_4bit=True"),
        ("bnb8.safetensors", "load_in_8bit=True"),
    ] {
        let report = check(
            &read(&format!("library/{file}")),
            &model("bert_config.json"),
            Loader::Strict,
        );
        assert_eq!(
            report.pytorch_error.as_deref(),
            expected[file]["pytorch_error"].as_str(),
            "{file}"
        );
        assert_eq!(causes(&report), ["quantized-bitsandbytes"], "{file}");
        assert!(
            report.inferred.fields.is_empty(),
            "{file}: nothing read off packed shapes"
        );
        assert!(remedies(&report).contains(bits), "{file}");
    }
}

#[test]
fn deepspeed_zero3_files_written_by_deepspeed_are_named_not_read_as_config() {
    let expected = json_file("library/deepspeed/expected.json");
    for (file, path) in [
        ("zero3_state_dict.pt", Vec::<String>::new()),
        (
            "zero3_checkpoint/global_step0/zero_pp_rank_0_mp_rank_00_model_states.pt",
            vec!["module".to_string()],
        ),
    ] {
        let report = check(
            &read(&format!("library/deepspeed/{file}")),
            &model("bert_config.json"),
            Loader::Strict,
        );
        assert_eq!(report.state_dict_path, path, "{file}");
        // PyTorch's text for loading the placeholders, verbatim.
        assert_eq!(
            report.pytorch_error.as_deref(),
            expected[file]["pytorch_error"].as_str(),
            "{file}"
        );
        assert_eq!(causes(&report), ["deepspeed-zero3"], "{file}");
        assert!(
            report.inferred.fields.is_empty(),
            "{file}: no \"hidden_size: 0\""
        );
        assert!(remedies(&report).contains("zero_to_fp32.py"), "{file}");
    }
}
