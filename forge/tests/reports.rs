//! Reports that tell the truth, through the real `forge` binary: a failure's
//! JUnit body (message, query, expected answer, answer, newlines kept) and
//! every case's `file` and `line`; ignored batches skipped in JUnit and in
//! the summary's `checks`, as `cargo test` counts them; and an output
//! directory that holds exactly the last run's reports.

use std::path::Path;
use std::process::{Command, Output};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write fixture");
}

/// `forge run ARGS... --quiet --out out` in `dir`.
fn forge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(dir)
        .arg("run")
        .args(args)
        .args(["--quiet", "--out", "out"])
        .env_remove("FORGE_OUT_DIR")
        .env_remove("FORGE_PARTITION")
        .output()
        .expect("run forge")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const SUITE: &str = "name: geo\nrunner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation:\n      - {qa_id: ok, query: Paris, expect: {contains: Paris}}\n      - qa_id: skip-me\n        query: never sent\n        ignore: true\n      - qa_id: wrong\n        query: \"Rome\\nis not it\"\n        ground_truth_assistant: Paris\n        expect: {contains: Paris}\n  - session_id: t\n    assistant_id: bot\n    conversation:\n      - {qa_id: ok, query: Paris}\n";

#[test]
fn a_failure_says_what_was_asked_expected_and_answered_where_the_batch_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "geo.yaml", SUITE);
    let run = forge(dir.path(), &["geo.yaml"]);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let text = read(&dir.path().join("out/junit.xml"));
    let doc = roxmltree::Document::parse(&text).expect("JUnit XML");
    let case = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no case {name}:\n{text}"))
    };
    let failure = case("s::wrong")
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("failure");
    assert_eq!(
        failure.text(),
        Some(
            "check `contains` failed: the answer does not contain \"Paris\"\n\n\
             --- query\nRome\nis not it\n\
             --- expected (ground_truth_assistant)\nParis\n\
             --- answer\nRome\nis not it\n"
        ),
        "{text}"
    );
    // Each case points at its `qa_id`: the two `ok`s apart.
    for (name, line) in [
        ("s::ok", "7"),
        ("s::skip-me", "8"),
        ("s::wrong", "11"),
        ("t::ok", "18"),
    ] {
        assert_eq!(case(name).attribute("file"), Some("geo.yaml"), "{name}");
        assert_eq!(case(name).attribute("line"), Some(line), "{name}");
    }
    for suite in doc.descendants().filter(|n| n.has_tag_name("testsuite")) {
        assert!(suite.attribute("timestamp").is_some() && suite.attribute("time").is_some());
    }
}

#[test]
fn ignored_batches_are_skipped_in_junit_and_the_summary_as_cargo_test_counts_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "geo.yaml", SUITE);
    let run = forge(dir.path(), &["geo.yaml"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.starts_with("2 passed, 1 failed, 1 ignored in "),
        "{stdout}"
    );
    let text = read(&dir.path().join("out/junit.xml"));
    assert!(
        text.contains(r#"<testsuite name="geo" tests="4" skipped="1" errors="0" failures="1""#),
        "{text}"
    );
    let doc = roxmltree::Document::parse(&text).expect("JUnit XML");
    let skipped = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("s::skip-me"))
        .expect("the ignored case");
    assert!(
        skipped.children().any(|n| n.has_tag_name("skipped")),
        "{text}"
    );
    assert!(
        !skipped.children().any(|n| n.has_tag_name("system-out")),
        "{text}"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("out/geo.json"))).expect("summary JSON");
    let rows = summary["checks"].as_array().expect("checks");
    assert_eq!(
        rows.iter()
            .map(|r| r["test"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        [
            "geo::s::ok",
            "geo::s::skip-me",
            "geo::s::wrong",
            "geo::t::ok"
        ]
    );
    assert_eq!(
        rows[1],
        serde_json::json!({"test": "geo::s::skip-me", "skipped": true})
    );
    // Fair-Forge's fields are the run's: the skipped batch ran, to keep the
    // conversation, and Fair-Forge counts runner calls.
    let turns: Vec<&str> = summary["datasets"][0]["conversation"]
        .as_array()
        .expect("conversation")
        .iter()
        .map(|b| b["qa_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(turns, ["ok", "skip-me", "wrong"]);
    assert_eq!(summary["summaries"][0]["successes"], 3);

    // A suite whose batches are all ignored is reported, skipped.
    write(
        dir.path(),
        "geo.yaml",
        "name: geo\nrunner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    ignore: true\n    conversation: [{qa_id: q1, query: x}]\n",
    );
    let run = forge(dir.path(), &["geo.yaml"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&read(&dir.path().join("out/geo.json"))).expect("summary JSON");
    assert_eq!(summary["datasets"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["checks"][0]["skipped"], true, "{summary}");
    assert!(read(&dir.path().join("out/junit.xml")).contains(r#"tests="1" skipped="1""#));
}

/// The names in `dir/out` (files and directories), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("out"))
        .expect("out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_output_directory_holds_exactly_the_last_runs_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suite = |name: &str| {
        format!("name: {name}\nrunner: {{type: echo}}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation: [{{qa_id: q1, query: x}}]\n")
    };
    std::fs::create_dir_all(dir.path().join("suites")).expect("suites");
    write(&dir.path().join("suites"), "alpha.yaml", &suite("alpha"));
    write(&dir.path().join("suites"), "beta.yaml", &suite("beta"));
    std::fs::create_dir_all(dir.path().join("out/parts/nextest-old")).expect("out");
    write(
        &dir.path().join("out/parts/nextest-old"),
        "1-2-3.json",
        "{}",
    );
    write(&dir.path().join("out"), "notes.json", "not forge's");
    let base = [
        ".forge-reports",
        "junit.xml",
        "notes.json",
        "parts",
        "report.html",
    ];

    assert!(forge(dir.path(), &["suites"]).status.success());
    let mut all = base.to_vec();
    all.extend(["alpha.json", "beta.json"]);
    all.sort();
    assert_eq!(listing(dir.path()), all);
    assert!(!dir.path().join("out/parts/nextest-old").exists());

    // beta is gone: so is its report.
    std::fs::remove_file(dir.path().join("suites/beta.yaml")).expect("remove");
    assert!(forge(dir.path(), &["suites"]).status.success());
    let mut alpha = base.to_vec();
    alpha.push("alpha.json");
    alpha.sort();
    assert_eq!(listing(dir.path()), alpha);

    // A filtered run reports what it ran, and only that.
    write(&dir.path().join("suites"), "beta.yaml", &suite("beta"));
    assert!(forge(dir.path(), &["suites", "--filter", "beta::"])
        .status
        .success());
    let mut beta = base.to_vec();
    beta.push("beta.json");
    beta.sort();
    assert_eq!(listing(dir.path()), beta);
    let junit = read(&dir.path().join("out/junit.xml"));
    assert!(!junit.contains("alpha"), "{junit}");
    assert_eq!(
        read(&dir.path().join("out/.forge-reports")),
        "beta.json\njunit.xml\nreport.html\n"
    );
    assert_eq!(read(&dir.path().join("out/notes.json")), "not forge's");
}
