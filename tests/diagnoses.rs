//! Diagnoses that hold in the wild (the failures people post), against
//! fixtures made by the real libraries in tests/fixtures/diagnoses
//! (make_diagnosis_fixtures.py): each cause is detected, named in the
//! ecosystem's words, shown with its evidence and given a fix, with a
//! stable `cause` id in `--json`.

use ckptcheck::diagnosis::check;
use ckptcheck::loader::Loader;
use ckptcheck::source::FileSource;
use ckptcheck::{arch, format, ErrorKind};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/diagnoses")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("read");
    serde_json::from_str(&text).expect("json")
}

/// (file, words the message must say, words the fix must say).
const NOT_CHECKPOINTS: &[(&str, &str, &str)] = &[
    ("lfs_pointer.bin", "Git LFS pointer", "git lfs pull"),
    ("html_page.bin", "Quota exceeded", "download the file again"),
    ("ggjt.bin", "GGJT v3", "GGUF"),
    ("keras.h5", "HDF5", "keras"),
    ("arrays.npy", "NumPy", "numpy.load"),
    ("arrays.npz", "NumPy `.npz`", "numpy.load"),
    ("plain.pkl", "plain pickle", "pickle.load"),
    ("tiny.onnx", "ONNX", "onnxruntime"),
    ("truncated.safetensors", "", "download or copy it again"),
];

#[test]
fn files_that_are_not_checkpoints_are_named_with_their_fix() {
    let expected = expected();
    for (file, says, fix) in NOT_CHECKPOINTS {
        let source = FileSource::open(&fixture(file)).expect("open");
        let error = format::read_checkpoint(&source).expect_err(file);
        assert_eq!(
            error.cause(),
            expected[file]["cause"].as_str(),
            "{file}: {error}"
        );
        assert!(error.message.contains(says), "{file}: {error}");
        assert!(
            error.fix().is_some_and(|f| f.contains(fix)),
            "{file}: {error}"
        );
        assert!(error.to_string().contains(file), "{file}: {error}");
    }
}

#[test]
fn json_errors_carry_the_kind_and_the_cause() {
    for (file, _, _) in NOT_CHECKPOINTS {
        let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
            .args(["inspect", "--json"])
            .arg(fixture(file))
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{file}");
        let json: Value = serde_json::from_slice(&output.stdout).expect("json on stdout");
        let error = &json["error"];
        let kind = if *file == "truncated.safetensors" {
            "invalid_header"
        } else {
            "unsupported_format"
        };
        assert!(
            error["kind"] == kind || error["kind"] == "truncated",
            "{file}: {json}"
        );
        assert!(
            error["cause"].is_string() && error["fix"].is_string(),
            "{file}: {json}"
        );
    }
}

fn bert() -> arch::ModelSpec {
    let text = std::fs::read_to_string(fixture("bert_config.json")).expect("config");
    arch::model_from_config_json(&[("bert_config.json".to_string(), text)]).expect("model")
}

#[test]
fn torch_compile_prefixes_are_named_as_torch_compile_not_ddp() {
    let expected = expected();
    for file in ["compiled_bert.pt", "compiled_ddp_bert.pt"] {
        let source = FileSource::open(&fixture(file)).expect("open");
        let checkpoint = format::read_checkpoint(&source).expect("read");
        let report = check(&checkpoint, &bert(), Loader::Strict);
        assert!(!report.loads);
        // PyTorch's own text, verbatim.
        assert_eq!(
            report.pytorch_error.as_deref(),
            expected[file]["pytorch_error"].as_str(),
            "{file}"
        );
        let first = &report.explanation[0];
        assert_eq!(first.cause, "torch-compile-prefix", "{file}: {first:?}");
        assert!(first.text.contains("\"torch.compile\""), "{}", first.text);
        let fix = report.fix.expect("fix");
        let remedies: Vec<&str> = fix.remedies.iter().map(|r| r.text.as_str()).collect();
        assert!(
            remedies
                .iter()
                .any(|r| r.contains("removeprefix(\"") && r.contains("_orig_mod.")),
            "{file}: {remedies:?}"
        );
        assert!(
            remedies
                .iter()
                .any(|r| r.contains("._orig_mod.state_dict()")),
            "{remedies:?}"
        );
    }
}

#[test]
fn safetensors_say_how_to_load_them() {
    let source = FileSource::open(&fixture("weights.safetensors")).expect("open");
    let checkpoint = format::read_checkpoint(&source).expect("read");
    let bytes = std::fs::read(fixture("weights.safetensors")).expect("bytes");
    let first = bytes[0];
    let shown = if (0x20..0x7f).contains(&first) {
        (first as char).to_string()
    } else {
        format!("\\x{first:02x}")
    };
    assert!(
        checkpoint
            .notes
            .iter()
            .any(|n| n.contains(&format!("invalid load key, '{shown}'"))
                && n.contains("safetensors.torch.load_file")),
        "{:?}",
        checkpoint.notes
    );
}

#[test]
fn an_empty_file_is_truncated_with_a_fix() {
    let source = ckptcheck::source::SliceSource::new("empty.pt", &[]);
    let error = format::read_checkpoint(&source).expect_err("empty");
    assert_eq!(error.kind, ErrorKind::Truncated);
    assert!(error.fix().is_some(), "{error}");
}

/// (file, loader, cause id, words the fix must say).
const LAYOUTS: &[(&str, Loader, &str, &str)] = &[
    (
        "zero3.pt",
        Loader::Strict,
        "deepspeed-zero3",
        "zero_to_fp32.py",
    ),
    (
        "gptq.safetensors",
        Loader::Hf,
        "quantized-gptq",
        "from_pretrained",
    ),
    (
        "bnb4.safetensors",
        Loader::Strict,
        "quantized-bitsandbytes",
        "BitsAndBytesConfig",
    ),
    (
        "lora/adapter_model.safetensors",
        Loader::Hf,
        "lora-adapter",
        "PeftModel.from_pretrained",
    ),
    (
        "lora/adapter_model.safetensors",
        Loader::Strict,
        "lora-adapter",
        "merge_and_unload",
    ),
];

#[test]
fn shapes_that_are_not_the_architecture_are_never_read_as_config() {
    for (file, loader, cause, fix_says) in LAYOUTS {
        let source = FileSource::open(&fixture(file)).expect("open");
        let checkpoint = format::read_checkpoint(&source).expect("read");
        let report = check(&checkpoint, &bert(), *loader);
        assert!(
            !report.loads,
            "{file}: an adapter or a partitioned/quantized file is not a model that loads"
        );
        assert_eq!(
            report.explanation.len(),
            1,
            "{file}: {:?}",
            report.explanation
        );
        let explained = &report.explanation[0];
        assert_eq!(explained.cause, *cause, "{file}");
        // Nothing is inferred from packed or empty shapes (the harmful
        // "hidden_size: checkpoint 0" of a ZeRO-3 file).
        assert!(
            report.inferred.fields.is_empty(),
            "{file}: {:?}",
            report.inferred.fields
        );
        assert!(report.inferred.config.is_null());
        let fix = report.fix.expect("fix");
        assert!(
            fix.remedies.iter().any(|r| r.text.contains(fix_says)),
            "{file}: {fix:?}"
        );
    }
}

#[test]
fn a_training_checkpoint_says_what_loading_the_whole_file_does() {
    let expected = expected();
    let source = FileSource::open(&fixture("training.ckpt")).expect("open");
    let checkpoint = format::read_checkpoint(&source).expect("read");
    let report = check(&checkpoint, &bert(), Loader::Strict);
    // The verdict is for the nested weights ...
    assert!(report.loads, "{:?}", report.pytorch_error);
    assert_eq!(report.state_dict_path, vec!["state_dict"]);
    // ... and PyTorch's own text for load_state_dict(torch.load(f)), verbatim.
    assert_eq!(
        report.whole_file_pytorch_error.as_deref(),
        expected["training.ckpt"]["whole_file_pytorch_error"].as_str()
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("training checkpoint")
                && n.contains("torch.load(f)[\"state_dict\"]")),
        "{:?}",
        report.notes
    );
}

#[test]
fn ema_weights_are_named_and_can_be_picked() {
    let source = FileSource::open(&fixture("ema.pt")).expect("open");
    let checkpoint = format::read_checkpoint(&source).expect("read");
    let report = check(&checkpoint, &bert(), Loader::Strict);
    assert_eq!(report.state_dict_path, vec!["state_dict"]);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("EMA") && n.contains("--state-dict-path state_dict_ema")),
        "{:?}",
        report.notes
    );
    let ema = ckptcheck::diagnosis::check_at(
        &checkpoint,
        &bert(),
        Loader::Strict,
        &["state_dict_ema".to_string()],
    )
    .expect("ema");
    assert!(ema.loads && ema.state_dict_path == vec!["state_dict_ema"]);
    let error =
        ckptcheck::diagnosis::check_at(&checkpoint, &bert(), Loader::Strict, &["ema".to_string()])
            .expect_err("no such dict");
    assert_eq!(error.kind, ErrorKind::BadArgument);
    assert!(error.message.contains("state_dict_ema"), "{error}");
    // The same from the command line.
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .arg("check")
        .arg(fixture("ema.pt"))
        .arg("--config")
        .arg(fixture("bert_config.json"))
        .args(["--state-dict-path", "state_dict_ema", "--json"])
        .output()
        .expect("run");
    let json: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        json["state_dict_path"],
        serde_json::json!(["state_dict_ema"])
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn tied_weights_and_stale_buffers_are_named_with_their_fix() {
    let expected = expected();
    let gpt2_config = std::fs::read_to_string(fixture("gpt2/config.json")).expect("gpt2 config");
    let gpt2 = arch::model_from_config_json(&[("config.json".to_string(), gpt2_config)])
        .expect("gpt2 model");
    let cases = [
        (
            "gpt2/model.safetensors",
            gpt2,
            "tied-weights",
            "tie_weights()",
        ),
        ("old_bert.pt", bert(), "stale-buffer", "sd.pop(key, None)"),
    ];
    for (file, model, cause, fix_says) in cases {
        let source = FileSource::open(&fixture(file)).expect("open");
        let checkpoint = format::read_checkpoint(&source).expect("read");
        let report = check(&checkpoint, &model, Loader::Strict);
        assert_eq!(
            report.pytorch_error.as_deref(),
            expected[file]["pytorch_error"].as_str(),
            "{file}"
        );
        assert_eq!(
            report.explanation.len(),
            1,
            "{file}: {:?}",
            report.explanation
        );
        assert_eq!(report.explanation[0].cause, cause, "{file}");
        let fix = report.fix.expect("fix");
        assert!(
            fix.remedies.iter().any(|r| r.text.contains(fix_says)),
            "{file}: {fix:?}"
        );
        // from_pretrained tolerates both: the hf loader says it loads.
        assert!(check(&checkpoint, &model, Loader::Hf).loads, "{file}");
    }
}

/// tests/fixtures/models/hf_llama (make_model_fixtures.py): a
/// LlamaForCausalLM with 4 query heads and 2 key/value heads.
#[test]
fn guessed_head_counts_are_never_a_cause_and_are_marked_in_a_suggested_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/hf_llama");
    let source = FileSource::open(&dir.join("model.safetensors")).expect("open");
    let checkpoint = format::read_checkpoint(&source).expect("read");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
            .expect("json");
    // Other key/value heads: k_proj and v_proj rows differ, and so does the
    // intermediate size (a field the shapes do show).
    config["num_key_value_heads"] = serde_json::json!(4);
    config["intermediate_size"] = serde_json::json!(64);
    let model = arch::model_from_config_json(&[("config.json".to_string(), config.to_string())])
        .expect("model");
    let report = check(&checkpoint, &model, Loader::Strict);
    assert!(!report.loads);
    for cause in &report.explanation {
        assert!(
            !cause.field.contains("heads"),
            "a head count is not visible in shapes: {cause:?}"
        );
    }
    assert!(
        report
            .explanation
            .iter()
            .any(|c| c.field == "intermediate_size"),
        "{:?}",
        report.explanation
    );
    let remedy = report
        .fix
        .as_ref()
        .and_then(|fix| {
            fix.remedies
                .iter()
                .find(|r| r.label.starts_with("config JSON"))
        })
        .expect("an inferred config is suggested");
    assert!(
        remedy.label.contains("guessed") && remedy.label.contains("num_attention_heads"),
        "{}",
        remedy.label
    );
}

#[test]
fn gguf_says_its_architecture_and_what_a_runtime_makes_of_it() {
    let cases = [
        ("mmproj.gguf", "clip", "--mmproj"),
        (
            "no_arch.gguf",
            "(missing)",
            "unknown model architecture: ''",
        ),
    ];
    for (file, architecture, note_says) in cases {
        let source = FileSource::open(&fixture(file)).expect("open");
        let checkpoint = format::read_checkpoint(&source).expect("read");
        assert!(
            checkpoint.notes.iter().any(|n| n.contains(note_says)),
            "{file}: {:?}",
            checkpoint.notes
        );
        let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
            .arg("inspect")
            .arg(fixture(file))
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(&format!("general.architecture: {architecture}\n")),
            "{file}: {text}"
        );
    }
    // A language model's GGUF gets no such note.
    let source = FileSource::open(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/small.gguf"),
    )
    .expect("open");
    let checkpoint = format::read_checkpoint(&source).expect("read");
    assert!(
        !checkpoint.notes.iter().any(|n| n.contains("architecture")),
        "{:?}",
        checkpoint.notes
    );
}

#[test]
fn a_pickle_that_needs_code_names_the_module_and_the_fix() {
    let expected = expected();
    let source = FileSource::open(&fixture("whole_model.pt")).expect("open");
    let checkpoint = format::read_checkpoint(&source).expect("read");
    let audit = checkpoint.pickle_audit.as_ref().expect("audit");
    assert!(!audit.weights_only_loads && audit.dangerous.is_empty());
    // torch refuses it for the same global ckptcheck names.
    let torch_says = expected["whole_model.pt"]["torch_load_error"]
        .as_str()
        .expect("torch's refusal");
    assert!(
        torch_says.contains("ckptcheck_fixture_pkg.models.TinyNet"),
        "{torch_says}"
    );
    let note = checkpoint
        .notes
        .iter()
        .find(|n| n.contains("needs code"))
        .expect("a note");
    for says in [
        "ckptcheck_fixture_pkg.models.TinyNet",
        "`ckptcheck_fixture_pkg`",
        "from ckptcheck_fixture_pkg.models import TinyNet",
        "torch.serialization.add_safe_globals([TinyNet, Linear])",
        "default since torch 2.6",
    ] {
        assert!(note.contains(says), "{says}: {note}");
    }
}

/// tests/fixtures/pickle_files (make_pickle_files.py): plain pickles of every
/// protocol, joblib files with inline arrays, numpy object arrays in .npy and
/// .npz (stored and deflated), a pickle appended after another, picklescan's
/// "magic bypass" (a payload before a legacy torch file), zips with the
/// pickle at another path or flagged as encrypted, a 7z archive, a module
/// nobody vouches for, a GLOBAL across a frame's end and streams cut after
/// their payload. None is a checkpoint, and each gets a verdict on what
/// loading it would run: every malicious one is `unsafe_pickle` naming what
/// it reaches (exit 2, the kind in the JSON), no benign one is.
#[test]
fn pickle_files_that_are_not_checkpoints_get_a_safety_verdict() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle_files");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let files = expected.as_object().expect("files");
    assert!(files.len() >= 30);
    for (file, want) in files {
        let names: Vec<&str> = want["names"]
            .as_array()
            .expect("names")
            .iter()
            .map(|name| name.as_str().expect("name"))
            .collect();
        let source = FileSource::open(&dir.join(file)).expect("open");
        let error = format::read_checkpoint(&source).expect_err(file);
        assert_eq!(
            serde_json::to_value(error.kind).expect("kind"),
            want["kind"],
            "{file}: {error}"
        );
        if names.is_empty() {
            assert!(
                error.message.contains("known to be harmless")
                    || error.message.contains("references no globals"),
                "{file}: {error}"
            );
        } else {
            assert_eq!(error.cause(), Some("unsafe-pickle"), "{file}");
            for name in &names {
                assert!(error.message.contains(name), "{file}: {error}");
            }
        }
        // The os.system payloads that run to their REDUCE spell the call.
        if names == ["posix.system"] {
            assert!(
                error.message.contains("posix.system('id')"),
                "{file}: {error}"
            );
        }
    }
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .args(["inspect", "--json"])
        .arg(dir.join("evil_in_object_array.joblib"))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let json: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["error"]["kind"], "unsafe_pickle", "{json}");
}
