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
//! | `GET /health` | 200 `{"status": "ok", ...}` (no token needed) |
//! | another method | 405; another path: 404 |
//!
//! Every answer is JSON; every error is `{"success": false, "error": "..."}`.
//! The body is read before a run takes a slot. A run whose client disconnects
//! is cancelled: turns not yet sent are not sent, turns in flight finish, and
//! the run holds its slot until they have. On shutdown the server stops
//! accepting connections and lets the runs in flight finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

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

/// How `forge serve` behaves.
#[derive(Clone)]
pub struct ServeConfig {
    /// Address to listen on (used by [`bind_and_serve`]).
    pub bind: SocketAddr,
    /// Bearer token `POST /run` requires; `None` requires none.
    pub token: Option<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Runs in flight at once; one more gets 503.
    pub max_concurrent_runs: usize,
    /// Sessions run at once within one run.
    pub concurrency: usize,
    /// Time allowed to receive a request body; a slower one gets 408.
    pub body_timeout: Duration,
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
        }
    }
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_concurrent_runs", &self.max_concurrent_runs)
            .field("concurrency", &self.concurrency)
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

impl ServeConfig {
    /// Sets the token from [`TOKEN_ENV`] when it is set and not empty.
    pub fn token_from_env(mut self) -> Self {
        self.token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
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

/// Serves on `listener` until `shutdown` completes, then lets the runs in
/// flight finish and returns. Runs whose client disconnected were cancelled;
/// their turns in flight finish before this returns too.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = config.max_concurrent_runs.max(1);
    let runs = Arc::new(Semaphore::new(max));
    let state = Arc::new(AppState {
        runs: Arc::clone(&runs),
        config,
    });
    axum::serve(listener, routes(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    // Every permit back: no run task is left.
    let _all = runs
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
    Ok(())
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
    if let Some(expected) = &state.config.token {
        if !authorized(request.headers(), expected) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token (Authorization: Bearer <FORGE_SERVE_TOKEN>)",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    // The body is read, within the time limit, before a run slot is taken,
    // so that slow clients cannot hold the slots.
    let read = tokio::time::timeout(
        state.config.body_timeout,
        Bytes::from_request(request, &state),
    );
    let body = match read.await {
        Err(_elapsed) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "request body not received within {} s",
                    state.config.body_timeout.as_secs_f64()
                ),
            )
        }
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "request body larger than {} bytes",
                    state.config.max_body_bytes
                ),
            )
        }
        Ok(Err(rejection)) => return error(rejection.status(), &rejection.body_text()),
    };
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("Invalid JSON body: {e}")),
    };
    let Ok(permit) = Arc::clone(&state.runs).try_acquire_owned() else {
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
        return response;
    };
    // The run goes on in a task of its own that holds the permit until every
    // session has stopped. This handler holds the drop guard: when the client
    // disconnects and the handler is dropped, the run is cancelled (turns not
    // yet sent are not sent, turns in flight finish) and the permit is
    // released only once the run has stopped.
    let cancel = CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    let concurrency = state.config.concurrency;
    let task = tokio::spawn(async move {
        let result = crate::payload::guarded(crate::payload::run_with_cancel(
            &payload,
            concurrency,
            cancel,
        ))
        .await;
        drop(permit);
        result
    });
    let result = match task.await {
        Ok(result) => result,
        Err(error) => Err(format!("internal error: the run stopped: {error}")),
    };
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
