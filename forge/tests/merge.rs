//! `forge merge`: the shards of a run, merged, give the reports of the
//! unsharded run (field by field, timings aside) for N = 1, 2, 3, 7 and both
//! partition modes; inputs that cannot be merged are clear errors, and then
//! nothing is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_testkit::reports::assert_same_reports;

/// Offline suites with what a merge must keep: multi-turn sessions, a
/// failing check, `repeat`, two datasets sharing a session id, and a suite
/// whose every turn fails with a runner error.
fn fixture(dir: &Path) {
    let mut alpha = "name: alpha\nrunner: {type: echo}\ndatasets:\n".to_owned();
    for s in 0..7 {
        alpha.push_str(&format!(
            "  - session_id: s{s}\n    assistant_id: bot\n    conversation:\n      - {{qa_id: q1, query: one {s}}}\n      - {{qa_id: q2, query: two {s}, expect: {{contains: {}}}}}\n      - {{qa_id: q3, query: three {s}}}\n",
            if s == 3 { "nope" } else { "two" }
        ));
    }
    let mut beta =
        "name: beta\nrunner: {type: echo}\nrepeat: 3\nexpect: {contains: one}\ndatasets:\n"
            .to_owned();
    for s in 0..4 {
        beta.push_str(&format!(
            "  - session_id: r{s}\n    assistant_id: bot\n    conversation:\n      - {{qa_id: q1, query: one}}\n      - {{qa_id: q2, query: two}}\n"
        ));
    }
    let delta = "name: delta\nrunner: {type: echo}\ndatasets:\n  - session_id: shared\n    assistant_id: a\n    conversation: [{qa_id: q1, query: x}]\n  - session_id: shared\n    assistant_id: b\n    conversation: [{qa_id: q1, query: y}]\n";
    let broken = "name: broken\nrunner: {type: command, program: sh, args: [-c, 'exit 3']}\ndatasets:\n  - session_id: b0\n    assistant_id: bot\n    conversation: [{qa_id: q1, query: x}]\n";
    for (name, text) in [
        ("alpha", alpha.as_str()),
        ("beta", beta.as_str()),
        ("delta", delta),
        ("broken", broken),
    ] {
        std::fs::write(dir.join(format!("{name}.yaml")), text).expect("write suite");
    }
}

/// Runs `forge` in `dir`.
fn forge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(dir)
        .args(args)
        .env_remove("FORGE_PARTITION")
        .env_remove("FORGE_OUT_DIR")
        .output()
        .expect("run forge")
}

/// Runs the fixture's suites into `out` (relative to `dir`), as shard
/// `partition` when given.
fn run(dir: &Path, out: &str, partition: Option<&str>) -> Output {
    let mut args = vec!["run", ".", "--quiet", "--out", out];
    if let Some(spec) = partition {
        args.extend(["--partition", spec]);
    }
    let output = forge(dir, &args);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{args:?}: {output:?}"
    );
    output
}

/// `forge merge --out OUT INPUTS... [extra]` in `dir`.
fn merge(dir: &Path, out: &str, inputs: &[String], extra: &[&str]) -> Output {
    let mut args = vec!["merge", "--out", out];
    args.extend(inputs.iter().map(String::as_str));
    args.extend(extra);
    forge(dir, &args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The "N passed, M failed" line.
fn tally(output: &Output) -> String {
    let text = stdout(output);
    let line = text.lines().find(|l| l.contains(" passed, ")).unwrap_or("");
    line.split(" in ").next().unwrap_or("").to_owned()
}

#[test]
fn merged_shards_equal_the_unsharded_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    fixture(root);
    let whole = run(root, "whole", None);
    assert_eq!(tally(&whole), "26 passed, 6 failed", "{}", stdout(&whole));
    for mode in ["hash", "count"] {
        for n in [1, 2, 3, 7] {
            let shards: Vec<String> = (1..=n).map(|m| format!("{mode}-{n}/shard-{m}")).collect();
            for (m, shard) in shards.iter().enumerate() {
                run(root, shard, Some(&format!("{mode}:{}/{n}", m + 1)));
            }
            let out = format!("{mode}-{n}/merged");
            let merged = merge(root, &out, &shards, &["--expect", &n.to_string()]);
            assert_eq!(merged.status.code(), Some(1), "{mode}:*/{n}: {merged:?}");
            assert_eq!(tally(&merged), tally(&whole), "{mode}:*/{n}");
            assert!(
                stderr(&merged).contains(&format!("{n} part(s) merged")),
                "{}",
                stderr(&merged)
            );
            assert_same_reports(&root.join("whole"), &root.join(&out));
        }
    }
}

/// Asserts that merging `inputs` fails with exit status 2, a message
/// containing each of `needles`, and writes nothing.
fn refused(root: &Path, inputs: &[String], extra: &[&str], needles: &[&str]) {
    let out = root.join("refused");
    let output = merge(root, "refused", inputs, extra);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{inputs:?}: {output:?}");
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
    assert!(!out.exists(), "a refused merge wrote {}", out.display());
}

fn shards_of_three(root: &Path, mode: &str) -> Vec<String> {
    (1..=3)
        .map(|m| {
            let out = format!("{mode}3-{m}");
            run(root, &out, Some(&format!("{mode}:{m}/3")));
            out
        })
        .collect()
}

#[test]
fn missing_doubled_and_mixed_shards_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    fixture(root);
    let hash = shards_of_three(root, "hash");
    let two = &hash[..2];
    refused(root, two, &["--expect", "3"], &["missing shard(s) 3/3"]);
    refused(
        root,
        &hash,
        &["--expect", "2"],
        &["--expect 2", "shards of 3"],
    );
    let doubled = [hash[0].clone(), hash[0].clone(), hash[1].clone()];
    refused(root, &doubled, &[], &["shard hash:1/3 is given twice"]);
    let count = shards_of_three(root, "count");
    let mixed = [hash[0].clone(), count[1].clone()];
    refused(root, &mixed, &[], &["not one partition"]);
    run(root, "whole", None);
    refused(
        root,
        &["whole".to_owned(), hash[1].clone()],
        &[],
        &["ran in both", "whole", &hash[1]],
    );
    refused(
        root,
        &["whole".to_owned()],
        &["--expect", "1"],
        &["no input is a shard"],
    );

    // Without --expect, a missing shard is said, and the rest is merged.
    let output = merge(root, "partial", two, &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("missing shard(s) 3/3 (give --expect 3"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn shards_of_different_suites_or_versions_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    fixture(root);
    run(root, "one", Some("hash:1/2"));
    // The same suite with one more turn: another version.
    let alpha = root.join("alpha.yaml");
    let text = std::fs::read_to_string(&alpha).expect("read suite");
    std::fs::write(
        &alpha,
        text.replace(
            "query: three 6}",
            "query: three 6}\n      - {qa_id: q4, query: four}",
        ),
    )
    .expect("edit");
    run(root, "two", Some("hash:2/2"));
    refused(
        root,
        &["one".to_owned(), "two".to_owned()],
        &[],
        &["not runs of the same suites", "suite `alpha` differs"],
    );
    // A shard that loaded fewer suites.
    std::fs::write(&alpha, text).expect("restore");
    let other = root.join("other");
    std::fs::create_dir_all(&other).expect("dir");
    std::fs::copy(root.join("delta.yaml"), other.join("delta.yaml")).expect("copy");
    let output = forge(
        &other,
        &[
            "run",
            ".",
            "--quiet",
            "--out",
            "../three",
            "--partition",
            "hash:2/2",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    refused(
        root,
        &["one".to_owned(), "three".to_owned()],
        &[],
        &["they loaded suites [alpha, beta, broken, delta] and [delta]"],
    );
}

#[test]
fn inputs_that_are_not_runs_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    fixture(root);
    std::fs::create_dir_all(root.join("empty")).expect("dir");
    refused(
        root,
        &["empty".to_owned()],
        &[],
        &["empty: no forge run here"],
    );
    run(root, "shard", Some("count:1/1"));
    // A report rewritten by another run than the part's.
    let report: PathBuf = root.join("shard/alpha.json");
    let text = std::fs::read_to_string(&report).expect("read report");
    std::fs::write(&report, text.replace("\"s1\"", "\"s9\"")).expect("edit");
    refused(
        root,
        &["shard".to_owned()],
        &[],
        &["alpha.json", "written by another run"],
    );
    std::fs::write(root.join("shard/parts/run.json"), "{\"forge_part\": 1,").expect("truncate");
    refused(root, &["shard".to_owned()], &[], &["run.json", "line 1"]);
}
