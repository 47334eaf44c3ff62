//! The baseline gate and CI annotations through the `cargo test` harness
//! (the compiled `forge-harness`), on the fixture of `forge/tests/diff.rs`:
//! `FORGE_BASELINE` fails the batches that regressed (a passing one too),
//! its `junit.xml` is `forge run --baseline`'s golden file, and under
//! GitHub Actions it prints `forge run`'s very annotation lines, after
//! libtest's summary, and appends the step summary.

#[path = "../forge/tests/golden/support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::Fixture;

fn fixture() -> Fixture {
    Fixture::at(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/forge/tests/golden/diff"
    ))
}

/// The harness on the fixture's `suites` directory, reports in `out`.
fn harness(fixture: &Fixture, suites: &str, out: &Path) -> Command {
    let mut command = support::command(env!("CARGO_BIN_EXE_forge-harness"), fixture, None);
    for var in [
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_WORKSPACE",
        "FORGE_BASELINE",
    ] {
        command.env_remove(var);
    }
    command
        .env("FORGE_SUITES_DIR", suites)
        .env("FORGE_OUT_DIR", out)
        .args(["--test-threads", "1"]);
    command
}

/// libtest's verdict on `test` (`ok`, `FAILED`), from its line
/// `test <name> ... <verdict>` (the names padded to one width).
fn verdict<'a>(stdout: &'a str, test: &str) -> Option<&'a str> {
    stdout.lines().find_map(|line| {
        let rest = line.strip_prefix("test ")?.strip_prefix(test)?;
        rest.trim_start().strip_prefix("... ")
    })
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_harness_gates_on_forge_baseline_and_annotates_under_github_actions() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = tmp.path().join("base");
    let output = harness(&fixture, "base", &base).output().expect("run");
    assert_eq!(output.status.code(), Some(101), "{}", show(&output));

    let out = tmp.path().join("new");
    let summary = tmp.path().join("summary.md");
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = harness(&fixture, "new", &out)
        .env("FORGE_BASELINE", &base)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", repository)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(101), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);

    // A batch that passes but regressed fails its test, saying why.
    assert_eq!(
        verdict(&stdout, "gate::s::similar"),
        Some("FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("regressed since baseline: `similarity` score 1.000 -> 0.667"),
        "{stdout}"
    );
    // The flaky batch fails (its pass_rate), without a regression.
    assert_eq!(
        verdict(&stdout, "repeat::flaky::q"),
        Some("FAILED"),
        "{stdout}"
    );

    // forge run's annotations (but the unloadable suite it also ran),
    // after libtest's summary.
    let golden = std::fs::read_to_string(fixture.console("annotations.txt")).expect("golden");
    let expected: Vec<&str> = golden
        .lines()
        .filter(|l| l.starts_with("::") && !l.contains("bad.yaml"))
        .collect();
    let printed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(printed, expected);
    let result = stdout.find("test result:").expect("libtest's summary");
    assert!(
        stdout.find("::error").is_some_and(|at| at > result),
        "{stdout}"
    );

    // junit.xml: forge run --baseline's, for the same suites.
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    if let Err(diff) = support::compare(
        &fixture.console("junit-baseline.xml"),
        &support::normalize_junit(&junit),
        false,
    ) {
        panic!("the harness's junit.xml is not forge run --baseline's:\n{diff}");
    }
    let written = std::fs::read_to_string(&summary).expect("the step summary");
    assert!(
        written.starts_with("### forge: 6 passed, 2 failed, 0 ignored"),
        "{written}"
    );
    assert!(
        written.contains("**Regressions since the baseline"),
        "{written}"
    );
}

#[test]
fn an_unreadable_forge_baseline_is_a_failing_test() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    let output = harness(&fixture, "new", &tmp.path().join("out"))
        .env("FORGE_BASELINE", "no-such-run")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(101), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        verdict(&stdout, "forge::baseline"),
        Some("FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FORGE_BASELINE: no-such-run: no such file or directory"),
        "{stdout}"
    );
}
