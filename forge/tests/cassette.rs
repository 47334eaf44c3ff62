//! Cassettes through the real `forge` binary: record against the loopback
//! server, stop it, replay offline — byte-identical reports and not one
//! connection; a changed query fails exactly the turns it changed, saying
//! so; `--replay` with `--record` sends only the misses; failed turns are
//! recorded only with `--record-errors`; bad cassettes are clear errors and
//! nothing runs live; no secret reaches a cassette.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use forge_testkit::{Fault, FaultPlan, TestServer};

/// The agent's key, seeded in the suite's runner mapping.
const KEY: &str = "sk-cassette-0123456789";

/// An OpenAI-compatible agent (its URL from the environment, its key in
/// the mapping); a session of two turns, and one of one turn repeated
/// twice.
fn suite(dir: &Path, last_query: &str) {
    let text = format!(
        r#"name: chat
runner:
  type: openai
  base_url: ${{CHAT_URL}}
  api_key: {KEY}
  model: m
datasets:
  - session_id: s1
    assistant_id: bot
    conversation:
      - {{qa_id: q1, query: What is the capital of France?}}
      - {{qa_id: q2, query: "{last_query}", expect: {{contains: "{last_query}"}}}}
  - session_id: s2
    assistant_id: bot
    repeat: 2
    conversation:
      - {{qa_id: q1, query: Hello}}
"#
    );
    std::fs::write(dir.join("chat.yaml"), text).expect("write suite");
}

/// A URL on a listener that counts the connections it gets, and the count.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let (addr, count) = forge_testkit::capture::counting_listener();
    (format!("http://{addr}/v1"), count)
}

/// `forge run SUITE --quiet --out ARGS...` in `dir`, with `env` set (a
/// `None` value unsets the variable).
async fn forge_run(
    dir: &Path,
    suite: &str,
    env: &[(&str, Option<&str>)],
    args: &[&str],
) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .current_dir(dir)
        .args(["run", suite, "--quiet", "--out"])
        .args(args)
        .env_remove("FORGE_OUT_DIR")
        .env_remove("FORGE_PARTITION");
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.output().await.expect("run forge")
}

/// The chat suite, its agent at `url`.
async fn forge(dir: &Path, url: &str, args: &[&str]) -> std::process::Output {
    forge_run(dir, "chat.yaml", &[("CHAT_URL", Some(url))], args).await
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
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

/// The server echoes the Authorization header into every answer, so a
/// cassette that kept what came back verbatim would hold the key.
async fn server() -> TestServer {
    TestServer::builder()
        .api_key(KEY)
        .fault_plan(FaultPlan::new(5).share(100, Fault::EchoAuthorization))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_is_the_recording_byte_for_byte_and_sends_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    suite(root, "And of Spain?");
    let live = server().await;
    let recorded = forge(
        root,
        &format!("{}/v1", live.url()),
        &["rec", "--record", "tapes"],
    )
    .await;
    assert_eq!(recorded.status.code(), Some(0), "{}", text(&recorded));
    let sent = live.requests().len();
    assert_eq!(sent, 4, "two turns of s1, one per run of s2");
    live.shutdown().await;

    let cassette = read(&root.join("tapes/chat.cassette.json"));
    assert!(
        !cassette.contains(KEY),
        "the key is in the cassette:\n{cassette}"
    );
    assert!(cassette.contains("[REDACTED]"), "{cassette}");

    let (url, connections) = counting_listener();
    let replayed = forge(root, &url, &["rep", "--replay", "tapes"]).await;
    assert_eq!(replayed.status.code(), Some(0), "{}", text(&replayed));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the replay connected"
    );
    for report in ["chat.json", "junit.xml"] {
        assert_eq!(
            without_timestamps(&read(&root.join("rec").join(report))),
            without_timestamps(&read(&root.join("rep").join(report))),
            "{report} differs"
        );
    }

    // Recording identical replies again leaves the cassette as it was.
    let again = server().await;
    let rerecorded = forge(
        root,
        &format!("{}/v1", again.url()),
        &["rec2", "--record", "tapes"],
    )
    .await;
    assert_eq!(rerecorded.status.code(), Some(0), "{}", text(&rerecorded));
    assert_eq!(read(&root.join("tapes/chat.cassette.json")), cassette);

    // Offline, the agent's URL is not needed: the runner is never built.
    let unset = [("CHAT_URL", None)];
    let bare = forge_run(root, "chat.yaml", &unset, &["bare", "--replay", "tapes"]).await;
    assert_eq!(bare.status.code(), Some(0), "{}", text(&bare));
    assert_eq!(
        read(&root.join("rec/chat.json")),
        read(&root.join("bare/chat.json"))
    );
    // Recording needs it, and says so at load.
    let live = forge_run(root, "chat.yaml", &unset, &["bare", "--record", "tapes"]).await;
    assert_eq!(live.status.code(), Some(2), "{}", text(&live));
    assert!(
        text(&live).contains("CHAT_URL is not set"),
        "{}",
        text(&live)
    );

    // A filter and a shard replay too, offline.
    for extra in [["--filter", "s1::q2"], ["--partition", "hash:1/2"]] {
        let mut args = vec!["part", "--replay", "tapes"];
        args.extend(extra);
        let output = forge(root, &url, &args).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{extra:?}: {}",
            text(&output)
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the replay connected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_turn_fails_with_what_changed_and_record_fills_only_the_misses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    suite(root, "And of Spain?");
    let live = server().await;
    let url = format!("{}/v1", live.url());
    let recorded = forge(root, &url, &["rec", "--record", "tapes"]).await;
    assert!(recorded.status.success(), "{}", text(&recorded));

    suite(root, "And of Peru?");
    let (offline, connections) = counting_listener();
    let replayed = forge(root, &offline, &["rep", "--replay", "tapes"]).await;
    let console = text(&replayed);
    assert_eq!(replayed.status.code(), Some(1), "{console}");
    let failed: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("FAILED"))
        .collect();
    assert_eq!(failed.len(), 1, "{console}");
    assert!(
        failed[0]
            .starts_with("FAILED chat::s1::q2: not replayed: query changed since the recording"),
        "{console}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0);

    // Replay what matches, record the misses: only s1 (whose last turn
    // changed) goes to the agent again, both its turns.
    let before = live.requests().len();
    let mixed = forge(
        root,
        &url,
        &["mixed", "--replay", "tapes", "--record", "tapes"],
    )
    .await;
    assert!(mixed.status.success(), "{}", text(&mixed));
    assert_eq!(
        live.requests().len() - before,
        2,
        "only s1's two turns are sent"
    );
    let replayed = forge(root, &offline, &["rep2", "--replay", "tapes"]).await;
    assert!(replayed.status.success(), "{}", text(&replayed));
    assert_eq!(connections.load(Ordering::SeqCst), 0);

    // A new session has no recording.
    let mut text_now = read(&root.join("chat.yaml"));
    text_now.push_str(
        "  - session_id: s3\n    assistant_id: bot\n    conversation: [{qa_id: q1, query: New}]\n",
    );
    std::fs::write(root.join("chat.yaml"), text_now).expect("write");
    let output = forge(root, &offline, &["rep3", "--replay", "tapes"]).await;
    assert!(
        text(&output).contains("FAILED chat::s3::q1: not replayed: no recording for session s3"),
        "{}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_turns_are_recorded_only_when_asked() {
    for record_errors in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        suite(root, "And of Spain?");
        // Every request is refused with 400: the turns fail at once.
        let live = TestServer::builder()
            .api_key(KEY)
            .fail_next(400, 100)
            .start()
            .await;
        let mut args = vec!["rec", "--record", "tapes"];
        if record_errors {
            args.push("--record-errors");
        }
        let recorded = forge(root, &format!("{}/v1", live.url()), &args).await;
        assert_eq!(recorded.status.code(), Some(1), "{}", text(&recorded));
        let cassette = read(&root.join("tapes/chat.cassette.json"));
        assert_eq!(cassette.contains("\"error\""), record_errors, "{cassette}");
        let (offline, _) = counting_listener();
        let replayed = forge(root, &offline, &["rep", "--replay", "tapes"]).await;
        let console = text(&replayed);
        assert_eq!(replayed.status.code(), Some(1), "{console}");
        assert_eq!(
            console.contains("not replayed"),
            !record_errors,
            "{console}"
        );
        if record_errors {
            assert_eq!(
                read(&root.join("rec/chat.json")),
                read(&root.join("rep/chat.json"))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_cassettes_are_errors_and_nothing_runs_live() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    suite(root, "And of Spain?");
    let live = server().await;
    let recorded = forge(
        root,
        &format!("{}/v1", live.url()),
        &["rec", "--record", "tapes"],
    )
    .await;
    assert!(recorded.status.success(), "{}", text(&recorded));
    let path = root.join("tapes/chat.cassette.json");
    let good = read(&path);
    let cases = [
        (good[..good.len() / 2].to_owned(), "chat.cassette.json:"),
        (
            good.replace("\"suite\": \"chat\"", "\"suite\": \"other\""),
            "the cassette of suite `other`, not of `chat`",
        ),
        (
            good.replace("\"forge_cassette\": 1", "\"forge_cassette\": 9"),
            "cassette format 9",
        ),
    ];
    let (offline, connections) = counting_listener();
    for (bad, needle) in cases {
        std::fs::write(&path, &bad).expect("write");
        for args in [
            vec!["rep", "--replay", "tapes"],
            vec!["rep", "--replay", "tapes", "--record", "tapes"],
        ] {
            let output = forge(root, &offline, &args).await;
            let console = text(&output);
            assert_eq!(output.status.code(), Some(1), "{console}");
            assert!(console.contains(needle), "{needle:?} not in {console}");
            assert!(console.contains("cannot replay"), "{console}");
        }
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a bad cassette ran live"
    );
    // A cassette that cannot be written fails the run.
    std::fs::write(root.join("blocked"), "a file, not a directory").expect("write");
    let url = format!("{}/v1", live.url());
    let blocked = forge(root, &url, &["rec2", "--record", "blocked"]).await;
    assert_eq!(blocked.status.code(), Some(1), "{}", text(&blocked));
    assert!(text(&blocked).contains("blocked"), "{}", text(&blocked));
    // The runner changed: every turn says so.
    std::fs::write(&path, &good).expect("write");
    let changed = read(&root.join("chat.yaml")).replace("model: m", "model: m2");
    std::fs::write(root.join("chat.yaml"), changed).expect("write");
    let output = forge(root, &offline, &["rep", "--replay", "tapes"]).await;
    assert!(
        text(&output).contains("the runner's configuration changed since the recording"),
        "{}",
        text(&output)
    );
}

/// A suite judged by an LLM judge (three votes) whose URL and key come
/// from the environment.
fn judged_suite(dir: &Path, truth: &str) {
    let text = format!(
        r#"name: judged
runner: {{type: echo}}
judge:
  base_url: ${{JUDGE_URL}}/v1
  api_key: ${{JUDGE_KEY}}
  model: judge-model
  votes: 3
expect: {{answer_correctness: 0.7}}
datasets:
  - session_id: facts
    assistant_id: bot
    conversation:
      - {{qa_id: right, query: The capital of France is Paris., ground_truth_assistant: Paris}}
      - {{qa_id: other, query: The capital of Spain is Madrid., ground_truth_assistant: {truth}}}
"#
    );
    std::fs::write(dir.join("judged.yaml"), text).expect("write suite");
}

async fn forge_judged(dir: &Path, judge_url: &str, args: &[&str]) -> std::process::Output {
    let env = [("JUDGE_URL", Some(judge_url)), ("JUDGE_KEY", Some(KEY))];
    forge_run(dir, "judged.yaml", &env, args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn judge_verdicts_replay_from_the_cassette_and_a_changed_prompt_is_a_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    judged_suite(root, "Madrid");
    let judge = TestServer::builder()
        .api_key(KEY)
        .judge(forge_testkit::judge::Judge::ground_truth())
        .start()
        .await;
    let recorded = forge_judged(root, &judge.url(), &["rec", "--record", "tapes"]).await;
    assert_eq!(recorded.status.code(), Some(0), "{}", text(&recorded));
    assert_eq!(judge.requests().len(), 6, "two turns, three votes each");
    judge.shutdown().await;
    let cassette = read(&root.join("tapes/judged.cassette.json"));
    assert_eq!(cassette.matches("\"vote\"").count(), 6, "{cassette}");
    assert!(!cassette.contains(KEY), "{cassette}");

    let (offline, connections) = counting_listener();
    let url = offline.trim_end_matches("/v1");
    let replayed = forge_judged(root, url, &["rep", "--replay", "tapes"]).await;
    assert_eq!(replayed.status.code(), Some(0), "{}", text(&replayed));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the replay asked the judge"
    );
    for report in ["judged.json", "junit.xml"] {
        assert_eq!(
            without_timestamps(&read(&root.join("rec").join(report))),
            without_timestamps(&read(&root.join("rep").join(report))),
            "{report} differs"
        );
    }
    assert!(read(&root.join("rep/judged.json")).contains("\"reason\""));

    // Another ground truth is another judge prompt: that check fails, saying why.
    judged_suite(root, "Madrid is the capital");
    let changed = forge_judged(root, url, &["rep2", "--replay", "tapes"]).await;
    let console = text(&changed);
    assert_eq!(changed.status.code(), Some(1), "{console}");
    assert!(
        console.contains("FAILED judged::facts::other: check `answer_correctness` failed")
            && console.contains("not replayed: no recording of this judge request"),
        "{console}"
    );
    assert!(!console.contains("judged::facts::right"), "{console}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the replay asked the judge"
    );
}
