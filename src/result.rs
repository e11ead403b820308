//! The `route-result` event: one per input event, saying what became of it.

use crate::contract::{InvalidEvent, Problem};
use crate::event::{Lifecycle, LifecycleEvent, PredicateMatch, TraceContext, RESULT_TYPE};
use crate::higress::{route, ObjectKey, Operation, State};
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
    /// Why the worker acted on its own, without an input event (`secret-rotated`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Where a deployed route answers; published with `applied` and `unchanged` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteAccess>,
    /// Published as the result's own `traceparent` and `tracestate`: the input's context, or, when the
    /// worker exports spans, its own span for the event (the worker sets it), with the input's state.
    #[serde(skip)]
    pub trace: Option<TraceContext>,
    /// Writes that may have been made (see [`RouteResult::add_unknown_writes`]); published as warnings.
    #[serde(skip)]
    pub unknown_writes: Vec<Change>,
}

/// What a pipeline needs to call a deployed route without knowing Higress: its public URLs and the
/// model names it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteAccess {
    /// `<scheme>://<domain><path>` per domain: `https` when the domain, as it stands after the
    /// event, has HTTPS `on` or `force` and names a certificate (the condition under which the
    /// route's Ingress gets a TLS entry for it), else `http`. Wildcard domains name no host and are
    /// left out; a route without domains matches any host, so it has no URL (see `path`).
    pub urls: Vec<String>,
    /// The route's path prefix, to join with the gateway's address when there is no URL.
    pub path: String,
    /// The models the route answers, in the model-mapper's notation: a name matches exactly, a name
    /// ending in `*` by prefix, `*` alone any model. From the model predicates (EQUAL `v` → `v`, PRE
    /// `v` → `v*`); without predicates `["*"]`. A model mapping rewrites what the provider receives
    /// and does not narrow what the route answers.
    pub models: Vec<String>,
}

impl RouteAccess {
    /// For a deploy, against the state after its plan (domains as they stand, existing settings won).
    pub fn of(event: &LifecycleEvent, state: &State) -> Option<RouteAccess> {
        let Lifecycle::Deployed(deployed) = &event.body else {
            return None;
        };
        let route = &deployed.route;
        let urls = route
            .domains
            .iter()
            .filter(|domain| !domain.starts_with('*'))
            .map(|domain| {
                // The route's Ingress has TLS for the domain exactly when `route::tls` gives it.
                let https = route::domain_https(state, domain).is_some();
                let scheme = if https { "https" } else { "http" };
                format!("{scheme}://{domain}{}", route.path)
            })
            .collect();
        let models = if route.model_predicates.is_empty() {
            vec!["*".to_string()]
        } else {
            route
                .model_predicates
                .iter()
                .map(|p| match p.match_type {
                    PredicateMatch::Equal => p.match_value.clone(),
                    PredicateMatch::Pre => format!("{}*", p.match_value),
                })
                .collect()
        };
        Some(RouteAccess {
            urls,
            path: route.path.clone(),
            models,
        })
    }
}

/// The warning naming a write that may have been made (see [`RouteResult::add_unknown_writes`]).
pub fn unknown_write_warning(change: &Change) -> String {
    format!(
        "{}/{} may have been {}: the answer to that write was lost, and reading the object again could not tell",
        change.kind, change.name, change.operation
    )
}

impl RouteResult {
    /// A result with nothing done yet: `unchanged`, no changes, no error.
    fn empty(input_event_id: String, input_type: String, model: Option<String>, revision: Option<u64>) -> Self {
        Self {
            input_event_id,
            input_type,
            model,
            revision,
            outcome: Outcome::Unchanged,
            changes: Vec::new(),
            attempts: 0,
            conflicts: 0,
            duration_ms: 0,
            warnings: Vec::new(),
            error: None,
            reason: None,
            route: None,
            trace: None,
            unknown_writes: Vec::new(),
        }
    }

    /// A result for an event with no outcome yet.
    pub fn for_event(event: &LifecycleEvent) -> Self {
        Self {
            trace: event.envelope.trace.clone(),
            ..Self::empty(
                event.envelope.id.clone(),
                event.envelope.event_type.clone(),
                Some(event.model().to_string()),
                Some(event.revision()),
            )
        }
    }

    /// The result of re-applying a route's Secret values (no input event: its id and type are empty).
    pub fn for_rotation(model: &str, revision: u64) -> Self {
        Self {
            outcome: Outcome::Applied,
            reason: Some(Reason::SecretRotated.as_str()),
            ..Self::empty(String::new(), String::new(), Some(model.to_string()), Some(revision))
        }
    }

    /// The `rejected` result of an input that is not a valid event.
    pub fn for_invalid(invalid: &InvalidEvent) -> Self {
        // An invalid input's envelope is not trusted, its trace context included.
        Self {
            outcome: Outcome::Rejected,
            error: Some(ResultError {
                reason: invalid.reason.as_str().to_string(),
                message: problems_summary(&invalid.problems),
                retryable: false,
            }),
            ..Self::empty(
                invalid.event_id.clone().unwrap_or_default(),
                invalid.event_type.clone().unwrap_or_default(),
                invalid.model.clone(),
                invalid.revision,
            )
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

    /// Adds what was written for the event before this result's attempt (by a failed batch, by an
    /// earlier round), ahead of its own changes. `rejected` means nothing was written, so a refusal
    /// after earlier writes is `failed` (not retryable: its input is dead-lettered `apply-partial`);
    /// and a result with writes is never `unchanged`.
    pub fn add_earlier_writes(&mut self, earlier: impl IntoIterator<Item = Change>) {
        let mut changes: Vec<Change> = Vec::new();
        for change in earlier {
            if !self.changes.contains(&change) && !changes.contains(&change) {
                changes.push(change);
            }
        }
        if changes.is_empty() {
            return;
        }
        changes.append(&mut self.changes);
        self.changes = changes;
        match self.outcome {
            Outcome::Unchanged => self.outcome = Outcome::Applied,
            Outcome::Rejected => self.outcome = Outcome::Failed,
            Outcome::Applied | Outcome::Stale | Outcome::Failed => {}
        }
    }

    /// What an earlier round of the same event wrote, and may have written, stays part of its result.
    pub fn add_earlier(&mut self, earlier: RouteResult) {
        self.add_earlier_writes(earlier.changes);
        self.add_unknown_writes(earlier.unknown_writes);
    }

    /// Writes whose answers were lost and that reading the object again could neither confirm nor
    /// rule out (another writer changed it meanwhile, or it could not be read): `changes` lists only
    /// what is known written, so each is named in a warning. A write may have been made, so the
    /// result is neither `rejected` nor `unchanged`.
    pub fn add_unknown_writes(&mut self, unknown: impl IntoIterator<Item = Change>) {
        for change in unknown {
            let warning = unknown_write_warning(&change);
            if !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
            if !self.unknown_writes.contains(&change) {
                self.unknown_writes.push(change);
            }
            match self.outcome {
                Outcome::Unchanged => self.outcome = Outcome::Applied,
                Outcome::Rejected => self.outcome = Outcome::Failed,
                Outcome::Applied | Outcome::Stale | Outcome::Failed => {}
            }
        }
    }

    /// This result with every free-form part cut to its bound: what is published.
    pub fn bounded(&self) -> Self {
        let name = |text: &str| bounded(text, MAX_NAME_BYTES);
        Self {
            input_event_id: name(&self.input_event_id),
            input_type: name(&self.input_type),
            model: self.model.as_deref().map(name),
            warnings: capped(&self.warnings),
            error: self.error.as_ref().map(|error| ResultError {
                reason: name(&error.reason),
                message: bounded(&error.message, MAX_MESSAGE_BYTES),
                retryable: error.retryable,
            }),
            // Only a route the gateway reflects is worth calling.
            route: self
                .route
                .clone()
                .filter(|_| matches!(self.outcome, Outcome::Applied | Outcome::Unchanged)),
            ..self.clone()
        }
    }

    /// The CloudEvent (structured mode) carrying this result, bounded.
    pub fn to_cloud_event(&self, source: &str) -> Value {
        let bounded = self.bounded();
        let now = chrono::Utc::now();
        let id = match bounded.reason {
            // No input event to derive the id from: the model and the moment make it unique.
            Some(reason) => format!(
                "{reason}/{}/{}",
                bounded.model.as_deref().unwrap_or_default(),
                now.timestamp_nanos_opt().unwrap_or_default()
            ),
            // An input whose id could not be read: the moment makes the result's id unique.
            None if bounded.input_event_id.is_empty() => {
                format!("unreadable-input/{}", now.timestamp_nanos_opt().unwrap_or_default())
            }
            None => format!("{}/result", bounded.input_event_id),
        };
        let mut event = json!({
            "specversion": "1.0",
            "id": id,
            "source": source,
            "type": RESULT_TYPE,
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "datacontenttype": "application/json",
            "data": bounded,
        });
        if let Some(model) = bounded.model.as_deref().filter(|m| !m.is_empty()) {
            event["subject"] = json!(model);
        }
        // The pipeline's trace continues through the worker: its span for the event when it exports
        // spans, else the input's context as it came.
        if let Some(trace) = &bounded.trace {
            event["traceparent"] = json!(trace.traceparent);
            if let Some(state) = &trace.tracestate {
                event["tracestate"] = json!(state);
            }
        }
        event
    }
}

/// At most this many problems or warnings are listed; the rest are counted ("and K more").
pub const MAX_LISTED: usize = 10;
/// Bytes of one listed problem or warning.
pub const MAX_ITEM_BYTES: usize = 300;
/// Bytes of an error message (a result's, a dead letter's, a log line's).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Bytes of an id, a type, a model name or a reason taken from input.
pub const MAX_NAME_BYTES: usize = 256;

/// `text` cut to at most `max_bytes` (on a character boundary, "…" marking the cut), with control
/// and bidirectional-override characters escaped so that a hostile value cannot forge log lines or
/// disguise itself.
pub fn bounded(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars() {
        let piece = if c.is_control() || is_bidi_control(c) {
            c.escape_unicode().to_string()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max_bytes {
            let end = floor_char_boundary(&out, max_bytes.saturating_sub(ELLIPSIS.len()));
            out.truncate(end);
            out.push_str(ELLIPSIS);
            break;
        }
        out.push_str(&piece);
    }
    out
}

const ELLIPSIS: &str = "…";

/// The largest character boundary of `text` at or before `index` (`str::floor_char_boundary`,
/// stable only since Rust 1.91).
pub fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut end = index.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The first [`MAX_LISTED`] items, each bounded, and "and K more" for the rest.
pub fn capped(items: &[String]) -> Vec<String> {
    let mut listed: Vec<String> = items
        .iter()
        .take(MAX_LISTED)
        .map(|item| bounded(item, MAX_ITEM_BYTES))
        .collect();
    if items.len() > MAX_LISTED {
        listed.push(format!("and {} more", items.len() - MAX_LISTED));
    }
    listed
}

/// Problems on one bounded line, `; `-separated: the first [`MAX_LISTED`] and "and K more".
pub fn problems_summary(problems: &[Problem]) -> String {
    let listed: Vec<String> = problems.iter().take(MAX_LISTED).map(ToString::to_string).collect();
    let mut parts = capped(&listed);
    if problems.len() > MAX_LISTED {
        parts.push(format!("and {} more", problems.len() - MAX_LISTED));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::higress::names;

    #[test]
    fn bounded_cuts_on_a_character_boundary_and_escapes_controls() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded(&"é".repeat(100), 11);
        // 11 bytes: four 2-byte characters and the 3-byte ellipsis.
        assert_eq!(cut, "éééé…");
        assert_eq!(bounded("/x\n---\u{202e}", 100), "/x\\u{a}---\\u{202e}");
        assert!(bounded(&"\n".repeat(1000), 50).len() <= 50);
    }

    #[test]
    fn twenty_thousand_problems_make_one_short_line() {
        let problems: Vec<Problem> = (0..20_000)
            .map(|i| Problem::new(format!("data.provider.apiTokens.{i}"), "must be a string"))
            .collect();
        let summary = problems_summary(&problems);
        assert!(summary.starts_with("data.provider.apiTokens.0: must be a string; "));
        assert!(summary.ends_with("; and 19990 more"), "{summary}");
        assert_eq!(summary.matches("must be a string").count(), MAX_LISTED);
        let long = vec![Problem::new("p".repeat(100_000), "x")];
        assert!(problems_summary(&long).len() <= MAX_ITEM_BYTES);
    }

    #[test]
    fn earlier_writes_come_first_and_a_result_with_writes_is_neither_rejected_nor_unchanged() {
        use crate::higress::{Kind, ObjectKey, Operation};
        let fence = Change::new(&ObjectKey::new(Kind::ConfigMap, names::fence("m")), Operation::Created);
        let bridge = Change::new(&ObjectKey::new(Kind::McpBridge, names::MCP_BRIDGE), Operation::Updated);
        let ingress = Change::new(
            &ObjectKey::new(Kind::Ingress, "ai-route-m.internal"),
            Operation::Created,
        );
        let event = deploy(json!({"path": "/m"}));

        let mut refused = RouteResult::for_event(&event);
        refused.fail(Outcome::Rejected, Reason::Invalid, "refused".into(), false);
        refused.add_earlier_writes([fence.clone(), bridge.clone(), fence.clone()]);
        assert_eq!(refused.outcome, Outcome::Failed);
        assert_eq!(refused.changes, [fence.clone(), bridge.clone()]);
        assert!(!refused.error.as_ref().unwrap().retryable);

        let mut finished = RouteResult::for_event(&event);
        finished.outcome = Outcome::Applied;
        finished.changes = vec![bridge.clone(), ingress.clone()];
        finished.add_earlier_writes([fence.clone(), bridge.clone()]);
        assert_eq!(finished.changes, [fence.clone(), bridge.clone(), ingress]);
        assert_eq!(finished.outcome, Outcome::Applied);

        let mut nothing_left = RouteResult::for_event(&event);
        nothing_left.add_earlier_writes([fence]);
        assert_eq!(nothing_left.outcome, Outcome::Applied);

        let mut still_rejected = RouteResult::for_event(&event);
        still_rejected.fail(Outcome::Rejected, Reason::Invalid, "refused".into(), false);
        still_rejected.add_earlier_writes([]);
        assert_eq!(still_rejected.outcome, Outcome::Rejected);
    }

    #[test]
    fn a_write_that_may_have_been_made_is_warned_of_carried_to_the_next_round_and_never_rejected_or_unchanged() {
        use crate::higress::{Kind, ObjectKey, Operation};
        let ingress = Change::new(
            &ObjectKey::new(Kind::Ingress, "ai-route-m.internal"),
            Operation::Created,
        );
        let event = deploy(json!({"path": "/m"}));
        let mut first_round = RouteResult::for_event(&event);
        first_round.fail(Outcome::Rejected, Reason::Unavailable, "timeout".into(), true);
        first_round.add_unknown_writes([ingress.clone(), ingress.clone()]);
        assert_eq!(first_round.outcome, Outcome::Failed);
        let warning = "Ingress/ai-route-m.internal may have been created: the answer to that write was lost, and reading the object again could not tell";
        assert_eq!(first_round.warnings, [warning]);
        assert!(first_round.changes.is_empty(), "not listed as written");

        // The next round finds the route as it should be and writes nothing.
        let mut next_round = RouteResult::for_event(&event);
        next_round.add_earlier(first_round);
        assert_eq!(next_round.outcome, Outcome::Applied);
        assert_eq!(next_round.warnings, [warning]);
        assert_eq!(next_round.unknown_writes, [ingress]);
        assert!(!next_round.to_cloud_event("s").to_string().contains("unknownWrites"));
    }

    fn deploy(route: serde_json::Value) -> LifecycleEvent {
        let event = json!({"specversion": "1.0", "id": "e-1", "source": "t", "type": crate::event::DEPLOYED_TYPE,
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "rojo=1",
            "data": {"model": "m", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["sk-d"]}, "route": route}});
        crate::contract::parse(event.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn route_access_follows_the_domains_as_they_stand_and_the_predicates() {
        let mut state = State::new();
        for (domain, mode) in [
            ("a.example.com", "off"),
            ("b.example.com", "on"),
            ("c.example.com", "force"),
        ] {
            state.insert_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": names::domain_config_map(domain)},
                "data": {"domain": domain, "enableHttps": mode, "cert": "example-cert"}}));
        }
        let event = deploy(
            json!({"domains": ["a.example.com", "b.example.com", "c.example.com", "*.example.com"],
            "https": {"mode": "force", "cert": "x"}, "path": "/v1",
            "modelPredicates": [{"matchType": "PRE", "matchValue": "qwen-"}, {"matchType": "EQUAL", "matchValue": "gpt-4o"}],
            "modelMapping": {"gpt-4o": "gpt-4o-mini"}}),
        );
        let access = RouteAccess::of(&event, &state).unwrap();
        // The existing domains' settings, not the event's; no URL for the wildcard.
        assert_eq!(
            access.urls,
            [
                "http://a.example.com/v1",
                "https://b.example.com/v1",
                "https://c.example.com/v1"
            ]
        );
        assert_eq!(access.models, ["qwen-*", "gpt-4o"]);
        let open = RouteAccess::of(&deploy(json!({})), &State::new()).unwrap();
        assert_eq!(
            (open.urls.len(), open.path.as_str(), open.models),
            (0, "/", vec!["*".to_string()])
        );
    }

    #[test]
    fn a_domain_with_https_but_no_certificate_is_called_over_http() {
        // As `route::tls`: without a cert the Ingress has no TLS entry for the domain.
        let mut state = State::new();
        for (domain, data) in [
            ("on.example.com", json!({"enableHttps": "on"})),
            ("force.example.com", json!({"enableHttps": "force", "cert": ""})),
            ("tls.example.com", json!({"enableHttps": "on", "cert": "example-cert"})),
        ] {
            state.insert_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": names::domain_config_map(domain)}, "data": data}));
        }
        let event = deploy(json!({"domains": ["on.example.com", "force.example.com", "tls.example.com"]}));
        let access = RouteAccess::of(&event, &state).unwrap();
        assert_eq!(
            access.urls,
            [
                "http://on.example.com/",
                "http://force.example.com/",
                "https://tls.example.com/"
            ]
        );
        let tls = route::tls(&["on.example.com".into()], &state).unwrap();
        assert!(tls.entries.is_empty(), "the Ingress agrees: no TLS");
    }

    #[test]
    fn the_result_carries_the_trace_context_and_route_access_only_when_applied() {
        let event = deploy(json!({"domains": ["a.example.com"]}));
        let mut result = RouteResult::for_event(&event);
        result.outcome = Outcome::Applied;
        result.route = RouteAccess::of(&event, &State::new());
        let published = result.to_cloud_event("t");
        assert_eq!(
            published["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(published["tracestate"], "rojo=1");
        assert_eq!(published["data"]["route"]["urls"], json!(["http://a.example.com/"]));
        assert!(crate::contract::validate(crate::contract::Schema::Result, &published).is_empty());
        result.fail(Outcome::Failed, Reason::Unavailable, "down".into(), true);
        let failed = result.to_cloud_event("t");
        assert!(
            failed["data"].get("route").is_none(),
            "a failed route is not worth calling"
        );
        assert_eq!(failed["traceparent"], published["traceparent"]);
    }

    #[test]
    fn published_results_are_bounded() {
        let mut result = RouteResult::for_invalid(&InvalidEvent {
            reason: crate::contract::InvalidReason::UnknownType,
            problems: vec![Problem::new("type", "unknown")],
            event_id: Some("i".repeat(100_000)),
            event_type: Some("t".repeat(100_000)),
            model: Some("m".repeat(100_000)),
            revision: None,
        });
        result.warnings = (0..1000).map(|i| format!("warning {i} {}", "w".repeat(1000))).collect();
        let published = result.to_cloud_event("test").to_string();
        // Three names, ten warnings and the ellipsis line, the envelope: well under 16 KiB.
        assert!(published.len() < 16 * 1024, "{} bytes", published.len());
        let data = &result.to_cloud_event("test")["data"];
        assert_eq!(data["warnings"].as_array().unwrap().len(), MAX_LISTED + 1);
        assert_eq!(data["warnings"][MAX_LISTED], "and 990 more");
    }
}
