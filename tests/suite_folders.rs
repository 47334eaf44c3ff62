//! Through the compiled harness (`forge-harness`, the one-line `main` of a
//! user's test target): suites in subfolders of `suites/` run with their
//! usual test names, a dataset file among them is data, a broken suite
//! there fails as `<stem>::load`; a mistake in a `runner:` mapping is one
//! located `<stem>::load` failure, and the other suites still run. And a
//! `#[forge_runner]` struct's configuration errors are located at load.

use std::path::Path;
use std::process::{Command, Output};

use serde::Deserialize;

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn harness(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", root.join("suites"))
        .env("FORGE_OUT_DIR", root.join("out"))
        .env_remove("FORGE_PARTITION")
        .args(args)
        .output()
        .expect("run the harness")
}

use forge_testkit::libtest::outcome;

const ECHO: &str = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation:\n      - {qa_id: q1, query: hi, expect: {equals: hi}}\n";

#[test]
fn suites_in_subfolders_run_and_their_dataset_files_are_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(
        root,
        "suites/top.yaml",
        "runner: {type: echo}\ndatasets:\n  - file: data/more.yaml\n",
    );
    write(
        root,
        "suites/data/more.yaml",
        "session_id: m\nassistant_id: bot\nconversation:\n  - {qa_id: q1, query: from a file}\n",
    );
    write(root, "suites/smoke/deep/nested.yaml", ECHO);
    write(root, "suites/.drafts/half.yaml", "runner: [not a suite");
    let list = harness(root, &["--list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["nested::s::q1: test", "top::m::q1: test"],
        "{listed}"
    );
    let output = harness(root, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(root.join("out/nested.json").is_file());

    // A broken suite in a subfolder is a failing test, not skipped.
    write(
        root,
        "suites/smoke/broken.yaml",
        "runner: {type: echo}\ndatasets: 3\n",
    );
    let output = harness(root, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(101), "{stdout}");
    assert_eq!(outcome(&stdout, "broken::load"), Some("FAILED"), "{stdout}");
    assert!(stdout.contains("smoke/broken.yaml:2:"), "{stdout}");
    assert_eq!(outcome(&stdout, "nested::s::q1"), Some("ok"), "{stdout}");
}

#[test]
fn a_runner_mistake_is_one_located_load_failure_and_the_rest_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(
        root,
        "suites/bad.yaml",
        &ECHO.replace("runner: {type: echo}", "runner: {type: echo, templat: x}"),
    );
    write(root, "suites/good.yaml", ECHO);
    let output = harness(root, &["--test-threads", "1"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(101), "{stdout}");
    assert_eq!(outcome(&stdout, "bad::load"), Some("FAILED"), "{stdout}");
    assert_eq!(outcome(&stdout, "good::s::q1"), Some("ok"), "{stdout}");
    let message = "bad.yaml:1:22: runner `echo`: unknown key `templat`, did you mean `template`?";
    assert_eq!(stdout.matches(message).count(), 1, "{stdout}");
    assert!(!stdout.contains("bad::s::q1"), "{stdout}");
}

/// A `#[forge_runner]` struct, as a user writes one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Concierge {
    greeting: String,
    #[serde(default)]
    retries: u32,
}

#[forge::forge_runner(name = "concierge")]
impl Concierge {
    async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
        Ok(format!("{} {query}", self.greeting))
    }
}

#[test]
fn a_forge_runner_struct_mistake_is_located_at_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suite = dir.path().join("concierge.yaml");
    let datasets = "datasets:\n  - session_id: s\n    assistant_id: bot\n    conversation: [{qa_id: q1, query: hi}]\n";
    for (runner, expected) in [
        (
            "runner:\n  type: concierge\n  greeting: hello\n  retires: 2\n",
            "concierge.yaml:4:3: runner `concierge`: unknown key `retires`, did you mean `retries`? (expected one of `greeting`, `retries`)",
        ),
        (
            "runner:\n  type: concierge\n  greeting: hello\n  retries: many\n",
            "concierge.yaml:4:12: runner `concierge`: `retries`: invalid type: string \"many\", expected u32",
        ),
    ] {
        std::fs::write(&suite, format!("{runner}{datasets}")).expect("write");
        let error = forge::Suite::load(&suite).expect_err("a mistake").to_string();
        let error = error.replace(&format!("{}/", dir.path().display()), "");
        assert_eq!(error, expected);
    }
    std::fs::write(
        &suite,
        format!("runner:\n  type: concierge\n  greeting: hello\n{datasets}"),
    )
    .expect("write");
    forge::Suite::load(&suite).expect("its own binary knows the type");
}
