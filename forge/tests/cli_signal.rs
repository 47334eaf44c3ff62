//! Ctrl-C and SIGTERM during `forge run`: the first signal stops new work
//! (turns in flight finish, pending retries end), the reports are written and
//! list every batch exactly once; a second signal exits at once and takes the
//! `command` runner's programs with it.
//!
//! Every wait here is on an event (the server's request log, a line on
//! forge's stderr, a file a program writes), bounded so a regression fails
//! instead of hanging.

#![cfg(unix)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use forge_testkit::process::{is_dead, read_pid, wait_until, Reap, Spawned};
use forge_testkit::{alquimia_answer, Fault, FaultPlan, TestServer};
use serde_json::Value;

const INTERRUPTED: &str = "[ERROR] run interrupted before this turn was sent";

/// `forge run SUITE --out OUT --quiet`, running in the background.
fn forge_run(suite: &Path, out: &Path) -> Spawned {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .arg("run")
        .arg(suite)
        .arg("--out")
        .arg(out)
        .arg("--quiet");
    Spawned::start(command)
}

fn alquimia_suite(server: &TestServer, name: &str, extra: &str) -> String {
    format!(
        "name: {name}\nrunner:\n  type: alquimia\n  base_url: {}\n  api_key: {}\n  agent_id: a\n  channel_id: web\n{extra}datasets:\n",
        server.url(),
        TestServer::DEFAULT_API_KEY
    )
}

fn infer_requests(server: &TestServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.path.contains("/event/infer/"))
        .count()
}

fn read_report(out: &Path, suite: &str) -> Value {
    let text = std::fs::read_to_string(out.join(format!("{suite}.json"))).expect("report");
    serde_json::from_str(&text).expect("the report is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_a_valid_partial_report() {
    // 20 turns of 1 s, 2 sessions at once: the whole run would take 10 s.
    let server = TestServer::builder()
        .latency(Duration::from_secs(1))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut suite = alquimia_suite(&server, "interrupted", "concurrency: 2\ntimeout: 30s\n");
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

    let forge = forge_run(&path, &out);
    // Both sessions have a turn in flight.
    wait_until("two turns started", || infer_requests(&server) >= 2).await;
    forge.signal("TERM");
    let (status, _, stderr) = forge.exit().await;
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("interrupted; partial reports written"),
        "{stderr}"
    );

    let report = read_report(&out, "interrupted");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_signal_ends_a_pending_backoff_wait() {
    // Throttled forever, and asked to come back in 30 s each time.
    let plan = FaultPlan::new(1).on_query(
        "throttled",
        Fault::Reject {
            status: 429,
            times: usize::MAX,
            retry_after: 30,
        },
    );
    let server = TestServer::builder().fault_plan(plan).start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut suite = alquimia_suite(&server, "backoff", "retries: 10\n");
    suite.push_str(
        "  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: throttled}\n      - {qa_id: q2, query: later}\n",
    );
    let path = dir.path().join("suite.yaml");
    std::fs::write(&path, suite).unwrap();
    let out = dir.path().join("out");

    let forge = forge_run(&path, &out);
    wait_until("the first attempt", || {
        server.requests().iter().any(|r| r.status == 429)
    })
    .await;
    forge.signal("INT");
    // Without the fix the next attempt waits out the 30 s backoff: the
    // bounded wait in `exit` fails first.
    let (status, _, stderr) = forge.exit().await;
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    let attempts = server
        .requests()
        .iter()
        .filter(|r| r.query.as_deref() == Some("throttled"))
        .count();
    assert_eq!(attempts, 1, "a retry was sent after the signal");
    assert!(server.turns("s").is_empty());

    let report = read_report(&out, "backoff");
    let turns = report["datasets"][0]["conversation"].as_array().unwrap();
    let first = turns[0]["assistant"].as_str().unwrap();
    assert!(first.starts_with("[ERROR] "), "{first}");
    assert!(first.contains("429"), "the last error is kept: {first}");
    assert!(first.contains("interrupted"), "{first}");
    assert_eq!(turns[1]["assistant"], INTERRUPTED);
    assert_eq!(report["summaries"][0]["failures"], 2);
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_kills_running_programs() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // The program leaves a child in its process group and waits for it.
    let suite = format!(
        "name: stuck\nrunner:\n  type: command\n  program: sh\n  args: [-c, \"sleep 1000 & echo $! > '{}'; wait\"]\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {{qa_id: q1, query: hi}}\n      - {{qa_id: q2, query: again}}\n",
        pidfile.display()
    );
    let path = dir.path().join("suite.yaml");
    std::fs::write(&path, suite).unwrap();
    let out = dir.path().join("out");

    let mut forge = forge_run(&path, &out);
    wait_until("the program's pid", || read_pid(&pidfile).is_some()).await;
    let pid = read_pid(&pidfile).unwrap();
    let _reap = Reap(Some(pid.clone()));
    forge.signal("TERM");
    // The first signal lets the turn in flight go on.
    forge.wait_for_line("stopping").await;
    assert!(!is_dead(&pid));
    forge.signal("INT");
    let (status, _, stderr) = forge.exit().await;
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    wait_until("the program's child to die", || is_dead(&pid)).await;
}
