//! How each turn runs: its timeout, its retries with [`Backoff`], and the
//! suite's request-rate limit ([`RateLimit`]), as the [engine](crate::Engine)
//! applies them around every attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Exponential backoff with full jitter between retries.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Upper bound of any delay, `Retry-After` included.
    pub max: Duration,
}

impl Backoff {
    /// 250 ms doubling up to 30 s.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(250),
        max: Duration::from_secs(30),
    };

    /// The delay before retry number `retry` (1-based). A server's
    /// `Retry-After` wins over the computed delay, capped at `max`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max);
        }
        let exp = self
            .initial
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(16))
            .min(self.max);
        // Full jitter between half and the whole delay keeps retries of many
        // sessions from landing at once without ever retrying immediately.
        let half = exp / 2;
        half + exp.mul_f64(rand::random::<f64>() * 0.5)
    }
}

/// A request-rate limit shared by every session of a suite: attempts
/// (retries included) start at most `count` per `period`, evenly spaced.
///
/// Clones share their state, so one limit put into a [`Policy`] bounds all
/// the sessions an [`Engine`](crate::Engine) runs under it.
#[derive(Clone)]
pub struct RateLimit {
    count: u32,
    period: Duration,
    /// When the next attempt may start.
    next: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl RateLimit {
    /// At most `count` attempts per `period` (`None` when either is zero).
    pub fn new(count: u32, period: Duration) -> Option<Self> {
        (count > 0 && !period.is_zero()).then(|| RateLimit {
            count,
            period,
            next: Arc::new(Mutex::new(None)),
        })
    }

    /// At most `count` attempts per second.
    pub fn per_second(count: u32) -> Option<Self> {
        RateLimit::new(count, Duration::from_secs(1))
    }

    /// The spacing between two attempts.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }

    /// Waits for this attempt's slot. Slots are handed out in call order,
    /// one every [`interval`](RateLimit::interval).
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval());
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimit({}/{:?})", self.count, self.period)
    }
}

impl PartialEq for RateLimit {
    /// Two limits are equal when they allow the same rate (their state aside).
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.period == other.period
    }
}

/// How each turn runs: its timeout, its retries and the request rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Per-turn timeout (per attempt); `None` waits forever.
    pub timeout: Option<Duration>,
    /// Retries of a transient failure or a timeout (0 = none).
    pub retries: u32,
    /// Delays between retries.
    pub backoff: Backoff,
    /// The request-rate limit shared by every session run under this policy
    /// (`None`: unlimited). Applied before every attempt, retries included.
    pub rate_limit: Option<RateLimit>,
}

static NO_POLICY: Policy = Policy {
    timeout: None,
    retries: 0,
    backoff: Backoff::DEFAULT,
    rate_limit: None,
};

impl Policy {
    /// No timeout, no retries.
    pub fn none() -> &'static Policy {
        &NO_POLICY
    }
}

impl Default for Policy {
    fn default() -> Self {
        NO_POLICY.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for retry in 1..6 {
            let full = Duration::from_millis(100 * (1 << (retry - 1))).min(backoff.max);
            let delay = backoff.delay(retry, None);
            assert!(delay >= full / 2 && delay <= full, "{retry}: {delay:?}");
        }
        assert_eq!(
            backoff.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(backoff.delay(1, Some(Duration::from_secs(60))), backoff.max);
    }
}
