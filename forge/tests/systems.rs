//! Several systems side by side (`runners:`), through the real `forge`
//! binary: two different agents on loopback test servers (an `openai`
//! chat model and an `http` JSON agent, each with its own key) and a
//! judge; and offline `echo` systems. Test names
//! `<suite>::<system>::<session>::<qa_id>`, one `<suite>.<system>.json`
//! per system equal (field by field, timings aside) to what a one-`runner:`
//! suite of that system writes, one JUnit `<testsuite>` per system, the
//! scoreboard, each key sent only to its own system's server (and every
//! system's keys redacted from every report), the systems' sessions in
//! flight together, filters, partition + merge equal to the whole run,
//! one cassette per system replayed offline, and located load errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_testkit::judge::{verdict, Judge, JudgeReply};
use forge_testkit::process::Spawned;
use forge_testkit::reports::{assert_same_json, assert_same_reports, json_report};
use forge_testkit::TestServer;
use serde_json::{json, Value};

const CHAT_KEY: &str = "chat-system-key-0001";
const AGENT_KEY: &str = "agent-system-key-0002";

/// The `openai` system's keys (without its `name`).
const CHAT: &str = r#"type: openai, base_url: "${CHAT_URL}/v1", api_key: "${CHAT_KEY}", model: m"#;
/// The `http` system's keys.
const AGENT: &str = r#"type: http, url: "${AGENT_URL}/agent", headers: {Authorization: "Bearer ${AGENT_KEY}"}, answer: /text"#;
/// The chat system's price.
const PRICE: &str = "{input_per_mtok: 1, output_per_mtok: 2}";

/// The suite `compare` with `systems` (a `runner:` or a `runners:` list),
/// a judge, and two sessions of two turns.
fn suite(systems: &str) -> String {
    format!(
        r#"name: compare
{systems}judge: {{base_url: "${{JUDGE_URL}}/v1", api_key: "${{JUDGE_KEY}}", model: judge}}
expect: {{contains: answer to}}
datasets:
  - session_id: s1
    assistant_id: bot
    conversation:
      - qa_id: q1
        query: What is the capital of France?
        ground_truth_assistant: Paris
        expect: {{answer_correctness: 0.5}}
      - {{qa_id: q2, query: And of Italy?}}
  - session_id: s2
    assistant_id: bot
    conversation:
      - {{qa_id: q1, query: Hello}}
      - {{qa_id: q2, query: Goodbye}}
"#
    )
}

fn both() -> String {
    suite(&format!(
        "runners:\n  - {{name: chat, {CHAT}, price: {PRICE}}}\n  - {{name: agent, {AGENT}}}\n"
    ))
}

/// The servers of the two systems and the judge.
struct Servers {
    chat: TestServer,
    agent: TestServer,
    judge: TestServer,
}

/// The servers; the agent's answers hold `leak` when given.
async fn servers(leak: Option<&'static str>) -> Servers {
    let agent = move |body: &Value| {
        let query = body["query"].as_str().unwrap_or_default();
        json!({"text": format!("the agent says {query}{}", leak.unwrap_or_default())})
    };
    Servers {
        chat: TestServer::builder().api_key(CHAT_KEY).start().await,
        agent: TestServer::builder()
            .api_key(AGENT_KEY)
            .agent(agent)
            .start()
            .await,
        judge: TestServer::builder()
            .judge(Judge::new(|_| JudgeReply::content(verdict(1.0, "right"))))
            .start()
            .await,
    }
}

/// One `forge` command's exit code and output.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `forge ARGS` in `dir`, the servers' URLs and keys in the environment
/// (none without servers: an offline replay).
async fn forge(dir: &Path, args: &[&str], servers: Option<&Servers>) -> Run {
    forge_env(dir, args, servers, &[]).await
}

/// [`forge`] with more environment variables.
async fn forge_env(
    dir: &Path,
    args: &[&str],
    servers: Option<&Servers>,
    env: &[(&str, &str)],
) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied());
    for var in [
        "FORGE_JUDGE_BASE_URL",
        "FORGE_OUT_DIR",
        "FORGE_PARTITION",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ] {
        command.env_remove(var);
    }
    if let Some(servers) = servers {
        command
            .env("CHAT_URL", servers.chat.url())
            .env("CHAT_KEY", CHAT_KEY)
            .env("AGENT_URL", servers.agent.url())
            .env("AGENT_KEY", AGENT_KEY)
            .env("JUDGE_URL", servers.judge.url())
            .env("JUDGE_KEY", TestServer::DEFAULT_API_KEY);
    }
    let (status, stdout, stderr) = Spawned::start(command).exit().await;
    Run {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Writes `text` as `dir/name` and returns `dir`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::write(dir.join(name), text).expect("write suite");
    dir.to_owned()
}

/// A report with its test names as a one-`runner:` suite names them.
fn as_single(report: Value, system: &str) -> Value {
    let text = report
        .to_string()
        .replace(&format!("compare::{system}::"), "compare::");
    serde_json::from_str(&text).expect("JSON")
}

/// Every file under `dir`, as text.
fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&all_text(&path));
        } else {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_systems_report_is_the_report_of_a_suite_of_that_system_alone() {
    let servers = servers(None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = write(dir.path(), "compare.yaml", &both());
    let run = forge(
        &dir,
        &["run", "compare.yaml", "--out", "both"],
        Some(&servers),
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("4 passed, 4 failed"),
        "{}",
        run.stdout
    );
    for (s, q) in [("s1", "q1"), ("s1", "q2"), ("s2", "q1"), ("s2", "q2")] {
        assert!(
            run.stderr.contains(&format!(
                "FAILED compare::agent::{s}::{q}: check `contains`"
            )),
            "{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains("FAILED compare::chat::"),
        "{}",
        run.stderr
    );

    // The scoreboard: a line per system, cost where a price applies.
    let board: Vec<&str> = run
        .stderr
        .lines()
        .skip_while(|l| *l != "forge: compare, system by system:")
        .collect();
    assert!(board.len() >= 3, "{}", run.stderr);
    assert!(
        board[1].starts_with("  chat   4 passed  0 failed  p50 "),
        "{}",
        board[1]
    );
    assert!(board[1].contains(" ms  cost $"), "{}", board[1]);
    assert!(
        board[2].starts_with("  agent  0 passed  4 failed  p50 "),
        "{}",
        board[2]
    );
    assert!(!board[2].contains("cost"), "{}", board[2]);

    // One report per system, each what a suite of that system alone writes.
    let out = dir.join("both");
    assert!(!out.join("compare.json").exists());
    write(
        &dir,
        "chat.yaml",
        &suite(&format!("runner: {{{CHAT}}}\nprice: {PRICE}\n")),
    );
    write(
        &dir,
        "agent.yaml",
        &suite(&format!("runner: {{{AGENT}}}\n")),
    );
    for system in ["chat", "agent"] {
        let alone = format!("{system}-alone");
        let file = format!("{system}.yaml");
        let single = forge(&dir, &["run", &file, "--out", &alone], Some(&servers)).await;
        assert_eq!(single.code, Some(if system == "chat" { 0 } else { 1 }));
        let want = json_report(&dir.join(&alone).join("compare.json"));
        let got = as_single(
            json_report(&out.join(format!("compare.{system}.json"))),
            system,
        );
        assert_same_json(&want, &got, &format!("compare.{system}.json"));
        assert!(got["checks"].as_array().is_some_and(|rows| rows.len() == 4));
    }

    // JUnit: a <testsuite> per system, its cases named as in a suite alone.
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit");
    let doc = roxmltree::Document::parse(&junit).expect("XML");
    let suites: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let names: Vec<_> = suites.iter().filter_map(|s| s.attribute("name")).collect();
    assert_eq!(names, ["compare::chat", "compare::agent"]);
    for (suite, failures) in suites.iter().zip(["0", "4"]) {
        assert_eq!(suite.attribute("tests"), Some("4"));
        assert_eq!(suite.attribute("failures"), Some(failures));
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .map(|c| (c.attribute("name"), c.attribute("classname")))
            .collect();
        let class = suite.attribute("name");
        assert_eq!(
            cases,
            ["s1::q1", "s1::q2", "s2::q1", "s2::q2"].map(|n| (Some(n), class))
        );
    }
    assert_eq!(junit.matches("forge.runner.cost_usd").count(), 1, "{junit}");

    // Each key went to its own system's server only; the judge got its own.
    for (server, key) in [
        (&servers.chat, CHAT_KEY),
        (&servers.agent, AGENT_KEY),
        (&servers.judge, TestServer::DEFAULT_API_KEY),
    ] {
        let requests = server.requests();
        assert!(!requests.is_empty());
        for request in requests {
            assert_eq!(
                request.authorization(),
                Some(format!("Bearer {key}").as_str())
            );
        }
    }
    let written = all_text(&out);
    for key in [CHAT_KEY, AGENT_KEY] {
        assert!(!written.contains(key) && !run.stderr.contains(key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_systems_keys_are_redacted_from_every_systems_reports() {
    // The agent leaks the chat system's key in its answers.
    let servers = servers(Some(" (chat-system-key-0001)")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = write(dir.path(), "compare.yaml", &both());
    let run = forge(
        &dir,
        &["run", "compare.yaml", "--out", "out"],
        Some(&servers),
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let agent = std::fs::read_to_string(dir.join("out/compare.agent.json")).expect("report");
    assert!(
        agent.contains("the agent says Hello ([REDACTED])"),
        "{agent}"
    );
    assert!(!all_text(&dir.join("out")).contains(CHAT_KEY));
    assert!(!run.stderr.contains(CHAT_KEY), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systems_sessions_are_in_flight_together() {
    // The server answers only once two turns wait: one system at a time
    // (concurrency 1 each) would time out.
    let server = TestServer::builder()
        .without_auth()
        .answer_in_groups(2)
        .start()
        .await;
    let url = server.url();
    let text = format!(
        "name: together\nconcurrency: 1\ntimeout: 20s\nrunners:\n  - {{name: one, type: openai, base_url: '{url}/v1', api_key: '', model: one}}\n  - {{name: two, type: openai, base_url: '{url}/v1', api_key: '', model: two}}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation: [{{qa_id: q, query: hi}}]\n"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = write(dir.path(), "together.yaml", &text);
    let run = forge(&dir, &["run", "together.yaml", "--out", "out"], None).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("2 passed, 0 failed"),
        "{}",
        run.stdout
    );
    let models: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| Some(r.body.as_ref()?["model"].as_str()?.to_owned()))
        .collect();
    assert_eq!(models.len(), 2);
    assert!(models.contains(&"one".to_owned()) && models.contains(&"two".to_owned()));
}

/// Two offline systems (echo, one shouting), `repeat` on a dataset, a
/// failing check on some sessions.
fn offline(dir: &Path) -> PathBuf {
    let mut text = "name: duo\nrunners:\n  - {name: plain, type: echo}\n  - {name: loud, type: echo, template: 'LOUD {query}'}\nexpect: {contains: LOUD}\ndatasets:\n".to_owned();
    for s in 0..6 {
        text.push_str(&format!(
            "  - session_id: s{s}\n    assistant_id: bot\n{}    conversation:\n      - {{qa_id: q1, query: one {s}}}\n      - {{qa_id: q2, query: two {s}}}\n",
            if s == 2 { "    repeat: 2\n" } else { "" }
        ));
    }
    write(dir, "duo.yaml", &text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_systems_and_shards_merge_into_the_whole_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = offline(dir.path());
    let whole = forge(
        &dir,
        &["run", "duo.yaml", "--quiet", "--out", "whole"],
        None,
    )
    .await;
    assert_eq!(whole.code, Some(1), "{}", whole.stderr);
    assert!(
        whole.stdout.starts_with("12 passed, 12 failed"),
        "{}",
        whole.stdout
    );
    assert!(whole
        .stderr
        .contains("FAILED duo::plain::s2::q1: 0 of 2 runs passed"));

    let filtered = [
        "run", "duo.yaml", "--quiet", "--out", "whole", "--filter", "::loud::",
    ];
    let run = forge(&dir, &filtered, None).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("12 passed, 0 failed"),
        "{}",
        run.stdout
    );
    assert!(dir.join("whole/duo.loud.json").is_file());
    assert!(!dir.join("whole/duo.plain.json").exists(), "swept: not run");
    let whole = forge(
        &dir,
        &["run", "duo.yaml", "--quiet", "--out", "whole"],
        None,
    )
    .await;
    assert_eq!(whole.code, Some(1));

    for (mode, n) in [("hash", 2), ("count", 3)] {
        let mut inputs = Vec::new();
        for m in 1..=n {
            let out = format!("{mode}-{m}");
            let spec = format!("{mode}:{m}/{n}");
            let args = [
                "run",
                "duo.yaml",
                "--quiet",
                "--out",
                &out,
                "--partition",
                &spec,
            ];
            let shard = forge(&dir, &args, None).await;
            assert!(matches!(shard.code, Some(0 | 1)), "{}", shard.stderr);
            inputs.push(out);
        }
        let merged = format!("{mode}-merged");
        let mut args = vec!["merge", "--out", &merged];
        args.extend(inputs.iter().map(String::as_str));
        let n = n.to_string();
        args.extend(["--expect", &n]);
        let merge = forge(&dir, &args, None).await;
        assert_eq!(merge.code, Some(1), "{}", merge.stderr);
        assert_eq!(merge.stdout, "12 passed, 12 failed\n");
        assert_same_reports(&dir.join("whole"), &dir.join(&merged));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_system_records_its_own_cassette_and_replays_offline() {
    let servers = servers(None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = write(dir.path(), "compare.yaml", &both());
    let args = ["run", "compare.yaml", "--out", "live", "--record", "tapes"];
    let live = forge(&dir, &args, Some(&servers)).await;
    assert_eq!(live.code, Some(1), "{}", live.stderr);
    for system in ["chat", "agent"] {
        let tape =
            std::fs::read_to_string(dir.join(format!("tapes/compare.{system}.cassette.json")))
                .expect("a cassette per system");
        let tape: Value = serde_json::from_str(&tape).expect("JSON");
        assert_eq!(tape["suite"], format!("compare.{system}"));
        assert_eq!(tape["sessions"].as_array().map(Vec::len), Some(2));
    }
    assert!(!dir.join("tapes/compare.cassette.json").exists());
    let tapes = all_text(&dir.join("tapes"));
    assert!(!tapes.contains(CHAT_KEY) && !tapes.contains(AGENT_KEY));
    let sent = servers.chat.requests().len() + servers.agent.requests().len();

    // No system URL, no key, nothing sent: the same reports (the judge's
    // replies replay too; its URL goes nowhere).
    let args = [
        "run",
        "compare.yaml",
        "--out",
        "replayed",
        "--replay",
        "tapes",
    ];
    let judge = [
        ("JUDGE_URL", "http://127.0.0.1:9"),
        ("JUDGE_KEY", "judge-key-unused"),
    ];
    let replayed = forge_env(&dir, &args, None, &judge).await;
    assert_eq!(replayed.code, Some(1), "{}", replayed.stderr);
    assert_eq!(
        servers.chat.requests().len() + servers.agent.requests().len(),
        sent
    );
    assert_same_reports(&dir.join("live"), &dir.join("replayed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_in_runners_are_located_load_errors() {
    let datasets = "datasets:\n  - session_id: s\n    assistant_id: bot\n    conversation: [{qa_id: q, query: hi}]\n";
    let cases = [
        (
            "runner: {type: echo}\nruners: []\n",
            "e.yaml:2:1: unknown key `runers`, did you mean `runners`?",
        ),
        (
            "runner: {type: echo}\nrunners:\n  - {name: a, type: echo}\n",
            "e.yaml:2:1: give `runner:` (one system) or `runners:` (several, side by side), not both",
        ),
        (
            "name: e\n",
            "e.yaml:1:1: missing `runner:`, the system under test (or `runners:`, a list of named systems to compare)",
        ),
        (
            "name: e\nrunners: []\n",
            "e.yaml:2:1: `runners` lists 0 systems: list 1 to 64, each `- name: ...` with its runner's keys",
        ),
        (
            "runners:\n  - {type: echo}\n",
            "e.yaml:2:5: every entry of `runners` needs a `name:` (it becomes test names and report file names)",
        ),
        (
            "runners:\n  - {name: a, type: echo}\n  - {name: a, type: echo}\n",
            "e.yaml:3:12: duplicate system name \"a\": the names in `runners` are unique",
        ),
        (
            "runners:\n  - {name: a.b, type: echo}\n",
            "e.yaml:2:12: invalid system name \"a.b\": use 1 to 64 letters, digits, `-` and `_` (it becomes test names and report file names)",
        ),
        (
            "runners:\n  - name: a\n    type: echo\n  - name: b\n    type: echo\n    templat: x\n",
            "e.yaml:6:5: runner `echo`: unknown key `templat`, did you mean `template`? (expected one of `template`, `delay_ms`)",
        ),
        (
            "runners:\n  - name: a\n    type: echo\n    price: {input_per_mtok: -1, output_per_mtok: 0}\n",
            "e.yaml:4:5: `price.input_per_mtok` -1 must be a number of USD per million tokens, 0 or more",
        ),
        (
            "runners:\n  - name: a\n    type: echo\n  - name: b\n    type: openai\n    base_url: ${UNSET_SYSTEM_URL}\n    model: m\n",
            "e.yaml:6:15: environment variable UNSET_SYSTEM_URL is not set",
        ),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    for (systems, message) in cases {
        write(dir.path(), "e.yaml", &format!("{systems}{datasets}"));
        let run = forge(dir.path(), &["run", "e.yaml", "--out", "out"], None).await;
        assert_eq!(run.code, Some(2), "{systems}: {}", run.stderr);
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("forge: {message}")), "{first}");
        let junit = std::fs::read_to_string(dir.path().join("out/junit.xml")).expect("junit");
        assert!(junit.contains("classname=\"e\""), "{junit}");
    }

    // A report name another file takes: that file fails whole.
    let dir = tempfile::tempdir().expect("temp dir");
    let duo = "name: x\nrunners:\n  - {name: a, type: echo}\n  - {name: b, type: echo}\n";
    write(dir.path(), "1.yaml", &format!("{duo}{datasets}"));
    write(
        dir.path(),
        "2.yaml",
        &format!("name: x.b\nrunner: {{type: echo}}\n{datasets}"),
    );
    let run = forge(dir.path(), &["run", ".", "--out", "out"], None).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("2.yaml: duplicate suite name \"x.b\" (also in "),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.starts_with("2 passed, 0 failed"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_readme_example_loads_as_one_suite_per_system() {
    let text = forge_testkit::libtest::readme_yaml("## Several systems side by side");
    // Offline: its variables need not be set.
    let options = forge::LoadOptions {
        offline: true,
        ..Default::default()
    };
    let suites = forge::Suite::parse_all_with(Path::new("capitals.yaml"), &text, &options)
        .expect("the example loads");
    let systems: Vec<_> = suites.iter().map(|s| s.system.as_deref()).collect();
    assert_eq!(systems, [Some("small"), Some("agent")]);
    assert_eq!(
        suites[1].datasets[0].test_names[..],
        ["capitals::agent::s1::q1".to_owned()]
    );
    assert_eq!(suites[0].report_name(), "capitals.small");
    assert_eq!(suites[0].price.map(|p| p.output_per_mtok), Some(0.4));
    assert!(suites[1].price.is_none());
    let error = forge::Suite::parse_with(Path::new("capitals.yaml"), &text, &options)
        .expect_err("two systems are not one suite");
    assert!(error.to_string().contains("Suite::load_all"), "{error}");
}
