//! README promises that no other test holds forge to: dataset file formats,
//! suites that fail loudly, test names, the offline runners' options,
//! `OPENAI_BASE_URL`, the `http` runner's reply handling, the `command`
//! runner's `cwd`, the concurrency bound, and `--filter` matching nothing.
//! Each runs the real `forge` binary, a real loopback server or real
//! processes; none looks at a clock.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forge::{async_trait, Batch, Dataset, Engine, Reply, RunError, Runner, Session, Suite};
use forge_testkit::{openai_answer, TestServer};
use serde_json::{json, Value};

fn forge(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run forge")
}

/// Writes `files` (name, text) into a new temporary directory.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write file");
    }
    dir
}

/// Runs suite `name` of `dir` with `forge run`; its summary JSON.
fn run_suite(dir: &Path, name: &str, env: &[(&str, &str)]) -> (Output, Value) {
    let out = dir.join("out");
    let suite = dir.join(format!("{name}.yaml"));
    let output = forge(
        &[
            "run",
            &suite.display().to_string(),
            "--out",
            &out.display().to_string(),
        ],
        env,
    );
    let report = std::fs::read_to_string(out.join(format!("{name}.json")))
        .map(|text| serde_json::from_str(&text).expect("summary JSON"))
        .unwrap_or(Value::Null);
    (output, report)
}

fn answers(report: &Value) -> Vec<String> {
    report["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["conversation"].as_array().into_iter().flatten())
        .map(|b| b["assistant"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn jsonl_and_yaml_dataset_files_load_and_run() {
    let dir = project(&[
        (
            "data.jsonl",
            "{\"session_id\": \"j1\", \"assistant_id\": \"a\", \"conversation\": [{\"qa_id\": \"q1\", \"query\": \"one\"}]}\n\n{\"session_id\": \"j2\", \"assistant_id\": \"a\", \"extra\": [1], \"conversation\": [{\"qa_id\": \"q1\", \"query\": \"two\", \"weight\": 2.5}]}\n",
        ),
        (
            "data.yaml",
            "- session_id: y1\n  assistant_id: a\n  conversation:\n    - {qa_id: q1, query: three}\n",
        ),
        (
            "files.yaml",
            "runner: {type: echo}\ndatasets:\n  - file: data.jsonl\n  - file: data.yaml\n",
        ),
    ]);
    let suite = Suite::load(dir.path().join("files.yaml")).expect("suite loads");
    let sessions: Vec<&str> = suite
        .datasets
        .iter()
        .map(|d| d.dataset.session_id.as_str())
        .collect();
    assert_eq!(sessions, ["j1", "j2", "y1"]);
    let (output, report) = run_suite(dir.path(), "files", &[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(answers(&report), ["one", "two", "three"]);
    // Unknown fields and every value travel through.
    assert_eq!(report["datasets"][1]["extra"], json!([1]));
    assert_eq!(report["datasets"][1]["conversation"][0]["weight"], 2.5);
}

fn load_error(text: &str) -> String {
    match Suite::parse(Path::new("s.yaml"), text) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn suites_that_would_test_nothing_or_twice_fail_loudly() {
    let error = load_error("runner: {type: echo}\ndatasets: []\n");
    assert!(error.contains("the suite has no batches"), "{error}");
    let error = load_error(
        "runner: {type: echo}\ndatasets:\n  - {session_id: s, assistant_id: a, conversation: []}\n",
    );
    assert!(error.contains("the suite has no batches"), "{error}");
    let error = load_error(
        "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: one}\n      - {qa_id: q1, query: two}\n",
    );
    assert!(error.starts_with("s.yaml:"), "{error}");
    assert!(error.contains("qa_id") && error.contains("q1"), "{error}");
    // Two datasets with one session and assistant: one test name twice.
    let error = load_error(
        "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: one}\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: two}\n",
    );
    assert!(error.contains("duplicate test name s::s@a::q1"), "{error}");
}

#[test]
fn test_names_replace_whitespace_and_name_the_assistant_when_sessions_are_shared() {
    let text = "name: n\nrunner: {type: echo}\ndatasets:\n  - session_id: my session\n    assistant_id: a\n    conversation:\n      - {qa_id: \"q 1\\tx\", query: one}\n  - session_id: shared\n    assistant_id: alpha\n    conversation:\n      - {qa_id: q1, query: one}\n  - session_id: shared\n    assistant_id: beta\n    conversation:\n      - {qa_id: q1, query: one}\n";
    let suite = Suite::parse(Path::new("n.yaml"), text).expect("loads");
    let names: Vec<&str> = suite
        .datasets
        .iter()
        .flat_map(|d| d.test_names.iter().map(String::as_str))
        .collect();
    assert_eq!(
        names,
        [
            "n::my_session::q_1_x",
            "n::shared@alpha::q1",
            "n::shared@beta::q1"
        ]
    );
}

#[test]
fn offline_runners_options() {
    let dir = project(&[
        ("answers.json", r#"{"q2": "from the file"}"#),
        (
            "replay.yaml",
            "runner: {type: replay, source: ground_truth, file: answers.json, answers: {q3: inline}}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: one, assistant: recorded, ground_truth_assistant: truth}\n      - {qa_id: q2, query: two, ground_truth_assistant: truth 2}\n      - {qa_id: q3, query: three}\n",
        ),
        (
            "delay.yaml",
            "runner: {type: echo, delay_ms: 40}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: one}\n",
        ),
    ]);
    let (output, report) = run_suite(dir.path(), "replay", &[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(answers(&report), ["truth", "from the file", "inline"]);
    // A sleep never ends early: the turn took at least its delay.
    let (output, report) = run_suite(dir.path(), "delay", &[]);
    assert!(output.status.success(), "{output:?}");
    let time = report["summaries"][0]["avg_batch_time_ms"]
        .as_f64()
        .expect("time");
    assert!(time >= 40.0, "{time}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_base_url_and_key_come_from_the_environment() {
    let server = TestServer::start().await;
    let dir = project(&[(
        "chat.yaml",
        "runner: {type: openai, model: m}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: hello}\n      - {qa_id: q2, query: again}\n",
    )]);
    let base = format!("{}/v1", server.url());
    let (output, report) = tokio::task::spawn_blocking(move || {
        let result = run_suite(
            dir.path(),
            "chat",
            &[
                ("OPENAI_BASE_URL", &base),
                ("OPENAI_API_KEY", TestServer::DEFAULT_API_KEY),
            ],
        );
        drop(dir);
        result
    })
    .await
    .expect("join");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        answers(&report),
        [openai_answer("hello", 1), openai_answer("again", 2)]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r.authorization()
                == Some(&format!("Bearer {}", TestServer::DEFAULT_API_KEY)[..]))
    );
}

#[test]
fn command_runs_in_its_cwd() {
    let dir = project(&[(
        "cwd.yaml",
        "runner: {type: command, program: pwd, cwd: inner}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: where}\n",
    )]);
    std::fs::create_dir(dir.path().join("inner")).expect("inner dir");
    let (output, report) = run_suite(dir.path(), "cwd", &[]);
    assert!(output.status.success(), "{output:?}");
    let inner = dir.path().join("inner").canonicalize().expect("canonical");
    let answer = answers(&report).remove(0);
    assert_eq!(
        Path::new(answer.trim())
            .canonicalize()
            .expect("answer is a dir"),
        inner
    );
}

#[test]
fn a_filter_matching_nothing_exits_2() {
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/../suites/quickstart.yaml");
    let out = tempfile::tempdir().expect("temp dir");
    let output = forge(
        &[
            "run",
            suite,
            "--filter",
            "no-such-test",
            "--out",
            &out.path().display().to_string(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no batch matches --filter \"no-such-test\""),
        "{stderr}"
    );
}

/// Counts the calls in flight; each waits until `group` calls are in, so a
/// run with less concurrency than `group` never finishes.
struct Gate {
    in_flight: AtomicUsize,
    most: AtomicUsize,
    barrier: tokio::sync::Barrier,
}

#[async_trait]
impl Runner for Gate {
    async fn call(&self, batch: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.barrier.wait().await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(Reply::text(batch.query.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_concurrency_sessions_run_at_once() {
    let gate = Arc::new(Gate {
        in_flight: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        barrier: tokio::sync::Barrier::new(3),
    });
    let datasets: Vec<Dataset> = (0..9)
        .map(|s| {
            let mut dataset = Dataset::new(format!("s{s}"), "a");
            dataset.conversation.push(Batch::new("q1", "one"));
            dataset.conversation.push(Batch::new("q2", "two"));
            dataset
        })
        .collect();
    let runner: Arc<dyn Runner> = gate.clone();
    let engine = Engine::new(runner).concurrency(3);
    let run = engine.run_datasets(datasets);
    // A deadline only to fail instead of hanging: with fewer than 3
    // sessions at once the barrier would never open.
    let results = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("3 sessions ran at once");
    assert!(results.iter().all(|(_, s)| s.successes == 2));
    assert_eq!(gate.most.load(Ordering::SeqCst), 3);
}

async fn raw_server(reply: &[u8]) -> (String, Arc<Mutex<Vec<String>>>) {
    forge_testkit::capture::capture_server(reply.to_vec()).await
}

fn body_of(request: &str) -> Value {
    let (_, body) = request.split_once("\r\n\r\n").expect("a body");
    serde_json::from_str(body).expect("JSON body")
}

fn run_http(url: &str, extra: &str, retries: u32) -> (Output, Value) {
    let dir = project(&[(
        "h.yaml",
        &format!(
            "runner: {{type: http, url: \"{url}/agent\"{extra}}}\nretries: {retries}\nbackoff: {{initial: 1ms, max: 2ms}}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - qa_id: q1\n        query: hi\n        agentic: {{tool: search}}\n"
        ),
    )]);
    run_suite(dir.path(), "h", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_runner_bodies_replies_and_agentic_data() {
    // The default body, and a plain-text reply as the answer.
    let (url, requests) = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\nplain reply",
    )
    .await;
    let (output, report) = tokio::task::spawn_blocking(move || run_http(&url, "", 0))
        .await
        .expect("join");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(answers(&report), ["plain reply"]);
    let request = requests.lock().expect("log")[0].clone();
    assert!(request.starts_with("POST /agent HTTP/1.1"), "{request}");
    assert_eq!(body_of(&request), json!({"query": "hi", "session_id": "s"}));

    // "{agentic}" sends the batch's agentic object; `agentic` points at the
    // reply's object that is merged into the batch's.
    let json = r#"{"out": {"text": "ok", "tools": {"used": ["web"]}}}"#;
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        json.len()
    );
    let reply = reply.into_bytes();
    let (url, requests) = raw_server(&reply).await;
    let extra =
        ", body: {q: \"{query}\", data: \"{agentic}\"}, answer: /out/text, agentic: /out/tools";
    let (output, report) = tokio::task::spawn_blocking(move || run_http(&url, extra, 0))
        .await
        .expect("join");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(answers(&report), ["ok"]);
    let request = requests.lock().expect("log")[0].clone();
    assert_eq!(
        body_of(&request),
        json!({"q": "hi", "data": {"tool": "search"}})
    );
    assert_eq!(
        report["datasets"][0]["conversation"][0]["agentic"],
        json!({"tool": "search", "used": ["web"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_runner_never_resends_a_turn_whose_status_arrived() {
    // The status arrives, then the connection is cut mid-body: the agent
    // has the turn, so even with retries it is sent once.
    let (url, requests) = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"answer\": \"cut",
    )
    .await;
    let (output, report) = tokio::task::spawn_blocking(move || run_http(&url, "", 3))
        .await
        .expect("join");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let answer = answers(&report).remove(0);
    assert!(answer.starts_with("[ERROR]"), "{answer}");
    assert!(!answer.contains("after"), "retried: {answer}");
    assert_eq!(requests.lock().expect("log").len(), 1);
}

#[test]
fn values_of_secret_named_runner_keys_never_reach_a_report_or_the_console() {
    let values = [
        ("MY_TOKEN", "t0k3n-value-123"),
        ("DB_PASSWORD", "p4ss-value-456"),
        ("SECRET_X", "s3cr3t-value-789"),
        ("AUTHORIZATION", "Bearer auth-value-0ab"),
    ];
    let env: Vec<String> = values
        .iter()
        .map(|(name, value)| format!("{name}: \"{value}\""))
        .collect();
    // The program prints every value back, and fails a check, so each
    // value would reach the answer, the failure message and the console.
    let suite = format!(
        "runner: {{type: command, program: sh, args: [-c, 'echo \"$MY_TOKEN $DB_PASSWORD $SECRET_X $AUTHORIZATION\"'], env: {{{}}}}}\nexpect: {{equals: nothing}}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {{qa_id: q1, query: hi}}\n",
        env.join(", ")
    );
    let dir = project(&[("leak.yaml", &suite)]);
    let (output, report) = run_suite(dir.path(), "leak", &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        answers(&report),
        ["[REDACTED] [REDACTED] [REDACTED] [REDACTED]"]
    );
    let junit = std::fs::read_to_string(dir.path().join("out/junit.xml")).expect("junit");
    let summary = std::fs::read_to_string(dir.path().join("out/leak.json")).expect("summary");
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(console.contains("[REDACTED]"), "{console}");
    let suite = Suite::load(dir.path().join("leak.yaml")).expect("loads");
    let debug = format!("{suite:?}");
    for (_, value) in values {
        let bare = value.trim_start_matches("Bearer ");
        for (what, text) in [
            ("junit.xml", &junit),
            ("leak.json", &summary),
            ("the console", &console),
            ("the suite's Debug", &debug),
        ] {
            assert!(!text.contains(bare), "{what} shows {bare}: {text}");
        }
    }
}
