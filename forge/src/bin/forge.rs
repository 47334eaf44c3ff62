//! The `forge` command: `forge run SUITE.yaml...`, `forge run --payload FILE`.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    forge::cli::main()
}
