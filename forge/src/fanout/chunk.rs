//! The chunker: sessions from every suite's engine come in one at a time;
//! those of one suite (one `runner:` mapping) are packed into chunks of up
//! to `chunk` sessions (fewer when the payload would pass
//! [`MAX_CHUNK_BYTES`], or once the first one has waited [`LINGER`]), and
//! at most `concurrency` chunks are being invoked at once. Each session's
//! answer goes back through its oneshot.
//!
//! Once the run is cancelled, chunks not yet invoked are not: their turns
//! fail as interrupted; the invocations in flight finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::answer::{self, Answered};
use super::invoke::{invoke_with_retries, Invoke};
use super::Progress;
use crate::payload::extension::PolicySpec;
use crate::policy::Backoff;
use crate::schema::Dataset;

/// The most request bytes a chunk packs (Lambda takes 6 MB): the answers
/// grow the response, which has the same 6 MB limit.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// The largest payload Lambda accepts for a synchronous invocation.
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// How long a chunk that is not full waits for more sessions.
pub const LINGER: Duration = Duration::from_millis(20);

/// What the sessions of one suite share: its `runner:` mapping as written
/// and its policy.
#[derive(Debug)]
pub(crate) struct Group {
    /// Which suite.
    pub id: usize,
    /// The `runner:` mapping as written.
    pub runner: Value,
    /// The suite's timeout and retries.
    pub policy: PolicySpec,
}

/// A session waiting for its answer.
pub(crate) struct Pending {
    pub group: Arc<Group>,
    pub dataset: Dataset,
    /// Its bytes in a payload.
    pub bytes: usize,
    pub reply: oneshot::Sender<Answered>,
}

/// Sessions of one group on their way into one payload.
struct Chunk {
    group: Arc<Group>,
    sessions: Vec<Pending>,
    bytes: usize,
    since: Instant,
}

/// How the chunker packs and sends.
#[derive(Clone)]
pub(crate) struct Limits {
    pub chunk: usize,
    pub concurrency: usize,
    pub backoff: Backoff,
}

/// Packs the sessions of `incoming` into chunks until every sender is gone,
/// then waits for the invocations to finish.
pub(crate) async fn run(
    mut incoming: mpsc::UnboundedReceiver<Pending>,
    invoker: Arc<dyn Invoke>,
    limits: Limits,
    cancel: CancellationToken,
    progress: Arc<Progress>,
) {
    let (closed, to_send) = mpsc::unbounded_channel::<Chunk>();
    let sender = tokio::spawn(dispatch(to_send, invoker, limits.clone(), cancel, progress));
    let mut open: HashMap<usize, Chunk> = HashMap::new();
    loop {
        let deadline = open.values().map(|c| c.since + LINGER).min();
        let next = tokio::select! {
            next = incoming.recv() => next,
            () = sleep_until(deadline) => {
                let now = Instant::now();
                let due: Vec<usize> = open.iter().filter(|(_, c)| c.since + LINGER <= now).map(|(k, _)| *k).collect();
                for key in due {
                    if let Some(chunk) = open.remove(&key) {
                        let _ = closed.send(chunk);
                    }
                }
                continue;
            }
        };
        let Some(pending) = next else { break };
        if let Some(full) = add(&mut open, pending, &limits) {
            let _ = closed.send(full);
        }
    }
    for (_, chunk) in open.drain() {
        let _ = closed.send(chunk);
    }
    drop(closed);
    let _ = sender.await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Adds a session to its group's open chunk; the chunk to send when that
/// one is full, or when the session does not fit beside it (then the
/// session starts the next chunk).
fn add(open: &mut HashMap<usize, Chunk>, pending: Pending, limits: &Limits) -> Option<Chunk> {
    let key = pending.group.id;
    let fits = |chunk: &Chunk| {
        chunk.sessions.len() < limits.chunk && chunk.bytes + pending.bytes <= MAX_CHUNK_BYTES
    };
    let mut ready = None;
    if open.get(&key).is_some_and(|chunk| !fits(chunk)) {
        ready = open.remove(&key);
    }
    let chunk = open.entry(key).or_insert_with(|| Chunk {
        group: Arc::clone(&pending.group),
        sessions: Vec::new(),
        bytes: 0,
        since: Instant::now(),
    });
    chunk.bytes += pending.bytes;
    chunk.sessions.push(pending);
    if ready.is_none() && chunk.sessions.len() >= limits.chunk {
        ready = open.remove(&key);
    }
    ready
}

/// Invokes the closed chunks, at most `concurrency` at once; after a
/// cancellation, answers the rest as interrupted.
async fn dispatch(
    mut chunks: mpsc::UnboundedReceiver<Chunk>,
    invoker: Arc<dyn Invoke>,
    limits: Limits,
    cancel: CancellationToken,
    progress: Arc<Progress>,
) {
    let slots = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let mut flying = tokio::task::JoinSet::new();
    while let Some(chunk) = chunks.recv().await {
        while flying.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            permit = Arc::clone(&slots).acquire_owned() => permit.ok(),
        };
        let Some(permit) = permit.filter(|_| !cancel.is_cancelled()) else {
            unsent(chunk, &progress);
            continue;
        };
        let (invoker, progress) = (Arc::clone(&invoker), Arc::clone(&progress));
        let (backoff, cancel) = (limits.backoff.clone(), cancel.clone());
        flying.spawn(async move {
            send(chunk, &*invoker, &backoff, &cancel, &progress).await;
            drop(permit);
        });
    }
    while flying.join_next().await.is_some() {}
}

/// Sessions never sent: their turns fail as interrupted.
fn unsent(chunk: Chunk, progress: &Progress) {
    progress.add_unsent(chunk.sessions.len());
    for pending in chunk.sessions {
        let answered = answer::failed(pending.dataset, crate::engine::INTERRUPTED);
        let _ = pending.reply.send(answered);
    }
}

/// Invokes one chunk (with retries) and answers its sessions.
async fn send(
    chunk: Chunk,
    invoker: &dyn Invoke,
    backoff: &Backoff,
    cancel: &CancellationToken,
    progress: &Progress,
) {
    let count = chunk.sessions.len();
    let (group, sessions) = (chunk.group, chunk.sessions);
    let datasets: Vec<&Dataset> = sessions.iter().map(|p| &p.dataset).collect();
    let payload = json!({
        "datasets": datasets,
        "runner": group.runner,
        "policy": group.policy,
    });
    let bytes = match serde_json::to_vec(&payload) {
        Ok(bytes) if bytes.len() <= MAX_PAYLOAD_BYTES => bytes,
        Ok(bytes) => {
            let message = format!(
                "a payload of {} bytes is over Lambda's {MAX_PAYLOAD_BYTES}-byte limit for an invocation; \
                 lower --lambda-chunk or split the session",
                bytes.len()
            );
            return reply_all(sessions, &message, progress);
        }
        Err(error) => {
            return reply_all(
                sessions,
                &format!("cannot serialise the payload: {error}"),
                progress,
            )
        }
    };
    progress.add_sent(count);
    let attempted = invoke_with_retries(invoker, bytes, backoff, cancel).await;
    progress.add_invocation(attempted.attempts);
    let datasets: Vec<Dataset> = sessions.iter().map(|p| p.dataset.clone()).collect();
    match answer::split(datasets, attempted.result) {
        Ok(answers) => {
            progress.add_answered(count);
            for (pending, answered) in sessions.into_iter().zip(answers) {
                let _ = pending.reply.send(answered);
            }
        }
        Err(message) => reply_all(sessions, &message, progress),
    }
}

/// Fails every session of a chunk with `message`.
fn reply_all(sessions: Vec<Pending>, message: &str, progress: &Progress) {
    progress.add_failed(sessions.len());
    for pending in sessions {
        let _ = pending.reply.send(answer::failed(pending.dataset, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::invoke::{Failure, Invoked};
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// Answers each payload as the function would (every turn `ok`),
    /// recording the sessions of each; a payload holding `hold` waits for
    /// `release`.
    struct Echo {
        payloads: Mutex<Vec<Vec<String>>>,
        release: tokio::sync::Notify,
        hold: Option<String>,
    }

    #[async_trait]
    impl Invoke for Echo {
        async fn invoke(&self, payload: Vec<u8>) -> Result<Invoked, Failure> {
            let payload: Value = serde_json::from_slice(&payload).expect("JSON payload");
            let mut datasets: Vec<Dataset> =
                serde_json::from_value(payload["datasets"].clone()).expect("datasets");
            let ids: Vec<String> = datasets.iter().map(|d| d.session_id.clone()).collect();
            self.payloads.lock().unwrap().push(ids.clone());
            if self.hold.as_ref().is_some_and(|h| ids.contains(h)) {
                self.release.notified().await;
            }
            for dataset in &mut datasets {
                for batch in &mut dataset.conversation {
                    batch.assistant = format!("ok {}", batch.query);
                }
            }
            let summaries: Vec<crate::Summary> = datasets
                .iter()
                .map(|d| crate::engine::summarise(&d.session_id, &[], 0.0))
                .collect();
            let response = crate::RunResponse {
                turns: None,
                ..crate::RunResponse::new(datasets.into_iter().zip(summaries).collect())
            };
            let body =
                json!({"statusCode": 200, "body": serde_json::to_string(&response).unwrap()});
            Ok(Invoked {
                request_id: Some("r-1".into()),
                function_error: None,
                body: body.to_string().into_bytes(),
            })
        }
    }

    fn echo(hold: Option<&str>) -> Arc<Echo> {
        Arc::new(Echo {
            payloads: Mutex::new(Vec::new()),
            release: tokio::sync::Notify::new(),
            hold: hold.map(str::to_owned),
        })
    }

    fn session(
        group: &Arc<Group>,
        id: &str,
        bytes: usize,
    ) -> (Pending, oneshot::Receiver<Answered>) {
        let mut dataset = Dataset::new(id, "a");
        dataset.conversation.push(crate::Batch::new("q1", "hello"));
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            group: Arc::clone(group),
            dataset,
            bytes,
            reply,
        };
        (pending, answer)
    }

    fn group(id: usize) -> Arc<Group> {
        Arc::new(Group {
            id,
            runner: json!({"type": "alquimia"}),
            policy: PolicySpec::default(),
        })
    }

    fn start(
        invoker: Arc<Echo>,
        chunk: usize,
        concurrency: usize,
        cancel: CancellationToken,
    ) -> (
        mpsc::UnboundedSender<Pending>,
        tokio::task::JoinHandle<()>,
        Arc<Progress>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Progress::default());
        let limits = Limits {
            chunk,
            concurrency,
            backoff: Backoff::DEFAULT,
        };
        let task = tokio::spawn(run(rx, invoker, limits, cancel, Arc::clone(&progress)));
        (tx, task, progress)
    }

    // How sessions are packed by count, by bytes and by suite: the emulator
    // shows only the answers, not which payload carried which session.
    #[tokio::test]
    async fn sessions_are_packed_by_count_bytes_and_suite() {
        let invoker = echo(None);
        let (tx, task, progress) = start(Arc::clone(&invoker), 3, 4, CancellationToken::new());
        let (a, b) = (group(0), group(1));
        let mut answers = Vec::new();
        for (g, id, bytes) in [
            (&a, "a1", 10),
            (&b, "b1", 10),
            (&a, "a2", 10),
            (&a, "a3", 10),
            (&a, "a4", MAX_CHUNK_BYTES),
            (&a, "a5", 10),
        ] {
            let (pending, answer) = session(g, id, bytes);
            tx.send(pending).expect("chunker alive");
            answers.push(answer);
        }
        drop(tx);
        task.await.expect("chunker");
        for answer in answers {
            let answered = answer.await.expect("answered");
            assert!(
                answered.outcomes.iter().all(|o| o.is_success()),
                "{answered:?}"
            );
        }
        let mut payloads = invoker.payloads.lock().unwrap().clone();
        payloads.sort();
        assert_eq!(
            payloads,
            [vec!["a1", "a2", "a3"], vec!["a4"], vec!["a5"], vec!["b1"]]
        );
        assert_eq!(progress.counts(), (6, 6, 0, 0));
    }

    // Ctrl-C while every slot is taken: the emulator cannot hold an
    // invocation open on cue, so a fake holds one.
    #[tokio::test]
    async fn after_a_cancellation_no_chunk_is_sent_and_flying_ones_finish() {
        let invoker = echo(Some("s1"));
        let cancel = CancellationToken::new();
        let (tx, task, progress) = start(Arc::clone(&invoker), 1, 1, cancel.clone());
        let g = group(0);
        let (first, first_answer) = session(&g, "s1", 10);
        tx.send(first).expect("alive");
        // The held invocation is in flight once its payload is recorded.
        while invoker.payloads.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let (second, second_answer) = session(&g, "s2", 10);
        tx.send(second).expect("alive");
        drop(tx);
        cancel.cancel();
        invoker.release.notify_one();
        task.await.expect("chunker");
        let first = first_answer.await.expect("answered");
        assert!(first.outcomes[0].is_success(), "{first:?}");
        let second = second_answer.await.expect("answered");
        let error = second.outcomes[0].error.as_ref().expect("interrupted");
        assert_eq!(error.message, crate::engine::INTERRUPTED);
        assert_eq!(invoker.payloads.lock().unwrap().len(), 1);
        assert_eq!(progress.counts(), (1, 1, 0, 1));
    }
}
