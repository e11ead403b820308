//! The one retry policy: how often and how long a request is retried, the backoff between attempts
//! (exponential, full jitter, `Retry-After` wins), and the event deadline that bounds everything done
//! for one event, fallback rounds included. The engine retries requests with it; the worker asks it
//! whether another round fits before the deadline.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// First backoff delay; it doubles up to `cap`.
    pub base: Duration,
    pub cap: Duration,
    /// Attempts per request.
    pub max_attempts: usize,
    /// Longest time spent on one request, its retries included.
    pub max_elapsed: Duration,
    /// Longest time from an event's first attempt to its `failed` result.
    pub event_deadline: Duration,
}

impl RetryPolicy {
    /// The defaults of `run` and `apply` (their flags take these values).
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        base: Duration::from_millis(10),
        cap: Duration::from_secs(2),
        max_attempts: 12,
        max_elapsed: Duration::from_secs(30),
        event_deadline: Duration::from_secs(120),
    };

    pub fn backoff(&self) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1))
    }

    /// Full jitter: a uniform delay in `[0, d]`, unless the server said how long to wait.
    pub fn jitter(retry_after: Option<Duration>, delay: Option<Duration>) -> Option<Duration> {
        let delay = delay?;
        Some(retry_after.unwrap_or_else(|| delay.mul_f64(rand::random::<f64>())))
    }

    /// When one request started now must give up: its own budget, never past the event's deadline.
    pub fn request_deadline(&self, event_deadline: Instant) -> Instant {
        (Instant::now() + self.max_elapsed).min(event_deadline)
    }

    /// The pause before retry round `round` (0-based) of events that failed transiently, or `None`
    /// when the round could not start before `deadline`.
    pub fn next_round(&self, round: u32, deadline: Instant) -> Option<Duration> {
        let exponential = self
            .base
            .saturating_mul(2u32.saturating_pow(round.min(16)))
            .min(self.cap);
        let pause = exponential.mul_f64(rand::random::<f64>());
        (Instant::now() + pause < deadline).then_some(pause)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_delay_and_retry_after_wins() {
        let samples: Vec<Duration> = (0..100)
            .map(|_| RetryPolicy::jitter(None, Some(Duration::from_millis(40))).unwrap())
            .collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(40)), "{samples:?}");
        // Full jitter spreads the delays over the range: not all zero, not all the same.
        assert!(samples.iter().any(|d| !d.is_zero()), "{samples:?}");
        let distinct: std::collections::BTreeSet<&Duration> = samples.iter().collect();
        assert!(distinct.len() > 1, "{samples:?}");
        assert_eq!(
            RetryPolicy::jitter(Some(Duration::from_secs(2)), Some(Duration::from_millis(40))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            RetryPolicy::jitter(None, None),
            None,
            "no delay left means no more attempts"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_and_requests_stop_at_the_event_deadline() {
        let policy = RetryPolicy::DEFAULT;
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            policy.request_deadline(deadline),
            deadline,
            "a request never outlives its event"
        );
        let pauses: Vec<Duration> = (0..100)
            .map(|_| policy.next_round(20, deadline).expect("a round fits in 5 s"))
            .collect();
        assert!(pauses.iter().all(|pause| *pause <= policy.cap), "{pauses:?}");
        // Jittered: not all zero, not all the same.
        assert!(pauses.iter().any(|pause| !pause.is_zero()), "{pauses:?}");
        let distinct: std::collections::BTreeSet<&Duration> = pauses.iter().collect();
        assert!(distinct.len() > 1, "{pauses:?}");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            policy.next_round(0, deadline),
            None,
            "no round starts after the deadline"
        );
    }
}
