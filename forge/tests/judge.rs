//! Judged checks (`answer_correctness`, `rubric`) through the real `forge`
//! binary, against the loopback test server acting as the judge: verdicts
//! that pass and fail, majority votes, retries, prose and fenced verdicts,
//! unreadable verdicts and dead judges (failed checks, never passes), the
//! located load error of a judged check with no judge, the environment
//! fallbacks, and the judge's key kept to the judge and out of every output.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use forge_testkit::judge::{verdict, Judge, JudgeReply};
use forge_testkit::{Fault, FaultPlan, LoggedRequest, TestServer};
use serde_json::{json, Value};

const JUDGE_KEY: &str = "judge-key-7f3a9c2e";

/// One `forge run` of one suite: its exit code, console and reports.
struct Run {
    code: Option<i32>,
    console: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Run {
    fn report(&self, suite: &str) -> Value {
        let text = std::fs::read_to_string(self.out.join(format!("{suite}.json"))).expect("report");
        serde_json::from_str(&text).expect("JSON")
    }

    /// Every report file (`parts/` included), as text.
    fn reports(&self) -> String {
        fn read_all(dir: &Path) -> String {
            std::fs::read_dir(dir)
                .expect("out dir")
                .map(|e| {
                    let path = e.expect("entry").path();
                    if path.is_dir() {
                        read_all(&path)
                    } else {
                        std::fs::read_to_string(path).expect("report")
                    }
                })
                .collect()
        }
        read_all(&self.out)
    }

    /// The results of the checks of `test`'s first run.
    fn checks(&self, suite: &str, test: &str) -> Vec<Value> {
        let report = self.report(suite);
        let row = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|row| row["test"] == test)
            .unwrap_or_else(|| panic!("no {test} in {report}"))
            .clone();
        row["runs"][0]["checks"]
            .as_array()
            .expect("results")
            .clone()
    }
}

/// Runs `forge run` on `suite` (written as `s.yaml`) with `env`, no
/// FORGE_JUDGE_* from the test's environment.
async fn forge(suite: &str, env: &[(&str, String)]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("s.yaml"), suite).expect("write suite");
    let out = dir.path().join("out");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .arg("run")
        .arg(dir.path().join("s.yaml"))
        .arg("--out")
        .arg(&out)
        .arg("--quiet");
    for var in [
        "FORGE_JUDGE_BASE_URL",
        "FORGE_JUDGE_API_KEY",
        "FORGE_JUDGE_MODEL",
        "FORGE_OUT_DIR",
        "FORGE_PARTITION",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ] {
        command.env_remove(var);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run forge");
    Run {
        code: output.status.code(),
        console: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        out,
        _dir: dir,
    }
}

/// A judge server ruling with `judge`, expecting [`JUDGE_KEY`].
async fn judge_server(judge: Judge) -> TestServer {
    TestServer::builder()
        .api_key(JUDGE_KEY)
        .judge(judge)
        .start()
        .await
}

/// The environment of a suite whose `judge:` reads `${JUDGE_URL}` and `${JUDGE_KEY}`.
fn judge_env(server: &TestServer) -> Vec<(&'static str, String)> {
    vec![
        ("JUDGE_URL", server.url()),
        ("JUDGE_KEY", JUDGE_KEY.to_owned()),
    ]
}

/// How the judge is named in messages.
fn named(model: &str, server: &TestServer) -> String {
    format!("judge {model} @ {}", server.addr())
}

fn chat_requests(server: &TestServer) -> Vec<LoggedRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect()
}

/// Answer correctness by containment; rubrics ruled on politeness.
fn polite_or_right() -> Judge {
    let truth = Judge::ground_truth();
    Judge::new(move |request| match request.section("Rubric") {
        None => truth.rule(request),
        Some(_) => {
            let polite = request
                .section("Answer")
                .is_some_and(|a| a.contains("please"));
            let (score, reason) = if polite {
                (0.9, "it says please")
            } else {
                (0.2, "it gives an order without please")
            };
            JudgeReply::content(
                json!({"pass": polite, "score": score, "reason": reason}).to_string(),
            )
        }
    })
}

const JUDGED: &str = r#"
name: judged
runner: {type: echo}
judge:
  base_url: ${JUDGE_URL}/v1
  api_key: ${JUDGE_KEY}
  model: judge-model
  params: {max_tokens: 64}
  response_format: true
datasets:
  - session_id: facts
    assistant_id: bot
    expect: {answer_correctness: 0.7}
    conversation:
      - {qa_id: right, query: The capital of France is Paris., ground_truth_assistant: Paris}
      - {qa_id: wrong, query: The capital of France is Lyon., ground_truth_assistant: Paris}
  - session_id: manners
    assistant_id: bot
    judge: {model: rubric-model, response_format: false}
    expect: {rubric: The answer is polite}
    conversation:
      - {qa_id: polite, query: Sit down please.}
      - {qa_id: rude, query: Sit down.}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn verdicts_pass_and_fail_with_the_score_threshold_and_reason() {
    let server = judge_server(polite_or_right()).await;
    let run = forge(JUDGED, &judge_env(&server)).await;
    let console = &run.console;
    assert_eq!(run.code, Some(1), "{console}");
    assert!(console.contains("2 passed, 2 failed"), "{console}");
    let judge = named("judge-model", &server);
    let wrong = format!(
        "FAILED judged::facts::wrong: check `answer_correctness` failed: score 0.00, below 0.7 ({judge}): the answer does not state Paris"
    );
    assert!(console.contains(&wrong), "{console}");
    // The dataset's `judge:` overrides the suite's key by key.
    let rude = format!(
        "FAILED judged::manners::rude: check `rubric` failed: the judge ruled that the answer fails the rubric (score 0.20) ({}): it gives an order without please",
        named("rubric-model", &server)
    );
    assert!(console.contains(&rude), "{console}");

    // The report's `checks` carry the judge's reason, passed or not.
    let right = run.checks("judged", "judged::facts::right");
    assert_eq!(
        right,
        [
            json!({"check": "answer_correctness", "passed": true, "score": 1.0, "reason": "the answer states Paris"})
        ]
    );
    let rude = run.checks("judged", "judged::manners::rude");
    assert_eq!(rude[0]["passed"], false);
    assert_eq!(rude[0]["reason"], "it gives an order without please");
    let junit = std::fs::read_to_string(run.out.join("junit.xml")).expect("junit");
    assert!(
        junit.contains("score 0.00, below 0.7")
            && junit.contains("the answer does not state Paris"),
        "{junit}"
    );

    // What the judge was sent: the answer and the ground truth in Fair-Forge's
    // prompt, the query as the user message, the params, temperature 0 and
    // the response format; its key.
    let requests = chat_requests(&server);
    assert_eq!(requests.len(), 4);
    let lyon = requests
        .iter()
        .find(|r| r.query.as_deref() == Some("The capital of France is Lyon."))
        .expect("the wrong answer was judged");
    let body = lyon.body.as_ref().expect("a JSON body");
    let system = body["messages"][0]["content"].as_str().expect("system");
    assert!(
        system.starts_with("You are a STRICT evaluator."),
        "{system}"
    );
    assert!(
        system.contains(
            "**Agent's Answer:** The capital of France is Lyon.\n\n**Ground Truth:** Paris"
        ),
        "{system}"
    );
    assert_eq!(body["model"], "judge-model");
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    let sit = requests
        .iter()
        .find(|r| r.query.as_deref().is_some_and(|q| q.contains("Sit down.")))
        .and_then(|r| r.body.clone())
        .expect("the rude answer was judged");
    assert_eq!(sit["model"], "rubric-model");
    assert_eq!(sit["max_tokens"], 64);
    assert_eq!(sit.get("response_format"), None);
    for request in &requests {
        assert_eq!(
            request.authorization(),
            Some(format!("Bearer {JUDGE_KEY}").as_str())
        );
        assert_eq!(request.status, 200);
    }
    assert!(!run.reports().contains(JUDGE_KEY));
    assert!(!console.contains(JUDGE_KEY));
}

fn votes_suite(retries: u32) -> String {
    format!(
        r#"
name: votes
runner: {{type: echo}}
retries: {retries}
backoff: {{initial: 1ms, max: 5ms}}
judge: {{base_url: "${{JUDGE_URL}}/v1", api_key: "${{JUDGE_KEY}}", model: m, votes: 3}}
datasets:
  - session_id: s
    assistant_id: bot
    conversation:
      - {{qa_id: q, query: Paris, ground_truth_assistant: Paris, expect: {{answer_correctness: 0.7}}}}
"#
    )
}

fn scores(scores: &[(f64, &str)]) -> Judge {
    Judge::scripted(
        scores
            .iter()
            .map(|(score, reason)| JudgeReply::content(verdict(*score, reason)))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn votes_take_the_majority_verdict_and_the_mean_score() {
    let server = judge_server(scores(&[(0.9, "good"), (0.2, "bad"), (0.8, "good")])).await;
    let run = forge(&votes_suite(0), &judge_env(&server)).await;
    assert_eq!(run.code, Some(0), "{}", run.console);
    assert_eq!(chat_requests(&server).len(), 3);
    assert_eq!(run.checks("votes", "votes::s::q")[0]["reason"], "good");

    let server = judge_server(scores(&[(0.9, "good"), (0.2, "bad"), (0.1, "bad")])).await;
    let run = forge(&votes_suite(0), &judge_env(&server)).await;
    assert_eq!(run.code, Some(1), "{}", run.console);
    let expected = format!(
        "check `answer_correctness` failed: 2 of 3 votes failed; score 0.40, below 0.7 ({}): bad",
        named("m", &server)
    );
    assert!(run.console.contains(&expected), "{}", run.console);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_judge_that_fails_twice_then_answers_is_retried() {
    let server = TestServer::builder()
        .api_key(JUDGE_KEY)
        .fail_next(503, 2)
        .judge(Judge::ground_truth())
        .start()
        .await;
    let run = forge(
        &votes_suite(2).replace("votes: 3", "votes: 1"),
        &judge_env(&server),
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.console);
    let statuses: Vec<u16> = chat_requests(&server).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);

    // With one retry, the judge that keeps failing fails the check.
    let server = TestServer::builder()
        .api_key(JUDGE_KEY)
        .fail_next(503, 2)
        .judge(Judge::ground_truth())
        .start()
        .await;
    let run = forge(
        &votes_suite(1).replace("votes: 3", "votes: 1"),
        &judge_env(&server),
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.console);
    let expected = format!(
        "check `answer_correctness` failed: {} failed: HTTP 503 from http://{}/v1/chat/completions: ",
        named("m", &server),
        server.addr()
    );
    assert!(run.console.contains(&expected), "{}", run.console);
    assert!(
        run.console.contains("(after 2 attempts)"),
        "{}",
        run.console
    );
}

const FORMATS: &str = r#"
name: formats
runner: {type: echo}
judge: {base_url: "${JUDGE_URL}/v1", api_key: "${JUDGE_KEY}", model: m}
datasets:
  - session_id: s
    assistant_id: bot
    expect: {answer_correctness: 0.7}
    conversation:
      - {qa_id: prose, query: prose, ground_truth_assistant: x}
      - {qa_id: fence, query: fence, ground_truth_assistant: x}
      - {qa_id: none, query: none, ground_truth_assistant: x}
      - {qa_id: range, query: range, ground_truth_assistant: x}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn verdicts_are_read_from_prose_and_fences_and_unreadable_ones_fail() {
    let server = judge_server(Judge::new(|request| {
        let content = match request.section("Agent's Answer").unwrap_or_default() {
            "prose" => format!(
                "Let me weigh {{this}} first.\n{}\nThat is my verdict.",
                verdict(0.9, "weighed")
            ),
            "fence" => {
                "Reasoning.\n```json\n{\"correctness_score\": 0.95, \"reasoning\": \"fenced\"}\n```"
                    .to_owned()
            }
            "none" => format!("I think the answer is good. My key is {JUDGE_KEY}."),
            _ => r#"{"score": 7, "reason": "very good"}"#.to_owned(),
        };
        JudgeReply::Content(content)
    }))
    .await;
    let run = forge(FORMATS, &judge_env(&server)).await;
    assert_eq!(run.code, Some(1), "{}", run.console);
    assert!(
        run.console.contains("2 passed, 2 failed"),
        "{}",
        run.console
    );
    assert_eq!(
        run.checks("formats", "formats::s::prose")[0]["reason"],
        "weighed"
    );
    assert_eq!(
        run.checks("formats", "formats::s::fence")[0]["reason"],
        "fenced"
    );
    let judge = named("m", &server);
    let none = format!(
        "FAILED formats::s::none: check `answer_correctness` failed: {judge} gave no readable verdict (no JSON object with `score`, `correctness_score` or `pass` in the reply): I think the answer is good. My key is [REDACTED]."
    );
    assert!(run.console.contains(&none), "{}", run.console);
    let range = format!(
        "FAILED formats::s::range: check `answer_correctness` failed: {judge} gave no readable verdict (the score 7 is outside 0..1): {{\"score\": 7, \"reason\": \"very good\"}}"
    );
    assert!(run.console.contains(&range), "{}", run.console);
    assert!(!run.reports().contains(JUDGE_KEY));
    assert!(!run.console.contains(JUDGE_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_judge_that_cannot_be_reached_fails_the_check() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let env = [
        ("JUDGE_URL", format!("http://127.0.0.1:{port}")),
        ("JUDGE_KEY", JUDGE_KEY.to_owned()),
    ];
    let run = forge(&votes_suite(1).replace("votes: 3", "votes: 1"), &env).await;
    assert_eq!(run.code, Some(1), "{}", run.console);
    let expected = format!(
        "check `answer_correctness` failed: judge m @ 127.0.0.1:{port} failed: cannot connect to http://127.0.0.1:{port}/v1/chat/completions"
    );
    assert!(run.console.contains(&expected), "{}", run.console);
    assert!(
        run.console.contains("(after 2 attempts)"),
        "{}",
        run.console
    );
}

const NO_JUDGE: &str = r#"name: nojudge
runner: {type: echo}
datasets:
  - session_id: plain
    assistant_id: bot
    conversation:
      - {qa_id: q0, query: hello, expect: {contains: hello}}
  - session_id: s
    assistant_id: bot
    conversation:
      - {qa_id: q1, query: Paris, ground_truth_assistant: Paris}
      - {qa_id: q2, query: Lyon, ground_truth_assistant: Paris, expect: {answer_correctness: 0.7}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_judged_check_without_a_judge_is_a_located_load_error_unless_the_environment_has_one() {
    let run = forge(NO_JUDGE, &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.console);
    assert!(
        run.console.contains(
            "s.yaml:12:74: `answer_correctness` needs a judge, and the suite has none: add `judge: {base_url: ..., model: ...}` to the suite or the dataset, or set FORGE_JUDGE_BASE_URL and FORGE_JUDGE_MODEL"
        ),
        "{}",
        run.console
    );
    assert!(!run.out.join("s.json").exists(), "the suite ran");
    let junit = std::fs::read_to_string(run.out.join("junit.xml")).expect("junit");
    assert!(
        junit.contains(r#"<testcase name="load" classname="s""#),
        "{junit}"
    );

    // FORGE_JUDGE_* make the judge.
    let server = judge_server(Judge::ground_truth()).await;
    let env = [
        ("FORGE_JUDGE_BASE_URL", format!("{}/v1", server.url())),
        ("FORGE_JUDGE_API_KEY", JUDGE_KEY.to_owned()),
        ("FORGE_JUDGE_MODEL", "env-model".to_owned()),
    ];
    let run = forge(NO_JUDGE, &env).await;
    assert_eq!(run.code, Some(1), "{}", run.console);
    assert!(
        run.console.contains("2 passed, 1 failed"),
        "{}",
        run.console
    );
    let expected = format!(
        "check `answer_correctness` failed: score 0.00, below 0.7 ({}): the answer does not state Paris",
        named("env-model", &server)
    );
    assert!(run.console.contains(&expected), "{}", run.console);
    let requests = chat_requests(&server);
    assert_eq!(requests.len(), 1, "only the judged batch asks the judge");
    assert_eq!(
        requests[0].body.as_ref().map(|b| b["model"].clone()),
        Some(json!("env-model"))
    );
    assert!(!run.reports().contains(JUDGE_KEY));
}

const AGENT: &str = r#"
name: agent
runner: {type: openai, model: bot, history: false}
judge: {base_url: "${JUDGE_URL}/v1", model: m}
datasets:
  - session_id: s
    assistant_id: bot
    repeat: 2
    conversation:
      - {qa_id: ok, query: What is up?, ground_truth_assistant: answer to, expect: {answer_correctness: 0.5}}
      - {qa_id: broken, query: "boom #500", ground_truth_assistant: x, expect: {answer_correctness: 0.5}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_judge_key_goes_only_to_the_judge_and_the_runner_key_never_to_the_judge() {
    const RUNNER_KEY: &str = "runner-key-0b1c2d3e";
    let agent = TestServer::builder()
        .api_key(RUNNER_KEY)
        .fault_plan(FaultPlan::new(3).share(100, Fault::EchoAuthorization))
        .start()
        .await;
    let judge = judge_server(Judge::ground_truth()).await;
    let env = [
        ("OPENAI_BASE_URL", format!("{}/v1", agent.url())),
        ("OPENAI_API_KEY", RUNNER_KEY.to_owned()),
        ("JUDGE_URL", judge.url()),
        ("FORGE_JUDGE_API_KEY", JUDGE_KEY.to_owned()),
    ];
    let run = forge(AGENT, &env).await;
    assert_eq!(run.code, Some(1), "{}", run.console);
    assert!(
        run.console.contains("1 passed, 1 failed"),
        "{}",
        run.console
    );

    // Each run of the answered batch was judged; the failed calls were not.
    let judged = chat_requests(&judge);
    assert_eq!(judged.len(), 2, "{judged:?}");
    for request in &judged {
        assert_eq!(
            request.authorization(),
            Some(format!("Bearer {JUDGE_KEY}").as_str())
        );
        let sent = format!("{:?}", request);
        assert!(
            !sent.contains(RUNNER_KEY),
            "the runner's key reached the judge: {sent}"
        );
        let system = request.body.as_ref().expect("body")["messages"][0]["content"].clone();
        assert!(
            system
                .as_str()
                .is_some_and(|s| s.contains("(you sent: Bearer [REDACTED])")),
            "{system}"
        );
    }
    for request in agent.requests() {
        let sent = format!("{:?}", request);
        assert!(
            !sent.contains(JUDGE_KEY),
            "the judge's key reached the agent: {sent}"
        );
    }
    let reports = run.reports();
    for key in [RUNNER_KEY, JUDGE_KEY] {
        assert!(!reports.contains(key), "{reports}");
        assert!(!run.console.contains(key), "{}", run.console);
    }
}
