//! A linear decoder of server-sent events (the `text/event-stream` format of
//! the HTML standard), fed with the body's chunks as they arrive.
//!
//! Each byte is looked at once when searching for line ends (`\r\n`, `\n`
//! or `\r`, even when a chunk ends between `\r` and `\n`), so a long line
//! costs time in proportion to its length however it is split into chunks.
//! Lines starting with `:` are comments; `event:`, `data:`, `id:` and
//! `retry:` fields are read (one space after the colon dropped), other
//! fields ignored; several `data:` lines of one event are joined with `\n`;
//! a blank line dispatches the event. An event not ended by a blank line
//! when the stream ends is not dispatched, as the standard says. A leading
//! byte order mark is skipped; invalid UTF-8 becomes U+FFFD.
//!
//! Two caps bound what a stream can make the decoder hold: the longest line
//! and the bytes of the whole stream ([`Limits`]).

use std::ops::ControlFlow;

use thiserror::Error;

use super::http_util::{bytes_shown, SSE_LINE_LIMIT, SSE_STREAM_LIMIT};

/// The caps of a [`Decoder`], in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest line, without its line end.
    pub line: usize,
    /// The whole stream.
    pub stream: usize,
}

impl Default for Limits {
    /// [`SSE_LINE_LIMIT`] (32 MiB) and [`SSE_STREAM_LIMIT`] (64 MiB).
    fn default() -> Self {
        Limits {
            line: SSE_LINE_LIMIT,
            stream: SSE_STREAM_LIMIT,
        }
    }
}

/// A stream that broke one of the [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SseError {
    /// A line longer than the line cap (the cap).
    #[error("an event line longer than {}", bytes_shown(*.0))]
    LineTooLong(usize),
    /// A stream larger than the stream cap (the cap).
    #[error("more than {} in all", bytes_shown(*.0))]
    StreamTooLarge(usize),
}

/// One dispatched event, owned (what [`Decoder::feed`] collects).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its type: the last `event:` field, or `message`.
    pub event: String,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
    /// The last event id seen so far in the stream (`id:`), if any.
    pub id: Option<String>,
    /// The reconnection time the stream asked for (`retry:`), in milliseconds.
    pub retry: Option<u64>,
}

/// One dispatched event, borrowed from the decoder's buffers (reused for
/// the next event, so nothing is allocated per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Its type: the last `event:` field, or `message`.
    pub event: &'a str,
    /// Its `data:` lines, joined with `\n`.
    pub data: &'a str,
    /// The last event id seen so far in the stream (`id:`), if any.
    pub id: Option<&'a str>,
    /// The reconnection time the stream asked for (`retry:`), in milliseconds.
    pub retry: Option<u64>,
}

#[cfg(test)]
impl EventRef<'_> {
    fn to_owned(self) -> Event {
        Event {
            event: self.event.to_owned(),
            data: self.data.to_owned(),
            id: self.id.map(str::to_owned),
            retry: self.retry,
        }
    }
}

/// Decodes a server-sent event stream chunk by chunk; see the module docs.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The last chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    /// No line was completed yet (a byte order mark may start the first).
    first_line: bool,
    /// Bytes fed so far.
    total: usize,
    /// The data buffer of the event being read: each `data:` value followed by `\n`.
    data: String,
    event: String,
    last_id: Option<String>,
    retry: Option<u64>,
}

impl Decoder {
    /// A decoder holding at most `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            partial: Vec::new(),
            after_cr: false,
            first_line: true,
            total: 0,
            data: String::new(),
            event: String::new(),
            last_id: None,
            retry: None,
        }
    }

    /// Bytes fed so far.
    #[cfg(test)]
    pub fn bytes_read(&self) -> usize {
        self.total
    }

    /// Decodes the next `chunk` of the stream: the events it completes, in order.
    #[cfg(test)]
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut events = Vec::new();
        let _always_continues = self.feed_each(chunk, |event| {
            events.push(event.to_owned());
            ControlFlow::Continue(())
        })?;
        Ok(events)
    }

    /// Decodes the next `chunk` of the stream, handing each event it
    /// completes to `on_event` in order, until `on_event` breaks (the rest
    /// of the chunk is then left undecoded): whether it did.
    pub fn feed_each(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SseError> {
        self.total = self.total.saturating_add(chunk.len());
        if self.total > self.limits.stream {
            return Err(SseError::StreamTooLarge(self.limits.stream));
        }
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = memchr::memchr2(b'\r', b'\n', rest) {
            let flow = if self.partial.is_empty() {
                self.line(&rest[..end], &mut on_event)?
            } else {
                self.check_line(self.partial.len() + end)?;
                self.partial.extend_from_slice(&rest[..end]);
                let line = std::mem::take(&mut self.partial);
                let flow = self.line(&line, &mut on_event)?;
                // Keep the allocation for the next long line, unless huge.
                if line.capacity() <= 64 * 1024 {
                    self.partial = line;
                    self.partial.clear();
                }
                flow
            };
            if flow.is_break() {
                return Ok(flow);
            }
            let mut next = end + 1;
            if rest[end] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            rest = &rest[next..];
        }
        self.check_line(self.partial.len() + rest.len())?;
        self.partial.extend_from_slice(rest);
        Ok(ControlFlow::Continue(()))
    }

    fn check_line(&self, len: usize) -> Result<(), SseError> {
        if len > self.limits.line {
            Err(SseError::LineTooLong(self.limits.line))
        } else {
            Ok(())
        }
    }

    /// Interprets one complete line (without its line end); a blank line
    /// hands the event read so far to `on_event`.
    fn line(
        &mut self,
        mut line: &[u8],
        on_event: &mut impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SseError> {
        self.check_line(line.len())?;
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.is_empty() {
            return Ok(self.dispatch(on_event));
        }
        if line[0] == b':' {
            return Ok(ControlFlow::Continue(()));
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            b"id" if !value.contains(&0) => {
                let id = self.last_id.get_or_insert_with(String::new);
                id.clear();
                id.push_str(&String::from_utf8_lossy(value));
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits only, so it parses unless it overflows.
                self.retry = std::str::from_utf8(value)
                    .ok()
                    .and_then(|digits| digits.parse().ok());
            }
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Hands the event read so far to `on_event` when it has data; resets
    /// the event buffers (keeping their allocations).
    fn dispatch(
        &mut self,
        on_event: &mut impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let mut flow = ControlFlow::Continue(());
        if !self.data.is_empty() {
            // Without the `\n` after the last data line.
            let data = &self.data[..self.data.len() - 1];
            flow = on_event(EventRef {
                event: if self.event.is_empty() {
                    "message"
                } else {
                    &self.event
                },
                data,
                id: self.last_id.as_deref(),
                retry: self.retry,
            });
        }
        self.event.clear();
        self.data.clear();
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_split_across_chunks_and_crlf() {
        let mut decoder = Decoder::new(Limits::default());
        let mut events = decoder.feed(b"event: message\r\ndata: {\"a\":\r").unwrap();
        assert!(events.is_empty());
        events.extend(decoder.feed(b"\ndata: 1}\r\n\r\n").unwrap());
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, "{\"a\":\n1}");
    }

    fn decode_in(chunks: &[&[u8]], limits: Limits) -> Result<Vec<Event>, SseError> {
        let mut decoder = Decoder::new(limits);
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(decoder.feed(chunk)?);
        }
        Ok(events)
    }

    fn decode(stream: &[u8]) -> Vec<Event> {
        decode_in(&[stream], Limits::default()).unwrap()
    }

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    /// A stream with every feature: comments, fields, CRLF / CR / LF,
    /// multi-line data, a multi-byte character, fields without a colon.
    const RICH: &[u8] = b"\xEF\xBB\xBF: hello\r\nretry: 3000\r\nevent: greeting\r\nid: 1\r\ndata: {\"a\":\r\ndata:1}\r\n\r\ndata: caf\xC3\xA9\rdata\r\r: ping\n\nid: 2\nevent: done\ndata: [DONE]\n\nunknown: x\ndata: trailing";

    fn rich_expected() -> Vec<Event> {
        vec![
            Event {
                event: "greeting".into(),
                data: "{\"a\":\n1}".into(),
                id: Some("1".into()),
                retry: Some(3000),
            },
            Event {
                event: "message".into(),
                data: "café\n".into(),
                id: Some("1".into()),
                retry: Some(3000),
            },
            Event {
                event: "done".into(),
                data: "[DONE]".into(),
                id: Some("2".into()),
                retry: Some(3000),
            },
        ]
    }

    #[test]
    fn decodes_every_feature() {
        assert_eq!(decode(RICH), rich_expected());
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let want = rich_expected();
        for cut in 0..=RICH.len() {
            let (a, b) = RICH.split_at(cut);
            assert_eq!(
                decode_in(&[a, b], Limits::default()).unwrap(),
                want,
                "cut at {cut}"
            );
            for cut2 in cut..=RICH.len() {
                let (b1, b2) = b.split_at(cut2 - cut);
                assert_eq!(
                    decode_in(&[a, b1, b2], Limits::default()).unwrap(),
                    want,
                    "cuts at {cut} and {cut2}"
                );
            }
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = RICH.chunks(1).collect();
        assert_eq!(decode_in(&bytes, Limits::default()).unwrap(), want);
    }

    #[test]
    fn line_ends_split_between_cr_and_lf() {
        // "\r" | "\n": one line end, not two (which would dispatch an empty line).
        let events = decode_in(
            &[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"],
            Limits::default(),
        )
        .unwrap();
        assert_eq!(data(&events), ["a\nb"]);
        // "\r" then "\r": two line ends.
        let events = decode_in(&[b"data: a\r", b"\r"], Limits::default()).unwrap();
        assert_eq!(data(&events), ["a"]);
        // "\n" then "\r": two line ends.
        let events = decode_in(&[b"data: a\n", b"\r"], Limits::default()).unwrap();
        assert_eq!(data(&events), ["a"]);
    }

    #[test]
    fn field_parsing_follows_the_standard() {
        let events = decode(b"data\n\ndata:no space\n\ndata:  two spaces\n\n");
        assert_eq!(data(&events), ["", "no space", " two spaces"]);
        // An event with no data is not dispatched, and its type is reset.
        let events = decode(b"event: lonely\n\ndata: x\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "message");
        // An id with NUL is ignored; a retry with non-digits is ignored.
        let events = decode(b"id: a\x00b\nretry: 12a\ndata: x\n\n");
        assert_eq!((events[0].id.as_deref(), events[0].retry), (None, None));
        // The id persists across events; an empty id resets it to "".
        let events = decode(b"id: 7\ndata: x\n\ndata: y\n\nid\ndata: z\n\n");
        let ids: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, [Some("7"), Some("7"), Some("")]);
        // Comments and unknown fields change nothing; `Data` is not `data`.
        let events = decode(b":data: no\nDATA: no\nfoo: bar\ndata: yes\n\n");
        assert_eq!(data(&events), ["yes"]);
        // Invalid UTF-8 is replaced, not an error.
        let events = decode(b"data: \xFF\n\n");
        assert_eq!(data(&events), ["\u{fffd}"]);
    }

    #[test]
    fn an_event_cut_at_the_end_of_the_stream_is_not_dispatched() {
        assert!(decode(b"data: x").is_empty());
        assert!(decode(b"data: x\n").is_empty());
        assert_eq!(data(&decode(b"data: x\n\n")), ["x"]);
        assert_eq!(data(&decode(b"data: x\r\r")), ["x"]);
        // A byte order mark only counts at the very start.
        assert_eq!(data(&decode(b"data: x\n\n\xEF\xBB\xBFdata: y\n\n")), ["x"]);
    }

    #[test]
    fn lines_are_capped_whether_whole_or_in_pieces() {
        let limits = Limits {
            line: 10,
            stream: 1000,
        };
        // Exactly at the cap: fine.
        let fine = decode_in(&[b"data: 1234\n\n"], limits).unwrap();
        assert_eq!(data(&fine), ["1234"]);
        let at_cap = b"data:12345\n\n";
        assert_eq!(data(&decode_in(&[at_cap], limits).unwrap()), ["12345"]);
        // One byte more, in one chunk, in pieces, or unterminated.
        let over = b"data:123456\n\n";
        assert_eq!(decode_in(&[over], limits), Err(SseError::LineTooLong(10)));
        for cut in 0..over.len() {
            let (a, b) = over.split_at(cut);
            assert_eq!(
                decode_in(&[a, b], limits),
                Err(SseError::LineTooLong(10)),
                "cut at {cut}"
            );
        }
        assert_eq!(
            decode_in(&[b"data:", b"123456"], limits),
            Err(SseError::LineTooLong(10))
        );
        // Many short lines are fine.
        let many = b"data: 1234\n".repeat(50);
        assert!(decode_in(&[&many], limits).is_ok());
    }

    #[test]
    fn streams_are_capped() {
        let limits = Limits {
            line: 100,
            stream: 20,
        };
        let mut decoder = Decoder::new(limits);
        assert_eq!(
            data(&decoder.feed(b"data: 12345678\n\n").unwrap()),
            ["12345678"]
        );
        assert_eq!(decoder.bytes_read(), 16);
        assert!(decoder.feed(b"data").is_ok());
        assert_eq!(decoder.feed(b"!"), Err(SseError::StreamTooLarge(20)));
        assert_eq!(
            SseError::StreamTooLarge(SSE_STREAM_LIMIT).to_string(),
            "more than 64 MiB in all"
        );
        assert_eq!(
            SseError::LineTooLong(SSE_LINE_LIMIT).to_string(),
            "an event line longer than 32 MiB"
        );
    }

    #[test]
    fn feeding_stops_where_the_handler_breaks() {
        let mut decoder = Decoder::new(Limits::default());
        let mut seen = Vec::new();
        let flow = decoder
            .feed_each(b"data: a\n\ndata: stop\n\ndata: c\n\n", |event| {
                seen.push(event.data.to_owned());
                if event.data == "stop" {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert!(flow.is_break());
        assert_eq!(seen, ["a", "stop"]);
    }

    #[test]
    fn a_long_line_in_small_chunks_is_kept_whole() {
        let payload = "x".repeat(100_000);
        let stream = format!("data: {payload}\r\n\r\n");
        let chunks: Vec<&[u8]> = stream.as_bytes().chunks(7).collect();
        let events = decode_in(&chunks, Limits::default()).unwrap();
        assert_eq!(data(&events), [payload.as_str()]);
    }
}
