//! The event contract: bytes in, a [`LifecycleEvent`] out, or every [`Problem`] that stops it.
//!
//! Parsing runs in stages so that the published contract and the code cannot drift: the JSON
//! Schemas in `schemas/` ([`schema`]) check shape, per-field rules and most limits, typed parsing
//! follows, then [`rules`] adds what a schema cannot say well (sums, uniqueness by a field, byte
//! sizes, names derived from other fields). Every problem names its JSON path and the rule broken,
//! and secrets never appear in a problem.
//!
//! Depends on the event types ([`crate::event`]) and on the provider mapping's own check; nothing
//! of the event types depends on it.

pub mod rules;
pub mod schema;

pub use schema::{validate, Schema};

use crate::event::{Envelope, Lifecycle, LifecycleEvent, DEPLOYED_TYPE, RETIRED_TYPE};
use serde_json::Value;
use std::fmt;

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

/// Parses and validates one structured-mode CloudEvent.
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

/// Validates a CloudEvent already decoded as JSON.
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
    invalid.problems = validate(schema, &value);
    if !invalid.problems.is_empty() {
        return Err(invalid);
    }
    let trace = match rules::trace_context(object) {
        Ok(trace) => trace,
        Err(problems) => {
            invalid.problems = problems;
            return Err(invalid);
        }
    };
    let envelope = Envelope {
        id: text("id").unwrap_or_default(),
        source: text("source").unwrap_or_default(),
        event_type: text("type").unwrap_or_default(),
        subject: text("subject"),
        time: text("time"),
        trace,
    };
    let data = data.cloned().unwrap_or(Value::Null);
    // Limits first: the typed model need not be built from an input that is too big or too deep.
    invalid.problems = rules::limit_problems(&data);
    if !invalid.problems.is_empty() {
        return Err(invalid);
    }
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
    invalid.problems = match &body {
        Lifecycle::Deployed(deployed) => rules::model_problems(&deployed.model)
            .into_iter()
            .chain(rules::cross_field_problems(deployed))
            .collect(),
        Lifecycle::Retired(retired) => rules::model_problems(&retired.model),
    };
    if !invalid.problems.is_empty() {
        return Err(invalid);
    }
    Ok(LifecycleEvent { envelope, body })
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
        let weights = problems(
            json!({"model": "m", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["t"]},
            "route": {"upstreams": [{"provider": "m", "weight": 60}, {"provider": "m", "weight": 30}]}}),
        );
        assert!(
            weights.contains(&"data.route.upstreams: weights sum to 90, must be 100".to_string()),
            "{weights:?}"
        );
        assert!(weights.contains(&"data.route.upstreams[1].provider: provider \"m\" is listed twice".to_string()));
        let consumers = problems(
            json!({"model": "m", "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["t"]},
            "auth": {"consumers": [{"name": "a", "source": "BEARER", "credentials": ["x"]}, {"name": "a", "source": "BEARER", "credentials": ["y"]}]}}),
        );
        assert_eq!(
            consumers,
            ["data.auth.consumers[1].name: consumer \"a\" is listed twice"]
        );
    }

    fn deploys(provider: Value) -> Result<LifecycleEvent, InvalidEvent> {
        deployed(json!({"model": "m", "revision": 1, "provider": provider}))
    }

    /// What the schema says of each provider type is what the gateway's ai-proxy requires (its
    /// `ValidateConfig`), in problems naming the field, the rule and the condition.
    #[test]
    fn the_schema_states_what_the_gateway_requires_of_each_type() {
        let refused = |provider: Value| -> Vec<String> {
            let invalid = deploys(provider.clone()).expect_err(&provider.to_string());
            assert_eq!(invalid.reason, InvalidReason::SchemaViolation, "{provider}");
            invalid.problems.iter().map(ToString::to_string).collect()
        };
        let tokens = "data.provider: one of apiTokens or apiTokensSecretRef is required when type is qwen, azure";
        for provider_type in ["deepseek", "qwen", "claude", "zhipuai", "moonshot", "minimax", "grok"] {
            let found = refused(json!({"type": provider_type}));
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].starts_with(tokens), "{found:?}");
            let empty = refused(json!({"type": provider_type, "apiTokens": []}));
            assert_eq!(
                empty,
                ["data.provider.apiTokens: must not be empty when type is qwen, azure, zhipuai, claude, moonshot, ai360, github, groq, baichuan, yi, deepseek, baidu, stepfun, minimax, gemini, mistral, cohere, doubao, coze, openrouter or grok"]
            );
            deploys(json!({"type": provider_type, "apiTokens": ["t"]})).unwrap();
            deploys(json!({"type": provider_type, "apiTokensSecretRef": {"name": "s", "key": "k"}})).unwrap();
        }
        // The types whose ValidateConfig asks for no token.
        for provider in [
            json!({"type": "openai"}),
            json!({"type": "vllm", "url": "http://10.0.0.1:8000/v1"}),
            json!({"type": "ollama", "url": "http://10.0.0.1:11434"}),
        ] {
            deploys(provider).unwrap();
        }
        assert_eq!(
            refused(json!({"type": "bedrock", "config": {"awsRegion": "us-east-1"}})),
            ["data.provider: one of apiTokens or apiTokensSecretRef is required when type is bedrock and config does not give both awsAccessKey and awsSecretKey"]
        );
        assert_eq!(
            refused(json!({"type": "bedrock", "apiTokens": ["t"], "config": {"awsRegion": "", "awsAccessKey": "a", "awsSecretKey": "s"}})),
            ["data.provider.config.awsRegion: must not be empty or null (the gateway's ai-proxy reads either as missing) when type is bedrock"]
        );
        assert_eq!(
            refused(json!({"type": "vertex", "config": {"vertexRegion": "us-central1", "vertexAuthKey": "{}"}})),
            ["data.provider.config.vertexProjectId: required when type is vertex and no API token is given"]
        );
        assert_eq!(
            refused(json!({"type": "vertex", "apiTokens": ["t"], "config": {"vertexRegion": "us-central1",
                "vertexProjectId": "p", "vertexAuthKey": "{}", "vertexOpenAICompatible": "TRUE"}})),
            ["data.provider.config.vertexOpenAICompatible: must not be true with an API token (express mode): the gateway's ai-proxy refuses both together when type is vertex and an API token is given (express mode)"]
        );
        assert_eq!(
            refused(json!({"type": "azure", "apiTokens": ["t"]})),
            ["data.provider.config: required when type is azure and url is not given"]
        );
        // As Go's url.Query() reads a query: a pair with ';' or a bad escape is dropped.
        for url in [
            "https://x.openai.azure.com/chat",
            "https://x.openai.azure.com/chat?version=1",
            "https://x.openai.azure.com/chat?x=1#&api-version=1",
            "https://x.openai.azure.com/chat?api-version=1;x=2",
            "https://x.openai.azure.com/chat?api-version=%zz",
            "https://x.openai.azure.com/chat?api-versions=1",
        ] {
            assert_eq!(
                refused(json!({"type": "azure", "apiTokens": ["t"], "config": {"azureServiceUrl": url}})),
                ["data.provider.config.azureServiceUrl: must have an api-version query parameter (the gateway's ai-proxy refuses an Azure service URL without one) when type is azure"],
                "{url}"
            );
        }
        assert_eq!(
            refused(json!({"type": "azure", "apiTokens": ["t"], "url": "https://x.openai.azure.com/chat?version=1"})),
            ["data.provider.url: must have an api-version query parameter (the gateway's ai-proxy refuses an Azure service URL without one) when type is azure"]
        );
        for url in [
            "https://x.openai.azure.com/chat?api-version=2024-06-01",
            "https://x.openai.azure.com/chat?a=1&api-version=2024-06-01#f",
            "https://x.openai.azure.com/chat?api%2Dversion=2024-06-01",
            "https://x.openai.azure.com/chat?api-version=2024%2D06%2D01&x",
        ] {
            deploys(json!({"type": "azure", "apiTokens": ["t"], "url": url})).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
        assert_eq!(
            refused(json!({"type": "ollama", "config": {"ollamaServerHost": "llm.local", "ollamaServerPort": 0}})),
            ["data.provider.config.ollamaServerPort: must not be 0, false, null or empty (the gateway's ai-proxy reads each as 0) when type is ollama and url is not given"]
        );
        assert_eq!(
            refused(
                json!({"type": "qwen", "apiTokens": ["t"], "config": {"qwenFileIds": ["f"],
                "context": {"fileUrl": "http://f.local/c.txt", "serviceName": "f.dns", "servicePort": 80}}})
            ),
            ["data.provider.config.context: is not allowed when type is qwen and config.qwenFileIds is not empty"]
        );
        deploys(json!({"type": "qwen", "apiTokens": ["t"], "config": {"qwenFileIds": [],
            "context": {"fileUrl": "http://f.local/c.txt", "serviceName": "f.dns", "servicePort": 80}}}))
        .unwrap();
        assert_eq!(
            refused(
                json!({"type": "moonshot", "apiTokens": ["t"], "config": {"moonshotFileId": "f",
                "context": {"fileUrl": "http://f.local/c.txt", "serviceName": "f.dns", "servicePort": 80}}})
            ),
            ["data.provider.config.context: is not allowed when type is moonshot and config.moonshotFileId is given"]
        );
        assert_eq!(
            refused(json!({"type": "minimax", "apiTokens": ["t"], "config": {"minimaxApiType": "pro"}})),
            ["data.provider.config.minimaxGroupId: required when type is minimax and config.minimaxApiType is pro"]
        );
        assert_eq!(
            refused(
                json!({"type": "openai", "config": {"context": {"fileUrl": "http://f.local/c.txt", "serviceName": "f.dns"}}})
            ),
            ["data.provider.config.context.servicePort: required"]
        );
        assert_eq!(
            refused(json!({"type": "openai", "failover": {"enabled": true}})),
            ["data.provider.failover.healthCheckModel: required when enabled is true"]
        );
        deploys(json!({"type": "openai", "failover": {"enabled": false}})).unwrap();
    }

    /// The gateway accepts these, and so does the worker, though the console's form would ask more.
    #[test]
    fn what_only_the_console_form_refuses_is_accepted() {
        for provider in [
            json!({"type": "bedrock", "apiTokens": ["t"], "config": {"awsRegion": "us-east-1"}}),
            json!({"type": "vertex", "apiTokens": ["t"]}),
            json!({"type": "vertex", "apiTokensSecretRef": {"name": "s", "key": "k"}, "config": {"vertexRegion": "europe-west4"}}),
            json!({"type": "azure", "apiTokens": ["t"], "url": "https://x.openai.azure.com/chat?api-version"}),
            json!({"type": "azure", "apiTokens": ["t"], "url": "https://x.openai.azure.com/chat?api-version="}),
        ] {
            deploys(provider.clone()).unwrap_or_else(|e| panic!("{provider}: {e:?}"));
        }
        // As the console writes them, they are accepted.
        deploys(json!({"type": "bedrock", "apiTokens": ["t"], "config": {"awsRegion": "us-east-1", "awsAccessKey": "a", "awsSecretKey": "s"}}))
            .unwrap();
        deploys(json!({"type": "vertex", "apiTokens": ["t"], "config": {"vertexRegion": "us-central1", "vertexProjectId": "p", "vertexAuthKey": "{}"}}))
            .unwrap();
    }

    #[test]
    fn hosts_typed_into_provider_config_are_refused_at_their_field() {
        let service = problems(json!({"model": "m", "revision": 1, "provider": {"type": "openai",
            "config": {"openaiCustomServiceName": "svc\n100% evil.dns", "openaiCustomServicePort": 80}}}));
        assert_eq!(service.len(), 1, "{service:?}");
        assert!(
            service[0]
                .starts_with("data.provider.config.openaiCustomServiceName: must be a lower-case RFC 1123 host name"),
            "{service:?}"
        );
        assert!(!service[0].contains("evil"), "the value is not quoted: {service:?}");
        let ollama =
            problems(json!({"model": "m", "revision": 1, "provider": {"type": "ollama", "url": "http://[::1]:11434"}}));
        assert_eq!(ollama.len(), 1, "{ollama:?}");
        // A URL's host is refused where the URL is read.
        assert!(
            ollama[0].starts_with("data.provider: url's host must be a host name or an IPv4 address"),
            "{ollama:?}"
        );
    }

    #[test]
    fn a_defaulted_provider_name_points_at_the_model() {
        let long = "m".repeat(60);
        let found =
            problems(json!({"model": long, "revision": 1, "provider": {"type": "deepseek", "apiTokens": ["t"]}}));
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("data.model:") && p.contains("defaults to the model name")),
            "{found:?}"
        );
    }

    #[test]
    fn a_whole_number_float_is_reported_at_its_field() {
        let found =
            problems(json!({"model": "m", "revision": 3.0, "provider": {"type": "deepseek", "apiTokens": ["t"]}}));
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
            "route": {"plugins": {"ai-token-ratelimit": {"redis": {"service_name": "r.dns", "password": "redis-hidden"}}}},
            "auth": {"consumers": [{"name": "a", "source": "BEARER", "credentials": ["cred-hidden"]}]}}),
        )
        .unwrap();
        let text = format!("{event:?}");
        assert!(
            !text.contains("sk-hidden")
                && !text.contains("cred-hidden")
                && !text.contains("cfg-hidden")
                && !text.contains("redis-hidden"),
            "{text}"
        );
        assert!(text.contains("awsSecretKey"), "keys are shown: {text}");
    }
}
