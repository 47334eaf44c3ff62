//! The golden fixture of `forge/tests/golden.rs` through the `cargo test`
//! harness: the compiled `forge-harness` (the one-line `main` a user's test
//! target holds) runs `forge/tests/golden/suites/` with `--test-threads 1`
//! (so libtest prints the trials in one order).
//!
//! Its reports must be the very files `forge run` writes for the same
//! selection: they are compared with `forge run`'s golden reports and never
//! blessed here. Its console (libtest's output and forge's lines) has a
//! golden file of its own, `expected/harness.txt`, which
//! `FORGE_BLESS=1 cargo test --test golden_harness` rewrites.

#[path = "../forge/tests/golden/support.rs"]
mod support;

use std::path::Path;

use support::{Fixture, Server};

const HARNESS: &str = "FORGE_SUITES_DIR=suites FORGE_OUT_DIR=<OUT> forge-harness --test-threads 1";
const BLESS: &str = "If the change is meant, rewrite them with `FORGE_BLESS=1 cargo test --test golden_harness` and review the diff.";
/// The shared reports are `forge run`'s golden files: never blessed here.
const SAME_AS_FORGE_RUN: &str = "The reports are `forge run`'s golden files: the harness must write the same for the same selection. \
     If `forge run` changed on purpose, rewrite them with `FORGE_BLESS=1 cargo test -p forge-eval --test golden`; \
     a console change of the harness is blessed with `FORGE_BLESS=1 cargo test --test golden_harness`.";

#[test]
fn the_harness_writes_the_golden_reports_of_forge_run() {
    let fixture = Fixture::at(concat!(env!("CARGO_MANIFEST_DIR"), "/forge/tests/golden"));
    let server = Server::start();
    let out = tempfile::tempdir().expect("temp dir");
    let mut mismatches = harness(&fixture, Some(&server), out.path());
    mismatches.extend(support::compare_reports(
        out.path(),
        &fixture.reports(),
        false,
    ));
    support::assert_no_mismatch(&mismatches, SAME_AS_FORGE_RUN);
}

/// A suite that cannot be loaded is the failing test `<stem>::load`, in the
/// console and in `junit.xml`, and the other suites still run: the reports
/// are `forge run`'s for the same suites (its golden files).
#[test]
fn the_harness_reports_an_unloadable_suite_and_runs_the_others() {
    let fixture = Fixture::at(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/forge/tests/golden/unloadable"
    ));
    let out = tempfile::tempdir().expect("temp dir");
    let mut mismatches = harness(&fixture, None, out.path());
    mismatches.extend(support::compare_reports(
        out.path(),
        &fixture.reports(),
        false,
    ));
    let hint = format!("{SAME_AS_FORGE_RUN}\n{BLESS}");
    support::assert_no_mismatch(&mismatches, &hint);
}

/// Runs the harness on the fixture's suites with the reports in `out`,
/// checks no output leaks a secret, and compares its console with the
/// golden `harness.txt`.
fn harness(fixture: &Fixture, server: Option<&Server>, out: &Path) -> Vec<String> {
    let output = support::command(env!("CARGO_BIN_EXE_forge-harness"), fixture, server)
        .env("FORGE_SUITES_DIR", "suites")
        .env("FORGE_OUT_DIR", out)
        .args(["--test-threads", "1"])
        .output()
        .expect("run forge-harness");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut mismatches = support::leaks("stdout", &stdout);
    mismatches.extend(support::leaks("stderr", &stderr));
    for name in support::file_names(out) {
        let text = std::fs::read_to_string(out.join(&name)).expect("read a report");
        mismatches.extend(support::leaks(&name, &text));
    }
    let console = support::transcript(
        HARNESS,
        &output,
        &support::normalize_console(&stdout, out),
        &support::normalize_console(&stderr, out),
    );
    if let Err(diff) = support::compare(&fixture.console("harness.txt"), &console, true) {
        mismatches.push(diff);
    }
    mismatches
}
