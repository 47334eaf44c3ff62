//! Replaying a suite's sessions from its cassette.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{fingerprint, path, Cassette, JudgeEntry, RunnerKey, SessionTape, TurnKey, TurnTape};
use super::{FORMAT, MAX_CASSETTE_BYTES};
use crate::error::{ErrorKind, RunError};
use crate::runner::BatchOutcome;
use crate::schema::{Batch, Dataset};

/// A suite's cassette, read for replay (or its absence).
#[derive(Debug)]
pub(crate) struct Tape {
    path: PathBuf,
    /// `None` when the suite has no cassette in the directory.
    cassette: Option<Cassette>,
    /// Why every session misses (the runner changed), if it does.
    runner_changed: Option<String>,
    index: HashMap<(String, String, usize), usize>,
}

/// A session, replayed: each turn's outcome (hits, then the misses as
/// failures saying why), and the session's time.
#[derive(Debug)]
pub(crate) struct Replay {
    pub outcomes: Vec<BatchOutcome>,
    /// Whether every turn replayed.
    pub complete: bool,
    /// The recorded wall time (or the sum of the turns' times).
    pub total_ms: f64,
}

impl Tape {
    /// Reads the cassette of suite `suite` in `dir`; an unreadable one (not
    /// JSON, another suite's, another format) is an error naming the file
    /// and, for bad JSON, the line.
    pub fn load(dir: &Path, suite: &str, runner: &RunnerKey) -> Result<Tape, String> {
        let path = path(dir, suite);
        let cassette = match read(&path)? {
            None => None,
            Some(cassette) => Some(check(&path, cassette, suite)?),
        };
        let runner_changed = cassette.as_ref().and_then(|c| {
            if c.runner.kind != runner.kind {
                Some(format!(
                    "the runner changed since the recording (recorded: type {})",
                    c.runner.kind
                ))
            } else if c.runner.config != runner.config {
                Some("the runner's configuration changed since the recording".to_owned())
            } else {
                None
            }
        });
        let index = cassette
            .iter()
            .flat_map(|c| c.sessions.iter().enumerate())
            .map(|(i, s)| ((s.session_id.clone(), s.assistant_id.clone(), s.run), i))
            .collect();
        Ok(Tape {
            path,
            cassette,
            runner_changed,
            index,
        })
    }

    /// The recording of a session, if there is one.
    pub fn session(
        &self,
        session_id: &str,
        assistant_id: &str,
        run: usize,
    ) -> Option<&SessionTape> {
        let key = (session_id.to_owned(), assistant_id.to_owned(), run);
        let i = *self.index.get(&key)?;
        self.cassette.as_ref().map(|c| &c.sessions[i])
    }

    /// The judge's recorded replies.
    pub fn judge(&self) -> &[JudgeEntry] {
        self.cassette.as_ref().map_or(&[], |c| &c.judge)
    }

    /// Whether the recording is of the suite's runner as it is now.
    pub fn same_runner(&self) -> bool {
        self.runner_changed.is_none()
    }

    /// The recorded sessions.
    pub fn sessions(&self) -> &[SessionTape] {
        self.cassette.as_ref().map_or(&[], |c| &c.sessions)
    }

    /// Replays the first `limit` turns of `dataset` (before they ran;
    /// `session_id` is the suite's, `run` the repeat). A turn with no
    /// matching recording fails with why, and so do the turns after it.
    pub fn replay(&self, dataset: &Dataset, limit: usize, session_id: &str, run: usize) -> Replay {
        let tape = self.session(session_id, &dataset.assistant_id, run);
        let turns = &dataset.conversation[..limit.min(dataset.conversation.len())];
        let mut outcomes = Vec::with_capacity(turns.len());
        let mut miss: Option<String> = None;
        for (turn, batch) in turns.iter().enumerate() {
            let why = match &miss {
                Some(_) => Err(format!(
                    "an earlier turn of session {session_id} did not replay, so this turn's conversation is not the recorded one"
                )),
                None => self.find(tape, dataset, session_id, run, turn, batch),
            };
            match why {
                Ok(recorded) => outcomes.push(outcome(batch.clone(), recorded)),
                Err(why) => {
                    let message = format!("not replayed: {why} ({})", self.path.display());
                    outcomes.push(BatchOutcome::failure(
                        batch.clone(),
                        RunError::permanent(message.clone()),
                        0.0,
                    ));
                    miss.get_or_insert(message);
                }
            }
        }
        let complete = miss.is_none();
        let sum = outcomes.iter().map(|o| o.time_ms).sum();
        let total_ms = match tape {
            Some(t) if complete && t.turns.len() == outcomes.len() => t.time_ms.unwrap_or(sum),
            _ => sum,
        };
        Replay {
            outcomes,
            complete,
            total_ms,
        }
    }

    /// The recording of one turn, or why there is none.
    fn find<'t>(
        &self,
        tape: Option<&'t SessionTape>,
        dataset: &Dataset,
        session_id: &str,
        run: usize,
        turn: usize,
        batch: &Batch,
    ) -> Result<&'t TurnTape, String> {
        if self.cassette.is_none() {
            return Err(format!(
                "no cassette for this suite: {} does not exist",
                self.path.display()
            ));
        }
        if let Some(why) = &self.runner_changed {
            return Err(why.clone());
        }
        let of_run = if run > 0 {
            format!("run {} of ", run + 1)
        } else {
            String::new()
        };
        let tape = tape.ok_or_else(|| format!("no recording for {of_run}session {session_id}"))?;
        if tape.context != fingerprint(&dataset.context) {
            return Err(format!(
                "the context of session {session_id} changed since the recording"
            ));
        }
        let recorded = tape.turns.get(turn).ok_or_else(|| {
            format!(
                "no recording for turn {} ({}) of {of_run}session {session_id}",
                turn + 1,
                batch.qa_id
            )
        })?;
        let key = TurnKey::of(batch);
        if recorded.qa_id != key.qa_id {
            return Err(format!(
                "qa_id changed since the recording (recorded: {})",
                recorded.qa_id
            ));
        }
        if recorded.query != key.query {
            return Err("query changed since the recording".to_owned());
        }
        if recorded.agentic_input != key.agentic_input {
            return Err("agentic input changed since the recording".to_owned());
        }
        Ok(recorded)
    }
}

/// The outcome a recorded turn gives `batch`.
fn outcome(mut batch: Batch, recorded: &TurnTape) -> BatchOutcome {
    let reply = &recorded.reply;
    let mut outcome = match &reply.error {
        Some(error) => {
            let kind = match error.kind.as_str() {
                "transient" => ErrorKind::Transient,
                "timeout" => ErrorKind::Timeout,
                _ => ErrorKind::Permanent,
            };
            let error = RunError {
                kind,
                message: error.message.clone(),
                retry_after: None,
            };
            BatchOutcome::failure(batch, error, recorded.time_ms)
        }
        None => {
            batch.assistant = reply.assistant.clone();
            batch.agentic = reply.agentic.clone();
            batch.logprobs = reply.logprobs.clone();
            batch.observation = reply.observation.clone();
            BatchOutcome::success(batch, recorded.time_ms)
        }
    };
    outcome.attempts = recorded.attempts;
    outcome.usage = reply.usage;
    outcome
}

/// The cassette at `path`, `None` when there is none.
fn read(path: &Path) -> Result<Option<Cassette>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_CASSETTE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_CASSETTE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_CASSETTE_BYTES} bytes",
            path.display()
        ));
    }
    let cassette = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not a forge cassette: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    Ok(Some(cassette))
}

/// `cassette` if it is one this forge reads, of suite `suite`.
fn check(path: &Path, cassette: Cassette, suite: &str) -> Result<Cassette, String> {
    if cassette.forge_cassette != FORMAT {
        return Err(format!(
            "{}: cassette format {}; this forge reads format {FORMAT} (record it again)",
            path.display(),
            cassette.forge_cassette
        ));
    }
    if cassette.suite != suite {
        return Err(format!(
            "{}: the cassette of suite `{}`, not of `{suite}`",
            path.display(),
            cassette.suite
        ));
    }
    Ok(cassette)
}
