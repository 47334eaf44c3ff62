//! Recording a suite's turns into its cassette.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{path, ErrorTape, ReplyTape, RunnerKey, SessionTape};
use super::{JudgeEntry, Tape, TurnKey, TurnTape, FORMAT};
use crate::error::{ErrorKind, ReportError};
use crate::report::spool::Spool;
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
///
/// A session's recording is spooled (redacted) as soon as the session
/// ends; the recorder keeps in memory only the sessions in flight and, per
/// recorded session, its key and its place in the spool, and the cassette
/// is written from the spool in the sessions' order.
pub(crate) struct Recorder {
    path: PathBuf,
    suite: String,
    runner: RunnerKey,
    record_errors: bool,
    secrets: Secrets,
    /// The cassette recorded before (the replayed one, or the one in the
    /// recording directory).
    old: Option<Arc<Tape>>,
    /// By job, the jobs that run live (a replayed one is not recorded).
    sessions: Mutex<HashMap<usize, Recording>>,
    /// The sessions recorded so far.
    done: Mutex<Spooled>,
}

/// Ended sessions' recordings, in a spool.
#[derive(Default)]
struct Spooled {
    spool: Option<Spool>,
    /// Each session's key, and its bytes' start and length in the spool.
    index: BTreeMap<(String, String, usize), (u64, u64)>,
    /// Why a recording could not be spooled.
    error: Option<std::io::Error>,
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
    /// A recorder of suite `suite`'s live jobs into `dir`; `old` is what
    /// the suite's cassette held before.
    pub fn new(
        dir: &Path,
        suite: &str,
        runner: RunnerKey,
        (record_errors, secrets): (bool, Secrets),
        old: Option<Arc<Tape>>,
    ) -> Self {
        Recorder {
            path: path(dir, suite),
            suite: suite.to_owned(),
            runner,
            record_errors,
            secrets,
            old,
            sessions: Mutex::new(HashMap::new()),
            done: Mutex::new(Spooled::default()),
        }
    }

    /// The old cassette's session recordings: none when they are another
    /// runner's.
    fn old_sessions(&self) -> Option<&Tape> {
        self.old.as_deref().filter(|t| t.same_runner())
    }

    /// The old cassette's judge replies.
    pub fn old_judge(&self) -> &[JudgeEntry] {
        self.old.as_deref().map_or(&[], Tape::judge)
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
    /// every turn it ran was recorded, and its recording is spooled.
    pub fn on_session(&self, job: usize, turns: usize, total_ms: f64) {
        let recording = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.remove(&job)
        };
        if let Some(mut recording) = recording {
            if !recording.stopped && recording.tape.turns.len() == turns {
                recording.tape.time_ms = Some(total_ms);
            }
            self.spool(recording.tape);
        }
    }

    /// Spools a session's recording: the old one instead when it holds the
    /// same replies, so recording identical replies again leaves the file
    /// as it was.
    fn spool(&self, new: SessionTape) {
        let old = self.old_sessions();
        let previous = old.and_then(|t| t.session(&new.session_id, &new.assistant_id, new.run));
        let tape = match previous {
            Some(previous) if same_replies(previous, &new) => previous,
            _ => &new,
        };
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let written = done.write(&self.path, tape, &self.secrets);
        if let Err(error) = written {
            done.error.get_or_insert(error);
        }
    }

    /// Writes the cassette: the new recordings, and the old cassette's
    /// for the sessions in `kept` (the suite's sessions not recorded now).
    /// `judge` is the judge's side.
    pub fn write(
        self,
        kept: &dyn Fn(&SessionTape) -> bool,
        judge: Vec<JudgeEntry>,
    ) -> Result<PathBuf, ReportError> {
        // Sessions that never ended (an interrupted run) are spooled now.
        let left = self.sessions.lock().map(|mut s| std::mem::take(&mut *s));
        for recording in left.unwrap_or_default().into_values() {
            self.spool(recording.tape);
        }
        let done = self.done.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = done.error {
            return Err(ReportError {
                path: self.path,
                message: format!("cannot spool a recording: {error}"),
            });
        }
        let cassette = Written {
            forge_cassette: FORMAT,
            suite: &self.suite,
            runner: &self.runner,
            sessions: Sessions {
                old: self.old.as_deref().filter(|t| t.same_runner()),
                kept,
                spooled: std::cell::RefCell::new(done),
            },
            judge,
        };
        write(&self.path, &cassette, &self.secrets)?;
        Ok(self.path)
    }
}

impl Spooled {
    /// Spools `tape` (compact, redacted) into a spool in `path`'s directory.
    fn write(&mut self, path: &Path, tape: &SessionTape, secrets: &Secrets) -> std::io::Result<()> {
        let spool = match &mut self.spool {
            Some(spool) => spool,
            None => {
                let dir = path.parent().unwrap_or(Path::new("."));
                self.spool.insert(Spool::new(dir)?)
            }
        };
        let start = spool.len();
        let formatter = serde_json::ser::CompactFormatter;
        crate::output::write_redacted(&mut *spool, tape, secrets, formatter)?;
        self.index.insert(key(tape), (start, spool.len() - start));
        Ok(())
    }
}

/// The cassette as it is written: [`Cassette`]'s fields, its sessions
/// read back one at a time from the spool.
#[derive(serde::Serialize)]
struct Written<'a> {
    forge_cassette: u32,
    suite: &'a str,
    runner: &'a RunnerKey,
    sessions: Sessions<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    judge: Vec<JudgeEntry>,
}

/// A cassette's sessions in order: the old cassette's that are kept and
/// were not recorded again, and the spooled ones.
struct Sessions<'a> {
    old: Option<&'a Tape>,
    kept: &'a dyn Fn(&SessionTape) -> bool,
    spooled: std::cell::RefCell<Spooled>,
}

impl serde::Serialize for Sessions<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut spooled = self.spooled.borrow_mut();
        let Spooled { spool, index, .. } = &mut *spooled;
        let old: BTreeMap<(String, String, usize), &SessionTape> = self
            .old
            .map_or(&[][..], |t| t.sessions())
            .iter()
            .filter(|t| (self.kept)(t) && !index.contains_key(&key(t)))
            .map(|t| (key(t), t))
            .collect();
        let mut seq = serializer.serialize_seq(Some(old.len() + index.len()))?;
        let (mut olds, mut news) = (old.iter().peekable(), index.iter().peekable());
        loop {
            let old_first = match (olds.peek(), news.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if old_first {
                if let Some((_, tape)) = olds.next() {
                    seq.serialize_element(*tape)?;
                }
            } else if let Some((_, &(start, len))) = news.next() {
                let spool = spool.as_mut().ok_or_else(|| S::Error::custom("no spool"))?;
                let mut bytes = Vec::with_capacity(len as usize);
                spool
                    .copy_range(start, len, &mut bytes)
                    .map_err(S::Error::custom)?;
                let tape: SessionTape = serde_json::from_slice(&bytes).map_err(S::Error::custom)?;
                seq.serialize_element(&tape)?;
            }
        }
        seq.end()
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
fn write(path: &Path, cassette: &Written<'_>, secrets: &Secrets) -> Result<(), ReportError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Batch;

    /// Records `sessions` one-turn sessions, the last ones first.
    fn record(recorder: &Recorder, sessions: usize) {
        for job in (0..sessions).rev() {
            let mut batch = Batch::new("q1", format!("question {job} sk-secret-123456"));
            recorder.start(
                job,
                JobKey {
                    session_id: format!("s{job:03}"),
                    assistant_id: "a".into(),
                    run: 0,
                    context: String::new(),
                    turns: vec![TurnKey::of(&batch)],
                },
            );
            batch.assistant = format!("answer {job}");
            recorder.on_turn(job, 0, &BatchOutcome::success(batch, 1.0));
            recorder.on_session(job, 1, 2.0);
        }
    }

    #[test]
    fn an_ended_session_is_spooled_and_the_cassette_written_in_order_from_the_spool() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runner = RunnerKey {
            kind: "echo".into(),
            config: "c".into(),
        };
        let secrets = Secrets::new(["sk-secret-123456"]);
        let recorder = Recorder::new(dir.path(), "s", runner, (false, secrets), None);
        record(&recorder, 300);
        let in_flight = recorder.sessions.lock().expect("sessions").len();
        assert_eq!(in_flight, 0, "no recording is held once its session ended");
        let path = recorder.write(&|_| true, Vec::new()).expect("written");
        let text = std::fs::read_to_string(&path).expect("cassette");
        assert!(!text.contains("sk-secret-123456"), "redacted");
        let cassette: crate::cassette::Cassette = serde_json::from_str(&text).expect("a cassette");
        let ids: Vec<&str> = cassette
            .sessions
            .iter()
            .map(|s| s.session_id.as_str())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "in order");
        assert_eq!(ids.len(), 300);
        assert_eq!(cassette.sessions[7].time_ms, Some(2.0));
        assert_eq!(cassette.sessions[7].turns[0].reply.assistant, "answer 7");
        // Byte for byte what serde writes of the whole cassette.
        let whole = serde_json::to_string_pretty(&cassette).expect("JSON") + "\n";
        assert_eq!(text, whole);
    }
}
