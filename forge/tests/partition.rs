//! `forge run --partition`: the union of the shards of a run is every batch
//! exactly once, a session never splits, and bad specs are clear errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

/// Three offline suites: 7, 5 and 3 sessions of 2 turns, one suite with
/// `repeat`, one with two datasets sharing a session id (best-of).
fn fixture(dir: &Path) {
    let suite = |name: &str, sessions: usize, extra: &str| {
        let mut text = format!("name: {name}\nrunner: {{type: echo}}\n{extra}datasets:\n");
        for s in 0..sessions {
            text.push_str(&format!(
                "  - session_id: s{s}\n    assistant_id: bot\n    conversation:\n      - {{qa_id: q1, query: one}}\n      - {{qa_id: q2, query: two}}\n"
            ));
        }
        std::fs::write(dir.join(format!("{name}.yaml")), text).expect("write suite");
    };
    suite("alpha", 7, "");
    suite("beta", 5, "repeat: 2\n");
    suite("gamma", 3, "");
    let best_of = "name: delta\nrunner: {type: echo}\ndatasets:\n  - session_id: shared\n    assistant_id: a\n    conversation: [{qa_id: q1, query: x}]\n  - session_id: shared\n    assistant_id: b\n    conversation: [{qa_id: q1, query: x}]\n";
    std::fs::write(dir.join("delta.yaml"), best_of).expect("write suite");
}

fn forge(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
    command.args(args).env_remove("FORGE_PARTITION");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run forge")
}

/// The tests `junit.xml` in `out` reports, `<suite>::<name>`.
fn tests_in(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    let doc = roxmltree::Document::parse(&text).expect("well-formed JUnit");
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            format!(
                "{}::{}",
                n.attribute("classname").unwrap_or_default(),
                n.attribute("name").unwrap_or_default()
            )
        })
        .collect()
}

/// The session of a test name: everything before the last `::`.
fn session(test: &str) -> &str {
    test.rsplit_once("::").map_or(test, |(session, _)| session)
}

#[test]
fn shards_cover_every_batch_once_and_never_split_a_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    fixture(dir.path());
    let suites = dir.path().to_str().expect("utf-8 path");
    let whole = dir.path().join("whole");
    let output = forge(
        &["run", suites, "-q", "--out", whole.to_str().unwrap()],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    let all: BTreeSet<String> = tests_in(&whole).into_iter().collect();
    assert_eq!(all.len(), 7 * 2 + 5 * 2 + 3 * 2 + 2);

    for mode in ["hash", "count"] {
        for total in [1, 2, 3, 7] {
            let mut seen: Vec<String> = Vec::new();
            let mut shard_of: BTreeMap<String, usize> = BTreeMap::new();
            for index in 1..=total {
                let spec = format!("{mode}:{index}/{total}");
                let out = dir.path().join(format!("{mode}-{index}-{total}"));
                let output = forge(
                    &[
                        "run",
                        suites,
                        "-q",
                        "--partition",
                        &spec,
                        "--out",
                        out.to_str().unwrap(),
                    ],
                    &[],
                );
                assert!(output.status.success(), "{spec}: {output:?}");
                for test in tests_in(&out) {
                    let first = *shard_of.entry(session(&test).to_owned()).or_insert(index);
                    assert_eq!(
                        first, index,
                        "{spec}: session of {test} split across shards"
                    );
                    seen.push(test);
                }
            }
            let unique: BTreeSet<String> = seen.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                seen.len(),
                "{mode}/{total}: a batch ran twice"
            );
            assert_eq!(
                unique, all,
                "{mode}/{total}: the shards do not cover the run"
            );
        }
    }
}

#[test]
fn count_deals_sessions_round_robin_in_suite_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    fixture(dir.path());
    let out = dir.path().join("out");
    let output = forge(
        &[
            "run",
            dir.path().to_str().unwrap(),
            "-q",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("FORGE_PARTITION", "count:2/2")],
    );
    assert!(output.status.success(), "{output:?}");
    // Sessions in order: alpha s0..s6 (0-6), beta s0..s4 (7-11), delta's two
    // (12, 13), gamma s0..s2 (14-16); shard 2 of 2 takes the odd ones.
    let sessions: BTreeSet<String> = tests_in(&out)
        .iter()
        .map(|t| session(t).to_owned())
        .collect();
    let expected: BTreeSet<String> = [
        "alpha::s1",
        "alpha::s3",
        "alpha::s5",
        "beta::s0",
        "beta::s2",
        "beta::s4",
        "delta::shared@b",
        "gamma::s1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(sessions, expected);
    // A shard with no session of a suite writes no report for it.
    let out = dir.path().join("out7");
    let output = forge(
        &[
            "run",
            dir.path().to_str().unwrap(),
            "-q",
            "--partition",
            "count:7/7",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    // Sessions 6 (alpha::s6) and 13 (delta::shared@b): no beta, no gamma.
    assert!(out.join("alpha.json").is_file() && out.join("delta.json").is_file());
    assert!(!out.join("beta.json").exists() && !out.join("gamma.json").exists());
}

#[test]
fn bad_partitions_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    fixture(dir.path());
    let suites = dir.path().to_str().unwrap();
    for spec in ["hash:0/3", "count:4/3", "hash:a/b", "slice:1/2"] {
        let output = forge(&["run", suites, "-q", "--partition", spec], &[]);
        assert_eq!(output.status.code(), Some(2), "{spec}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("invalid partition"), "{spec}: {stderr}");
        let output = forge(&["run", suites, "-q"], &[("FORGE_PARTITION", spec)]);
        assert_eq!(output.status.code(), Some(2), "{spec}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("FORGE_PARTITION: invalid partition"),
            "{spec}: {stderr}"
        );
    }
}
