//! The `route-result` event: one per input event, saying what became of it.

use crate::contract::InvalidEvent;
use crate::event::{LifecycleEvent, RESULT_TYPE};
use crate::higress::{ObjectKey, Operation};
use crate::reason::Reason;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Applied,
    Unchanged,
    Stale,
    Rejected,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Stale => "stale",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub operation: &'static str,
}

impl Change {
    pub fn new(key: &ObjectKey, operation: Operation) -> Self {
        Self {
            api_version: key.kind.api_version(),
            kind: key.kind.kind().to_string(),
            name: key.name.clone(),
            operation: operation.as_str(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultError {
    pub reason: String,
    pub message: String,
    pub retryable: bool,
}

/// The `data` of a route-result event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteResult {
    pub input_event_id: String,
    pub input_type: String,
    pub model: Option<String>,
    pub revision: Option<u64>,
    pub outcome: Outcome,
    pub changes: Vec<Change>,
    pub attempts: u32,
    pub conflicts: u32,
    pub duration_ms: u64,
    pub warnings: Vec<String>,
    pub error: Option<ResultError>,
}

impl RouteResult {
    /// A result for an event with no outcome yet.
    pub fn for_event(event: &LifecycleEvent) -> Self {
        Self {
            input_event_id: event.envelope.id.clone(),
            input_type: event.envelope.event_type.clone(),
            model: Some(event.model().to_string()),
            revision: Some(event.revision()),
            outcome: Outcome::Unchanged,
            changes: Vec::new(),
            attempts: 0,
            conflicts: 0,
            duration_ms: 0,
            warnings: Vec::new(),
            error: None,
        }
    }

    /// The `rejected` result of an input that is not a valid event.
    pub fn for_invalid(invalid: &InvalidEvent) -> Self {
        Self {
            input_event_id: invalid.event_id.clone().unwrap_or_default(),
            input_type: invalid.event_type.clone().unwrap_or_default(),
            model: invalid.model.clone(),
            revision: invalid.revision,
            outcome: Outcome::Rejected,
            changes: Vec::new(),
            attempts: 0,
            conflicts: 0,
            duration_ms: 0,
            warnings: Vec::new(),
            error: Some(ResultError {
                reason: invalid.reason.as_str().to_string(),
                message: invalid.message(),
                retryable: false,
            }),
        }
    }

    pub fn fail(&mut self, outcome: Outcome, reason: Reason, message: String, retryable: bool) {
        self.outcome = outcome;
        self.changes.clear();
        self.error = Some(ResultError {
            reason: reason.as_str().to_string(),
            message,
            retryable,
        });
    }

    /// The CloudEvent (structured mode) carrying this result.
    pub fn to_cloud_event(&self, source: &str) -> Value {
        let id = format!("{}/result", self.input_event_id);
        let mut event = json!({
            "specversion": "1.0",
            "id": id,
            "source": source,
            "type": RESULT_TYPE,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "datacontenttype": "application/json",
            "data": self,
        });
        if let Some(model) = self.model.as_deref().filter(|m| !m.is_empty()) {
            event["subject"] = json!(model);
        }
        event
    }
}
