//! `forge serve`: the payload API over HTTP on your own host (feature `serve`).
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /run` with a payload | 200 and the response (`{"success": true, ...}`), as `forge run --payload` prints it |
//! | a payload the API rejects | 400 and `{"success": false, "error": ...}` |
//! | a body that is not JSON | 400 |
//! | a body over [`ServeConfig::max_body_bytes`] | 413 |
//! | a body not received within [`ServeConfig::body_timeout`] | 408 |
//! | [`ServeConfig::max_concurrent_runs`] runs already in flight | 503 with `Retry-After: 1` (not queued) |
//! | a missing or wrong bearer token, when one is set | 401 |
//! | `POST /run` without `Content-Type: application/json` | 415 |
//! | a payload whose URL would get the host's own key without the operator allowing it | 400 (see [`crate::payload`]) |
//! | `GET /health` | 200 `{"status": "ok", ...}` (no token needed) |
//! | another method | 405; another path: 404 |
//!
//! Every answer is JSON; every error is `{"success": false, "error": "..."}`.
//! The body is read before a run takes a slot. A run whose client disconnects
//! is cancelled: turns not yet sent are not sent, turns in flight finish, and
//! the run holds its slot until they have.
//!
//! Requiring `application/json` means a web page cannot make a browser POST a
//! payload without a CORS preflight (which `forge serve` does not answer).
//!
//! Bounds: a run's answers are capped at [`ServeConfig::max_answer_bytes`]
//! (the turns past it fail with a message; the response stays valid); a
//! connection must send a request's headers within
//! [`ServeConfig::header_timeout`] of opening or of starting them, and an
//! idle keep-alive connection is closed after [`ServeConfig::idle_timeout`];
//! at most [`ServeConfig::max_connections`] connections are served at once
//! (more wait in the listen queue). On shutdown the server stops accepting
//! connections, closes idle ones at once, and waits only for the requests
//! and runs in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::payload::HostKeys;

/// Environment variable holding the bearer token `POST /run` requires.
pub const TOKEN_ENV: &str = "FORGE_SERVE_TOKEN";
/// Default address: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default request body limit: 6 MiB, Lambda's synchronous payload limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Default time allowed to receive a request body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of runs in flight at once.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 4;
/// Default cap on a run's answers: 64 MiB.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Default time allowed for a request's headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an idle keep-alive connection stays open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default (and largest default) number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// The default connection cap: [`DEFAULT_MAX_CONNECTIONS`], or half the
/// process's open-file limit when that is lower (the rest is left for the
/// runs' own connections), at least 16.
pub fn default_max_connections() -> usize {
    #[cfg(unix)]
    {
        use nix::sys::resource::{getrlimit, Resource};
        if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let half = usize::try_from(soft / 2).unwrap_or(usize::MAX);
            return half.clamp(16, DEFAULT_MAX_CONNECTIONS);
        }
    }
    DEFAULT_MAX_CONNECTIONS
}

/// How `forge serve` behaves. Its `Debug` output hides the token.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on (used by [`bind_and_serve`]).
    pub bind: SocketAddr,
    /// Bearer token `POST /run` requires; `None` requires none.
    pub token: Option<SecretString>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Runs in flight at once; one more gets 503.
    pub max_concurrent_runs: usize,
    /// Sessions run at once within one run.
    pub concurrency: usize,
    /// Time allowed to receive a request body; a slower one gets 408.
    pub body_timeout: Duration,
    /// Hosts the host's own keys may be sent to besides their own base URL.
    pub allowed_hosts: HostKeys,
    /// The most answer bytes one run may hold; the turns past it fail.
    pub max_answer_bytes: usize,
    /// Time allowed for a request's headers, from the connection's opening
    /// or the request's first byte; past it the connection is closed.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrent_runs: DEFAULT_MAX_CONCURRENT_RUNS,
            concurrency: crate::payload::DEFAULT_CONCURRENCY,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            allowed_hosts: HostKeys::default(),
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(),
        }
    }
}

impl ServeConfig {
    /// Sets the token from [`TOKEN_ENV`] when it is set and not empty.
    pub fn token_from_env(mut self) -> Self {
        self.token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
            .map(SecretString::from);
        self
    }

    /// Adds the hosts of [`ALLOWED_HOSTS_ENV`](crate::payload::ALLOWED_HOSTS_ENV)
    /// to [`allowed_hosts`](Self::allowed_hosts).
    pub fn hosts_from_env(mut self) -> Self {
        self.allowed_hosts = self
            .allowed_hosts
            .allow(HostKeys::from_env().hosts().iter());
        self
    }
}

/// Why `forge serve` could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

struct AppState {
    config: ServeConfig,
    runs: Arc<Semaphore>,
}

/// The routes of `forge serve`, for embedding in another axum application.
pub fn router(config: ServeConfig) -> Router {
    routes(Arc::new(AppState {
        runs: Arc::new(Semaphore::new(config.max_concurrent_runs.max(1))),
        config,
    }))
}

fn routes(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/run", post(run).fallback(|| method_not_allowed("POST")))
        .route(
            "/health",
            get(health).fallback(|| method_not_allowed("GET, HEAD")),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found: use POST /run") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes, then stops accepting,
/// closes idle connections at once, lets the requests and runs in flight
/// finish and returns. Runs whose client disconnected were cancelled; their
/// turns in flight finish before this returns too.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_runs = config.max_concurrent_runs.max(1);
    let max_connections = config.max_connections.max(1);
    let limits = Limits {
        header: config.header_timeout,
        idle: config.idle_timeout,
    };
    let runs = Arc::new(Semaphore::new(max_runs));
    let state = Arc::new(AppState {
        runs: Arc::clone(&runs),
        config,
    });
    let app = routes(state);
    let connections = Arc::new(Semaphore::new(max_connections));
    let stop = CancellationToken::new();
    let shutdown = std::pin::pin!(shutdown);
    accept_loop(&listener, &app, &connections, limits, &stop, shutdown).await;
    drop(listener);
    stop.cancel();
    // Every permit back: no connection and no run task is left.
    let _connections = connections.acquire_many(permits(max_connections)).await;
    let _runs = runs.acquire_many(permits(max_runs)).await;
    Ok(())
}

fn permits(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Accepts connections, each holding one of `connections`' permits, until
/// `shutdown` completes.
async fn accept_loop(
    listener: &TcpListener,
    app: &Router,
    connections: &Arc<Semaphore>,
    limits: Limits,
    stop: &CancellationToken,
    mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
) {
    loop {
        let permit = tokio::select! {
            () = shutdown.as_mut() => return,
            permit = Arc::clone(connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => return,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.as_mut() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(
                    stream,
                    app.clone(),
                    limits,
                    stop.clone(),
                    permit,
                ));
            }
            // Out of file descriptors and the like: wait a little, so the
            // loop does not spin; the client waits in the listen queue.
            Err(error) if !is_connection_error(&error) => {
                tracing::warn!("forge serve: accept failed: {error}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            Err(_) => {}
        }
    }
}

/// The pause after an accept error that is not the client's.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// An accept error about the one connection (the client went away), not
/// the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        error.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset
    )
}

/// The connection timeouts.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header: Duration,
    idle: Duration,
}

/// How long a connection being shut down that has no request in flight is
/// given to finish writing before it is closed.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Serves one connection: HTTP/1.1 with keep-alive, closed when its headers
/// are late or it stays idle too long, and on `stop` once no request is in
/// flight on it.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: Arc::clone(&watch),
    });
    let service = {
        let inner = hyper_util::service::TowerToHyperService::new(app);
        let watch = Arc::clone(&watch);
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let busy = watch.begin();
            let response = hyper::service::Service::call(&inner, request);
            async move {
                let response = response.await?;
                // Busy until the body is sent.
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Body::new(UntilSent { body, _busy: busy })),
                )
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut drain_by: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = watch
            .deadline(limits)
            .into_iter()
            .chain(drain_by.filter(|d| *d > now))
            .min()
            .unwrap_or_else(|| Instant::now() + limits.idle);
        // The connection first: bytes that arrived while this task waited
        // to run are read before a deadline can cut them off.
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            () = stop.cancelled(), if drain_by.is_none() => {
                // Closes an idle keep-alive connection at once, and any
                // other once its request in flight is answered.
                connection.as_mut().graceful_shutdown();
                drain_by = Some(Instant::now() + DRAIN_GRACE);
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if watch.deadline(limits).is_some_and(|d| d <= now)
                    || (drain_by.is_some_and(|d| d <= now) && !watch.busy())
                {
                    return;
                }
            }
        }
    }
}

/// What a connection is doing, for its timeouts.
struct Watch(Mutex<WatchState>);

struct WatchState {
    /// Requests whose response is not fully sent.
    in_flight: usize,
    /// When the request now awaited started: its first byte, or the
    /// connection's opening for the first request.
    head_started: Option<Instant>,
    /// The last time bytes moved either way, or a response finished.
    last_activity: Instant,
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.head_started = None;
        state.last_activity = Instant::now();
    }
}

impl Watch {
    fn new() -> Self {
        let now = Instant::now();
        Watch(Mutex::new(WatchState {
            in_flight: 0,
            head_started: Some(now),
            last_activity: now,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(self: &Arc<Self>) -> Busy {
        let mut state = self.lock();
        state.in_flight += 1;
        state.head_started = None;
        drop(state);
        Busy(Arc::clone(self))
    }

    fn busy(&self) -> bool {
        self.lock().in_flight > 0
    }

    /// When the connection is to be closed, unless something happens:
    /// none while a request is in flight.
    fn deadline(&self, limits: Limits) -> Option<Instant> {
        let state = self.lock();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_started {
            Some(started) => started + limits.header,
            None => state.last_activity + limits.idle,
        })
    }

    fn read(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        state.last_activity = now;
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(now);
        }
    }

    fn wrote(&self) {
        self.lock().last_activity = Instant::now();
    }
}

/// A connection's socket, reporting its reads and writes to its [`Watch`].
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its request marked in flight until it is
/// sent (or dropped).
struct UntilSent {
    body: Body,
    _busy: Busy,
}

impl HttpBody for UntilSent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Binds [`ServeConfig::bind`], prints `forge: listening on http://ADDR` to
/// stderr (the address actually bound, so port 0 works), and [`serve`]s.
pub async fn bind_and_serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    if !addr.ip().is_loopback() && config.token.is_none() {
        eprintln!(
            "forge: warning: listening on {addr}, reachable from other hosts, without a token; set {TOKEN_ENV}"
        );
    }
    eprintln!("forge: listening on http://{addr}");
    serve(listener, config, shutdown)
        .await
        .map_err(ServeError::Serve)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let max = state.config.max_concurrent_runs.max(1);
    let in_flight = max.saturating_sub(state.runs.available_permits());
    json_response(
        StatusCode::OK,
        &json!({"status": "ok", "runs_in_flight": in_flight, "max_concurrent_runs": max}),
    )
}

async fn run(State(state): State<Arc<AppState>>, request: Request) -> Response {
    if let Some(refused) = refuse(&state, request.headers()) {
        return refused;
    }
    // The body is read, within the time limit, before a run slot is taken,
    // so that slow clients cannot hold the slots.
    let payload = match read_payload(&state, request).await {
        Ok(payload) => payload,
        Err(response) => return response,
    };
    let Ok(permit) = Arc::clone(&state.runs).try_acquire_owned() else {
        return busy(&state);
    };
    // The run goes on in a task of its own that holds the permit until every
    // session has stopped. This handler holds the drop guard: when the client
    // disconnects and the handler is dropped, the run is cancelled (turns not
    // yet sent are not sent, turns in flight finish) and the permit is
    // released only once the run has stopped.
    let cancel = CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    let options = crate::payload::Options {
        concurrency: state.config.concurrency,
        host_keys: state.config.allowed_hosts.clone(),
        max_answer_bytes: Some(state.config.max_answer_bytes),
    };
    let task = tokio::spawn(async move {
        let result =
            crate::payload::guarded(crate::payload::run_with(&payload, &options, cancel)).await;
        drop(permit);
        result
    });
    match task.await {
        Ok(result) => answer(result),
        Err(error) => answer(Err(format!("internal error: the run stopped: {error}"))),
    }
}

/// The answer to a request without the token (401) or not declared JSON
/// (415); `None` for one that may go on.
fn refuse(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if let Some(expected) = &state.config.token {
        if !authorized(headers, expected.expose_secret()) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token (Authorization: Bearer <FORGE_SERVE_TOKEN>)",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Some(response);
        }
    }
    (!is_json(headers)).then(|| {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /run needs `Content-Type: application/json`",
        )
    })
}

/// The request's JSON body, read within the body time limit and size cap;
/// the error answer (408, 413, 400) otherwise.
async fn read_payload(state: &Arc<AppState>, request: Request) -> Result<Value, Response> {
    let read = tokio::time::timeout(
        state.config.body_timeout,
        Bytes::from_request(request, state),
    );
    let body = match read.await {
        Err(_elapsed) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "request body not received within {} s",
                    state.config.body_timeout.as_secs_f64()
                ),
            ))
        }
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "request body larger than {} bytes",
                    state.config.max_body_bytes
                ),
            ))
        }
        Ok(Err(rejection)) => return Err(error(rejection.status(), &rejection.body_text())),
    };
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("Invalid JSON body: {e}")))
}

/// 503 with `Retry-After: 1`: every run slot is taken.
fn busy(state: &AppState) -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "too many runs in flight ({}); retry later",
            state.config.max_concurrent_runs.max(1)
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The HTTP answer of a run: 200 with the response, 400 for a payload the
/// API rejects, 500 for an internal failure.
fn answer(result: Result<crate::schema::Response, String>) -> Response {
    match result {
        Ok(response) => {
            let status = if response.is_success() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            match serde_json::to_value(&response) {
                Ok(body) => json_response(status, &body),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot serialise the response: {e}"),
                ),
            }
        }
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

async fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Whether the request says its body is JSON (`application/json`, any
/// parameters such as `charset`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `headers` carry `Authorization: Bearer <expected>`, compared in
/// constant time.
fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && constant_time_eq(token.trim(), expected)
}

/// Compares in time that depends only on the lengths, not on where the
/// strings differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"success": false, "error": message}))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", "secret2"));
        assert!(!constant_time_eq("", "x"));
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, "t"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer t"));
        assert!(authorized(&headers, "t"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic t"));
        assert!(!authorized(&headers, "t"));
    }
}
