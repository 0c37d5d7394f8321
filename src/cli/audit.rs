//! `ckptcheck audit`: many files at once, for whoever keeps a model zoo.
//! Every file under the paths given is inspected and its pickles audited
//! (with `--scan`, its weights scanned too), `--jobs` at a time; each gets
//! one verdict (ok, unsafe, bad weights, not loadable, truncated, a Git LFS
//! pointer, not a checkpoint, unreadable), printed as
//! it is reached, in order, so an interrupted run's output is a valid
//! prefix; `--resume` reads such an output back and goes on from there. The
//! summary counts the verdicts of the old lines and the new. URLs (in the
//! arguments or the list) are read by range like local files.

use ckptcheck::{format, Error, ErrorKind};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Files judged between two writes of the output.
const BATCH: usize = 256;
/// Folders are walked this deep at most (and symbolic links to folders are
/// not followed), so a loop in the tree cannot run forever.
const MAX_DEPTH: usize = 64;
/// The verdicts, in the order the summary gives them.
const VERDICTS: [&str; 8] = [
    "ok",
    "unsafe",
    "bad_weights",
    "not_loadable",
    "truncated",
    "lfs_pointer",
    "not_checkpoint",
    "unreadable",
];

/// The files to audit: files as given, folders walked (sorted), `@LIST`
/// read one path a line.
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for path in paths {
        let text = path.to_string_lossy();
        if let Some(list) = text.strip_prefix('@') {
            let listed = std::fs::read_to_string(list)
                .map_err(|e| Error::new(ErrorKind::Io, format!("{list}: {e}")))?;
            files.extend(
                listed
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(PathBuf::from),
            );
        } else if !ckptcheck::open::is_url(path) && path.is_dir() {
            walk(path, 0, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(folder: &Path, depth: usize, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(folder)
        .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", folder.display())))?
        .filter_map(|entry| entry.ok())
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&entry.path(), depth + 1, files)?;
        } else if kind.is_file() || kind.is_symlink() && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// One file's line: its verdict and what backs it. With `scan`, a file
/// that reads and is safe has its weights scanned: NaN, Inf or an all-zero
/// floating-point tensor make it `bad_weights`.
fn judge(path: &Path, scan: bool) -> Value {
    let name = path.to_string_lossy().into_owned();
    let read = ckptcheck::open::open(path)
        .and_then(|source| format::read_checkpoint(source.as_ref()).map(|c| (source, c)));
    match read {
        Ok((source, checkpoint)) => {
            let audit = checkpoint.pickle_audit.as_ref();
            let unsafe_pickle = audit.is_some_and(|a| a.is_unsafe());
            let scanned = (scan && !unsafe_pickle).then(|| {
                ckptcheck::scan::scan_sources(&[source.as_ref()], &mut |_, _| true)
                    .map(|report| report.summary)
            });
            let verdict = match &scanned {
                _ if unsafe_pickle => "unsafe",
                Some(Ok(summary))
                    if !(summary.with_nan.is_empty()
                        && summary.with_inf.is_empty()
                        && summary.all_zero.is_empty()) =>
                {
                    "bad_weights"
                }
                Some(Err(_)) => "not_loadable",
                _ => "ok",
            };
            let scan_json = scanned.map(|result| match result {
                Ok(summary) => json!({
                    "nan_values": summary.nan_values,
                    "inf_values": summary.inf_values,
                    "with_nan": summary.with_nan,
                    "with_inf": summary.with_inf,
                    "all_zero": summary.all_zero,
                }),
                Err(error) => json!({ "error": error.to_string() }),
            });
            json!({
                "file": name,
                "verdict": verdict,
                "scan": scan_json,
                "format": checkpoint.format,
                "tensors": checkpoint.tensors.len(),
                "parameters": checkpoint.tensors.iter().map(|t| t.numel()).fold(0u64, u64::saturating_add),
                "bytes": checkpoint.file_bytes,
                "severity": audit.map(|a| a.severity),
                "weights_only_loads": audit.map(|a| a.weights_only_loads),
                "unsafe_globals": audit.map(|a| a.unsafe_names()).unwrap_or_default(),
                "calls": audit.map(|a| a.calls.clone()).unwrap_or_default(),
            })
        }
        Err(error) => {
            let verdict = match (error.kind, error.cause()) {
                (ErrorKind::UnsafePickle, _) => "unsafe",
                (_, Some("git-lfs-pointer")) => "lfs_pointer",
                (ErrorKind::Truncated, _) => "truncated",
                (ErrorKind::UnsupportedFormat, _) => "not_checkpoint",
                (ErrorKind::Io | ErrorKind::Remote, _) => "unreadable",
                _ => "not_loadable",
            };
            json!({
                "file": name,
                "verdict": verdict,
                "kind": error.kind,
                "cause": error.cause(),
                "message": error.to_string(),
            })
        }
    }
}

/// The lines of an earlier run: the files they judged and their verdicts.
fn earlier(path: &Path) -> Result<Vec<(String, String)>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(ErrorKind::Io, format!("{}: {e}", path.display())))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|row| {
            Some((
                row.get("file")?.as_str()?.to_string(),
                row.get("verdict")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

pub fn audit(
    paths: &[PathBuf],
    jsonl: bool,
    jobs: Option<usize>,
    resume: Option<&Path>,
    scan: bool,
) -> Result<ExitCode, Error> {
    let done = match resume {
        Some(path) => earlier(path)?,
        None => Vec::new(),
    };
    let seen: HashSet<&str> = done.iter().map(|(file, _)| file.as_str()).collect();
    let files: Vec<PathBuf> = collect(paths)?
        .into_iter()
        .filter(|file| !seen.contains(file.to_string_lossy().as_ref()))
        .collect();
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(jobs) = jobs {
        builder = builder.num_threads(jobs.max(1));
    }
    let pool = builder
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start {jobs:?} workers: {e}")))?;
    let mut counts: Vec<usize> = VERDICTS
        .iter()
        .map(|verdict| done.iter().filter(|(_, v)| v == verdict).count())
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for batch in files.chunks(BATCH) {
        let rows: Vec<Value> =
            pool.install(|| batch.par_iter().map(|file| judge(file, scan)).collect());
        for row in rows {
            let verdict = row["verdict"].as_str().unwrap_or("unreadable");
            if let Some(index) = VERDICTS.iter().position(|v| *v == verdict) {
                counts[index] += 1;
            }
            let line = if jsonl {
                row.to_string()
            } else if let Some(message) = row["message"].as_str() {
                // An error's text begins with the file's name.
                format!("{verdict:<14} {message}")
            } else {
                format!(
                    "{verdict:<14} {}: {}, {} tensors",
                    row["file"].as_str().unwrap_or("?"),
                    row["format"].as_str().unwrap_or("?"),
                    row["tensors"]
                )
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(ExitCode::from(1));
            }
        }
        let _ = out.flush();
    }
    let total: usize = counts.iter().sum();
    let summary: Vec<String> = VERDICTS
        .iter()
        .zip(&counts)
        .map(|(verdict, count)| format!("{count} {}", verdict.replace('_', " ")))
        .collect();
    eprintln!(
        "audit: {total} files ({} from {}): {}",
        done.len(),
        resume.map_or("no earlier run".to_string(), |p| p.display().to_string()),
        summary.join(", ")
    );
    if jsonl {
        let counts: serde_json::Map<String, Value> = VERDICTS
            .iter()
            .zip(&counts)
            .map(|(verdict, count)| (verdict.to_string(), json!(count)))
            .collect();
        let _ = writeln!(
            out,
            "{}",
            json!({ "summary": { "files": total, "verdicts": counts } })
        );
    }
    // 2 when a file could run code on load, 1 when one will not load or
    // holds bad weights.
    Ok(if counts[1] > 0 {
        ExitCode::from(2)
    } else if counts[2] + counts[3] + counts[4] + counts[5] > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
