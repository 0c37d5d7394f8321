//! Build script: links the `ckptcheck` binary as a position-dependent
//! executable (see `link_cli_without_pie`) with GCC's unwinder linked in
//! statically (see `link_cli_unwinder_statically`).

use std::path::PathBuf;

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        link_cli_without_pie();
        link_cli_unwinder_statically();
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The CLI is a short process (an `inspect` of a multi-GB checkpoint runs
/// in ~3 ms, most of it starting up), and as a position-independent
/// executable the dynamic loader spent a third of its start applying ~14,000
/// relative relocations and copying the 60 pages they land in (measured:
/// 664k cycles in ld.so against 228k without). A fixed-address executable
/// has none. The cost is address randomization of the binary's own code
/// (libraries, heap and stack stay randomized); the binary never executes
/// what it reads, and its parsers are safe Rust. Only native Linux targets:
/// the library, the Python module and the wasm are unaffected.
fn link_cli_without_pie() {
    println!("cargo:rustc-link-arg-bin=ckptcheck=-no-pie");
}

/// Rust's standard library takes its unwinder from `libgcc_s.so.1`, and
/// loading that library runs its constructor, `__cpu_indicator_init`, which
/// asks the CPU about itself with a few dozen `cpuid` instructions; under a
/// hypervisor each one traps, and they took ~3% of an `inspect` of the
/// ViT-H `.pt` (perf, on this project's VM). The same unwinder is in GCC's
/// static `libgcc_eh.a` (what `-C target-feature=+crt-static` links, and
/// without that constructor). rustc asks for it as `-lgcc_s`, so a copy
/// named `libgcc_s.a` in a directory searched before GCC's own makes the
/// linker take the static one; glibc stays dynamic (the GPU path loads the
/// Vulkan driver with `dlopen`). When the compiler does not know the
/// archive, the binary links as before.
fn link_cli_unwinder_statically() {
    let Some(archive) = gcc_file("libgcc_eh.a") else {
        println!("cargo:warning=libgcc_eh.a not found: the CLI links libgcc_s.so");
        return;
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let directory = out.join("static-unwinder");
    let copied = std::fs::create_dir_all(&directory)
        .and_then(|()| std::fs::copy(&archive, directory.join("libgcc_s.a")));
    if let Err(error) = copied {
        println!("cargo:warning=cannot copy {}: {error}", archive.display());
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=ckptcheck=-L{}",
        directory.display()
    );
}

/// Where the C compiler keeps one of its own files, if it has it.
fn gcc_file(name: &str) -> Option<PathBuf> {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let output = std::process::Command::new(compiler)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (path.is_absolute() && path.is_file()).then_some(path)
}
