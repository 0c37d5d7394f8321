//! Writing a convert plan (`crate::convert`) to disk, natively: each file
//! under a `.partial` name renamed into place when complete, so an error
//! (a hostile input, a full disk) never leaves a file that looks finished,
//! and never overwrites an input. Verbatim ranges of local files are copied
//! inside the kernel. The CLI's `convert` and `fix` and the Python
//! package's `convert` write through here.

use crate::convert::{self, Plan};
use crate::error::{err, Error, ErrorKind, Result};
use crate::source::{ByteSource, FileSource};
use serde::Serialize;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `--json` prints after writing.
#[derive(Serialize)]
pub struct Written<'a> {
    pub files: Vec<WrittenFile>,
    #[serde(flatten)]
    pub plan: PlanSummary<'a>,
}

#[derive(Serialize)]
pub struct WrittenFile {
    pub path: String,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct PlanSummary<'a> {
    tensors: &'a [convert::WrittenTensor],
    deduplicated: &'a [(String, String)],
    dropped: &'a [String],
    metadata: &'a std::collections::BTreeMap<String, String>,
    left_out_values: &'a [String],
    total_size: u64,
    notes: &'a [String],
}

pub fn summary(plan: &Plan) -> PlanSummary<'_> {
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
            return Err(err(
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
        err(ErrorKind::Io, format!("cannot make the folder: {e}"))
            .in_file(&out.display().to_string())
    })?;
    Ok(plan.files.iter().map(|f| out.join(&f.name)).collect())
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    err(ErrorKind::Io, format!("{what}: {e}")).in_file(&path.display().to_string())
}

/// Write every file of `plan` (from `sources`) to `out`; nothing is left
/// behind on an error.
/// `files`, when given, are `sources` as files, for in-kernel copies of
/// verbatim ranges.
/// `progress` is told the bytes written so far and the total.
pub fn write_plan(
    plan: &Plan,
    sources: &[&dyn ByteSource],
    files: Option<&[&FileSource]>,
    inputs: &[PathBuf],
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<WrittenFile>, Error> {
    let paths = destinations(plan, out)?;
    let inputs: HashSet<PathBuf> = inputs
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    for path in &paths {
        if path.canonicalize().is_ok_and(|p| inputs.contains(&p)) {
            return Err(err(
                ErrorKind::BadArgument,
                "the output would overwrite an input",
            )
            .in_file(&path.display().to_string()));
        }
    }
    let total: u64 = plan.files.iter().map(|f| f.len).sum();
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
                progress(done, total);
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
    if let Err(error) = result {
        for path in finished {
            let _ = std::fs::remove_file(path);
        }
        return Err(error);
    }
    Ok(written)
}

/// Every local file given, folders expanded. The writer copies ranges of
/// its inputs inside the kernel, so it reads local files only; a URL is
/// refused with what to do instead.
pub fn open_local(paths: &[PathBuf]) -> Result<Vec<FileSource>> {
    if let Some(url) = paths.iter().find(|p| crate::open::is_url(p)) {
        return Err(err(
            ErrorKind::BadArgument,
            "convert and fix write from local files; download the checkpoint first (inspect, check and scan read URLs)",
        )
        .in_file(&url.display().to_string()));
    }
    crate::open::expand(paths)?
        .iter()
        .map(|p| FileSource::open(p))
        .collect()
}

/// The files among `files` that are checkpoints or a shard index (in a
/// folder, config JSONs and other files beside the shards are left out).
pub fn local_checkpoint_files(files: &[FileSource]) -> Result<Vec<&FileSource>> {
    crate::open::choose_checkpoints(files, |file| file as &dyn ByteSource)
}

/// `convert`: read the checkpoint at `paths`, plan its safetensors (in
/// `target`'s dtype, sharded at `shard_size`, the weights at
/// `state_dict_path`) and write them to `out` (`OUT.safetensors`, or a
/// folder).
pub fn convert_files(
    paths: &[PathBuf],
    out: &Path,
    target: convert::Target,
    shard_size: Option<u64>,
    state_dict_path: Option<Vec<String>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Plan, Vec<WrittenFile>)> {
    let files = open_local(paths)?;
    let chosen = local_checkpoint_files(&files)?;
    let sources: Vec<&dyn ByteSource> = chosen.iter().map(|f| *f as &dyn ByteSource).collect();
    let checkpoint = crate::format::read_files(&sources)?;
    let stem = if out.extension().is_some_and(|e| e == "safetensors") {
        out.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string()
    } else {
        "model".to_string()
    };
    let options = convert::ConvertOptions {
        target,
        shard_size,
        state_dict_path,
        edits: convert::Edits::default(),
        stem,
    };
    let plan = convert::plan(&checkpoint, &sources, &options)?;
    let written = write_plan(&plan, &sources, Some(&chosen), paths, out, progress)?;
    Ok((plan, written))
}
