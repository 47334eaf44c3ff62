//! The judge's side of a cassette: each judge request's reply, by the
//! fingerprint of the request (model, parameters, messages) and the vote.
//! Replayed, a request with no recording fails its check offline, and runs
//! live (and is recorded) when recording too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::usage::Usage;

/// One judge reply, as the cassette holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeEntry {
    /// The fingerprint of the request's body.
    pub request: String,
    /// Which vote of the request (from 0).
    pub vote: usize,
    /// The judge's message content.
    pub reply: String,
    /// The tokens the reply reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A request's key: its body's fingerprint and the vote.
type Key = (String, usize);

/// A recorded reply: its content and the tokens it reported.
type Reply = (String, Option<Usage>);

/// The judge replies of one suite's run: those to replay, and those
/// recorded.
#[derive(Debug, Default)]
pub(crate) struct JudgeTape {
    replay: Option<HashMap<Key, Reply>>,
    offline: bool,
    recording: bool,
    used: Mutex<BTreeSet<Key>>,
    recorded: Mutex<BTreeMap<Key, Reply>>,
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
                    .map(|e| ((e.request.clone(), e.vote), (e.reply.clone(), e.usage)))
                    .collect()
            }),
            offline,
            recording,
            ..JudgeTape::default()
        }
    }

    /// The recorded reply to vote `vote` of the request `body` and the
    /// tokens it reported, if there is one.
    pub fn replayed(&self, body: &serde_json::Value, vote: usize) -> Option<Reply> {
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
    pub fn record(&self, body: &serde_json::Value, vote: usize, reply: &str, usage: Option<Usage>) {
        if self.recording {
            let key = (super::fingerprint(body), vote);
            lock(&self.recorded).insert(key, (reply.to_owned(), usage));
        }
    }

    /// What the cassette keeps: the replies recorded now, those of `old`
    /// replayed now, and (when the run left sessions out: `whole` false)
    /// the rest of `old` too.
    pub fn entries(&self, old: &[JudgeEntry], whole: bool) -> Vec<JudgeEntry> {
        let used = lock(&self.used);
        let mut all: BTreeMap<Key, Reply> = old
            .iter()
            .map(|e| ((e.request.clone(), e.vote), (e.reply.clone(), e.usage)))
            .filter(|(key, _)| !whole || used.contains(key))
            .collect();
        all.extend(
            lock(&self.recorded)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        all.into_iter()
            .map(|((request, vote), (reply, usage))| JudgeEntry {
                request,
                vote,
                reply,
                usage,
            })
            .collect()
    }
}
