//! Fault injection against the loopback server: a deterministic plan of
//! rejections, dropped streams and delays. Every assertion about what was
//! sent and accepted comes from the server's own request log.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use forge::runners::alquimia::{Alquimia, AlquimiaConfig};
use forge::{Batch, Dataset, Engine, Runner, Suite};
use forge_testkit::{alquimia_answer, openai_answer, Fault, FaultPlan, LoggedRequest, TestServer};
use serde_json::json;

const ALWAYS: usize = usize::MAX;

mod support;
use forge_testkit::data::datasets;
use support::{alquimia, policy};

/// What the engine must make of a turn with `fault` when it retries up to
/// `retries` times: (succeeds, infer requests, stream reads).
fn expected(fault: Option<Fault>, retries: u32) -> (bool, usize, usize) {
    let attempts = retries as usize + 1;
    match fault {
        None
        | Some(Fault::EchoAuthorization)
        | Some(Fault::KeepAlives {
            answer: true,
            done: _,
        }) => (true, 1, 1),
        // `[DONE]` and no answer: final.
        Some(Fault::KeepAlives {
            answer: false,
            done: true,
        }) => (false, 1, 1),
        // The body ends with no answer: re-attached on every attempt.
        Some(Fault::KeepAlives {
            answer: false,
            done: false,
        }) => (false, 1, attempts),
        Some(Fault::Reject {
            status: 408 | 409 | 429 | 500..=599,
            times,
            ..
        }) => {
            if times < attempts {
                (true, times + 1, 1)
            } else {
                (false, attempts, 0)
            }
        }
        Some(Fault::Reject { .. }) => (false, 1, 0),
        // Cut off during infer: the turn may be accepted, never sent twice.
        Some(Fault::DelayInfer { .. }) => (false, 1, 0),
        Some(Fault::DropStream { times })
        | Some(Fault::Delay { times, .. })
        | Some(Fault::CloseKeptAlive { times }) => {
            if times < attempts {
                (true, 1, times + 1)
            } else {
                (false, 1, attempts)
            }
        }
        other => panic!("no expectation for {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_batch_once_and_no_accepted_turn_sent_twice() {
    let retries = 3;
    let plan = FaultPlan::new(7)
        .share(
            15,
            Fault::Reject {
                status: 503,
                times: 2,
                retry_after: 0,
            },
        )
        .share(
            10,
            Fault::Reject {
                status: 429,
                times: 1,
                retry_after: 0,
            },
        )
        .share(
            8,
            Fault::Reject {
                status: 500,
                times: ALWAYS,
                retry_after: 0,
            },
        )
        .share(
            5,
            Fault::Reject {
                status: 400,
                times: ALWAYS,
                retry_after: 0,
            },
        )
        .share(
            5,
            Fault::Reject {
                status: 502,
                times: ALWAYS,
                retry_after: 0,
            },
        )
        .share(12, Fault::DropStream { times: 1 })
        .share(5, Fault::DropStream { times: ALWAYS })
        .share(
            10,
            Fault::Delay {
                // Far past the timeout: only the timeout ends the wait.
                delay: Duration::from_secs(60),
                times: 1,
            },
        )
        .share(6, Fault::CloseKeptAlive { times: 1 })
        .share(
            6,
            Fault::KeepAlives {
                answer: true,
                done: true,
            },
        );
    let server = TestServer::builder().fault_plan(plan.clone()).start().await;
    let input = datasets(8, 5);
    let results = Engine::new(alquimia(&server.url()))
        .policy(policy(3_000, retries, Duration::from_secs(2)))
        .concurrency(3)
        .run_datasets(input.clone())
        .await;
    let log = server.requests();

    // The plan covers every kind of fault at least once.
    let faults: Vec<Option<Fault>> = input
        .iter()
        .flat_map(|d| {
            d.conversation
                .iter()
                .map(|b| plan.fault(&d.session_id, &b.query))
        })
        .collect();
    for kind in [
        "Reject",
        "DropStream",
        "Delay",
        "CloseKeptAlive",
        "KeepAlives",
    ] {
        assert!(
            faults
                .iter()
                .flatten()
                .any(|f| format!("{f:?}").starts_with(kind)),
            "the plan should inject {kind}: {faults:?}"
        );
    }
    assert!(faults.iter().any(Option::is_none));

    assert_eq!(results.len(), input.len());
    for ((data, summary), original) in results.iter().zip(&input) {
        let session = &original.session_id;
        assert_eq!(&data.session_id, session);
        // Every batch exactly once, in order.
        let ids: Vec<&str> = data.conversation.iter().map(|b| b.qa_id.as_str()).collect();
        let want: Vec<&str> = original
            .conversation
            .iter()
            .map(|b| b.qa_id.as_str())
            .collect();
        assert_eq!(ids, want);
        assert_eq!(summary.total_batches, want.len());
        assert_eq!(summary.successes + summary.failures, want.len());

        let accepted = server.turns(session);
        let unique: HashSet<&String> = accepted.iter().collect();
        assert_eq!(
            unique.len(),
            accepted.len(),
            "a turn was accepted twice: {accepted:?}"
        );
        for batch in &data.conversation {
            let fault = plan.fault(session, &batch.query);
            let (succeeds, infers, reads) = expected(fault, retries);
            let mine: Vec<&LoggedRequest> = log
                .iter()
                .filter(|r| {
                    r.session_id.as_deref() == Some(session)
                        && r.query.as_deref() == Some(&batch.query)
                })
                .collect();
            let infer: Vec<&&LoggedRequest> = mine.iter().filter(|r| r.is_infer()).collect();
            let streams: Vec<&&LoggedRequest> = mine.iter().filter(|r| r.is_stream()).collect();
            let context = format!(
                "{session}/{} with {fault:?}: {}",
                batch.qa_id, batch.assistant
            );
            assert_eq!(infer.len(), infers, "infer requests of {context}");
            assert_eq!(streams.len(), reads, "stream reads of {context}");
            // Accepted at most once, and never sent again after acceptance.
            let accepted_at: Vec<usize> = infer
                .iter()
                .enumerate()
                .filter(|(_, r)| r.stream_id.is_some())
                .map(|(i, _)| i)
                .collect();
            assert!(accepted_at.len() <= 1, "{context}");
            if let Some(&i) = accepted_at.first() {
                assert_eq!(i, infer.len() - 1, "infer after acceptance: {context}");
                let id = infer[i].stream_id.clone();
                assert!(streams.iter().all(|s| s.stream_id == id), "{context}");
            }
            assert_eq!(
                batch.assistant.starts_with("[ERROR]"),
                !succeeds,
                "outcome of {context}"
            );
            if succeeds {
                let turn = accepted.iter().position(|q| q == &batch.query).unwrap() + 1;
                assert_eq!(
                    batch.assistant,
                    alquimia_answer(&batch.query, turn, session)
                );
            } else {
                match fault {
                    Some(Fault::Reject { status: 400, .. }) => {
                        assert!(
                            batch.assistant.starts_with("[ERROR] HTTP 400 from"),
                            "{context}"
                        );
                        assert!(
                            !batch.assistant.contains("(after"),
                            "not retried: {context}"
                        );
                    }
                    Some(Fault::Reject {
                        status: status @ (500 | 502),
                        ..
                    }) => {
                        assert!(
                            batch
                                .assistant
                                .starts_with(&format!("[ERROR] HTTP {status} from")),
                            "{context}"
                        );
                        assert!(batch.assistant.ends_with("(after 4 attempts)"), "{context}");
                    }
                    Some(Fault::DropStream { .. }) => {
                        assert!(
                            batch.assistant.contains("dropped before it ended"),
                            "{context}"
                        );
                        assert!(batch.assistant.ends_with("(after 4 attempts)"), "{context}");
                    }
                    other => panic!("unexpected failure with {other:?}: {context}"),
                }
            }
        }
    }
    // Nothing reached the server that is not a turn of the input.
    assert!(log
        .iter()
        .all(|r| r.session_id.is_some() && r.query.is_some()));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let plan = FaultPlan::new(0).on_query(
        "slow down",
        Fault::Reject {
            status: 429,
            times: 1,
            retry_after: 1,
        },
    );
    let server = TestServer::builder().fault_plan(plan).start().await;
    let mut data = Dataset::new("s", "agent");
    data.conversation.push(Batch::new("q1", "slow down"));
    let start = Instant::now();
    let results = Engine::new(alquimia(&server.url()))
        .policy(policy(5_000, 1, Duration::from_secs(5)))
        .run_datasets(vec![data])
        .await;
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        results[0].0.conversation[0].assistant,
        alquimia_answer("slow down", 1, "s")
    );
    let log = server.requests();
    let infers: Vec<&LoggedRequest> = log.iter().filter(|r| r.is_infer()).collect();
    assert_eq!(infers.len(), 2);
    assert_eq!(infers[0].status, 429);
    assert_eq!(infers[0].fault.as_deref(), Some("reject 429"));
    assert_eq!(infers[1].status, 200);
    let gap = infers[1].at - infers[0].at;
    assert!(
        gap >= Duration::from_millis(990),
        "Retry-After: 1 ignored: {gap:?}"
    );
}

/// A runner on tokio's clock: it records when each attempt starts and
/// fails the first `fails` attempts of every turn as transient, asking for
/// `retry_after`.
struct Clocked {
    fails: usize,
    retry_after: Option<Duration>,
    attempts: std::sync::Mutex<Vec<(String, tokio::time::Instant)>>,
}

impl Clocked {
    fn new(fails: usize, retry_after: Option<Duration>) -> Arc<Clocked> {
        Arc::new(Clocked {
            fails,
            retry_after,
            attempts: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The gaps between consecutive attempt starts, in start order.
    fn gaps(&self) -> Vec<Duration> {
        let mut starts: Vec<_> = self.attempts.lock().unwrap().iter().map(|a| a.1).collect();
        starts.sort();
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

#[forge::async_trait]
impl Runner for Clocked {
    async fn call(
        &self,
        batch: &Batch,
        session: &forge::Session<'_>,
    ) -> Result<forge::Reply, forge::RunError> {
        let key = format!("{}/{}", session.session_id, batch.qa_id);
        let earlier = {
            let mut attempts = self.attempts.lock().unwrap();
            let earlier = attempts.iter().filter(|(k, _)| *k == key).count();
            attempts.push((key, tokio::time::Instant::now()));
            earlier
        };
        if earlier < self.fails {
            return Err(forge::RunError::transient("busy").with_retry_after(self.retry_after));
        }
        Ok(forge::Reply::text(batch.query.clone()))
    }
}

// The clock is the subject: tokio's paused clock, which moves only when
// every task waits, so the gaps below are exact on any machine.
#[tokio::test(start_paused = true)]
async fn backoff_max_caps_a_long_retry_after() {
    let runner = Clocked::new(1, Some(Duration::from_secs(30)));
    let results = Engine::new(runner.clone())
        .policy(policy(5_000, 1, Duration::from_millis(100)))
        .run_datasets(datasets(1, 1))
        .await;
    assert_eq!(results[0].1.successes, 1);
    assert_eq!(runner.gaps(), [Duration::from_millis(100)]);

    // Under `max`, the server's delay is waited exactly.
    let runner = Clocked::new(2, Some(Duration::from_millis(70)));
    let results = Engine::new(runner.clone())
        .policy(policy(5_000, 2, Duration::from_secs(1)))
        .run_datasets(datasets(1, 1))
        .await;
    assert_eq!(results[0].1.successes, 1);
    assert_eq!(runner.gaps(), [Duration::from_millis(70); 2]);
}

#[tokio::test]
async fn timeouts_are_retried_per_runner() {
    // Far past the timeout, which alone ends the wait: an ordinary turn
    // has the whole timeout, however busy the machine.
    let delayed = Fault::Delay {
        delay: Duration::from_secs(60),
        times: 1,
    };
    let plan = FaultPlan::new(0).on_query("late", delayed).on_query(
        "busy",
        Fault::Reject {
            status: 503,
            times: 1,
            retry_after: 0,
        },
    );
    let server = TestServer::builder().fault_plan(plan).start().await;
    let mut data = Dataset::new("s", "agent");
    data.conversation.push(Batch::new("q1", "late"));
    data.conversation.push(Batch::new("q2", "busy"));

    // openai: stateless requests, so the timed-out turn is sent again.
    let openai = forge::registry::build(
        json!({"type": "openai", "base_url": format!("{}/v1", server.url()),
               "api_key": TestServer::DEFAULT_API_KEY, "model": "m", "history": false}),
        &forge::registry::BuildContext::default(),
    )
    .unwrap();
    let results = Engine::new(openai)
        .policy(policy(3_000, 2, Duration::from_millis(50)))
        .run_datasets(vec![data.clone()])
        .await;
    let conversation = &results[0].0.conversation;
    assert_eq!(conversation[0].assistant, openai_answer("late", 1));
    assert_eq!(conversation[1].assistant, openai_answer("busy", 1));
    let log = server.requests();
    let count = |q: &str| log.iter().filter(|r| r.query.as_deref() == Some(q)).count();
    assert_eq!((count("late"), count("busy")), (2, 2));

    // http: the timed-out turn may have been accepted, so it is not sent
    // again; the rejected one is.
    let server = TestServer::builder()
        .fault_plan(FaultPlan::new(0).on_query("late", delayed).on_query(
            "busy",
            Fault::Reject {
                status: 503,
                times: 1,
                retry_after: 0,
            },
        ))
        .start()
        .await;
    let http = forge::registry::build(
        json!({"type": "http", "url": format!("{}/v1/chat/completions", server.url()),
               "headers": {"Authorization": "Bearer test-key"},
               "body": {"messages": [{"role": "user", "content": "{query}"}]},
               "answer": "/choices/0/message/content"}),
        &forge::registry::BuildContext::default(),
    )
    .unwrap();
    let results = Engine::new(http)
        .policy(policy(3_000, 2, Duration::from_millis(50)))
        .run_datasets(vec![data])
        .await;
    let conversation = &results[0].0.conversation;
    assert_eq!(conversation[0].assistant, "[ERROR] timed out after 3s");
    assert_eq!(conversation[1].assistant, openai_answer("busy", 1));
    let log = server.requests();
    let count = |q: &str| log.iter().filter(|r| r.query.as_deref() == Some(q)).count();
    assert_eq!((count("late"), count("busy")), (1, 2));
}

#[tokio::test]
async fn a_turn_cut_off_during_infer_is_never_sent_twice() {
    let slow_infer = Fault::DelayInfer {
        delay: Duration::from_secs(60),
        times: ALWAYS,
    };
    let infers = |server: &TestServer, query: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.is_infer() && r.query.as_deref() == Some(query))
            .count()
    };

    // The suite's timeout fires while the infer request waits for its reply.
    let server = TestServer::builder()
        .fault_plan(FaultPlan::new(0).on_query("slow", slow_infer))
        .start()
        .await;
    let mut data = Dataset::new("s", "agent");
    data.conversation.push(Batch::new("q1", "slow"));
    data.conversation.push(Batch::new("q2", "next"));
    let results = Engine::new(alquimia(&server.url()))
        .policy(policy(3_000, 3, Duration::from_millis(20)))
        .run_datasets(vec![data.clone()])
        .await;
    let conversation = &results[0].0.conversation;
    assert!(
        conversation[0]
            .assistant
            .contains("the agent may already have this turn"),
        "{}",
        conversation[0].assistant
    );
    assert_eq!(conversation[1].assistant, alquimia_answer("next", 2, "s"));
    assert_eq!(infers(&server, "slow"), 1, "{:#?}", server.requests());
    assert_eq!(server.turns("s"), vec!["slow", "next"]);

    // The runner's own infer timeout fires while reading the reply.
    let server = TestServer::builder()
        .fault_plan(FaultPlan::new(0).on_query("slow", slow_infer))
        .start()
        .await;
    let runner = Alquimia::new(AlquimiaConfig {
        base_url: Some(server.url()),
        api_key: Some(TestServer::DEFAULT_API_KEY.into()),
        agent_id: Some("agent".into()),
        channel_id: Some("web".into()),
        api_version: None,
        retry_on: None,
    })
    .unwrap()
    .with_timeouts(Duration::from_secs(3), Duration::from_secs(30));
    let results = Engine::new(Arc::new(runner))
        .policy(policy(30_000, 3, Duration::from_millis(20)))
        .run_datasets(vec![data])
        .await;
    let conversation = &results[0].0.conversation;
    assert!(
        conversation[0]
            .assistant
            .contains("the agent may already have this turn"),
        "{}",
        conversation[0].assistant
    );
    assert_eq!(conversation[1].assistant, alquimia_answer("next", 2, "s"));
    assert_eq!(infers(&server, "slow"), 1, "{:#?}", server.requests());
}

#[tokio::test(start_paused = true)]
async fn rate_limit_spaces_attempts_across_sessions() {
    // 4 sessions of 4 turns at 20/s, retries included: every attempt waits
    // for its own slot, 50 ms after the one before.
    let runner = Clocked::new(1, None);
    let mut policy = policy(5_000, 1, Duration::from_millis(1));
    policy.rate_limit = forge::RateLimit::per_second(20);
    let results = Engine::new(runner.clone())
        .policy(policy)
        .concurrency(4)
        .run_datasets(datasets(4, 4))
        .await;
    assert!(results.iter().all(|(_, s)| s.successes == 4));
    let gaps = runner.gaps();
    assert_eq!(gaps.len(), 31, "16 turns, each tried twice");
    assert!(
        gaps.iter().all(|gap| *gap == Duration::from_millis(50)),
        "{gaps:?}"
    );
}

#[test]
fn suite_resilience_keys() {
    let text = r#"
runner: {type: echo}
timeout: 2s
retries: 3
backoff: {initial: 100ms, max: 5s}
rate_limit: 600/min
datasets:
  - session_id: s
    assistant_id: a
    conversation:
      - {qa_id: q, query: hi}
"#;
    let suite = Suite::parse(Path::new("s.yaml"), text).unwrap();
    assert_eq!(suite.policy.timeout, Some(Duration::from_secs(2)));
    assert_eq!(suite.policy.retries, 3);
    assert_eq!(suite.policy.backoff.initial, Duration::from_millis(100));
    assert_eq!(suite.policy.backoff.max, Duration::from_secs(5));
    let limit = suite.policy.rate_limit.clone().unwrap();
    assert_eq!(limit.interval(), Duration::from_millis(100));

    let numeric = text.replace("600/min", "4");
    let suite = Suite::parse(Path::new("s.yaml"), &numeric).unwrap();
    assert_eq!(
        suite.policy.rate_limit.unwrap().interval(),
        Duration::from_millis(250)
    );
    let only_max = text.replace("{initial: 100ms, max: 5s}", "{max: 1s}");
    let suite = Suite::parse(Path::new("s.yaml"), &only_max).unwrap();
    assert_eq!(suite.policy.backoff.initial, Duration::from_millis(250));

    let errors: HashMap<&str, &str> = [
        ("rate_limt: 5/s", "did you mean `rate_limit`"),
        ("backof: {max: 1s}", "did you mean `backoff`"),
        ("backoff: {inital: 1s}", "did you mean `initial`"),
        (
            "backoff: {initial: 5s, max: 1s}",
            "longer than `backoff.max`",
        ),
        ("rate_limit: 5/week", "unknown unit"),
        ("rate_limit: 0/s", "positive number"),
    ]
    .into_iter()
    .collect();
    for (line, want) in errors {
        let bad = text
            .replace("rate_limit: 600/min\n", "")
            .replace("backoff: {initial: 100ms, max: 5s}\n", "")
            + line
            + "\n";
        let error = Suite::parse(Path::new("s.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(error.contains(want), "{line}: {error}");
        assert!(error.starts_with("s.yaml:"), "{error}");
    }
}
