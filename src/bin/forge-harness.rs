//! The one-line harness a user's `[[test]]` target holds, as a binary, so the
//! end-to-end tests can run the real compiled harness on suites they write.
//! The suites directory is `$FORGE_SUITES_DIR` (default `suites`).

fn main() -> std::process::ExitCode {
    let dir = std::env::var("FORGE_SUITES_DIR").unwrap_or_else(|_| "suites".to_owned());
    forge::harness::main(dir)
}
