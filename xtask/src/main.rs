//! `cargo xtask serve|test|bench`: installs what is missing, builds the wasm
//! and serves the page, runs every test tier, or runs the benchmarks in
//! bench/. No dependencies, so it builds in seconds on a fresh machine.
//!
//! Tiers of `test`: fmt check, clippy native and wasm32 (-D warnings), native
//! tests, wasm-bindgen-test in headless Chromium, browser end-to-end tests
//! with Playwright, the Python package's pytest. A tier that cannot run fails
//! loudly. Each tier reports its time and the disk left; on a short disk the
//! run frees what finished tiers built (disk.rs).

mod disk;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Must equal the `wasm-bindgen = "=x.y.z"` pin in Cargo.toml.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo")
        .to_path_buf()
}

fn run(description: &str, command: &mut Command) -> Result<(), String> {
    eprintln!("xtask: {description}");
    let status = command
        .current_dir(root())
        .status()
        .map_err(|e| format!("{description}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{description}: failed ({status})"))
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
}

/// The wasm target and the pinned wasm-bindgen-cli.
fn ensure_wasm_tools() -> Result<(), String> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        run(
            "installing the wasm32 target",
            Command::new("rustup").args(["target", "add", WASM_TARGET]),
        )?;
    }
    let version = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if !version.contains(WASM_BINDGEN_VERSION) {
        // `--locked` fails with the registry's copy; plain install works (~5 min).
        run(
            &format!(
                "installing wasm-bindgen-cli {WASM_BINDGEN_VERSION} (takes a few minutes once)"
            ),
            cargo().args([
                "install",
                "wasm-bindgen-cli",
                "--version",
                WASM_BINDGEN_VERSION,
            ]),
        )?;
    }
    Ok(())
}

/// Build the wasm and lay out www/pkg and the demo checkpoint.
fn build_web() -> Result<(), String> {
    ensure_wasm_tools()?;
    run(
        "building the wasm",
        cargo().args([
            "build",
            "--target",
            WASM_TARGET,
            "--lib",
            "--profile",
            "web",
        ]),
    )?;
    // Cargo honours CARGO_TARGET_DIR (relative to the working directory,
    // which `run` sets to the repository root), so look where it built.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root().join(dir))
        .unwrap_or_else(|| root().join("target"));
    let wasm = target_dir
        .join(WASM_TARGET)
        .join("web")
        .join("ckptcheck.wasm");
    run(
        "generating the JS bindings",
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--out-dir", "www/pkg", "--no-typescript"])
            .arg(&wasm),
    )?;
    let demo_dir = root().join("www/demo");
    std::fs::create_dir_all(&demo_dir).map_err(|e| format!("www/demo: {e}"))?;
    std::fs::copy(
        root().join("tests/fixtures/cn_clip/clip_cn_vit-l-14-336.shapes.pt"),
        demo_dir.join("clip_cn_vit-l-14-336.shapes.pt"),
    )
    .map_err(|e| format!("copying the demo checkpoint: {e}"))?;
    Ok(())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn respond(mut stream: TcpStream) {
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let relative = if path == "/" {
        "index.html"
    } else {
        path.trim_start_matches('/')
    };
    let file = root().join(relative);
    let inside = !relative.split('/').any(|part| part == "..");
    let (status, body, kind) = match std::fs::read(&file) {
        Ok(body) if inside && file.is_file() => ("200 OK", body, content_type(&file)),
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    // www/sw.js may control the whole site (the page at /), not only www/.
    let scope = if relative == "www/sw.js" {
        "Service-Worker-Allowed: /\r\n"
    } else {
        ""
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n{scope}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(header.as_bytes())
        .and_then(|_| stream.write_all(&body));
}

fn serve(port: u16) -> Result<(), String> {
    build_web()?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("ckptcheck is served at http://127.0.0.1:{port}/ (Ctrl-C stops it)");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || respond(stream));
    }
    Ok(())
}

fn debian_package_missing(name: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${Status}", name])
        .is_none_or(|s| !s.contains("install ok installed"))
}

/// Debian's Chromium and its driver, Mesa's Vulkan CPU driver, nginx (the
/// remote-file tests' HTTP server on loopback), Playwright.
fn ensure_test_tools() -> Result<(), String> {
    let missing: Vec<&str> = [
        "chromium",
        "chromium-driver",
        "mesa-vulkan-drivers",
        "nginx",
    ]
    .into_iter()
    .filter(|p| debian_package_missing(p))
    .collect();
    if !missing.is_empty() {
        run(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        run(
            &format!("installing {}", missing.join(", ")),
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    ensure_e2e_python()?;
    if !root()
        .join("tests/e2e/node_modules/playwright-core")
        .exists()
    {
        run(
            "installing playwright-core (npm ci)",
            Command::new("npm").args(["ci", "--prefix", "tests/e2e", "--no-audit", "--no-fund"]),
        )?;
    }
    Ok(())
}

/// `PYTHON -m pip install` quietly, without pip's cache (it would keep a
/// second copy of every wheel, torch's CUDA libraries included).
fn pip_install(python: &Path) -> Command {
    let mut command = Command::new(python);
    command.args([
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-cache-dir",
    ]);
    command
}

/// The Python the end-to-end tests check downloaded files with: a venv in
/// target/ with safetensors (the version of the crate ckptcheck uses) and
/// numpy, made once.
const E2E_PYTHON: &str = "target/e2e-python";

fn e2e_python() -> PathBuf {
    root().join(E2E_PYTHON).join("bin").join("python")
}

fn ensure_e2e_python() -> Result<(), String> {
    let python = e2e_python();
    if python.exists()
        && output(
            &python.display().to_string(),
            &["-c", "import safetensors, numpy"],
        )
        .is_some()
    {
        return Ok(());
    }
    let venv = root().join(E2E_PYTHON);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        // Debian's python3 makes venvs only with python3-venv.
        run(
            "installing python3-venv",
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "python3-venv",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        run(
            "making the end-to-end Python venv",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        )?;
    }
    run(
        "installing safetensors and numpy for the end-to-end tests",
        pip_install(&e2e_python()).args(["safetensors==0.8.0", "numpy==2.2.6"]),
    )
}

/// The Python package's venv: maturin to build the wheel, pytest, and the
/// libraries the tests check against (torch, transformers, cn_clip, Dask),
/// pinned whole in python/test-requirements.txt.
const PYTHON_VENV: &str = "target/py-venv";
const PYTHON_REQUIREMENTS: &str = "python/test-requirements.txt";

fn python_venv_python() -> PathBuf {
    root().join(PYTHON_VENV).join("bin").join("python")
}

/// The pinned lines of the requirements file in install order: the CUDA
/// libraries PyPI's torch loads (most of the venv's 4.6 GiB), torch, the
/// rest. One pip call each, so each call's downloads are freed before the
/// next one's.
fn python_requirement_groups(text: &str) -> [Vec<&str>; 3] {
    let mut groups: [Vec<&str>; 3] = Default::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.to_ascii_lowercase();
        let group = if name.starts_with("nvidia-") || name.starts_with("cuda-") {
            0
        } else if name.starts_with("torch==") {
            1
        } else {
            2
        };
        groups[group].push(line);
    }
    groups
}

fn ensure_python_venv() -> Result<(), String> {
    let python = python_venv_python();
    let ready = python.exists()
        && output(
            &python.display().to_string(),
            &[
                "-c",
                "import maturin, pytest, torch, transformers, cn_clip, distributed",
            ],
        )
        .is_some();
    if ready {
        return Ok(());
    }
    ensure_e2e_python()?; // python3-venv, when Debian's python3 needs it
    run(
        "making the Python package's test venv",
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(root().join(PYTHON_VENV)),
    )?;
    let text = std::fs::read_to_string(root().join(PYTHON_REQUIREMENTS))
        .map_err(|e| format!("{PYTHON_REQUIREMENTS}: {e}"))?;
    let groups = python_requirement_groups(&text);
    for (what, group) in ["torch's CUDA libraries", "torch", "the rest"]
        .iter()
        .zip(&groups)
    {
        run(
            &format!("installing {what} from {PYTHON_REQUIREMENTS}"),
            pip_install(&python).arg("--no-deps").args(group),
        )?;
    }
    Ok(())
}

/// Builds the wheel from source with maturin, installs it in the venv and
/// runs pytest from the repository's root (so the source folder does not
/// shadow the installed package). pytest exits non-zero on a failure and
/// with 5 when no test ran, which fails the tier too.
fn python_tier() -> Result<(), String> {
    ensure_python_venv()?;
    let python = python_venv_python();
    let wheels = root().join("target/wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    run(
        "maturin build (the ckptcheck wheel)",
        Command::new(&python)
            .args([
                "-m",
                "maturin",
                "build",
                "-q",
                "-m",
                "python/Cargo.toml",
                "--out",
            ])
            .arg(&wheels)
            .current_dir(root()),
    )?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| format!("no wheel in {}: {e}", wheels.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| path.extension().is_some_and(|e| e == "whl"))
        .ok_or("maturin built no wheel")?;
    run(
        "installing the wheel",
        pip_install(&python)
            .args(["--force-reinstall", "--no-deps"])
            .arg(&wheel),
    )?;
    run(
        "pytest (the Python package)",
        Command::new(&python)
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "python/tests",
            ])
            .env("CKPTCHECK_CLI", root().join("target/debug/ckptcheck"))
            .current_dir(root()),
    )
}

/// One test tier: runs, or says why it failed.
type Tier = Box<dyn Fn() -> Result<(), String>>;

fn test() -> Result<(), String> {
    ensure_wasm_tools()?;
    ensure_test_tools()?;
    let chromedriver = "/usr/bin/chromedriver";
    let tiers: Vec<(&str, Tier)> = vec![
        (
            "fmt",
            Box::new(|| {
                run(
                    "cargo fmt --check",
                    cargo().args(["fmt", "--all", "--", "--check"]),
                )
            }),
        ),
        (
            "clippy native",
            Box::new(|| {
                run(
                    "clippy (native)",
                    cargo().args([
                        "clippy",
                        "--workspace",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ]),
                )
            }),
        ),
        (
            "clippy wasm32",
            Box::new(|| {
                run(
                    "clippy (wasm32)",
                    cargo().args([
                        "clippy",
                        "--lib",
                        "--target",
                        WASM_TARGET,
                        "--",
                        "-D",
                        "warnings",
                    ]),
                )
            }),
        ),
        (
            "native tests",
            // The GPU tests run on Mesa's lavapipe (installed above) and
            // must not skip for want of an adapter.
            Box::new(|| {
                run(
                    "cargo test (native)",
                    cargo()
                        .args(["test", "--workspace"])
                        .env("CKPTCHECK_REQUIRE_GPU", "1")
                        .env("CKPTCHECK_REQUIRE_NGINX", "1"),
                )
            }),
        ),
        (
            "wasm-bindgen-test",
            Box::new(move || {
                run(
                    "wasm-bindgen-test in headless Chromium",
                    cargo()
                        .args(["test", "--target", WASM_TARGET, "--test", "web"])
                        .env("CHROMEDRIVER", chromedriver),
                )
            }),
        ),
        (
            "browser end-to-end",
            Box::new(|| {
                build_web()?;
                run(
                    "Playwright end-to-end tests",
                    Command::new("node")
                        .args(["--test", "tests/e2e/"])
                        .env("CKPTCHECK_E2E_PYTHON", e2e_python()),
                )
            }),
        ),
        // Last: its venv (PyPI's torch carries CUDA, ~6 GiB) is the largest
        // thing the run makes, so on a short disk everything before it has
        // been freed by then.
        ("python", Box::new(python_tier)),
    ];
    let lean = disk::lean(&root());
    let free_at_start = disk::free_bytes(&root());
    if lean {
        // Incremental caches are for edit cycles; a one-shot run on a short
        // disk does not need them (they were 1 GiB and more of target/).
        std::env::set_var("CARGO_INCREMENTAL", "0");
    }
    eprintln!(
        "xtask: {} free at the start{}",
        free_at_start.map_or("unknown".into(), disk::gib),
        if lean {
            "; short disk: each tier's build outputs are freed when no later tier needs them"
        } else {
            ""
        }
    );
    let mut failed = Vec::new();
    let mut passed = 0;
    for (name, tier) in &tiers {
        let started = std::time::Instant::now();
        let outcome = tier();
        let seconds = started.elapsed().as_secs();
        match outcome {
            Ok(()) => passed += 1,
            Err(message) => {
                eprintln!("xtask: tier {name} FAILED: {message}");
                failed.push(*name);
            }
        }
        let freed = if lean {
            disk::remove(&root(), &disk::leftovers(&root(), name))
        } else {
            0
        };
        eprintln!(
            "xtask: tier {name} took {seconds} s; {} free{}",
            disk::free_bytes(&root()).map_or("unknown".into(), disk::gib),
            if freed > 0 {
                format!(" after freeing {}", disk::gib(freed))
            } else {
                String::new()
            }
        );
    }
    println!("xtask tiers: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed tiers: {}", failed.join(", ")))
    }
}

/// One benchmark of `cargo xtask bench`; all of them live in bench/.
struct Bench {
    name: &'static str,
    what: &'static str,
    run: fn() -> Result<(), String>,
}

/// In the order `cargo xtask bench` runs them: the quick ones first, the
/// Python comparisons on generated multi-GB files last.
const BENCHES: &[Bench] = &[
    Bench {
        name: "reader",
        what: "ckptcheck's reader in-process on committed fixtures (bench/inspect.rs)",
        run: bench_reader,
    },
    Bench {
        name: "page",
        what: "drop-to-verdict in headless Chromium, the page's size (bench/page_bench.mjs)",
        run: bench_page,
    },
    Bench {
        name: "gpu",
        what: "GPU vs the fast CPU backend (bench/gpu_bench.rs), lavapipe without a GPU; with no adapter, how to run it on one",
        run: bench_gpu,
    },
    Bench {
        name: "cpu",
        what: "verify --device cpu vs PyTorch's CPU forward, same threads (bench/cpu_verify_bench.py)",
        run: bench_cpu,
    },
    Bench {
        name: "inspect",
        what: "a 3.8 GB checkpoint vs torch.load and safe_open (bench/inspect_bench.py)",
        run: bench_inspect,
    },
    Bench {
        name: "check",
        what:
            "checking a 3.8 GB checkpoint against a model dump vs its preset (bench/check_bench.py)",
        run: bench_check,
    },
    Bench {
        name: "convert",
        what: "a 3.8 GB .pt to safetensors vs torch.load + save_file (bench/convert_bench.py)",
        run: bench_convert,
    },
    Bench {
        name: "scan",
        what: "the weight scan vs numpy on a 4 GB file (bench/scan_bench.py)",
        run: bench_scan,
    },
    Bench {
        name: "remote",
        what: "a 3.8 GB checkpoint over loopback HTTP (nginx) vs the local read (bench/remote_bench.py)",
        run: bench_remote,
    },
    Bench {
        name: "zoo",
        what: "files/s auditing the fixtures on Dask, 1 vs 2 workers (bench/zoo_bench.py)",
        run: bench_zoo,
    },
    Bench {
        name: "zoo-models",
        what: "building and checking the largest configs (a 70B LLaMA, the SDXL UNet and single file) vs a 2-layer LLaMA (bench/zoo_models.rs)",
        run: bench_zoo_models,
    },
];

/// A small checkpoint of each container, read by the `reader` benchmark.
const READER_FIXTURES: &[&str] = &[
    "tests/fixtures/cn_clip/clip_cn_vit-l-14-336.shapes.pt",
    "tests/fixtures/formats/legacy.pt",
    "tests/fixtures/formats/tar.pt",
    "tests/fixtures/formats/small.safetensors",
    "tests/fixtures/formats/small.gguf",
];

fn bench_reader() -> Result<(), String> {
    run(
        "reader benchmark (bench/inspect.rs): median of 20 reads per file",
        cargo()
            .args(["bench", "--bench", "inspect", "--"])
            .args(READER_FIXTURES),
    )
}

fn bench_page() -> Result<(), String> {
    build_web()?;
    ensure_test_tools()?;
    run(
        "page benchmark (bench/page_bench.mjs)",
        Command::new("node").arg("bench/page_bench.mjs"),
    )
}

fn bench_gpu() -> Result<(), String> {
    // On lavapipe it compares the kernels with the fast CPU backend on the
    // same cores; with no adapter at all it prints how to run
    // bench/gpu_bench.sh on a GPU.
    run(
        "GPU benchmark (bench/gpu_bench.rs)",
        cargo().args([
            "bench",
            "--features",
            "gpu",
            "--bench",
            "gpu_bench",
            "--",
            "--hardware-only",
        ]),
    )
}

fn bench_zoo_models() -> Result<(), String> {
    run(
        "zoo model benchmark (bench/zoo_models.rs): medians of 20 builds and checks",
        cargo().args(["bench", "--bench", "zoo_models"]),
    )
}

fn bench_inspect() -> Result<(), String> {
    python_bench("bench/inspect_bench.py", &["torch", "safetensors"])
}

fn bench_check() -> Result<(), String> {
    python_bench("bench/check_bench.py", &["torch", "safetensors", "cn_clip"])
}

fn bench_convert() -> Result<(), String> {
    python_bench("bench/convert_bench.py", &["torch", "safetensors"])
}

fn bench_scan() -> Result<(), String> {
    python_bench("bench/scan_bench.py", &["numpy", "safetensors"])
}

fn bench_cpu() -> Result<(), String> {
    build_web()?;
    python_bench(
        "bench/cpu_verify_bench.py",
        &["torch", "transformers", "cn_clip", "numpy"],
    )
}

fn bench_remote() -> Result<(), String> {
    python_bench("bench/remote_bench.py", &["torch", "safetensors"])
}

/// Runs with the Python package's test venv when no other Python is named
/// (it has the wheel and Dask after `cargo xtask test`).
fn bench_zoo() -> Result<(), String> {
    if std::env::var_os("CKPTCHECK_BENCH_PYTHON").is_none() && python_venv_python().exists() {
        std::env::set_var("CKPTCHECK_BENCH_PYTHON", python_venv_python());
    }
    python_bench("bench/zoo_bench.py", &["ckptcheck", "distributed"])
}

/// The Python baselines (torch, safetensors, numpy) run in the same process
/// tree as ckptcheck, so each script reports ratios from one run. A Python
/// without the modules fails here, before a multi-GB file is generated.
fn python_bench(script: &str, modules: &[&str]) -> Result<(), String> {
    let python = std::env::var("CKPTCHECK_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let modules = modules.join(", ");
    if output(&python, &["-c", &format!("import {modules}")]).is_none() {
        return Err(format!(
            "{python} cannot import {modules}: set CKPTCHECK_BENCH_PYTHON to a Python that has them"
        ));
    }
    run(
        &format!("{script} (with {python})"),
        Command::new(&python).arg(script),
    )
}

fn bench_usage() -> String {
    let mut text = String::from(
        "usage: cargo xtask bench [NAME...]   (no NAME runs every benchmark, in this order)\n",
    );
    for bench in BENCHES {
        text += &format!("  {:<8} {}\n", bench.name, bench.what);
    }
    text += "The Python ones run CKPTCHECK_BENCH_PYTHON (default python3) with torch, safetensors and numpy.";
    text
}

fn bench(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", bench_usage());
        return Ok(());
    }
    if let Some(unknown) = args
        .iter()
        .find(|a| !BENCHES.iter().any(|b| b.name == a.as_str()))
    {
        return Err(format!("unknown benchmark {unknown:?}\n{}", bench_usage()));
    }
    // One that fails (a missing Python module, no Chromium) does not stop
    // the others; the summary names it.
    let mut failed = Vec::new();
    let mut passed = 0;
    for bench in BENCHES {
        if !args.is_empty() && !args.iter().any(|a| a == bench.name) {
            continue;
        }
        match (bench.run)() {
            Ok(()) => passed += 1,
            Err(message) => {
                eprintln!("xtask: benchmark {} FAILED: {message}", bench.name);
                failed.push(bench.name);
            }
        }
    }
    println!("xtask benchmarks: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed benchmarks: {}", failed.join(", ")))
    }
}

const USAGE: &str =
    "usage: cargo xtask serve [--port N] | build-web | test | bench [NAME...] (bench --help lists them)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => {
            let port = args
                .iter()
                .position(|a| a == "--port")
                .and_then(|i| args.get(i + 1))
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080);
            serve(port)
        }
        Some("build-web") => build_web(),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
