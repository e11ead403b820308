//! Why an event did not end as asked. One closed set: the result's `error.reason`, the input reasons of a
//! dead letter's `hrw_dlq_reason` and the `secret_rotations_total` label all use [`Reason::as_str`], so a
//! dashboard, a pipeline and a log line name a failure the same way, and no input can add a label value.
//! (A dead letter of an applied event says how it ended instead, `apply-failed` or `apply-partial`; retries
//! are labelled by the class of error retried, `ApplyError::label`.)

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    // The input is not a valid event (dead-lettered, nothing written).
    NotJson,
    NotCloudEvent,
    UnknownType,
    SchemaViolation,
    Oversize,
    // The mapping refuses the event (nothing written).
    InvalidProvider,
    InvalidRoute,
    InvalidDomains,
    UnknownProvider,
    SecretNotFound,
    SecretInvalid,
    SecretNotAllowed,
    /// An entry the event needs is another's: a credential of another consumer, a service bound to
    /// another provider.
    EntryTaken,
    /// A shared object would grow past its size budget.
    Capacity,
    /// The plugin that reads a shared object would refuse it as the event leaves it (`crate::gateway`).
    GatewayRefuses,
    /// `route.plugins` names a plugin whose config parser is not ported (`--unvalidated-plugin` admits it).
    PluginNotValidated,
    /// Another writer fenced the model with a newer revision while the event was being applied; the
    /// event ends `stale`.
    Superseded,
    // The cluster.
    /// 409 on every attempt until the deadline.
    Conflict,
    /// 429, 5xx, timeouts, lost connections until the deadline.
    Unavailable,
    /// An earlier event of the same model is being retried; this one waits for it.
    Blocked,
    BadRequest,
    Forbidden,
    NotFound,
    /// 422: the API server refused the object.
    Invalid,
    /// 413 or etcd's `request is too large`.
    TooLarge,
    /// Any other status the API server answered with, which retrying cannot change.
    ApiRefused,
    /// An object in the cluster cannot be parsed (too deep or not JSON); someone must repair it.
    Unreadable,
    /// Not a failure: a Secret a route uses changed, and the worker re-applied the route with its new
    /// value (the `reason` of a result the worker publishes on its own).
    SecretRotated,
}

impl Reason {
    pub const ALL: [Reason; 28] = [
        Reason::NotJson,
        Reason::NotCloudEvent,
        Reason::UnknownType,
        Reason::SchemaViolation,
        Reason::Oversize,
        Reason::InvalidProvider,
        Reason::InvalidRoute,
        Reason::InvalidDomains,
        Reason::UnknownProvider,
        Reason::SecretNotFound,
        Reason::SecretInvalid,
        Reason::SecretNotAllowed,
        Reason::EntryTaken,
        Reason::Capacity,
        Reason::GatewayRefuses,
        Reason::PluginNotValidated,
        Reason::Superseded,
        Reason::Conflict,
        Reason::Unavailable,
        Reason::Blocked,
        Reason::BadRequest,
        Reason::Forbidden,
        Reason::NotFound,
        Reason::Invalid,
        Reason::TooLarge,
        Reason::ApiRefused,
        Reason::Unreadable,
        Reason::SecretRotated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not-json",
            Reason::NotCloudEvent => "not-cloudevent",
            Reason::UnknownType => "unknown-type",
            Reason::SchemaViolation => "schema-violation",
            Reason::Oversize => "oversize",
            Reason::InvalidProvider => "invalid-provider",
            Reason::InvalidRoute => "invalid-route",
            Reason::InvalidDomains => "invalid-domains",
            Reason::UnknownProvider => "unknown-provider",
            Reason::SecretNotFound => "secret-not-found",
            Reason::SecretInvalid => "secret-invalid",
            Reason::SecretNotAllowed => "secret-not-allowed",
            Reason::EntryTaken => "entry-taken",
            Reason::Capacity => "capacity",
            Reason::GatewayRefuses => "gateway-refuses",
            Reason::PluginNotValidated => "plugin-not-validated",
            Reason::Superseded => "superseded",
            Reason::Conflict => "conflict",
            Reason::Unavailable => "unavailable",
            Reason::Blocked => "blocked",
            Reason::BadRequest => "bad-request",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "not-found",
            Reason::Invalid => "invalid",
            Reason::TooLarge => "too-large",
            Reason::ApiRefused => "api-refused",
            Reason::Unreadable => "unreadable",
            Reason::SecretRotated => "secret-rotated",
        }
    }

    /// The reason for a status the API server answered with and retrying cannot change.
    pub fn of_status(code: u16) -> Reason {
        match code {
            400 => Reason::BadRequest,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            413 => Reason::TooLarge,
            422 => Reason::Invalid,
            _ => Reason::ApiRefused,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_label() {
        let mut labels: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len(), "two reasons share a label");
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
    }
}
