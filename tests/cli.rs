//! The `ckptcheck` binary as a user runs it: exit codes (0 loads / success,
//! 1 won't load, 2 input error), one-line errors naming the file, the JSON
//! fields README documents, config JSON input and the diff command.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .args(args)
        .output()
        .expect("run ckptcheck");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const L14_336: &str = "cn_clip/clip_cn_vit-l-14-336.shapes.pt";
const B16: &str = "cn_clip/clip_cn_vit-b-16.shapes.pt";

#[test]
fn check_exits_1_with_the_documented_json_when_it_would_not_load() {
    let file = fixture(L14_336);
    let (code, stdout, _) = run(&[
        "check",
        file.to_str().expect("path"),
        "--config",
        "ViT-B-16@RoBERTa-wwm-ext-base-chinese",
        "--loader",
        "cn-clip",
        "--json",
    ]);
    assert_eq!(code, 1);
    let report = json(&stdout);
    for field in [
        "loads",
        "loader",
        "missing_keys",
        "unexpected_keys",
        "size_mismatches",
        "pytorch_error",
        "notes",
        "explanation",
        "fix",
        "inferred",
    ] {
        assert!(report.get(field).is_some(), "missing field {field}");
    }
    assert_eq!(report["loads"], false);
    assert_eq!(report["loader"], "cn-clip");
    assert_eq!(report["size_mismatches"][0]["key"], "text_projection");
    assert_eq!(
        report["size_mismatches"][0]["checkpoint_shape"],
        serde_json::json!([768, 768])
    );
    assert_eq!(
        report["size_mismatches"][0]["model_shape"],
        serde_json::json!([768, 512])
    );
    assert!(report["pytorch_error"]
        .as_str()
        .expect("text")
        .starts_with("Error(s) in loading state_dict for CLIP:\n\t"));
    assert_eq!(report["inferred"]["family"], "cn_clip");
    assert_eq!(
        report["inferred"]["preset"],
        "ViT-L-14-336@RoBERTa-wwm-ext-base-chinese"
    );
    assert!(report["inferred"]["undetermined"][0]
        .as_str()
        .expect("note")
        .contains("head"));
}

#[test]
fn check_exits_0_with_the_right_preset_alias_and_loader() {
    let file = fixture(L14_336);
    let (code, stdout, _) = run(&[
        "check",
        file.to_str().expect("path"),
        "--config",
        "clip_cn_vit-l-14-336",
        "--loader",
        "cn-clip",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("OK  Loads"), "{stdout}");
}

#[test]
fn a_config_json_pair_checks_like_the_preset() {
    let dir = std::env::temp_dir().join(format!("ckptcheck-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let (vision, text) = (
        dir.join("ViT-B-16.json"),
        dir.join("RoBERTa-wwm-ext-base-chinese.json"),
    );
    std::fs::write(&vision, r#"{"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768, "vision_patch_size": 16}"#).expect("write");
    std::fs::write(&text, r#"{"vocab_size": 21128, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu", "text_hidden_dropout_prob": 0.1, "text_hidden_size": 768, "text_initializer_range": 0.02, "text_intermediate_size": 3072, "text_max_position_embeddings": 512, "text_num_attention_heads": 12, "text_num_hidden_layers": 12, "text_type_vocab_size": 2}"#).expect("write");
    let file = fixture(L14_336);
    let args = |config_args: Vec<&str>| {
        let mut args = vec![
            "check",
            file.to_str().expect("path"),
            "--loader",
            "cn-clip",
            "--json",
        ];
        args.extend(config_args);
        run(&args)
    };
    let (code_json, from_json, _) = args(vec![
        "--config",
        vision.to_str().expect("p"),
        "--config",
        text.to_str().expect("p"),
    ]);
    let (code_preset, from_preset, _) =
        args(vec!["--config", "ViT-B-16@RoBERTa-wwm-ext-base-chinese"]);
    assert_eq!((code_json, code_preset), (1, 1));
    let (a, b) = (json(&from_json), json(&from_preset));
    assert_eq!(a["pytorch_error"], b["pytorch_error"]);
    assert_eq!(a["model"], "config JSON");

    // A malformed config names the field.
    std::fs::write(&vision, r#"{"embed_dim": 512, "image_resolution": "big", "vision_layers": 12, "vision_width": 768, "vision_patch_size": 16}"#).expect("write");
    let (code, _, stderr) = args(vec![
        "--config",
        vision.to_str().expect("p"),
        "--config",
        text.to_str().expect("p"),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("\"image_resolution\"") && stderr.contains("ViT-B-16.json"),
        "{stderr}"
    );
    std::fs::write(&vision, r#"{"hello": 1}"#).expect("write");
    let (code, _, stderr) = run(&[
        "check",
        file.to_str().expect("path"),
        "--config",
        vision.to_str().expect("p"),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown config family"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn input_errors_exit_2_with_one_line_naming_the_file() {
    let garbage = fixture("cn_clip/README.md");
    let (code, _, stderr) = run(&["inspect", garbage.to_str().expect("path")]);
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("README.md") && stderr.contains("not a recognised checkpoint"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&[
        "check",
        fixture(B16).to_str().expect("p"),
        "--config",
        "ViT-Z-99@nothing",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown preset"), "{stderr}");
    let (code, _, _) = run(&["inspect", "/nonexistent/file.pt"]);
    assert_eq!(code, 2);
}

#[test]
fn inspect_reports_unsafe_pickles_and_exits_2() {
    let (code, stdout, stderr) = run(&[
        "inspect",
        fixture("formats/evil_os_system.pt").to_str().expect("p"),
        "--json",
    ]);
    assert_eq!(code, 2);
    assert_eq!(
        json(&stdout)["pickle_audit"]["dangerous"],
        serde_json::json!(["posix.system"])
    );
    assert!(
        stderr.contains("posix.system") && stderr.contains("never evaluated"),
        "{stderr}"
    );
    // The listing is there, and the error with its kind rides along.
    let error = &json(&stdout)["error"];
    assert_eq!(error["kind"], "unsafe_pickle", "{stdout}");
    assert_eq!(error["cause"], "unsafe-pickle");
    assert!(error["message"]
        .as_str()
        .is_some_and(|m| m.contains("posix.system")));
    assert!(json(&stdout)["pickle_audit"]["calls"][0]
        .as_str()
        .is_some_and(|call| call.starts_with("posix.system(")));
}

#[test]
fn inspect_json_has_the_documented_fields_and_reads_little() {
    let (code, stdout, _) = run(&["inspect", fixture(L14_336).to_str().expect("p"), "--json"]);
    assert_eq!(code, 0);
    let checkpoint = json(&stdout);
    assert_eq!(checkpoint["format"], "pytorch-zip");
    assert_eq!(
        checkpoint["tensors"].as_array().expect("tensors").len(),
        495
    );
    let first = &checkpoint["tensors"][0];
    assert_eq!(
        first["path"],
        serde_json::json!(["state_dict", "module.text_projection"])
    );
    assert_eq!(first["name"], "module.text_projection");
    for field in ["dtype", "shape", "offset", "nbytes", "stride", "storage"] {
        assert!(first.get(field).is_some(), "{field}");
    }
    assert_eq!(
        checkpoint["values"][0],
        serde_json::json!({"path": ["epoch"], "value": 3})
    );
    assert!(
        checkpoint["bytes_read"].as_u64().expect("n")
            < checkpoint["file_bytes"].as_u64().expect("n")
    );
    // One line per tensor (README "JSON output"): every tensor is a whole
    // JSON object on its own line.
    let tensor_lines: Vec<serde_json::Value> = stdout
        .lines()
        .skip_while(|line| *line != "  \"tensors\": [")
        .skip(1)
        .take_while(|line| *line != "  ],")
        .map(|line| {
            serde_json::from_str(line.trim().trim_end_matches(',')).expect("a whole object")
        })
        .collect();
    assert_eq!(
        &tensor_lines[..],
        checkpoint["tensors"]
            .as_array()
            .expect("tensors")
            .as_slice()
    );
}

#[test]
fn a_folder_of_shards_is_one_checkpoint() {
    let (code, stdout, _) = run(&[
        "inspect",
        fixture("formats/sharded").to_str().expect("p"),
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(json(&stdout)["format"], "safetensors-sharded");
}

#[test]
fn infer_and_presets_and_diff() {
    let (code, stdout, _) = run(&["infer", fixture(B16).to_str().expect("p"), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        json(&stdout)["preset"],
        "ViT-B-16@RoBERTa-wwm-ext-base-chinese"
    );
    let (code, stdout, _) = run(&["presets", "--json"]);
    assert_eq!(code, 0);
    let presets = json(&stdout);
    let names: Vec<&str> = presets
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.iter().filter(|n| n.contains('@')).count(), 18);
    let (code, stdout, _) = run(&[
        "diff",
        fixture(B16).to_str().expect("p"),
        fixture(L14_336).to_str().expect("p"),
        "--json",
    ]);
    assert_eq!(code, 0);
    let diff = json(&stdout);
    // ViT-B-16 -> ViT-L-14-336: 12 more vision blocks of 12 tensors each.
    assert_eq!(diff["added"].as_array().expect("added").len(), 144);
    assert_eq!(diff["removed"].as_array().expect("removed").len(), 0);
    assert_eq!(diff["shape_changed"].as_array().expect("shapes").len(), 153);
}

#[test]
fn help_version_and_completions_are_conventional() {
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let (code, stdout, _) = run(args);
        assert_eq!(code, 0, "{args:?}");
        for command in [
            "inspect",
            "check",
            "infer",
            "diff",
            "presets",
            "verify",
            "scan",
            "completions",
        ] {
            assert!(
                stdout.contains(command),
                "{args:?} lists {command}: {stdout}"
            );
        }
    }
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(
        (code, stdout.trim()),
        (0, concat!("ckptcheck ", env!("CARGO_PKG_VERSION")))
    );
    // Per-command help with examples, through `help <command>` and `-h`.
    for args in [&["help", "check"][..], &["check", "--help"]] {
        let (code, stdout, _) = run(args);
        assert_eq!(code, 0);
        assert!(
            stdout.contains("--loader") && stdout.contains("Examples:"),
            "{stdout}"
        );
    }
    let (code, stdout, _) = run(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("complete") && stdout.contains("ckptcheck"),
        "{stdout}"
    );
    // A usage error is an input error: exit 2, with the reason.
    let (code, _, stderr) = run(&["check", "x.pt"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--config"), "{stderr}");
    let (code, _, stderr) = run(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("frobnicate"), "{stderr}");
}

/// The classic Stable Diffusion failure as people hit it: an SD 2.1
/// training `.ckpt` (tests/fixtures/sd/make_sd_loads.py) run with the v1
/// inference YAML, as LDM loads it.
#[test]
fn an_sd2_ckpt_with_the_v1_yaml_is_explained_and_loads_with_its_own() {
    let file = fixture("sd/sd-2.1-768.shapes.ckpt");
    let yaml = |name: &str| fixture(&format!("sd/yaml/{name}"));
    let (code, stdout, _) = run(&[
        "check",
        file.to_str().expect("p"),
        "--config",
        yaml("v1-inference.yaml").to_str().expect("p"),
        "--loader",
        "ldm",
        "--json",
    ]);
    assert_eq!(code, 1, "{stdout}");
    let report = json(&stdout);
    assert_eq!(report["class_name"], "LatentDiffusion");
    assert_eq!(report["state_dict_path"][0], "state_dict");
    let cause = &report["explanation"][0];
    assert_eq!(cause["cause"], "sd-release");
    assert_eq!(cause["checkpoint"], "sd/2.1-768");
    let text = cause["text"].as_str().expect("text");
    assert!(text.contains("v2-inference-v.yaml"), "{text}");
    assert!(text.contains("cross-attention dim 1024"), "{text}");
    // LDM unwraps `state_dict` itself: no note that the whole file fails.
    assert!(
        !report["notes"].to_string().contains("whole file fails"),
        "{}",
        report["notes"]
    );
    for good in ["v2-inference-v.yaml", "v2-inference.yaml"] {
        let (code, stdout, _) = run(&[
            "check",
            file.to_str().expect("p"),
            "--config",
            yaml(good).to_str().expect("p"),
            "--loader",
            "ldm",
        ]);
        assert_eq!(code, 0, "{good}: {stdout}");
    }
}

/// `ckptcheck inspect f --json | head -1`: a reader that goes away ends the
/// process quietly (SIGPIPE), as other command-line tools do, never a
/// panic. The listing (480 KB) is larger than a pipe holds, so the write
/// meets the closed pipe whenever the child gets to it.
#[test]
fn a_closed_pipe_ends_the_output_without_a_panic() {
    use std::process::Stdio;
    let file = fixture("sd/sd-2.1-768.shapes.ckpt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .args(["inspect", file.to_str().expect("p"), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ckptcheck");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            output.status.signal(),
            Some(libc_sigpipe()),
            "{:?}",
            output.status
        );
    }
}

/// SIGPIPE's number on Linux and the BSDs.
#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13
}

/// What build.rs asks of the linker for a fast start on Linux (glibc): a
/// fixed-address executable (no relocations for ld.so to apply) whose
/// unwinder is linked in, so `libgcc_s.so.1` and its `cpuid`-running
/// constructor are not loaded. Both are checked in the binary's own ELF
/// header and dynamic section; a C compiler without `libgcc_eh.a` links the
/// shared unwinder, as build.rs warns, and then only the first is checked.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn the_binary_is_linked_to_start_fast() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_ckptcheck")).expect("read the binary");
    // e_type (ELF header byte 16, little-endian): 2 is ET_EXEC, 3 ET_DYN
    // (a position-independent executable).
    assert_eq!(binary.get(16..18), Some(&[2u8, 0][..]), "not ET_EXEC");
    let compiler_has_static_unwinder = Command::new("cc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .map(|out| Path::new(String::from_utf8_lossy(&out.stdout).trim()).is_absolute())
        .unwrap_or(false);
    if compiler_has_static_unwinder {
        let needed = b"libgcc_s.so.1\0";
        assert!(
            !binary.windows(needed.len()).any(|window| window == needed),
            "the binary still names libgcc_s.so.1"
        );
    }
}
