//! Cassettes under the compiled `cargo test` harness, from the environment
//! (`FORGE_RECORD`, `FORGE_REPLAY`): a built-in runner against the loopback
//! server replays with the server gone and not one connection; the
//! `#[forge_runner]` and `run_dataset` runners of `tests/suites.rs` replay
//! from the cassette, not from themselves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use forge_testkit::TestServer;

const KEY: &str = "sk-harness-cassette-42";

fn run(binary: &Path, suites: &Path, out: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary);
    command
        .env("FORGE_SUITES_DIR", suites)
        .env("FORGE_OUT_DIR", out)
        .env_remove("FORGE_RECORD")
        .env_remove("FORGE_REPLAY")
        .env_remove("FORGE_PARTITION");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run the harness")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A report without JUnit's `timestamp`s: when the run started, the one
/// thing a replay cannot repeat (times replay as recorded).
fn without_timestamps(report: &str) -> String {
    let mut out = String::with_capacity(report.len());
    let mut rest = report;
    while let Some(at) = rest.find(" timestamp=\"") {
        out.push_str(&rest[..at]);
        let value = &rest[at + " timestamp=\"".len()..];
        rest = value.find('"').map_or("", |end| &value[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// A URL on a listener that counts the connections it gets, and the count.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let (addr, count) = forge_testkit::capture::counting_listener();
    (format!("http://{addr}/v1"), count)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_harness_records_and_replays_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suites = dir.path().join("suites");
    std::fs::create_dir_all(&suites).expect("suites dir");
    let suite = "name: chat\nrunner: {type: openai, base_url: \"${CHAT_URL}\", model: m}\ndatasets:\n  - session_id: s1\n    assistant_id: bot\n    conversation:\n      - {qa_id: q1, query: Hi}\n      - {qa_id: q2, query: Bye}\n";
    std::fs::write(suites.join("chat.yaml"), suite).expect("write suite");
    let tapes = dir.path().join("tapes");
    let tapes = tapes.to_str().expect("utf-8 path");
    let binary = Path::new(env!("CARGO_BIN_EXE_forge-harness"));

    let server = TestServer::builder().api_key(KEY).start().await;
    let url = format!("{}/v1", server.url());
    let (rec, rep) = (dir.path().join("rec"), dir.path().join("rep"));
    let recorded = tokio::task::spawn_blocking({
        let (binary, suites, rec, url, tapes) = (
            binary.to_owned(),
            suites.clone(),
            rec.clone(),
            url.clone(),
            tapes.to_owned(),
        );
        move || {
            run(
                &binary,
                &suites,
                &rec,
                &[
                    ("CHAT_URL", &url),
                    ("OPENAI_API_KEY", KEY),
                    ("FORGE_RECORD", &tapes),
                ],
            )
        }
    })
    .await
    .expect("join");
    assert!(recorded.status.success(), "{recorded:?}");
    assert_eq!(server.requests().len(), 2);
    server.shutdown().await;

    let (offline, connections) = counting_listener();
    let replayed = run(
        binary,
        &suites,
        &rep,
        &[("CHAT_URL", &offline), ("FORGE_REPLAY", tapes)],
    );
    assert!(replayed.status.success(), "{replayed:?}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the replay connected"
    );
    for report in ["chat.json", "junit.xml"] {
        assert_eq!(
            without_timestamps(&read(&rec.join(report))),
            without_timestamps(&read(&rep.join(report))),
            "{report}"
        );
    }
}

/// The `suites` test binary (built by `cargo test`), as cargo names it.
fn suites_binary() -> PathBuf {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "test",
            "--test",
            "suites",
            "--no-run",
            "--message-format",
            "json",
        ])
        .output()
        .expect("cargo test --no-run");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["target"]["name"] == "suites")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("the suites binary")
}

#[test]
fn custom_runners_replay_from_the_cassette_not_from_themselves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suites = dir.path().join("suites");
    std::fs::create_dir_all(&suites).expect("suites dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    for name in ["custom-runner.yaml", "transcript.yaml"] {
        std::fs::copy(repo.join(name), suites.join(name)).expect("copy suite");
    }
    let tapes = dir.path().join("tapes");
    let binary = suites_binary();
    let tape = |name: &str| tapes.join(format!("{name}.cassette.json"));
    let recorded = run(
        &binary,
        &suites,
        &dir.path().join("rec"),
        &[("FORGE_RECORD", tapes.to_str().expect("utf-8"))],
    );
    assert!(recorded.status.success(), "{recorded:?}");
    // What the replay answers is what the cassette says, not the runners.
    for name in ["custom-runner", "transcript"] {
        let text = read(&tape(name));
        std::fs::write(
            tape(name),
            text.replace("\"assistant\": \"", "\"assistant\": \"Taped: "),
        )
        .expect("edit");
    }
    let rep = dir.path().join("rep");
    let replayed = run(
        &binary,
        &suites,
        &rep,
        &[("FORGE_REPLAY", tapes.to_str().expect("utf-8"))],
    );
    let stdout = String::from_utf8_lossy(&replayed.stdout);
    // The checks that pin the start of an answer now fail; the answers are the cassette's.
    assert!(!replayed.status.success(), "{stdout}");
    let report = |dir: &Path, name: &str| -> serde_json::Value {
        serde_json::from_str(&read(&dir.join(format!("{name}.json")))).expect("JSON")
    };
    let turns = |r: &serde_json::Value| {
        r["datasets"][0]["conversation"]
            .as_array()
            .cloned()
            .expect("turns")
    };
    for name in ["custom-runner", "transcript"] {
        let (taped, live) = (report(&rep, name), report(&dir.path().join("rec"), name));
        for (batch, original) in turns(&taped).iter().zip(turns(&live)) {
            let answer = batch["assistant"].as_str().expect("answer");
            assert!(answer.starts_with("Taped: "), "{name}: {answer}");
            // The agentic data the runner returned (weather-bot's tool use) replays too.
            assert_eq!(batch["agentic"], original["agentic"], "{name}");
        }
    }
    let tools = &report(&rep, "custom-runner")["datasets"][0]["conversation"][0]["agentic"];
    assert!(tools.to_string().contains("forecast"), "{tools}");
}
