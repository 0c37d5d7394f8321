//! `convert` and `fix`: the commands that write files. The plan comes from
//! the core (`ckptcheck::convert`); this writes it to disk, each file under
//! a `.partial` name renamed into place when complete, so an error (a
//! hostile input, a full disk) never leaves a file that looks finished, and
//! never overwrites an input. `fix` plans the key edits from the check's
//! findings, writes, reads the result back and checks it again.

use super::args::Args;
use super::{
    check_against_model, checkpoint_files, checkpoint_sources, open_all, print_json, ProgressBar,
};
use ckptcheck::convert::{self, ConvertOptions, Edits, Plan, Target};
use ckptcheck::diagnosis::{self, check};
use ckptcheck::loader::Loader;
use ckptcheck::source::{ByteSource, FileSource};
use ckptcheck::{format, human, Error, ErrorKind};
use serde::Serialize;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `--json` prints after writing.
#[derive(Serialize)]
struct Written<'a> {
    files: Vec<WrittenFile>,
    #[serde(flatten)]
    plan: PlanSummary<'a>,
}

#[derive(Serialize)]
struct WrittenFile {
    path: String,
    bytes: u64,
}

#[derive(Serialize)]
struct PlanSummary<'a> {
    tensors: &'a [convert::WrittenTensor],
    deduplicated: &'a [(String, String)],
    dropped: &'a [String],
    metadata: &'a std::collections::BTreeMap<String, String>,
    left_out_values: &'a [String],
    total_size: u64,
    notes: &'a [String],
}

fn summary(plan: &Plan) -> PlanSummary<'_> {
    PlanSummary {
        tensors: &plan.tensors,
        deduplicated: &plan.deduplicated,
        dropped: &plan.dropped,
        metadata: &plan.metadata,
        left_out_values: &plan.left_out_values,
        total_size: plan.total_size,
        notes: &plan.notes,
    }
}

/// Where each output file goes: `OUT.safetensors` for one file, else into
/// the folder `OUT` (made if needed).
fn destinations(plan: &Plan, out: &Path) -> Result<Vec<PathBuf>, Error> {
    let single = out.extension().is_some_and(|e| e == "safetensors");
    if single {
        if plan.files.len() > 1 {
            return Err(Error::new(
                ErrorKind::BadArgument,
                format!(
                    "the output is {} files (shards and their index): give a folder, not {}",
                    plan.files.len(),
                    out.display()
                ),
            ));
        }
        return Ok(vec![out.to_path_buf()]);
    }
    std::fs::create_dir_all(out).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot make the folder: {e}"))
            .in_file(&out.display().to_string())
    })?;
    Ok(plan.files.iter().map(|f| out.join(&f.name)).collect())
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}")).in_file(&path.display().to_string())
}

/// Write every file of `plan` (from `sources`) to `out`; nothing is left
/// behind on an error.
/// `files`, when given, are `sources` as files, for in-kernel copies of
/// verbatim ranges.
fn write_plan(
    plan: &Plan,
    sources: &[&dyn ByteSource],
    files: Option<&[&FileSource]>,
    inputs: &[PathBuf],
    out: &Path,
) -> Result<Vec<WrittenFile>, Error> {
    use std::io::IsTerminal;
    let paths = destinations(plan, out)?;
    let inputs: HashSet<PathBuf> = inputs
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    for path in &paths {
        if path.canonicalize().is_ok_and(|p| inputs.contains(&p)) {
            return Err(Error::new(
                ErrorKind::BadArgument,
                "the output would overwrite an input",
            )
            .in_file(&path.display().to_string()));
        }
    }
    let total: u64 = plan.files.iter().map(|f| f.len).sum();
    let terminal = std::io::stderr().is_terminal();
    let mut bar = ProgressBar {
        start: std::time::Instant::now(),
        last_draw: None,
    };
    let mut done = 0u64;
    let mut finished: Vec<PathBuf> = Vec::new();
    let mut written = Vec::new();
    let mut result = Ok(());
    for (file, path) in plan.files.iter().zip(&paths) {
        let partial = path.with_extension(format!(
            "{}.partial",
            path.extension().and_then(|e| e.to_str()).unwrap_or("")
        ));
        let outcome = (|| -> Result<(), Error> {
            let mut handle = std::fs::File::create(&partial)
                .map_err(|e| io_error(&partial, "cannot create", e))?;
            for part in &file.parts {
                match (part, files) {
                    // A verbatim range of a file: copied inside the kernel.
                    (
                        convert::Part::Copy {
                            source,
                            offset,
                            len,
                        },
                        Some(files),
                    ) if files.get(*source).is_some() => {
                        files[*source].copy_range_to(*offset, *len, &mut handle)?;
                        done += len;
                    }
                    _ => {
                        let mut writer = std::io::BufWriter::with_capacity(1 << 20, &mut handle);
                        convert::write_part(part, sources, &mut |bytes| {
                            writer
                                .write_all(bytes)
                                .map_err(|e| io_error(&partial, "cannot write", e))?;
                            done += bytes.len() as u64;
                            Ok(())
                        })?;
                        writer
                            .flush()
                            .map_err(|e| io_error(&partial, "cannot write", e))?;
                    }
                }
                if terminal {
                    bar.draw(done, total);
                }
            }
            std::fs::rename(&partial, path)
                .map_err(|e| io_error(path, "cannot rename into place", e))
        })();
        if let Err(error) = outcome {
            let _ = std::fs::remove_file(&partial);
            result = Err(error);
            break;
        }
        finished.push(path.clone());
        written.push(WrittenFile {
            path: path.display().to_string(),
            bytes: file.len,
        });
    }
    bar.clear();
    if let Err(error) = result {
        for path in finished {
            let _ = std::fs::remove_file(path);
        }
        return Err(error);
    }
    Ok(written)
}

fn print_plan(plan: &Plan, files: &[WrittenFile]) {
    let converted = plan.tensors.iter().filter(|t| t.converted).count();
    for file in files {
        println!("wrote {} ({})", file.path, human::human_bytes(file.bytes));
    }
    println!(
        "  {} tensors, {} of data: {} copied as byte ranges, {converted} rewritten (dtype, byte order or a strided view)",
        plan.tensors.len(),
        human::human_bytes(plan.total_size),
        plan.tensors.len() - converted
    );
    for (name, kept) in &plan.deduplicated {
        println!("  written once: {name} is the same storage as {kept}");
    }
    if !plan.dropped.is_empty() {
        println!("  dropped: {}", plan.dropped.join(", "));
    }
    let metadata: Vec<String> = plan
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("  metadata: {}", metadata.join(", "));
    if !plan.left_out_values.is_empty() {
        println!(
            "  left out (not plain values): {}",
            plan.left_out_values.join(", ")
        );
    }
    for note in &plan.notes {
        println!("  note: {note}");
    }
}

fn target(args: &Args) -> Result<Target, Error> {
    convert::Target::parse(&args.dtype)
}

pub(super) fn convert(args: &Args) -> Result<ExitCode, Error> {
    let out = args
        .output
        .as_ref()
        .ok_or_else(|| Error::new(ErrorKind::BadArgument, "convert needs -o OUT"))?;
    let files = open_all(&args.files)?;
    let sources = checkpoint_sources(&files)?;
    let checkpoint = format::read_files(&sources)?;
    let stem = if out.extension().is_some_and(|e| e == "safetensors") {
        out.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string()
    } else {
        "model".to_string()
    };
    let options = ConvertOptions {
        target: target(args)?,
        shard_size: args.shard_size,
        state_dict_path: args.state_dict_path.clone(),
        edits: Edits::default(),
        stem,
    };
    let plan = convert::plan(&checkpoint, &sources, &options)?;
    let chosen = checkpoint_files(&files)?;
    let written = write_plan(&plan, &sources, Some(&chosen), &args.files, out)?;
    if args.json {
        print_json(&Written {
            files: written,
            plan: summary(&plan),
        });
    } else {
        print_plan(&plan, &written);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn fix(args: &Args) -> Result<ExitCode, Error> {
    let out = args
        .output
        .as_ref()
        .ok_or_else(|| Error::new(ErrorKind::BadArgument, "fix needs -o OUT"))?;
    if !matches!(args.loader, Loader::Strict | Loader::Hf) {
        return Err(Error::new(
            ErrorKind::BadArgument,
            "fix writes files for the strict and hf loaders (cn_clip's loaders fix keys themselves; an adapter is fixed in its adapter_config.json, as check says)",
        ));
    }
    let files = open_all(&args.files)?;
    let sources = checkpoint_sources(&files)?;
    let checkpoint = format::read_files(&sources)?;
    let (model, report) = check_against_model(&checkpoint, args)?;
    let edits = convert::edits_for(&report, &model, &args.renames);
    let options = ConvertOptions {
        target: target(args)?,
        shard_size: None,
        state_dict_path: Some(report.state_dict_path.clone()),
        edits,
        stem: out
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string(),
    };
    let plan = convert::plan(&checkpoint, &sources, &options)?;
    let chosen = checkpoint_files(&files)?;
    let written = write_plan(&plan, &sources, Some(&chosen), &args.files, out)?;
    // The written file, checked again the same way.
    let fixed_files: Vec<FileSource> = written
        .iter()
        .map(|f| FileSource::open(Path::new(&f.path)))
        .collect::<Result<_, _>>()?;
    let fixed_refs: Vec<&dyn ByteSource> =
        fixed_files.iter().map(|f| f as &dyn ByteSource).collect();
    let fixed = format::read_files(&fixed_refs)?;
    let after = check(&fixed, &model, args.loader);
    if args.json {
        let mut json = serde_json::to_value(Written {
            files: written,
            plan: summary(&plan),
        })
        .unwrap_or_default();
        json["edits"] = serde_json::to_value(&options.edits).unwrap_or_default();
        json["before"] = serde_json::json!({"verdict": report.verdict, "text": diagnosis::verdict_line(&report)});
        json["after"] = serde_json::to_value(&after).unwrap_or_default();
        print_json(&json);
    } else {
        println!("before: {}", diagnosis::verdict_line(&report));
        print_plan(&plan, &written);
        if let Some(prefix) = &options.edits.strip_prefix {
            println!("  stripped the prefix `{prefix}`");
        }
        if let Some(prefix) = &options.edits.add_prefix {
            println!("  added the prefix `{prefix}`");
        }
        println!("after: {}", diagnosis::verdict_line(&after));
        if !after.size_mismatches.is_empty() {
            println!(
                "  {} size mismatches remain: no key edit fixes a shape; the model config differs (see `ckptcheck check`)",
                after.size_mismatches.len()
            );
        }
    }
    Ok(match after.verdict {
        diagnosis::Verdict::Loads => ExitCode::SUCCESS,
        diagnosis::Verdict::WontLoad => ExitCode::from(1),
        diagnosis::Verdict::LoadsWithWarnings => ExitCode::from(3),
    })
}
