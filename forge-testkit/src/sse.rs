//! The Alquimia stream's body, written the way real servers write it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use crate::protocol::Body;
use crate::Fault;

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
pub(crate) enum Piece {
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
pub(crate) fn sse_body(id: u64, answer: &str, fault: Option<Fault>, cut: bool) -> Vec<Piece> {
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
pub(crate) fn piecewise(pieces: Vec<Piece>) -> Body {
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

#[cfg(test)]
mod tests {
    use eventsource_stream::{Event, Eventsource};
    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn answers_grow_over_three_events() {
        assert_eq!(sse_contents("abcdef"), ["ab", "abcd", "abcdef"]);
        assert_eq!(sse_contents(""), [""]);
    }

    /// The data of the events of a stream body, decoded chunk by chunk by
    /// an SSE parser independent of forge's, and whether it ends with a cut.
    async fn decoded(pieces: Vec<Piece>) -> (Vec<String>, bool) {
        let cut = matches!(pieces.last(), Some(Piece::Cut));
        let chunks = pieces.into_iter().filter_map(|piece| match piece {
            Piece::Data(bytes) => Some(Ok::<_, std::io::Error>(bytes)),
            Piece::Cut => None,
        });
        let events: Vec<Event> = futures_util::stream::iter(chunks)
            .eventsource()
            .map(|event| event.expect("a well-formed stream"))
            .collect()
            .await;
        assert!(events
            .iter()
            .all(|e| e.event == "message" || e.event == "ping"));
        (events.into_iter().map(|e| e.data).collect(), cut)
    }

    fn content(data: &str) -> String {
        let value: Value = serde_json::from_str(data).unwrap();
        value["response"]["data"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn stream_bodies_look_like_a_real_servers() {
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
        let (data, cut) = decoded(pieces).await;
        assert!(!cut);
        assert_eq!(data.len(), 4);
        assert_eq!(content(&data[2]), answer);
        assert_eq!(data[3], "[DONE]");

        // Dropped: the first event, then a cut.
        let (data, cut) = decoded(sse_body(3, answer, None, true)).await;
        assert!(cut);
        assert_eq!(data.len(), 1);

        // Keep-alives: non-JSON data around the events.
        let noisy = Some(Fault::KeepAlives {
            answer: true,
            done: true,
        });
        let (data, _) = decoded(sse_body(3, answer, noisy, false)).await;
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
        let (data, _) = decoded(sse_body(3, answer, silent, false)).await;
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
        let (data, _) = decoded(pieces).await;
        assert_eq!(data.len(), 6);
        assert_eq!(data[0].len() + "data: ".len(), 3 << 20);
        assert_eq!(content(&data[4]), answer);
    }
}
