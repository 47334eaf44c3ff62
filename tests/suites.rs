//! Runs every suite in `suites/` as `cargo test` cases, one per batch.

fn main() -> std::process::ExitCode {
    forge::harness::main("suites")
}
