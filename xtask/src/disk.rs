//! Disk use of `cargo xtask test`. A full run from a bare clone needs about
//! 12 GiB at once (Rust test binaries, the wasm builds, the Python venv with
//! PyPI's CUDA-carrying torch wheel). CI machines sometimes have much less
//! free, and a full disk fails every tier at once with "No space left on
//! device". So the run says how much is free after each tier and, when the
//! disk is short, deletes what a finished tier built and no later tier
//! needs, so that the peak is the largest tier rather than their sum.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Below this much free space at the start, the run cleans up as it goes
/// (and builds without incremental caches). Above it, a developer's build
/// caches are left alone so the next `cargo test` is quick.
const LEAN_BELOW_BYTES: u64 = 24 << 30;

/// Bytes free on the file system holding `path`, from POSIX `df -Pk`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let available_kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    available_kib.checked_mul(1024)
}

pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Whether this run cleans up after each tier. `CKPTCHECK_LEAN_DISK=1` or
/// `=0` decides; otherwise the free space at the start does.
pub fn lean(root: &Path) -> bool {
    match std::env::var("CKPTCHECK_LEAN_DISK").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => free_bytes(root).is_some_and(|free| free < LEAN_BELOW_BYTES),
    }
}

/// What a finished tier leaves that no later tier reads. The native tier's
/// test executables and incremental caches go, but not the rlibs and build
/// scripts until the wasm tiers are done (their host-side proc macros live
/// there), and never `target/debug/ckptcheck` (the Python tests run the
/// CLI; it is a hard link, so it outlives its copy in deps/).
pub fn leftovers(root: &Path, tier: &str) -> Vec<PathBuf> {
    let target = root.join("target");
    match tier {
        "native tests" => {
            let deps = target.join("debug/deps");
            let mut paths = test_executables(&deps);
            paths.push(target.join("debug/incremental"));
            paths
        }
        "wasm-bindgen-test" => vec![target.join("wasm32-unknown-unknown/debug")],
        // The last tier that builds with cargo's dev profile: after it only
        // the CLI binary itself is read (by the Python tests), and maturin
        // builds the wheel in a folder of its own.
        "browser end-to-end" => vec![
            target.join("wasm32-unknown-unknown"),
            target.join("debug/deps"),
            target.join("debug/build"),
            target.join("debug/incremental"),
            target.join("debug/.fingerprint"),
        ],
        "python" => vec![
            target.join("py-venv"),
            target.join("wheel"),
            target.join("wheels"),
        ],
        _ => Vec::new(),
    }
}

/// Executables cargo wrote into a deps folder: the test harnesses (named
/// `NAME-HASH`, no extension) and the binaries' copies.
fn test_executables(deps: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(deps) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let path = entry.path();
            let executable = entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            executable && path.extension().is_none()
        })
        .map(|entry| entry.path())
        .collect()
}

/// Deletes the paths, returning how many bytes that freed on the disk.
pub fn remove(root: &Path, paths: &[PathBuf]) -> u64 {
    let before = free_bytes(root).unwrap_or(0);
    for path in paths {
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
    }
    free_bytes(root).unwrap_or(0).saturating_sub(before)
}
