//! The command line behind `src/main.rs`: parses arguments, calls the core, prints.
//! `inspect`, `check`, `infer`, `diff`, `presets`, `verify`, `scan`. Exit
//! codes: 0 success (or "loads", or a forward pass that ran with a finite
//! output, or a clean scan), 1 "won't load" (or a forward pass that failed,
//! or a scan that found NaN, Inf or all-zero tensors), 2 an input error,
//! with one line naming the file, 3 "loads with warnings" (from_pretrained
//! newly initializes weights or drops checkpoint keys, and only logs it).

pub mod arena;
mod args;
mod audit;
mod json_layout;
mod write;

use args::Args;
use ckptcheck::diagnosis::check;
use ckptcheck::open::{self, Opened};
use ckptcheck::reference::model::{self, ModelDesc};
use ckptcheck::source::ByteSource;
use ckptcheck::{arch, diagnosis, format, human, npy, verify, Checkpoint, Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A progress bar on stderr, redrawn at most ten times a second.
struct ProgressBar {
    start: std::time::Instant,
    last_draw: Option<std::time::Instant>,
}

impl ProgressBar {
    fn draw(&mut self, done: u64, total: u64) {
        let now = std::time::Instant::now();
        if done < total
            && self
                .last_draw
                .is_some_and(|last| now.duration_since(last).as_millis() < 100)
        {
            return;
        }
        self.last_draw = Some(now);
        let fraction = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        let filled = (fraction * 30.0) as usize;
        let seconds = now.duration_since(self.start).as_secs_f64().max(1e-9);
        eprint!(
            "\r\x1b[K{:>3}% [{}{}] {} / {}  {}/s",
            (fraction * 100.0) as u32,
            "#".repeat(filled),
            ".".repeat(30 - filled.min(30)),
            human::human_bytes(done),
            human::human_bytes(total),
            human::human_bytes((done as f64 / seconds) as u64),
        );
    }

    fn clear(&self) {
        if self.last_draw.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

fn scan(paths: &[PathBuf], json: bool) -> Result<ExitCode, Error> {
    use std::io::IsTerminal;
    if paths.is_empty() {
        return Err(Error::new(ErrorKind::BadArgument, "scan needs a FILE"));
    }
    let sources = open::open_all(paths)?;
    let refs: Vec<&dyn ByteSource> = sources
        .iter()
        .map(|s| s.as_ref() as &dyn ByteSource)
        .collect();
    let terminal = std::io::stderr().is_terminal();
    let mut bar = ProgressBar {
        start: std::time::Instant::now(),
        last_draw: None,
    };
    let result = ckptcheck::scan::scan_sources(&refs, &mut |done, total| {
        if terminal {
            bar.draw(done, total);
        }
        true
    });
    bar.clear();
    let report = result?;
    if json {
        print_report(&report, &sources)?;
    } else {
        print!("{}", ckptcheck::scan::to_text(&report));
        print_remote_stats(&sources);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A report's JSON on stdout: streamed from the report itself when every
/// file was local, else with the remote figures added.
fn print_report<T: serde::Serialize>(report: &T, files: &[Opened]) -> Result<(), Error> {
    if open::remote_stats(files).is_none() {
        print_json(report);
    } else {
        print_json(&open::report_json(report, files)?);
    }
    Ok(())
}

/// On stderr, for files read from URLs: the requests sent and the bytes
/// fetched.
fn print_remote_stats(files: &[Opened]) {
    for stats in open::remote_stats(files)
        .iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
    {
        eprintln!(
            "ckptcheck: {}: {} requests, {} fetched",
            stats["file"].as_str().unwrap_or_default(),
            stats["requests"],
            human::human_bytes(stats["bytes_fetched"].as_u64().unwrap_or(0))
        );
    }
}

fn read(paths: &[PathBuf]) -> Result<Checkpoint, Error> {
    open::read(paths)
}

/// `check` and `fix`: the model from `--model` or `--config`, and the
/// report of the checkpoint against it (at `--state-dict-path` if given).
fn check_against_model(
    checkpoint: &Checkpoint,
    args: &Args,
) -> Result<(arch::ModelSpec, diagnosis::CheckReport), Error> {
    let choice = match &args.model {
        Some(path) => open::ModelChoice::Model(path.clone()),
        None => open::ModelChoice::Configs(args.configs.clone()),
    };
    let model = open::model_for(&choice)?;
    let report = open::check_against(
        checkpoint,
        &model,
        args.loader,
        args.state_dict_path.as_deref(),
    )?;
    Ok((model, report))
}

/// Writes the JSON to stdout in one `write_all`, laid out in memory first (a
/// 3.8 GB checkpoint's listing is 211 KB). A closed pipe (`| head`) ends the
/// output quietly.
fn print_json<T: serde::Serialize>(value: &T) {
    print_laid_out(|listing| json_layout::write_listing(listing, value));
}

/// `inspect --json`'s listing of a checkpoint (`print_json`'s layout, its
/// tensor lines written directly).
fn print_checkpoint(checkpoint: &Checkpoint) {
    print_laid_out(|listing| json_layout::write_checkpoint(listing, checkpoint));
}

fn print_laid_out(lay_out: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>) {
    use std::io::Write;
    let mut listing = Vec::with_capacity(256 * 1024);
    let laid_out = lay_out(&mut listing).map_err(std::io::Error::from);
    listing.push(b'\n');
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = laid_out
        .and_then(|()| out.write_all(&listing))
        .and_then(|()| out.flush());
    if let Err(error) = written {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("ckptcheck: cannot write the JSON: {error}");
        }
    }
}

fn inspect_text(checkpoint: &Checkpoint) -> String {
    let mut out = format!(
        "{}: {} with {} tensors, {} parameters, {} ({} read)\n",
        checkpoint.file,
        checkpoint.format,
        checkpoint.tensors.len(),
        checkpoint.total_parameters(),
        human::human_bytes(checkpoint.file_bytes),
        human::human_bytes(checkpoint.bytes_read)
    );
    if checkpoint.format == "gguf" {
        let architecture = checkpoint
            .metadata
            .get("general.architecture")
            .and_then(|value| value.as_str())
            .filter(|value| !value.is_empty())
            .unwrap_or("(missing)");
        out.push_str(&format!("  general.architecture: {architecture}\n"));
    }
    for (dtype, count) in checkpoint.parameters_by_dtype() {
        out.push_str(&format!("  {dtype}: {count} parameters\n"));
    }
    if let Some(audit) = &checkpoint.pickle_audit {
        if audit.is_unsafe() {
            out.push_str(&format!(
                "  UNSAFE pickle: references {} (never evaluated)\n",
                audit.unsafe_globals()
            ));
        } else if let Some(refused) = ckptcheck::format::pytorch::weights_only_refusal(audit) {
            out.push_str(&format!(
                "  torch.load(weights_only=True) refuses: {}\n",
                refused
            ));
        } else {
            out.push_str("  pickle: only globals torch.load(weights_only=True) allows\n");
        }
    }
    for value in checkpoint
        .values
        .iter()
        .filter(|v| v.path.len() == 1)
        .take(20)
    {
        out.push_str(&format!("  {} = {}\n", value.path.join("."), value.value));
    }
    for note in &checkpoint.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out.push_str(&tree(checkpoint));
    out
}

/// Names as a tree: consecutive tensors sharing a prefix collapse into
/// `prefix.{0..11}.*` lines so a 400-tensor model fits a screen.
fn tree(checkpoint: &Checkpoint) -> String {
    let mut out = String::new();
    let mut last_group = String::new();
    let mut group_count = 0usize;
    let mut group_params = 0u64;
    let flush = |out: &mut String, group: &str, count: usize, params: u64| {
        if count > 0 {
            let group = if group.is_empty() { "(root)" } else { group };
            out.push_str(&format!(
                "  {group:<60} {count:>5} tensors {params:>14} params\n"
            ));
        }
    };
    for tensor in &checkpoint.tensors {
        let key = tensor.path.join("/");
        let parts: Vec<&str> = key.split(['.', '/']).collect();
        let group = match parts.iter().position(|p| p.parse::<u64>().is_ok()) {
            Some(i) => format!("{}.N.*", parts[..i].join(".")),
            None => parts[..parts.len().saturating_sub(1)].join("."),
        };
        if group != last_group {
            flush(&mut out, &last_group, group_count, group_params);
            last_group = group;
            group_count = 0;
            group_params = 0;
        }
        group_count += 1;
        group_params = group_params.saturating_add(tensor.numel());
    }
    flush(&mut out, &last_group, group_count, group_params);
    out
}

fn run(args: &Args) -> Result<ExitCode, Error> {
    match args.command {
        "inspect" => {
            if args.files.is_empty() {
                return Err(Error::new(ErrorKind::BadArgument, "inspect needs a FILE"));
            }
            let files = open::open_all(&args.files)?;
            let sources = open::checkpoint_sources(&files)?;
            // The process ends after this one read (see below).
            format::leave_parse_state_to_exit();
            let mut checkpoint = format::read_files(&sources)?;
            if args.exact_offsets {
                format::confirm_offsets(&mut checkpoint, &sources)?;
            }
            // A pickle that could run code is an `unsafe_pickle` error (exit
            // 2); the listing is still printed, and with --json the error
            // rides along with it.
            let unsafe_pickle = open::unsafe_pickle_error(&checkpoint);
            if args.json {
                if unsafe_pickle.is_none() && open::remote_stats(&files).is_none() {
                    // Written straight from the checkpoint: the common
                    // case, and the fast one.
                    print_checkpoint(&checkpoint);
                } else {
                    print_json(&open::inspect_json(&checkpoint, &files)?);
                }
            } else {
                print!("{}", inspect_text(&checkpoint));
                print_remote_stats(&files);
            }
            // The process ends here: freeing a listing of thousands of
            // tensors, one block at a time, is work nobody waits for.
            std::mem::forget(checkpoint);
            if let Some(error) = unsafe_pickle {
                eprintln!("{error}");
                return Ok(ExitCode::from(2));
            }
            Ok(ExitCode::SUCCESS)
        }
        "check" => {
            if let [path] = args.files.as_slice() {
                // The folder, or its model_index.json named directly.
                let folder = match path.file_name().and_then(|n| n.to_str()) {
                    Some(ckptcheck::pipeline::INDEX_NAME) if path.is_file() => path
                        .parent()
                        .filter(|parent| !parent.as_os_str().is_empty())
                        .unwrap_or(std::path::Path::new(".")),
                    _ => path.as_path(),
                };
                if folder.join(ckptcheck::pipeline::INDEX_NAME).is_file() {
                    return check_pipeline(folder, args);
                }
            }
            require_model(args)?;
            let files = open::open_all(&args.files)?;
            let checkpoint = open::read_opened(&args.files, &files)?;
            let (_, report) = check_against_model(&checkpoint, args)?;
            if args.json {
                print_report(&report, &files)?;
            } else {
                print!("{}", diagnosis::to_text(&report));
                print_remote_stats(&files);
            }
            Ok(match report.verdict {
                diagnosis::Verdict::Loads => ExitCode::SUCCESS,
                diagnosis::Verdict::WontLoad => ExitCode::from(1),
                diagnosis::Verdict::LoadsWithWarnings => ExitCode::from(3),
            })
        }
        "snippet" => {
            print!("{}", arch::dump::SNIPPET);
            Ok(ExitCode::SUCCESS)
        }
        "infer" => {
            let checkpoint = read(&args.files)?;
            let inferred = diagnosis::infer_checkpoint(&checkpoint);
            if args.json {
                print_json(&inferred);
            } else {
                println!("family: {}", inferred.family);
                match &inferred.preset {
                    Some(p) => println!("preset: {p} (exact match)"),
                    None => println!("preset: none matches exactly"),
                }
                if let Some(shaped) = &inferred.shaped_like {
                    println!("shaped like: {shaped}");
                }
                for field in &inferred.fields {
                    println!("  {} = {}   ({})", field.field, field.value, field.evidence);
                }
                for note in &inferred.undetermined {
                    println!("  undetermined: {note}");
                }
                for score in inferred.ranking.iter().take(5) {
                    println!("  {:<50} {} findings", score.preset, score.findings);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "diff" => {
            let [a, b] = args.files.as_slice() else {
                return Err(Error::new(
                    ErrorKind::BadArgument,
                    "diff needs exactly two files",
                ));
            };
            let left = read(std::slice::from_ref(a))?;
            let right = read(std::slice::from_ref(b))?;
            let diff = ckptcheck::check::diff(&left, &right);
            // Would B load where A loads? A's tensors are the model.
            let report = check(&right, &diagnosis::model_from_reference(&left), args.loader);
            let verdict = diagnosis::diff_verdict(&report);
            if args.json {
                let mut json = serde_json::to_value(&diff).unwrap_or_default();
                json["b_loads_into_a"] = serde_json::to_value(&verdict).unwrap_or_default();
                print_json(&json);
            } else {
                print!("{}", ckptcheck::check::diff_text(&diff));
                println!("{}", verdict.text);
            }
            Ok(ExitCode::SUCCESS)
        }
        "scan" => scan(&args.files, args.json),
        "audit" => audit::audit(
            &args.files,
            args.json,
            args.jobs,
            args.resume.as_deref(),
            args.scan,
        ),
        "presets" => {
            let presets = arch::presets();
            if args.json {
                let list: Vec<_> = presets
                    .iter()
                    .map(|(name, family, description)| serde_json::json!({"name": name, "family": family, "description": description}))
                    .collect();
                print_json(&list);
            } else {
                for (name, family, description) in presets {
                    println!("{name:<50} {family:<10} {description}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "verify" => verify(args),
        "convert" => write::convert(args),
        "fix" => {
            require_model(args)?;
            write::fix(args)
        }
        other => Err(Error::new(
            ErrorKind::BadArgument,
            format!("unknown command {other:?}"),
        )),
    }
}

/// `check` and `fix` need a model, unless given a pipeline folder: said
/// before any file is opened, as a usage error is.
fn require_model(args: &Args) -> Result<(), Error> {
    if args.configs.is_empty() && args.model.is_none() {
        return Err(Error::new(
            ErrorKind::BadArgument,
            format!(
                "{} needs --config PRESET|PATH or --model PATH (only a diffusers pipeline folder carries its own)",
                args.command
            ),
        ));
    }
    Ok(())
}

/// A diffusers pipeline folder, component by component; exit 0 when every
/// component loads and fits the others, 1 otherwise.
fn check_pipeline(folder: &std::path::Path, args: &Args) -> Result<ExitCode, Error> {
    if !args.configs.is_empty() || args.model.is_some() {
        return Err(Error::new(
            ErrorKind::BadArgument,
            "a pipeline folder is checked against its own model_index.json and configs: drop --config/--model",
        ));
    }
    let report = open::check_pipeline_folder(folder, args.variant.as_deref())?;
    if args.json {
        print_json(&report);
    } else {
        print!("{}", ckptcheck::pipeline::to_text(&report));
    }
    Ok(if report.consistent {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The model to run: `--config` presets or JSONs; without `--config`, a
/// `config.json` in (or beside) the checkpoint's folder, else the preset
/// whose tensors the checkpoint matches exactly.
fn verify_model(args: &Args, checkpoint: &Checkpoint) -> Result<ModelDesc, Error> {
    match args.configs.as_slice() {
        [one] if !Path::new(one).exists() => return model::from_preset(one),
        [] => {}
        several => {
            let mut texts = Vec::new();
            for path in several {
                texts.push((path.clone(), open::read_config_text(Path::new(path))?));
            }
            return model::from_config_texts(&texts);
        }
    }
    for file in &args.files {
        let folder = if file.is_dir() {
            Some(file.as_path())
        } else {
            file.parent()
        };
        if let Some(config) = folder
            .map(|f| f.join("config.json"))
            .filter(|c| c.is_file())
        {
            let text = open::read_config_text(&config)?;
            return model::from_config_texts(&[(config.display().to_string(), text)]);
        }
    }
    match diagnosis::infer_checkpoint(checkpoint).preset {
        Some(preset) => model::from_preset(&preset),
        None => Err(Error::new(
            ErrorKind::BadArgument,
            "verify needs --config PRESET|PATH (no config.json beside the checkpoint, and no preset matches it exactly)",
        )),
    }
}

fn verify(args: &Args) -> Result<ExitCode, Error> {
    arena::reuse_freed_memory();
    if args.files.is_empty() {
        return Err(Error::new(ErrorKind::BadArgument, "verify needs a FILE"));
    }
    let device = match args.device.as_deref() {
        None => None,
        Some(text) => Some(verify::Device::parse(text)?),
    };
    let files = open::open_all(&args.files)?;
    let sources = open::checkpoint_sources(&files)?;
    let checkpoint = format::read_files(&sources)?;
    let desc = verify_model(args, &checkpoint)?;
    let input = match &args.input {
        None => None,
        Some(path) => {
            let name = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot read input: {e}")).in_file(&name)
            })?;
            Some(npy::read(&bytes).map_err(|e| e.in_file(&name))?)
        }
    };
    let start = std::time::Instant::now();
    let clock = move || start.elapsed().as_secs_f64() * 1000.0;
    let verdict = run_verify(
        device,
        &checkpoint,
        sources,
        &desc,
        input,
        (args.layers, !args.no_reference, args.threads),
        &clock,
    )?;
    if let Some(path) = &args.output {
        std::fs::write(path, verify::output_npy(&verdict)).map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot write output: {e}"))
                .in_file(&path.display().to_string())
        })?;
    }
    if args.json {
        print_json(&verdict);
    } else {
        print!("{}", verify::to_text(&verdict));
    }
    Ok(if verdict.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The verify the flags ask for: `--device cpu` on the CPU; `--device gpu`
/// on the GPU (an error without an adapter, or without the gpu feature);
/// no `--device`: the GPU when there is one, else the CPU.
fn run_verify(
    device: Option<verify::Device>,
    checkpoint: &Checkpoint,
    sources: Vec<&dyn ByteSource>,
    desc: &ModelDesc,
    input: Option<npy::Array>,
    (layers, compare, threads): (Option<usize>, bool, Option<usize>),
    clock: &ckptcheck::weights::Clock,
) -> Result<verify::Verdict, Error> {
    let on_cpu = |sources, input| {
        verify::verify_cpu(
            checkpoint,
            sources,
            desc,
            input,
            layers,
            threads,
            clock,
            &mut |_| {},
        )
    };
    if device == Some(verify::Device::Cpu) {
        return on_cpu(sources, input);
    }
    #[cfg(feature = "gpu")]
    let verdict = match pollster::block_on(ckptcheck::gpu::Context::new()) {
        Ok(context) => pollster::block_on(ckptcheck::gpu::verify::verify_gpu(
            &context,
            checkpoint,
            sources,
            desc,
            input,
            layers,
            clock,
            compare,
            &mut |_| {},
        )),
        Err(reason) if device.is_none() => {
            eprintln!("ckptcheck: no GPU ({reason}); running on the CPU");
            on_cpu(sources, input)
        }
        Err(reason) => Err(Error::new(
            ErrorKind::Io,
            format!("--device gpu: no GPU adapter: {reason}"),
        )),
    };
    #[cfg(not(feature = "gpu"))]
    let verdict = {
        let _ = compare;
        match device {
            Some(verify::Device::Gpu) => Err(Error::new(
                ErrorKind::BadArgument,
                "this ckptcheck was built without the gpu feature: use --device cpu, or build with --features gpu",
            )),
            _ => on_cpu(sources, input),
        }
    };
    verdict
}

pub fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `ckptcheck infer f | head -1` would panic on
    // its next print; as other command-line tools do, end quietly when the
    // reader goes away.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            // With --json the error is data too: its kind, file, tensor,
            // byte offset, cause and fix, on stdout where the result would be.
            if args.json {
                print_json(&serde_json::json!({ "error": error }));
            }
            eprintln!("ckptcheck: {error}");
            ExitCode::from(2)
        }
    }
}
