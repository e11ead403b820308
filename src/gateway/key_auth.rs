//! key-auth (`plugins/wasm-cpp/extensions/key_auth/`, the C++ plugin the console's image runs): the
//! `key-auth.internal` WasmPlugin. `defaultConfig.consumers[]` holds every consumer; each route's rule
//! (`matchRules[].config`) lists the consumers it `allow`s.
//!
//! Why the C++ plugin: the console writes `key-auth:2.0.0` (every console generation), the tag its C++
//! plugins keep while the Go ones moved to 2.0.1; and the console's consumers (`credentials` lists,
//! per-consumer `keys`, no global `in_query`/`in_header`) are refused by the Go `key-auth`'s
//! `parseGlobalConfig`, which needs a singular `credential` and a global `in_query` or `in_header`.
//!
//! How the gateway reads the CR (`pkg/ingress/config/ingress_config.go`, `convertIstioWasmPlugin`): the plugin
//! gets ONE JSON object, `defaultConfig`'s keys (left out when `defaultConfigDisable` is true) plus `_rules_`,
//! one entry per rule whose `configDisable` is not true (disabled rules are not sent at all): the rule's config
//! with `_match_route_` (its Ingresses), `_match_service_` and `_match_domain_` added.
//! `RouteRuleMatcher::parseAuthRuleConfig` (`plugins/wasm-cpp/common/route_rule_matcher.h`) then:
//! * refuses the whole config when `global_auth` is not a boolean;
//! * parses the global config with `PluginRootContext::parsePluginConfig` only when it has a key besides
//!   `_rules_`, and when that fails it DROPS the global config without failing: every consumer is gone, and a
//!   request on a route whose rule only `allow`s is let through unchecked (no config matches). Without any rule,
//!   the same failure fails the plugin. Either way a problem here;
//! * for each rule: `allow` must be a list of strings (else the plugin fails); a rule with keys of its own
//!   besides `allow` (and one match key) is parsed as a whole key-auth config, and refused (failing the plugin)
//!   only when it has no `allow`. Which consumers `allow` names is not checked: unknown names are accepted.
//!
//! JSON values as the plugin sees them: the controller holds configs as `google.protobuf.Struct` (every number a
//! double) and hands them over as JSON (`'f'` format below 1e21), which nlohmann parses; `JsonValueAs`
//! (`plugins/wasm-cpp/common/json_util.cc`) then reads a string from a string or a non-negative integer, a
//! boolean from a boolean or the strings `"true"`/`"false"`. Empty strings are accepted everywhere (names,
//! credentials): the C++ code has no emptiness check. See `cpp_json`.

use super::{get, Broken, Entry, Problem, Source};
use serde_json::{Map, Value};

/// Where the plugin's config is read: consumers, credentials, keys, in_query/in_header, realm.
const PARSE_PLUGIN_CONFIG: Source = Source {
    path: "plugins/wasm-cpp/extensions/key_auth/plugin.cc",
    function: "PluginRootContext::parsePluginConfig",
};

/// Where the global config and the rules are read: `global_auth`, `allow`, which configs are parsed at all.
const PARSE_AUTH_RULE_CONFIG: Source = Source {
    path: "plugins/wasm-cpp/common/route_rule_matcher.h",
    function: "RouteRuleMatcher::parseAuthRuleConfig",
};

/// nlohmann and `Wasm::Common::JsonValueAs` (`plugins/wasm-cpp/common/json_util.cc`) as the C++ plugins read
/// values: shared with the C++ route plugins' ports.
pub(super) mod cpp_json {
    use serde_json::{Number, Value};

    /// How nlohmann classifies a number the plugin receives: the controller's double printed as Go prints it
    /// (`'f'` format for magnitudes in [1e-6, 1e21), `'e'` otherwise), then parsed: an integer literal is
    /// unsigned without a sign, signed with one, and a float when out of range or not an integer.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Kind {
        Unsigned(u64),
        Integer(i64),
        Float(f64),
    }

    pub fn number(n: &Number) -> Kind {
        let x = n.as_f64().unwrap_or(0.0);
        let abs = x.abs();
        let integer_literal = x.fract() == 0.0 && abs < 1e21 && (abs >= 1e-6 || x == 0.0);
        if !integer_literal {
            Kind::Float(x)
        } else if x.is_sign_negative() {
            // "-0" too: a signed integer 0.
            if x >= -9_223_372_036_854_775_808.0 {
                Kind::Integer(x as i64)
            } else {
                Kind::Float(x)
            }
        } else if x < 18_446_744_073_709_551_616.0 {
            Kind::Unsigned(x as u64)
        } else {
            Kind::Float(x)
        }
    }

    /// `JsonValueAs<std::string>`: a string, or a non-negative integer (as its digits); else a type error.
    pub fn string(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => match number(n) {
                Kind::Unsigned(u) => Some(u.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    /// `JsonValueAs<bool>`: a boolean, or the strings `"true"` and `"false"`; else an error.
    pub fn boolean(value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// A `uint64_t` as `JsonGetField<uint64_t>(...).value_or(0)` reads it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum U64 {
        Known(u64),
        /// A float of 2^64 or more: `static_cast<uint64_t>` is undefined there, and the wasm lowering decides
        /// (0 with LLVM's trap-avoiding guard, `u64::MAX` with saturating conversions).
        Unknown,
    }

    /// `JsonValueAs<uint64_t>` with a default of 0: a number through nlohmann's `get<uint64_t>` (a static cast:
    /// a negative integer wraps around, a float is truncated and a negative float reads 0), a string through
    /// `absl::SimpleAtoi` (0 when it is not one), anything else 0.
    pub fn u64_or_zero(value: Option<&Value>) -> U64 {
        match value {
            Some(Value::Number(n)) => match number(n) {
                Kind::Unsigned(u) => U64::Known(u),
                Kind::Integer(i) => U64::Known(i as u64),
                Kind::Float(f) if f < 0.0 || f.is_nan() => U64::Known(0),
                Kind::Float(f) if f < 18_446_744_073_709_551_616.0 => U64::Known(f as u64),
                Kind::Float(_) => U64::Unknown,
            },
            Some(Value::String(s)) => U64::Known(simple_atoi_u64(s).unwrap_or(0)),
            _ => U64::Known(0),
        }
    }

    /// `absl::SimpleAtoi` into a `uint64_t`: ASCII whitespace around, an optional `+` (a `-` fails), decimal
    /// digits, no overflow.
    pub fn simple_atoi_u64(text: &str) -> Option<u64> {
        let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r');
        let text = text.trim_matches(space);
        let digits = text.strip_prefix('+').unwrap_or(text);
        if digits.is_empty() || text.starts_with('-') || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

/// What `parsePluginConfig` is reading, for the rule texts.
#[derive(Clone, Copy)]
enum Scope {
    Global,
    Rule,
}

impl Scope {
    fn name(self, field: &str) -> String {
        match self {
            Scope::Global => field.to_string(),
            Scope::Rule => format!("a rule without allow is read as a whole key-auth config: {field}"),
        }
    }
}

/// One `consumers[]` entry as the plugin reads it.
pub fn consumer_problems(consumer: &Value) -> Vec<Broken> {
    let mut problems = Vec::new();
    let broken = |problems: &mut Vec<Broken>, rule: &str| problems.push(Broken::new(rule, PARSE_PLUGIN_CONFIG));
    // nlohmann's `find` on anything but an object finds nothing: no name.
    let Some(consumer) = consumer.as_object() else {
        broken(
            &mut problems,
            "consumers[]: each consumer must be a JSON object with a name",
        );
        return problems;
    };
    match consumer.get("name") {
        None => broken(&mut problems, "consumers[]: each consumer needs a name"),
        Some(name) if cpp_json::string(name).is_none() => broken(
            &mut problems,
            "consumers[].name must be a string (or a non-negative integer)",
        ),
        Some(_) => {}
    }
    let (one, many) = (consumer.get("credential"), consumer.get("credentials"));
    match (one, many) {
        (Some(_), Some(_)) => broken(
            &mut problems,
            "consumers[]: a consumer must not have both credential and credentials",
        ),
        (None, None) => broken(&mut problems, "consumers[]: a consumer needs credential or credentials"),
        _ => {}
    }
    if one.is_some_and(|c| cpp_json::string(c).is_none()) {
        broken(
            &mut problems,
            "consumers[].credential must be a string (or a non-negative integer)",
        );
    }
    match many.map(Value::as_array) {
        Some(None) => broken(&mut problems, "consumers[].credentials must be a list"),
        Some(Some(list)) => {
            let mut seen: Vec<String> = Vec::new();
            for credential in list {
                match cpp_json::string(credential) {
                    None => broken(
                        &mut problems,
                        "consumers[].credentials: each credential must be a string (or a non-negative integer)",
                    ),
                    // `credential_to_name` already holds it: "duplicate consumer credential".
                    Some(text) if seen.contains(&text) => broken(
                        &mut problems,
                        "consumers[].credentials: a consumer must not list the same credential twice",
                    ),
                    Some(text) => seen.push(text),
                }
            }
        }
        None => {}
    }
    // A consumer's own keys, in_query and in_header are read only when it has keys.
    if let Some(keys) = consumer.get("keys") {
        if !string_list(keys) {
            broken(
                &mut problems,
                "consumers[].keys must be a list of strings (or non-negative integers)",
            );
        }
        for field in ["in_query", "in_header"] {
            if consumer.get(field).is_some_and(|v| cpp_json::boolean(v).is_none()) {
                broken(
                    &mut problems,
                    &format!("consumers[].{field} must be a boolean (or the string \"true\" or \"false\")"),
                );
            }
        }
    }
    problems
}

/// `defaultConfig` outside what [`consumer_problems`] checks for each entry (keys, in_header/in_query,
/// global_auth, and what is true of the consumers together: a credential used by two of them).
///
/// Consumers with the same name are accepted (only credentials must be unique). `{}` (or anything but an
/// object, which a CR's `google.protobuf.Struct` cannot hold) is not parsed at all (`parseAuthRuleConfig`
/// parses the global config only when it has a key): pass `{}` when `spec.defaultConfigDisable` is true, as
/// the controller then leaves `defaultConfig` out.
pub fn global_problems(default_config: &Value) -> Vec<Broken> {
    let Some(config) = default_config.as_object() else {
        return Vec::new();
    };
    if config.keys().all(|k| k == "_rules_") {
        return Vec::new();
    }
    let mut problems = Vec::new();
    if config
        .get("global_auth")
        .is_some_and(|v| cpp_json::boolean(v).is_none())
    {
        problems.push(Broken::new(
            "global_auth must be a boolean (or the string \"true\" or \"false\")",
            PARSE_AUTH_RULE_CONFIG,
        ));
    }
    problems.extend(plugin_config_problems(config, Scope::Global));
    problems
}

/// A matchRule's config (`allow`), as the plugin reads a rule.
///
/// Assumes the rule targets one kind of thing (the worker's key-auth rules target Ingresses only): the C++
/// code takes one key off the rule's size for the match list, so a rule with two target kinds would count one
/// of them as a key of its own.
pub fn rule_problems(rule_config: &Value, _default_config: &Value) -> Vec<Broken> {
    let empty = Map::new();
    let rule = rule_config.as_object().unwrap_or(&empty);
    let mut problems = Vec::new();
    let allow = rule.get("allow");
    match allow.map(Value::as_array) {
        Some(None) => problems.push(Broken::new(
            "allow must be a list of consumer names",
            PARSE_AUTH_RULE_CONFIG,
        )),
        Some(Some(names)) if names.iter().any(|n| cpp_json::string(n).is_none()) => problems.push(Broken::new(
            "allow: each entry must be a string (a consumer name)",
            PARSE_AUTH_RULE_CONFIG,
        )),
        _ => {}
    }
    // `local_config_size`: the rule's keys with `_match_route_` added, less one for the match list, less
    // `allow` and `_disable_`.
    let own_keys = rule
        .keys()
        .filter(|k| !matches!(k.as_str(), "allow" | "_disable_" | "_match_route_"))
        .count();
    if own_keys > 0 && allow.is_none() {
        problems.extend(plugin_config_problems(rule, Scope::Rule));
    }
    problems
}

/// `PluginRootContext::parsePluginConfig` outside the checks of each consumer (for a rule's own config, with
/// them: `Scope::Rule`).
fn plugin_config_problems(config: &Map<String, Value>, scope: Scope) -> Vec<Broken> {
    let mut problems = Vec::new();
    let mut broken = |rule: String| problems.push(Broken::new(rule, PARSE_PLUGIN_CONFIG));
    let (consumers, credentials) = (config.get("consumers"), config.get("credentials"));
    match (consumers, credentials) {
        (Some(_), Some(_)) => {
            broken(scope.name("consumers and credentials must not both be set"));
            return problems;
        }
        (None, None) => {
            broken(scope.name("consumers is required (or the older credentials list)"));
            return problems;
        }
        _ => {}
    }
    if let Some(credentials) = credentials {
        // The older form: one list of credentials with the global keys.
        if !string_list(credentials) {
            broken(scope.name("credentials must be a list of strings (or non-negative integers)"));
        }
        key_source_problems(config, scope, "", &mut broken);
        let keys = config.get("keys").and_then(Value::as_array).map_or(0, Vec::len);
        if keys == 0 {
            broken(scope.name("keys must name at least one key when credentials is set"));
        }
        if config.get("realm").is_some_and(|v| cpp_json::string(v).is_none()) {
            broken(scope.name("realm must be a string"));
        }
    }
    if let Some(consumers) = consumers {
        let Some(list) = consumers.as_array() else {
            broken(scope.name("consumers must be a list"));
            return problems;
        };
        if let Scope::Rule = scope {
            for consumer in list {
                for problem in consumer_problems(consumer) {
                    broken(scope.name(&problem.rule));
                }
            }
        }
        if shared_credential(list.iter()).is_some() {
            broken(scope.name(SHARED_CREDENTIAL));
        }
        // A consumer without keys of its own uses the global keys, in_query and in_header: read then.
        if list.iter().any(|c| c.is_object() && c.get("keys").is_none()) {
            key_source_problems(
                config,
                scope,
                " (read because a consumer has no keys of its own)",
                &mut broken,
            );
        }
    }
    problems
}

/// The global `keys`, `in_query` and `in_header` (defaults: no keys, both true).
fn key_source_problems(config: &Map<String, Value>, scope: Scope, why: &str, broken: &mut impl FnMut(String)) {
    if config.get("keys").is_some_and(|keys| !string_list(keys)) {
        broken(scope.name(&format!(
            "keys must be a list of strings (or non-negative integers){why}"
        )));
    }
    let mut read = |field: &str| match config.get(field) {
        None => true,
        Some(value) => cpp_json::boolean(value).unwrap_or_else(|| {
            broken(scope.name(&format!(
                "{field} must be a boolean (or the string \"true\" or \"false\"){why}"
            )));
            true
        }),
    };
    let (in_query, in_header) = (read("in_query"), read("in_header"));
    if !in_query && !in_header {
        broken(scope.name(&format!("at least one of in_query and in_header must be true{why}")));
    }
}

/// The rule "duplicate consumer credential" (`credential_to_name` in `parsePluginConfig`), as the worker
/// states it wherever it refuses a credential for it: the contract, the edits, and here.
pub const SHARED_CREDENTIAL: &str = "consumers: two consumers must not share a credential";

/// The credentials key-auth reads of a consumer, `credential` and each of `credentials`, as the C++ plugin
/// reads them (`JsonValueAs<std::string>`: strings, and non-negative integers as their digits). The one
/// definition: the worker's consumer index and edits compare credentials through it.
pub fn credentials_of(consumer: &Value) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    let many = consumer
        .get("credentials")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    many.chain(consumer.get("credential")).filter_map(credential_text)
}

fn credential_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        other => cpp_json::string(other).map(std::borrow::Cow::Owned),
    }
}

/// The first pair of consumers that share a credential (by position), in one pass over them all.
pub fn shared_credential<'a>(consumers: impl Iterator<Item = &'a Value>) -> Option<(usize, usize)> {
    let mut holder: std::collections::HashMap<std::borrow::Cow<'a, str>, usize> = std::collections::HashMap::new();
    for (at, consumer) in consumers.enumerate() {
        for credential in credentials_of(consumer) {
            match holder.get(&credential) {
                Some(&first) if first != at => return Some((first, at)),
                Some(_) => {}
                None => {
                    holder.insert(credential, at);
                }
            }
        }
    }
    None
}

/// `JsonArrayIterate` with `JsonValueAs<std::string>` on each item: a list of strings (or non-negative
/// integers).
fn string_list(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().all(|i| cpp_json::string(i).is_some()))
}

/// Every problem of the whole config: `defaultConfig` (absent: `{}`) and each rule with its entry.
pub fn check(default_config: &Value, rules: &[(Entry, &Value)]) -> Vec<Problem> {
    let mut problems = super::at(&Entry::Global, global_problems(default_config));
    for consumer in get(default_config, "consumers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = consumer.get("name").and_then(Value::as_str).unwrap_or_default();
        problems.extend(super::at(
            &Entry::Consumer(name.to_string()),
            consumer_problems(consumer),
        ));
    }
    for (entry, config) in rules {
        problems.extend(super::at(entry, rule_problems(config, default_config)));
    }
    problems
}

/// The conformance cases of `tests/fixtures/gateway/<plugin>.yaml`, for these unit tests and those of
/// [`super::route_plugins`].
#[cfg(test)]
pub(super) mod fixtures {
    use super::{Broken, Value};

    pub struct Case {
        pub name: String,
        /// `<path> <function>`, as a [`super::Source`] displays.
        pub source: String,
        /// `None`: accepted; else a distinct part of the rule text refusing it.
        pub refuse: Option<String>,
        pub consumer: Option<Value>,
        pub default_config: Option<Value>,
        pub rule: Option<Value>,
    }

    pub fn load(text: &str) -> Vec<Case> {
        let file: Value = serde_yaml_ng::from_str(text).expect("a fixture is YAML");
        let cases = file["cases"].as_array().expect("a fixture has cases");
        assert!(!cases.is_empty());
        cases
            .iter()
            .map(|case| {
                let name = case["name"].as_str().expect("a case has a name").to_string();
                let refuse = match &case["expect"] {
                    Value::String(accept) if accept == "accept" => None,
                    other => Some(
                        other["refuse"]
                            .as_str()
                            .unwrap_or_else(|| panic!("{name}: expect is accept or {{refuse: ...}}"))
                            .to_string(),
                    ),
                };
                let source = case["source"].as_str().unwrap_or_else(|| panic!("{name}: no source"));
                assert!(
                    source.starts_with("plugins/") && source.contains(' '),
                    "{name}: {source}"
                );
                let part = |key: &str| case.get(key).cloned();
                let (consumer, rule, default_config) = (part("consumer"), part("rule"), part("default_config"));
                assert!(
                    consumer.is_some() as u8
                        + rule.is_some() as u8
                        + (default_config.is_some() && rule.is_none()) as u8
                        == 1,
                    "{name}: one of consumer, rule (+ default_config) or default_config"
                );
                Case {
                    source: source.to_string(),
                    name,
                    refuse,
                    consumer,
                    default_config,
                    rule,
                }
            })
            .collect()
    }

    /// The values a rule text must never contain: every string under a credential or password key.
    pub fn secrets(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if ["credential", "credentials", "password"].contains(&key.as_str()) {
                        strings(value, out);
                    }
                    secrets(value, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| secrets(i, out)),
            _ => {}
        }
    }

    fn strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) if !s.is_empty() => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            _ => {}
        }
    }

    /// What is wrong with the case's outcome, if anything.
    pub fn verify(case: &Case, problems: &[Broken]) -> Option<String> {
        let mut secret_values = Vec::new();
        for part in [&case.consumer, &case.rule, &case.default_config].into_iter().flatten() {
            secrets(part, &mut secret_values);
        }
        if let Some(leak) = problems
            .iter()
            .find(|b| secret_values.iter().any(|s| b.rule.contains(s.as_str())))
        {
            return Some(format!(
                "{}: a rule text holds a credential: {:?}",
                case.name, leak.source
            ));
        }
        match &case.refuse {
            None if problems.is_empty() => None,
            None => Some(format!("{}: expected accept, got {problems:?}", case.name)),
            Some(part)
                if problems
                    .iter()
                    .any(|b| b.rule.contains(part.as_str()) && b.source.to_string() == case.source) =>
            {
                None
            }
            Some(part) => Some(format!(
                "{}: expected a refusal containing {part:?} from {}, got {problems:?}",
                case.name, case.source
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::KeySource;
    use crate::higress::ops::Op;
    use crate::higress::plugins::{consumer_entry, BuiltinPlugin, ConsoleVersion, Targets};
    use crate::secret::SecretString;
    use serde_json::json;

    #[test]
    fn the_conformance_cases_hold() {
        let cases = fixtures::load(include_str!("../../tests/fixtures/gateway/key-auth.yaml"));
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|case| {
                let empty = json!({});
                let default_config = case.default_config.as_ref().unwrap_or(&empty);
                let problems = match (&case.consumer, &case.rule) {
                    (Some(consumer), _) => consumer_problems(consumer),
                    (None, Some(rule)) => rule_problems(rule, default_config),
                    (None, None) => global_problems(default_config),
                };
                fixtures::verify(case, &problems)
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// key-auth.internal as the worker writes it (the console's defaults, a consumer of each key source, route
    /// rules with and without auth): nothing for the plugin to refuse.
    #[test]
    fn the_workers_own_key_auth_object_passes() {
        let mut object = BuiltinPlugin::KeyAuth.new_cr(ConsoleVersion::default(), "higress-system");
        Op::EnsureKeyAuthGlobal.apply(&mut object).unwrap();
        let key = |v: &str| vec![SecretString::new(v)];
        for consumer in [
            consumer_entry("alice", KeySource::Bearer, None, &key("sk-test-worker-1")),
            consumer_entry("bob", KeySource::Header, Some("x-api-key"), &key("sk-test-worker-2")),
            consumer_entry("carol", KeySource::Query, Some("apikey"), &key("sk-test-worker-3")),
        ] {
            Op::UpsertConsumer(consumer).apply(&mut object).unwrap();
        }
        for (ingress, allow, enabled) in [
            ("ai-route-a.internal", json!(["alice", "bob"]), true),
            ("ai-route-b.internal", json!([]), false),
        ] {
            let rule = Targets::ingress(ingress).rule(json!({"allow": allow}), enabled);
            Op::UpsertRule(rule).apply(&mut object).unwrap();
        }
        let spec = &object["spec"];
        let rules: Vec<(Entry, &Value)> = spec["matchRules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (Entry::Rule(r["ingress"].to_string()), &r["config"]))
            .collect();
        assert_eq!(rules.len(), 2);
        assert_eq!(check(&spec["defaultConfig"], &rules), vec![]);
    }

    #[test]
    fn check_names_the_entry_of_each_problem() {
        let default_config = json!({"global_auth": false, "consumers": [
            {"name": "alice", "keys": ["Authorization"], "credentials": ["Bearer sk-test-a"]},
            {"name": "bob", "keys": ["Authorization"], "credentials": ["Bearer sk-test-b", "Bearer sk-test-b"]},
            {"name": "carol", "keys": ["Authorization"], "credential": "Bearer sk-test-a"}
        ]});
        let rule = json!({"allow": "alice"});
        let problems = check(&default_config, &[(Entry::Rule("ingress r".into()), &rule)]);
        let entries: Vec<String> = problems.iter().map(|p| p.entry.to_string()).collect();
        assert_eq!(
            entries,
            ["defaultConfig", "consumer \"bob\"", "matchRule ingress r"],
            "{problems:?}"
        );
        for problem in &problems {
            assert!(!problem.to_string().contains("sk-test"), "{problem}");
        }
    }

    #[test]
    fn numbers_read_as_nlohmann_reads_the_controllers_json() {
        use cpp_json::{number, Kind};
        let n = |v: Value| match v {
            Value::Number(n) => number(&n),
            _ => unreachable!(),
        };
        assert_eq!(n(json!(7)), Kind::Unsigned(7));
        assert_eq!(n(json!(7.0)), Kind::Unsigned(7), "a whole double prints as an integer");
        assert_eq!(n(json!(-3)), Kind::Integer(-3));
        assert_eq!(n(json!(-0.0)), Kind::Integer(0));
        assert_eq!(n(json!(1.5)), Kind::Float(1.5));
        assert_eq!(n(json!(1e21)), Kind::Float(1e21), "printed with an exponent");
        assert_eq!(n(json!(2e19)), Kind::Float(2e19), "past u64");
        assert_eq!(cpp_json::string(&json!(12)), Some("12".into()));
        assert_eq!(cpp_json::string(&json!(-12)), None);
        assert_eq!(cpp_json::boolean(&json!("true")), Some(true));
        assert_eq!(cpp_json::boolean(&json!("True")), None);
        assert_eq!(cpp_json::simple_atoi_u64(" +12\t"), Some(12));
        assert_eq!(cpp_json::simple_atoi_u64("-0"), None);
        assert_eq!(cpp_json::simple_atoi_u64("18446744073709551616"), None);
        use cpp_json::U64;
        assert_eq!(cpp_json::u64_or_zero(Some(&json!(-1))), U64::Known(u64::MAX));
        assert_eq!(cpp_json::u64_or_zero(Some(&json!(-1.5))), U64::Known(0));
        assert_eq!(cpp_json::u64_or_zero(Some(&json!(2.9))), U64::Known(2));
        assert_eq!(cpp_json::u64_or_zero(Some(&json!(1e20))), U64::Unknown);
        assert_eq!(cpp_json::u64_or_zero(Some(&json!(true))), U64::Known(0));
    }
}
