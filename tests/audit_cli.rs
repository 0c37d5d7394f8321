//! `ckptcheck audit` over the committed fixtures, as a zoo keeper runs it:
//! one JSON line per file in a stable order, each verdict the one `inspect`
//! gives the file alone, a summary line that counts them, the exit code
//! that says the worst, and a resumed run that judges only the files an
//! interrupted one had not reached.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn audit(args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .arg("audit")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run");
    let rows = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    (
        output.status.code(),
        rows,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_file_gets_the_verdict_inspect_gives_it_and_a_resumed_run_goes_on() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/pickle_files/expected.json"))
            .expect("expected.json"),
    )
    .expect("json");
    let paths = [
        "tests/fixtures/pickle_files",
        "tests/fixtures/formats/small.safetensors",
        "tests/fixtures/hostile/gguf_cut_in_data.gguf",
        "tests/fixtures/hostile/pickle_memo_missing.pt",
    ];
    let mut args = paths.to_vec();
    args.extend(["--jsonl", "--jobs", "2"]);
    let (code, rows, _) = audit(&args);
    assert_eq!(code, Some(2), "an unsafe file makes the exit code 2");
    let (summary, files) = rows.split_last().expect("rows");
    let verdict = |file: &str| -> &str {
        files
            .iter()
            .find(|row| row["file"].as_str().is_some_and(|f| f.ends_with(file)))
            .and_then(|row| row["verdict"].as_str())
            .unwrap_or_else(|| panic!("{file} not audited"))
    };
    for (file, want) in expected.as_object().expect("files") {
        let unsafe_file = want["kind"] == "unsafe_pickle";
        assert_eq!(
            verdict(file),
            if unsafe_file {
                "unsafe"
            } else {
                "not_checkpoint"
            },
            "{file}"
        );
    }
    assert_eq!(verdict("small.safetensors"), "ok");
    assert_eq!(verdict("gguf_cut_in_data.gguf"), "truncated");
    assert_eq!(verdict("pickle_memo_missing.pt"), "not_loadable");
    // In the order walked, and counted in the summary.
    let names: Vec<&str> = files.iter().map(|r| r["file"].as_str().unwrap()).collect();
    let mut sorted = names[..names.len() - 3].to_vec();
    sorted.sort();
    assert_eq!(sorted, names[..names.len() - 3].to_vec());
    assert_eq!(summary["summary"]["files"], files.len());
    let unsafe_count = files.iter().filter(|r| r["verdict"] == "unsafe").count();
    assert_eq!(summary["summary"]["verdicts"]["unsafe"], unsafe_count);

    // An interrupted run: its first ten lines. The resumed run judges the
    // rest only, and its summary counts both.
    let dir = std::env::temp_dir().join(format!("ckptcheck-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let partial = dir.join("audit.jsonl");
    let head: Vec<String> = files[..10].iter().map(Value::to_string).collect();
    std::fs::write(&partial, head.join("\n") + "\n").expect("write");
    let partial_arg = partial.to_string_lossy().into_owned();
    let mut args = paths.to_vec();
    args.extend(["--jsonl", "--resume", &partial_arg]);
    let (_, resumed, stderr) = audit(&args);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    let (resumed_summary, resumed_files) = resumed.split_last().expect("rows");
    assert_eq!(resumed_files.len(), files.len() - 10, "{stderr}");
    assert_eq!(resumed_files, &files[10..]);
    assert_eq!(resumed_summary, summary);
    assert!(stderr.contains("(10 from"), "{stderr}");
}

#[test]
fn a_clean_zoo_exits_0_and_a_list_file_names_the_files() {
    let dir = std::env::temp_dir().join(format!("ckptcheck-audit-list-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let list = dir.join("files.txt");
    std::fs::write(
        &list,
        "# one path a line\ntests/fixtures/formats/small.safetensors\n\ntests/fixtures/formats/small.gguf\n",
    )
    .expect("write");
    let arg = format!("@{}", list.display());
    let (code, rows, stderr) = audit(&[&arg]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(rows.is_empty(), "without --jsonl the lines are text");
    assert!(stderr.contains("audit: 2 files"), "{stderr}");
    assert!(stderr.contains("2 ok"), "{stderr}");
}

#[test]
fn with_scan_a_file_of_nan_and_inf_has_bad_weights_and_a_clean_one_is_ok() {
    let (code, rows, stderr) = audit(&[
        "tests/fixtures/scan/nan_inf.safetensors",
        "tests/fixtures/formats/small.safetensors",
        "--scan",
        "--jsonl",
    ]);
    assert_eq!(code, Some(1), "bad weights make the exit code 1: {stderr}");
    assert_eq!(rows[0]["verdict"], "bad_weights");
    // The figures `ckptcheck scan` gives the same file.
    let scan = Command::new(env!("CARGO_BIN_EXE_ckptcheck"))
        .args(["scan", "tests/fixtures/scan/nan_inf.safetensors", "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("scan");
    let report: Value = serde_json::from_slice(&scan.stdout).expect("scan json");
    for field in [
        "nan_values",
        "inf_values",
        "with_nan",
        "with_inf",
        "all_zero",
    ] {
        assert_eq!(rows[0]["scan"][field], report["summary"][field], "{field}");
    }
    assert_eq!(rows[1]["verdict"], "ok");
    assert_eq!(rows[1]["scan"]["nan_values"], 0);
    assert_eq!(rows[2]["summary"]["verdicts"]["bad_weights"], 1);
}

/// Issue 15's evidence: the whole fixture corpus, the hostile corpus
/// included (truncated, overflowing, looping, malicious files), is audited
/// to the end with every file classified and no crash.
#[test]
fn the_whole_fixture_corpus_is_audited_with_every_file_classified() {
    fn count_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("read fixtures")
            .map(|entry| entry.expect("entry").path())
            .map(|path| if path.is_dir() { count_files(&path) } else { 1 })
            .sum()
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = root.join("tests/fixtures");
    let (code, rows, stderr) = audit(&["tests/fixtures", "--jsonl", "--jobs", "2"]);
    assert!(matches!(code, Some(0..=2)), "exit {code:?}: {stderr}");
    let (summary, files) = rows.split_last().expect("rows");
    assert_eq!(files.len(), count_files(&fixtures), "{stderr}");
    // The summary counts every verdict there is, zero or not.
    let verdicts: Vec<&str> = summary["summary"]["verdicts"]
        .as_object()
        .expect("verdicts")
        .keys()
        .map(String::as_str)
        .collect();
    assert!(verdicts.len() >= 8, "{verdicts:?}");
    for row in files {
        let verdict = row["verdict"].as_str().unwrap_or_default();
        assert!(verdicts.contains(&verdict), "{row}");
        assert_ne!(verdict, "unreadable", "{row}");
    }
    let hostile = files
        .iter()
        .filter(|r| r["file"].as_str().is_some_and(|f| f.contains("/hostile/")))
        .count();
    assert!(hostile > 20, "{hostile} hostile files");
    assert_eq!(summary["summary"]["files"], files.len());
}
