//! The ideal client: what forge's `alquimia` runner does per turn, written
//! by hand on a raw hyper HTTP/1 connection per session, on a
//! current-thread runtime. S sessions run at once, each its T turns in
//! order: `POST /event/infer/web/bench?chat_history=50&agentspace=_default`
//! (bearer key, the JSON body forge sends), the stream id cut out of the
//! reply, then `GET /event/stream/{id}?response_only=true` read to the end
//! of its body, which must end with the `[DONE]` event. Nothing else is
//! parsed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// How the stream of a turn ends.
const DONE: &[u8] = b"data: [DONE]\r\n\r\n";

/// The server and the suite's shape.
struct Target {
    /// `host:port`.
    host: String,
    auth: HeaderValue,
    turns: usize,
}

/// Runs S sessions x T turns against the server at `url` (`http://host:port`).
pub fn run(url: &str, api_key: &str, sessions: usize, turns: usize) -> Result<(), String> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: expected http://host:port"))?
        .trim_end_matches('/')
        .to_owned();
    let auth = HeaderValue::from_str(&format!("Bearer {api_key}")).map_err(|e| e.to_string())?;
    let target = std::sync::Arc::new(Target { host, auth, turns });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut tasks = JoinSet::new();
        for s in 0..sessions {
            tasks.spawn(session(target.clone(), s));
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| e.to_string())??;
        }
        Ok(())
    })
}

/// One session: a connection, its turns one after another.
async fn session(target: std::sync::Arc<Target>, s: usize) -> Result<(), String> {
    let stream = TcpStream::connect(&target.host)
        .await
        .map_err(|e| format!("connect {}: {e}", target.host))?;
    // As reqwest does by default.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    for t in 0..target.turns {
        let id = infer(&target, &mut sender, s, t).await?;
        read_stream(&target, &mut sender, &id).await?;
    }
    drop(sender);
    connection
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Sends turn `t` of session `s`; the stream id of the reply.
async fn infer(
    target: &Target,
    sender: &mut SendRequest<Full<Bytes>>,
    s: usize,
    t: usize,
) -> Result<String, String> {
    // The body forge's runner sends (extra_data holds today's date).
    let body = format!(
        r#"{{"query":"question {t} of session {s}","session_id":"s{s}","extra_data":{{"date":"2025-01-01"}},"attachments":[]}}"#
    );
    let request = Request::post("/event/infer/web/bench?chat_history=50&agentspace=_default")
        .header(HOST, &target.host)
        .header(AUTHORIZATION, target.auth.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("infer: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("infer: status {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("infer: {e}"))?
        .to_bytes();
    stream_id(&body).ok_or_else(|| format!("infer: no stream id in {body:?}"))
}

/// The `stream_id` string of an infer reply, cut out of its bytes.
fn stream_id(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"stream_id\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    String::from_utf8(body[start..start + len].to_vec()).ok()
}

/// Reads stream `id` to the end of its body.
async fn read_stream(
    target: &Target,
    sender: &mut SendRequest<Full<Bytes>>,
    id: &str,
) -> Result<(), String> {
    let request = Request::get(format!("/event/stream/{id}?response_only=true"))
        .header(HOST, &target.host)
        .header(AUTHORIZATION, target.auth.clone())
        .header(ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("stream {id}: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("stream {id}: status {}", response.status()));
    }
    let mut body = response.into_body();
    // The last bytes seen, to find the end event across chunk boundaries.
    let mut tail: Vec<u8> = Vec::with_capacity(2 * DONE.len());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("stream {id}: {e}"))?;
        if let Some(data) = frame.data_ref() {
            tail.extend_from_slice(&data[data.len().saturating_sub(DONE.len())..]);
            tail.drain(..tail.len().saturating_sub(DONE.len()));
        }
    }
    if tail != DONE {
        return Err(format!("stream {id} ended without [DONE]"));
    }
    Ok(())
}
