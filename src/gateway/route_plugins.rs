//! The plugins whose CRs hold one rule per route: model-router and model-mapper (`<name>.internal`),
//! ai-statistics (`ai-statistics-<version>`), and the route plugins an event may bind (`route.plugins`).
//! A plugin is validated only when its parser is ported here ([`is_ported`]).
//!
//! Ported: model-router and model-mapper (both implementations, see below), ai-statistics, ai-token-ratelimit,
//! ai-quota (Go, `plugins/wasm-go/extensions/<name>/`) and key-rate-limit (C++,
//! `plugins/wasm-cpp/extensions/key_rate_limit/`; the console's `key-rate-limit:2.0.0`, the tag its C++
//! plugins keep).
//!
//! model-router and model-mapper: the C++ plugins (`plugins/wasm-cpp/extensions/model_{router,mapper}/`) were
//! replaced by Go ones (`plugins/wasm-go/extensions/model-{router,mapper}/`, alibaba/higress#3317, in Higress
//! v2.2.0). The console writes `:2.0.1` images from v2.2.4 on, the tag of its Go plugins (its C++ ones, such as
//! key-auth and key-rate-limit, stay `:2.0.0`), and `:2.0.0` before, built when only the C++ plugins existed.
//! The worker writes for either, so a config must pass both: each problem names the implementation refusing it.
//!
//! How the gateway reads a CR (`pkg/ingress/config/ingress_config.go`, `convertIstioWasmPlugin`): ONE JSON
//! object, `defaultConfig`'s keys (none when `defaultConfigDisable` is true) plus `_rules_`, one entry per rule
//! whose `configDisable` is not true (disabled rules are not sent), the rule's config with `_match_route_`,
//! `_match_service_` and `_match_domain_` added. Both frameworks (C++ `RouteRuleMatcher::parseRuleConfig`,
//! `plugins/wasm-cpp/common/route_rule_matcher.h`; Go `RuleMatcher.ParseRuleConfig`,
//! `wasm-go@<version>/pkg/matcher/rule_matcher.go`, the same in every version these plugins pin) then:
//! * parse the global config only when it has a key besides `_rules_`; a global config their parser refuses is
//!   dropped when there are rules (the plugin runs without it) and fails the plugin when there are none: either
//!   way a problem of [`global_problems`]. An empty `defaultConfig` is not parsed: no problem (a CR with neither
//!   a `defaultConfig` nor an enabled rule is not sent to the gateway at all when `defaultConfigDisable` is
//!   true);
//! * parse every rule with the plugin's parser, and fail the whole plugin on the first rule it refuses (Go's
//!   rule-level isolation, which would skip it instead, is enabled by none of these plugins).
//!
//! JSON values: the controller holds configs as `google.protobuf.Struct` (every number a double) and hands them
//! over as JSON. Go plugins read them with gjson (`gjson` here: `String()` coerces, `Int()` parses strings, a
//! missing value is the zero value, an explicit `null` exists); C++ ones with nlohmann and `JsonValueAs`
//! (`key_auth::cpp_json`).

use super::key_auth::cpp_json;
use super::{Broken, Entry, Problem, Source};
use serde_json::Value;

/// A plugin's config parser: the problems of one config (global or a rule's).
type Parser = fn(&Value) -> Vec<Broken>;

fn parser(plugin: &str) -> Option<Parser> {
    Some(match plugin {
        "model-router" => model_router,
        "model-mapper" => model_mapper,
        "ai-statistics" => ai_statistics,
        "ai-token-ratelimit" => ai_token_ratelimit,
        "ai-quota" => ai_quota,
        "key-rate-limit" => key_rate_limit,
        _ => return None,
    })
}

/// Whether the plugin's config parser is ported here (with conformance cases in
/// `tests/fixtures/gateway/<plugin>.yaml`).
pub fn is_ported(plugin: &str) -> bool {
    parser(plugin).is_some()
}

/// The plugin's `defaultConfig` as its parser reads the global config; `None` when not ported.
///
/// `{}` (or anything but a non-empty object) is not parsed: pass `{}` when `spec.defaultConfigDisable` is true,
/// as the controller then leaves `defaultConfig` out.
pub fn global_problems(plugin: &str, default_config: &Value) -> Option<Vec<Broken>> {
    let parse = parser(plugin)?;
    let parsed = default_config
        .as_object()
        .is_some_and(|config| config.keys().any(|k| k != "_rules_"));
    Some(if parsed { parse(default_config) } else { Vec::new() })
}

/// A matchRule's config, combined with `defaultConfig` as the plugin combines them; `None` when not ported.
/// None of the ported plugins reads a rule with the global config (all use `ParseConfig` or the C++
/// `parseRuleConfig`), so `default_config` plays no part.
pub fn rule_problems(plugin: &str, rule_config: &Value, _default_config: &Value) -> Option<Vec<Broken>> {
    Some(parser(plugin)?(rule_config))
}

/// Every problem of the whole config; `None` when not ported.
pub fn check(plugin: &str, default_config: &Value, rules: &[(Entry, &Value)]) -> Option<Vec<Problem>> {
    let mut problems = super::at(&Entry::Global, global_problems(plugin, default_config)?);
    for (entry, config) in rules {
        problems.extend(super::at(entry, rule_problems(plugin, config, default_config)?));
    }
    Some(problems)
}

/// A field of a JSON object as nlohmann's `find` sees it: nothing in anything but an object.
fn field<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    config.as_object().and_then(|map| map.get(key))
}

const MODEL_ROUTER_CPP: Source = Source {
    path: "plugins/wasm-cpp/extensions/model_router/plugin.cc",
    function: "PluginRootContext::parsePluginConfig",
};

/// model-router. C++: `modelKey`, `addProviderHeader` and `modelToHeader` must be strings and
/// `enableOnPathSuffix` a list of strings. Go (`plugins/wasm-go/extensions/model-router/main.go`,
/// `parseConfig`): refuses nothing (it skips auto-routing rules whose pattern does not compile).
fn model_router(config: &Value) -> Vec<Broken> {
    let mut problems = Vec::new();
    for key in ["modelKey", "addProviderHeader", "modelToHeader"] {
        if field(config, key).is_some_and(|v| !v.is_string()) {
            problems.push(Broken::new(format!("{key} must be a string"), MODEL_ROUTER_CPP));
        }
    }
    if !cpp_string_list(field(config, "enableOnPathSuffix")) {
        problems.push(Broken::new(
            "enableOnPathSuffix must be a list of strings",
            MODEL_ROUTER_CPP,
        ));
    }
    problems
}

/// `JsonArrayIterate` with `is_string()` on each item: absent, or a list of strings.
fn cpp_string_list(value: Option<&Value>) -> bool {
    value.is_none_or(|v| v.as_array().is_some_and(|items| items.iter().all(Value::is_string)))
}

const MODEL_MAPPER_CPP: Source = Source {
    path: "plugins/wasm-cpp/extensions/model_mapper/plugin.cc",
    function: "PluginRootContext::parsePluginConfig",
};
const MODEL_MAPPER_GO: Source = Source {
    path: "plugins/wasm-go/extensions/model-mapper/main.go",
    function: "parseConfig",
};

/// model-mapper, both implementations (the C++ one refuses everything the Go one does, and more).
fn model_mapper(config: &Value) -> Vec<Broken> {
    let mut problems = Vec::new();
    // C++. (Its "Duplicate key in modelMapping" cannot happen: a JSON object's keys are unique.)
    if field(config, "modelKey").is_some_and(|v| !v.is_string()) {
        problems.push(Broken::new("modelKey must be a string", MODEL_MAPPER_CPP));
    }
    match field(config, "modelMapping").map(Value::as_object) {
        Some(None) => problems.push(Broken::new(
            "modelMapping must be a JSON object (C++ plugin)",
            MODEL_MAPPER_CPP,
        )),
        Some(Some(mapping)) if !mapping.values().all(Value::is_string) => problems.push(Broken::new(
            "modelMapping: each target model must be a string",
            MODEL_MAPPER_CPP,
        )),
        _ => {}
    }
    if !cpp_string_list(field(config, "enableOnPathSuffix")) {
        problems.push(Broken::new(
            "enableOnPathSuffix must be a list of strings (C++ plugin)",
            MODEL_MAPPER_CPP,
        ));
    }
    // Go.
    if gjson::get(Some(config), "modelMapping").is_some_and(|v| !v.is_object()) {
        problems.push(Broken::new(
            "modelMapping must be a JSON object (Go plugin)",
            MODEL_MAPPER_GO,
        ));
    }
    if gjson::get(Some(config), "enableOnPathSuffix").is_some_and(|v| !v.is_array()) {
        problems.push(Broken::new(
            "enableOnPathSuffix must be a list (Go plugin)",
            MODEL_MAPPER_GO,
        ));
    }
    problems
}

const AI_STATISTICS: Source = Source {
    path: "plugins/wasm-go/extensions/ai-statistics/main.go",
    function: "parseConfig",
};

/// ai-statistics: only `attributes` can be refused, and only when neither `use_default_attributes` nor
/// `use_default_response_attributes` is true (then it is not read): each entry goes through Go's
/// `json.Unmarshal` into `Attribute`, and its `rule` must be empty, `first`, `replace` or `append`.
fn ai_statistics(config: &Value) -> Vec<Broken> {
    let c = Some(config);
    if gjson::boolean(gjson::get(c, "use_default_attributes"))
        || gjson::boolean(gjson::get(c, "use_default_response_attributes"))
    {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for attribute in gjson::array(gjson::get(c, "attributes")) {
        for rule in attribute_problems(attribute) {
            if !problems.iter().any(|b: &Broken| b.rule == rule) {
                problems.push(Broken::new(rule, AI_STATISTICS));
            }
        }
    }
    problems
}

/// `Attribute` fields (`json` tags) by Go type.
const ATTRIBUTE_STRINGS: [&str; 6] = [
    "key",
    "value_source",
    "value",
    "trace_span_key",
    "default_value",
    "rule",
];
const ATTRIBUTE_BOOLS: [&str; 3] = ["apply_to_log", "apply_to_span", "as_separate_log_field"];

/// `json.Unmarshal(raw, &Attribute{})` (Go's encoding/json: a key names a field by exact or case-insensitive
/// match, `null` leaves a field as it is, any other value of the wrong type is an error; unknown keys are
/// ignored), then the `rule` check.
fn attribute_problems(attribute: &Value) -> Vec<String> {
    let fields = match attribute {
        Value::Null => return Vec::new(),
        Value::Object(fields) => fields,
        _ => return vec!["attributes: each attribute must be a JSON object".to_string()],
    };
    let mut problems = Vec::new();
    let mut rule = String::new();
    for (key, value) in fields {
        if let Some(name) = ATTRIBUTE_STRINGS.iter().find(|name| go_fold_equal(key, name)) {
            match value {
                Value::String(text) if *name == "rule" => rule.clone_from(text),
                Value::String(_) | Value::Null => {}
                _ => problems.push(format!("attributes[].{name} must be a string")),
            }
        } else if let Some(name) = ATTRIBUTE_BOOLS.iter().find(|name| go_fold_equal(key, name)) {
            if !matches!(value, Value::Bool(_) | Value::Null) {
                problems.push(format!("attributes[].{name} must be a boolean"));
            }
        }
    }
    if !["", "first", "replace", "append"].contains(&rule.as_str()) {
        problems.push("attributes[].rule must be one of first, replace or append (or empty)".to_string());
    }
    problems
}

/// Whether a JSON key names a field of lowercase ASCII letters and `_` in Go's encoding/json: equal under
/// `bytes.EqualFold`, whose simple case folding also maps U+212A KELVIN SIGN to `k` and U+017F LONG S to `s`.
fn go_fold_equal(key: &str, name: &str) -> bool {
    let mut key = key.chars();
    name.chars().all(|n| {
        key.next().is_some_and(|k| {
            k.to_ascii_lowercase() == n || (n == 'k' && k == '\u{212A}') || (n == 's' && k == '\u{17F}')
        })
    }) && key.next().is_none()
}

const AI_QUOTA: Source = Source {
    path: "plugins/wasm-go/extensions/ai-quota/main.go",
    function: "parseConfig",
};

/// ai-quota: `admin_consumer` must not be empty, `redis` must be there with a `service_name` (the Redis client's
/// `Init` never fails at parse time: it retries later).
fn ai_quota(config: &Value) -> Vec<Broken> {
    let c = Some(config);
    let mut problems = Vec::new();
    if gjson::string(gjson::get(c, "admin_consumer")).is_empty() {
        problems.push(Broken::new("admin_consumer is required (not empty)", AI_QUOTA));
    }
    problems.extend(redis_problems(config, AI_QUOTA));
    problems
}

/// `redis` must exist (an explicit `null` does) and `redis.service_name` read as a string must not be empty.
fn redis_problems(config: &Value, source: Source) -> Vec<Broken> {
    let redis = gjson::get(Some(config), "redis");
    if redis.is_none() {
        vec![Broken::new("redis is required", source)]
    } else if gjson::string(gjson::get(redis, "service_name")).is_empty() {
        vec![Broken::new("redis.service_name is required (not empty)", source)]
    } else {
        Vec::new()
    }
}

const TOKEN_CONFIG: &str = "plugins/wasm-go/extensions/ai-token-ratelimit/config/config.go";
const TOKEN_REDIS: Source = Source {
    path: TOKEN_CONFIG,
    function: "InitRedisClusterClient",
};
const TOKEN_PARSE: Source = Source {
    path: TOKEN_CONFIG,
    function: "ParseAiTokenRateLimitConfig",
};
const TOKEN_LIMIT_RULE: Source = Source {
    path: TOKEN_CONFIG,
    function: "initLimitRule",
};
const TOKEN_GLOBAL_THRESHOLD: Source = Source {
    path: TOKEN_CONFIG,
    function: "parseGlobalThreshold",
};
const TOKEN_RULE_ITEM: Source = Source {
    path: TOKEN_CONFIG,
    function: "parseLimitRuleItem",
};
const TOKEN_CONFIG_ITEMS: Source = Source {
    path: TOKEN_CONFIG,
    function: "initConfigItems",
};
const TOKEN_RATE: Source = Source {
    path: TOKEN_CONFIG,
    function: "createConfigItemFromRate",
};
/// `util.ParseIPNet`: `iptree.AddByString`, which is `nradix.Tree.AddCIDR` (github.com/zmap/go-iptree
/// d4e632617837, github.com/asergeyev/nradix 3872ab85bb56).
const TOKEN_IP_NET: Source = Source {
    path: "plugins/wasm-go/extensions/ai-token-ratelimit/util/utils.go",
    function: "ParseIPNet",
};

const TOKEN_WINDOWS: [&str; 4] = [
    "token_per_second",
    "token_per_minute",
    "token_per_hour",
    "token_per_day",
];

/// ai-token-ratelimit: `parseConfig` = `InitRedisClusterClient` then `ParseAiTokenRateLimitConfig`.
fn ai_token_ratelimit(config: &Value) -> Vec<Broken> {
    let c = Some(config);
    let mut problems = redis_problems(config, TOKEN_REDIS);
    if gjson::get(c, "rule_name").is_none() {
        problems.push(Broken::new("rule_name is required", TOKEN_PARSE));
    }
    let global = gjson::get(c, "global_threshold");
    let items = gjson::get(c, "rule_items");
    match (global, items) {
        (None, None) => problems.push(Broken::new(
            "one of global_threshold and rule_items is required",
            TOKEN_LIMIT_RULE,
        )),
        (Some(_), Some(_)) => problems.push(Broken::new(
            "global_threshold and rule_items must not both be set",
            TOKEN_LIMIT_RULE,
        )),
        (Some(_), None) => window_problems(global, "global_threshold", TOKEN_GLOBAL_THRESHOLD, &mut problems),
        (None, Some(_)) => {
            let items = gjson::array(items);
            if items.is_empty() {
                problems.push(Broken::new("rule_items must not be empty", TOKEN_LIMIT_RULE));
            }
            for item in items {
                rule_item_problems(item, &mut problems);
            }
        }
    }
    dedup(problems)
}

/// Problems once each, in their first order (the same rule broken by several list entries).
fn dedup(problems: Vec<Broken>) -> Vec<Broken> {
    let mut once: Vec<Broken> = Vec::new();
    for problem in problems {
        if !once.contains(&problem) {
            once.push(problem);
        }
    }
    once
}

/// `parseGlobalThreshold` and `createConfigItemFromRate`: one of the `token_per_*` keys must be set, and the one
/// read must be a positive integer (gjson `Int()`). With several set, which one is read depends on Go's random
/// map order, so every one set must be positive.
fn window_problems(item: Option<&Value>, what: &str, source: Source, problems: &mut Vec<Broken>) {
    let set: Vec<(&str, gjson::Int)> = TOKEN_WINDOWS
        .iter()
        .filter_map(|window| gjson::get(item, window).map(|v| (*window, gjson::int(Some(v)))))
        .collect();
    if set.is_empty() {
        problems.push(Broken::new(
            format!("{what}: one of token_per_second, token_per_minute, token_per_hour or token_per_day is required"),
            source,
        ));
    }
    for (window, count) in set {
        match count {
            gjson::Int::Known(n) if n > 0 => {}
            gjson::Int::Known(_) => problems.push(Broken::new(
                format!(
                    "{what}.{window} must be a positive integer (each one set: Go's map order picks which is read)"
                ),
                source,
            )),
            gjson::Int::Unknown => problems.push(Broken::new(
                format!(
                    "{what}.{window} must be below 1e21: beyond, Go's float-to-integer conversion is \
                     implementation-defined"
                ),
                source,
            )),
        }
    }
}

/// `parseLimitRuleItem` and `initConfigItems` for one `rule_items[]` entry.
fn rule_item_problems(item: &Value, problems: &mut Vec<Broken>) {
    let item = Some(item);
    let mut limit_type = None;
    for kind in [
        "limit_by_header",
        "limit_by_param",
        "limit_by_cookie",
        "limit_by_per_header",
        "limit_by_per_param",
        "limit_by_per_cookie",
    ] {
        if !gjson::string(gjson::get(item, kind)).is_empty() {
            limit_type = Some(kind);
        }
    }
    // Set (even empty or null): the key is the consumer header.
    for kind in ["limit_by_consumer", "limit_by_per_consumer"] {
        if gjson::get(item, kind).is_some() {
            limit_type = Some(kind);
        }
    }
    let per_ip = gjson::string(gjson::get(item, "limit_by_per_ip"));
    if !per_ip.is_empty() {
        match per_ip.strip_prefix("from-header-") {
            Some("") => {
                problems.push(Broken::new(
                    "rule_items[].limit_by_per_ip: a header name must follow from-header-",
                    TOKEN_RULE_ITEM,
                ));
                return;
            }
            Some(_) => {}
            None if per_ip == "from-remote-addr" => {}
            None => {
                problems.push(Broken::new(
                    "rule_items[].limit_by_per_ip must start with from-header- or be from-remote-addr",
                    TOKEN_RULE_ITEM,
                ));
                return;
            }
        }
        limit_type = Some("limit_by_per_ip");
    }
    let Some(limit_type) = limit_type else {
        problems.push(Broken::new(
            "rule_items[]: one of limit_by_header, limit_by_param, limit_by_consumer, limit_by_cookie, \
             limit_by_per_header, limit_by_per_param, limit_by_per_consumer, limit_by_per_cookie and \
             limit_by_per_ip must be set (the string ones not empty)",
            TOKEN_RULE_ITEM,
        ));
        return;
    };
    let keys = gjson::get(item, "limit_keys");
    if keys.is_none() {
        problems.push(Broken::new("rule_items[].limit_keys is required", TOKEN_CONFIG_ITEMS));
        return;
    }
    let keys = gjson::array(keys);
    if keys.is_empty() {
        problems.push(Broken::new(
            "rule_items[].limit_keys must not be empty",
            TOKEN_CONFIG_ITEMS,
        ));
    }
    for limit_key in keys {
        let key = gjson::get(Some(limit_key), "key");
        let text = gjson::string(key);
        if text.is_empty() {
            problems.push(Broken::new(
                "rule_items[].limit_keys[].key is required (not empty)",
                TOKEN_CONFIG_ITEMS,
            ));
        } else if limit_type == "limit_by_per_ip" {
            if !nradix::accepts(&text) {
                problems.push(Broken::new(
                    "rule_items[].limit_keys[].key must be an IP address or CIDR block with limit_by_per_ip",
                    TOKEN_IP_NET,
                ));
            }
        } else if limit_type.starts_with("limit_by_per_") && text != "*" {
            match text.strip_prefix("regexp:") {
                Some(pattern) if !go_regexp::compiles(pattern) => problems.push(Broken::new(
                    "rule_items[].limit_keys[].key: the regular expression after regexp: must compile \
                     (Go regexp syntax)",
                    TOKEN_CONFIG_ITEMS,
                )),
                Some(_) => {}
                None => problems.push(Broken::new(
                    "rule_items[].limit_keys[].key must be * or start with regexp: with limit_by_per_header, \
                     limit_by_per_param, limit_by_per_consumer or limit_by_per_cookie",
                    TOKEN_CONFIG_ITEMS,
                )),
            }
        }
        window_problems(Some(limit_key), "rule_items[].limit_keys[]", TOKEN_RATE, problems);
    }
}

const KEY_RATE_LIMIT: Source = Source {
    path: "plugins/wasm-cpp/extensions/key_rate_limit/plugin.cc",
    function: "PluginRootContext::parsePluginConfig",
};

/// key-rate-limit (C++): `limit_keys` a non-empty list whose every entry sets one of `query_per_second`,
/// `query_per_minute`, `query_per_hour` and `query_per_day` (read in that order) to a non-zero `uint64_t`, and
/// exactly one of `limit_by_header` and `limit_by_param` a non-empty string.
fn key_rate_limit(config: &Value) -> Vec<Broken> {
    let mut problems = Vec::new();
    let keys = field(config, "limit_keys");
    if keys.is_some_and(|v| !v.is_array()) {
        problems.push(Broken::new("limit_keys must be a list", KEY_RATE_LIMIT));
    } else if keys.and_then(Value::as_array).is_none_or(Vec::is_empty) {
        problems.push(Broken::new("limit_keys must list at least one key", KEY_RATE_LIMIT));
    }
    for item in keys.and_then(Value::as_array).into_iter().flatten() {
        let mut unknown = false;
        let mut set = false;
        for rate in [
            "query_per_second",
            "query_per_minute",
            "query_per_hour",
            "query_per_day",
        ] {
            match cpp_json::u64_or_zero(field(item, rate)) {
                cpp_json::U64::Known(0) => {}
                cpp_json::U64::Known(_) => {
                    set = true;
                    break;
                }
                cpp_json::U64::Unknown => unknown = true,
            }
        }
        if !set {
            let rule = if unknown {
                "limit_keys[]: a query_per_* rate of 2^64 or more is read in a compiler-defined way \
                 (undefined in C++): set a smaller rate"
            } else {
                "limit_keys[]: one of query_per_second, query_per_minute, query_per_hour or query_per_day \
                 must be a positive integer"
            };
            let broken = Broken::new(rule, KEY_RATE_LIMIT);
            if !problems.contains(&broken) {
                problems.push(broken);
            }
        }
    }
    let mut by = |key: &str| -> String {
        match field(config, key) {
            None => String::new(),
            Some(value) => cpp_json::string(value).unwrap_or_else(|| {
                problems.push(Broken::new(format!("{key} must be a string"), KEY_RATE_LIMIT));
                String::new()
            }),
        }
    };
    let (header, param) = (by("limit_by_header"), by("limit_by_param"));
    if header.is_empty() == param.is_empty() {
        problems.push(Broken::new(
            "exactly one of limit_by_header and limit_by_param must be set (not empty)",
            KEY_RATE_LIMIT,
        ));
    }
    problems
}

/// gjson v1.18.0 (`github.com/tidwall/gjson`) as the Go plugins read their config.
mod gjson {
    use serde_json::Value;

    /// `Result.Get(key)`: a field of an object; nothing in anything else. An explicit `null` is there
    /// (`Exists()` is true for it).
    pub fn get<'a>(value: Option<&'a Value>, key: &str) -> Option<&'a Value> {
        value?.as_object()?.get(key)
    }

    /// `Result.String()`: `""` for nothing and `null`, the text of a string, `true`/`false`, a number's text,
    /// an object's or array's raw JSON. (A number's text here may differ in form from Go's, never in being
    /// empty or in starting with a letter, which is all the ported checks look at.)
    pub fn string(value: Option<&Value>) -> String {
        match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        }
    }

    /// `Result.Bool()`: true for `true`, a non-zero number, and a string `strconv.ParseBool` reads as true once
    /// lowercased (`1`, `t`, `true`).
    pub fn boolean(value: Option<&Value>) -> bool {
        match value {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
            Some(Value::String(text)) => matches!(text.to_lowercase().as_str(), "1" | "t" | "true"),
            _ => false,
        }
    }

    /// `Result.Array()`: nothing for nothing and `null`, the items of an array, any other value alone.
    pub fn array(value: Option<&Value>) -> Vec<&Value> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(other) => vec![other],
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Int {
        Known(i64),
        /// A number of 1e21 or more in magnitude: its JSON text is in exponent form, so gjson falls back on
        /// Go's `int64(float64)`, whose result out of range is implementation-defined.
        Unknown,
    }

    /// `Result.Int()`: 1 for `true`; a string through gjson's `parseInt` (0 when it is not an optionally
    /// negative run of digits; wraps around on overflow); a number within ±(2^53-1) truncated, beyond that its
    /// JSON text (Go's shortest `'f'` form of the controller's double, which Rust's `Display` prints alike)
    /// through `parseInt`; anything else 0.
    pub fn int(value: Option<&Value>) -> Int {
        match value {
            Some(Value::Bool(true)) => Int::Known(1),
            Some(Value::String(text)) => Int::Known(parse_int(text).unwrap_or(0)),
            Some(Value::Number(n)) => {
                let x = n.as_f64().unwrap_or(0.0);
                if x.abs() <= 9_007_199_254_740_991.0 {
                    Int::Known(x as i64)
                } else if x.abs() < 1e21 {
                    Int::Known(parse_int(&format!("{x}")).unwrap_or(x as i64))
                } else {
                    Int::Unknown
                }
            }
            _ => Int::Known(0),
        }
    }

    /// gjson's `parseInt`: an optional `-`, then only digits; wraps around on overflow.
    fn parse_int(text: &str) -> Option<i64> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = digits
            .bytes()
            .fold(0i64, |n, b| n.wrapping_mul(10).wrapping_add(i64::from(b - b'0')));
        Some(if negative { n.wrapping_neg() } else { n })
    }
}

/// `nradix.Tree.AddCIDR` on a new tree, as `util.ParseIPNet` uses it: whether it takes the text.
mod nradix {
    use std::net::Ipv6Addr;

    pub fn accepts(cidr: &str) -> bool {
        let bytes = cidr.as_bytes();
        let slash = bytes.iter().position(|&b| b == b'/').filter(|&p| p > 0);
        if bytes.iter().position(|&b| b == b'.').is_some_and(|p| p > 0) {
            // parsecidr4: a mask of digits only (any value: no error), then loadip4.
            match slash {
                Some(p) => bytes[p + 1..].iter().all(u8::is_ascii_digit) && load_ip4(&bytes[..p]),
                None => load_ip4(bytes),
            }
        } else {
            // parsecidr6: net.ParseCIDR with a mask, net.ParseIP without. There is no '.' here (but maybe
            // first), so only IPv6 without an embedded IPv4 can pass: Go's netip and Rust agree on those, and
            // both refuse zones (`%eth0`), which net.ParseIP and net.ParseCIDR refuse.
            match slash {
                Some(p) => {
                    let (address, mask) = (&cidr[..p], &cidr[p + 1..]);
                    // dtoi: digits only, at least one, at most 128 for IPv6.
                    address.parse::<Ipv6Addr>().is_ok()
                        && !mask.is_empty()
                        && mask.len() <= 8
                        && mask.bytes().all(|b| b.is_ascii_digit())
                        && mask.parse::<u32>().is_ok_and(|bits| bits <= 128)
                }
                None => cidr.parse::<Ipv6Addr>().is_ok(),
            }
        }
    }

    /// `loadip4`: digits and dots only, exactly three dots (counted in a byte), each octet at most 255 (an
    /// empty one is 0).
    fn load_ip4(text: &[u8]) -> bool {
        let (mut ip, mut octet, mut dots) = (0u32, 0u32, 0u8);
        for &b in text {
            match b {
                b'.' => {
                    dots = dots.wrapping_add(1);
                    if u32::MAX - ip < octet {
                        return false;
                    }
                    ip = (ip << 8).wrapping_add(octet);
                    octet = 0;
                }
                b'0'..=b'9' => {
                    octet = octet * 10 + u32::from(b - b'0');
                    if octet > 255 {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        dots == 3 && u32::MAX - ip >= octet
    }
}

/// Go's `regexp.Compile` (RE2 syntax, `regexp/syntax` with `Perl` flags, Go 1.24) approximated with Rust's
/// `regex` crate, which parses nearly the same syntax, plus the refusals of Go's parser that Rust lacks:
/// stacked repetition operators (`a**`, `a{2}*`), counts over 1000 (`a{1001}`) and nested counts whose product
/// passes 1000 (`repeatIsValid`: `(a{100}){100}`), flags other than `i`, `m`, `s`, `U` (`(?x)`), and group names
/// of anything but ASCII letters, digits and `_`.
///
/// Known differences left: Rust refuses octal escapes (`\012`), `\Q...\E`, `a{,3}` (a literal in Go), group
/// names starting with a digit, nesting deeper than 250 and compiled programs over 10 MB, all of which Go
/// accepts (the port refuses a config the plugin would take); Rust accepts Unicode class names Go does not know
/// (`\p{Letter}`, `\p{sc=Greek}`) and programs past Go's size limits (the port accepts a config the plugin
/// refuses).
mod go_regexp {
    pub fn compiles(pattern: &str) -> bool {
        !refused_by_go_only(pattern) && regex::Regex::new(pattern).is_ok()
    }

    /// A counted repetition (`OpRepeat`) and the counted repetitions inside it.
    struct Repeat {
        min: i64,
        max: i64,
        inner: Vec<Repeat>,
    }

    /// `repeatIsValid`.
    fn repeat_is_valid(repeat: &Repeat, mut n: i64) -> bool {
        let mut m = repeat.max;
        if m == 0 {
            return true;
        }
        if m < 0 {
            m = repeat.min;
        }
        if m > n {
            return false;
        }
        if m > 0 {
            n /= m;
        }
        repeat.inner.iter().all(|r| repeat_is_valid(r, n))
    }

    /// Whether Go's parser refuses the pattern for a reason Rust's does not have. Stops (false) where Rust
    /// refuses anyway: unbalanced groups, a trailing `\`, octal escapes, `\Q`.
    fn refused_by_go_only(pattern: &str) -> bool {
        let cs: Vec<char> = pattern.chars().collect();
        // The counted repetitions of each open group; `last`: where those of the last atom start (none: there
        // is nothing to repeat).
        let mut groups: Vec<Vec<Repeat>> = vec![Vec::new()];
        let mut last: Option<usize> = None;
        let mut last_repeat = false;
        let mut i = 0;
        while i < cs.len() {
            let mut repeat = false;
            let depth = groups.len() - 1;
            match cs[i] {
                '(' if cs.get(i + 1) == Some(&'?') => {
                    let named = match (cs.get(i + 2), cs.get(i + 3)) {
                        (Some('P'), Some('<')) => Some(i + 4),
                        (Some('<'), _) => Some(i + 3),
                        _ => None,
                    };
                    if let Some(start) = named {
                        let Some(end) = cs[start..].iter().position(|&c| c == '>').map(|p| start + p) else {
                            return true;
                        };
                        let name = &cs[start..end];
                        if name.is_empty() || !name.iter().all(|c| c.is_ascii_alphanumeric() || *c == '_') {
                            return true;
                        }
                        groups.push(Vec::new());
                        last = None;
                        i = end;
                    } else {
                        // parsePerlFlags.
                        let (mut j, mut negated, mut saw_flag) = (i + 2, false, false);
                        loop {
                            let Some(&c) = cs.get(j) else {
                                return true;
                            };
                            match c {
                                'i' | 'm' | 's' | 'U' => saw_flag = true,
                                '-' if !negated => {
                                    negated = true;
                                    saw_flag = false;
                                }
                                ':' | ')' if !negated || saw_flag => break,
                                _ => return true,
                            }
                            j += 1;
                        }
                        if cs[j] == ':' {
                            groups.push(Vec::new());
                        }
                        last = None;
                        i = j;
                    }
                }
                '(' => {
                    groups.push(Vec::new());
                    last = None;
                }
                ')' => {
                    if depth == 0 {
                        return false;
                    }
                    let inner = groups.pop().unwrap_or_default();
                    let current = groups.last_mut().expect("the outermost group stays");
                    last = Some(current.len());
                    current.extend(inner);
                }
                '|' => last = None,
                '*' | '+' | '?' => {
                    if last_repeat || last.is_none() {
                        return true;
                    }
                    if cs.get(i + 1) == Some(&'?') {
                        i += 1;
                    }
                    repeat = true;
                }
                '{' => match parse_repeat(&cs[i..]) {
                    Some((min, max, len)) => {
                        if !(0..=1000).contains(&min) || max > 1000 || (max >= 0 && min > max) || last_repeat {
                            return true;
                        }
                        let Some(start) = last else {
                            return true;
                        };
                        let current = groups.last_mut().expect("the outermost group stays");
                        let inner = current.split_off(start);
                        let counted = Repeat { min, max, inner };
                        if (min >= 2 || max >= 2) && !repeat_is_valid(&counted, 1000) {
                            return true;
                        }
                        current.push(counted);
                        last = Some(current.len() - 1);
                        i += len - 1;
                        if cs.get(i + 1) == Some(&'?') {
                            i += 1;
                        }
                        repeat = true;
                    }
                    // Not a repetition: a literal `{`.
                    None => last = Some(groups[depth].len()),
                },
                '\\' => {
                    let Some(end) = escape_end(&cs, i) else {
                        return false;
                    };
                    last = Some(groups[depth].len());
                    i = end;
                }
                '[' => {
                    let Some(end) = class_end(&cs, i) else {
                        return false;
                    };
                    last = Some(groups[depth].len());
                    i = end;
                }
                _ => last = Some(groups[depth].len()),
            }
            last_repeat = repeat;
            i += 1;
        }
        false
    }

    /// `parseRepeat` at a `{`: `{n}`, `{n,}` or `{n,m}` with `parseInt` numbers; `(min, max, length)`, max -1
    /// for none, min -1 for a number past 1e8. Not a repetition (none): the `{` is a literal.
    fn parse_repeat(cs: &[char]) -> Option<(i64, i64, usize)> {
        let mut i = 1;
        let mut min = parse_int(cs, &mut i)?;
        let mut max = min;
        if *cs.get(i)? == ',' {
            i += 1;
            if *cs.get(i)? == '}' {
                max = -1;
            } else {
                max = parse_int(cs, &mut i)?;
                if max < 0 {
                    min = -1;
                }
            }
        }
        (*cs.get(i)? == '}').then_some((min, max, i + 1))
    }

    /// `parseInt`: digits without a leading zero (a lone `0` is fine); -1 once the value reaches 1e8.
    fn parse_int(cs: &[char], i: &mut usize) -> Option<i64> {
        let start = *i;
        while cs.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        let digits = &cs[start..*i];
        if digits.is_empty() || (digits.len() >= 2 && digits[0] == '0') {
            return None;
        }
        let mut n: i64 = 0;
        for d in digits {
            if n >= 100_000_000 {
                return Some(-1);
            }
            n = n * 10 + i64::from(d.to_digit(10).unwrap_or(0));
        }
        Some(n)
    }

    /// The index of the last character of the escape at `i` (`\x{...}`, `\p{...}`, `\xHH`, `\pN`, `\c`); none
    /// for what Rust refuses anyway (a trailing `\`, octal escapes, `\Q`).
    fn escape_end(cs: &[char], i: usize) -> Option<usize> {
        match cs.get(i + 1)? {
            '0'..='9' | 'Q' => None,
            'x' | 'p' | 'P' if cs.get(i + 2) == Some(&'{') => {
                cs[i + 2..].iter().position(|&c| c == '}').map(|p| i + 2 + p)
            }
            'x' => Some(i + 3),
            'p' | 'P' => Some(i + 2),
            _ => Some(i + 1),
        }
    }

    /// The index of the `]` closing the class at `i` (`parseClass`: a `]` first is a literal, `[:name:]` is a
    /// POSIX class, escapes as outside).
    fn class_end(cs: &[char], i: usize) -> Option<usize> {
        let mut j = i + 1;
        if cs.get(j) == Some(&'^') {
            j += 1;
        }
        let mut first = true;
        loop {
            let c = *cs.get(j)?;
            if c == ']' && !first {
                return Some(j);
            }
            first = false;
            if c == '[' && cs.get(j + 1) == Some(&':') {
                if let Some(p) = cs[j + 2..].windows(2).position(|w| w == [':', ']']) {
                    j += 2 + p + 2;
                    continue;
                }
            }
            j = if c == '\\' { escape_end(cs, j)? + 1 } else { j + 1 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::key_auth::fixtures;
    use super::*;
    use crate::higress::ops::Op;
    use crate::higress::plugins::{BuiltinPlugin, ConsoleVersion, Targets};
    use serde_json::json;

    const FIXTURES: [(&str, &str); 6] = [
        (
            "model-router",
            include_str!("../../tests/fixtures/gateway/model-router.yaml"),
        ),
        (
            "model-mapper",
            include_str!("../../tests/fixtures/gateway/model-mapper.yaml"),
        ),
        (
            "ai-statistics",
            include_str!("../../tests/fixtures/gateway/ai-statistics.yaml"),
        ),
        (
            "ai-token-ratelimit",
            include_str!("../../tests/fixtures/gateway/ai-token-ratelimit.yaml"),
        ),
        ("ai-quota", include_str!("../../tests/fixtures/gateway/ai-quota.yaml")),
        (
            "key-rate-limit",
            include_str!("../../tests/fixtures/gateway/key-rate-limit.yaml"),
        ),
    ];

    #[test]
    fn the_conformance_cases_hold() {
        let mut failures = Vec::new();
        for (plugin, text) in FIXTURES {
            assert!(is_ported(plugin), "{plugin}");
            for case in fixtures::load(text) {
                let empty = json!({});
                let default_config = case.default_config.as_ref().unwrap_or(&empty);
                assert!(
                    case.consumer.is_none(),
                    "{plugin}: {}: consumers are key-auth's",
                    case.name
                );
                let problems = match &case.rule {
                    Some(rule) => rule_problems(plugin, rule, default_config),
                    None => global_problems(plugin, default_config),
                }
                .expect("ported");
                if let Some(failure) = fixtures::verify(&case, &problems) {
                    failures.push(format!("{plugin}: {failure}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn plugins_not_ported_are_not_judged() {
        for plugin in ["request-block", "ai-proxy", "key-auth", "ai-cache"] {
            assert!(!is_ported(plugin));
            assert_eq!(global_problems(plugin, &json!({})), None);
            assert_eq!(rule_problems(plugin, &json!({}), &json!({})), None);
            assert_eq!(check(plugin, &json!({}), &[]), None);
        }
    }

    /// The worker's own model-router, model-mapper and ai-statistics objects (new CRs edited by its ops): nothing
    /// for the plugins to refuse.
    #[test]
    fn the_workers_own_objects_pass() {
        let console = ConsoleVersion::default();
        let mut router = BuiltinPlugin::ModelRouter.new_cr(console, "higress-system");
        Op::SetDefaultConfigKey("modelToHeader".into(), json!("x-higress-llm-model"))
            .apply(&mut router)
            .unwrap();
        let mut mapper = BuiltinPlugin::ModelMapper.new_cr(console, "higress-system");
        let targets = Targets {
            ingress: vec!["ai-route-a.internal".into()],
            service: vec!["llm-p.internal.dns".into()],
            domain: Vec::new(),
        };
        let mapping = json!({"modelMapping": {"gpt-4o": "qwen-max", "gpt-3-*": "qwen-turbo", "*": ""}});
        Op::UpsertRule(targets.rule(mapping, true)).apply(&mut mapper).unwrap();
        let mut statistics = BuiltinPlugin::AiStatistics.new_cr(console, "higress-system");
        let rule = Targets::ingress("ai-route-a.internal").rule(json!({"use_default_response_attributes": true}), true);
        Op::InsertRuleIfAbsent(rule).apply(&mut statistics).unwrap();
        for (plugin, object) in [
            ("model-router", &router),
            ("model-mapper", &mapper),
            ("ai-statistics", &statistics),
        ] {
            let spec = &object["spec"];
            let empty = json!({});
            let disabled = spec["defaultConfigDisable"] == json!(true);
            let default_config = if disabled { &empty } else { &spec["defaultConfig"] };
            let rules: Vec<(Entry, &Value)> = spec["matchRules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (Entry::Rule(r["ingress"].to_string()), &r["config"]))
                .collect();
            assert_eq!(check(plugin, default_config, &rules), Some(vec![]), "{plugin}");
        }
        assert_eq!(router["spec"]["defaultConfigDisable"], false);
    }

    #[test]
    fn gjson_reads_numbers_as_go_does() {
        use gjson::{int, Int};
        assert_eq!(int(Some(&json!("123"))), Int::Known(123));
        assert_eq!(int(Some(&json!("-7"))), Int::Known(-7));
        assert_eq!(int(Some(&json!("1e3"))), Int::Known(0));
        assert_eq!(int(Some(&json!(" 5"))), Int::Known(0));
        assert_eq!(int(Some(&json!(true))), Int::Known(1));
        assert_eq!(int(Some(&json!(2.9))), Int::Known(2));
        assert_eq!(int(Some(&json!(-2.9))), Int::Known(-2));
        assert_eq!(int(Some(&json!(null))), Int::Known(0));
        // Past 2^53 the JSON text is parsed, wrapping around: 1e19 is past i64.
        assert_eq!(
            int(Some(&json!(1e19))),
            Int::Known(10_000_000_000_000_000_000u64 as i64)
        );
        assert_eq!(int(Some(&json!(1e21))), Int::Unknown);
        assert_eq!(
            int(Some(&json!("99999999999999999999"))),
            Int::Known(7_766_279_631_452_241_919)
        );
        assert!(gjson::boolean(Some(&json!("T"))));
        assert!(gjson::boolean(Some(&json!(0.5))));
        assert!(!gjson::boolean(Some(&json!("yes"))));
        assert_eq!(gjson::array(Some(&json!("x"))).len(), 1);
        assert!(gjson::array(Some(&json!(null))).is_empty());
    }

    #[test]
    fn ip_keys_as_nradix_reads_them() {
        let ok = "1.2.3.4 1.2.3.4/24 1.2.3.4/99 1.2.3. 0.0.0.0/ ::1 2001:db8::/32 ::/0 ::/00128";
        for key in ok.split_whitespace() {
            assert!(nradix::accepts(key), "{key}");
        }
        let bad = "1.2.3 1.2.3.4.5 1.2.3.256 1.2.3.4/x .1.2.3 /1.2.3.4 ::ffff:1.2.3.4 fe80::1%eth0 2001:db8::/129 \
                   2001:db8::/ 12345:: localhost";
        for key in bad.split_whitespace().chain([""]) {
            assert!(!nradix::accepts(key), "{key}");
        }
    }

    /// Patterns without spaces, one list per outcome.
    #[test]
    fn regexps_as_go_compiles_them() {
        let ok = r"^a+$ a*? a{2}? (a)* a{1000} (a{10}){100} (?i)x (?i-s:x) (?P<n1>x) (?<n>x) []a] [^]a]* [[:digit:]]+
                   a{01} \{2} [{]2} a|b* ^* \pL \p{Greek}";
        for pattern in ok.split_whitespace() {
            assert!(go_regexp::compiles(pattern), "{pattern}");
        }
        let bad = r"a** a+* a{2}* a{2}{3} a*?? a{1001} a{0,1001} a{100000000} (a{10}){101} ((a{2}){2}){251} (?x)a
                    (?u)a (?-)a (?i-)a (?--i)a (?<a.b>x) (?P=n) (?=a) *a ( a) [a \ x{2,1} (?i)*";
        for pattern in bad.split_whitespace() {
            assert!(!go_regexp::compiles(pattern), "{pattern}");
        }
        // The differences named in `go_regexp`'s doc: Go takes these, the port refuses them ...
        for pattern in r"\012 \Qa.b\E x{,3}b (?P<1a>x)".split_whitespace() {
            assert!(!go_regexp::compiles(pattern), "{pattern}");
        }
        // ... and refuses these, which the port takes.
        for pattern in r"\p{Letter} \p{sc=Greek}".split_whitespace() {
            assert!(go_regexp::compiles(pattern), "{pattern}");
        }
    }
}
