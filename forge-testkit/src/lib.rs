//! forge's test kit (not published): a loopback server speaking the
//! Alquimia and OpenAI protocols with a deterministic fault plan, for tests
//! and benchmarks; processes under test with bounded waits; dataset and
//! seed-payload builders; raw HTTP servers that answer fixed bytes. forge's
//! and the root package's tests dev-depend on it, and its `forge-bench`
//! binary is the benchmark.
//!
//! ```
//! # let rt = tokio::runtime::Runtime::new().unwrap();
//! # rt.block_on(async {
//! use forge_testkit::data::{alquimia_config, seed_payload};
//! use forge_testkit::{alquimia_answer, TestServer};
//!
//! let server = TestServer::start().await;
//! let config = alquimia_config(&server.url(), TestServer::DEFAULT_API_KEY);
//! let payload = seed_payload(&["s1"], &["hello"], config);
//! let forge::Response::Success(run) = forge::payload::run(&payload, 4).await else {
//!     panic!("the payload is valid");
//! };
//! assert_eq!(run.datasets[0].conversation[0].assistant, alquimia_answer("hello", 1, "s1"));
//! # });
//! ```
//!
//! # The test server
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
//!   answers [`openai_answer`] for the last user message, with a `usage`
//!   of [`openai_usage`] (one token per word); or, on a server
//!   built with [`TestServerBuilder::judge`], answers what the test's
//!   [`judge::Judge`] rules (an LLM judge's verdict, prose, a fence, an
//!   HTTP error), with its `usage` counted the same way.
//! - `POST /agent` (under any prefix), with [`TestServerBuilder::agent`]: a
//!   JSON agent for the `http` runner; checks the key and answers what the
//!   test's function returns for the request body (tool use, say).
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
//! | `#nousage` | the chat reply has no `usage` |
//! | `#input_tokens` | the chat reply's `usage` says `input_tokens` / `output_tokens` |
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

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
pub mod data;
mod faults;
pub mod judge;
pub mod libtest;
pub mod process;
mod protocol;
pub mod reports;
mod request;
mod server;
mod sse;

pub use faults::{Fault, FaultPlan};
pub use protocol::{alquimia_answer, openai_answer, openai_usage};
pub use request::LoggedRequest;
pub use server::{TestServer, TestServerBuilder};
