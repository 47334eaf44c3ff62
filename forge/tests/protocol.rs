//! Protocol fidelity against the loopback server: what real servers send
//! (keep-alive data lines, server errors, kept-alive connections closed
//! under the client, redirects, huge lines). Every assertion about what was
//! sent and accepted comes from the server's own request log.

mod support;
use forge_testkit::data::{dataset, datasets};
use support::{alquimia, build, openai, retrying};

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use forge::{Batch, Dataset, Engine, ErrorKind, Runner, Session, Suite};
use forge_testkit::{alquimia_answer, openai_answer, Fault, FaultPlan, LoggedRequest, TestServer};
use serde_json::{json, Value};

const KEY: &str = TestServer::DEFAULT_API_KEY;
const ALWAYS: usize = usize::MAX;

/// The requests of the turn asking `query` in `session`.
fn of_turn<'a>(log: &'a [LoggedRequest], session: &str, query: &str) -> Vec<&'a LoggedRequest> {
    log.iter()
        .filter(|r| r.session_id.as_deref() == Some(session) && r.query.as_deref() == Some(query))
        .collect()
}

fn answers_of(results: &[(Dataset, forge::Summary)]) -> Vec<String> {
    results
        .iter()
        .flat_map(|(d, _)| d.conversation.iter().map(|b| b.assistant.clone()))
        .collect()
}

#[tokio::test]
async fn keep_alive_data_lines_are_skipped() {
    let noisy = |answer, done| Fault::KeepAlives { answer, done };
    let plan = FaultPlan::new(0)
        .on_query("noisy", noisy(true, true))
        .on_query("noisy, no done", noisy(true, false))
        .on_query("silent", noisy(false, true))
        .on_query("silent, no done", noisy(false, false));
    let server = TestServer::builder().fault_plan(plan).start().await;
    let queries = [
        "noisy",
        "noisy, no done",
        "silent",
        "silent, no done",
        "plain",
    ];
    let results = Engine::new(alquimia(&server.url()))
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &queries)])
        .await;
    let answers = answers_of(&results);
    assert_eq!(answers[0], alquimia_answer("noisy", 1, "s"));
    assert_eq!(answers[1], alquimia_answer("noisy, no done", 2, "s"));
    // `[DONE]` with no answer: final.
    assert_eq!(answers[2], "[ERROR] Empty response from agent");
    // The body ends with no answer and no `[DONE]`: re-attached, then given up.
    assert!(
        answers[3].starts_with("[ERROR] Empty response from agent: stream ")
            && answers[3].ends_with("ended before any answer (after 3 attempts)"),
        "{}",
        answers[3]
    );
    assert_eq!(answers[4], alquimia_answer("plain", 5, "s"));
    let log = server.requests();
    for (query, reads) in [
        ("noisy", 1),
        ("noisy, no done", 1),
        ("silent", 1),
        ("silent, no done", 3),
    ] {
        let turn = of_turn(&log, "s", query);
        assert_eq!(turn.iter().filter(|r| r.is_infer()).count(), 1, "{query}");
        let streams: Vec<_> = turn.iter().filter(|r| r.is_stream()).collect();
        assert_eq!(streams.len(), reads, "{query}");
        assert!(streams
            .iter()
            .all(|r| r.fault.as_deref() == Some("keep-alives")));
    }
}

/// Injected 5xx (and 408 / 409) answers are retried; a turn is never sent
/// again once accepted, as the server's log shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_no_accepted_turn_is_sent_twice() {
    let reject = |status, times| Fault::Reject {
        status,
        times,
        retry_after: 0,
    };
    let plan = FaultPlan::new(11)
        .share(10, reject(500, 1))
        .share(5, reject(500, 3))
        .share(2, reject(408, 1))
        .share(2, reject(409, 2))
        .share(2, reject(501, 1))
        .share(5, Fault::DropStream { times: 1 })
        .share(5, Fault::CloseKeptAlive { times: 1 });
    let input = datasets(16, 10);
    let server = TestServer::builder().fault_plan(plan.clone()).start().await;
    let results = Engine::new(alquimia(&server.url()))
        .policy(retrying(6))
        .concurrency(4)
        .run_datasets(input.clone())
        .await;
    let log = server.requests();
    let mut injected = 0;
    for (data, original) in results.iter().map(|(d, _)| d).zip(&input) {
        let session = &original.session_id;
        let accepted = server.turns(session);
        let unique: HashSet<&String> = accepted.iter().collect();
        assert_eq!(unique.len(), accepted.len(), "accepted twice: {accepted:?}");
        for (turn, batch) in data.conversation.iter().enumerate() {
            let context = format!("{session}/{}: {}", batch.qa_id, batch.assistant);
            assert_eq!(
                batch.assistant,
                alquimia_answer(&batch.query, turn + 1, session),
                "{context}"
            );
            let mine = of_turn(&log, session, &batch.query);
            let infers: Vec<_> = mine.iter().filter(|r| r.is_infer()).collect();
            let times = match plan.fault(session, &batch.query) {
                Some(Fault::Reject { times, .. }) => times,
                _ => 0,
            };
            injected += times;
            assert_eq!(infers.len(), times + 1, "{context}");
            // Every infer but the last was refused; the last was accepted,
            // and nothing was sent after it but reads of its stream.
            let (last, refused) = infers.split_last().unwrap();
            assert!(refused
                .iter()
                .all(|r| r.status >= 400 && r.stream_id.is_none()));
            assert_eq!(last.status, 200, "{context}");
            let stream_id = last.stream_id.clone();
            assert!(stream_id.is_some());
            // The log is in arrival order.
            let accepted_at = mine.iter().position(|r| std::ptr::eq(*r, **last)).unwrap();
            let after = &mine[accepted_at + 1..];
            assert!(!after.is_empty());
            assert!(
                after
                    .iter()
                    .all(|r| r.is_stream() && r.stream_id == stream_id),
                "{context}"
            );
        }
    }
    assert!(injected >= 16, "the plan injected only {injected} errors");

    // Chat completions: stateless, so the same statuses are retried.
    let server = TestServer::builder().fault_plan(plan.clone()).start().await;
    let results = Engine::new(openai(&server.url()))
        .policy(retrying(6))
        .concurrency(4)
        .run_datasets(input.clone())
        .await;
    let log = server.requests();
    for batch in results.iter().flat_map(|(d, _)| &d.conversation) {
        assert_eq!(batch.assistant, openai_answer(&batch.query, 1));
        let times = match plan.fault("", &batch.query) {
            Some(Fault::Reject { times, .. }) => times,
            _ => 0,
        };
        let sent = log
            .iter()
            .filter(|r| r.query.as_deref() == Some(&batch.query))
            .count();
        assert_eq!(sent, times + 1, "{}", batch.query);
    }
}

#[tokio::test]
async fn retry_on_sets_the_retried_statuses() {
    let busy = Fault::Reject {
        status: 503,
        times: 1,
        retry_after: 0,
    };
    let plan = FaultPlan::new(0).on_query("busy", busy);
    let server = TestServer::builder().fault_plan(plan.clone()).start().await;
    let count = |server: &TestServer, query: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.query.as_deref() == Some(query))
            .count()
    };
    let queries = ["boom #500", "busy", "slow #429"];

    // alquimia, retry_on: [503]: 500 and 429 fail at once.
    let runner = build(
        json!({"type": "alquimia", "base_url": server.url(), "api_key": KEY,
                              "agent_id": "agent", "channel_id": "web", "retry_on": [503]}),
    );
    let results = Engine::new(runner)
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &queries)])
        .await;
    let answers = answers_of(&results);
    assert!(
        answers[0].starts_with("[ERROR] HTTP 500 from"),
        "{}",
        answers[0]
    );
    assert!(!answers[0].contains("(after"), "{}", answers[0]);
    assert_eq!(answers[1], alquimia_answer("busy", 1, "s"));
    assert!(
        answers[2].starts_with("[ERROR] HTTP 429 from"),
        "{}",
        answers[2]
    );
    assert_eq!(
        (count(&server, "boom #500"), count(&server, "slow #429")),
        (1, 1)
    );

    // openai, retry_on: [429]: the 503 fails at once.
    let server = TestServer::builder().fault_plan(plan.clone()).start().await;
    let runner = build(
        json!({"type": "openai", "base_url": format!("{}/v1", server.url()),
                              "api_key": KEY, "model": "m", "retry_on": [429]}),
    );
    let results = Engine::new(runner)
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &["busy"])])
        .await;
    assert!(answers_of(&results)[0].starts_with("[ERROR] HTTP 503 from"));
    assert_eq!(count(&server, "busy"), 1);

    // http keeps 429 / 502 / 503 / 504 by default: a 500 from an unknown
    // agent is not retried unless `retry_on` says so.
    let http = |server: &TestServer, retry_on: Option<Value>| {
        let mut config = json!({"type": "http",
            "url": format!("{}/v1/chat/completions", server.url()),
            "headers": {"Authorization": format!("Bearer {KEY}")},
            "body": {"messages": [{"role": "user", "content": "{query}"}]},
            "answer": "/choices/0/message/content"});
        if let Some(retry_on) = retry_on {
            config["retry_on"] = retry_on;
        }
        build(config)
    };
    let plan = FaultPlan::new(0).on_query(
        "flaky",
        Fault::Reject {
            status: 500,
            times: 1,
            retry_after: 0,
        },
    );
    let server = TestServer::builder().fault_plan(plan.clone()).start().await;
    let results = Engine::new(http(&server, None))
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &["flaky"])])
        .await;
    assert!(answers_of(&results)[0].starts_with("[ERROR] HTTP 500 from"));
    assert_eq!(count(&server, "flaky"), 1);
    let server = TestServer::builder().fault_plan(plan).start().await;
    let results = Engine::new(http(&server, Some(json!([500]))))
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &["flaky"])])
        .await;
    assert_eq!(answers_of(&results)[0], openai_answer("flaky", 1));
    assert_eq!(count(&server, "flaky"), 2);
}

#[test]
fn retry_on_outside_100_to_599_is_a_located_config_error() {
    let runners = [
        "{type: alquimia, base_url: 'http://h', api_key: k, agent_id: a, channel_id: c, retry_on: [429, RETRY]}",
        "{type: openai, model: m, api_key: k, retry_on: [RETRY]}",
        "{type: http, url: 'http://h/x', retry_on: [RETRY]}",
    ];
    for runner in runners {
        // Where: a status out of range at the list, a string at itself.
        let list = "runner: ".len() + runner.find('[').expect("a list") + 1;
        let element = "runner: ".len() + runner.find("RETRY").expect("RETRY") + 1;
        for (bad, want, column) in [
            (
                "700",
                "`retry_on`: 700 is not an HTTP status (100..=599)",
                list,
            ),
            (
                "99",
                "`retry_on`: 99 is not an HTTP status (100..=599)",
                list,
            ),
            (
                "-1",
                "`retry_on`: -1 is not an HTTP status (100..=599)",
                list,
            ),
            ("'503'", "invalid type: string \"503\"", element),
        ] {
            let text = format!(
                "retries: 2\nrunner: {}\ndatasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {{qa_id: q, query: hi}}\n",
                runner.replace("RETRY", bad)
            );
            // The runner is built at load: the error is the load's.
            let Err(error) = Suite::parse(Path::new("s.yaml"), &text) else {
                panic!("{runner} {bad}: loaded");
            };
            let error = error.to_string();
            assert!(
                error.starts_with(&format!("s.yaml:2:{column}: ")),
                "{error}"
            );
            assert!(error.contains(want), "{runner} {bad}: {error}");
        }
    }
}

#[tokio::test]
async fn a_stream_whose_kept_alive_connection_closes_is_reattached() {
    let plan = FaultPlan::new(0).on_query("closed", Fault::CloseKeptAlive { times: 1 });
    let server = TestServer::builder().fault_plan(plan.clone()).start().await;
    let results = Engine::new(alquimia(&server.url()))
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &["warm up", "closed", "after"])])
        .await;
    assert_eq!(
        answers_of(&results),
        [
            alquimia_answer("warm up", 1, "s"),
            alquimia_answer("closed", 2, "s"),
            alquimia_answer("after", 3, "s"),
        ]
    );
    let log = server.requests();
    let turn = of_turn(&log, "s", "closed");
    let infers: Vec<_> = turn.iter().filter(|r| r.is_infer()).collect();
    let streams: Vec<_> = turn.iter().filter(|r| r.is_stream()).collect();
    assert_eq!(infers.len(), 1, "sent once");
    assert_eq!(streams.len(), 2, "re-attached once");
    assert_eq!(streams[0].fault.as_deref(), Some("close"));
    assert_eq!(streams[0].status, 0);
    // That request usually comes on the connection the infer reply kept
    // alive (`connection_request` > 1); the pool may also open a new one,
    // which the server closes the same way: the client sees a connection
    // closed before any answer either way.
    assert_eq!(streams[0].stream_id, streams[1].stream_id);

    // Without retries the failure is transient (re-attachable), not final.
    let server = TestServer::builder().fault_plan(plan).start().await;
    let runner = alquimia(&server.url());
    let data = dataset("s", &["closed"]);
    let error = runner
        .call(&data.conversation[0], &Session::of(&data, &[]))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error}");
    assert!(error.message.contains("dropped before it ended"), "{error}");
}

/// The answer of `runner` to a turn `server` redirects elsewhere.
async fn refused_redirect(runner: Arc<dyn Runner>, server: &TestServer) -> String {
    let before = server.requests().len();
    let results = Engine::new(runner)
        .policy(retrying(2))
        .run_datasets(vec![dataset("s", &["moved"])])
        .await;
    let answer = answers_of(&results).remove(0);
    // Final: the redirecting server was asked once.
    assert_eq!(server.requests().len(), before + 1, "{answer}");
    answer
}

#[tokio::test]
async fn redirects_to_another_origin_are_not_followed() {
    let elsewhere = TestServer::builder().without_auth().start().await;
    for status in [301, 302, 303, 307, 308] {
        let plan = FaultPlan::new(0).on_query(
            "moved",
            Fault::Redirect {
                status,
                to: Some(elsewhere.addr()),
                times: ALWAYS,
            },
        );
        let server = TestServer::builder().fault_plan(plan).start().await;
        let secret = "sekrit-header-value-123";
        let runners = [
            alquimia(&server.url()),
            openai(&server.url()),
            build(json!({"type": "http",
                "url": format!("{}/v1/chat/completions?token=query-secret", server.url()),
                "headers": {"Authorization": format!("Bearer {KEY}"), "X-Api-Key": secret},
                "body": {"messages": [{"role": "user", "content": "{query}"}]},
                "answer": "/choices/0/message/content"})),
        ];
        for runner in runners {
            let answer = refused_redirect(runner, &server).await;
            let want = format!(
                "{} redirected to another origin, {}; not followed",
                server.url(),
                elsewhere.url()
            );
            assert!(answer.starts_with("[ERROR] "), "{answer}");
            assert!(answer.contains(&want), "{status}: {answer}");
            assert!(!answer.contains(secret) && !answer.contains("query-secret"));
        }
        let requests = server.requests();
        assert!(requests
            .iter()
            .all(|r| r.fault.as_deref() == Some(&format!("redirect {status}"))));
        assert_eq!(requests.len(), 3);
    }
    assert_eq!(elsewhere.requests(), [], "nothing reached the other server");
}

#[tokio::test]
async fn same_origin_redirects_are_followed_a_few_times() {
    let plan = FaultPlan::new(0)
        .on_query(
            "moved",
            Fault::Redirect {
                status: 307,
                to: None,
                times: 2,
            },
        )
        .on_query(
            "loop",
            Fault::Redirect {
                status: 308,
                to: None,
                times: ALWAYS,
            },
        );
    let server = TestServer::builder().fault_plan(plan.clone()).start().await;
    let results = Engine::new(alquimia(&server.url()))
        .policy(retrying(1))
        .run_datasets(vec![dataset("s", &["moved", "loop"])])
        .await;
    let answers = answers_of(&results);
    assert_eq!(answers[0], alquimia_answer("moved", 1, "s"));
    // Redirected with its method, body and key.
    let log = server.requests();
    let infers: Vec<_> = of_turn(&log, "s", "moved")
        .into_iter()
        .filter(|r| r.is_infer())
        .collect();
    assert_eq!(infers.len(), 3);
    assert!(infers
        .iter()
        .all(|r| r.method == "POST" && r.authorization() == Some(&format!("Bearer {KEY}"))));
    assert_eq!(infers[2].status, 200);
    assert_eq!(infers[0].query_string, infers[2].query_string);
    // A loop is given up after 5 redirects, and not retried.
    assert!(
        answers[1].contains(&format!(
            "{} redirected more than 5 times; not followed",
            server.url()
        )),
        "{}",
        answers[1]
    );
    let loops = of_turn(&log, "s", "loop");
    assert_eq!(loops.len(), 6, "the request and 5 redirects");

    // The http runner: its headers and body follow within the origin.
    let server = TestServer::builder().fault_plan(plan).start().await;
    let runner = build(json!({"type": "http",
        "url": format!("{}/v1/chat/completions", server.url()),
        "headers": {"Authorization": format!("Bearer {KEY}"), "X-Api-Key": "kept"},
        "body": {"messages": [{"role": "user", "content": "{query}"}]},
        "answer": "/choices/0/message/content"}));
    let results = Engine::new(runner)
        .run_datasets(vec![dataset("s", &["moved"])])
        .await;
    assert_eq!(answers_of(&results)[0], openai_answer("moved", 1));
    let log = server.requests();
    assert_eq!(log.len(), 3);
    assert!(log
        .iter()
        .all(|r| r.header("x-api-key") == Some("kept") && r.body == log[0].body));
}

#[tokio::test]
async fn long_lines_are_read_and_the_size_caps_hold() {
    const MIB: usize = 1 << 20;
    let huge = |line_bytes, lines| Fault::HugeLines { line_bytes, lines };
    let plan = FaultPlan::new(0)
        .on_query("long", huge(4 * MIB, 2))
        .on_query("too long", huge(32 * MIB + 1, 1))
        .on_query("at the cap", huge(32 * MIB, 1))
        .on_query("too much", huge(8 * MIB, 9));
    let server = TestServer::builder().fault_plan(plan).start().await;
    let results = Engine::new(alquimia(&server.url()))
        .policy(retrying(1))
        .run_datasets(vec![dataset(
            "s",
            &["long", "too long", "at the cap", "too much"],
        )])
        .await;
    let answers = answers_of(&results);
    assert_eq!(answers[0], alquimia_answer("long", 1, "s"));
    let url = server.url();
    assert_eq!(
        answers[1],
        format!("[ERROR] stream stream-2 from {url}/event/stream/stream-2?response_only=true sent an event line longer than 32 MiB; not read")
    );
    assert_eq!(answers[2], alquimia_answer("at the cap", 3, "s"));
    assert_eq!(
        answers[3],
        format!("[ERROR] stream stream-4 from {url}/event/stream/stream-4?response_only=true sent more than 64 MiB in all; not read")
    );
    // Final: each stream read once.
    let log = server.requests();
    assert_eq!(log.iter().filter(|r| r.is_stream()).count(), 4);
}

#[tokio::test]
async fn realistic_streams_are_read_whole() {
    // CRLF, comments, `event:` / `id:` / `retry:`, JSON over two data lines,
    // events split across chunks, `[DONE]`: the default stream.
    let server = TestServer::start().await;
    let runner = alquimia(&server.url());
    let mut data = Dataset::new("s", "agent");
    data.conversation
        .push(Batch::new("q1", "ünïcødé \"quotes\"\nand lines"));
    let (data, summary) = forge::Engine::new(runner).run_one(data).await;
    assert_eq!(summary.successes, 1);
    assert_eq!(
        data.conversation[0].assistant,
        alquimia_answer("ünïcødé \"quotes\"\nand lines", 1, "s")
    );
}
