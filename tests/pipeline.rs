//! diffusers pipeline folders, checked component by component, against what
//! `DiffusionPipeline.from_pretrained` did with the same folders
//! (tests/fixtures/pipeline/make_pipelines.py records it: diffusers 0.42.1
//! with accelerate, transformers 5.24.0). Each case's folder is written back
//! from its listing, tensors zero (sparse: the check reads headers only), and
//! checked through the CLI, with and without `--variant fp16`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipeline/pipelines.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("pipelines.json")).expect("JSON")
}

fn dtype_bytes(dtype: &str) -> u64 {
    match dtype {
        "F64" | "I64" => 8,
        "F32" | "I32" => 4,
        "F16" | "BF16" | "I16" => 2,
        _ => 1,
    }
}

/// A safetensors file's header for these tensors, in this order, and the
/// length of the data after it.
fn safetensors_header(tensors: &Value, metadata: &Value) -> (Vec<u8>, u64) {
    let mut header = serde_json::Map::new();
    if metadata.is_object() {
        header.insert("__metadata__".into(), metadata.clone());
    }
    let mut offset = 0u64;
    for tensor in tensors.as_array().expect("tensors") {
        let shape: Vec<u64> = tensor[1]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim"))
            .collect();
        let dtype = tensor[2].as_str().expect("dtype");
        let len = shape.iter().product::<u64>() * dtype_bytes(dtype);
        header.insert(
            tensor[0].as_str().expect("name").to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let header = serde_json::to_vec(&Value::Object(header)).expect("header");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    (bytes, offset)
}

/// Where a test writes its folders (one per test, as tests run side by
/// side).
fn scratch(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ckptcheck-pipeline-{}-{test}", std::process::id()))
}

/// The case's folder, written under the test's scratch folder.
fn write_case(all: &Value, case: &Value, test: &str) -> PathBuf {
    let name = case["name"].as_str().expect("name");
    let folder = scratch(test).join(name);
    let _ = std::fs::remove_dir_all(&folder);
    for (path, content) in case["files"].as_object().expect("files") {
        let content = match content.get("same_as") {
            Some(other) => {
                let other = all["cases"]
                    .as_array()
                    .expect("cases")
                    .iter()
                    .find(|c| c["name"] == *other)
                    .expect("case named");
                &other["files"][path]
            }
            None => content,
        };
        let target = folder.join(path);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        if let Some(tensors) = content.get("safetensors") {
            // The data is the released UNet's 1.7 GB of fp16: a sparse
            // file of zeros, which costs no disk and is never read.
            let (header, data_len) = safetensors_header(tensors, &content["metadata"]);
            std::fs::write(&target, &header).expect("write");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .and_then(|file| file.set_len(header.len() as u64 + data_len))
                .expect("extend");
        } else {
            let text = content
                .get("json")
                .or(content.get("text"))
                .and_then(Value::as_str)
                .expect("text");
            std::fs::write(&target, text).expect("write");
        }
    }
    folder
}

fn check(folder: &Path, variant: Option<&str>) -> (i32, Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ckptcheck"));
    command.arg("check").arg(folder).arg("--json");
    if let Some(variant) = variant {
        command.args(["--variant", variant]);
    }
    let output = command.output().expect("run ckptcheck");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exit code"), report)
}

fn component<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}: {report}"))
}

/// from_pretrained loads the folder exactly when ckptcheck says every
/// component loads; a pipeline that loads and then fails at its first call
/// is one whose components disagree; what diffusers raises is the text
/// ckptcheck gives.
#[test]
fn each_folder_is_judged_as_from_pretrained_loads_and_runs_it() {
    let all = cases();
    for case in all["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let folder = write_case(&all, case, "judged");
        for (variant, expected) in [(None, case), (Some("fp16"), &case["fp16"])] {
            let (code, report) = check(&folder, variant);
            let what = format!("{name} (variant {variant:?}): {report:#}");
            assert_eq!(report["loads"], expected["loads"], "{what}");
            let runs = expected["loads"] == true && expected["runtime_error"].is_null();
            assert_eq!(report["consistent"], runs, "{what}");
            assert_eq!(code, if runs { 0 } else { 1 }, "{what}");
            assert_eq!(
                report["disagreements"].as_array().expect("list").is_empty(),
                expected["runtime_error"].is_null(),
                "{what}"
            );
            let error = expected["error"].as_str().unwrap_or("");
            // diffusers' own text for a UNet size mismatch.
            if let Some(text) = error.strip_prefix("ValueError: Cannot load ") {
                assert_eq!(
                    component(&report, "unet")["report"]["pytorch_error"],
                    format!("Cannot load {text}"),
                    "{what}"
                );
            }
            // transformers' text for a text encoder's size mismatch.
            if let Some(text) = error.strip_prefix("RuntimeError: You set") {
                assert_eq!(
                    component(&report, "text_encoder")["report"]["pytorch_error"],
                    format!("You set{text}"),
                    "{what}"
                );
            }
            // The shapes PyTorch's runtime error names, but for the batch
            // (and the rows); another error's own text.
            if let Some(runtime) = expected["runtime_error"].as_str() {
                let text = report["disagreements"][0]["text"].as_str().expect("text");
                let wanted = match runtime.find("shapes cannot be multiplied (") {
                    Some(at) => {
                        let start = runtime[at..].find('(').expect("(") + at + 1;
                        let batch_end = runtime[start..].find('x').expect("x") + start;
                        runtime[batch_end..].replace(')', ")\"")
                    }
                    None => runtime.to_string(),
                };
                assert!(text.contains(&wanted), "{runtime} vs {text}");
            }
            if let Some(text) = error.strip_prefix("ValueError: You are trying") {
                assert_eq!(report["error"], format!("You are trying{text}"), "{what}");
            }
            // A component the class needs, left out: the list of what it
            // expects is diffusers' own (the set passed has no order).
            if error.starts_with("ValueError: Pipeline <class ") {
                let expected = &error[error.find(" expected [").expect("expected")
                    ..error.find("], but only").expect("but only") + 1];
                let text = report["error"].as_str().expect("error");
                assert!(text.contains(expected), "{expected} vs {text}");
            }
        }
    }
    std::fs::remove_dir_all(scratch("judged")).expect("clean up");
}

/// What each broken folder is, component by component, in the words the
/// report uses.
#[test]
fn the_broken_component_is_named_with_its_cause() {
    let all = cases();
    let by_name = |name: &str| {
        let case = all["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| c["name"] == name)
            .expect("case");
        check(&write_case(&all, case, "named"), None).1
    };
    let report = by_name("sd");
    assert_eq!(report["pipeline_class"], "StableDiffusionPipeline");
    // Its model_index.json named directly is the same folder.
    let folder = Path::new(report["folder"].as_str().expect("folder"));
    let (code, direct) = check(&folder.join("model_index.json"), None);
    assert_eq!((code, &direct["components"]), (0, &report["components"]));
    for (name, status) in [
        ("unet", "checked"),
        ("vae", "checked"),
        ("text_encoder", "checked"),
        ("tokenizer", "no-weights"),
        ("scheduler", "no-weights"),
        ("safety_checker", "absent"),
    ] {
        assert_eq!(
            component(&report, name)["status"],
            status,
            "{name}: {report:#}"
        );
    }
    assert_eq!(component(&report, "unet")["report"]["loader"], "diffusers");
    assert_eq!(component(&report, "text_encoder")["report"]["loader"], "hf");

    let report = by_name("sd-only-fp16");
    let unet = component(&report, "unet");
    assert_eq!(unet["status"], "fails");
    assert!(
        unet["error"]
            .as_str()
            .expect("error")
            .contains("--variant fp16"),
        "{unet}"
    );

    let report = by_name("sd-unet-missing-tensor");
    let unet = &component(&report, "unet")["report"];
    assert_eq!(unet["verdict"], "loads-with-warnings");
    assert_eq!(unet["missing_keys"], serde_json::json!(["conv_out.bias"]));

    let report = by_name("sd-text-encoder-mismatch");
    let text = &component(&report, "text_encoder")["report"];
    assert_eq!(text["verdict"], "wont-load");
    assert_eq!(
        text["size_mismatches"][0]["key"],
        "embeddings.position_embedding.weight"
    );

    // SD3 saved without T5: every component loads, and the pipeline needs
    // the two left out; passing them as None (what the report says to do)
    // is what made from_pretrained load it and run a step.
    let report = by_name("sd3-without-t5");
    assert_eq!(report["pipeline_class"], "StableDiffusion3Pipeline");
    for name in ["text_encoder_3", "tokenizer_3"] {
        assert_eq!(component(&report, name)["status"], "fails", "{report:#}");
    }
    for name in ["transformer", "vae", "text_encoder", "text_encoder_2"] {
        assert_eq!(
            component(&report, name)["report"]["verdict"],
            "loads",
            "{name}"
        );
    }
    let case = all["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "sd3-without-t5")
        .expect("case");
    let passed: Vec<String> = case["passed"]["components"]
        .as_object()
        .expect("passed")
        .keys()
        .map(|name| format!("{name}=None"))
        .collect();
    assert!(
        report["error"].as_str().expect("error").contains(&format!(
            "StableDiffusion3Pipeline.from_pretrained(folder, {})",
            passed.join(", ")
        )),
        "{report:#}"
    );
    assert_eq!(
        (&case["passed"]["loads"], &case["passed"]["runtime_error"]),
        (&serde_json::json!(true), &Value::Null)
    );

    // SD3 with its T5, and Flux: every model component is checked and loads; each
    // broken one is named with the arithmetic of the pipeline's call.
    for (case, encoders) in [
        (
            "sd3",
            ["text_encoder", "text_encoder_2", "text_encoder_3"].as_slice(),
        ),
        ("flux", ["text_encoder", "text_encoder_2"].as_slice()),
    ] {
        let report = by_name(case);
        for name in ["transformer", "vae"].iter().chain(encoders) {
            assert_eq!(
                component(&report, name)["report"]["verdict"],
                "loads",
                "{case} {name}: {report:#}"
            );
        }
    }
    for (case, components, start) in [
        (
            "sd3-wider-clip-projection",
            ["transformer", "text_encoder", "text_encoder_2"].as_slice(),
            "transformer pooled_projection_dim 64 but text_encoder projection_dim 32 + text_encoder_2 projection_dim 48 = 80",
        ),
        (
            "sd3-wider-t5",
            ["transformer", "text_encoder_3"].as_slice(),
            "transformer joint_attention_dim 64 but text_encoder_3 d_model 96",
        ),
        (
            "sd3-sd-vae",
            ["transformer", "vae"].as_slice(),
            "transformer out_channels 16 but vae latent_channels 4",
        ),
        (
            "flux-wider-clip",
            ["transformer", "text_encoder"].as_slice(),
            "transformer pooled_projection_dim 32 but text_encoder hidden_size 48",
        ),
        (
            "flux-sd-vae",
            ["transformer", "vae"].as_slice(),
            "transformer in_channels 64 (16 latent channels packed 2×2) but vae latent_channels 4",
        ),
    ] {
        let report = by_name(case);
        let disagreements = report["disagreements"].as_array().expect("list");
        assert_eq!(disagreements.len(), 1, "{case}: {report:#}");
        assert_eq!(disagreements[0]["components"], serde_json::json!(components));
        let text = disagreements[0]["text"].as_str().expect("text");
        assert!(text.starts_with(start), "{case}: {text}");
    }

    let report = by_name("sd-wider-text-encoder");
    let text = report["disagreements"][0]["text"].as_str().expect("text");
    assert!(
        text.starts_with("unet cross_attention_dim 32 but text_encoder hidden_size 64"),
        "{text}"
    );
    std::fs::remove_dir_all(scratch("named")).expect("clean up");
}
