//! The fault plan: which turns get which fault, deterministically.

use std::net::SocketAddr;
use std::time::Duration;

/// A fault the server injects into one turn (see [`FaultPlan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    // Protocol faults: what real servers send.
    /// The turn's Alquimia stream also sends `data:` lines that are not JSON
    /// (`data: ping`, `data: not-json`, `data: {`) before and between its
    /// events. Without `answer` it sends no answer event; without `done`, no
    /// `[DONE]` (the body just ends).
    KeepAlives {
        /// Whether the answer events are sent.
        answer: bool,
        /// Whether `data: [DONE]` ends the stream.
        done: bool,
    },
    /// The infer reply says `Connection: keep-alive`; the first `times`
    /// requests for the turn's Alquimia stream then get no answer: the
    /// server closes the connection they came on (usually the one kept
    /// alive), as a server closing an idle connection under the client does.
    CloseKeptAlive {
        /// How many stream requests see their connection closed.
        times: usize,
    },
    /// The first `times` infer / chat requests of the turn answer with a
    /// redirect `status` (301, 302, 303, 307 or 308) to the same path and
    /// query on `to` (another server), or on this server when `to` is `None`.
    Redirect {
        /// The redirect status.
        status: u16,
        /// Where to: another server's address, or `None` for this one.
        to: Option<SocketAddr>,
        /// How many requests are redirected.
        times: usize,
    },
    /// The turn's Alquimia stream first sends `lines` answer events whose
    /// `data:` line is `line_bytes` bytes long (without its line end), then
    /// its usual events.
    HugeLines {
        /// The length of each huge line.
        line_bytes: usize,
        /// How many huge lines.
        lines: usize,
    },

    // Faults of the turn's acceptance and timing.
    /// The first `times` infer / chat requests of the turn answer HTTP
    /// `status` (`usize::MAX`: always), with `Retry-After: retry_after`
    /// seconds for 429 and 503. A rejected turn is not accepted.
    Reject {
        /// The status.
        status: u16,
        /// How many attempts are rejected.
        times: usize,
        /// The `Retry-After` of a 429 or 503, in seconds.
        retry_after: u64,
    },
    /// The first `times` reads of the turn's Alquimia stream send one event,
    /// then cut the connection.
    DropStream {
        /// How many reads are cut.
        times: usize,
    },
    /// The first `times` answers of the turn (Alquimia stream reads, chat
    /// requests) wait `delay` first. A delayed stream stays readable.
    Delay {
        /// The extra wait.
        delay: Duration,
        /// How many answers are delayed.
        times: usize,
    },
    /// The first `times` Alquimia infer requests of the turn are accepted
    /// (the turn is recorded and its stream created) but their reply waits
    /// `delay`: an agent that took the turn while the client gave up.
    DelayInfer {
        /// The extra wait before the infer reply.
        delay: Duration,
        /// How many infer replies are delayed.
        times: usize,
    },
    /// The turn's answer ends with ` (you sent: <Authorization header>)`:
    /// a server that echoes the key it was given.
    EchoAuthorization,
}

/// Which turns get which [`Fault`], deterministically: named queries first,
/// then shares of the turns picked by a seeded hash of (session id, query).
/// A chat-completions turn has the session id `""`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    seed: u64,
    shares: Vec<(u32, Fault)>,
    queries: Vec<(String, Fault)>,
}

impl FaultPlan {
    /// An empty plan whose shares are picked with `seed`.
    pub fn new(seed: u64) -> Self {
        FaultPlan {
            seed,
            ..FaultPlan::default()
        }
    }

    /// `percent` of the turns (of 100, on top of the shares added before)
    /// get `fault`.
    pub fn share(mut self, percent: u32, fault: Fault) -> Self {
        self.shares.push((percent, fault));
        self
    }

    /// Every turn asking exactly `query` gets `fault`.
    pub fn on_query(mut self, query: impl Into<String>, fault: Fault) -> Self {
        self.queries.push((query.into(), fault));
        self
    }

    /// The fault of the turn asking `query` in `session_id`, if any.
    pub fn fault(&self, session_id: &str, query: &str) -> Option<Fault> {
        if let Some((_, fault)) = self.queries.iter().find(|(q, _)| q == query) {
            return Some(*fault);
        }
        // FNV-1a: stable across runs and platforms.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ self.seed;
        for byte in session_id.bytes().chain([0xff]).chain(query.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let bucket = (hash % 100) as u32;
        let mut upto = 0;
        for (percent, fault) in &self.shares {
            upto += percent;
            if bucket < upto {
                return Some(*fault);
            }
        }
        None
    }
}
