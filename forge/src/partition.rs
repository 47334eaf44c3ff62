//! Shards of a run, for a CI matrix: `--partition hash:M/N` or
//! `count:M/N` (and `FORGE_PARTITION` for the `cargo test` harness) keeps
//! shard M of N. The unit is a session (a dataset, with its repeats): the
//! turns of one conversation never split across shards.
//!
//! - `hash:M/N`: a session belongs to shard `h % N + 1`, where `h` is the
//!   64-bit FNV-1a hash of `<suite name> NUL <session_id> NUL <assistant_id>`
//!   (UTF-8; for a system of `runners:` the suite name is
//!   `<suite>.<system>`, so each system's sessions are dealt on their own).
//!   It depends on nothing else, so it is stable across runs,
//!   machines and forge versions, and a session keeps its shard when others
//!   are added or removed.
//! - `count:M/N`: sessions are dealt round-robin in suite order (the suites
//!   in the order they were given, their datasets in file order): the k-th
//!   session (from 0) belongs to shard `k % N + 1`. Even shards, but adding a
//!   session moves the ones after it.

use std::fmt;
use std::str::FromStr;

/// How sessions are dealt to shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By a stable hash of the session's identity.
    Hash,
    /// Round-robin in suite order.
    Count,
}

/// Shard `index` of `total` (1-based), dealt by `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    mode: Mode,
    index: u64,
    total: u64,
}

/// Environment variable of the harness's partition.
pub const PARTITION_ENV: &str = "FORGE_PARTITION";

impl Partition {
    /// The partition of `FORGE_PARTITION`: `None` when it is unset or
    /// empty, an error naming the variable when it is not a valid spec.
    pub fn from_env() -> Result<Option<Partition>, String> {
        match std::env::var(PARTITION_ENV) {
            Ok(spec) if !spec.trim().is_empty() => spec
                .parse()
                .map(Some)
                .map_err(|e| format!("{PARTITION_ENV}: {e}")),
            _ => Ok(None),
        }
    }

    /// The shard's number, M of `M/N`.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The number of shards, N of `M/N`.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether `other` is a shard of the same partition (mode and N).
    pub fn same_partition(&self, other: &Partition) -> bool {
        self.mode == other.mode && self.total == other.total
    }

    /// Whether the `ordinal`-th session (in suite order, from 0) of suite
    /// `suite`, with these ids, belongs to this shard.
    pub fn keeps(&self, ordinal: u64, suite: &str, session_id: &str, assistant_id: &str) -> bool {
        let key = match self.mode {
            Mode::Hash => session_hash(suite, session_id, assistant_id),
            Mode::Count => ordinal,
        };
        key % self.total + 1 == self.index
    }
}

/// FNV-1a (64 bits) of `suite NUL session_id NUL assistant_id`.
pub fn session_hash(suite: &str, session_id: &str, assistant_id: &str) -> u64 {
    let mut hash = Fnv1a::default();
    for part in [suite, "\0", session_id, "\0", assistant_id] {
        hash.update(part.as_bytes());
    }
    hash.0
}

/// The 64-bit FNV-1a hash, fed bytes as they come (it is also an
/// [`std::io::Write`], so a serializer can stream into it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv1a(pub u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(Self::PRIME);
        }
    }
}

impl std::io::Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FromStr for Partition {
    type Err = String;

    /// `hash:M/N` or `count:M/N`, with 1 <= M <= N.
    fn from_str(spec: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "invalid partition {spec:?}: {why} (expected hash:M/N or count:M/N, 1 <= M <= N)"
            )
        };
        let (mode, shard) = spec
            .trim()
            .split_once(':')
            .ok_or_else(|| invalid("no mode"))?;
        let mode = match mode {
            "hash" => Mode::Hash,
            "count" => Mode::Count,
            _ => return Err(invalid(&format!("unknown mode {mode:?}"))),
        };
        let (index, total) = shard.split_once('/').ok_or_else(|| invalid("no `/`"))?;
        let number = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| invalid(&format!("{text:?} is not a whole number")))
        };
        let (index, total) = (number(index)?, number(total)?);
        if total == 0 || index == 0 || index > total {
            return Err(invalid("M must be between 1 and N"));
        }
        Ok(Partition { mode, index, total })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Hash => "hash",
            Mode::Count => "count",
        };
        write!(f, "{mode}:{}/{}", self.index, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let p: Partition = "hash:2/3".parse().unwrap();
        assert_eq!(p.to_string(), "hash:2/3");
        assert_eq!(
            "count:1/1".parse::<Partition>().unwrap().to_string(),
            "count:1/1"
        );
        for (spec, why) in [
            ("hash:0/3", "M must be between 1 and N"),
            ("count:4/3", "M must be between 1 and N"),
            ("hash:1/0", "M must be between 1 and N"),
            ("hash:a/b", "\"a\" is not a whole number"),
            ("hash:1-3", "no `/`"),
            ("slice:1/3", "unknown mode \"slice\""),
            ("1/3", "no mode"),
        ] {
            let error = spec.parse::<Partition>().unwrap_err();
            assert!(error.contains(why), "{spec}: {error}");
            assert!(error.contains(&format!("{spec:?}")), "{error}");
        }
    }

    #[test]
    fn the_hash_is_fnv1a_of_the_sessions_identity() {
        // Values computed with an independent FNV-1a 64 (Python); pinned:
        // a change here would move every session to another shard.
        assert_eq!(session_hash("", "", ""), 0x0832_8807_b4eb_6fed);
        assert_eq!(session_hash("suite", "s1", "bot"), 0x20e6_ceae_67b8_2640);
        assert_ne!(session_hash("ab", "c", ""), session_hash("a", "bc", ""));
    }

    #[test]
    fn count_deals_round_robin() {
        let p: Partition = "count:2/3".parse().unwrap();
        let kept: Vec<u64> = (0..9).filter(|k| p.keeps(*k, "s", "x", "y")).collect();
        assert_eq!(kept, [1, 4, 7]);
    }
}
