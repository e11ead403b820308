//! What can go wrong talking to the API server, classified by what to do about it.

use crate::higress::Refusal;
use std::time::Duration;

/// One error enum for the cluster side; [`ApplyError::label`] is its metric label.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// 409: someone else wrote first. Re-read and re-apply our edits.
    #[error("conflict writing {object}")]
    Conflict { object: String },
    /// 429, 5xx, timeouts, connection errors: retry with backoff (honouring Retry-After).
    #[error("transient error on {object}: {message}")]
    Transient {
        object: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 400, 403, 404 (namespace), 422, …: retrying cannot help.
    #[error("{reason} ({code}) on {object}: {message}")]
    Permanent {
        object: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// Our edit no longer fits the object as it is now (e.g. a credential taken meanwhile).
    #[error("{}: {}", .0.reason, .0.message)]
    Refused(Refusal),
}

impl ApplyError {
    pub fn label(&self) -> &'static str {
        match self {
            ApplyError::Conflict { .. } => "conflict",
            ApplyError::Transient { .. } => "transient",
            ApplyError::Permanent { .. } => "permanent",
            ApplyError::Refused(_) => "refused",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ApplyError::Conflict { .. } | ApplyError::Transient { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApplyError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Reason code for a result event.
    pub fn reason(&self) -> String {
        match self {
            ApplyError::Conflict { .. } => "Conflict".into(),
            ApplyError::Transient { .. } => "Unavailable".into(),
            ApplyError::Permanent { reason, .. } => reason.clone(),
            ApplyError::Refused(refusal) => refusal.reason.to_string(),
        }
    }

    pub fn classify(error: kube::Error, object: &str) -> ApplyError {
        let object = object.to_string();
        match error {
            kube::Error::Api(status) => match status.code {
                409 => ApplyError::Conflict { object },
                429 | 500 | 502 | 503 | 504 | 408 => ApplyError::Transient {
                    object,
                    message: format!("{} {}", status.code, status.message),
                    retry_after: status
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0)
                        .map(|s| Duration::from_secs(u64::from(s))),
                },
                code => ApplyError::Permanent {
                    object,
                    code,
                    reason: if status.reason.is_empty() {
                        format!("Http{code}")
                    } else {
                        status.reason.clone()
                    },
                    message: status.message.clone(),
                },
            },
            other => ApplyError::Transient {
                object,
                message: other.to_string(),
                retry_after: None,
            },
        }
    }
}

/// Exponential backoff with full jitter, bounded by attempts and by elapsed time.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: usize,
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(10),
            cap: Duration::from_secs(2),
            max_attempts: 12,
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub fn backoff(&self) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1))
    }

    /// Full jitter: a uniform delay in `[0, d]`, unless the server said how long to wait.
    pub fn adjust(error: &ApplyError, delay: Option<Duration>) -> Option<Duration> {
        let delay = delay?;
        Some(
            error
                .retry_after()
                .unwrap_or_else(|| delay.mul_f64(rand::random::<f64>())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, retry_after: u32) -> kube::Error {
        let mut status = Status {
            code,
            reason: reason.into(),
            message: "m".into(),
            ..Status::default()
        };
        if retry_after > 0 {
            status.details = Some(kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds: retry_after,
            });
        }
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn api_errors_are_classified_by_what_to_do() {
        assert_eq!(ApplyError::classify(api(409, "Conflict", 0), "x").label(), "conflict");
        assert_eq!(
            ApplyError::classify(api(409, "AlreadyExists", 0), "x").label(),
            "conflict"
        );
        let throttled = ApplyError::classify(api(429, "TooManyRequests", 3), "x");
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
        assert!(throttled.is_retryable());
        for code in [500, 503] {
            assert!(ApplyError::classify(api(code, "", 0), "x").is_retryable());
        }
        for (code, reason) in [
            (400, "BadRequest"),
            (403, "Forbidden"),
            (404, "NotFound"),
            (422, "Invalid"),
        ] {
            let error = ApplyError::classify(api(code, reason, 0), "x");
            assert!(!error.is_retryable());
            assert_eq!(error.reason(), reason);
        }
    }

    #[test]
    fn jitter_stays_within_the_delay_and_retry_after_wins() {
        let transient = ApplyError::Transient {
            object: "x".into(),
            message: "m".into(),
            retry_after: None,
        };
        for _ in 0..100 {
            let d = RetryPolicy::adjust(&transient, Some(Duration::from_millis(40))).unwrap();
            assert!(d <= Duration::from_millis(40));
        }
        let throttled = ApplyError::Transient {
            object: "x".into(),
            message: "m".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            RetryPolicy::adjust(&throttled, Some(Duration::from_millis(40))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            RetryPolicy::adjust(&transient, None),
            None,
            "no delay left means no more attempts"
        );
    }
}
