//! A loopback server speaking the Alquimia and OpenAI protocols, for tests
//! and benchmarks (cargo feature `test-server`).
//!
//! ```
//! # let rt = tokio::runtime::Runtime::new().unwrap();
//! # rt.block_on(async {
//! use forge::testing::TestServer;
//! use forge::runners::alquimia::{Alquimia, AlquimiaConfig};
//! use forge::{Batch, Dataset, Runner};
//!
//! let server = TestServer::start().await;
//! let runner = Alquimia::new(AlquimiaConfig {
//!     base_url: Some(server.url()),
//!     api_key: Some(TestServer::DEFAULT_API_KEY.into()),
//!     agent_id: Some("agent".into()),
//!     channel_id: Some("web".into()),
//!     api_version: None,
//!     retry_on: None,
//! })
//! .unwrap();
//! let mut dataset = Dataset::new("s1", "agent");
//! dataset.conversation.push(Batch::new("q1", "hello"));
//! let (dataset, _) = runner.run_dataset(dataset).await;
//! assert_eq!(dataset.conversation[0].assistant, forge::testing::alquimia_answer("hello", 1, "s1"));
//! # });
//! ```
//!
//! Endpoints (any path prefix before `/event/...` is taken as the API
//! version; `/chat/completions` may sit under any prefix such as `/v1`):
//!
//! - `POST /event/infer/{channel}/{agent}`: checks `Authorization: Bearer
//!   <key>` (401 with a JSON error otherwise), records the turn and answers
//!   `{"stream_id": "..."}`.
//! - `GET /event/stream/{id}`: `text/event-stream` whose events carry the
//!   answer in `response.data.content`, growing over three events. The
//!   stream looks like a real server's: CRLF line ends, a `:` comment and
//!   `retry:` first, `event:` and `id:` lines, each event's JSON over two
//!   `data:` lines, `: keep-alive` comments between events, `data: [DONE]`
//!   at the end, and the body sent in several chunks cut inside line ends
//!   and inside events.
//! - `POST /chat/completions`: checks the key, records the messages and
//!   answers [`openai_answer`] for the last user message.
//!
//! The answers are deterministic: [`alquimia_answer`] and [`openai_answer`].
//! Markers in a query drive the error paths:
//!
//! | marker | effect |
//! | --- | --- |
//! | `#NNN` (a status 400..=599) | the infer / chat request answers HTTP NNN (429 and 503 with `Retry-After: 7`) |
//! | `#nostream` | the infer reply has no `stream_id` |
//! | `#badjson` | the infer / chat reply is not JSON |
//! | `#empty` | the answer is empty |
//! | `#drop` | the stream sends one event, then the connection is cut |
//! | `#dropfirst` | like `#drop`, on the first attempt to read that stream only |
//! | `#logprobs` | the chat reply carries `choices[0].logprobs` |
//!
//! A [`FaultPlan`] ([`TestServerBuilder::fault_plan`]) injects faults into
//! a deterministic share of the turns, chosen by a seeded hash of the
//! session id and the query (so the choice does not depend on the order in
//! which concurrent turns arrive), or into named queries: rejections with a
//! status for the first N attempts, streams dropped on their first N reads,
//! answers delayed on their first N reads, infer replies delayed (after the
//! turn was accepted) on the first N attempts, keep-alive `data:` lines that
//! are not JSON, stream requests whose kept-alive connection is closed under
//! the client, redirects, huge event lines. [`LoggedRequest`] records each
//! request's arrival time, status, stream id, injected fault and place on its
//! connection, so tests can check from the server's side what was sent and
//! accepted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The answer the server gives to Alquimia turn `turn` (1-based) of
/// `session_id` asking `query`.
pub fn alquimia_answer(query: &str, turn: usize, session_id: &str) -> String {
    format!("answer to '{query}' (turn {turn} of session {session_id})")
}

/// The answer the server gives to a chat-completions request whose last user
/// message asks `query` (the part after `Question: ` when the message has a
/// context prefix) and which holds `turn` user messages.
pub fn openai_answer(query: &str, turn: usize) -> String {
    format!("answer to '{query}' (turn {turn})")
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string, when there is one.
    pub query_string: Option<String>,
    /// The headers, lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body, when there is one.
    pub body: Option<Value>,
    /// The Alquimia session id (of the infer request, or of the turn a stream belongs to).
    pub session_id: Option<String>,
    /// The query: Alquimia's `query`, or the last user message's question.
    pub query: Option<String>,
    /// When the request arrived, since the server started.
    pub at: Duration,
    /// The status the server answered (a dropped stream still says 200; 0
    /// when the connection was closed without an answer).
    pub status: u16,
    /// The stream id: the one an accepted infer request returned, or the
    /// one a stream request read.
    pub stream_id: Option<String>,
    /// The fault the [`FaultPlan`] injected into this request:
    /// `reject 503`, `drop`, `delay`, `delay infer`, `keep-alives`, `close`,
    /// `redirect 307` or `huge lines`.
    pub fault: Option<String>,
    /// Which request this was on its connection: 1 on a new connection,
    /// more on a kept-alive one.
    pub connection_request: usize,
}

/// A fault the server injects into one turn (see [`FaultPlan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    // Protocol faults: what real servers send.
    /// The turn's Alquimia stream also sends `data:` lines that are not JSON
    /// (`data: ping`, `data: not-json`, `data: {`) before and between its
    /// events. Without `answer` it sends no answer event; without `done`, no
    /// `[DONE]` (the body just ends).
    KeepAlives {
        /// Whether the answer events are sent.
        answer: bool,
        /// Whether `data: [DONE]` ends the stream.
        done: bool,
    },
    /// The infer reply says `Connection: keep-alive`; the first `times`
    /// requests for the turn's Alquimia stream then get no answer: the
    /// server closes the connection they came on (usually the one kept
    /// alive), as a server closing an idle connection under the client does.
    CloseKeptAlive {
        /// How many stream requests see their connection closed.
        times: usize,
    },
    /// The first `times` infer / chat requests of the turn answer with a
    /// redirect `status` (301, 302, 303, 307 or 308) to the same path and
    /// query on `to` (another server), or on this server when `to` is `None`.
    Redirect {
        /// The redirect status.
        status: u16,
        /// Where to: another server's address, or `None` for this one.
        to: Option<SocketAddr>,
        /// How many requests are redirected.
        times: usize,
    },
    /// The turn's Alquimia stream first sends `lines` answer events whose
    /// `data:` line is `line_bytes` bytes long (without its line end), then
    /// its usual events.
    HugeLines {
        /// The length of each huge line.
        line_bytes: usize,
        /// How many huge lines.
        lines: usize,
    },

    // Faults of the turn's acceptance and timing.
    /// The first `times` infer / chat requests of the turn answer HTTP
    /// `status` (`usize::MAX`: always), with `Retry-After: retry_after`
    /// seconds for 429 and 503. A rejected turn is not accepted.
    Reject {
        /// The status.
        status: u16,
        /// How many attempts are rejected.
        times: usize,
        /// The `Retry-After` of a 429 or 503, in seconds.
        retry_after: u64,
    },
    /// The first `times` reads of the turn's Alquimia stream send one event,
    /// then cut the connection.
    DropStream {
        /// How many reads are cut.
        times: usize,
    },
    /// The first `times` answers of the turn (Alquimia stream reads, chat
    /// requests) wait `delay` first. A delayed stream stays readable.
    Delay {
        /// The extra wait.
        delay: Duration,
        /// How many answers are delayed.
        times: usize,
    },
    /// The first `times` Alquimia infer requests of the turn are accepted
    /// (the turn is recorded and its stream created) but their reply waits
    /// `delay`: an agent that took the turn while the client gave up.
    DelayInfer {
        /// The extra wait before the infer reply.
        delay: Duration,
        /// How many infer replies are delayed.
        times: usize,
    },
    /// The turn's answer ends with ` (you sent: <Authorization header>)`:
    /// a server that echoes the key it was given.
    EchoAuthorization,
}

/// Which turns get which [`Fault`], deterministically: named queries first,
/// then shares of the turns picked by a seeded hash of (session id, query).
/// A chat-completions turn has the session id `""`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    seed: u64,
    shares: Vec<(u32, Fault)>,
    queries: Vec<(String, Fault)>,
}

impl FaultPlan {
    /// An empty plan whose shares are picked with `seed`.
    pub fn new(seed: u64) -> Self {
        FaultPlan {
            seed,
            ..FaultPlan::default()
        }
    }

    /// `percent` of the turns (of 100, on top of the shares added before)
    /// get `fault`.
    pub fn share(mut self, percent: u32, fault: Fault) -> Self {
        self.shares.push((percent, fault));
        self
    }

    /// Every turn asking exactly `query` gets `fault`.
    pub fn on_query(mut self, query: impl Into<String>, fault: Fault) -> Self {
        self.queries.push((query.into(), fault));
        self
    }

    /// The fault of the turn asking `query` in `session_id`, if any.
    pub fn fault(&self, session_id: &str, query: &str) -> Option<Fault> {
        if let Some((_, fault)) = self.queries.iter().find(|(q, _)| q == query) {
            return Some(*fault);
        }
        // FNV-1a: stable across runs and platforms.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ self.seed;
        for byte in session_id.bytes().chain([0xff]).chain(query.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let bucket = (hash % 100) as u32;
        let mut upto = 0;
        for (percent, fault) in &self.shares {
            upto += percent;
            if bucket < upto {
                return Some(*fault);
            }
        }
        None
    }
}

impl LoggedRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request's `Authorization` header.
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }
}

/// A turn the server accepted and whose answer a stream will deliver.
struct PendingStream {
    id: u64,
    session_id: String,
    query: String,
    answer: String,
    drop: bool,
    drop_first: bool,
    reads: usize,
    fault: Option<Fault>,
}

struct State {
    api_key: Option<String>,
    latency: Option<Duration>,
    log: bool,
    requests: Mutex<Vec<LoggedRequest>>,
    sessions: Mutex<HashMap<String, Vec<String>>>,
    streams: Mutex<HashMap<String, PendingStream>>,
    next_stream: AtomicU64,
    fail_status: u16,
    fail_remaining: AtomicUsize,
    turns_started: AtomicUsize,
    plan: Option<FaultPlan>,
    /// Infer / chat requests per (session id, query), for the fault plan.
    attempts: Mutex<HashMap<(String, String), usize>>,
    started: std::time::Instant,
    /// Holds turn-starting answers until a group of them is waiting.
    groups: Option<Arc<tokio::sync::Barrier>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
            attempts: Mutex::new(HashMap::new()),
            started: std::time::Instant::now(),
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
struct Effects {
    /// An extra wait before the response.
    extra: Duration,
    /// Close the connection instead of answering.
    close: bool,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn json_response(status: u16, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(status: u16, message: &str) -> Response<Body> {
    let mut response = json_response(
        status,
        &json!({"error": {"message": message, "code": status}}),
    );
    if matches!(status, 429 | 503) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("7"));
    }
    response
}

/// The status of a `#NNN` marker in `query`.
fn status_marker(query: &str) -> Option<u16> {
    query.match_indices('#').find_map(|(i, _)| {
        let digits = query.get(i + 1..i + 4)?;
        let status: u16 = digits.parse().ok()?;
        let next = query[i + 4..].chars().next();
        ((400..=599).contains(&status) && !next.is_some_and(|c| c.is_ascii_digit()))
            .then_some(status)
    })
}

async fn handle(
    state: Arc<State>,
    connection: &Connection,
    request: Request<Incoming>,
) -> Response<Body> {
    let connection_request = connection.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error_response(400, "cannot read the request body"),
    };
    let json_body: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let mut logged = LoggedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
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
        body: json_body.clone(),
        session_id: None,
        query: None,
        at: state.started.elapsed(),
        status: 0,
        stream_id: None,
        fault: None,
        connection_request,
    };
    let authorized = match &state.api_key {
        None => true,
        Some(key) => {
            parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                == Some(key.as_str())
        }
    };
    let mut effects = Effects::default();
    let delayed =
        |(response, turn): (Response<Body>, bool)| (response, state.latency.filter(|_| turn));
    let starts_turn = parts.method == Method::POST
        && (path.contains("/event/infer/") || path.ends_with("/chat/completions"));
    let (response, latency) = if parts.method == Method::POST && path.contains("/event/infer/") {
        (
            infer(
                &state,
                &path,
                json_body.as_ref(),
                authorized,
                &mut logged,
                &mut effects,
            ),
            None,
        )
    } else if parts.method == Method::GET && path.contains("/event/stream/") {
        delayed(stream(&state, &path, authorized, &mut logged, &mut effects))
    } else if parts.method == Method::POST && path.ends_with("/chat/completions") {
        delayed(chat(
            &state,
            json_body.as_ref(),
            authorized,
            &mut logged,
            &mut effects,
        ))
    } else {
        (error_response(404, "no such endpoint"), None)
    };
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

/// Answers the next `fail_next` turn-starting requests with the configured status.
fn injected_failure(state: &State) -> Option<Response<Body>> {
    state.turns_started.fetch_add(1, Ordering::Relaxed);
    let mut remaining = state.fail_remaining.load(Ordering::Relaxed);
    while remaining > 0 {
        match state.fail_remaining.compare_exchange(
            remaining,
            remaining - 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                let mut response = error_response(state.fail_status, "injected failure");
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("0"));
                return Some(response);
            }
            Err(now) => remaining = now,
        }
    }
    None
}

fn infer(
    state: &State,
    path: &str,
    body: Option<&Value>,
    authorized: bool,
    logged: &mut LoggedRequest,
    effects: &mut Effects,
) -> Response<Body> {
    let segments: Vec<&str> = path
        .split_once("/event/infer/")
        .map(|(_, rest)| rest.split('/').collect())
        .unwrap_or_default();
    if segments.len() != 2 || segments.iter().any(|s| s.is_empty()) {
        return error_response(404, "expected /event/infer/{channel}/{agent}");
    }
    let query = body.and_then(|b| b.get("query")).and_then(Value::as_str);
    let session = body
        .and_then(|b| b.get("session_id"))
        .and_then(Value::as_str);
    logged.query = query.map(str::to_owned);
    logged.session_id = session.map(str::to_owned);
    if let Some(failure) = injected_failure(state) {
        return failure;
    }
    if !authorized {
        return error_response(401, "invalid or missing API key");
    }
    let (Some(query), Some(session)) = (query, session) else {
        return error_response(422, "`query` and `session_id` are required strings");
    };
    if let Some(status) = status_marker(query) {
        return error_response(status, "requested by the query");
    }
    let (fault, attempt) = planned(state, session, query);
    if let Some(rejection) = rejection(fault, attempt, logged) {
        return rejection;
    }
    if let Some(redirect) = redirection(fault, attempt, logged) {
        return redirect;
    }
    if query.contains("#badjson") {
        return Response::new(full("this is not json"));
    }
    let turn = {
        let mut sessions = lock(&state.sessions);
        let turns = sessions.entry(session.to_owned()).or_default();
        turns.push(query.to_owned());
        turns.len()
    };
    if query.contains("#nostream") {
        return json_response(200, &json!({"status": "accepted"}));
    }
    let number = state.next_stream.fetch_add(1, Ordering::Relaxed);
    let id = format!("stream-{number}");
    let mut answer = if query.contains("#empty") {
        String::new()
    } else {
        alquimia_answer(query, turn, session)
    };
    echo_authorization(fault, logged, &mut answer);
    lock(&state.streams).insert(
        id.clone(),
        PendingStream {
            id: number,
            session_id: session.to_owned(),
            query: query.to_owned(),
            answer,
            drop: query.contains("#drop") && !query.contains("#dropfirst"),
            drop_first: query.contains("#dropfirst"),
            reads: 0,
            fault,
        },
    );
    logged.stream_id = Some(id.clone());
    if let Some(Fault::DelayInfer { delay, times }) = fault {
        if attempt <= times {
            effects.extra = delay;
            logged.fault = Some("delay infer".into());
        }
    }
    let mut response = json_response(200, &json!({"stream_id": id}));
    if let Some(Fault::CloseKeptAlive { .. }) = fault {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    response
}

/// Appends the request's `Authorization` to `answer` under
/// [`Fault::EchoAuthorization`].
fn echo_authorization(fault: Option<Fault>, logged: &mut LoggedRequest, answer: &mut String) {
    if fault == Some(Fault::EchoAuthorization) {
        let sent = logged.authorization().unwrap_or("nothing").to_owned();
        answer.push_str(&format!(" (you sent: {sent})"));
        logged.fault = Some("echo authorization".into());
    }
}

/// The planned fault of a turn and which attempt (1-based) this request is.
fn planned(state: &State, session: &str, query: &str) -> (Option<Fault>, usize) {
    let Some(plan) = &state.plan else {
        return (None, 1);
    };
    let attempt = {
        let mut attempts = lock(&state.attempts);
        let count = attempts
            .entry((session.to_owned(), query.to_owned()))
            .or_default();
        *count += 1;
        *count
    };
    (plan.fault(session, query), attempt)
}

/// The rejection a [`Fault::Reject`] asks for on this attempt.
fn rejection(
    fault: Option<Fault>,
    attempt: usize,
    logged: &mut LoggedRequest,
) -> Option<Response<Body>> {
    let Some(Fault::Reject {
        status,
        times,
        retry_after,
    }) = fault
    else {
        return None;
    };
    if attempt > times {
        return None;
    }
    logged.fault = Some(format!("reject {status}"));
    let mut response = error_response(status, "injected by the fault plan");
    if matches!(status, 429 | 503) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    }
    Some(response)
}

/// The redirect a [`Fault::Redirect`] asks for on this attempt: to the same
/// path and query, on another server or on this one.
fn redirection(
    fault: Option<Fault>,
    attempt: usize,
    logged: &mut LoggedRequest,
) -> Option<Response<Body>> {
    let Some(Fault::Redirect { status, to, times }) = fault else {
        return None;
    };
    if attempt > times {
        return None;
    }
    logged.fault = Some(format!("redirect {status}"));
    let mut target = match to {
        Some(addr) => format!("http://{addr}{}", logged.path),
        None => logged.path.clone(),
    };
    if let Some(query) = &logged.query_string {
        target = format!("{target}?{query}");
    }
    let mut response = error_response(status, "moved");
    if let Ok(location) = HeaderValue::from_str(&target) {
        response.headers_mut().insert(LOCATION, location);
    }
    Some(response)
}

/// One SSE event carrying `content`, the way a real server writes it: an
/// `event:` and an `id:` line, the JSON over two `data:` lines, CRLF.
fn sse_event(id: usize, content: &str) -> String {
    let content = Value::String(content.to_owned());
    format!(
        "event: message\r\nid: {id}\r\ndata: {{\"status\": \"streaming\",\r\ndata: \"response\": {{\"data\": {{\"content\": {content}}}}}}}\r\n\r\n"
    )
}

/// The contents of the events delivering `answer`, growing over three
/// events: a third, two thirds, all of it.
fn sse_contents(answer: &str) -> Vec<String> {
    let chars: Vec<char> = answer.chars().collect();
    let cuts = [chars.len() / 3, chars.len() * 2 / 3, chars.len()];
    let mut contents: Vec<String> = cuts
        .iter()
        .map(|&cut| chars[..cut].iter().collect::<String>())
        .collect();
    contents.dedup();
    contents
}

/// Data lines that are not JSON, as keep-alives of some servers.
const KEEP_ALIVES: &str = "data: ping\r\n\r\ndata: not-json\r\n\r\nevent: ping\r\ndata: {\r\n\r\n";

/// What a stream body is made of.
enum Piece {
    /// Bytes, sent as their own chunk.
    Data(Bytes),
    /// The connection is cut (after a short wait, so what came before
    /// reaches the client first).
    Cut,
}

/// A huge answer event's line of `line_bytes` bytes, in 1 MiB pieces.
fn huge_event(line_bytes: usize, id: usize, pieces: &mut Vec<Piece>) {
    const HEAD: &str = "data: {\"response\": {\"data\": {\"content\": \"";
    const TAIL: &str = "\"}}}";
    const MIB: usize = 1 << 20;
    let filler = Bytes::from(vec![b'x'; MIB]);
    pieces.push(Piece::Data(Bytes::from(format!(
        "event: message\r\nid: {id}\r\n{HEAD}"
    ))));
    let mut left = line_bytes.saturating_sub(HEAD.len() + TAIL.len());
    while left > 0 {
        let take = left.min(MIB);
        pieces.push(Piece::Data(filler.slice(..take)));
        left -= take;
    }
    pieces.push(Piece::Data(Bytes::from(format!("{TAIL}\r\n\r\n"))));
}

/// The body of stream `id` delivering `answer` (see the module docs), cut
/// into several chunks: inside the first CRLF and in the middle of each
/// event.
fn sse_body(id: u64, answer: &str, fault: Option<Fault>, cut: bool) -> Vec<Piece> {
    let (noise, with_answer, done) = match fault {
        Some(Fault::KeepAlives { answer, done }) => (KEEP_ALIVES, answer, done),
        _ => ("", true, true),
    };
    let mut pieces = vec![
        Piece::Data(Bytes::from(format!(": stream-{id}\r"))),
        Piece::Data(Bytes::from(format!("\nretry: 3000\r\n{noise}"))),
    ];
    let mut count = 0;
    if let Some(Fault::HugeLines { line_bytes, lines }) = fault {
        for _ in 0..lines {
            count += 1;
            huge_event(line_bytes, count, &mut pieces);
        }
    }
    let contents = if with_answer {
        sse_contents(answer)
    } else {
        Vec::new()
    };
    for (i, content) in contents.iter().enumerate() {
        // Cut in the middle, even inside a character.
        let event = Bytes::from(sse_event(count + i + 1, content));
        let middle = event.len() / 2;
        pieces.push(Piece::Data(event.slice(..middle)));
        pieces.push(Piece::Data(event.slice(middle..)));
        pieces.push(Piece::Data(Bytes::from(format!(
            ": keep-alive\r\n\r\n{noise}"
        ))));
        if cut && i == 0 {
            pieces.push(Piece::Cut);
            return pieces;
        }
    }
    if done {
        pieces.push(Piece::Data(Bytes::from_static(b"data: [DONE]\r\n\r\n")));
    }
    pieces
}

/// A streamed body of `pieces`, each its own chunk.
fn piecewise(pieces: Vec<Piece>) -> Body {
    let frames = futures_util::stream::unfold(pieces.into_iter(), |mut pieces| async move {
        let frame = match pieces.next()? {
            Piece::Data(bytes) => {
                // Pending once, so each piece is flushed on its own.
                tokio::task::yield_now().await;
                Ok(Frame::data(bytes))
            }
            Piece::Cut => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "stream dropped on purpose",
                ))
            }
        };
        Some((frame, pieces))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

/// The stream's response, and whether it delivers a turn (so the latency applies).
fn stream(
    state: &State,
    path: &str,
    authorized: bool,
    logged: &mut LoggedRequest,
    effects: &mut Effects,
) -> (Response<Body>, bool) {
    if !authorized {
        return (error_response(401, "invalid or missing API key"), false);
    }
    let id = path
        .split_once("/event/stream/")
        .map(|(_, id)| id)
        .unwrap_or_default();
    let (number, answer, drop, fault) = {
        let mut streams = lock(&state.streams);
        let Some(pending) = streams.get_mut(id) else {
            return (error_response(404, "no such stream"), false);
        };
        pending.reads += 1;
        logged.session_id = Some(pending.session_id.clone());
        logged.query = Some(pending.query.clone());
        logged.stream_id = Some(id.to_owned());
        let mut drop = pending.drop || (pending.drop_first && pending.reads == 1);
        let mut keep = drop;
        match pending.fault {
            Some(Fault::DropStream { times }) if pending.reads <= times => {
                drop = true;
                keep = true;
                logged.fault = Some("drop".into());
            }
            Some(Fault::Delay { delay, times }) if pending.reads <= times => {
                effects.extra = delay;
                keep = true;
                logged.fault = Some("delay".into());
            }
            Some(Fault::CloseKeptAlive { times }) if pending.reads <= times => {
                effects.close = true;
                keep = true;
                logged.fault = Some("close".into());
            }
            Some(Fault::KeepAlives { answer: false, .. }) => {
                // No answer: a retry re-attaches and gets the same.
                keep = true;
                logged.fault = Some("keep-alives".into());
            }
            Some(Fault::KeepAlives { .. }) => logged.fault = Some("keep-alives".into()),
            Some(Fault::HugeLines { .. }) => logged.fault = Some("huge lines".into()),
            _ => {}
        }
        let answer = pending.answer.clone();
        let (number, fault) = (pending.id, pending.fault);
        if !keep {
            streams.remove(id);
        }
        (number, answer, drop, fault)
    };
    let mut response = Response::new(piecewise(sse_body(number, &answer, fault, drop)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    (response, true)
}

/// The question of a user message: the part after `Question: ` when it has
/// a context prefix.
fn question(content: &str) -> &str {
    match content.strip_prefix("Context:\n") {
        Some(rest) => rest
            .rsplit_once("\n\nQuestion: ")
            .map(|(_, q)| q)
            .unwrap_or(content),
        None => content,
    }
}

/// The chat reply, and whether it answers a turn (so the latency applies).
fn chat(
    state: &State,
    body: Option<&Value>,
    authorized: bool,
    logged: &mut LoggedRequest,
    effects: &mut Effects,
) -> (Response<Body>, bool) {
    let messages = body
        .and_then(|b| b.get("messages"))
        .and_then(Value::as_array);
    let user: Vec<&str> = messages
        .map(|m| {
            m.iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let query = user.last().map(|c| question(c).to_owned());
    logged.query = query.clone();
    if let Some(failure) = injected_failure(state) {
        return (failure, false);
    }
    if !authorized {
        return (error_response(401, "Incorrect API key provided"), false);
    }
    let Some(query) = query else {
        return (
            error_response(400, "`messages` must hold a user message"),
            false,
        );
    };
    if let Some(status) = status_marker(&query) {
        return (error_response(status, "requested by the query"), false);
    }
    let (fault, attempt) = planned(state, "", &query);
    if let Some(rejection) = rejection(fault, attempt, logged) {
        return (rejection, false);
    }
    if let Some(redirect) = redirection(fault, attempt, logged) {
        return (redirect, false);
    }
    if let Some(Fault::Delay { delay, times }) = fault {
        if attempt <= times {
            effects.extra = delay;
            logged.fault = Some("delay".into());
        }
    }
    if query.contains("#badjson") {
        return (Response::new(full("{\"choices\": [")), true);
    }
    let mut answer = if query.contains("#empty") {
        String::new()
    } else {
        openai_answer(&query, user.len())
    };
    echo_authorization(fault, logged, &mut answer);
    let mut choice = json!({
        "index": 0,
        "message": {"role": "assistant", "content": answer},
        "finish_reason": "stop",
    });
    if query.contains("#logprobs") {
        choice["logprobs"] = json!({"content": [{"token": "answer", "logprob": -0.01}]});
    }
    let model = body
        .and_then(|b| b.get("model"))
        .cloned()
        .unwrap_or(Value::Null);
    let response = json_response(
        200,
        &json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": model,
            "choices": [choice],
        }),
    );
    (response, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_events() {
        assert_eq!(status_marker("boom #500"), Some(500));
        assert_eq!(status_marker("#4291"), None);
        assert_eq!(status_marker("#200 #401"), Some(401));
        assert_eq!(status_marker("#nostream"), None);
        assert_eq!(sse_contents("abcdef"), ["ab", "abcd", "abcdef"]);
        assert_eq!(sse_contents(""), [""]);
        assert_eq!(question("Context:\nc\n\nQuestion: q"), "q");
    }

    /// The data of the events of a stream body, decoded chunk by chunk, and
    /// whether it ends with a cut.
    fn decoded(pieces: Vec<Piece>) -> (Vec<String>, bool) {
        let mut decoder = crate::runners::sse::Decoder::new(Default::default());
        let mut data = Vec::new();
        let mut cut = false;
        for piece in pieces {
            match piece {
                Piece::Data(bytes) => data.extend(decoder.feed(&bytes).unwrap()),
                Piece::Cut => cut = true,
            }
        }
        assert!(data
            .iter()
            .all(|e| e.event == "message" || e.event == "ping"));
        (data.into_iter().map(|e| e.data).collect(), cut)
    }

    fn content(data: &str) -> String {
        let value: Value = serde_json::from_str(data).unwrap();
        value["response"]["data"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn stream_bodies_look_like_a_real_servers() {
        let answer = "ünïcode answer";
        let pieces = sse_body(3, answer, None, false);
        assert!(pieces.len() > 8, "sent in several chunks");
        let text: Vec<u8> = pieces
            .iter()
            .flat_map(|p| match p {
                Piece::Data(b) => b.to_vec(),
                Piece::Cut => Vec::new(),
            })
            .collect();
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with(": stream-3\r\nretry: 3000\r\n"), "{text}");
        assert!(
            text.contains("event: message\r\nid: 1\r\ndata: {"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\ndata: [DONE]\r\n\r\n"), "{text}");
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
        let (data, cut) = decoded(pieces);
        assert!(!cut);
        assert_eq!(data.len(), 4);
        assert_eq!(content(&data[2]), answer);
        assert_eq!(data[3], "[DONE]");

        // Dropped: the first event, then a cut.
        let (data, cut) = decoded(sse_body(3, answer, None, true));
        assert!(cut);
        assert_eq!(data.len(), 1);

        // Keep-alives: non-JSON data around the events.
        let noisy = Some(Fault::KeepAlives {
            answer: true,
            done: true,
        });
        let (data, _) = decoded(sse_body(3, answer, noisy, false));
        let json: Vec<&String> = data
            .iter()
            .filter(|d| serde_json::from_str::<Value>(d).is_ok())
            .collect();
        assert_eq!(json.len(), 3);
        assert!(data.contains(&"ping".to_owned()) && data.contains(&"not-json".to_owned()));
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let silent = Some(Fault::KeepAlives {
            answer: false,
            done: false,
        });
        let (data, _) = decoded(sse_body(3, answer, silent, false));
        assert!(data
            .iter()
            .all(|d| serde_json::from_str::<Value>(d).is_err()));
        assert!(!data.contains(&"[DONE]".to_owned()));

        // Huge lines: exactly `line_bytes` long, then the usual events.
        let huge = Some(Fault::HugeLines {
            line_bytes: 3 << 20,
            lines: 2,
        });
        let pieces = sse_body(3, answer, huge, false);
        let (data, _) = decoded(pieces);
        assert_eq!(data.len(), 6);
        assert_eq!(data[0].len() + "data: ".len(), 3 << 20);
        assert_eq!(content(&data[4]), answer);
    }
}
