//! HTTP helpers shared by the runners that talk to a system under test over
//! HTTP: one pooled client per runner, the classification of failures into
//! [`RunError`] kinds, `Retry-After` parsing, and messages that never carry a
//! secret.
//!
//! Classification (see [`ErrorKind`]):
//!
//! | failure | kind |
//! | --- | --- |
//! | connection refused / reset / aborted | transient |
//! | an HTTP status of the runner's [`RetryOn`] set (by default 408, 409, 429 and 5xx) | transient (with `Retry-After`) |
//! | the request timed out | timeout |
//! | any other HTTP 4xx / 5xx, a malformed reply, a refused redirect | permanent |
//!
//! The shared [`client`] follows a redirect only within the origin (scheme,
//! host and port) of the request, at most [`MAX_REDIRECTS`] times: a
//! redirect elsewhere is an error naming both origins, so no header, key or
//! body configured for one server reaches another.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::error::{humanize, ConfigError, ErrorKind, RunError};

/// The longest part of a server's reply quoted in an error message, in characters.
pub const SNIPPET_CHARS: usize = 300;

/// The most of an error reply's body read (to quote its start); the rest is
/// left unread.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// The largest JSON reply read; a larger one is a permanent error.
pub const JSON_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// The longest line of a server-sent event stream; a longer one is a
/// permanent error.
pub const SSE_LINE_LIMIT: usize = 32 * 1024 * 1024;
/// The most a server-sent event stream may carry in all; more is a
/// permanent error.
pub const SSE_STREAM_LIMIT: usize = 64 * 1024 * 1024;

/// The most redirects a request follows (each within its origin).
pub const MAX_REDIRECTS: usize = 5;

/// Builds the HTTP client a runner keeps for its whole life, so connections
/// are pooled across turns. Timeouts are set per request. It follows
/// same-origin redirects only (see [`redirect_policy`]).
pub fn client(runner: &str) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .redirect(redirect_policy())
        .build()
        .map_err(|e| ConfigError::new(runner, format!("cannot build the HTTP client: {e}")))
}

/// A redirect the client did not follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    /// To another origin (scheme, host or port): the origin asked, the one
    /// redirected to.
    #[error("{0} redirected to another origin, {1}; not followed")]
    CrossOrigin(String, String),
    /// More than [`MAX_REDIRECTS`] in a row (the origin).
    #[error("{0} redirected more than {MAX_REDIRECTS} times; not followed")]
    TooMany(String),
}

/// The redirect policy of [`client`]: same origin (scheme, host and port as
/// the request's first URL) only, at most [`MAX_REDIRECTS`] times.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        let from = first.origin().ascii_serialization();
        let to = attempt.url().origin().ascii_serialization();
        if attempt.url().origin() != first.origin() {
            attempt.error(RedirectRefused::CrossOrigin(from, to))
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(RedirectRefused::TooMany(from))
        } else {
            attempt.follow()
        }
    })
}

/// Parses a base URL from a runner's configuration: it must be an absolute
/// `http` or `https` URL. A trailing slash is irrelevant.
pub fn parse_base_url(runner: &str, key: &str, base_url: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(base_url.trim()).map_err(|e| {
        ConfigError::new(
            runner,
            format!(
                "`{key}` is not a valid URL ({e}): {}",
                redact_url_str(base_url)
            ),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ConfigError::new(
            runner,
            format!(
                "`{key}` must be an http:// or https:// URL, found {}",
                redact_url(&url)
            ),
        ));
    }
    Ok(url)
}

/// `base` with `segments` appended to its path, each percent-encoded as one
/// path segment (a trailing slash of `base` is dropped first).
pub fn join_segments<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// Whether a query parameter name looks like it carries a secret.
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "auth",
        "signature",
        "sig",
        "credential",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// The URL as it may appear in a message: no user info, and the values of
/// query parameters that look secret (`api_key`, `token`, ...) replaced by `***`.
pub fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    let _ = url.set_username("");
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// [`redact_url`] for a string that may not parse; an unparsable one keeps
/// only what comes before any `?` or `@`.
pub fn redact_url_str(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => redact_url(&url),
        Err(_) => {
            let cut = url.split(['?', '#']).next().unwrap_or_default();
            match cut.rsplit_once('@') {
                Some((_, host)) => host.to_owned(),
                None => cut.to_owned(),
            }
        }
    }
}

/// `text` with every occurrence of `secret`, whatever its length, replaced
/// by `[REDACTED]` (a server may echo the key it rejected): the one rule of
/// `Secrets::redact`.
#[cfg(test)]
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    let secret: Option<SecretString> = secret.map(SecretString::from);
    scrub_all(text, secret.as_slice())
}

/// `text` with every secret of `secrets` replaced by `[REDACTED]`, as
/// [`Secrets::redact`](crate::secrets::Secrets::redact) does.
pub fn scrub_all(text: &str, secrets: &[SecretString]) -> String {
    if secrets.iter().all(|s| s.expose_secret().trim().is_empty()) {
        return text.to_owned();
    }
    crate::secrets::Secrets::new(secrets.iter().map(ExposeSecret::expose_secret))
        .redact(text)
        .into_owned()
}

/// A reply quoted in an error message: `secrets` scrubbed from the whole
/// text first, then cut to a [`snippet`] (cutting first could leave the start
/// of a secret that straddles the cut).
pub fn quote(text: &str, secrets: &[SecretString]) -> String {
    snippet(&scrub_all(text, secrets))
}

/// At most [`SNIPPET_CHARS`] characters of a reply body, whitespace collapsed,
/// for an error message.
pub fn snippet(body: &str) -> String {
    let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}...", &collapsed[..cut]),
        None if collapsed.is_empty() => "(empty body)".to_owned(),
        None => collapsed,
    }
}

/// The longest `Retry-After` delay honoured; a longer (or unrepresentable)
/// one is ignored, as if the header were missing.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The delay a `Retry-After` header asks for: delay-seconds or an HTTP date
/// (a date in the past gives zero). Absurd values (beyond
/// [`MAX_RETRY_AFTER`], too large to represent, negative) are ignored.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let sane = |delay: Duration| (delay <= MAX_RETRY_AFTER).then_some(delay);
    if let Ok(seconds) = value.parse::<u64>() {
        return sane(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok().and_then(sane);
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    sane(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Whether an HTTP status is in the default [`RetryOn`] set: 408, 409, 429
/// or 5xx, the statuses the official OpenAI and Anthropic clients retry.
#[cfg(test)]
pub fn is_transient_status(status: StatusCode) -> bool {
    RetryOn::default().contains(status)
}

/// The HTTP statuses a runner answers with a transient error (retried by the
/// suite's `retries`): a runner's `retry_on: [429, 503]` setting. The
/// default is 408, 409, 429 and every status from 500 to 599.
#[derive(Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// Bit `n` is status `n` (100..=599).
    bits: [u64; 10],
}

impl RetryOn {
    /// Exactly `statuses`; an error names the first one outside 100..=599.
    pub fn new(statuses: impl IntoIterator<Item = u16>) -> Result<Self, String> {
        let mut set = RetryOn { bits: [0; 10] };
        for status in statuses {
            if !(100..=599).contains(&status) {
                return Err(not_a_status(status));
            }
            set.bits[usize::from(status / 64)] |= 1 << (status % 64);
        }
        Ok(set)
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: StatusCode) -> bool {
        let status = status.as_u16();
        self.bits
            .get(usize::from(status / 64))
            .is_some_and(|word| word & (1 << (status % 64)) != 0)
    }

    /// The statuses of the set, in order.
    pub fn statuses(&self) -> Vec<u16> {
        (100..=599)
            .filter(|&s| self.bits[usize::from(s / 64)] & (1 << (s % 64)) != 0)
            .collect()
    }
}

fn not_a_status(status: impl std::fmt::Display) -> String {
    format!("{status} is not an HTTP status (100..=599)")
}

impl Default for RetryOn {
    /// 408, 409, 429 and 500..=599.
    fn default() -> Self {
        let mut set = RetryOn { bits: [0; 10] };
        for status in [408u16, 409, 429].into_iter().chain(500..=599) {
            set.bits[usize::from(status / 64)] |= 1 << (status % 64);
        }
        set
    }
}

impl std::fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.statuses()).finish()
    }
}

impl schemars::JsonSchema for RetryOn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RetryOn".into()
    }

    /// A list of HTTP statuses, as [`RetryOn`]'s `Deserialize` reads it.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "array",
            "items": {"type": "integer", "minimum": 100, "maximum": 599},
        })
    }
}

impl<'de> serde::Deserialize<'de> for RetryOn {
    /// A list of statuses, such as `[429, 503]`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let statuses: Vec<i64> = serde::Deserialize::deserialize(deserializer)?;
        let statuses = statuses
            .into_iter()
            .map(|s| u16::try_from(s).map_err(|_| not_a_status(s)))
            .collect::<Result<Vec<u16>, String>>()
            .and_then(RetryOn::new);
        statuses.map_err(serde::de::Error::custom)
    }
}

/// The I/O error kinds of a connection that failed before or while the
/// request was sent.
fn is_connection_io_error(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
            ) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// The error and its causes, as one line, without the URL reqwest adds.
pub fn error_chain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = err.source();
    }
    message
}

/// Classifies a failure to send a request or to read its reply.
///
/// A refused, reset or aborted connection is transient; a timeout (`limit`
/// is the request's timeout) is [`ErrorKind::Timeout`]; anything else is
/// permanent. The message names the URL without its secrets.
pub fn send_error(error: reqwest::Error, url: &Url, limit: Duration) -> RunError {
    let shown = redact_url(url);
    if error.is_timeout() {
        return RunError {
            kind: ErrorKind::Timeout,
            message: format!("timed out after {} waiting for {shown}", humanize(limit)),
            retry_after: None,
        };
    }
    let transient = error.is_connect() || is_connection_io_error(&error);
    let message = if error.is_connect() {
        format!("cannot connect to {shown}: {}", error_chain(error))
    } else {
        format!("request to {shown} failed: {}", error_chain(error))
    };
    if transient {
        RunError::transient(message)
    } else {
        RunError::permanent(message)
    }
}

/// Passes a successful response through; turns an error status into a
/// [`RunError`]: transient with its `Retry-After` for a status of
/// `retry_on`, permanent otherwise, with a snippet of the body (`secrets`
/// scrubbed).
pub async fn check_status(
    response: Response,
    url: &Url,
    secrets: &[SecretString],
    retry_on: &RetryOn,
) -> Result<Response, RunError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let delay = retry_after(response.headers());
    let body = read_capped(response, ERROR_BODY_LIMIT)
        .await
        .map(|(bytes, _)| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let message = format!(
        "HTTP {} from {}: {}",
        status.as_u16(),
        redact_url(url),
        quote(&body, secrets)
    );
    if retry_on.contains(status) {
        Err(RunError::transient(message).with_retry_after(delay))
    } else {
        Err(RunError::permanent(message))
    }
}

/// Reads at most `limit` bytes of a reply body: the bytes, and whether the
/// body was longer (its rest is not read).
pub async fn read_capped(
    mut response: Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The error of a reply larger than `limit` bytes.
pub fn too_large(url: &Url, limit: usize) -> RunError {
    RunError::permanent(format!(
        "the reply from {} is larger than {}; not read",
        redact_url(url),
        bytes_shown(limit)
    ))
}

/// `limit` bytes for a message: `64 KiB`, `32 MiB`, `100 bytes`.
pub fn bytes_shown(limit: usize) -> String {
    if limit >= 1 << 20 && limit & ((1 << 20) - 1) == 0 {
        format!("{} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit & ((1 << 10) - 1) == 0 {
        format!("{} KiB", limit >> 10)
    } else {
        format!("{limit} bytes")
    }
}

/// A JSON request to an OpenAI-compatible endpoint: `body` POSTed to `url`
/// (with `auth` as its `Authorization`), under `timeout`; the reply as
/// JSON, or the error its status, body or transport gives (`secrets`
/// scrubbed). The `openai` runner and the judge send theirs through it.
pub async fn post_json(
    client: &reqwest::Client,
    url: &Url,
    body: &Value,
    auth: Option<&reqwest::header::HeaderValue>,
    timeout: Duration,
    secrets: &[SecretString],
    retry_on: &RetryOn,
) -> Result<Value, RunError> {
    let mut request = client.post(url.clone()).timeout(timeout).json(body);
    if let Some(auth) = auth {
        request = request.header(reqwest::header::AUTHORIZATION, auth.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| send_error(e, url, timeout))?;
    let response = check_status(response, url, secrets, retry_on).await?;
    read_json(response, url, timeout, secrets).await
}

/// Reads a reply body (at most [`JSON_BODY_LIMIT`] bytes) as JSON. A
/// malformed body is a permanent error quoting its start, so is a larger
/// one; a failure while reading is classified by [`send_error`].
pub async fn read_json(
    response: Response,
    url: &Url,
    limit: Duration,
    secrets: &[SecretString],
) -> Result<Value, RunError> {
    let bytes = read_body(response, url, limit).await?;
    parse_json(&bytes, url, secrets)
}

/// Reads a reply body of at most [`JSON_BODY_LIMIT`] bytes; a larger one
/// is a permanent error, a failure while reading is classified by
/// [`send_error`] (`limit` is the request's timeout).
pub async fn read_body(
    response: Response,
    url: &Url,
    limit: Duration,
) -> Result<Vec<u8>, RunError> {
    let (bytes, cut) = read_capped(response, JSON_BODY_LIMIT)
        .await
        .map_err(|e| send_error(e, url, limit))?;
    if cut {
        return Err(too_large(url, JSON_BODY_LIMIT));
    }
    Ok(bytes)
}

/// A reply body from `url` as JSON; a malformed one is a permanent error
/// quoting its start (`secrets` scrubbed).
pub fn parse_json(bytes: &[u8], url: &Url, secrets: &[SecretString]) -> Result<Value, RunError> {
    serde_json::from_slice(bytes).map_err(|e| {
        RunError::permanent(format!(
            "malformed JSON from {} ({e}): {}",
            redact_url(url),
            quote(&String::from_utf8_lossy(bytes), secrets)
        ))
    })
}

/// The value of an optional string setting, falling back to the environment
/// variable `env` when it is missing or empty (after trimming).
pub fn setting_or_env(value: Option<String>, env: &str) -> Option<String> {
    value
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var(env).ok().filter(|v| !v.trim().is_empty()))
        .map(|v| v.trim().to_owned())
}

/// [`setting_or_env`] for a credential: the value stays a [`SecretString`].
pub fn secret_or_env(value: Option<SecretString>, env: &str) -> Option<SecretString> {
    value
        .map(|v| v.expose_secret().trim().into())
        .filter(|v: &SecretString| !v.expose_secret().is_empty())
        .or_else(|| {
            let from_env = SecretString::from(std::env::var(env).ok()?);
            let trimmed: SecretString = from_env.expose_secret().trim().into();
            (!trimmed.expose_secret().is_empty()).then_some(trimmed)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// A loopback server answering every connection with `body` (HTTP 500).
    async fn fixed_server(body: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = format!(
                        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn reply_bodies_are_read_up_to_a_cap() {
        let url = fixed_server(vec![b'x'; 200_000]).await;
        let response = reqwest::get(&url).await.unwrap();
        let (body, cut) = read_capped(response, 1000).await.unwrap();
        assert_eq!((body.len(), cut), (1000, true));
        let response = reqwest::get(&url).await.unwrap();
        let (body, cut) = read_capped(response, 200_000).await.unwrap();
        assert_eq!((body.len(), cut), (200_000, false));
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let delay = retry_after(&headers).unwrap();
        assert!(delay > Duration::from_secs(100) && delay <= Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn ignores_absurd_retry_after_values() {
        let mut headers = HeaderMap::new();
        for absurd in [
            "99999999999999999999",
            "1e30",
            "1e400",
            "-1",
            "-0.5",
            "NaN",
            "inf",
            "999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(absurd));
            assert_eq!(retry_after(&headers), None, "{absurd}");
        }
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn redacts_secrets_from_urls() {
        let url =
            Url::parse("https://user:pw@h.example/v1/x?api_key=SECRET&chat_history=50").unwrap();
        let shown = redact_url(&url);
        assert!(
            !shown.contains("SECRET") && !shown.contains("pw"),
            "{shown}"
        );
        assert!(shown.contains("chat_history=50"), "{shown}");
        assert_eq!(redact_url_str("not a url?token=x"), "not a url");
    }

    #[test]
    fn snippets_are_short_and_scrubbed() {
        let long = "é".repeat(1000);
        assert_eq!(snippet(&long).chars().count(), SNIPPET_CHARS + 3);
        assert_eq!(snippet("  a \n b "), "a b");
        assert_eq!(
            scrub("bad key sk-123456", Some("sk-123456")),
            "bad key [REDACTED]"
        );
        // Whatever the length, as in reports.
        assert_eq!(scrub("bad key Zq9", Some("Zq9")), "bad key [REDACTED]");
        assert_eq!(
            quote("key abcde rejected", &["abcde".into()]),
            "key [REDACTED] rejected"
        );
    }

    #[test]
    fn secrets_fall_back_to_the_environment_as_settings_do() {
        // A variable of this test alone: no other test reads it.
        const ENV: &str = "FORGE_TEST_SECRET_OR_ENV";
        let shown = |v: Option<SecretString>| v.map(|v| v.expose_secret().to_owned());
        std::env::remove_var(ENV);
        assert_eq!(
            shown(secret_or_env(Some(" k1 ".into()), ENV)),
            Some("k1".into())
        );
        assert_eq!(shown(secret_or_env(Some("  ".into()), ENV)), None);
        std::env::set_var(ENV, " from-env ");
        assert_eq!(shown(secret_or_env(None, ENV)), Some("from-env".into()));
        assert_eq!(
            shown(secret_or_env(Some("".into()), ENV)),
            Some("from-env".into())
        );
        assert_eq!(
            shown(secret_or_env(Some("k2".into()), ENV)),
            Some("k2".into())
        );
        std::env::set_var(ENV, " ");
        assert_eq!(shown(secret_or_env(None, ENV)), None);
        std::env::remove_var(ENV);
    }

    #[test]
    fn quotes_never_show_part_of_a_secret_cut_at_the_snippet_boundary() {
        let key = "sk-live-0123456789abcdefghij".to_owned();
        for offset in SNIPPET_CHARS - 30..=SNIPPET_CHARS + 5 {
            let body = format!("{} {key} rejected", "e".repeat(offset));
            let quoted = quote(&body, &[key.as_str().into()]);
            for start in 0..=key.len() - 8 {
                for end in start + 8..=key.len() {
                    assert!(!quoted.contains(&key[start..end]), "{offset}: {quoted}");
                }
            }
        }
    }

    #[test]
    fn retry_on_sets() {
        let default = RetryOn::default();
        for status in [408, 409, 429, 500, 501, 502, 503, 504, 599] {
            assert!(
                default.contains(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
            assert!(is_transient_status(StatusCode::from_u16(status).unwrap()));
        }
        for status in [200, 301, 400, 401, 403, 404, 422, 499, 600, 999] {
            assert!(
                !default.contains(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        let custom: RetryOn = serde_json::from_value(serde_json::json!([429, 503])).unwrap();
        assert_eq!(custom.statuses(), [429, 503]);
        assert!(!custom.contains(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(format!("{custom:?}"), "[429, 503]");
        let none: RetryOn = serde_json::from_value(serde_json::json!([])).unwrap();
        assert!(!none.contains(StatusCode::SERVICE_UNAVAILABLE));
        for (bad, want) in [
            (
                serde_json::json!([700]),
                "700 is not an HTTP status (100..=599)",
            ),
            (serde_json::json!([99]), "99 is not an HTTP status"),
            (serde_json::json!([-1]), "-1 is not an HTTP status"),
            (serde_json::json!([70000]), "70000 is not an HTTP status"),
            (serde_json::json!(["503"]), "invalid type: string"),
            (serde_json::json!(503), "invalid type: integer"),
        ] {
            let error = serde_json::from_value::<RetryOn>(bad.clone()).unwrap_err();
            assert!(error.to_string().contains(want), "{bad}: {error}");
        }
    }

    #[test]
    fn joins_encoded_segments() {
        let base = Url::parse("http://h/api/").unwrap();
        let url = join_segments(&base, ["event", "infer", "a b", "c/d"]);
        assert_eq!(url.as_str(), "http://h/api/event/infer/a%20b/c%2Fd");
    }
}
