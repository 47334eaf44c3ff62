//! Recording a suite's turns into its cassette.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{path, Cassette, ErrorTape, ReplyTape, RunnerKey, SessionTape};
use super::{JudgeEntry, Tape, TurnKey, TurnTape, FORMAT};
use crate::error::{ErrorKind, ReportError};
use crate::runner::BatchOutcome;
use crate::secrets::Secrets;

/// The recording of one session as its turns come in.
#[derive(Debug)]
struct Recording {
    tape: SessionTape,
    keys: Vec<TurnKey>,
    /// Set once a turn is left out: the ones after it are too.
    stopped: bool,
}

/// Records the turns of a suite's live sessions, then writes its cassette:
/// those sessions' new recordings, and the recordings it had of the
/// suite's other sessions.
pub(crate) struct Recorder {
    path: PathBuf,
    suite: String,
    runner: RunnerKey,
    record_errors: bool,
    secrets: Secrets,
    /// By job, the jobs that run live (a replayed one is not recorded).
    sessions: Mutex<HashMap<usize, Recording>>,
}

/// What [`Recorder::new`] needs of a job.
pub(crate) struct JobKey {
    pub session_id: String,
    pub assistant_id: String,
    pub run: usize,
    pub context: String,
    pub turns: Vec<TurnKey>,
}

impl Recorder {
    /// A recorder of suite `suite`'s live jobs into `dir`.
    pub fn new(
        dir: &Path,
        suite: &str,
        runner: RunnerKey,
        record_errors: bool,
        secrets: Secrets,
    ) -> Self {
        Recorder {
            path: path(dir, suite),
            suite: suite.to_owned(),
            runner,
            record_errors,
            secrets,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Job `job` runs live: it is recorded.
    pub fn start(&self, job: usize, key: JobKey) {
        let recording = Recording {
            tape: SessionTape {
                session_id: key.session_id,
                assistant_id: key.assistant_id,
                run: key.run,
                context: key.context,
                time_ms: None,
                turns: Vec::new(),
            },
            keys: key.turns,
            stopped: false,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.insert(job, recording);
    }

    /// A turn of job `job` finished. A failed turn is recorded only with
    /// `record_errors`; otherwise it and the turns after it are left out,
    /// so the next recording runs them again.
    pub fn on_turn(&self, job: usize, turn: usize, outcome: &BatchOutcome) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(recording) = sessions.get_mut(&job) else {
            return;
        };
        if recording.stopped || turn != recording.tape.turns.len() {
            recording.stopped = true;
            return;
        }
        if outcome.error.is_some() && !self.record_errors {
            recording.stopped = true;
            return;
        }
        let Some(key) = recording.keys.get(turn) else {
            return;
        };
        recording.tape.turns.push(TurnTape {
            qa_id: key.qa_id.clone(),
            query: key.query.clone(),
            agentic_input: key.agentic_input.clone(),
            reply: redacted(reply(outcome), &self.secrets),
            time_ms: outcome.time_ms,
            attempts: outcome.attempts,
        });
    }

    /// A job's session ended after `total_ms`: its wall time is kept when
    /// every turn it ran was recorded.
    pub fn on_session(&self, job: usize, turns: usize, total_ms: f64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(recording) = sessions.get_mut(&job) {
            if !recording.stopped && recording.tape.turns.len() == turns {
                recording.tape.time_ms = Some(total_ms);
            }
        }
    }

    /// Writes the cassette: the new recordings, and those of `old` for the
    /// sessions in `kept` (the suite's sessions not recorded now). A new
    /// recording equal to the old one but for times keeps the old one, so
    /// recording identical replies again leaves the file as it was. `judge`
    /// is the judge's side.
    pub fn write(
        self,
        old: Option<&Tape>,
        kept: &dyn Fn(&SessionTape) -> bool,
        judge: Vec<JudgeEntry>,
    ) -> Result<PathBuf, ReportError> {
        let sessions = self
            .sessions
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        // Recordings of another runner are not this one's.
        let old = old.filter(|t| t.same_runner());
        let mut all: BTreeMap<(String, String, usize), SessionTape> = BTreeMap::new();
        for tape in old.map_or(&[][..], |t| t.sessions()) {
            if kept(tape) {
                all.insert(key(tape), tape.clone());
            }
        }
        for recording in sessions.into_values() {
            let new = recording.tape;
            let previous = old.and_then(|t| t.session(&new.session_id, &new.assistant_id, new.run));
            let tape = match previous {
                Some(previous) if same_replies(previous, &new) => previous.clone(),
                _ => new,
            };
            all.insert(key(&tape), tape);
        }
        let cassette = Cassette {
            forge_cassette: FORMAT,
            suite: self.suite,
            runner: self.runner,
            sessions: all.into_values().collect(),
            judge,
        };
        write(&self.path, &cassette, &self.secrets)?;
        Ok(self.path)
    }
}

fn key(tape: &SessionTape) -> (String, String, usize) {
    (tape.session_id.clone(), tape.assistant_id.clone(), tape.run)
}

/// Whether two recordings of a session hold the same turns and replies
/// (times and attempts aside).
fn same_replies(a: &SessionTape, b: &SessionTape) -> bool {
    a.context == b.context
        && a.turns.len() == b.turns.len()
        && a.turns.iter().zip(&b.turns).all(|(x, y)| {
            x.qa_id == y.qa_id
                && x.query == y.query
                && x.agentic_input == y.agentic_input
                && x.reply == y.reply
        })
}

/// What came back for a turn.
fn reply(outcome: &BatchOutcome) -> ReplyTape {
    let batch = &outcome.batch;
    match &outcome.error {
        None => ReplyTape {
            assistant: batch.assistant.clone(),
            agentic: batch.agentic.clone(),
            logprobs: batch.logprobs.clone(),
            observation: batch.observation.clone(),
            error: None,
            usage: outcome.usage,
        },
        Some(error) => ReplyTape {
            assistant: String::new(),
            agentic: None,
            logprobs: None,
            observation: None,
            usage: outcome.usage,
            error: Some(ErrorTape {
                message: error.message.clone(),
                kind: match error.kind {
                    ErrorKind::Transient => "transient",
                    ErrorKind::Timeout => "timeout",
                    _ => "permanent",
                }
                .to_owned(),
            }),
        },
    }
}

/// `reply` with every secret in its texts redacted, as the file holds it
/// (so a new recording compares equal to the one read back).
fn redacted(reply: ReplyTape, secrets: &Secrets) -> ReplyTape {
    let mut bytes = Vec::new();
    let written = crate::output::write_redacted(
        &mut bytes,
        &reply,
        secrets,
        serde_json::ser::CompactFormatter,
    );
    match written
        .ok()
        .and_then(|()| serde_json::from_slice(&bytes).ok())
    {
        Some(clean) => clean,
        None => reply,
    }
}

/// Writes `cassette` to `path`, pretty, redacted, atomically.
fn write(path: &Path, cassette: &Cassette, secrets: &Secrets) -> Result<(), ReportError> {
    if let Some(dir) = path.parent() {
        crate::output::prepare(dir)?;
    }
    let (tmp, mut writer) = crate::output::create(path)?;
    let written = crate::output::write_redacted(
        &mut writer,
        cassette,
        secrets,
        serde_json::ser::PrettyFormatter::new(),
    )
    .and_then(|()| std::io::Write::write_all(&mut writer, b"\n"));
    crate::output::finish(path, &tmp, writer, written)
}
