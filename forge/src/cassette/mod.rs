//! Cassettes: a run's replies recorded once (`--record DIR`,
//! `FORGE_RECORD`) and replayed offline (`--replay DIR`, `FORGE_REPLAY`),
//! one file per suite, `DIR/<suite>.cassette.json`.
//!
//! A cassette is pretty, sorted JSON: the suite's name, its runner (type and
//! a fingerprint of its `runner:` mapping as written, `${VAR}`s unexpanded,
//! so neither a key nor a machine's URL is in it), and per session (session
//! id, assistant id, `repeat` run) the fingerprint of its context and its
//! turns in order: what the system under test was sent (`qa_id`, `query`,
//! a fingerprint of the batch's `agentic` input) and what came back (the
//! answer, the agentic data, log-probabilities, observation, the tokens
//! the reply reported; or, with
//! `--record-errors`, the failure), its time and attempts, and the
//! session's wall time. Texts are redacted with the suite's secrets.
//!
//! A turn replays when everything its session saw up to it is unchanged;
//! otherwise it does not, and the replay says which part of the key
//! changed ([`Miss`]). A turn whose earlier turn changed does not replay
//! either: the agent saw another conversation.

mod judge;
mod record;
mod replay;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::schema::{Batch, Object};

pub use judge::JudgeEntry;
pub(crate) use judge::JudgeTape;
pub(crate) use record::{JobKey, Recorder};
pub(crate) use replay::{Replay, Tape};

/// The version of the cassette format.
pub const FORMAT: u32 = 1;

/// The largest cassette file read.
pub const MAX_CASSETTE_BYTES: u64 = 4 << 30;

/// Where replies come from and go to, for a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cassettes {
    /// Replay from this directory: a turn with no recording fails, unless
    /// `record` is also set (then it runs live and is recorded).
    pub replay: Option<PathBuf>,
    /// Record into this directory.
    pub record: Option<PathBuf>,
    /// Record failed turns too (by default they are left out, so the next
    /// recording retries them).
    pub record_errors: bool,
}

/// Environment variable: the harness replays from this directory.
pub const REPLAY_ENV: &str = "FORGE_REPLAY";
/// Environment variable: the harness records into this directory.
pub const RECORD_ENV: &str = "FORGE_RECORD";
/// Environment variable: `1` records failed turns too.
pub const RECORD_ERRORS_ENV: &str = "FORGE_RECORD_ERRORS";

impl Cassettes {
    /// The harness's cassettes: `FORGE_REPLAY`, `FORGE_RECORD`,
    /// `FORGE_RECORD_ERRORS=1`.
    pub fn from_env() -> Self {
        let dir = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Cassettes {
            replay: dir(REPLAY_ENV),
            record: dir(RECORD_ENV),
            record_errors: std::env::var(RECORD_ERRORS_ENV).is_ok_and(|v| v == "1"),
        }
    }

    /// Whether the run sends nothing at all: replay without recording.
    pub fn offline(&self) -> bool {
        self.replay.is_some() && self.record.is_none()
    }
}

/// The cassette file of suite `suite` in `dir`.
pub fn path(dir: &Path, suite: &str) -> PathBuf {
    dir.join(format!("{suite}.cassette.json"))
}

/// A suite's cassette.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cassette {
    /// Always [`FORMAT`].
    pub forge_cassette: u32,
    /// The suite's name.
    pub suite: String,
    /// The runner the replies came from.
    pub runner: RunnerKey,
    /// The sessions, sorted by session id, assistant id and run.
    pub sessions: Vec<SessionTape>,
    /// The judge's replies, sorted by request and vote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judge: Vec<JudgeEntry>,
}

/// The runner of a cassette: its type and the fingerprint of its mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerKey {
    /// The runner's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The fingerprint of its `runner:` mapping as written.
    pub config: String,
}

/// One session's recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTape {
    /// The session id (as in the suite; `run` tells repeats apart).
    pub session_id: String,
    /// The assistant id.
    pub assistant_id: String,
    /// The `repeat` run, from 0.
    pub run: usize,
    /// The fingerprint of the session's context.
    pub context: String,
    /// The session's wall time, when every turn it ran is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<f64>,
    /// Its turns, in order from the first.
    pub turns: Vec<TurnTape>,
}

/// One turn's recording: what was sent, and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnTape {
    /// The batch's `qa_id`.
    pub qa_id: String,
    /// The query sent.
    pub query: String,
    /// The fingerprint of the batch's `agentic` input.
    pub agentic_input: String,
    /// The answer, or the failure.
    pub reply: ReplyTape,
    /// The turn's time, retries included, in ms.
    pub time_ms: f64,
    /// How many times it was attempted.
    pub attempts: u32,
}

/// What came back for a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyTape {
    /// The answer (empty for a failure).
    #[serde(default)]
    pub assistant: String,
    /// The batch's `agentic` after the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentic: Option<Object>,
    /// Log-probabilities, when the system under test gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Object>,
    /// The batch's `observation` after the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<String>,
    /// The failure, recorded with `--record-errors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorTape>,
    /// The tokens the reply reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::Usage>,
}

/// A recorded failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorTape {
    /// Its message.
    pub message: String,
    /// `transient`, `permanent` or `timeout`.
    pub kind: String,
}

/// The key of a turn, as the cassette compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TurnKey {
    pub qa_id: String,
    pub query: String,
    pub agentic_input: String,
}

impl TurnKey {
    /// The key of `batch` before it runs.
    pub fn of(batch: &Batch) -> Self {
        TurnKey {
            qa_id: batch.qa_id.clone(),
            query: batch.query.clone(),
            agentic_input: fingerprint(&batch.agentic),
        }
    }
}

/// 16 hex digits of the FNV-1a hash of `value`'s JSON.
pub(crate) fn fingerprint<T: Serialize + ?Sized>(value: &T) -> String {
    let mut hash = crate::partition::Fnv1a::default();
    let _ = serde_json::to_writer(&mut hash, value);
    format!("{:016x}", hash.0)
}
