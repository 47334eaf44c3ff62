//! The server's request log.

use std::time::Duration;

use serde_json::Value;

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
    /// The fault the [`FaultPlan`](crate::FaultPlan) injected into this request:
    /// `reject 503`, `drop`, `delay`, `delay infer`, `keep-alives`, `close`,
    /// `redirect 307` or `huge lines`.
    pub fault: Option<String>,
    /// Which request this was on its connection: 1 on a new connection,
    /// more on a kept-alive one.
    pub connection_request: usize,
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

    /// Whether this is an Alquimia infer request.
    pub fn is_infer(&self) -> bool {
        self.path.contains("/event/infer/")
    }

    /// Whether this reads an Alquimia stream.
    pub fn is_stream(&self) -> bool {
        self.path.contains("/event/stream/")
    }
}
