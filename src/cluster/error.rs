//! What can go wrong talking to the API server, classified by what to do about it.

use crate::higress::Refusal;
use crate::reason::Reason;
use crate::result::{bounded, MAX_MESSAGE_BYTES};
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
    /// 400, 403, 404 (namespace), 413, 422, etcd's "request is too large", an object we cannot
    /// parse: retrying cannot help. `answer` is the API server's own reason and message.
    #[error("{object}: the API server answered {code} {answer}")]
    Permanent {
        object: String,
        code: u16,
        reason: Reason,
        answer: String,
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
    pub fn reason(&self) -> Reason {
        match self {
            ApplyError::Conflict { .. } => Reason::Conflict,
            ApplyError::Transient { .. } => Reason::Unavailable,
            ApplyError::Permanent { reason, .. } => *reason,
            ApplyError::Refused(refusal) => refusal.reason,
        }
    }

    /// Whether a write that failed so may still have been made: no answer came (a dropped
    /// connection, a client timeout), the server gave up waiting for its own store (504), its store
    /// failed in a way that may have committed (500: etcd's "request timed out", "leader changed"),
    /// or a proxy lost the answer (502). Not 429 or 503: the API server sends those before acting.
    /// Its retry reads the object first, and a write found made is reported (`Engine::write`).
    pub fn answer_lost(error: &kube::Error) -> bool {
        match error {
            kube::Error::Api(status) => {
                matches!(status.code, 500 | 502 | 504) && !status.message.contains("request is too large")
            }
            // Answered, only not readable: the server did what it answered.
            kube::Error::SerdeError(_) => false,
            _ => true,
        }
    }

    /// What the API server (or a proxy before it) answered is cut to a message's bound: it reaches
    /// results, dead letters and log lines, and a proxy's error page can be any size.
    pub fn classify(error: kube::Error, object: &str) -> ApplyError {
        let object = object.to_string();
        let answer = |text: String| bounded(&text, MAX_MESSAGE_BYTES);
        match error {
            // etcd's limit (about 1.5 MiB per object) reaches clients as a 500; retrying cannot help.
            kube::Error::Api(status) if status.code == 500 && status.message.contains("request is too large") => {
                ApplyError::Permanent {
                    object,
                    code: 500,
                    reason: Reason::TooLarge,
                    answer: answer(status.message),
                }
            }
            // What the server sent cannot be read (e.g. nested deeper than the parser allows): the
            // object must be repaired. The parser's message gives a position, never content.
            kube::Error::SerdeError(error) => ApplyError::Permanent {
                object,
                code: 200,
                reason: Reason::Unreadable,
                answer: answer(format!("an object that cannot be parsed: {error}")),
            },
            kube::Error::Api(status) => match status.code {
                409 => ApplyError::Conflict { object },
                429 | 500 | 502 | 503 | 504 | 408 => ApplyError::Transient {
                    object,
                    message: answer(format!("{} {}", status.code, status.message)),
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
                    reason: Reason::of_status(code),
                    answer: answer(format!("{}: {}", status.reason, status.message)),
                },
            },
            other => ApplyError::Transient {
                object,
                message: answer(other.to_string()),
                retry_after: None,
            },
        }
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
            (400, Reason::BadRequest),
            (403, Reason::Forbidden),
            (404, Reason::NotFound),
            (413, Reason::TooLarge),
            (422, Reason::Invalid),
        ] {
            let error = ApplyError::classify(api(code, "Whatever", 0), "x");
            assert!(!error.is_retryable());
            assert_eq!(error.reason(), reason);
        }
        let mut too_large = api(500, "InternalError", 0);
        if let kube::Error::Api(status) = &mut too_large {
            status.message = "etcdserver: request is too large".into();
        }
        let error = ApplyError::classify(too_large, "WasmPlugin/ai-proxy.internal");
        assert_eq!((error.reason(), error.is_retryable()), (Reason::TooLarge, false));
        assert!(error.to_string().contains("WasmPlugin/ai-proxy.internal"), "{error}");
    }

    #[test]
    fn only_a_missing_answer_or_a_failed_store_may_hide_a_write() {
        for code in [500, 502, 504] {
            assert!(ApplyError::answer_lost(&api(code, "", 0)), "{code}");
        }
        for code in [409, 429, 503, 422] {
            assert!(!ApplyError::answer_lost(&api(code, "", 0)), "{code}");
        }
        let no_answer = kube::Error::Service(Box::new(std::io::Error::other("connection closed")));
        assert!(ApplyError::answer_lost(&no_answer));
    }

    #[test]
    fn what_the_server_or_a_proxy_answered_is_cut_to_a_message() {
        // A proxy's error page, as a client reads a body that is no Status.
        let page = format!("<html>\n{}</html>", "<p>gateway timeout</p>\n".repeat(10_000));
        for code in [502, 403] {
            let mut answer = api(code, "", 0);
            if let kube::Error::Api(status) = &mut answer {
                status.message = page.clone();
            }
            let error = ApplyError::classify(answer, "WasmPlugin/ai-proxy.internal").to_string();
            assert!(error.len() <= MAX_MESSAGE_BYTES + 100, "{code}: {} bytes", error.len());
            assert!(error.contains("gateway timeout") && !error.contains('\n'), "{error}");
        }
    }
}
