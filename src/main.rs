//! The `ckptcheck` binary. The CLI (`cli.rs`) reads native files, so it is
//! compiled for native targets only; on wasm32 the binary is empty (the page
//! uses the library through `web.rs`).

#[cfg(not(target_arch = "wasm32"))]
mod cli;

/// Small allocations come from a bump arena (`cli/arena.rs`).
#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: cli::arena::CliAllocator = cli::arena::CliAllocator;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
