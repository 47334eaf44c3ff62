//! The reports of the compiled `cargo test` harness (`forge-harness`) tell
//! what libtest tells: its "N ignored" are the `<skipped/>` cases of
//! `junit.xml` and the `"skipped": true` rows of the summary's `checks`,
//! also when a shard or a filter runs part of the suites; and a process of
//! a nextest run leaves the output directory to that run's parts.

use std::path::Path;
use std::process::{Command, Output};

/// Two sessions of two turns; the first turn of `s0` and all of `s1` ignored.
fn fixture(dir: &Path) {
    let text = "name: chat\nrunner: {type: echo}\ndatasets:\n  - session_id: s0\n    assistant_id: bot\n    conversation:\n      - {qa_id: q1, query: one, ignore: true}\n      - {qa_id: q2, query: two}\n  - session_id: s1\n    assistant_id: bot\n    ignore: true\n    conversation:\n      - {qa_id: q1, query: one}\n      - {qa_id: q2, query: two}\n";
    std::fs::write(dir.join("chat.yaml"), text).expect("write suite");
}

fn harness(suites: &Path, out: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge-harness"));
    command
        .env("FORGE_SUITES_DIR", suites)
        .env("FORGE_OUT_DIR", out)
        .env_remove("FORGE_PARTITION")
        .env_remove("NEXTEST_EXECUTION_MODE")
        .args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run the harness")
}

/// libtest's (passed, failed, ignored) from its result line.
fn libtest_counts(output: &Output) -> (usize, usize, usize) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or_else(|| panic!("no result line:\n{stdout}"));
    let count = |what: &str| {
        line.split(';')
            .find_map(|part| {
                part.trim()
                    .strip_suffix(what)?
                    .trim()
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {what} in {line}"))
    };
    (count(" passed"), count(" failed"), count(" ignored"))
}

/// JUnit's (cases, skipped) and the summary's skipped rows.
fn reported(out: &Path) -> (usize, usize, usize) {
    let text = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    let cases = text.matches("<testcase ").count();
    let skipped = text.matches("<skipped").count();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("chat.json")).expect("chat.json"))
            .expect("JSON");
    let rows = summary["checks"].as_array().map_or(0, |rows| {
        rows.iter().filter(|r| r["skipped"] == true).count()
    });
    (cases, skipped, rows)
}

#[test]
fn ignored_tests_are_the_skipped_cases_of_the_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    fixture(dir.path());
    let out = dir.path().join("out");
    for (args, expected) in [
        (&[][..], (1, 0, 3)),
        (&["--include-ignored"][..], (4, 0, 0)),
        (&["s1::"][..], (0, 0, 2)),
        (&["--ignored"][..], (3, 0, 0)),
    ] {
        let output = harness(dir.path(), &out, &[], args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        let (passed, failed, ignored) = libtest_counts(&output);
        assert_eq!((passed, failed, ignored), expected, "{args:?}");
        let (cases, skipped, rows) = reported(&out);
        assert_eq!(cases, passed + failed + ignored, "{args:?}");
        assert_eq!((skipped, rows), (ignored, ignored), "{args:?}");
    }
}

#[test]
fn a_nextest_process_leaves_the_directory_to_its_runs_parts() {
    let dir = tempfile::tempdir().expect("temp dir");
    fixture(dir.path());
    let out = dir.path().join("out");
    assert!(harness(dir.path(), &out, &[], &[]).status.success());
    assert!(out.join("chat.json").is_file() && out.join("parts/run.json").is_file());
    std::fs::create_dir_all(out.join("parts/nextest-old")).expect("old run");
    std::fs::write(out.join("parts/nextest-old/1-1-1.json"), "{}").expect("old part");

    let nextest = [
        ("NEXTEST_EXECUTION_MODE", "process-per-test"),
        ("NEXTEST_RUN_ID", "new"),
        ("NEXTEST_ATTEMPT", "1"),
        ("NEXTEST_TEST_NAME", "chat::s0::q2"),
    ];
    let output = harness(dir.path(), &out, &nextest, &["--exact", "chat::s0::q2"]);
    assert!(output.status.success(), "{output:?}");
    for gone in [
        "chat.json",
        "junit.xml",
        ".forge-reports",
        "parts/run.json",
        "parts/nextest-old",
    ] {
        assert!(!out.join(gone).exists(), "{gone} is left");
    }
    assert!(out.join("parts/nextest-new").is_dir());

    // The directory merges as this nextest run alone, its skipped batches in.
    let merged = dir.path().join("merged");
    let result = forge::merge::merge(std::slice::from_ref(&out), &merged, None).expect("merge");
    assert_eq!((result.passed, result.failed), (1, 0), "{result:?}");
    let (cases, skipped, rows) = reported(&merged);
    assert_eq!((cases, skipped, rows), (4, 3, 3));
}
