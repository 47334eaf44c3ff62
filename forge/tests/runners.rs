//! The `alquimia` and `openai` runners and the payload API against the
//! loopback test server of `forge_testkit`.

mod support;
use forge_testkit::data::dataset;
use support::retrying;

use std::sync::Arc;
use std::time::Duration;

use forge::runners::alquimia::{Alquimia, AlquimiaConfig};
use forge::runners::openai::{OpenAi, OpenAiConfig};
use forge::{Dataset, Engine, ErrorKind, Runner, Session};
use forge_testkit::{alquimia_answer, openai_answer, LoggedRequest, TestServer};
use serde_json::{json, Value};

/// Serializes the tests that read or change environment variables.
static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const KEY: &str = TestServer::DEFAULT_API_KEY;

fn alquimia_config(url: &str) -> AlquimiaConfig {
    AlquimiaConfig {
        base_url: Some(url.to_owned()),
        api_key: Some(KEY.into()),
        agent_id: Some("agent-7".to_owned()),
        channel_id: Some("web".to_owned()),
        api_version: None,
        retry_on: None,
    }
}

fn alquimia(url: &str) -> Alquimia {
    Alquimia::new(alquimia_config(url)).expect("valid config")
}

fn openai_config(url: &str) -> OpenAiConfig {
    let mut config = OpenAiConfig::new("test-model");
    config.base_url = Some(format!("{url}/v1"));
    config.api_key = Some(KEY.into());
    config
}

fn today() -> String {
    chrono::Local::now().format("%Y-%m-%d").to_string()
}

fn by_path<'a>(requests: &'a [LoggedRequest], part: &str) -> Vec<&'a LoggedRequest> {
    requests.iter().filter(|r| r.path.contains(part)).collect()
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn alquimia_answers_and_sends_the_right_requests() {
    let server = TestServer::start().await;
    let mut config = alquimia_config(&format!("{}/", server.url()));
    config.api_version = Some("v1".into());
    let runner = Alquimia::new(config).unwrap();
    let mut data = dataset(
        "sess-1",
        &["What is the capital of France?", "And of Spain?"],
    );
    let mut agentic = forge::Object::new();
    agentic.insert("user".into(), json!({"tier": "gold", "tags": ["a", "b"]}));
    data.conversation[0].agentic = Some(agentic);

    let (data, summary) = forge::run_dataset(&runner, data).await;

    assert_eq!(
        data.conversation[0].assistant,
        alquimia_answer("What is the capital of France?", 1, "sess-1")
    );
    assert_eq!(
        data.conversation[1].assistant,
        alquimia_answer("And of Spain?", 2, "sess-1")
    );
    assert_eq!(
        (summary.successes, summary.failures, summary.total_batches),
        (2, 0, 2)
    );
    assert!(summary.avg_batch_time_ms > 0.0);
    assert!(summary.total_execution_time_ms >= summary.avg_batch_time_ms);
    assert_eq!(
        server.turns("sess-1"),
        vec!["What is the capital of France?", "And of Spain?"]
    );

    let requests = server.requests();
    let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["POST", "GET", "POST", "GET"]);
    let (infer, stream) = (&requests[0], &requests[1]);
    assert_eq!(infer.path, "/v1/event/infer/web/agent-7");
    assert_eq!(
        infer.query_string.as_deref(),
        Some("chat_history=50&agentspace=_default")
    );
    assert_eq!(infer.authorization(), Some("Bearer test-key"));
    assert_eq!(
        infer.body,
        Some(json!({
            "query": "What is the capital of France?",
            "session_id": "sess-1",
            "extra_data": {"user": {"tier": "gold", "tags": ["a", "b"]}, "date": today()},
            "attachments": [],
        }))
    );
    assert_eq!(
        requests[2].body.as_ref().unwrap()["extra_data"],
        json!({"date": today()})
    );
    assert!(
        stream.path.starts_with("/v1/event/stream/"),
        "{}",
        stream.path
    );
    assert_eq!(stream.query_string.as_deref(), Some("response_only=true"));
    assert_eq!(stream.header("accept"), Some("text/event-stream"));
    assert_eq!(stream.authorization(), Some("Bearer test-key"));
    assert_eq!(stream.session_id.as_deref(), Some("sess-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alquimia_sessions_run_concurrently_with_turns_in_order() {
    // The server answers infers only in groups of 16: the run finishes only
    // if all 16 sessions have a turn in flight at once, every turn.
    let server = TestServer::builder().answer_in_groups(16).start().await;
    let runner: Arc<dyn Runner> = Arc::new(alquimia(&server.url()));
    let datasets: Vec<Dataset> = (0..16)
        .map(|s| dataset(&format!("s{s}"), &["one", "two", "three"]))
        .collect();
    let engine = Engine::new(runner).concurrency(16);
    // A deadline only so that a failure does not hang.
    let results = tokio::time::timeout(Duration::from_secs(120), engine.run_datasets(datasets))
        .await
        .expect("16 sessions ran at once");
    assert_eq!(results.len(), 16);
    for (s, (data, summary)) in results.iter().enumerate() {
        let session = format!("s{s}");
        assert_eq!(data.session_id, session);
        assert_eq!(summary.successes, 3);
        for (turn, batch) in data.conversation.iter().enumerate() {
            assert_eq!(
                batch.assistant,
                alquimia_answer(&batch.query, turn + 1, &session)
            );
        }
        assert_eq!(server.turns(&session), vec!["one", "two", "three"]);
    }
}

#[tokio::test]
async fn alquimia_error_batches_keep_the_rest_of_the_run() {
    let server = TestServer::start().await;
    let runner = alquimia(&server.url());
    let data = dataset(
        "errs",
        &[
            "first",
            "boom #500",
            "where #nostream",
            "silent #empty",
            "bad #badjson",
            "last",
        ],
    );
    let (data, summary) = forge::run_dataset(&runner, data).await;
    let answers: Vec<&str> = data
        .conversation
        .iter()
        .map(|b| b.assistant.as_str())
        .collect();
    assert_eq!(answers[0], alquimia_answer("first", 1, "errs"));
    assert!(
        answers[1].starts_with(&format!(
            "[ERROR] HTTP 500 from {}/event/infer/web/agent-7?chat_history=50&agentspace=_default: ",
            server.url()
        )),
        "{}",
        answers[1]
    );
    assert!(
        answers[1].contains("requested by the query"),
        "{}",
        answers[1]
    );
    assert!(
        answers[2].starts_with("[ERROR] No stream_id returned from agent"),
        "{}",
        answers[2]
    );
    assert_eq!(answers[3], "[ERROR] Empty response from agent");
    assert!(
        answers[4].starts_with("[ERROR] malformed JSON from"),
        "{}",
        answers[4]
    );
    let turns = server.turns("errs");
    assert_eq!(answers[5], alquimia_answer("last", turns.len(), "errs"));
    assert_eq!(
        (summary.total_batches, summary.successes, summary.failures),
        (6, 2, 4)
    );
    // Failures keep their message in `observation`.
    assert_eq!(
        data.conversation[3].observation.as_deref(),
        Some("Empty response from agent")
    );
    assert!(data.conversation[0].observation.is_none());
}

#[tokio::test]
async fn alquimia_rejected_key_is_an_error_without_the_key() {
    let server = TestServer::builder().api_key("right-key").start().await;
    let mut config = alquimia_config(&server.url());
    config.api_key = Some("wrong-key-123".into());
    let runner = Alquimia::new(config).unwrap();
    let (data, summary) = forge::run_dataset(&runner, dataset("s", &["a", "b"])).await;
    for batch in &data.conversation {
        assert!(
            batch.assistant.starts_with("[ERROR] HTTP 401 from"),
            "{}",
            batch.assistant
        );
        assert!(
            !batch.assistant.contains("wrong-key-123"),
            "{}",
            batch.assistant
        );
    }
    assert_eq!((summary.successes, summary.failures), (0, 2));
    assert_eq!(
        server.requests()[0].authorization(),
        Some("Bearer wrong-key-123")
    );
}

#[tokio::test]
async fn connection_refused_is_transient_and_retried() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let runner = alquimia(&url);
    let data = dataset("s", &["a"]);
    let error = runner
        .call(&data.conversation[0], &Session::of(&data, &[]))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error}");
    assert!(error.message.starts_with("cannot connect to"), "{error}");
    assert!(!error.message.contains(KEY), "{error}");

    let results = Engine::new(Arc::new(runner))
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &["a", "b"])])
        .await;
    let (data, summary) = &results[0];
    assert_eq!(
        (summary.successes, summary.failures, summary.total_batches),
        (0, 2, 2)
    );
    for batch in &data.conversation {
        assert!(
            batch.assistant.starts_with("[ERROR] cannot connect to"),
            "{}",
            batch.assistant
        );
        assert!(
            batch.assistant.ends_with("(after 3 attempts)"),
            "{}",
            batch.assistant
        );
    }

    let openai = OpenAi::new(openai_config(&url)).unwrap();
    let error = openai
        .call(&data.conversation[0], &Session::of(data, &[]))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error}");
}

#[tokio::test]
async fn retry_after_and_transient_statuses() {
    let server = TestServer::start().await;
    let runner = alquimia(&server.url());
    let data = dataset("s", &["slow down #429", "busy #503", "bad #400"]);
    let session = Session::of(&data, &[]);
    let error = runner
        .call(&data.conversation[0], &session)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
    let error = runner
        .call(&data.conversation[1], &session)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    let error = runner
        .call(&data.conversation[2], &session)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert!(error.message.starts_with("HTTP 400 from"), "{error}");
}

#[tokio::test]
async fn rejected_turns_are_retried_until_accepted() {
    let server = TestServer::builder().fail_next(503, 2).start().await;
    let results = Engine::new(Arc::new(alquimia(&server.url())))
        .policy(retrying(3))
        .run_datasets(vec![dataset("s", &["hello"])])
        .await;
    assert_eq!(
        results[0].0.conversation[0].assistant,
        alquimia_answer("hello", 1, "s")
    );
    assert_eq!(server.turns_started(), 3);
    assert_eq!(server.turns("s"), vec!["hello"]);
}

#[tokio::test]
async fn a_dropped_stream_reattaches_without_resending_the_turn() {
    let server = TestServer::start().await;
    let results = Engine::new(Arc::new(alquimia(&server.url())))
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &["flaky #dropfirst", "next"])])
        .await;
    let (data, summary) = &results[0];
    assert_eq!(
        data.conversation[0].assistant,
        alquimia_answer("flaky #dropfirst", 1, "s")
    );
    assert_eq!(
        data.conversation[1].assistant,
        alquimia_answer("next", 2, "s")
    );
    assert_eq!(summary.successes, 2);
    let requests = server.requests();
    let infers = by_path(&requests, "/event/infer/");
    let streams = by_path(&requests, "/event/stream/");
    assert_eq!(infers.len(), 2, "the accepted turn was sent once");
    assert_eq!(streams.len(), 3, "its stream was read twice");
    assert_eq!(streams[0].path, streams[1].path);
    assert_eq!(server.turns("s"), vec!["flaky #dropfirst", "next"]);

    // A stream that always drops: transient, retried by re-attaching only,
    // then reported.
    let server = TestServer::start().await;
    let runner = alquimia(&server.url());
    let results = Engine::new(Arc::new(runner))
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &["broken #drop"])])
        .await;
    let batch = &results[0].0.conversation[0];
    assert!(
        batch.assistant.starts_with("[ERROR] stream "),
        "{}",
        batch.assistant
    );
    assert!(
        batch.assistant.contains("dropped before it ended"),
        "{}",
        batch.assistant
    );
    let requests = server.requests();
    assert_eq!(by_path(&requests, "/event/infer/").len(), 1);
    assert_eq!(by_path(&requests, "/event/stream/").len(), 3);
}

#[tokio::test]
async fn datasets_sharing_a_session_id_keep_their_own_turns() {
    // Fair-Forge best-of datasets: one session id and the same qa ids for
    // several assistants.
    let server = TestServer::start().await;
    let mut first = dataset("s", &["first #dropfirst", "first again"]);
    first.assistant_id = "a1".into();
    let mut second = dataset("s", &["second #dropfirst", "second again"]);
    second.assistant_id = "a2".into();
    let results = Engine::new(Arc::new(alquimia(&server.url())))
        .policy(retrying(2))
        .concurrency(2)
        .run_datasets(vec![first, second])
        .await;
    let answers = |i: usize| -> Vec<String> {
        results[i]
            .0
            .conversation
            .iter()
            .map(|b| b.assistant.clone())
            .collect()
    };
    let mut turns = server.turns("s");
    for (i, name) in [(0, "first"), (1, "second")] {
        let answers = answers(i);
        assert_eq!(answers.len(), 2);
        for (query, answer) in [format!("{name} #dropfirst"), format!("{name} again")]
            .iter()
            .zip(&answers)
        {
            // The turn number depends on how the two interleave.
            let turn = turns.iter().position(|t| t == query).unwrap() + 1;
            assert_eq!(answer, &alquimia_answer(query, turn, "s"), "{answers:?}");
        }
    }
    let requests = server.requests();
    assert_eq!(by_path(&requests, "/event/infer/").len(), 4);
    turns.sort();
    assert_eq!(
        turns,
        vec![
            "first #dropfirst",
            "first again",
            "second #dropfirst",
            "second again"
        ]
    );
}

#[tokio::test]
async fn alquimia_config_errors_and_env_fallbacks() {
    let _env = ENV_LOCK.lock().await;
    let server = TestServer::start().await;
    std::env::remove_var("ALQUIMIA_BASE_URL");
    std::env::remove_var("ALQUIMIA_API_KEY");
    let context = forge::registry::BuildContext::default();
    let build = |config: Value| forge::registry::build(config, &context).err();

    let error =
        build(json!({"type": "alquimia", "api_key": "k", "agent_id": "a", "channel_id": "c"}))
            .expect("missing base_url");
    assert!(error.message.contains("`base_url`"), "{error}");
    assert!(error.message.contains("ALQUIMIA_BASE_URL"), "{error}");
    let error = build(json!({"type": "alquimia", "base_url": server.url(), "api_key": "", "agent_id": "a", "channel_id": "c"}))
        .expect("missing api_key");
    assert!(error.message.contains("`api_key`"), "{error}");
    assert!(error.message.contains("ALQUIMIA_API_KEY"), "{error}");
    let error = build(
        json!({"type": "alquimia", "base_url": server.url(), "api_key": "k", "channel_id": "c"}),
    )
    .expect("missing agent_id");
    assert!(error.message.contains("`agent_id`"), "{error}");
    let error = build(
        json!({"type": "alquimia", "base_url": server.url(), "api_key": "k", "agnet_id": "a"}),
    )
    .expect("misspelt key");
    assert!(
        error.message.contains("did you mean `agent_id`?"),
        "{error}"
    );
    let error = build(json!({"type": "alquimia", "base_url": "ftp://x", "api_key": "k", "agent_id": "a", "channel_id": "c"}))
        .expect("bad scheme");
    assert!(error.message.contains("http://"), "{error}");
    assert!(
        server.requests().is_empty(),
        "no request before the config is valid"
    );

    std::env::set_var("ALQUIMIA_BASE_URL", server.url());
    std::env::set_var("ALQUIMIA_API_KEY", KEY);
    let runner = forge::registry::build(
        json!({"type": "alquimia", "base_url": "", "agent_id": "a", "channel_id": "c"}),
        &context,
    );
    std::env::remove_var("ALQUIMIA_BASE_URL");
    std::env::remove_var("ALQUIMIA_API_KEY");
    let runner = runner.expect("env fallbacks");
    let (data, _) = forge::run_dataset(&runner, dataset("env", &["hi"])).await;
    assert_eq!(
        data.conversation[0].assistant,
        alquimia_answer("hi", 1, "env")
    );
    assert_eq!(
        server.requests()[0].authorization(),
        Some("Bearer test-key")
    );
    assert_eq!(server.requests()[0].path, "/event/infer/c/a");
}

#[tokio::test]
async fn openai_history_on_sends_earlier_turns_with_the_context_once() {
    let server = TestServer::start().await;
    let mut config = openai_config(&server.url());
    config.system_prompt = Some("Be brief.".into());
    config.params.insert("temperature".into(), json!(0.2));
    config.params.insert("max_tokens".into(), json!(64));
    let runner = OpenAi::new(config).unwrap();
    let mut data = dataset("chat", &["q one", "q two", "q three"]);
    data.context = "Paris is in France.".into();
    let (data, summary) = forge::run_dataset(&runner, data).await;
    assert_eq!(summary.successes, 3);
    for (i, batch) in data.conversation.iter().enumerate() {
        assert_eq!(batch.assistant, openai_answer(&batch.query, i + 1));
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(request.authorization(), Some("Bearer test-key"));
    }
    let body = requests[2].body.as_ref().unwrap();
    assert_eq!(
        keys(body),
        ["model", "messages", "temperature", "max_tokens"]
    );
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Context:\nParis is in France.\n\nQuestion: q one"},
            {"role": "assistant", "content": openai_answer("q one", 1)},
            {"role": "user", "content": "q two"},
            {"role": "assistant", "content": openai_answer("q two", 2)},
            {"role": "user", "content": "q three"},
        ])
    );
    // The first turn's request is a prefix of the later ones.
    assert_eq!(
        requests[0].body.as_ref().unwrap()["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Context:\nParis is in France.\n\nQuestion: q one"},
        ])
    );
}

#[tokio::test]
async fn openai_history_off_sends_each_turn_on_its_own() {
    let server = TestServer::start().await;
    let mut config = openai_config(&server.url());
    config.history = false;
    let runner = OpenAi::new(config).unwrap();
    let mut data = dataset("solo", &["first", "second"]);
    data.context = "CTX".into();
    let (data, _) = forge::run_dataset(&runner, data).await;
    for batch in &data.conversation {
        assert_eq!(batch.assistant, openai_answer(&batch.query, 1));
    }
    let requests = server.requests();
    for (request, query) in requests.iter().zip(["first", "second"]) {
        assert_eq!(
            request.body.as_ref().unwrap()["messages"],
            json!([{"role": "user", "content": format!("Context:\nCTX\n\nQuestion: {query}")}])
        );
    }
}

#[tokio::test]
async fn openai_errors_logprobs_and_no_key() {
    let server = TestServer::start().await;
    let runner = OpenAi::new(openai_config(&server.url())).unwrap();
    let mut config = openai_config(&server.url());
    config.history = false;
    let single = OpenAi::new(config).unwrap();
    let (data, summary) = forge::run_dataset(
        &single,
        dataset(
            "o",
            &["ok", "x #500", "y #empty", "z #badjson", "p #logprobs"],
        ),
    )
    .await;
    let answers: Vec<&str> = data
        .conversation
        .iter()
        .map(|b| b.assistant.as_str())
        .collect();
    assert_eq!(answers[0], openai_answer("ok", 1));
    assert!(
        answers[1].starts_with("[ERROR] HTTP 500 from"),
        "{}",
        answers[1]
    );
    assert!(
        answers[2].starts_with("[ERROR] no answer"),
        "{}",
        answers[2]
    );
    assert!(
        answers[3].starts_with("[ERROR] malformed JSON"),
        "{}",
        answers[3]
    );
    assert_eq!(answers[4], openai_answer("p #logprobs", 1));
    assert_eq!(
        data.conversation[4].logprobs.as_ref().unwrap()["content"][0]["token"],
        "answer"
    );
    assert_eq!(data.conversation[0].logprobs, Some(forge::Object::new()));
    assert_eq!((summary.successes, summary.failures), (2, 3));

    // Failed turns are not replayed as history.
    let (data, _) = forge::run_dataset(&runner, dataset("h", &["a", "b #500", "c"])).await;
    assert_eq!(data.conversation[2].assistant, openai_answer("c", 2));

    let mut config = openai_config(&server.url());
    config.api_key = Some("nope-nope".into());
    let (data, _) = forge::run_dataset(&OpenAi::new(config).unwrap(), dataset("k", &["a"])).await;
    assert!(data.conversation[0]
        .assistant
        .starts_with("[ERROR] HTTP 401 from"));
    assert!(!data.conversation[0].assistant.contains("nope-nope"));

    // No key at all (Ollama): no Authorization header.
    let _env = ENV_LOCK.lock().await;
    std::env::remove_var("OPENAI_API_KEY");
    let open = TestServer::builder().without_auth().start().await;
    let mut config = openai_config(&open.url());
    config.api_key = None;
    let (data, _) = forge::run_dataset(&OpenAi::new(config).unwrap(), dataset("n", &["a"])).await;
    assert_eq!(data.conversation[0].assistant, openai_answer("a", 1));
    assert_eq!(open.requests()[0].authorization(), None);
}

#[tokio::test]
async fn payload_ollama_connector_never_sends_the_hosts_openai_key() {
    let _env = ENV_LOCK.lock().await;
    std::env::set_var("OPENAI_API_KEY", "sk-host-secret-openai-key");
    std::env::remove_var("LLM_API_KEY");
    let server = TestServer::builder().without_auth().start().await;
    let payload = json!({
        "datasets": [{
            "session_id": "o", "assistant_id": "m",
            "conversation": [{"qa_id": "1", "query": "hi"}]
        }],
        "connector": {
            "class_path": "langchain_ollama.chat_models.ChatOllama",
            "params": {"model": "llama", "base_url": format!("{}/v1", server.url())}
        }
    });
    let value = serde_json::to_value(forge::payload::run(&payload, 1).await).unwrap();
    std::env::remove_var("OPENAI_API_KEY");
    assert_eq!(value["success"], true, "{value}");
    assert_eq!(
        value["datasets"][0]["conversation"][0]["assistant"],
        openai_answer("hi", 1)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].authorization(), None, "{:?}", requests[0]);

    // A suite's `api_key: ""` is no key as well; a missing one still falls back.
    std::env::set_var("OPENAI_API_KEY", "sk-host-secret-openai-key");
    let mut config = openai_config(&server.url());
    config.api_key = Some("".into());
    forge::run_dataset(&OpenAi::new(config.clone()).unwrap(), dataset("e", &["a"])).await;
    config.api_key = None;
    forge::run_dataset(&OpenAi::new(config).unwrap(), dataset("f", &["b"])).await;
    std::env::remove_var("OPENAI_API_KEY");
    let requests = server.requests();
    assert_eq!(requests[1].authorization(), None);
    assert_eq!(
        requests[2].authorization(),
        Some("Bearer sk-host-secret-openai-key")
    );
}

#[tokio::test]
async fn error_bodies_echoing_the_key_at_the_snippet_boundary_never_show_it() {
    let key = "sk-echoed-0123456789abcdefghijkl";
    let leaks =
        |message: &str| (0..=key.len() - 8).any(|start| message.contains(&key[start..start + 8]));
    for offset in (270..=305).step_by(5) {
        for status in [401, 200] {
            // 401: the error body is quoted; 200: not JSON, quoted as malformed.
            let body = format!("{} {key} is not valid", "x".repeat(offset)).into_bytes();
            let url = forge_testkit::capture::fixed_server(status, body).await;
            let mut openai = openai_config(&url);
            openai.api_key = Some(key.into());
            let mut alquimia_cfg = alquimia_config(&url);
            alquimia_cfg.api_key = Some(key.into());
            let http = forge::registry::build(
                json!({"type": "http", "url": format!("{url}/x"),
                       "headers": {"Authorization": format!("Bearer {key}")},
                       "body": {"q": "{query}"}, "answer": "/a"}),
                &forge::registry::BuildContext::default(),
            )
            .unwrap();
            let runners: Vec<Arc<dyn Runner>> = vec![
                Arc::new(OpenAi::new(openai).unwrap()),
                Arc::new(Alquimia::new(alquimia_cfg).unwrap()),
                http,
            ];
            for runner in runners {
                let (data, _) = forge::run_dataset(&runner, dataset("s", &["q"])).await;
                let message = &data.conversation[0].assistant;
                assert!(message.starts_with("[ERROR]"), "{message}");
                assert!(!leaks(message), "{offset} {status}: {message}");
            }
        }
    }
}

#[tokio::test]
async fn reply_bodies_are_read_up_to_a_cap() {
    // An error body far past the cap (forge reads at most 64 KiB of one):
    // quoted from its start, and the key at its end (never read) cannot show.
    let mut body = vec![b'y'; 64 * 1024 * 4];
    body.extend_from_slice(b" key sk-0123456789abcdef");
    let url = forge_testkit::capture::fixed_server(500, body).await;
    let mut config = openai_config(&url);
    config.api_key = Some("sk-0123456789abcdef".into());
    let (data, _) = forge::run_dataset(&OpenAi::new(config).unwrap(), dataset("s", &["q"])).await;
    let message = &data.conversation[0].assistant;
    assert!(message.starts_with("[ERROR] HTTP 500 from"), "{message}");
    assert!(message.ends_with("yyy..."), "{message}");
}

#[tokio::test]
async fn openai_config_errors() {
    let context = forge::registry::BuildContext::default();
    let error = forge::registry::build(
        json!({"type": "openai", "base_url": "http://x/v1"}),
        &context,
    )
    .err()
    .expect("missing model");
    assert!(error.message.contains("model"), "{error}");
    let error = forge::registry::build(
        json!({"type": "openai", "model": "m", "temprature": 0}),
        &context,
    )
    .err()
    .expect("unknown key");
    assert!(
        error.message.contains("unknown key `temprature`"),
        "{error}"
    );
}

fn seed_payload(url: &str) -> Value {
    json!({
        "datasets": [
            {
                "session_id": "test-session-1",
                "assistant_id": "target-assistant",
                "language": "english",
                "context": "",
                "conversation": [
                    {
                        "qa_id": "test-1",
                        "query": "What is the capital of France?",
                        "assistant": "",
                        "ground_truth_assistant": "Paris is the capital of France."
                    }
                ]
            },
            {
                "session_id": "test-session-2",
                "assistant_id": "target-assistant",
                "conversation": [
                    {"qa_id": "a", "query": "hello"},
                    {"qa_id": "b", "query": "fail #500"}
                ]
            }
        ],
        "config": {
            "base_url": url,
            "api_key": KEY,
            "agent_id": "your-agent-id",
            "channel_id": "your-channel-id"
        }
    })
}

#[tokio::test]
async fn payload_alquimia_seed_request_gives_the_response_format() {
    let server = TestServer::start().await;
    let response = forge::payload::run(&seed_payload(&server.url()), 4).await;
    let value = serde_json::to_value(&response).unwrap();
    assert_eq!(
        keys(&value),
        ["success", "datasets", "summaries", "total_datasets"]
    );
    assert_eq!(value["success"], true);
    assert_eq!(value["total_datasets"], 2);
    let first = &value["datasets"][0];
    assert_eq!(
        keys(first),
        [
            "session_id",
            "assistant_id",
            "language",
            "context",
            "conversation"
        ]
    );
    let batch = &first["conversation"][0];
    assert_eq!(
        keys(batch),
        [
            "qa_id",
            "query",
            "assistant",
            "ground_truth_assistant",
            "observation",
            "agentic",
            "ground_truth_agentic",
            "logprobs",
            "weight"
        ]
    );
    assert_eq!(
        batch["assistant"],
        alquimia_answer("What is the capital of France?", 1, "test-session-1")
    );
    assert_eq!(
        batch["ground_truth_assistant"],
        "Paris is the capital of France."
    );
    let summary = &value["summaries"][0];
    assert_eq!(
        keys(summary),
        [
            "session_id",
            "total_batches",
            "successes",
            "failures",
            "total_execution_time_ms",
            "avg_batch_time_ms"
        ]
    );
    assert_eq!(summary["session_id"], "test-session-1");
    assert_eq!(
        (summary["successes"].as_u64(), summary["failures"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(summary["total_execution_time_ms"].is_f64());
    let second = &value["summaries"][1];
    assert_eq!(
        (
            second["total_batches"].as_u64(),
            second["successes"].as_u64(),
            second["failures"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let failed = &value["datasets"][1]["conversation"][1];
    assert!(failed["assistant"]
        .as_str()
        .unwrap()
        .starts_with("[ERROR] HTTP 500"));
    assert!(
        !value.to_string().contains(KEY),
        "the key never appears in the response"
    );
    let infer = &by_path(&server.requests(), "/event/infer/")[0].path.clone();
    assert_eq!(infer, "/event/infer/your-channel-id/your-agent-id");
}

#[tokio::test]
async fn payload_llm_connector_runs_against_the_server() {
    let server = TestServer::start().await;
    let payload = json!({
        "datasets": [{
            "session_id": "llm-1",
            "assistant_id": "model",
            "context": "Spain's capital is Madrid.",
            "conversation": [
                {"qa_id": "1", "query": "Capital of Spain?"},
                {"qa_id": "2", "query": "And its river?"}
            ]
        }],
        "connector": {
            "class_path": "langchain_openai.chat_models.ChatOpenAI",
            "params": {
                "model": "gpt-test",
                "api_key": KEY,
                "base_url": format!("{}/v1", server.url()),
                "temperature": 0
            }
        }
    });
    let value = serde_json::to_value(forge::payload::run(&payload, 4).await).unwrap();
    assert_eq!(value["success"], true, "{value}");
    let conversation = &value["datasets"][0]["conversation"];
    assert_eq!(
        conversation[0]["assistant"],
        openai_answer("Capital of Spain?", 1)
    );
    assert_eq!(
        conversation[1]["assistant"],
        openai_answer("And its river?", 1)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let body = requests[1].body.as_ref().unwrap();
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["temperature"], 0);
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "Context:\nSpain's capital is Madrid.\n\nQuestion: And its river?"}])
    );
}

#[tokio::test]
async fn payload_bad_requests_are_rejected_before_any_request() {
    let server = TestServer::start().await;
    let mut payload = seed_payload(&server.url());
    payload["config"]
        .as_object_mut()
        .unwrap()
        .remove("agent_id");
    let value = serde_json::to_value(forge::payload::run(&payload, 4).await).unwrap();
    assert_eq!(keys(&value), ["success", "error"]);
    assert_eq!(value["success"], false);
    assert!(
        value["error"].as_str().unwrap().contains("agent_id"),
        "{value}"
    );

    let mut payload = seed_payload(&server.url());
    payload["connector"] =
        json!({"class_path": "langchain_foo.Chat", "params": {"model": "m", "api_key": "k"}});
    let value = serde_json::to_value(forge::payload::run(&payload, 4).await).unwrap();
    assert_eq!(value["success"], false);
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("unknown class_path"),
        "{value}"
    );
    assert!(server.requests().is_empty());
}
