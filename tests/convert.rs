//! `ckptcheck convert` and `fix`, against what torch reads: every tensor
//! written equals `torch.load`'s bit for bit (SHA-256 of its bytes, recorded
//! by tests/fixtures/convert/make_convert_fixtures.py), after torch's own
//! rounding when `--dtype` converts; the output is a safetensors file the
//! `safetensors` crate (the loaders' own Rust core) accepts; shards come
//! with transformers' index; hostile inputs leave no file; and a fixed file
//! loads where the original did not.

use ckptcheck::convert::{self, ConvertOptions, Target};
use ckptcheck::source::{ByteSource, FileSource};
use ckptcheck::{format, Checkpoint};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn expected() -> Value {
    let text = std::fs::read_to_string(root().join("tests/fixtures/convert/expected.json"))
        .expect("expected");
    serde_json::from_str(&text).expect("json")
}

/// The files of a source (a folder's checkpoint files, shards and index).
fn open(source: &str) -> Vec<FileSource> {
    let path = root().join(source);
    let mut paths: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(&path)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| !p.to_string_lossy().ends_with(".expected.json"))
            .collect()
    } else {
        vec![path]
    };
    paths.sort();
    paths
        .iter()
        .map(|p| FileSource::open(p).expect("open"))
        .collect()
}

fn read(files: &[FileSource]) -> (Checkpoint, Vec<&dyn ByteSource>) {
    let refs: Vec<&dyn ByteSource> = files
        .iter()
        .filter(|f| {
            !matches!(format::detect(*f), Ok(format::Format::Json))
                || f.name().ends_with(".index.json")
        })
        .map(|f| f as &dyn ByteSource)
        .collect();
    (format::read_files(&refs).expect("read"), refs)
}

/// Every output file of `plan`, in memory (the fixtures are small).
fn write_all(plan: &convert::Plan, sources: &[&dyn ByteSource]) -> Vec<(String, Vec<u8>)> {
    plan.files
        .iter()
        .map(|file| {
            let mut bytes = Vec::new();
            convert::write_file(file, sources, &mut |chunk| {
                bytes.extend_from_slice(chunk);
                Ok(())
            })
            .expect("write");
            assert_eq!(bytes.len() as u64, file.len, "{}", file.name);
            (file.name.clone(), bytes)
        })
        .collect()
}

/// Every NaN set to one pattern (the fixture script does the same to
/// torch's output: its CPU cast writes one NaN two ways).
fn canonical_nans(bytes: &[u8], dtype: &str) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match dtype {
        "F16" | "BF16" => {
            for chunk in out.chunks_exact_mut(2) {
                let bits = u16::from_le_bytes([chunk[0], chunk[1]]);
                let nan = if dtype == "F16" {
                    bits & 0x7c00 == 0x7c00 && bits & 0x03ff != 0
                } else {
                    bits & 0x7f80 == 0x7f80 && bits & 0x007f != 0
                };
                if nan {
                    let canonical: u16 = if dtype == "F16" { 0x7e00 } else { 0x7fc0 };
                    chunk.copy_from_slice(&canonical.to_le_bytes());
                }
            }
        }
        "F32" => {
            for chunk in out.chunks_exact_mut(4) {
                if f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]).is_nan() {
                    chunk.copy_from_slice(&0x7fc0_0000u32.to_le_bytes());
                }
            }
        }
        _ => {}
    }
    out
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_tensor_written_is_torchs_bit_for_bit_in_every_dtype() {
    let expected = expected();
    let mut compared = 0;
    for (source, tensors) in expected.as_object().expect("sources") {
        let files = open(source);
        let (checkpoint, sources) = read(&files);
        let groups = ckptcheck::state_dict::tensor_groups(&checkpoint);
        let group_path = groups
            .first()
            .map(|(path, _)| path.clone())
            .unwrap_or_default();
        for (target, field) in [
            (Target::Keep, "sha256"),
            (Target::F16, "sha256_f16"),
            (Target::Bf16, "sha256_bf16"),
            (Target::F32, "sha256_f32"),
        ] {
            let options = ConvertOptions {
                target,
                ..ConvertOptions::default()
            };
            let plan = convert::plan(&checkpoint, &sources, &options).expect(source);
            let written = write_all(&plan, &sources);
            let (_, bytes) = &written[0];
            // The loaders' own Rust core accepts it (header, offsets, order).
            let file = safetensors::SafeTensors::deserialize(bytes)
                .unwrap_or_else(|e| panic!("{source}: {e:?}"));
            let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).expect("metadata");
            assert_eq!(
                metadata
                    .metadata()
                    .as_ref()
                    .and_then(|m| m.get("format"))
                    .map(String::as_str),
                Some("pt"),
                "{source}"
            );
            for tensor in &plan.tensors {
                let key = if group_path.is_empty() {
                    tensor.source_key.clone()
                } else {
                    format!("{}/{}", group_path.join("/"), tensor.source_key)
                };
                let Some(recorded) = tensors.get(&key) else {
                    panic!("{source}: torch has no tensor at {key}")
                };
                let view = file.tensor(&tensor.name).expect("tensor in the file");
                assert_eq!(
                    view.shape(),
                    recorded["shape"]
                        .as_array()
                        .expect("shape")
                        .iter()
                        .map(|d| d.as_u64().expect("dim") as usize)
                        .collect::<Vec<_>>()
                );
                let want = recorded
                    .get(field)
                    .or_else(|| recorded.get("sha256"))
                    .and_then(Value::as_str)
                    .expect("digest");
                let data = if target == Target::Keep {
                    view.data().to_vec()
                } else {
                    canonical_nans(view.data(), &tensor.dtype)
                };
                assert_eq!(sha256(&data), want, "{source}: {key} as {target:?}");
                compared += 1;
            }
        }
    }
    assert!(compared > 1000, "{compared} tensors compared");
}

#[test]
fn shards_come_with_transformers_index_and_cover_every_tensor() {
    let files = open("tests/fixtures/cn_clip/clip_cn_vit-b-16.shapes.pt");
    let (checkpoint, sources) = read(&files);
    let options = ConvertOptions {
        shard_size: Some(64 * 1024 * 1024),
        ..ConvertOptions::default()
    };
    let plan = convert::plan(&checkpoint, &sources, &options).expect("plan");
    let written = write_all(&plan, &sources);
    let shards = written.len() - 1;
    assert!(shards >= 3, "{shards} shards");
    let (index_name, index) = written.last().expect("index");
    assert_eq!(index_name, "model.safetensors.index.json");
    let index: Value = serde_json::from_slice(index).expect("index json");
    let map = index["weight_map"].as_object().expect("weight_map");
    assert_eq!(map.len(), plan.tensors.len());
    let mut total = 0u64;
    for (name, bytes) in &written[..shards] {
        assert_eq!(
            name,
            &format!(
                "model-{:05}-of-{shards:05}.safetensors",
                written.iter().position(|(n, _)| n == name).expect("pos") + 1
            )
        );
        let file = safetensors::SafeTensors::deserialize(bytes).expect("shard");
        for (tensor, view) in file.tensors() {
            assert_eq!(map[&tensor], *name, "{tensor}");
            total += view.data().len() as u64;
        }
    }
    assert_eq!(index["metadata"]["total_size"], total);
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .args(args)
        .output()
        .expect("run");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ckptcheck-convert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp");
    dir
}

#[test]
fn hostile_inputs_never_leave_a_file() {
    let hostile = root().join("tests/fixtures/hostile");
    let dir = temp_dir("hostile");
    let mut refused = 0;
    for entry in std::fs::read_dir(&hostile).expect("hostile") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(".json") || name.ends_with(".md") {
            continue;
        }
        let out = dir.join(format!("{name}.safetensors"));
        let (code, _, stderr) = run(&[
            "convert".as_ref(),
            path.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        if code != 0 {
            refused += 1;
            assert_eq!(code, 2, "{name}: {stderr}");
            assert!(
                stderr.contains(&name),
                "{name}: the error names the file: {stderr}"
            );
        }
        // Whatever happened, nothing half-written is left.
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| {
                n.ends_with(".partial") || (code != 0 && *n == format!("{name}.safetensors"))
            })
            .collect();
        assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
    }
    assert!(refused > 40, "{refused} hostile files refused");
}

#[test]
fn fix_writes_a_file_that_loads_where_the_original_did_not() {
    let diagnoses = root().join("tests/fixtures/diagnoses");
    let dir = temp_dir("fix");
    for (file, config, says) in [
        (
            "compiled_bert.pt",
            "bert_config.json",
            "stripped the prefix `_orig_mod.`",
        ),
        (
            "compiled_ddp_bert.pt",
            "bert_config.json",
            "stripped the prefix `module._orig_mod.`",
        ),
        (
            "old_bert.pt",
            "bert_config.json",
            "dropped: embeddings.position_ids",
        ),
        (
            "gpt2/model.safetensors",
            "gpt2/config.json",
            "`lm_head.weight` written as a copy of `transformer.wte.weight`",
        ),
    ] {
        let out = dir.join(format!("{}.safetensors", file.replace('/', "_")));
        let (code, stdout, stderr) = run(&[
            "fix".as_ref(),
            diagnoses.join(file).as_os_str(),
            "--config".as_ref(),
            diagnoses.join(config).as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert_eq!(code, 0, "{file}: {stdout}{stderr}");
        assert!(stdout.starts_with("before: Won't load"), "{stdout}");
        assert!(stdout.contains(says), "{file}: {stdout}");
        assert!(stdout.trim_end().ends_with("after: Loads"), "{stdout}");
        // And a plain check of the written file agrees.
        let (code, stdout, _) = run(&[
            "check".as_ref(),
            out.as_os_str(),
            "--config".as_ref(),
            diagnoses.join(config).as_os_str(),
        ]);
        assert_eq!(code, 0, "{file}: {stdout}");
    }
    // Shapes are not a key edit: a resized vocabulary still does not load.
    let out = dir.join("resized.safetensors");
    let (code, stdout, _) = run(&[
        "fix".as_ref(),
        diagnoses.join("resized_vocab.pt").as_os_str(),
        "--config".as_ref(),
        diagnoses.join("bert_config.json").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert!(stdout.contains("size mismatches remain"), "{stdout}");
}

#[test]
fn convert_keeps_plain_values_refuses_to_overwrite_and_says_what_it_left_out() {
    let dir = temp_dir("values");
    let source = root().join("tests/fixtures/diagnoses/training.ckpt");
    let out = dir.join("t.safetensors");
    let (code, stdout, stderr) = run(&[
        "convert".as_ref(),
        source.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["metadata"]["epoch"], "3");
    assert_eq!(json["metadata"]["global_step"], "120");
    assert_eq!(
        json["left_out_values"],
        serde_json::json!(["optimizer_states"])
    );
    let bytes = std::fs::read(&out).expect("written");
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).expect("metadata");
    assert_eq!(
        metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("pytorch-lightning_version"))
            .map(String::as_str),
        Some("2.4.0")
    );
    // The output may not be an input.
    let input = dir.join("in.safetensors");
    std::fs::copy(
        root().join("tests/fixtures/formats/small.safetensors"),
        &input,
    )
    .expect("copy");
    let (code, _, stderr) = run(&[
        "convert".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        input.as_os_str(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("overwrite an input"), "{stderr}");
    assert!(Path::new(&input).exists());
}

#[test]
fn convert_writes_the_very_bytes_transformers_from_pretrained_accepted() {
    // make_convert_fixtures.py converted these Hugging Face folders with
    // ckptcheck, loaded the result with BertModel.from_pretrained (equal to
    // the source's weights) and recorded each file's SHA-256.
    let text = std::fs::read_to_string(root().join("tests/fixtures/convert/from_pretrained.json"))
        .expect("record");
    let accepted: Value = serde_json::from_str(&text).expect("json");
    for (command, files) in accepted.as_object().expect("runs") {
        let mut words = command.split(' ');
        let source = root().join(words.next().expect("source"));
        let flags: Vec<&str> = words.collect();
        let dir = temp_dir(&format!("hf-{}", flags.len()));
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "convert".as_ref(),
            source.as_os_str(),
            "-o".as_ref(),
            dir.as_os_str(),
        ];
        args.extend(flags.iter().map(|f| std::ffi::OsStr::new(*f)));
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{command}: {stdout}{stderr}");
        let mut written: Vec<String> = std::fs::read_dir(&dir)
            .expect("out")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        written.sort();
        let recorded: Vec<&String> = files.as_object().expect("files").keys().collect();
        assert_eq!(written.iter().collect::<Vec<_>>(), recorded, "{command}");
        for (name, digest) in files.as_object().expect("files") {
            let bytes = std::fs::read(dir.join(name)).expect("written");
            assert_eq!(&Value::String(sha256(&bytes)), digest, "{command}: {name}");
        }
    }
}
