//! SIGTERM during `forge run`: turns in flight finish, nothing else is sent,
//! and the partial report lists every batch exactly once.

#![cfg(unix)]

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use forge::testing::{alquimia_answer, TestServer};
use serde_json::Value;

const INTERRUPTED: &str = "[ERROR] run interrupted before this turn was sent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_a_valid_partial_report() {
    let server = TestServer::builder()
        .latency(Duration::from_millis(300))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut suite = format!(
        "name: interrupted\nrunner:\n  type: alquimia\n  base_url: {}\n  api_key: {}\n  agent_id: a\n  channel_id: web\nconcurrency: 2\ntimeout: 10s\ndatasets:\n",
        server.url(),
        TestServer::DEFAULT_API_KEY
    );
    for s in 1..=4 {
        suite.push_str(&format!(
            "  - session_id: s{s}\n    assistant_id: a\n    conversation:\n"
        ));
        for t in 1..=5 {
            suite.push_str(&format!(
                "      - {{qa_id: q{t}, query: \"turn {t} of s{s}\"}}\n"
            ));
        }
    }
    let path = dir.path().join("suite.yaml");
    std::fs::write(&path, suite).unwrap();
    let out = dir.path().join("out");

    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("interrupted; partial reports written"),
        "{stderr}"
    );
    // 20 turns of 300 ms, 2 sessions at once, would take 3 s.
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");

    let text = std::fs::read_to_string(out.join("interrupted.json")).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["success"], true);
    assert_eq!(report["total_datasets"], 4);
    let datasets = report["datasets"].as_array().unwrap();
    let summaries = report["summaries"].as_array().unwrap();
    assert_eq!(datasets.len(), 4);
    assert_eq!(summaries.len(), 4);

    let log = server.requests();
    let sent: HashSet<(String, String)> = log
        .iter()
        .filter(|r| r.path.contains("/event/infer/"))
        .map(|r| (r.session_id.clone().unwrap(), r.query.clone().unwrap()))
        .collect();
    let (mut answered, mut interrupted) = (0, 0);
    for (dataset, summary) in datasets.iter().zip(summaries) {
        let session = dataset["session_id"].as_str().unwrap();
        assert_eq!(summary["session_id"], session);
        let conversation = dataset["conversation"].as_array().unwrap();
        let ids: Vec<&str> = conversation
            .iter()
            .map(|b| b["qa_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["q1", "q2", "q3", "q4", "q5"], "{session}");
        assert_eq!(summary["total_batches"], 5);
        let accepted = server.turns(session);
        let mut seen_interrupted = false;
        for (t, batch) in conversation.iter().enumerate() {
            let query = batch["query"].as_str().unwrap();
            let assistant = batch["assistant"].as_str().unwrap();
            let key = (session.to_owned(), query.to_owned());
            if assistant == INTERRUPTED {
                seen_interrupted = true;
                interrupted += 1;
                assert!(!sent.contains(&key), "{session}/{query} was sent");
            } else {
                assert!(!seen_interrupted, "an answer after an interrupted turn");
                answered += 1;
                assert_eq!(assistant, alquimia_answer(query, t + 1, session));
                assert_eq!(accepted.get(t).map(String::as_str), Some(query));
            }
        }
        assert_eq!(
            summary["successes"].as_u64().unwrap() + summary["failures"].as_u64().unwrap(),
            5
        );
    }
    assert_eq!(answered + interrupted, 20);
    assert!(answered >= 2, "turns in flight finished: {answered}");
    assert!(interrupted >= 2, "the run stopped early: {interrupted}");
    // Every turn the server accepted has its answer in the report.
    assert_eq!(sent.len(), answered);
}
