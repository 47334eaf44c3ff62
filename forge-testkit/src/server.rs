//! The server: its builder, its state, the accept loop and the request
//! router.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;
use hyper::{HeaderMap, Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::judge::Judge;
use crate::protocol::{chat, error_response, infer, json_response, judged, stream, Body};
use crate::{Fault, FaultPlan, LoggedRequest};

/// A turn the server accepted and whose answer a stream will deliver.
pub(crate) struct PendingStream {
    pub(crate) id: u64,
    pub(crate) session_id: String,
    pub(crate) query: String,
    pub(crate) answer: String,
    pub(crate) drop: bool,
    pub(crate) drop_first: bool,
    pub(crate) reads: usize,
    pub(crate) fault: Option<Fault>,
}

/// What the handlers share.
pub(crate) struct State {
    pub(crate) api_key: Option<String>,
    pub(crate) latency: Option<Duration>,
    pub(crate) log: bool,
    pub(crate) requests: Mutex<Vec<LoggedRequest>>,
    pub(crate) sessions: Mutex<HashMap<String, Vec<String>>>,
    pub(crate) streams: Mutex<HashMap<String, PendingStream>>,
    pub(crate) next_stream: AtomicU64,
    pub(crate) fail_status: u16,
    pub(crate) fail_remaining: AtomicUsize,
    pub(crate) turns_started: AtomicUsize,
    pub(crate) plan: Option<FaultPlan>,
    /// Infer / chat requests per (session id, query), for the fault plan.
    pub(crate) attempts: Mutex<HashMap<(String, String), usize>>,
    pub(crate) started: std::time::Instant,
    /// Holds turn-starting answers until a group of them is waiting.
    pub(crate) groups: Option<Arc<tokio::sync::Barrier>>,
    /// The `/agent` endpoint's replies, when the test gives them.
    pub(crate) agent: Option<Agent>,
    /// Rules on chat requests instead of answering them, when set.
    pub(crate) judge: Option<Judge>,
    /// Chat requests the judge was asked so far.
    pub(crate) judge_calls: AtomicUsize,
}

/// The reply of the `/agent` endpoint to a request body.
#[derive(Clone)]
pub(crate) struct Agent(Arc<dyn Fn(&Value) -> Value + Send + Sync>);

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Agent")
    }
}

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Configures a [`TestServer`] before it starts.
#[derive(Debug, Clone)]
pub struct TestServerBuilder {
    api_key: Option<String>,
    latency: Option<Duration>,
    log: bool,
    fail_status: u16,
    fail_next: usize,
    plan: Option<FaultPlan>,
    groups: Option<usize>,
    agent: Option<Agent>,
    judge: Option<Judge>,
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        TestServerBuilder {
            api_key: Some(TestServer::DEFAULT_API_KEY.to_owned()),
            latency: None,
            log: true,
            fail_status: 503,
            fail_next: 0,
            plan: None,
            groups: None,
            agent: None,
            judge: None,
        }
    }
}

impl TestServerBuilder {
    /// The bearer key requests must carry (default [`TestServer::DEFAULT_API_KEY`]).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Accepts requests with no or any `Authorization` header (like Ollama).
    pub fn without_auth(mut self) -> Self {
        self.api_key = None;
        self
    }

    /// Waits `latency` before answering each turn (the stream of an
    /// Alquimia turn, a chat-completions request).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Whether requests are recorded (default true; a benchmark may turn it off).
    pub fn log_requests(mut self, log: bool) -> Self {
        self.log = log;
        self
    }

    /// Answers the next `count` infer / chat requests with HTTP `status`
    /// (with `Retry-After: 0`) before behaving normally.
    pub fn fail_next(mut self, status: u16, count: usize) -> Self {
        self.fail_status = status;
        self.fail_next = count;
        self
    }

    /// Holds the answer of every infer / chat request until `size` of them
    /// wait, then answers that group at once. A client that never has
    /// `size` turns in flight together gets no answer: a test of
    /// concurrency that needs no clock (give it a deadline so a failure
    /// does not hang).
    pub fn answer_in_groups(mut self, size: usize) -> Self {
        self.groups = Some(size.max(1));
        self
    }

    /// Serves `POST .../agent`: a JSON agent (for the `http` runner) whose
    /// reply is `agent(request body)` (null for a body that is not JSON),
    /// after the usual key check.
    pub fn agent(mut self, agent: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Self {
        self.agent = Some(Agent(Arc::new(agent)));
        self
    }

    /// Makes the server an LLM judge: every chat-completions request is
    /// answered with what `judge` rules (see [`crate::judge`]).
    pub fn judge(mut self, judge: Judge) -> Self {
        self.judge = Some(judge);
        self
    }

    /// Injects the faults of `plan` (see [`FaultPlan`]).
    pub fn fault_plan(mut self, plan: FaultPlan) -> Self {
        self.plan = Some(plan);
        self
    }

    /// Binds 127.0.0.1 on a free port and starts serving on the current
    /// tokio runtime.
    pub async fn try_start(self) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            api_key: self.api_key,
            latency: self.latency,
            log: self.log,
            requests: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            next_stream: AtomicU64::new(1),
            fail_status: self.fail_status,
            fail_remaining: AtomicUsize::new(self.fail_next),
            turns_started: AtomicUsize::new(0),
            groups: self
                .groups
                .map(|size| Arc::new(tokio::sync::Barrier::new(size))),
            plan: self.plan,
            agent: self.agent,
            attempts: Mutex::new(HashMap::new()),
            started: std::time::Instant::now(),
            judge: self.judge,
            judge_calls: AtomicUsize::new(0),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), cancel.clone()));
        Ok(TestServer {
            addr,
            state,
            cancel,
            task: Some(task),
        })
    }

    /// [`try_start`](Self::try_start).
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(self) -> TestServer {
        match self.try_start().await {
            Ok(server) => server,
            Err(e) => panic!("forge test server: cannot bind 127.0.0.1: {e}"),
        }
    }
}

/// A running loopback server. Dropping it (or [`shutdown`](Self::shutdown))
/// stops it and closes its connections.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// The key the server expects unless told otherwise.
    pub const DEFAULT_API_KEY: &'static str = "test-key";

    /// A server with the default settings: key [`Self::DEFAULT_API_KEY`],
    /// no latency, requests recorded.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start() -> TestServer {
        TestServerBuilder::default().start().await
    }

    /// A builder for a server with other settings.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state.requests).clone()
    }

    /// The queries of Alquimia session `session_id`, in the order its turns
    /// were accepted.
    pub fn turns(&self, session_id: &str) -> Vec<String> {
        lock(&self.state.sessions)
            .get(session_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The server's clock: how long it has run, on the scale of
    /// [`LoggedRequest::at`].
    pub fn clock(&self) -> Duration {
        self.state.started.elapsed()
    }

    /// How many infer and chat-completions requests arrived (failed ones included).
    pub fn turns_started(&self) -> usize {
        self.state.turns_started.load(Ordering::Relaxed)
    }

    /// Stops the server and waits for its accept loop to end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors and the like: back off a little.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let connection = Arc::new(Connection::default());
            let close = connection.close.clone();
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                let connection = Arc::clone(&connection);
                async move { Ok::<_, Infallible>(handle(state, &connection, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // Closing drops the connection, and with it the socket.
            tokio::select! {
                _ = connection => {}
                _ = cancel.cancelled() => {}
                _ = close.cancelled() => {}
            }
        });
    }
}

/// One client connection.
#[derive(Default)]
struct Connection {
    /// Requests received on it so far.
    requests: AtomicUsize,
    /// Closes it (without answering the request in hand).
    close: CancellationToken,
}

/// What a handler asks of [`handle`] besides its response.
#[derive(Default)]
pub(crate) struct Effects {
    /// An extra wait before the response.
    pub(crate) extra: Duration,
    /// Close the connection instead of answering.
    pub(crate) close: bool,
}

async fn handle(
    state: Arc<State>,
    connection: &Connection,
    request: Request<Incoming>,
) -> Response<Body> {
    let connection_request = connection.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error_response(400, "cannot read the request body"),
    };
    let json_body: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let mut logged = log_entry(&parts, json_body.clone(), &state, connection_request);
    let authorized = authorized(&state, &parts.headers);
    let mut effects = Effects::default();
    let (response, latency) = route(
        &state,
        &parts.method,
        json_body.as_ref(),
        authorized,
        &mut logged,
        &mut effects,
    );
    let starts_turn = parts.method == Method::POST
        && (logged.is_infer() || logged.path.ends_with("/chat/completions"));
    // Logged before the latency, so the log keeps the arrival order.
    logged.status = if effects.close {
        0
    } else {
        response.status().as_u16()
    };
    if state.log {
        lock(&state.requests).push(logged);
    }
    if effects.close {
        // The connection task drops the connection, and this handler with it.
        connection.close.cancel();
        std::future::pending::<()>().await;
    }
    if let (true, Some(groups)) = (starts_turn, &state.groups) {
        groups.wait().await;
    }
    let latency = latency.unwrap_or_default() + effects.extra;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    response
}

/// The log entry of a request, before it is answered.
fn log_entry(
    parts: &Parts,
    body: Option<Value>,
    state: &State,
    connection_request: usize,
) -> LoggedRequest {
    LoggedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query_string: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        session_id: None,
        query: None,
        at: state.started.elapsed(),
        status: 0,
        stream_id: None,
        fault: None,
        connection_request,
    }
}

/// Whether the request carries the server's key (always, without one).
fn authorized(state: &State, headers: &HeaderMap) -> bool {
    match &state.api_key {
        None => true,
        Some(key) => {
            headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                == Some(key.as_str())
        }
    }
}

/// The endpoint's response, and the latency that applies to it (the
/// server's, when the response delivers a turn).
fn route(
    state: &State,
    method: &Method,
    body: Option<&Value>,
    authorized: bool,
    logged: &mut LoggedRequest,
    effects: &mut Effects,
) -> (Response<Body>, Option<Duration>) {
    let delayed =
        |(response, turn): (Response<Body>, bool)| (response, state.latency.filter(|_| turn));
    let path = logged.path.clone();
    if method == Method::POST && logged.is_infer() {
        let response = infer(state, &path, body, authorized, logged, effects);
        (response, None)
    } else if method == Method::GET && logged.is_stream() {
        delayed(stream(state, &path, authorized, logged, effects))
    } else if method == Method::POST && path.ends_with("/chat/completions") {
        match &state.judge {
            Some(judge) => delayed((judged(state, judge, body, authorized, logged), true)),
            None => delayed(chat(state, body, authorized, logged, effects)),
        }
    } else if let (true, Some(agent)) = (
        method == Method::POST && path.ends_with("/agent"),
        &state.agent,
    ) {
        if !authorized {
            return (error_response(401, "invalid or missing API key"), None);
        }
        (
            json_response(200, &(agent.0)(body.unwrap_or(&Value::Null))),
            None,
        )
    } else {
        (error_response(404, "no such endpoint"), None)
    }
}
