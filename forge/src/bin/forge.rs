//! The `forge` command: `forge run SUITE.yaml...`, `forge run --payload FILE`.

fn main() -> std::process::ExitCode {
    forge::cli::main()
}
