//! The event contract: CloudEvents 1.0 lifecycle events in, typed and validated.
//!
//! Parsing runs in two stages so that the published contract and the code cannot drift: the JSON
//! Schemas in `schemas/` (see [`crate::contract`]) check shape and per-field rules, then typed
//! parsing adds the cross-field rules a schema cannot say well. Every problem names its JSON path
//! and the rule broken, and secrets never appear in a problem.

use crate::contract::{self, Schema};
use crate::secret::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

pub const DEPLOYED_TYPE: &str = "io.higress.model.deployed.v1";
pub const RETIRED_TYPE: &str = "io.higress.model.retired.v1";
pub const RESULT_TYPE: &str = "io.higress.model.route.result.v1";

/// Largest event accepted, in bytes; larger ones are poison.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// One broken rule at one JSON path, e.g. `data.route.upstreams: weights sum to 90, must be 100`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub rule: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

/// Why an input could not become a [`LifecycleEvent`], with whatever could still be read from it so
/// that a `rejected` result can be published for the right model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidEvent {
    pub reason: InvalidReason,
    pub problems: Vec<Problem>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub model: Option<String>,
    pub revision: Option<u64>,
}

/// Coarse kind of an invalid input; the label on metrics and on the dead-letter header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    Oversize,
    NotJson,
    NotCloudEvent,
    UnknownType,
    SchemaViolation,
}

impl InvalidReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::NotJson => "not-json",
            Self::NotCloudEvent => "not-cloudevent",
            Self::UnknownType => "unknown-type",
            Self::SchemaViolation => "schema-violation",
        }
    }
}

impl InvalidEvent {
    fn bare(reason: InvalidReason, problem: Problem) -> Self {
        Self {
            reason,
            problems: vec![problem],
            event_id: None,
            event_type: None,
            model: None,
            revision: None,
        }
    }

    /// All problems on one line, `; `-separated.
    pub fn message(&self) -> String {
        self.problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid event ({}): {}", self.reason.as_str(), self.message())
    }
}

impl std::error::Error for InvalidEvent {}

/// CloudEvents context attributes we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: Option<String>,
}

#[derive(Clone, Debug)]
pub struct LifecycleEvent {
    pub envelope: Envelope,
    pub body: Lifecycle,
}

#[derive(Clone, Debug)]
pub enum Lifecycle {
    Deployed(Box<ModelDeployed>),
    Retired(ModelRetired),
}

impl LifecycleEvent {
    pub fn model(&self) -> &str {
        match &self.body {
            Lifecycle::Deployed(d) => &d.model,
            Lifecycle::Retired(r) => &r.model,
        }
    }

    pub fn revision(&self) -> u64 {
        match &self.body {
            Lifecycle::Deployed(d) => d.revision,
            Lifecycle::Retired(r) => r.revision,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeployed {
    pub model: String,
    pub revision: u64,
    pub provider: ProviderSpec,
    #[serde(default)]
    pub route: RouteSpec,
    #[serde(default)]
    pub auth: Option<AuthSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// Defaults to the model name (see [`ModelDeployed::provider_name`]).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default = "default_provider_type")]
    pub provider_type: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub protocol: ProviderProtocol,
    #[serde(default)]
    pub api_tokens: Vec<SecretString>,
    #[serde(default)]
    pub api_tokens_secret_ref: Option<SecretRef>,
    /// Extra ai-proxy keys, written verbatim into the provider entry.
    #[serde(default)]
    pub config: RawConfig,
    /// The console's `tokenFailoverConfig`; the console UI always sends `{enabled: false}`.
    #[serde(default)]
    pub failover: Option<Map<String, Value>>,
}

/// Extra ai-proxy keys. They may hold credentials (`awsSecretKey`, `vertexAuthKey`, …), so `Debug`
/// shows the keys only.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RawConfig(pub Map<String, Value>);

impl std::ops::Deref for RawConfig {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

fn default_provider_type() -> String {
    "openai".to_string()
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderProtocol {
    #[default]
    Openai,
    Original,
}

/// A key of a Kubernetes Secret in the Higress namespace.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    pub name: String,
    pub key: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub https: Option<HttpsSpec>,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub model_predicates: Vec<ModelPredicate>,
    #[serde(default)]
    pub model_mapping: Map<String, Value>,
    #[serde(default)]
    pub upstreams: Option<Vec<UpstreamSpec>>,
}

impl Default for RouteSpec {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            https: None,
            path: default_path(),
            model_predicates: Vec::new(),
            model_mapping: Map::new(),
            upstreams: None,
        }
    }
}

fn default_path() -> String {
    "/".to_string()
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct HttpsSpec {
    pub mode: HttpsMode,
    #[serde(default)]
    pub cert: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HttpsMode {
    Off,
    On,
    Force,
}

impl HttpsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::Force => "force",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelPredicate {
    pub match_type: PredicateMatch,
    pub match_value: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum PredicateMatch {
    Equal,
    Pre,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    pub provider: String,
    pub weight: u32,
    #[serde(default)]
    pub model_mapping: Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Defaults to the names of `consumers`.
    #[serde(default)]
    pub allowed_consumers: Option<Vec<String>>,
    #[serde(default)]
    pub consumers: Vec<ConsumerSpec>,
}

fn yes() -> bool {
    true
}

impl AuthSpec {
    pub fn allow_list(&self) -> Vec<String> {
        match &self.allowed_consumers {
            Some(names) => names.clone(),
            None => self.consumers.iter().map(|c| c.name.clone()).collect(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSpec {
    pub name: String,
    pub source: KeySource,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub credentials: Vec<SecretString>,
    #[serde(default)]
    pub credentials_secret_ref: Option<SecretRef>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeySource {
    Bearer,
    Header,
    Query,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRetired {
    pub model: String,
    pub revision: u64,
    /// Delete the route's providers when no remaining AI route uses them.
    #[serde(default = "yes")]
    pub delete_provider: bool,
    /// Delete the consumers the route allowed when no remaining allow list names them.
    #[serde(default)]
    pub delete_consumers: bool,
}

impl ModelDeployed {
    pub fn provider_name(&self) -> &str {
        self.provider.name.as_deref().unwrap_or(&self.model)
    }

    /// The route's upstreams; by default the event's provider with weight 100 and the route's mapping.
    pub fn upstreams(&self) -> Vec<UpstreamSpec> {
        match &self.route.upstreams {
            Some(upstreams) => upstreams.clone(),
            None => vec![UpstreamSpec {
                provider: self.provider_name().to_string(),
                weight: 100,
                model_mapping: self.route.model_mapping.clone(),
            }],
        }
    }
}

/// Parses one structured-mode CloudEvent.
pub fn parse(bytes: &[u8]) -> Result<LifecycleEvent, InvalidEvent> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(InvalidEvent::bare(
            InvalidReason::Oversize,
            Problem::new(
                "$",
                format!("event is {} bytes, at most {MAX_EVENT_BYTES} allowed", bytes.len()),
            ),
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| InvalidEvent::bare(InvalidReason::NotJson, Problem::new("$", format!("not JSON: {e}"))))?;
    parse_value(value)
}

/// Parses a CloudEvent already decoded as JSON.
pub fn parse_value(value: Value) -> Result<LifecycleEvent, InvalidEvent> {
    let Some(object) = value.as_object() else {
        return Err(InvalidEvent::bare(
            InvalidReason::NotCloudEvent,
            Problem::new("$", "must be a JSON object (a CloudEvent in structured mode)"),
        ));
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
    let data = object.get("data");
    let mut invalid = InvalidEvent {
        reason: InvalidReason::NotCloudEvent,
        problems: Vec::new(),
        event_id: text("id"),
        event_type: text("type"),
        model: data
            .and_then(|d| d.get("model"))
            .and_then(Value::as_str)
            .map(str::to_string),
        revision: data.and_then(|d| d.get("revision")).and_then(Value::as_u64),
    };
    for attribute in ["specversion", "id", "source", "type"] {
        if text(attribute).is_none() {
            invalid.problems.push(Problem::new(
                attribute,
                "required CloudEvents attribute, must be a string",
            ));
        }
    }
    if !invalid.problems.is_empty() {
        return Err(invalid);
    }
    let schema = match invalid.event_type.as_deref() {
        Some(DEPLOYED_TYPE) => Schema::Deployed,
        Some(RETIRED_TYPE) => Schema::Retired,
        Some(other) => {
            invalid.reason = InvalidReason::UnknownType;
            invalid.problems.push(Problem::new(
                "type",
                format!("unknown event type {other:?}, must be {DEPLOYED_TYPE} or {RETIRED_TYPE}"),
            ));
            return Err(invalid);
        }
        None => unreachable!("checked above"),
    };
    invalid.reason = InvalidReason::SchemaViolation;
    invalid.problems = contract::validate(schema, &value);
    if !invalid.problems.is_empty() {
        return Err(invalid);
    }
    let envelope = Envelope {
        id: text("id").unwrap_or_default(),
        source: text("source").unwrap_or_default(),
        event_type: text("type").unwrap_or_default(),
        subject: text("subject"),
        time: text("time"),
    };
    let data = data.cloned().unwrap_or(Value::Null);
    let typed = match schema {
        Schema::Deployed => serde_path_to_error::deserialize(data).map(|d| Lifecycle::Deployed(Box::new(d))),
        Schema::Retired => serde_path_to_error::deserialize(data).map(Lifecycle::Retired),
        Schema::Result => unreachable!("results are not input"),
    };
    let body = typed.map_err(|e| {
        // What the schema lets through but the types do not, e.g. `3.0` for an integer.
        let mut invalid = invalid.clone();
        let path = e.path().to_string();
        let path = if path == "." {
            "data".to_string()
        } else {
            format!("data.{path}")
        };
        invalid.problems.push(Problem::new(path, e.into_inner().to_string()));
        invalid
    })?;
    if let Lifecycle::Deployed(deployed) = &body {
        invalid.problems = cross_field_problems(deployed);
        if !invalid.problems.is_empty() {
            return Err(invalid);
        }
    }
    Ok(LifecycleEvent { envelope, body })
}

/// Rules a JSON Schema cannot state: sums, uniqueness by a field, names derived from other fields,
/// and what each provider type requires of its endpoint.
fn cross_field_problems(event: &ModelDeployed) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_dns_name(&event.model, "data.model", &mut problems);
    let provider_path = if event.provider.name.is_some() {
        "data.provider.name"
    } else {
        "data.model"
    };
    check_provider_name(event.provider_name(), provider_path, &mut problems);
    if let Err(rule) = crate::higress::provider::check(&event.provider, event.provider_name()) {
        problems.push(Problem::new("data.provider", rule));
    }
    if let Some(upstreams) = &event.route.upstreams {
        let sum: u32 = upstreams.iter().map(|u| u.weight).sum();
        if sum != 100 {
            problems.push(Problem::new(
                "data.route.upstreams",
                format!("weights sum to {sum}, must be 100"),
            ));
        }
        for (i, upstream) in upstreams.iter().enumerate() {
            if upstreams[..i].iter().any(|u| u.provider == upstream.provider) {
                problems.push(Problem::new(
                    format!("data.route.upstreams[{i}].provider"),
                    format!("provider {:?} is listed twice", upstream.provider),
                ));
            }
        }
    }
    let consumers = event.auth.as_ref().map(|a| a.consumers.as_slice()).unwrap_or_default();
    for (i, consumer) in consumers.iter().enumerate() {
        if consumers[..i].iter().any(|c| c.name == consumer.name) {
            problems.push(Problem::new(
                format!("data.auth.consumers[{i}].name"),
                format!("consumer {:?} is listed twice", consumer.name),
            ));
        }
        // The key-auth plugin rejects its whole config when two consumers share a credential.
        if consumers[..i]
            .iter()
            .any(|c| c.credentials.iter().any(|v| consumer.credentials.contains(v)))
        {
            problems.push(Problem::new(
                format!("data.auth.consumers[{i}].credentials"),
                "a credential is also given to an earlier consumer",
            ));
        }
    }
    problems
}

/// `ai-route-<model>` must be a DNS subdomain: every dot-separated label starts and ends alphanumeric.
fn check_dns_name(name: &str, path: &str, problems: &mut Vec<Problem>) {
    let labels_ok = name
        .split('.')
        .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if !labels_ok {
        problems.push(Problem::new(
            path,
            format!("{name:?} would make invalid Kubernetes names: each '.'-separated part must start and end with a letter or digit"),
        ));
    }
}

/// Provider names end up in hostnames (`llm-<p>.internal.dns`): lowercase DNS labels, at most 59
/// characters so that `llm-<p>` stays within 63. Without `provider.name` the model name is used.
fn check_provider_name(name: &str, path: &str, problems: &mut Vec<Problem>) {
    let valid = !name.is_empty()
        && name.len() <= 59
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        let defaulted = if path == "data.model" {
            " (the provider name defaults to the model name; set data.provider.name)"
        } else {
            ""
        };
        problems.push(Problem::new(
            path,
            format!("{name:?} is not a valid provider name: lowercase letters, digits, '-' and '.', at most 59 characters{defaulted}"),
        ));
    } else {
        check_dns_name(name, path, problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployed(data: Value) -> Result<LifecycleEvent, InvalidEvent> {
        let event = json!({"specversion": "1.0", "id": "1", "source": "t", "type": DEPLOYED_TYPE, "data": data});
        parse(event.to_string().as_bytes())
    }

    fn problems(data: Value) -> Vec<String> {
        deployed(data)
            .unwrap_err()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn cross_field_rules_name_the_field_and_the_rule() {
        let weights = problems(json!({"model": "m", "revision": 1, "provider": {"type": "deepseek"},
            "route": {"upstreams": [{"provider": "m", "weight": 60}, {"provider": "m", "weight": 30}]}}));
        assert!(
            weights.contains(&"data.route.upstreams: weights sum to 90, must be 100".to_string()),
            "{weights:?}"
        );
        assert!(weights.contains(&"data.route.upstreams[1].provider: provider \"m\" is listed twice".to_string()));
        let consumers = problems(json!({"model": "m", "revision": 1, "provider": {"type": "deepseek"},
            "auth": {"consumers": [{"name": "a", "source": "BEARER", "credentials": ["x"]}, {"name": "a", "source": "BEARER", "credentials": ["y"]}]}}));
        assert_eq!(
            consumers,
            ["data.auth.consumers[1].name: consumer \"a\" is listed twice"]
        );
        let azure = problems(
            json!({"model": "m", "revision": 1, "provider": {"type": "azure", "url": "https://x.openai.azure.com/chat"}}),
        );
        assert_eq!(
            azure,
            ["data.provider: azureServiceUrl must contain a non-empty api-version query parameter"]
        );
    }

    #[test]
    fn a_defaulted_provider_name_points_at_the_model() {
        let long = "m".repeat(60);
        let found = problems(json!({"model": long, "revision": 1, "provider": {"type": "deepseek"}}));
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("data.model:") && p.contains("defaults to the model name")),
            "{found:?}"
        );
    }

    #[test]
    fn a_whole_number_float_is_reported_at_its_field() {
        let found = problems(json!({"model": "m", "revision": 3.0, "provider": {"type": "deepseek"}}));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("data.revision: invalid type: floating point"),
            "{found:?}"
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let event = deployed(
            json!({"model": "m", "revision": 1, "provider": {"type": "bedrock", "apiTokens": ["sk-hidden"],
                "config": {"awsRegion": "us-east-1", "awsAccessKey": "AK", "awsSecretKey": "cfg-hidden"}},
            "auth": {"consumers": [{"name": "a", "source": "BEARER", "credentials": ["cred-hidden"]}]}}),
        )
        .unwrap();
        let text = format!("{event:?}");
        assert!(
            !text.contains("sk-hidden") && !text.contains("cred-hidden") && !text.contains("cfg-hidden"),
            "{text}"
        );
        assert!(text.contains("awsSecretKey"), "keys are shown: {text}");
    }
}
