//! `convert` and `fix`: the commands that write files. The plan comes from
//! the core (`ckptcheck::convert`); this writes it to disk, each file under
//! a `.partial` name renamed into place when complete, so an error (a
//! hostile input, a full disk) never leaves a file that looks finished, and
//! never overwrites an input. `fix` plans the key edits from the check's
//! findings, writes, reads the result back and checks it again.

use super::args::Args;
use super::{check_against_model, print_json, ProgressBar};
use ckptcheck::convert::{self, ConvertOptions, Plan, Target};
use ckptcheck::diagnosis::{self, check};
use ckptcheck::loader::Loader;
use ckptcheck::source::{ByteSource, FileSource};
use ckptcheck::write::{
    convert_files, local_checkpoint_files, open_local, summary, write_plan, Written, WrittenFile,
};
use ckptcheck::{format, human, Error, ErrorKind};
use std::path::Path;
use std::process::ExitCode;

/// `write_plan` with a progress bar on a terminal's stderr.
fn write_with_bar(
    plan: &Plan,
    sources: &[&dyn ByteSource],
    files: &[&FileSource],
    inputs: &[std::path::PathBuf],
    out: &Path,
) -> Result<Vec<WrittenFile>, Error> {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let mut bar = ProgressBar {
        start: std::time::Instant::now(),
        last_draw: None,
    };
    let written = write_plan(
        plan,
        sources,
        Some(files),
        inputs,
        out,
        &mut |done, total| {
            if terminal {
                bar.draw(done, total);
            }
        },
    );
    bar.clear();
    written
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
    use std::io::IsTerminal;
    let out = args
        .output
        .as_ref()
        .ok_or_else(|| Error::new(ErrorKind::BadArgument, "convert needs -o OUT"))?;
    let terminal = std::io::stderr().is_terminal();
    let mut bar = ProgressBar {
        start: std::time::Instant::now(),
        last_draw: None,
    };
    let converted = convert_files(
        &args.files,
        out,
        target(args)?,
        args.shard_size,
        args.state_dict_path.clone(),
        &mut |done, total| {
            if terminal {
                bar.draw(done, total);
            }
        },
    );
    bar.clear();
    let (plan, written) = converted?;
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
    let files = open_local(&args.files)?;
    let chosen = local_checkpoint_files(&files)?;
    let sources: Vec<&dyn ByteSource> = chosen.iter().map(|f| *f as &dyn ByteSource).collect();
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

    let written = write_with_bar(&plan, &sources, &chosen, &args.files, out)?;
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
