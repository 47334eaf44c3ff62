//! Tokens and cost through the real `forge` binary, against the loopback
//! test server as the `openai` runner's endpoint and as the judge (both
//! report a deterministic `usage`, one token per word: `openai_usage`):
//! the tokens and costs of the runner and the judge in the summary JSON,
//! the console and JUnit, `max_tokens` passing and failing (and failing
//! when no usage was reported), and a `budget` stopping a run part-way,
//! counting the runner's and the judge's cost, with the batches not run
//! reported as failures; the `http` runner's `usage` pointer and a custom
//! runner's `Reply::with_usage`. Load errors of `price` and `budget` are
//! located.

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_testkit::judge::{verdict, Judge, JudgeReply};
use forge_testkit::process::Spawned;
use forge_testkit::{openai_answer, openai_usage, LoggedRequest, TestServer};
use serde_json::Value;

/// One `forge run` of one suite: its exit code, console and reports.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    fn report(&self) -> Value {
        let text = std::fs::read_to_string(self.out.join("cost.json")).expect("report");
        serde_json::from_str(&text).expect("JSON")
    }

    fn junit(&self) -> String {
        std::fs::read_to_string(self.out.join("junit.xml")).expect("junit")
    }

    /// The `checks` row of `test` in the report.
    fn row(&self, test: &str) -> Value {
        let report = self.report();
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|row| row["test"] == test)
            .unwrap_or_else(|| panic!("no {test} in {report}"))
            .clone()
    }
}

/// Runs `forge run` on `suite` (named `cost`), `${RUNNER_URL}` and
/// `${JUDGE_URL}` set to the servers; bounded: a run that hangs fails.
async fn forge(suite: &str, runner: Option<&TestServer>, judge: Option<&TestServer>) -> Run {
    forge_with(suite, runner, judge, &[]).await
}

/// [`forge`], with more arguments after `forge run SUITE --out OUT`.
async fn forge_with(
    suite: &str,
    runner: Option<&TestServer>,
    judge: Option<&TestServer>,
    args: &[&str],
) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cost.yaml");
    std::fs::write(&path, suite).expect("write suite");
    let out = dir.path().join("out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .args(args);
    for var in [
        "FORGE_JUDGE_BASE_URL",
        "FORGE_OUT_DIR",
        "FORGE_PARTITION",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ] {
        command.env_remove(var);
    }
    for (name, server) in [("RUNNER_URL", runner), ("JUDGE_URL", judge)] {
        if let Some(server) = server {
            command.env(name, server.url());
        }
    }
    command.env("SERVER_KEY", TestServer::DEFAULT_API_KEY);
    let (status, stdout, stderr) = Spawned::start(command).exit().await;
    Run {
        code: status.code(),
        stdout,
        stderr,
        out,
        _dir: dir,
    }
}

fn chat_requests(server: &TestServer) -> Vec<LoggedRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect()
}

/// The judge's constant verdict: one word, so one completion token.
fn approving() -> Judge {
    Judge::new(|_| JudgeReply::content(verdict(1.0, "right")))
}

/// (prompt, completion) tokens of the requests `server` answered with a
/// `usage` (not those marked `#nousage`), the answers given by `answer`.
fn tokens(server: &TestServer, answer: impl Fn(&LoggedRequest) -> String) -> (u64, u64) {
    chat_requests(server)
        .iter()
        .filter(|r| !r.query.as_deref().is_some_and(|q| q.contains("#nousage")))
        .map(|r| openai_usage(r.body.as_ref().expect("a JSON body"), &answer(r)))
        .fold((0, 0), |(p, c), (dp, dc)| (p + dp, c + dc))
}

/// The test server's answer to a chat request (history on: the turn is
/// the number of user messages).
fn runner_answer(request: &LoggedRequest) -> String {
    let body = request.body.as_ref().expect("a JSON body");
    let users = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "user")
        .count();
    openai_answer(request.query.as_deref().expect("a query"), users)
}

fn close(actual: &Value, expected: f64) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("a number: {actual}"));
    assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
}

const PRICED: &str = r#"
name: cost
runner: {type: openai, base_url: "${RUNNER_URL}/v1", api_key: "${SERVER_KEY}", model: bot}
price: {input_per_mtok: 1.5, output_per_mtok: 4}
judge:
  base_url: ${JUDGE_URL}/v1
  api_key: ${SERVER_KEY}
  model: judge
  price: {input_per_mtok: 10, output_per_mtok: 30}
concurrency: 1
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: roomy, query: hello there, expect: {max_tokens: 100}}
      - {qa_id: tight, query: hello again, expect: {max_tokens: 3}}
      - {qa_id: unknown, query: "quiet #nousage", expect: {max_tokens: 100}}
      - {qa_id: other-names, query: "renamed #input_tokens", expect: {max_tokens: 100}}
  - session_id: judged
    assistant_id: bot
    expect: {answer_correctness: 0.5}
    conversation:
      - {qa_id: j1, query: capital of France, ground_truth_assistant: Paris}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_cost_reach_the_report_console_and_junit() {
    let runner = TestServer::start().await;
    let judge = TestServer::builder().judge(approving()).start().await;
    let run = forge(PRICED, Some(&runner), Some(&judge)).await;
    let stderr = &run.stderr;
    assert_eq!(run.code, Some(1), "{stderr}");
    assert!(run.stdout.contains("3 passed, 2 failed"), "{}", run.stdout);

    // max_tokens: inclusive, over it, and no usage reported.
    let tight = chat_requests(&runner)
        .into_iter()
        .find(|r| r.query.as_deref() == Some("hello again"))
        .expect("the tight turn was sent");
    let (p, c) = openai_usage(tight.body.as_ref().expect("body"), &runner_answer(&tight));
    let over = format!(
        "FAILED cost::s::tight: check `max_tokens` failed: used {} tokens ({p} prompt + {c} completion), more than 3",
        p + c
    );
    assert!(stderr.contains(&over), "{stderr}");
    assert!(
        stderr.contains("FAILED cost::s::unknown: check `max_tokens` failed: the runner reported no token usage for this turn"),
        "{stderr}"
    );
    assert_eq!(run.row("cost::s::roomy")["passed"], true);
    let renamed = &run.row("cost::s::other-names")["runs"][0]["usage"];
    assert!(
        renamed["total_tokens"].as_u64().is_some_and(|t| t > 0),
        "{renamed}"
    );
    assert_eq!(run.row("cost::s::unknown")["runs"][0].get("usage"), None);

    // The suite's totals: the runner's turns (the one without usage left
    // out) at its price, the judge's at its own.
    let (rp, rc) = tokens(&runner, runner_answer);
    let (jp, jc) = tokens(&judge, |_| verdict(1.0, "right"));
    assert_eq!(jc, 1, "one judge call, one word");
    let usage = &run.report()["usage"];
    assert_eq!(usage["runner"]["prompt_tokens"], rp, "{usage}");
    assert_eq!(usage["runner"]["completion_tokens"], rc, "{usage}");
    assert_eq!(usage["runner"]["total_tokens"], rp + rc, "{usage}");
    assert_eq!(usage["runner"]["turns"], 4, "{usage}");
    assert_eq!(usage["judge"]["prompt_tokens"], jp, "{usage}");
    assert_eq!(usage["judge"]["completion_tokens"], jc, "{usage}");
    assert_eq!(usage["judge"]["turns"], 1, "{usage}");
    let runner_cost = (rp as f64 * 1.5 + rc as f64 * 4.0) / 1e6;
    let judge_cost = (jp as f64 * 10.0 + jc as f64 * 30.0) / 1e6;
    close(&usage["runner"]["cost_usd"], runner_cost);
    close(&usage["judge"]["cost_usd"], judge_cost);
    close(&usage["cost_usd"], runner_cost + judge_cost);
    // Each run's own, beside its checks.
    let j1 = &run.row("cost::judged::j1")["runs"][0];
    assert_eq!(j1["judge_usage"]["completion_tokens"], 1, "{j1}");
    assert!(j1["usage"]["cost_usd"].as_f64().is_some(), "{j1}");
    // Fair-Forge's own fields are untouched: no usage in the datasets.
    let datasets = run.report()["datasets"].to_string();
    assert!(!datasets.contains("total_tokens") && !datasets.contains("cost_usd"));

    // The console's line and JUnit's properties.
    let line = format!(
        "forge: cost: runner {} tokens ({rp} in, {rc} out, ${runner_cost:.6}); judge {} tokens ({jp} in, {jc} out, ${judge_cost:.6}); cost ${:.6}",
        rp + rc,
        jp + jc,
        runner_cost + judge_cost
    );
    assert!(stderr.contains(&line), "{line}\n{stderr}");
    let junit = run.junit();
    for property in [
        format!(
            r#"<property name="forge.runner.total_tokens" value="{}"/>"#,
            rp + rc
        ),
        format!(r#"<property name="forge.judge.prompt_tokens" value="{jp}"/>"#),
        r#"<property name="forge.cost_usd" value=""#.to_owned(),
    ] {
        assert!(junit.contains(&property), "{property}\n{junit}");
    }
}

/// A session of `turns` one-word questions, and an `other` session.
fn budget_suite(head: &str, turns: usize) -> String {
    let conversation: String = (1..=turns)
        .map(|k| format!("      - {{qa_id: q{k}, query: q{k}}}\n"))
        .collect();
    format!(
        r#"
name: cost
runner: {{type: openai, base_url: "${{RUNNER_URL}}/v1", api_key: "${{SERVER_KEY}}", model: bot}}
concurrency: 1
{head}
datasets:
  - session_id: first
    assistant_id: bot
    conversation:
{conversation}  - session_id: other
    assistant_id: bot
    conversation:
      - {{qa_id: o1, query: o1}}
"#
    )
}

/// The batches a budget stopped: (test, message) of the failed ones.
fn not_run(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("FAILED "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_stops_sending_and_reports_the_batches_not_run() {
    let runner = TestServer::start().await;
    // Each answer is five words (`answer to 'qK' (turn K)`): $0.005 a turn.
    let head = "price: {input_per_mtok: 0, output_per_mtok: 1000}\nbudget: {max_cost_usd: 0.012}";
    let run = forge(&budget_suite(head, 5), Some(&runner), None).await;
    let stderr = &run.stderr;
    assert_eq!(run.code, Some(1), "{stderr}");
    // $0.010 after two turns, $0.015 after the third: nothing more is sent.
    assert_eq!(chat_requests(&runner).len(), 3, "{stderr}");
    assert!(run.stdout.contains("3 passed, 3 failed"), "{}", run.stdout);
    let message = "budget of $0.012 spent before this turn was sent";
    let mut failed = not_run(&run);
    failed.sort();
    assert_eq!(
        failed,
        ["cost::first::q4", "cost::first::q5", "cost::other::o1"]
            .map(|test| format!("FAILED {test}: {message}")),
        "{stderr}"
    );
    // Every batch is in the reports: Fair-Forge's datasets and JUnit.
    let report = run.report();
    let answers: Vec<&str> = report["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .flat_map(|d| d["conversation"].as_array().expect("turns"))
        .map(|b| b["assistant"].as_str().expect("assistant"))
        .collect();
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| **a == format!("[ERROR] {message}"))
            .count(),
        3
    );
    close(&report["usage"]["runner"]["cost_usd"], 0.015);
    let junit = run.junit();
    assert!(
        junit.contains(r#"tests="6""#) && junit.contains(r#"failures="3""#),
        "{junit}"
    );
    assert!(junit.contains(message), "{junit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runner_and_the_judge_spend_the_budget_together() {
    let runner = TestServer::start().await;
    let judge = TestServer::builder().judge(approving()).start().await;
    // A turn costs the runner $0.005 (five words out) and the judge $0.003
    // (one word out): neither alone reaches $0.007, both together do. One
    // attempt an hour: the second turn waits for its slot, and the budget,
    // spent once the first turn is judged, ends the wait.
    let head = r#"price: {input_per_mtok: 0, output_per_mtok: 1000}
budget: {max_cost_usd: 0.007}
rate_limit: 1/h
expect: {answer_correctness: 0.5}
judge:
  base_url: ${JUDGE_URL}/v1
  api_key: ${SERVER_KEY}
  model: judge
  price: {input_per_mtok: 0, output_per_mtok: 3000}"#;
    let suite =
        budget_suite(head, 2).replace("query: q", "ground_truth_assistant: answer, query: q");
    let suite = suite.replace("query: o1", "ground_truth_assistant: answer, query: o1");
    let run = forge(&suite, Some(&runner), Some(&judge)).await;
    let stderr = &run.stderr;
    assert_eq!(run.code, Some(1), "{stderr}");
    assert_eq!(chat_requests(&runner).len(), 1, "{stderr}");
    assert_eq!(chat_requests(&judge).len(), 1, "{stderr}");
    let message = "budget of $0.007 spent before this turn was sent";
    let mut failed = not_run(&run);
    failed.sort();
    assert_eq!(
        failed,
        ["cost::first::q2", "cost::other::o1"].map(|test| format!("FAILED {test}: {message}")),
        "{stderr}"
    );
    let usage = &run.report()["usage"];
    close(&usage["runner"]["cost_usd"], 0.005);
    close(&usage["judge"]["cost_usd"], 0.003);
    close(&usage["cost_usd"], 0.008);
}

/// The load error of `head` in a suite with one batch.
fn load_error(head: &str) -> String {
    let text = format!(
        "runner: {{type: echo}}\n{head}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation:\n      - {{qa_id: q1, query: hello}}\n"
    );
    match forge::Suite::parse(Path::new("s.yaml"), &text) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn prices_and_budgets_are_checked_where_they_are_written() {
    for (head, expected) in [
        (
            "budget: {max_cost_usd: 5}",
            "s.yaml:2:1: `budget` needs a price to count against",
        ),
        (
            "price: {input_per_mtok: -1, output_per_mtok: 2}",
            "s.yaml:2:1: `price.input_per_mtok` -1 must be a number of USD per million tokens, 0 or more",
        ),
        (
            "price: {input_per_mtok: 1, output_per_mtok: 2}\nbudget: {max_cost_usd: 0}",
            "s.yaml:3:1: `budget.max_cost_usd` 0 must be a number of USD more than 0",
        ),
        (
            "judge: {base_url: 'http://127.0.0.1:9/v1', model: m, price: {input_per_mtok: 1}}",
            "missing field `output_per_mtok`",
        ),
        ("price: {input: 1}", "unknown key `input`"),
    ] {
        let error = load_error(head);
        assert!(error.contains(expected), "{head}: {error}");
    }
    // A judge's price is enough for a budget.
    let text = "runner: {type: echo}\nbudget: {max_cost_usd: 1}\njudge: {base_url: 'http://127.0.0.1:9/v1', model: m, price: {input_per_mtok: 1, output_per_mtok: 2}}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation:\n      - {qa_id: q1, query: hello}\n";
    let suite = forge::Suite::parse(Path::new("s.yaml"), text).expect("loads");
    assert_eq!(suite.budget.map(|b| b.max_cost_usd), Some(1.0));
}

/// The `http` runner's `usage` pointer: the agent's own token counts.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_runner_reads_usage_where_its_pointer_says() {
    let agent = |body: &Value| {
        let query = body["query"].as_str().unwrap_or_default();
        let mut reply = serde_json::json!({"output": {"text": format!("done: {query}")}});
        if query != "silent" {
            reply["meta"] = serde_json::json!({"tokens": {"input_tokens": 7, "output_tokens": 3}});
        }
        reply
    };
    let server = TestServer::builder().agent(agent).start().await;
    let suite = r#"
name: cost
runner:
  type: http
  url: "${RUNNER_URL}/agent"
  headers: {Authorization: "Bearer ${SERVER_KEY}"}
  answer: /output/text
  usage: /meta/tokens
price: {input_per_mtok: 1000, output_per_mtok: 1000}
expect: {max_tokens: 10}
datasets:
  - session_id: s
    assistant_id: agent
    conversation:
      - {qa_id: counted, query: counted}
      - {qa_id: silent, query: silent}
"#;
    let run = forge(suite, Some(&server), None).await;
    let stderr = &run.stderr;
    assert_eq!(run.code, Some(1), "{stderr}");
    assert!(run.stdout.contains("1 passed, 1 failed"), "{}", run.stdout);
    assert!(
        stderr.contains(
            "FAILED cost::s::silent: check `max_tokens` failed: the runner reported no token usage"
        ),
        "{stderr}"
    );
    let usage = &run.row("cost::s::counted")["runs"][0]["usage"];
    assert_eq!(usage["total_tokens"], 10, "{usage}");
    close(&usage["cost_usd"], 0.01);
    assert!(
        stderr.contains("forge: cost: runner 10 tokens (7 in, 3 out, $0.010000); cost $0.010000"),
        "{stderr}"
    );
}

/// A runner of one's own reports usage with `Reply::with_usage`; the
/// engine hands it to the observer with the turn's outcome.
#[tokio::test]
async fn a_custom_runner_reports_usage_with_its_reply() {
    struct Counting;
    #[forge::async_trait]
    impl forge::Runner for Counting {
        async fn call(
            &self,
            batch: &forge::Batch,
            _: &forge::Session<'_>,
        ) -> Result<forge::Reply, forge::RunError> {
            let words = batch.query.split_whitespace().count() as u64;
            Ok(forge::Reply::text("ok").with_usage(forge::Usage::new(words, 1)))
        }
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let observer = {
        let seen = std::sync::Arc::clone(&seen);
        move |_: usize, _: usize, outcome: &forge::BatchOutcome| {
            seen.lock().expect("lock").push(outcome.usage);
        }
    };
    let mut dataset = forge::Dataset::new("s", "a");
    dataset
        .conversation
        .push(forge::Batch::new("q1", "three words here"));
    forge::Engine::new(std::sync::Arc::new(Counting))
        .run(
            vec![forge::Job::from(dataset)],
            std::sync::Arc::new(observer),
        )
        .await;
    let usage = forge::Usage::new(3, 1);
    assert_eq!(*seen.lock().expect("lock"), [Some(usage)]);
    assert_eq!(usage.total_tokens, 4);
}

/// The shards of a priced run, merged, report the tokens and cost of all.
#[tokio::test(flavor = "multi_thread")]
async fn merged_shards_add_their_usage_up() {
    let runner = TestServer::start().await;
    let head = "price: {input_per_mtok: 0, output_per_mtok: 1000}";
    let suite = budget_suite(head, 2);
    let mut outs = Vec::new();
    for shard in ["count:1/2", "count:2/2"] {
        let run = forge_with(&suite, Some(&runner), None, &["--partition", shard]).await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        outs.push(run);
    }
    let merged = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("merge")
        .arg("--out")
        .arg(merged.path())
        .args(outs.iter().map(|run| &run.out))
        .output()
        .expect("forge merge");
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(merged.path().join("cost.json")).expect("merged report"),
    )
    .expect("JSON");
    // Three turns of five words each, at $0.001 a word.
    let usage = &report["usage"]["runner"];
    assert_eq!(usage["completion_tokens"], 15, "{report}");
    assert_eq!(usage["turns"], 3, "{report}");
    close(&usage["cost_usd"], 0.015);
    let junit = std::fs::read_to_string(merged.path().join("junit.xml")).expect("junit");
    assert!(
        junit.contains(r#"<property name="forge.runner.completion_tokens" value="15"/>"#),
        "{junit}"
    );
}

#[test]
fn the_readme_priced_suite_loads() {
    let text = forge_testkit::libtest::readme_yaml("### Tokens and cost");
    let suite = forge::Suite::parse(Path::new("priced.yaml"), &text).expect("the example loads");
    assert_eq!(suite.budget.map(|b| b.max_cost_usd), Some(2.5));
    assert_eq!(suite.price.map(|p| p.output_per_mtok), Some(0.6));
}
