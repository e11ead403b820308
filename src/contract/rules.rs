//! The rules a JSON Schema cannot state well, checked after the schema: byte sizes and depth of the
//! free-form parts, characters no object may hold, sums, uniqueness by a field, names derived from
//! other fields, and what each provider type requires of its endpoint.
//!
//! The schema states the depth and character limits too; checking them here again keeps an input
//! that slips past a schema edit from reaching an object.

use super::Problem;
use crate::event::{KeyedMatch, ModelDeployed, RouteSpec, TraceContext};
use crate::higress::names;
use crate::higress::plugins::BuiltinPlugin;
use serde_json::Value;

/// Most levels of objects and arrays in a free-form part (`provider.config`, `provider.failover`),
/// the part itself counting as one. The worker reads these parts back from shared objects with
/// serde_json, whose recursion limit is 128; 8 keeps the stored object far inside it.
pub const MAX_FREE_FORM_DEPTH: usize = 8;

/// Most bytes of one free-form part as compact JSON. A provider's whole configuration (a vertex
/// service-account key is about 2.5 KiB) fits; `ai-proxy.internal` holds every provider, and an
/// object over etcd's 1.5 MiB request limit is refused with a 500.
pub const MAX_FREE_FORM_BYTES: usize = 16 * 1024;

/// The free-form parts of a deploy's `data`: JSON passed on verbatim into shared objects.
fn free_form_parts(data: &Value) -> Vec<(String, &Value)> {
    let mut parts = Vec::new();
    for (pointer, path) in [
        ("/provider/config", "data.provider.config"),
        ("/provider/failover", "data.provider.failover"),
        ("/route/modelMapping", "data.route.modelMapping"),
    ] {
        if let Some(part) = data.pointer(pointer) {
            parts.push((path.to_string(), part));
        }
    }
    for (pointer, path) in [
        ("/route/upstreams", "data.route.upstreams"),
        ("/route/fallback/upstreams", "data.route.fallback.upstreams"),
    ] {
        let upstreams = data.pointer(pointer).and_then(Value::as_array);
        for (i, upstream) in upstreams.into_iter().flatten().enumerate() {
            if let Some(mapping) = upstream.get("modelMapping") {
                parts.push((format!("{path}[{i}].modelMapping"), mapping));
            }
        }
    }
    parts.extend(plugin_configs(data));
    parts
}

/// `route.plugins`: each plugin's config is a free-form part of its own, stored in the plugin's CR.
fn plugin_configs(data: &Value) -> Vec<(String, &Value)> {
    let plugins = data.pointer("/route/plugins").and_then(Value::as_object);
    plugins
        .into_iter()
        .flatten()
        .map(|(name, config)| (super::schema::child("data.route.plugins", name), config))
        .collect()
}

/// Levels of objects and arrays in `value`: 0 for a scalar.
fn depth(value: &Value) -> usize {
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(members) => Box::new(members.values()),
        _ => return 0,
    };
    1 + children.map(depth).max().unwrap_or(0)
}

/// A character no object may hold: control characters (C0, DEL, C1), and the invisible formatting
/// and bidirectional controls that make a name read differently from what it is (U+200E/F,
/// U+202A..U+202E, U+2066..U+2069, zero-width characters, line and paragraph separators, BOM).
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Tab, line feed and carriage return are fine inside the values of free-form configuration
/// (a service-account key is multi-line text); nowhere else.
fn is_forbidden_in(c: char, free_form_value: bool) -> bool {
    is_forbidden_char(c) && !(free_form_value && matches!(c, '\t' | '\n' | '\r'))
}

/// Size, depth and character limits of a deploy's or retirement's `data`.
pub fn limit_problems(data: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (path, part) in free_form_parts(data) {
        let levels = depth(part);
        if levels > MAX_FREE_FORM_DEPTH {
            problems.push(Problem::new(
                &path,
                format!("nests objects and arrays {levels} levels deep, at most {MAX_FREE_FORM_DEPTH} allowed"),
            ));
        }
        let bytes = part.to_string().len();
        if bytes > MAX_FREE_FORM_BYTES {
            problems.push(Problem::new(
                &path,
                format!("is {bytes} bytes as JSON, at most {MAX_FREE_FORM_BYTES} allowed"),
            ));
        }
    }
    check_characters(data, "data", false, &mut problems);
    problems.sort_by(|a, b| (&a.path, &a.rule).cmp(&(&b.path, &b.rule)));
    problems
}

/// Names the first forbidden character of every string (keys included) by path, never by value:
/// the value may be a secret.
fn check_characters(value: &Value, path: &str, free_form: bool, problems: &mut Vec<Problem>) {
    const RULE: &str = "must not contain control or bidirectional-formatting characters";
    match value {
        Value::String(text) if text.chars().any(|c| is_forbidden_in(c, free_form)) => {
            problems.push(Problem::new(path, RULE));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_characters(item, &format!("{path}[{i}]"), free_form, problems);
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                let child = super::schema::child(path, key);
                if key.chars().any(|c| is_forbidden_in(c, false)) {
                    problems.push(Problem::new(&child, format!("{RULE} in its name")));
                }
                let free_form = free_form
                    || matches!(child.as_str(), "data.provider.config" | "data.provider.failover")
                    || path == "data.route.plugins";
                check_characters(member, &child, free_form, problems);
            }
        }
        _ => {}
    }
}

/// Rules a JSON Schema cannot state: sums, uniqueness by a field, names derived from other fields,
/// and what each provider type requires of its endpoint.
pub fn cross_field_problems(event: &ModelDeployed) -> Vec<Problem> {
    let mut problems = Vec::new();
    let provider_path = if event.provider.name.is_some() {
        "data.provider.name"
    } else {
        "data.model"
    };
    check_provider_name(event.provider_name(), provider_path, &mut problems);
    // Config values (or the `url`) that become a host name, the Ingress destination's service or a
    // region: refused here, at their own field, before anything is planned (`provider.config` values
    // may carry tab and line breaks, so the character check above lets them through). The mapping
    // refuses them again (`invalid-provider`).
    let names = crate::higress::provider::name_problems(&event.provider);
    for (field, rule) in &names {
        problems.push(Problem::new(format!("data.provider.{field}"), rule.as_str()));
    }
    if names.is_empty() {
        if let Err(rule) = crate::higress::provider::check(&event.provider, event.provider_name()) {
            problems.push(Problem::new("data.provider", rule));
        }
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
        // The key-auth plugin rejects its whole config when two consumers share a credential
        // (`gateway::key_auth::SHARED_CREDENTIAL`; the edits check it against the consumers already there).
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
    route_feature_problems(&event.route, &mut problems);
    check_route_plugins(event, &mut problems);
    problems
}

/// Fallback, header and URL-parameter predicates, custom annotations and labels: what the console
/// refuses, and what would make an invalid annotation, label or regular expression.
fn route_feature_problems(route: &RouteSpec, problems: &mut Vec<Problem>) {
    use crate::higress::route::{self as console, FALLBACK_FROM_HEADER, MODEL_ROUTING_HEADER};
    // The schema's host-name pattern lets an IPv4 address through; the API server refuses it as an
    // Ingress host (as Go reads addresses: leading zeros allowed).
    for (i, domain) in route.domains.iter().enumerate() {
        let parts: Vec<&str> = domain.split('.').collect();
        let ipv4 = parts.len() == 4
            && parts
                .iter()
                .all(|part| (1..=3).contains(&part.len()) && part.parse::<u16>().is_ok_and(|n| n <= 255));
        if ipv4 {
            problems.push(Problem::new(
                format!("data.route.domains[{i}]"),
                "must be a host name, not an IP address (an Ingress host cannot be one)",
            ));
        }
    }
    let fallback = route.fallback.iter().flat_map(|f| f.upstreams.iter());
    for (i, upstream) in fallback.clone().enumerate() {
        if fallback.clone().take(i).any(|u| u.provider == upstream.provider) {
            problems.push(Problem::new(
                format!("data.route.fallback.upstreams[{i}].provider"),
                format!("provider {:?} is listed twice", upstream.provider),
            ));
        }
    }
    for (list, path, query) in [
        (&route.header_predicates, "data.route.headerPredicates", false),
        (&route.url_param_predicates, "data.route.urlParamPredicates", true),
    ] {
        for (i, predicate) in list.iter().enumerate() {
            let here = format!("{path}[{i}]");
            let key = predicate.key.as_str();
            // Header names are case-insensitive; query parameter names are not.
            let same = |other: &str| {
                if query {
                    other == key
                } else {
                    other.eq_ignore_ascii_case(key)
                }
            };
            if !query && [MODEL_ROUTING_HEADER, FALLBACK_FROM_HEADER].iter().any(|r| same(r)) {
                let owner = if same(MODEL_ROUTING_HEADER) {
                    "modelPredicates (the console refuses it here)"
                } else {
                    "the fallback"
                };
                problems.push(Problem::new(
                    format!("{here}.key"),
                    format!("{key:?} is reserved for {owner}"),
                ));
            }
            if list[..i].iter().any(|p| same(&p.key)) {
                problems.push(Problem::new(format!("{here}.key"), format!("{key:?} is listed twice")));
            }
            let annotation = console::KeyedRoutePredicate {
                key: Some(predicate.key.clone()),
                match_type: Some(predicate.match_type.as_str().into()),
                match_value: Some(predicate.match_value.clone()),
                case_sensitive: None,
            };
            if let Some((name, _)) = console::predicate_annotation(&annotation, query) {
                check_qualified_key(&name, &format!("{here}.key"), "the annotation name", problems);
            }
            if predicate.match_type == KeyedMatch::Regular && regex::Regex::new(&predicate.match_value).is_err() {
                problems.push(Problem::new(
                    format!("{here}.matchValue"),
                    "is not a valid regular expression (RE2 syntax)",
                ));
            }
        }
    }
    for key in route.custom_configs.keys() {
        let here = super::schema::child("data.route.customConfigs", key);
        if console::console_manages_annotation(key) {
            problems.push(Problem::new(
                &here,
                "is an annotation the Higress console manages: set it through the route's own fields",
            ));
        } else if key.starts_with(names::OUR_PREFIX) {
            problems.push(Problem::new(&here, WORKERS_OWN_KEY));
        }
        check_qualified_key(key, &here, "the key", problems);
    }
    for key in route.custom_labels.keys() {
        let here = super::schema::child("data.route.customLabels", key);
        if !console::is_custom_label(key) {
            problems.push(Problem::new(
                &here,
                "is a label the Higress console sets itself: not allowed as a custom label",
            ));
        } else if key.starts_with(names::OUR_PREFIX) {
            problems.push(Problem::new(&here, WORKERS_OWN_KEY));
        }
        check_qualified_key(key, &here, "the key", problems);
    }
}

/// The worker writes its own `higress-route-worker.io/` keys on a route's Ingresses (the revision
/// that wrote it, the route label its looks select by): an event's would be overwritten.
const WORKERS_OWN_KEY: &str = "is under higress-route-worker.io/, the worker's own keys: not allowed as a custom key";

/// A Kubernetes annotation or label key: the name part at most 63 characters, the prefix at most 253
/// (the schema checks the characters).
fn check_qualified_key(key: &str, path: &str, what: &str, problems: &mut Vec<Problem>) {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    if name.len() > 63 {
        problems.push(Problem::new(
            path,
            format!(
                "{what} would have a name part of {} characters, at most 63 allowed",
                name.len()
            ),
        ));
    }
    if prefix.len() > 253 {
        problems.push(Problem::new(
            path,
            format!(
                "{what} would have a prefix of {} characters, at most 253 allowed",
                prefix.len()
            ),
        ));
    }
}

/// `route.plugins` names plugins of the catalogue (the schema's enum says the same).
fn check_route_plugins(event: &ModelDeployed, problems: &mut Vec<Problem>) {
    for name in event.route.plugins.keys() {
        if BuiltinPlugin::route_plugin(name).is_none() {
            problems.push(Problem::new(
                super::schema::child("data.route.plugins", name),
                "is not a route plugin of the console's built-in catalogue (the schema lists them)",
            ));
        }
    }
}

/// Longest `tracestate`, in bytes: what W3C Trace Context asks every participant to propagate.
pub const MAX_TRACESTATE_BYTES: usize = 512;
/// Most list members of a `tracestate` (W3C Trace Context).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The event's distributed-tracing attributes (`traceparent`, `tracestate`), checked again after the
/// schema, with what it cannot state well (the number of `tracestate` members). Problems never quote
/// the values.
pub fn trace_context(envelope: &serde_json::Map<String, Value>) -> Result<Option<TraceContext>, Vec<Problem>> {
    let text = |key: &str| envelope.get(key).and_then(Value::as_str);
    let mut problems = Vec::new();
    let traceparent = text("traceparent");
    if let Some(parent) = traceparent {
        if !is_traceparent(parent) {
            problems.push(Problem::new(
                "traceparent",
                "must be a W3C traceparent: 2-32-16-2 lowercase hex digits joined by '-', version not ff, trace and parent ids not all zero",
            ));
        }
    }
    let tracestate = text("tracestate");
    if let Some(state) = tracestate {
        let members = state.split(',').count();
        if state.len() > MAX_TRACESTATE_BYTES || members > MAX_TRACESTATE_MEMBERS {
            problems.push(Problem::new(
                "tracestate",
                format!("must have at most {MAX_TRACESTATE_MEMBERS} list members and {MAX_TRACESTATE_BYTES} characters, has {members} and {}", state.len()),
            ));
        } else if !state.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
            problems.push(Problem::new("tracestate", "must be printable ASCII"));
        }
        if traceparent.is_none() {
            problems.push(Problem::new("traceparent", "required with tracestate"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(traceparent.map(|parent| TraceContext {
        traceparent: parent.to_string(),
        tracestate: tracestate.map(str::to_string),
    }))
}

fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let not_zero = |part: &str| part.bytes().any(|b| b != b'0');
    matches!(parts[..], [version, trace, parent, flags]
        if hex(version, 2) && version != "ff" && hex(trace, 32) && not_zero(trace)
            && hex(parent, 16) && not_zero(parent) && hex(flags, 2))
}

/// The model names objects (`ai-route-<model>`, `ai-route-<model>.internal`), for a deploy and a
/// retirement alike: valid Kubernetes names, and none that another model's own: the fallback Ingress
/// of model `m` is `ai-route-m.fallback.internal`, the main Ingress model `m.fallback` would have.
pub fn model_problems(model: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_dns_name(model, "data.model", &mut problems);
    if model.ends_with(".fallback") {
        problems.push(Problem::new(
            "data.model",
            "must not end with \".fallback\": its route's Ingress would be the fallback Ingress of the model before it",
        ));
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

    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!({"leaf": 1}), |inner, _| json!({"k": inner}))
    }

    #[test]
    fn trace_context_is_w3c_and_bounded() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = |value: Value| trace_context(value.as_object().unwrap());
        assert_eq!(context(json!({})), Ok(None));
        let found = context(json!({"traceparent": parent, "tracestate": "a=1, b=2"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.traceparent.as_str(), found.tracestate.as_deref()),
            (parent, Some("a=1, b=2"))
        );
        for bad in [
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        ] {
            let problems = context(json!({"traceparent": bad})).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}");
            assert!(!problems[0].rule.contains(bad), "values are not quoted");
        }
        let members: Vec<String> = (0..=MAX_TRACESTATE_MEMBERS).map(|i| format!("k{i}=v")).collect();
        let many = context(json!({"traceparent": parent, "tracestate": members.join(",")})).unwrap_err();
        assert!(many[0].rule.contains("has 33"), "{many:?}");
        let orphan = context(json!({"tracestate": "a=1"})).unwrap_err();
        assert_eq!(orphan, [Problem::new("traceparent", "required with tracestate")]);
    }

    #[test]
    fn depth_counts_containers_only() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}]})), 4);
        assert_eq!(depth(&nested(MAX_FREE_FORM_DEPTH)), MAX_FREE_FORM_DEPTH);
    }

    /// The schema says the same, so these limits are reached here only if the schema is loosened;
    /// they must hold on their own.
    #[test]
    fn free_form_parts_are_bounded_in_depth_and_bytes() {
        let data = json!({"provider": {"config": nested(MAX_FREE_FORM_DEPTH + 1)},
                          "route": {"upstreams": [{"modelMapping": {"*": "x".repeat(MAX_FREE_FORM_BYTES)}}]}});
        let found: Vec<String> = limit_problems(&data).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "data.provider.config: nests objects and arrays 9 levels deep, at most 8 allowed".to_string(),
                format!(
                    "data.route.upstreams[0].modelMapping: is {} bytes as JSON, at most 16384 allowed",
                    MAX_FREE_FORM_BYTES + 8
                ),
            ]
        );
        assert!(limit_problems(&json!({"provider": {"config": nested(MAX_FREE_FORM_DEPTH)}})).is_empty());
    }

    #[test]
    fn control_and_bidi_characters_are_named_by_path_not_value() {
        let data = json!({"route": {"path": "/x\n---\nkind: Secret", "modelPredicates": [{"matchValue": "gpt\u{202E}4"}]},
                          "provider": {"apiTokens": ["sk-\u{7}secret"], "config": {"vertexAuthKey": "{\n\t\"k\": 1\n}", "a\u{2066}": 1}}});
        let found: Vec<String> = limit_problems(&data).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "data.provider.apiTokens[0]: must not contain control or bidirectional-formatting characters",
                r#"data.provider.config["a\u2066"]: must not contain control or bidirectional-formatting characters in its name"#,
                "data.route.modelPredicates[0].matchValue: must not contain control or bidirectional-formatting characters",
                "data.route.path: must not contain control or bidirectional-formatting characters",
            ]
        );
        assert!(found
            .iter()
            .all(|p| !p.contains("secret") && !p.chars().any(is_forbidden_char)));
    }
}
