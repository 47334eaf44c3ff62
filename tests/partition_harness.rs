//! `FORGE_PARTITION` under the compiled `cargo test` harness: each shard
//! lists and runs only its sessions' batches, the shards together run every
//! batch once (and merge into the reports of one whole run), and a bad spec
//! is a failing test.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn fixture(dir: &Path) {
    let mut text = "name: chat\nrunner: {type: echo}\ndatasets:\n".to_owned();
    for s in 0..5 {
        text.push_str(&format!(
            "  - session_id: s{s}\n    assistant_id: bot\n    conversation:\n      - {{qa_id: q1, query: one}}\n      - {{qa_id: q2, query: two}}\n"
        ));
    }
    std::fs::write(dir.join("chat.yaml"), text).expect("write suite");
}

fn harness(suites: &Path, out: &Path, partition: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", suites)
        .env("FORGE_OUT_DIR", out)
        .env("FORGE_PARTITION", partition)
        .args(args)
        .output()
        .expect("run the harness")
}

/// The tests libtest printed with `outcome` ("ok", "FAILED").
fn tests(output: &Output, outcome: &str) -> BTreeSet<String> {
    forge_testkit::libtest::tests_with(&String::from_utf8_lossy(&output.stdout), outcome)
}

/// The tests `--list` printed.
fn listed(output: &Output) -> BTreeSet<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test").map(str::to_owned))
        .collect()
}

#[test]
fn each_shard_lists_and_runs_its_sessions_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suites = dir.path().join("suites");
    std::fs::create_dir_all(&suites).expect("suites dir");
    fixture(&suites);
    let mut ran = Vec::new();
    let mut shards = Vec::new();
    for index in 1..=3 {
        let spec = format!("hash:{index}/3");
        let out = dir.path().join(format!("shard-{index}"));
        let list = listed(&harness(&suites, &out, &spec, &["--list"]));
        let output = harness(&suites, &out, &spec, &["--test-threads", "2"]);
        shards.push(out);
        assert!(output.status.success(), "{spec}: {output:?}");
        let passed = tests(&output, "ok");
        assert_eq!(passed, list, "{spec}: it ran what it did not list");
        for test in &passed {
            let session = test.rsplit_once("::").map(|(s, _)| s).unwrap_or(test);
            let twin = if test.ends_with("::q1") { "q2" } else { "q1" };
            assert!(
                passed.contains(&format!("{session}::{twin}")),
                "{spec}: {session} split"
            );
        }
        ran.extend(passed);
    }
    let unique: BTreeSet<&String> = ran.iter().collect();
    assert_eq!(unique.len(), ran.len(), "a batch ran in two shards");
    assert_eq!(ran.len(), 10, "{ran:?}");

    // The shards' reports, merged, are those of one run of everything.
    let whole = dir.path().join("whole");
    let output = Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", &suites)
        .env("FORGE_OUT_DIR", &whole)
        .env_remove("FORGE_PARTITION")
        .output()
        .expect("run the harness");
    assert!(output.status.success(), "{output:?}");
    let merged_dir = dir.path().join("merged");
    let merged = forge::merge::merge(&shards, &merged_dir, Some(3)).expect("merge");
    assert_eq!((merged.parts, merged.passed, merged.failed), (3, 10, 0));
    assert!(merged.success && merged.warnings.is_empty(), "{merged:?}");
    forge_testkit::reports::assert_same_reports(&whole, &merged_dir);
}

#[test]
fn a_bad_partition_is_a_failing_test() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suites = dir.path().join("suites");
    std::fs::create_dir_all(&suites).expect("suites dir");
    fixture(&suites);
    let output = harness(&suites, &dir.path().join("out"), "hash:4/3", &[]);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        tests(&output, "FAILED").contains("forge::partition"),
        "{output:?}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("FORGE_PARTITION: invalid partition \"hash:4/3\""),
        "{stdout}"
    );
    // Nothing is left out: every batch still runs.
    assert_eq!(tests(&output, "ok").len(), 10, "{stdout}");
}

#[test]
fn an_empty_shard_passes_and_is_counted_by_merge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suites = dir.path().join("suites");
    std::fs::create_dir_all(&suites).expect("suites dir");
    let one = "name: one\nrunner: {type: echo}\ndatasets:\n  - session_id: s0\n    assistant_id: bot\n    conversation: [{qa_id: q1, query: hi}]\n";
    std::fs::write(suites.join("one.yaml"), one).expect("write suite");
    let shards: Vec<_> = (1..=2)
        .map(|m| dir.path().join(format!("shard-{m}")))
        .collect();
    for (m, out) in shards.iter().enumerate() {
        let output = harness(&suites, out, &format!("count:{}/2", m + 1), &[]);
        assert!(output.status.success(), "{output:?}");
    }
    // Shard 2 ran nothing, wrote no suite report, but its part says it ran.
    assert!(!shards[1].join("one.json").exists());
    assert!(shards[1].join("parts").join("run.json").is_file());
    let merged = forge::merge::merge(&shards, &dir.path().join("merged"), Some(2))
        .expect("both shards are there");
    assert_eq!((merged.passed, merged.failed), (1, 0));
    let missing = forge::merge::merge(&shards[..1], &dir.path().join("missing"), Some(2));
    let error = missing.expect_err("shard 2 is missing").to_string();
    assert!(error.contains("missing shard(s) 2/2"), "{error}");
}
