//! The judge's side of a cassette: each judge request's reply, by the
//! fingerprint of the request (model, parameters, messages) and the vote.
//! Replayed, a request with no recording fails its check offline, and runs
//! live (and is recorded) when recording too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One judge reply, as the cassette holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeEntry {
    /// The fingerprint of the request's body.
    pub request: String,
    /// Which vote of the request (from 0).
    pub vote: usize,
    /// The judge's message content.
    pub reply: String,
}

/// A request's key: its body's fingerprint and the vote.
type Key = (String, usize);

/// The judge replies of one suite's run: those to replay, and those
/// recorded.
#[derive(Debug, Default)]
pub(crate) struct JudgeTape {
    replay: Option<HashMap<Key, String>>,
    offline: bool,
    recording: bool,
    used: Mutex<BTreeSet<Key>>,
    recorded: Mutex<BTreeMap<Key, String>>,
}

/// Locks `mutex`, poisoned or not.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl JudgeTape {
    /// Replays `replay` (when replaying), sends nothing when `offline`,
    /// and records when `recording`.
    pub fn new(replay: Option<&[JudgeEntry]>, offline: bool, recording: bool) -> Self {
        JudgeTape {
            replay: replay.map(|entries| {
                entries
                    .iter()
                    .map(|e| ((e.request.clone(), e.vote), e.reply.clone()))
                    .collect()
            }),
            offline,
            recording,
            ..JudgeTape::default()
        }
    }

    /// The recorded reply to vote `vote` of the request `body`, if any.
    pub fn replayed(&self, body: &serde_json::Value, vote: usize) -> Option<String> {
        let key = (super::fingerprint(body), vote);
        let reply = self.replay.as_ref()?.get(&key)?.clone();
        lock(&self.used).insert(key);
        Some(reply)
    }

    /// Whether a request with no recording must not be sent.
    pub fn offline(&self) -> bool {
        self.offline
    }

    /// Records the reply to vote `vote` of the request `body`.
    pub fn record(&self, body: &serde_json::Value, vote: usize, reply: &str) {
        if self.recording {
            let key = (super::fingerprint(body), vote);
            lock(&self.recorded).insert(key, reply.to_owned());
        }
    }

    /// What the cassette keeps: the replies recorded now, those of `old`
    /// replayed now, and (when the run left sessions out: `whole` false)
    /// the rest of `old` too.
    pub fn entries(&self, old: &[JudgeEntry], whole: bool) -> Vec<JudgeEntry> {
        let used = lock(&self.used);
        let mut all: BTreeMap<Key, String> = old
            .iter()
            .map(|e| ((e.request.clone(), e.vote), e.reply.clone()))
            .filter(|(key, _)| !whole || used.contains(key))
            .collect();
        all.extend(
            lock(&self.recorded)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        all.into_iter()
            .map(|((request, vote), reply)| JudgeEntry {
                request,
                vote,
                reply,
            })
            .collect()
    }
}
