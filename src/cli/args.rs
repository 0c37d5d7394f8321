//! The command line's grammar, with clap: commands, options, `--help` with
//! examples per command, `--version`, `help <command>` and shell
//! completions. Parsing ends in the plain `Args` the commands read; a
//! usage error exits 2, as every input error does.

use ckptcheck::loader::Loader;
use clap::{Args as ClapArgs, CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

const ABOUT: &str = "Will this checkpoint load into this model, and if not, why and what to change? \
Reads only the bytes that describe tensors (safetensors, sharded, PyTorch .pt/.pth/.bin/.ckpt, GGUF).";

const EXAMPLES: &str = "Exit codes: 0 success or loads, 1 won't load (or NaN/Inf found, or a failed forward pass), 2 an input error, 3 loads with warnings.

Examples:
  ckptcheck inspect model.safetensors
  ckptcheck check clip_cn_vit-l-14-336.pt --config ViT-B-16@RoBERTa-wwm-ext-base-chinese --loader cn-clip
  ckptcheck infer checkpoint.pt
  ckptcheck scan model.safetensors
  ckptcheck help check";

#[derive(Parser)]
#[command(name = "ckptcheck", version, about = ABOUT, after_help = EXAMPLES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(ClapArgs)]
struct Files {
    /// Checkpoint files; a folder stands for the files in it (a sharded
    /// checkpoint with its index.json)
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(ClapArgs)]
struct Json {
    /// Print JSON (the fields are documented in README.md)
    #[arg(long)]
    json: bool,
}

/// The model a checkpoint is checked against (check and fix), and how it
/// is loaded.
#[derive(ClapArgs)]
struct ModelTarget {
    /// A preset name (`ckptcheck presets`) or a config JSON; twice for a
    /// Chinese-CLIP vision + text pair (not needed for a diffusers pipeline
    /// folder, which carries its own)
    #[arg(long = "config", conflicts_with = "model", value_name = "PRESET|PATH")]
    configs: Vec<String>,
    /// Any PyTorch model: a model dump (`ckptcheck snippet` writes one from
    /// your model in Python) or a reference checkpoint of the model
    /// (weights that load into it)
    #[arg(long, value_name = "DUMP.json|REFERENCE")]
    model: Option<PathBuf>,
    /// The code path that loads the checkpoint
    #[arg(long, default_value = "strict", value_parser = parse_loader, value_name = "strict|cn-clip|cn-clip-resume|hf|peft|ldm|diffusers")]
    loader: Loader,
}

#[derive(Subcommand)]
enum Command {
    /// List the tensors (names, dtypes, shapes, byte offsets), values,
    /// metadata and pickle audit of a checkpoint
    #[command(
        after_help = "Examples:\n  ckptcheck inspect model.safetensors\n  ckptcheck inspect ckpt.pt --json\n  ckptcheck inspect shards/ --json"
    )]
    Inspect {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        json: Json,
        /// Read every zip local header, so that no offset is a prediction
        #[arg(long)]
        exact_offsets: bool,
    },
    /// Say what load_state_dict (or the chosen loader) would report for
    /// this checkpoint and model, why, and what to change
    #[command(
        after_help = "Examples:\n  ckptcheck check ckpt.pt --config ViT-B-16@RoBERTa-wwm-ext-base-chinese --loader cn-clip\n  ckptcheck check model.safetensors --config config.json --loader hf --json\n  ckptcheck check ckpt.pt --config vision.json --config text.json\n  ckptcheck check finetune.pt --model model.ckptcheck.json\n  ckptcheck check finetune.pt --model official.safetensors\n  ckptcheck check lora/ --config base/config.json --loader peft\n  ckptcheck check stable-diffusion-v1-5/   (a diffusers pipeline folder, component by component)"
    )]
    Check {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        target: ModelTarget,
        /// Check the weights at this key path (keys joined by `/`, e.g.
        /// `state_dict_ema`) instead of the largest dict of tensors
        #[arg(long, value_name = "KEY/KEY")]
        state_dict_path: Option<String>,
        /// A diffusers pipeline folder's weight variant, as from_pretrained's
        /// `variant=` (`fp16` reads `diffusion_pytorch_model.fp16.safetensors`)
        #[arg(long, value_name = "VARIANT")]
        variant: Option<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Infer the config a checkpoint matches, with evidence, and rank the
    /// presets
    #[command(
        after_help = "Examples:\n  ckptcheck infer ckpt.pt\n  ckptcheck infer ckpt.pt --json"
    )]
    Infer {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        json: Json,
    },
    /// Compare two checkpoints' state dicts key by key
    #[command(after_help = "Example:\n  ckptcheck diff base.pt finetuned.pt")]
    Diff {
        /// The first checkpoint
        a: PathBuf,
        /// The second checkpoint
        b: PathBuf,
        #[command(flatten)]
        json: Json,
    },
    /// Write the checkpoint as safetensors (one file or shards with
    /// transformers' index), without running its pickle, in constant memory
    #[command(
        after_help = "Examples:\n  ckptcheck convert pytorch_model.bin -o model.safetensors\n  ckptcheck convert ckpt.pt -o out/ --dtype bf16 --shard-size 5GB\n  ckptcheck convert shards/ -o out/ --json"
    )]
    Convert {
        #[command(flatten)]
        files: Files,
        /// OUT.safetensors, or a folder (model.safetensors, or shards and
        /// model.safetensors.index.json)
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Floating-point tensors in this dtype (rounded as torch's .to() does)
        #[arg(long, default_value = "keep", value_name = "keep|f16|bf16|f32")]
        dtype: String,
        /// Largest shard (5GB, 500MB, 2GiB, or bytes); shards need a folder
        #[arg(long, value_parser = parse_size, value_name = "SIZE")]
        shard_size: Option<u64>,
        /// Write the weights at this key path (e.g. `state_dict_ema`)
        #[arg(long, value_name = "KEY/KEY")]
        state_dict_path: Option<String>,
        #[command(flatten)]
        json: Json,
    },
    /// Write the checkpoint with the check's remedies applied (nested dict
    /// unwrapped, prefixes stripped or added, stale and rejected keys
    /// dropped, tied weights written, keys renamed), then check it again
    #[command(
        after_help = "Examples:\n  ckptcheck fix compiled.pt --config config.json -o fixed.safetensors\n  ckptcheck fix ddp.pt --model model.ckptcheck.json -o fixed.safetensors --rename encoder.=backbone.encoder."
    )]
    Fix {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        target: ModelTarget,
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Rename keys that start with OLD to start with NEW (repeatable)
        #[arg(long = "rename", value_parser = parse_rename, value_name = "OLD=NEW")]
        renames: Vec<(String, String)>,
        /// Fix the weights at this key path (e.g. `state_dict_ema`)
        #[arg(long, value_name = "KEY/KEY")]
        state_dict_path: Option<String>,
        #[arg(long, default_value = "keep", value_name = "keep|f16|bf16|f32")]
        dtype: String,
        #[command(flatten)]
        json: Json,
    },
    /// Print the Python snippet that dumps any model for `check --model`
    #[command(
        after_help = "Run the snippet where your model is built, then:\n  ckptcheck_dump(model, \"model.ckptcheck.json\")\n  ckptcheck check ckpt.pt --model model.ckptcheck.json\n\nExample:\n  ckptcheck snippet > ckptcheck_dump.py"
    )]
    Snippet,
    /// List the built-in presets
    Presets {
        #[command(flatten)]
        json: Json,
    },
    /// Run the model on a fixed input (GPU through wgpu, or the CPU) and
    /// judge the output: finite, right shape, GPU = CPU
    #[command(
        after_help = "verify runs the model on a deterministic input (or --input: float32 image [1,3,R,R] or int64 token ids [1,T]) on the GPU (default, when there is one) or the CPU (every core, or --threads); a GPU run is compared with a CPU run on the same blocks unless --no-reference.\n\nExamples:\n  ckptcheck verify bert/ --device cpu\n  ckptcheck verify ckpt.pt --config ViT-B-16@RoBERTa-wwm-ext-base-chinese --layers 2\n  ckptcheck verify model.safetensors --input ids.npy --output out.npy"
    )]
    Verify {
        #[command(flatten)]
        files: Files,
        /// A preset name or config JSON (default: config.json beside the
        /// checkpoint, else the preset it matches)
        #[arg(long = "config", value_name = "PRESET|PATH")]
        configs: Vec<String>,
        /// Where to run: gpu or cpu (default: the GPU when there is one)
        #[arg(long, value_parser = parse_device, value_name = "gpu|cpu")]
        device: Option<String>,
        /// Run only the first K blocks
        #[arg(long, value_parser = parse_layers, value_name = "K")]
        layers: Option<usize>,
        /// Input as a NumPy .npy file
        #[arg(long, value_name = "x.npy")]
        input: Option<PathBuf>,
        /// Write the output as a NumPy .npy file
        #[arg(long, value_name = "out.npy")]
        output: Option<PathBuf>,
        /// Do not compare a GPU run with a CPU run
        #[arg(long)]
        no_reference: bool,
        /// CPU threads (default: every core)
        #[arg(long, value_parser = parse_threads, value_name = "N")]
        threads: Option<usize>,
        #[command(flatten)]
        json: Json,
    },
    /// Read every weight once: NaN, Inf, all-zero tensors, min/max/mean/std
    #[command(
        after_help = "Examples:\n  ckptcheck scan model.safetensors\n  ckptcheck scan ckpt.pt --json"
    )]
    Scan {
        #[command(flatten)]
        files: Files,
        #[command(flatten)]
        json: Json,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Example:\n  ckptcheck completions bash > /etc/bash_completion.d/ckptcheck"
    )]
    Completions { shell: clap_complete::Shell },
    /// Audit many files: inspect and pickle audit of every file under the
    /// paths, one verdict a file (ok, unsafe, not loadable, truncated, LFS
    /// pointer, not a checkpoint, unreadable) and a summary; exit 2 when a
    /// file could run code on load, 1 when one will not load
    #[command(
        after_help = "Examples:\n  ckptcheck audit models/ --jobs 8 --jsonl > audit.jsonl\n  ckptcheck audit @files.txt --jsonl --resume audit.jsonl >> audit.jsonl\n  ckptcheck audit models/ --scan"
    )]
    Audit {
        /// Files, folders (walked) or @LIST (a file of paths, one a line)
        #[arg(required = true, value_name = "PATH|@LIST")]
        paths: Vec<PathBuf>,
        /// Files read at once (default: one per core)
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// One JSON object a line, then a {"summary": ...} line
        #[arg(long)]
        jsonl: bool,
        /// Skip the files an earlier run's JSON lines judged, and count
        /// their verdicts in the summary
        #[arg(long, value_name = "OUT.jsonl")]
        resume: Option<PathBuf>,
        /// Scan the weights of each file that reads and is safe: NaN, Inf
        /// or an all-zero floating-point tensor make it `bad_weights`
        #[arg(long)]
        scan: bool,
    },
}

fn parse_loader(text: &str) -> Result<Loader, String> {
    Loader::parse(text).map_err(|e| e.message)
}

/// `5GB` (10^9, as transformers' max_shard_size), `2GiB`, `500MB`, bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let (number, unit) = upper.split_at(
        upper
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(upper.len()),
    );
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit in {text:?}: use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0 && n.is_finite())
        .map(|n| (n * scale as f64) as u64)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("--shard-size needs a positive size, got {text:?}"))
}

fn parse_rename(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(old, new)| (old.to_string(), new.to_string()))
        .ok_or_else(|| format!("--rename needs OLD=NEW, got {text:?}"))
}

fn parse_device(text: &str) -> Result<String, String> {
    match text {
        "gpu" | "cpu" => Ok(text.to_string()),
        other => Err(format!("unknown device {other:?}: use gpu or cpu")),
    }
}

fn parse_threads(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "--threads needs a count of 1 or more, got {text:?}"
        )),
    }
}

fn parse_layers(text: &str) -> Result<usize, String> {
    text.parse()
        .map_err(|_| format!("--layers needs a block count, got {text:?}"))
}

/// What the commands read.
pub struct Args {
    pub command: &'static str,
    pub files: Vec<PathBuf>,
    pub configs: Vec<String>,
    pub loader: Loader,
    pub json: bool,
    pub device: Option<String>,
    pub layers: Option<usize>,
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub no_reference: bool,
    pub threads: Option<usize>,
    pub exact_offsets: bool,
    pub state_dict_path: Option<Vec<String>>,
    pub model: Option<PathBuf>,
    pub dtype: String,
    pub shard_size: Option<u64>,
    pub renames: Vec<(String, String)>,
    pub jobs: Option<usize>,
    pub resume: Option<PathBuf>,
    pub scan: bool,
    pub variant: Option<String>,
}

impl Args {
    fn new(command: &'static str, files: Vec<PathBuf>, json: bool) -> Args {
        Args {
            command,
            files,
            configs: Vec::new(),
            loader: Loader::Strict,
            json,
            device: None,
            layers: None,
            input: None,
            output: None,
            no_reference: false,
            threads: None,
            exact_offsets: false,
            state_dict_path: None,
            model: None,
            dtype: "keep".to_string(),
            shard_size: None,
            renames: Vec::new(),
            jobs: None,
            resume: None,
            scan: false,
            variant: None,
        }
    }
}

/// Parse the process's arguments (any OS string: file names need not be
/// UTF-8). Help, version and completions are printed here and exit; a usage
/// error exits 2.
pub fn parse() -> Args {
    let arguments: Vec<OsString> = std::env::args_os().collect();
    match plain_inspect(&arguments) {
        Some(args) => args,
        None => args_of(Cli::parse_from(arguments)),
    }
}

/// `inspect` given only file names and its own two flags, each at most
/// once: the call scripts and CI make, read without building clap's grammar
/// of every command, which took ~0.15 ms of a 2.5 ms `inspect --json` of a
/// 3.8 GB `.pt` (issue 17). It gives what clap gives for such a line (a
/// test holds the two side by side); anything else (help, `--`, another or
/// a repeated flag, a name that starts with `-` or is empty) is `None`,
/// and clap reads it, errors and all.
fn plain_inspect(arguments: &[OsString]) -> Option<Args> {
    let [_, command, rest @ ..] = arguments else {
        return None;
    };
    if command != "inspect" {
        return None;
    }
    let (mut json, mut exact_offsets) = (false, false);
    let mut files = Vec::new();
    for argument in rest {
        let flag = if argument == "--json" {
            &mut json
        } else if argument == "--exact-offsets" {
            &mut exact_offsets
        } else if argument.is_empty() || argument.as_encoded_bytes().starts_with(b"-") {
            return None;
        } else {
            files.push(PathBuf::from(argument));
            continue;
        };
        if std::mem::replace(flag, true) {
            return None;
        }
    }
    if files.is_empty() {
        return None;
    }
    Some(Args {
        exact_offsets,
        ..Args::new("inspect", files, json)
    })
}

/// The `Args` of a command line clap has read.
fn args_of(cli: Cli) -> Args {
    match cli.command {
        Command::Inspect {
            files,
            json,
            exact_offsets,
        } => Args {
            exact_offsets,
            ..Args::new("inspect", files.files, json.json)
        },
        Command::Check {
            files,
            target,
            state_dict_path,
            variant,
            json,
        } => Args {
            configs: target.configs,
            model: target.model,
            loader: target.loader,
            state_dict_path: state_dict_path
                .map(|path| path.split('/').map(str::to_string).collect()),
            variant,
            ..Args::new("check", files.files, json.json)
        },
        Command::Infer { files, json } => Args::new("infer", files.files, json.json),
        Command::Diff { a, b, json } => Args::new("diff", vec![a, b], json.json),
        Command::Presets { json } => Args::new("presets", Vec::new(), json.json),
        Command::Snippet => Args::new("snippet", Vec::new(), false),
        Command::Convert {
            files,
            output,
            dtype,
            shard_size,
            state_dict_path,
            json,
        } => Args {
            output: Some(output),
            dtype,
            shard_size,
            state_dict_path: state_dict_path.map(|p| p.split('/').map(str::to_string).collect()),
            ..Args::new("convert", files.files, json.json)
        },
        Command::Fix {
            files,
            target,
            output,
            renames,
            state_dict_path,
            dtype,
            json,
        } => Args {
            configs: target.configs,
            model: target.model,
            loader: target.loader,
            output: Some(output),
            renames,
            dtype,
            state_dict_path: state_dict_path.map(|p| p.split('/').map(str::to_string).collect()),
            ..Args::new("fix", files.files, json.json)
        },
        Command::Verify {
            files,
            configs,
            device,
            layers,
            input,
            output,
            no_reference,
            threads,
            json,
        } => Args {
            configs,
            device,
            layers,
            input,
            output,
            no_reference,
            threads,
            ..Args::new("verify", files.files, json.json)
        },
        Command::Scan { files, json } => Args::new("scan", files.files, json.json),
        Command::Audit {
            paths,
            jobs,
            jsonl,
            resume,
            scan,
        } => Args {
            jobs,
            resume,
            scan,
            ..Args::new("audit", paths, jsonl)
        },
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ckptcheck",
                &mut std::io::stdout(),
            );
            std::process::exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Each line after `ckptcheck`, and whether the plain reading takes it.
    /// Every line it takes, clap must read to the same `Args`.
    #[test]
    fn a_plain_inspect_line_reads_as_clap_reads_it() {
        let lines: &[(&[&str], bool)] = &[
            (&["inspect", "a.pt"], true),
            (&["inspect", "--json", "a.pt"], true),
            (&["inspect", "a.pt", "--json"], true),
            (
                &[
                    "inspect",
                    "a.pt",
                    "--exact-offsets",
                    "b.safetensors",
                    "--json",
                ],
                true,
            ),
            (&["inspect", "shards/", "help"], true),
            (&["inspect", "--json", "--json", "a.pt"], false),
            (&["inspect", "--json"], false),
            (&["inspect"], false),
            (&["inspect", "--", "-weird.pt"], false),
            (&["inspect", "-h"], false),
            (&["inspect", "--help"], false),
            (&["inspect", "--json=true", "a.pt"], false),
            (&["inspect", "--jsn", "a.pt"], false),
            (&["inspect", "", "a.pt"], false),
            (&["check", "a.pt"], false),
            (&["--version"], false),
            (&[], false),
        ];
        for (line, plain) in lines {
            let arguments: Vec<OsString> = std::iter::once("ckptcheck")
                .chain(line.iter().copied())
                .map(OsString::from)
                .collect();
            let fast = plain_inspect(&arguments);
            assert_eq!(fast.is_some(), *plain, "{line:?}");
            if let Some(fast) = fast {
                let clap = args_of(Cli::try_parse_from(&arguments).expect("clap reads it"));
                assert_eq!(
                    (clap.command, &clap.files, clap.json, clap.exact_offsets),
                    (fast.command, &fast.files, fast.json, fast.exact_offsets),
                    "{line:?}"
                );
            }
        }
        // A file name that is not UTF-8 is still a file name.
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let name = OsString::from_vec(b"caf\xe9.pt".to_vec());
            let arguments = vec!["ckptcheck".into(), "inspect".into(), name.clone()];
            let fast = plain_inspect(&arguments).expect("plain");
            let clap = args_of(Cli::try_parse_from(&arguments).expect("clap reads it"));
            assert_eq!(fast.files, vec![PathBuf::from(name)]);
            assert_eq!(clap.files, fast.files);
        }
    }
}
