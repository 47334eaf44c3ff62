//! `FORGE_PARTITION` under the compiled `cargo test` harness: each shard
//! lists and runs only its sessions' batches, the shards together run every
//! batch once, and a bad spec is a failing test.

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
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, result) = line.strip_prefix("test ")?.split_once(" ... ")?;
            (result.trim() == outcome).then(|| name.trim().to_owned())
        })
        .collect()
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
    let out = dir.path().join("out");
    let mut ran = Vec::new();
    for index in 1..=3 {
        let spec = format!("hash:{index}/3");
        let list = listed(&harness(&suites, &out, &spec, &["--list"]));
        let output = harness(&suites, &out, &spec, &["--test-threads", "2"]);
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
