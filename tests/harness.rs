//! End-to-end tests of the compiled harness: suites written to a temporary
//! directory, run by the same one-line `main` a user's test target holds,
//! checked through its output, its exit status and the files it writes.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use forge_testkit::process::{is_dead, read_pid, wait_until, Reap, Spawned};

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(suites: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("suites")).expect("suites dir");
        for (name, text) in suites {
            std::fs::write(dir.path().join("suites").join(name), text).expect("write suite");
        }
        Project { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_forge-harness"))
            .env("FORGE_SUITES_DIR", self.dir.path().join("suites"))
            .env("FORGE_OUT_DIR", self.out())
            .args(args)
            .output()
            .expect("run the harness")
    }

    fn report(&self, suite: &str) -> Value {
        let path = self.out().join(format!("{suite}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("report is JSON")
    }
}

/// The outcome libtest printed for `test` ("ok", "FAILED", "ignored").
fn outcome<'a>(text: &'a str, test: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("test ")?;
        let (name, result) = rest.split_once(" ... ")?;
        (name.trim_end() == test).then_some(result.trim())
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const CHAT: &str = r#"
name: chat
runner:
  type: echo
  template: "turn {turn}: {query}"
datasets:
  - session_id: s1
    assistant_id: bot
    conversation:
      - {qa_id: t1, query: hello}
      - {qa_id: t2, query: how are you}
      - {qa_id: t3, query: bye}
  - session_id: s2
    assistant_id: bot
    conversation:
      - {qa_id: only, query: alone}
"#;

const FLAKY: &str = r#"
runner:
  type: replay
  answers: {good: "fine"}
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: good, query: q1}
      - {qa_id: missing, query: q2}
"#;

#[test]
fn passing_suites_exit_zero_and_write_reports() {
    let project = Project::new(&[("chat.yaml", CHAT)]);
    let output = project.run(&[]);
    assert!(output.status.success(), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(outcome(&text, "chat::s1::t3") == Some("ok"), "{text}");
    assert!(text.contains("4 passed; 0 failed"), "{text}");

    let report = project.report("chat");
    assert_eq!(report["success"], true);
    assert_eq!(report["total_datasets"], 2);
    let answers: Vec<&str> = report["datasets"][0]["conversation"]
        .as_array()
        .expect("conversation")
        .iter()
        .map(|b| b["assistant"].as_str().expect("answer"))
        .collect();
    assert_eq!(
        answers,
        ["turn 1: hello", "turn 2: how are you", "turn 3: bye"]
    );
    assert_eq!(report["summaries"][0]["total_batches"], 3);
    assert_eq!(report["summaries"][0]["successes"], 3);

    let junit = std::fs::read_to_string(project.out().join("junit.xml")).expect("junit");
    assert!(
        junit.contains(r#"<testsuite name="chat" tests="4""#),
        "{junit}"
    );
    assert!(
        junit.contains(r#"<testcase name="s1::t2" classname="chat""#),
        "{junit}"
    );
}

#[test]
fn a_failing_batch_exits_101_and_is_reported_everywhere() {
    let project = Project::new(&[("flaky.yaml", FLAKY)]);
    let output = project.run(&[]);
    assert_eq!(output.status.code(), Some(101));
    let text = stdout(&output);
    assert!(
        outcome(&text, "flaky::s::missing") == Some("FAILED"),
        "{text}"
    );
    assert!(
        text.contains("no recorded answer for qa_id \"missing\""),
        "{text}"
    );
    assert!(text.contains("1 passed; 1 failed"), "{text}");

    let report = project.report("flaky");
    let failed = &report["datasets"][0]["conversation"][1];
    assert_eq!(
        failed["assistant"],
        "[ERROR] no recorded answer for qa_id \"missing\""
    );
    assert_eq!(
        failed["observation"],
        "no recorded answer for qa_id \"missing\""
    );
    assert_eq!(report["summaries"][0]["failures"], 1);
    assert_eq!(report["summaries"][0]["successes"], 1);

    let junit = std::fs::read_to_string(project.out().join("junit.xml")).expect("junit");
    assert!(junit.contains(r#"failures="1""#), "{junit}");
    assert!(junit.contains("no recorded answer"), "{junit}");
}

#[test]
fn list_is_sorted_and_runs_nothing() {
    let project = Project::new(&[("chat.yaml", CHAT), ("flaky.yaml", FLAKY)]);
    let output = project.run(&["--list"]);
    assert!(output.status.success());
    let lines: Vec<String> = stdout(&output)
        .lines()
        .filter(|l| l.ends_with(": test"))
        .map(str::to_owned)
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert_eq!(lines.len(), 6);
    assert!(lines.contains(&"chat::s1::t1: test".to_owned()));
    assert!(!project.out().exists(), "--list wrote reports");
}

#[test]
fn a_selected_batch_runs_after_its_earlier_turns_and_other_sessions_are_untouched() {
    let project = Project::new(&[("chat.yaml", CHAT)]);
    let output = project.run(&["--exact", "chat::s1::t3"]);
    assert!(output.status.success(), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(
        text.contains("1 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out"),
        "{text}"
    );
    assert!(
        !text.contains("chat::s1::t1"),
        "earlier turns are not reported: {text}"
    );

    let report = project.report("chat");
    assert_eq!(report["total_datasets"], 1, "session s2 was contacted");
    let conversation = report["datasets"][0]["conversation"]
        .as_array()
        .expect("turns");
    assert_eq!(conversation.len(), 3);
    assert_eq!(conversation[2]["assistant"], "turn 3: bye");

    let output = project.run(&["s1::t2", "--skip", "t1"]);
    let text = stdout(&output);
    assert!(outcome(&text, "chat::s1::t2") == Some("ok"), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    let report = project.report("chat");
    assert_eq!(
        report["datasets"][0]["conversation"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn ignored_batches_and_datasets() {
    let suite = r#"
runner: {type: echo}
datasets:
  - session_id: a
    assistant_id: bot
    conversation:
      - {qa_id: run, query: x}
      - {qa_id: skipped, query: y, ignore: true}
  - session_id: b
    assistant_id: bot
    ignore: true
    conversation:
      - {qa_id: one, query: z}
"#;
    let project = Project::new(&[("ign.yaml", suite)]);
    let text = stdout(&project.run(&[]));
    assert!(text.contains("1 passed; 0 failed; 2 ignored"), "{text}");
    let text = stdout(&project.run(&["--ignored"]));
    assert!(text.contains("2 passed; 0 failed; 0 ignored"), "{text}");
    let text = stdout(&project.run(&["--include-ignored", "--test-threads", "1"]));
    assert!(text.contains("3 passed; 0 failed; 0 ignored"), "{text}");
    let text = stdout(&project.run(&["--format", "terse"]));
    assert!(text.contains("test result: ok. 1 passed"), "{text}");
    // Machine-readable output: every line is a JSON event.
    let text = stdout(&project.run(&["--format", "json"]));
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(events
        .iter()
        .any(|e| e["name"] == "ign::a::run" && e["event"] == "ok"));
    assert!(events
        .iter()
        .any(|e| e["name"] == "ign::a::skipped" && e["event"] == "ignored"));
}

#[test]
fn a_broken_suite_fails_loudly_with_its_location_and_the_others_still_run() {
    let broken = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - qa_id: q\n        qurey: hi\n";
    let project = Project::new(&[("broken.yaml", broken), ("chat.yaml", CHAT)]);
    let output = project.run(&[]);
    assert_eq!(output.status.code(), Some(101));
    let text = stdout(&output);
    assert!(outcome(&text, "broken::load") == Some("FAILED"), "{text}");
    assert!(text.contains("broken.yaml:7:9"), "{text}");
    assert!(
        text.contains("unknown key `qurey`, did you mean `query`?"),
        "{text}"
    );
    assert!(text.contains("4 passed; 1 failed"), "{text}");
}

#[test]
fn duplicate_and_invalid_suite_names_fail_and_reach_junit() {
    let same = "name: same\nrunner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation: [{qa_id: q, query: hi}]\n";
    let bad = "name: ../escape\nrunner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation: [{qa_id: q, query: hi}]\n";
    let project = Project::new(&[
        ("a.yaml", same),
        ("b.yaml", same),
        ("c.yaml", same),
        ("d.yaml", bad),
    ]);
    let output = project.run(&[]);
    assert_eq!(output.status.code(), Some(101));
    let text = stdout(&output);
    assert_eq!(outcome(&text, "same::s::q"), Some("ok"), "{text}");
    assert_eq!(outcome(&text, "b::load"), Some("FAILED"), "{text}");
    assert_eq!(outcome(&text, "c::load"), Some("FAILED"), "{text}");
    assert!(text.contains("duplicate suite name \"same\""), "{text}");
    assert_eq!(outcome(&text, "d::load"), Some("FAILED"), "{text}");
    assert!(text.contains("invalid suite name \"../escape\""), "{text}");
    let junit = std::fs::read_to_string(project.out().join("junit.xml")).expect("junit");
    for stem in ["b", "c", "d"] {
        assert!(
            junit.contains(&format!(r#"<testsuite name="{stem}" tests="1""#)),
            "{junit}"
        );
    }
    assert!(!project.out().join("../escape.json").exists());
}

#[test]
fn a_missing_suites_directory_fails_as_forge_suites() {
    let project = Project::new(&[]);
    let output = Command::new(env!("CARGO_BIN_EXE_forge-harness"))
        .env("FORGE_SUITES_DIR", project.dir.path().join("no-such-dir"))
        .env("FORGE_OUT_DIR", project.out())
        .output()
        .expect("run the harness");
    assert_eq!(output.status.code(), Some(101));
    let text = stdout(&output);
    assert_eq!(outcome(&text, "forge::suites"), Some("FAILED"), "{text}");
    assert!(text.contains("no-such-dir: cannot read"), "{text}");
}

#[test]
fn an_empty_suites_directory_fails() {
    let project = Project::new(&[]);
    let output = project.run(&[]);
    assert_eq!(output.status.code(), Some(101));
    assert!(
        stdout(&output).contains("no suite file found"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn an_invalid_regex_or_schema_is_a_load_error_with_its_location() {
    let regex = "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - qa_id: q\n        query: hi\n        expect: {regex: '(oops'}\n";
    let schema = "runner: {type: echo}\nexpect:\n  is_json: {schema: {type: 12}}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation: [{qa_id: q, query: hi}]\n";
    let project = Project::new(&[("regex.yaml", regex), ("schema.yaml", schema)]);
    let text = stdout(&project.run(&[]));
    assert_eq!(outcome(&text, "regex::load"), Some("FAILED"), "{text}");
    assert!(text.contains("regex.yaml:8:25"), "{text}");
    assert!(text.contains("invalid regex"), "{text}");
    assert_eq!(outcome(&text, "schema::load"), Some("FAILED"), "{text}");
    assert!(text.contains("schema.yaml:3:"), "{text}");
    assert!(text.contains("invalid JSON Schema"), "{text}");
}

/// Runs the harness on another thread so the test's runtime keeps serving.
async fn run_blocking(project: &Project, args: &[&str], key: &str, url: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge-harness"));
    command
        .env("FORGE_SUITES_DIR", project.dir.path().join("suites"))
        .env("FORGE_OUT_DIR", project.out())
        .env("AGENT_KEY", key)
        .env("AGENT_URL", url)
        .args(args);
    tokio::task::spawn_blocking(move || command.output().expect("run the harness"))
        .await
        .expect("join")
}

const AGENT: &str = r#"
name: agent
runner:
  type: alquimia
  base_url: ${AGENT_URL}
  api_key: ${AGENT_KEY}
  agent_id: bot
  channel_id: web
concurrency: 2
datasets:
  - session_id: s1
    assistant_id: bot
    conversation:
      - {qa_id: t1, query: first, expect: {contains: "'first'"}}
      - {qa_id: t2, query: second}
      - {qa_id: t3, query: "fails #500"}
  - session_id: s2
    assistant_id: bot
    conversation:
      - {qa_id: only, query: alone}
  - session_id: s3
    assistant_id: bot
    conversation:
      - {qa_id: leak, query: "repeat sekret-key-123", expect: {equals: nope}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_harness_against_the_loopback_alquimia_server() {
    use forge_testkit::TestServer;
    let server = TestServer::builder()
        .api_key("sekret-key-123")
        .start()
        .await;
    let project = Project::new(&[("agent.yaml", AGENT)]);

    // --list never touches the network.
    let output = run_blocking(&project, &["--list"], "sekret-key-123", &server.url()).await;
    assert!(output.status.success());
    assert_eq!(server.requests().len(), 0, "--list sent requests");

    // One selected batch: its earlier turns run first, unreported; session s2
    // is never contacted.
    let output = run_blocking(
        &project,
        &["--exact", "agent::s1::t2"],
        "sekret-key-123",
        &server.url(),
    )
    .await;
    assert!(output.status.success(), "{}", stdout(&output));
    assert_eq!(server.turns("s1"), ["first", "second"]);
    assert!(server.turns("s2").is_empty());

    // The whole suite: the #500 turn fails, the rest pass, exit 101.
    let output = run_blocking(&project, &[], "sekret-key-123", &server.url()).await;
    assert_eq!(output.status.code(), Some(101));
    let text = stdout(&output);
    assert_eq!(outcome(&text, "agent::s1::t1"), Some("ok"), "{text}");
    assert_eq!(outcome(&text, "agent::s1::t3"), Some("FAILED"), "{text}");
    assert_eq!(outcome(&text, "agent::s3::leak"), Some("FAILED"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(
        !text.contains("sekret-key-123"),
        "the harness output leaks the key: {text}"
    );
    assert!(text.contains("HTTP 500"), "{text}");
    // Turns the server accepted; the #500 one was refused, once (the suite
    // sets no `retries`).
    assert_eq!(server.turns("s1"), ["first", "second", "first", "second"]);
    let refused = server
        .requests()
        .iter()
        .filter(|r| r.query.as_deref() == Some("fails #500"))
        .count();
    assert_eq!(refused, 1);
    assert_eq!(server.turns("s2"), ["alone"]);

    let report = project.report("agent");
    assert_eq!(report["summaries"][0]["successes"], 2);
    assert_eq!(report["summaries"][0]["failures"], 1);
    assert_eq!(
        report["datasets"][0]["conversation"][1]["assistant"],
        forge_testkit::alquimia_answer("second", 4, "s1"),
        "the server counts turns across both runs of s1"
    );
    for file in ["agent.json", "junit.xml"] {
        let text = std::fs::read_to_string(project.out().join(file)).expect("report");
        assert!(!text.contains("sekret-key-123"), "{file} leaks the key");
    }
    server.shutdown().await;
}

/// The harness running in the background on `project`'s suites.
fn start_harness(project: &Project, env: &[(&str, &str)]) -> Spawned {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge-harness"));
    command
        .env("FORGE_SUITES_DIR", project.dir.path().join("suites"))
        .env("FORGE_OUT_DIR", project.out())
        .envs(env.iter().copied());
    Spawned::start(command)
}

const SLOW: &str = r#"
name: slow
runner:
  type: alquimia
  base_url: ${AGENT_URL}
  api_key: ${AGENT_KEY}
  agent_id: bot
  channel_id: web
concurrency: 2
timeout: 30s
datasets:
  - session_id: s1
    assistant_id: bot
    conversation: [{qa_id: t1, query: a1}, {qa_id: t2, query: a2}, {qa_id: t3, query: a3}, {qa_id: t4, query: a4}]
  - session_id: s2
    assistant_id: bot
    conversation: [{qa_id: t1, query: b1}, {qa_id: t2, query: b2}, {qa_id: t3, query: b3}, {qa_id: t4, query: b4}]
  - session_id: s3
    assistant_id: bot
    conversation: [{qa_id: t1, query: c1}, {qa_id: t2, query: c2}, {qa_id: t3, query: c3}, {qa_id: t4, query: c4}]
"#;

const INTERRUPTED: &str = "run interrupted before this turn was sent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_the_harness_and_writes_partial_reports_of_this_run() {
    use forge_testkit::TestServer;
    // 12 turns of 1 s, 2 sessions at once: the whole run would take 6 s.
    let server = TestServer::builder()
        .latency(std::time::Duration::from_secs(1))
        .start()
        .await;
    let project = Project::new(&[("slow.yaml", SLOW)]);
    // The reports of an earlier run, which must not survive this one.
    std::fs::create_dir_all(project.out()).expect("out dir");
    std::fs::write(project.out().join("junit.xml"), "<stale/>").expect("stale junit");
    std::fs::write(project.out().join("slow.json"), r#"{"stale": true}"#).expect("stale json");

    let url = server.url();
    let running = start_harness(
        &project,
        &[
            ("AGENT_URL", url.as_str()),
            ("AGENT_KEY", TestServer::DEFAULT_API_KEY),
        ],
    );
    wait_until("the first turn", || server.turns_started() >= 1).await;
    running.signal("TERM");
    let (status, stdout, stderr) = running.exit().await;
    assert_eq!(status.code(), Some(101), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("interrupted; partial reports written"),
        "{stderr}"
    );

    let report = project.report("slow");
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(report["total_datasets"], 3);
    let mut statuses = Vec::new();
    for dataset in report["datasets"].as_array().expect("datasets") {
        let turns = dataset["conversation"].as_array().expect("turns");
        assert_eq!(turns.len(), 4, "every turn is recorded: {dataset}");
        for turn in turns {
            statuses.push(turn["assistant"].as_str().expect("answer").to_owned());
        }
    }
    let interrupted = statuses
        .iter()
        .filter(|a| a.as_str() == format!("[ERROR] {INTERRUPTED}"))
        .count();
    let answered = statuses
        .iter()
        .filter(|a| !a.starts_with("[ERROR]"))
        .count();
    assert!(answered >= 1, "the turn in flight finished: {statuses:?}");
    assert!(interrupted >= 1, "the run stopped early: {statuses:?}");
    assert_eq!(answered + interrupted, 12, "{statuses:?}");
    let accepted: usize = ["s1", "s2", "s3"]
        .iter()
        .map(|s| server.turns(s).len())
        .sum();
    assert_eq!(accepted, answered, "every accepted turn is in the report");

    let junit = std::fs::read_to_string(project.out().join("junit.xml")).expect("junit");
    let parsed = quick_junit::Report::deserialize_from_str(&junit)
        .unwrap_or_else(|e| panic!("junit.xml is not valid: {e}\n{junit}"));
    let suite = parsed
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == "slow")
        .expect("the suite in junit.xml");
    assert_eq!(suite.tests, 12);
    assert_eq!(suite.failures, interrupted);
    assert!(junit.contains(INTERRUPTED), "{junit}");
    // libtest saw the interrupted batches fail.
    assert!(
        stdout.contains(&format!("{} failed", interrupted)),
        "{stdout}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_the_harness_at_once_and_kills_its_programs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile = dir.path().join("pid");
    let suite = format!(
        "name: stuck\nrunner:\n  type: command\n  program: sh\n  args: [-c, \"sleep 1000 & echo $! > '{}'; wait\"]\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation: [{{qa_id: q1, query: hi}}]\n",
        pidfile.display()
    );
    let project = Project::new(&[("stuck.yaml", &suite)]);
    let mut running = start_harness(&project, &[]);
    wait_until("the program's pid", || read_pid(&pidfile).is_some()).await;
    let pid = read_pid(&pidfile).expect("pid");
    let _reap = Reap(Some(pid.clone()));
    running.signal("INT");
    running.wait_for_line("stopping").await;
    assert!(!is_dead(&pid), "the first signal lets the turn go on");
    running.signal("TERM");
    let (status, stdout, stderr) = running.exit().await;
    assert_eq!(status.code(), Some(130), "{stdout}\n{stderr}");
    wait_until("the program's child to die", || is_dead(&pid)).await;
}
