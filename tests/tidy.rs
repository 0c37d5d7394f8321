//! The architecture's rules, checked on the source text (rust-analyzer's
//! `tidy.rs` style), so that a change that breaks one fails `cargo test`:
//!
//! - top-level modules form layers and every `crate::` path points to a
//!   lower layer, so the import graph has no circles (ARCHITECTURE.md draws
//!   the same layers);
//! - the core never names a web or GPU type: `web-sys`, `js-sys` and
//!   `wasm-bindgen` stay in `src/web.rs`, `wgpu` in `src/gpu/`;
//! - every source file opens with a `//!` paragraph saying what it is for;
//! - no source file is over 800 lines.

use std::path::{Path, PathBuf};

/// Top-level modules, lowest layer first. A module may use modules of
/// lower layers only; modules of one layer do not use each other.
const LAYERS: &[&[&str]] = &[
    &["error", "human"],
    &["source", "checkpoint", "stats"],
    &["dtype", "npy", "remote"],
    &["format"],
    &["state_dict", "arch"],
    &["loader"],
    &["check"],
    &["diagnosis", "scan", "weights"],
    &["convert", "pipeline"],
    &["reference"],
    &["fast_cpu"],
    &["verify"],
    &["open"],
    &["write"],
    &["gpu"],
    &["web"],
];

const MAX_LINES: usize = 800;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs, main.rs and
/// the CLI, which sit above every layer).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main" | "cli")).then(|| name.to_string())
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every module named by a `crate::` path in `text`, `crate::{a, b}` too.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    out.push(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

/// A file's text without comment lines (docs name modules freely).
fn code_of(file: &Path) -> String {
    std::fs::read_to_string(file)
        .expect("read")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn imports_point_down_the_layers_only() {
    let src = src();
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = top_module(&src, file) else {
            continue;
        };
        let Some(layer) = layer_of(&module) else {
            violations.push(format!(
                "{}: module {module} is in no layer of tests/tidy.rs",
                file.display()
            ));
            continue;
        };
        let text = code_of(file);
        for used in crate_paths(&text) {
            if used == module
                || matches!(
                    used.as_str(),
                    "Error" | "ErrorKind" | "Result" | "Checkpoint" | "TensorInfo"
                )
            {
                continue;
            }
            match layer_of(&used) {
                Some(used_layer) if used_layer < layer => {}
                Some(_) => violations.push(format!(
                    "{}: {module} uses crate::{used}, which is not below it",
                    file.display()
                )),
                None => {
                    violations.push(format!("{}: crate::{used} is in no layer", file.display()))
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_core_names_no_web_or_gpu_type() {
    let src = src();
    let mut files = Vec::new();
    source_files(&src, &mut files);
    for file in &files {
        let module = top_module(&src, file);
        let code = code_of(file);
        let allowed_web = module.as_deref() == Some("web");
        let allowed_gpu = module.as_deref() == Some("gpu") || file.ends_with("cli/mod.rs");
        for (name, allowed) in [
            ("web_sys", allowed_web),
            ("js_sys", allowed_web),
            ("wasm_bindgen", allowed_web),
            ("wgpu", allowed_gpu),
        ] {
            assert!(
                allowed || !code.contains(&format!("{name}::")),
                "{} names {name}",
                file.display()
            );
        }
    }
}

#[test]
fn every_file_says_what_it_is_for_and_stays_short() {
    let src = src();
    let mut files = Vec::new();
    source_files(&src, &mut files);
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        assert!(
            text.trim_start().starts_with("//!"),
            "{} does not open with a //! paragraph",
            file.display()
        );
        let lines = text.lines().count();
        assert!(
            lines <= MAX_LINES,
            "{} has {lines} lines (at most {MAX_LINES}: split it by responsibility)",
            file.display()
        );
    }
}

#[test]
fn crate_paths_are_found_in_every_form() {
    assert_eq!(
        crate_paths("use crate::check::x; crate::{arch, diagnosis::y};"),
        vec!["check", "arch", "diagnosis"]
    );
}
