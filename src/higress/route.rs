//! AI routes (spec section 4): the console's `AiRoute` model, its ConfigMap JSON (Gson-exact) and
//! its Ingress.

use super::names::{self, ANNOTATION_COMMENT, COMMENT, LABEL_CONFIG_MAP_TYPE, LABEL_DEFINER, LABEL_INTERNAL};
use super::plugins::ConsoleVersion;
use super::state::{Kind, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// `model/ai/AiRoute.java`, fields in declaration order (Gson writes them in this order, nulls omitted).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AiRoute {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_predicate: Option<PathPredicate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_predicates: Option<Vec<KeyedRoutePredicate>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_param_predicates: Option<Vec<KeyedRoutePredicate>>,
    #[serde(default)]
    pub upstreams: Vec<AiUpstream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_predicates: Option<Vec<ModelPredicate>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_config: Option<AuthConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_config: Option<FallbackConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_control: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_next_upstream: Option<ProxyNextUpstream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_configs: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_labels: Option<Map<String, Value>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PathPredicate {
    pub match_type: String,
    pub match_value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
}

/// `model/route/KeyedRoutePredicate.java` (a header or URL-parameter match): Gson writes the
/// subclass's `key` before the fields of `RoutePredicate`. Every field may be missing in a ConfigMap
/// the console wrote; the console then skips the predicate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyedRoutePredicate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AiUpstream {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_mapping: Option<Map<String, Value>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelPredicate {
    pub match_type: String,
    pub match_value: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthConfig {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_credential_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_consumers: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FallbackConfig {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<AiUpstream>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_codes: Option<Vec<String>>,
}

impl FallbackConfig {
    /// `AiRouteFallbackConfig.validate`, for an enabled fallback.
    fn validate(&self) -> Result<(), String> {
        if let Some(strategy) = self.fallback_strategy.as_deref().filter(|s| !s.is_empty()) {
            if strategy != "RAND" && strategy != "SEQ" {
                return Err(format!("unknown fallback strategy: {strategy}"));
            }
        }
        if self.upstreams.as_ref().is_none_or(Vec::is_empty) {
            return Err("upstreams cannot be empty when fallback is enabled".into());
        }
        let codes = self.response_codes.as_deref().unwrap_or_default();
        if codes.is_empty() {
            return Err("response codes cannot be empty when fallback is enabled".into());
        }
        if let Some(code) = codes.iter().find(|c| c.as_str() != "4xx" && c.as_str() != "5xx") {
            return Err(format!("invalid response code: {code}"));
        }
        Ok(())
    }
}

impl KeyedRoutePredicate {
    /// `KeyedRoutePredicate.validate`: a known match type, a value, and ASCII-printable key and value.
    fn validate(&self) -> Result<(), String> {
        let Some(match_type) = &self.match_type else {
            return Err("matchType is required".into());
        };
        if annotation_match_kind(match_type).is_none() {
            return Err(format!("Unknown matchType: {match_type}"));
        }
        let Some(value) = &self.match_value else {
            return Err("matchValue is required".into());
        };
        let printable = |text: &str| text.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !self.key.as_deref().is_none_or(printable) || !printable(value) {
            return Err("Route predicate contains non-ASCII characters".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyNextUpstream {
    pub enabled: bool,
    pub attempts: u32,
    pub timeout: u64,
    pub conditions: Vec<String>,
}

impl AiRoute {
    /// `AiRouteServiceImpl.fillDefaultValues`.
    pub fn fill_defaults(&mut self, console: ConsoleVersion) {
        self.path_predicate.get_or_insert_with(|| PathPredicate {
            match_type: "PRE".into(),
            match_value: "/".into(),
            case_sensitive: Some(true),
        });
        if let [only] = self.upstreams.as_mut_slice() {
            only.weight = Some(100);
        }
        if let Some(fallback) = self.fallback_config.as_mut().filter(|f| f.enabled) {
            let strategy = fallback.fallback_strategy.get_or_insert_with(|| "RAND".into()).clone();
            if let Some(upstreams) = fallback.upstreams.as_mut() {
                if let [only] = upstreams.as_mut_slice() {
                    only.weight = Some(100);
                }
                if strategy == "RAND" {
                    upstreams.iter_mut().for_each(|u| u.weight = Some(1));
                }
            }
        }
        self.proxy_next_upstream.get_or_insert_with(|| ProxyNextUpstream {
            enabled: true,
            attempts: 3,
            timeout: console.proxy_next_upstream_timeout(),
            conditions: vec!["error".into(), "timeout".into(), "non_idempotent".into()],
        });
    }

    /// `AiRoute.validate`: the rules the console enforces on save.
    pub fn validate(&self) -> Result<(), String> {
        if self.upstreams.is_empty() {
            return Err("a route needs at least one upstream".into());
        }
        let total: u32 = self.upstreams.iter().map(|u| u.weight.unwrap_or(0)).sum();
        if self.upstreams.len() > 1 && (total != 100 || self.upstreams.iter().any(|u| u.weight.is_none())) {
            return Err(format!("upstream weights sum to {total}, must be 100"));
        }
        if self.path_predicate.as_ref().is_some_and(|p| p.match_type != "PRE") {
            return Err("the path predicate of an AI route must be PRE".into());
        }
        if self
            .model_predicates
            .iter()
            .flatten()
            .any(|p| p.match_type == "REGULAR")
        {
            return Err("model predicates cannot be REGULAR".into());
        }
        for predicate in self
            .header_predicates
            .iter()
            .chain(&self.url_param_predicates)
            .flatten()
        {
            predicate.validate()?;
        }
        if self.header_predicates.iter().flatten().any(|p| {
            p.key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(MODEL_ROUTING_HEADER))
        }) {
            return Err("headerPredicates cannot contain the model routing header".into());
        }
        if let Some(fallback) = self.fallback_config.as_ref().filter(|f| f.enabled) {
            fallback.validate()?;
        }
        if let Some(key) = self
            .custom_configs
            .iter()
            .flatten()
            .map(|(key, _)| key)
            .find(|key| console_manages_annotation(key))
        {
            return Err(format!(
                "Annotation [{key}] is already supported by Console. Please configure it in the corresponding section instead of using custom annotations."
            ));
        }
        Ok(())
    }

    /// The fallback upstreams the fallback Ingress routes to (`writeAiRouteFallbackResources`): none
    /// without an enabled fallback; RAND (or no strategy) all of them, SEQ the first.
    pub fn fallback_upstreams(&self) -> &[AiUpstream] {
        let Some(fallback) = self.fallback_config.as_ref().filter(|f| f.enabled) else {
            return &[];
        };
        let upstreams = fallback.upstreams.as_deref().unwrap_or_default();
        match fallback.fallback_strategy.as_deref() {
            Some("SEQ") => &upstreams[..upstreams.len().min(1)],
            _ => upstreams,
        }
    }

    /// The response codes the fallback EnvoyFilter redirects on, when the route has a fallback.
    pub fn fallback_response_codes(&self) -> Option<&[String]> {
        self.fallback_config
            .as_ref()
            .filter(|f| f.enabled && f.upstreams.as_ref().is_some_and(|u| !u.is_empty()))
            .map(|f| f.response_codes.as_deref().unwrap_or_default())
    }

    /// Every provider the route uses, fallback included.
    pub fn providers(&self) -> Vec<String> {
        let fallback = self
            .fallback_config
            .iter()
            .filter(|f| f.enabled)
            .flat_map(|f| f.upstreams.iter().flatten());
        let mut providers: Vec<String> = self
            .upstreams
            .iter()
            .chain(fallback)
            .map(|u| u.provider.clone())
            .collect();
        providers.dedup();
        providers
    }

    pub fn allowed_consumers(&self) -> Vec<String> {
        self.auth_config
            .as_ref()
            .and_then(|a| a.allowed_consumers.clone())
            .unwrap_or_default()
    }

    /// Parses the JSON the console keeps in an `ai-route-<name>` ConfigMap.
    pub fn from_config_map(config_map: &Value) -> Option<AiRoute> {
        serde_json::from_str(config_map.pointer("/data/data")?.as_str()?).ok()
    }
}

/// Gson with HTML escaping, the console's serialiser: like `serde_json`, plus `< > & = '` as `\uXXXX`.
/// These characters can only occur inside JSON strings, so escaping them in the text is exact.
pub fn gson(value: &impl Serialize) -> String {
    let compact = serde_json::to_string(value).expect("serialisable");
    let mut out = String::with_capacity(compact.len());
    for c in compact.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003d"),
            '\'' => out.push_str("\\u0027"),
            // Gson escapes the JavaScript line terminators too (they can come in with customConfigs).
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// `aiRoute2ConfigMap` + default metadata.
pub fn config_map(route: &AiRoute, namespace: &str) -> Value {
    let metadata = config_map_metadata(names::route_config_map(&route.name), namespace, "ai-route");
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"data": gson(route)}})
}

/// A console ConfigMap's metadata (`renderDefaultMetadata`): a name ending in `.internal` (a model or
/// domain may end so) also gets the internal label and the do-not-edit comment.
fn config_map_metadata(name: String, namespace: &str, config_map_type: &str) -> Value {
    let internal = names::is_internal(&name);
    let mut metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": {LABEL_CONFIG_MAP_TYPE: config_map_type, LABEL_DEFINER: "higress"},
    });
    if internal {
        metadata["labels"][LABEL_INTERNAL] = json!("true");
        metadata["annotations"] = json!({ANNOTATION_COMMENT: COMMENT});
    }
    metadata
}

/// HTTPS of the route's domains, derived from their domain ConfigMaps (`fillIngressTls`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tls {
    pub entries: Vec<Value>,
    pub force_redirect: bool,
}

/// A domain's HTTPS as its ConfigMap in `state` gives it to routes: `Some((enableHttps, cert))` when
/// the mode is not `off` and a certificate is named (the route's Ingress then has a TLS entry for the
/// domain, see [`tls`]), `None` when the domain serves plain HTTP (also when it has no ConfigMap). As
/// the console: a ConfigMap without `enableHttps` (the console leaves out a null) is not `off`; its
/// mode is then `""`, which is not `force`.
pub fn domain_https<'a>(state: &'a State, domain: &str) -> Option<(&'a str, &'a str)> {
    let config_map = state.get_named(Kind::ConfigMap, &names::domain_config_map(domain))?;
    let field = |key: &str| config_map.pointer(&format!("/data/{key}")).and_then(Value::as_str);
    let mode = field("enableHttps").unwrap_or("");
    let cert = field("cert").unwrap_or("");
    (mode != "off" && !cert.is_empty()).then_some((mode, cert))
}

pub fn tls(domains: &[String], state: &State) -> Result<Tls, String> {
    let default = [names::DEFAULT_DOMAIN.to_string()];
    let domains = if domains.is_empty() { &default[..] } else { domains };
    let mut https_modes = Vec::new();
    let mut entries = Vec::new();
    for domain in domains {
        let Some((mode, cert)) = domain_https(state, domain) else {
            https_modes.push(None);
            continue;
        };
        https_modes.push(Some(mode.to_string()));
        entries.push(if domain == names::DEFAULT_DOMAIN {
            json!({"secretName": cert})
        } else {
            json!({"hosts": [domain], "secretName": cert})
        });
    }
    if https_modes.iter().any(Option::is_some) && https_modes.iter().any(Option::is_none) {
        return Err("Currently only supports domains with the same protocol".into());
    }
    let modes: Vec<&String> = https_modes.iter().flatten().collect();
    if modes.windows(2).any(|w| w[0] != w[1]) {
        return Err("All domains must use consistent HTTPS configuration".into());
    }
    Ok(Tls {
        entries,
        force_redirect: modes.first().is_some_and(|m| m.as_str() == "force"),
    })
}

/// Regex special characters escaped by `AiRouteServiceImpl.escapeForRegexMatch`.
fn escape_regex(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "[]{}()^$|*+?.\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn model_predicate_annotation(predicates: &[ModelPredicate]) -> Option<(String, String)> {
    const HEADER: &str = MODEL_ROUTING_HEADER;
    match predicates {
        [] => None,
        [one] => {
            let kind = if one.match_type == "PRE" { "prefix" } else { "exact" };
            Some((
                format!("higress.io/{kind}-match-header-{HEADER}"),
                one.match_value.clone(),
            ))
        }
        many => {
            let alternatives: Vec<String> = many
                .iter()
                .map(|p| {
                    let escaped = escape_regex(&p.match_value);
                    if p.match_type == "PRE" {
                        format!("{escaped}.*")
                    } else {
                        escaped
                    }
                })
                .collect();
            Some((
                format!("higress.io/regex-match-header-{HEADER}"),
                format!("^({})", alternatives.join("|")),
            ))
        }
    }
}

/// The header model-router copies the request's model into (`HigressConstants.MODEL_ROUTING_HEADER`).
pub const MODEL_ROUTING_HEADER: &str = "x-higress-llm-model";
/// The header the fallback EnvoyFilter adds on its redirect (`HigressConstants.FALLBACK_FROM_HEADER`).
pub const FALLBACK_FROM_HEADER: &str = "x-higress-fallback-from";

/// `RoutePredicateTypeEnum`: the annotation word of a match type.
fn annotation_match_kind(match_type: &str) -> Option<&'static str> {
    match match_type {
        "EQUAL" => Some("exact"),
        "PRE" => Some("prefix"),
        "REGULAR" => Some("regex"),
        _ => None,
    }
}

/// `setHeaderAnnotation` (`query` false) and `setQueryAnnotation`: `higress.io/<kind>-match-header-<key>`,
/// a `:`-key as `-match-pseudo-header-`; a predicate with a blank part is skipped, as the console skips it.
pub fn predicate_annotation(predicate: &KeyedRoutePredicate, query: bool) -> Option<(String, String)> {
    let present = |part: &Option<String>| part.clone().filter(|p| !p.trim().is_empty());
    let (key, match_type, value) = (
        present(&predicate.key)?,
        present(&predicate.match_type)?,
        present(&predicate.match_value)?,
    );
    let kind = annotation_match_kind(&match_type)?;
    let name = match (query, key.strip_prefix(':')) {
        (true, _) => format!("higress.io/{kind}-match-query-{key}"),
        (false, Some(pseudo)) => format!("higress.io/{kind}-match-pseudo-header-{pseudo}"),
        (false, None) => format!("higress.io/{kind}-match-header-{key}"),
    };
    Some((name, value))
}

/// The annotations the console sets from a route's own fields (`KubernetesConstants.Annotation.*_KEY`).
const CONSOLE_ANNOTATIONS: [&str; 31] = [
    "higress.io/use-regex",
    "higress.io/destination",
    "higress.io/ssl-redirect",
    "higress.io/enable-rewrite",
    "higress.io/rewrite-path",
    "higress.io/rewrite-target",
    "higress.io/upstream-vhost",
    "higress.io/enable-proxy-next-upstream",
    "higress.io/proxy-next-upstream-tries",
    "higress.io/proxy-next-upstream-timeout",
    "higress.io/proxy-next-upstream",
    "higress.io/enable-header-control",
    "higress.io/request-header-control-add",
    "higress.io/request-header-control-update",
    "higress.io/request-header-control-remove",
    "higress.io/response-header-control-add",
    "higress.io/response-header-control-update",
    "higress.io/response-header-control-remove",
    "higress.io/enable-cors",
    "higress.io/cors-allow-origin",
    "higress.io/cors-allow-methods",
    "higress.io/cors-allow-headers",
    "higress.io/cors-expose-headers",
    "higress.io/cors-allow-credentials",
    "higress.io/cors-max-age",
    "higress.io/match-method",
    "higress.io/ignore-path-case",
    "higress.io/wasm-plugin-title",
    "higress.io/wasm-plugin-description",
    "higress.io/wasm-plugin-icon",
    ANNOTATION_COMMENT,
];

/// `KubernetesModelConverter.isCustomAnnotation`.
fn is_custom_annotation(key: &str) -> bool {
    let key = key.strip_prefix("disabled.").unwrap_or(key);
    if CONSOLE_ANNOTATIONS.contains(&key) {
        return false;
    }
    if !key.starts_with("higress.io/") {
        return true;
    }
    !["-match-header-", "-match-pseudo-header-", "-match-query-"]
        .iter()
        .any(|keyword| key.contains(keyword))
}

/// Whether the console refuses `key` in `customConfigs` (`fillIngressAnnotations`): an annotation it
/// manages, also when spelled with the nginx-ingress prefix the gateway reads the same way.
pub fn console_manages_annotation(key: &str) -> bool {
    if !is_custom_annotation(key) {
        return true;
    }
    key.strip_prefix("nginx.ingress.kubernetes.io/")
        .is_some_and(|rest| !is_custom_annotation(&format!("higress.io/{rest}")))
}

/// Whether the console reads `key` back as one of a route's `customLabels` (`isCustomLabel`): not a
/// domain label nor one of its built-in labels, which it sets itself.
pub fn is_custom_label(key: &str) -> bool {
    const BUILT_IN: [&str; 7] = [
        LABEL_CONFIG_MAP_TYPE,
        LABEL_DEFINER,
        LABEL_INTERNAL,
        "higress.io/wasm-plugin-name",
        "higress.io/wasm-plugin-version",
        "higress.io/wasm-plugin-built-in",
        "higress.io/wasm-plugin-category",
    ];
    !key.starts_with("higress.io/domain_") && !BUILT_IN.contains(&key)
}

/// `higress.io/destination`: one upstream `service:port`, several `"<weight>% service:port"` lines.
pub fn destination(upstreams: &[(String, Option<u32>)]) -> String {
    match upstreams {
        [(one, _)] => one.clone(),
        many => many
            .iter()
            .map(|(d, w)| format!("{}% {d}", w.unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Inputs of an Ingress beyond the route itself.
pub struct IngressContext<'a> {
    pub namespace: &'a str,
    pub ingress_class: &'a str,
    pub tls: &'a Tls,
    /// `service:port` per upstream provider, in upstream order, with weights.
    pub destinations: Vec<(String, Option<u32>)>,
    /// For the fallback Ingress: the main Ingress's name.
    pub fallback_from: Option<String>,
}

/// `route2Ingress` for an AI route (main or fallback) plus the console's default metadata.
pub fn ingress(route: &AiRoute, ctx: &IngressContext<'_>) -> Value {
    let name = match &ctx.fallback_from {
        Some(_) => names::fallback_ingress(&route.name),
        None => names::route_ingress(&route.name),
    };
    let domains = route.domains.clone().unwrap_or_default();
    let mut labels = Map::new();
    if domains.is_empty() {
        labels.insert(names::domain_label_key(names::DEFAULT_DOMAIN), json!("true"));
    }
    for domain in &domains {
        labels.insert(names::domain_label_key(domain), json!("true"));
    }
    labels.insert(LABEL_DEFINER.into(), json!("higress"));
    labels.insert(LABEL_INTERNAL.into(), json!("true"));
    for (key, value) in route.custom_labels.iter().flatten() {
        labels.insert(key.clone(), value.clone());
    }

    let mut annotations = Map::new();
    annotations.insert(ANNOTATION_COMMENT.into(), json!(COMMENT));
    annotations.insert("higress.io/destination".into(), json!(destination(&ctx.destinations)));
    if let Some(case_sensitive) = route.path_predicate.as_ref().and_then(|p| p.case_sensitive) {
        annotations.insert(
            "higress.io/ignore-path-case".into(),
            json!((!case_sensitive).to_string()),
        );
    }
    let url_params = route.url_param_predicates.iter().flatten().map(|p| (p, true));
    let headers = route.header_predicates.iter().flatten().map(|p| (p, false));
    for (key, value) in url_params
        .chain(headers)
        .filter_map(|(p, query)| predicate_annotation(p, query))
    {
        annotations.insert(key, json!(value));
    }
    if let Some((key, value)) = model_predicate_annotation(route.model_predicates.as_deref().unwrap_or(&[])) {
        annotations.insert(key, json!(value));
    }
    if let Some(from) = &ctx.fallback_from {
        annotations.insert(
            format!("higress.io/exact-match-header-{FALLBACK_FROM_HEADER}"),
            json!(from),
        );
    }
    if let Some(next) = &route.proxy_next_upstream {
        let prefix = if next.enabled { "" } else { "disabled." };
        annotations.insert(
            "higress.io/enable-proxy-next-upstream".into(),
            json!(next.enabled.to_string()),
        );
        annotations.insert(
            format!("{prefix}higress.io/proxy-next-upstream-tries"),
            json!(next.attempts.to_string()),
        );
        annotations.insert(
            format!("{prefix}higress.io/proxy-next-upstream-timeout"),
            json!(next.timeout.to_string()),
        );
        annotations.insert(
            format!("{prefix}higress.io/proxy-next-upstream"),
            json!(next.conditions.join(",")),
        );
    }
    if ctx.tls.force_redirect {
        annotations.insert("higress.io/ssl-redirect".into(), json!("true"));
    }
    for (key, value) in route.custom_configs.iter().flatten() {
        annotations.insert(key.clone(), value.clone());
    }

    let path = route
        .path_predicate
        .as_ref()
        .map(|p| p.match_value.clone())
        .unwrap_or_else(|| "/".into());
    let http = json!({"paths": [{
        "path": path,
        "pathType": "Prefix",
        "backend": {"resource": {"apiGroup": "networking.higress.io", "kind": "McpBridge", "name": names::MCP_BRIDGE}}
    }]});
    let rules: Vec<Value> = if domains.is_empty() {
        vec![json!({"http": http})]
    } else {
        domains.iter().map(|d| json!({"host": d, "http": http})).collect()
    };
    let mut spec = Map::new();
    spec.insert("ingressClassName".into(), json!(ctx.ingress_class));
    if !ctx.tls.entries.is_empty() {
        spec.insert("tls".into(), json!(ctx.tls.entries));
    }
    spec.insert("rules".into(), json!(rules));
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ctx.namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    })
}

/// The EnvoyFilter `ai-route-<name>.internal` of a route with a fallback, as the console renders it from
/// `templates/envoyfilter-route-fallback.yaml` (v2.2.4) and writes it (default metadata, section 5): on
/// a response of the given classes, Envoy's custom_response filter redirects the request internally,
/// with `x-higress-fallback-from: <main Ingress>`, which only the fallback Ingress matches.
pub fn fallback_envoy_filter(route: &str, response_codes: &[String], namespace: &str) -> Value {
    const CODE_CLASS_INPUT: &str = "type.googleapis.com/envoy.type.matcher.v3.HttpResponseStatusCodeClassMatchInput";
    const TYPED_STRUCT: &str = "type.googleapis.com/udpa.type.v1.TypedStruct";
    let name = names::route_ingress(route);
    // The template's own default when no code is given.
    let default = ["4xx".to_string(), "5xx".to_string()];
    let codes = if response_codes.is_empty() {
        &default[..]
    } else {
        response_codes
    };
    let single = |code: &String| {
        json!({"input": {"name": format!("{code}_response"), "typed_config": {"@type": CODE_CLASS_INPUT}},
               "value_match": {"exact": code}})
    };
    let predicate = match codes {
        [one] => json!({"single_predicate": single(one)}),
        many => json!({"or_matcher": {"predicate": many
            .iter()
            .map(|code| json!({"single_predicate": single(code)}))
            .collect::<Vec<_>>()}}),
    };
    let fallback_header = json!([{"header": {"key": FALLBACK_FROM_HEADER, "value": name}, "append": false}]);
    let redirect = json!({
        "max_internal_redirects": 10,
        "use_original_request_uri": true,
        "keep_original_response_code": false,
        "use_original_request_body": true,
        "only_redirect_upstream_code": false,
        "request_headers_to_add": fallback_header,
        "response_headers_to_add": fallback_header,
    });
    let custom_response = json!({
        "@type": TYPED_STRUCT,
        "type_url": "type.googleapis.com/envoy.extensions.filters.http.custom_response.v3.CustomResponse",
        "value": {
            "custom_response_matcher": {"matcher_list": {"matchers": [{
                "predicate": predicate,
                "on_match": {"action": {"name": "action", "typed_config": {
                    "@type": TYPED_STRUCT,
                    "type_url": "type.googleapis.com/envoy.extensions.http.custom_response.redirect_policy.v3.RedirectPolicy",
                    "value": redirect,
                }}},
            }]}},
            "with_request_body": {"max_request_bytes": 1_024_000},
        },
    });
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_DEFINER: "higress", LABEL_INTERNAL: "true"},
            "annotations": {ANNOTATION_COMMENT: COMMENT},
        },
        "spec": {"configPatches": [{
            "applyTo": "HTTP_ROUTE",
            "match": {"context": "GATEWAY", "routeConfiguration": {"vhost": {"route": {"name": name}}}},
            "patch": {"operation": "MERGE", "value": {"typed_per_filter_config": {
                "envoy.filters.http.custom_response": custom_response,
            }}},
        }]},
    })
}

/// A domain ConfigMap as the console creates it.
pub fn domain_config_map(domain: &str, namespace: &str, https: Option<&crate::event::HttpsSpec>) -> Value {
    let mut data = json!({"domain": domain, "enableHttps": https.map_or("off", |h| h.mode.as_str())});
    // The console keeps a named cert whatever the mode (`data.cert` is omitted only when null); with
    // `off` no route serves it.
    if let Some(cert) = https.and_then(|h| h.cert.as_deref()) {
        data["cert"] = json!(cert);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": config_map_metadata(names::domain_config_map(domain), namespace, "domain"),
        "data": data
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The console writes a named cert whatever the mode (`data.cert` is omitted only when null).
    #[test]
    fn a_domains_cert_is_kept_with_https_off() {
        let off = crate::event::HttpsSpec {
            mode: crate::event::HttpsMode::Off,
            cert: Some("c".into()),
        };
        let kept = domain_config_map("api.example.com", "ns", Some(&off));
        assert_eq!(
            kept["data"],
            json!({"domain": "api.example.com", "enableHttps": "off", "cert": "c"})
        );
    }

    /// `renderDefaultMetadata`: a ConfigMap named `*.internal` is marked internal, like the console's.
    #[test]
    fn config_maps_named_internal_get_the_internal_label_and_comment() {
        let internal = |metadata: &Value| {
            (
                metadata["labels"][LABEL_INTERNAL].clone(),
                metadata["annotations"][ANNOTATION_COMMENT].clone(),
            )
        };
        let marked = (json!("true"), json!(COMMENT));
        let domain = domain_config_map("llm.corp.internal", "ns", None);
        assert_eq!(internal(&domain["metadata"]), marked);
        assert_eq!(domain["metadata"]["labels"][LABEL_CONFIG_MAP_TYPE], "domain");
        let plain = domain_config_map("api.example.com", "ns", None);
        assert_eq!(internal(&plain["metadata"]), (Value::Null, Value::Null));
        assert_eq!(plain["metadata"].get("annotations"), None);
        let route = |name: &str| AiRoute {
            name: name.into(),
            ..Default::default()
        };
        let internal_route = config_map(&route("chat.internal"), "ns");
        assert_eq!(internal_route["metadata"]["name"], "ai-route-chat.internal");
        assert_eq!(internal(&internal_route["metadata"]), marked);
        assert_eq!(
            internal(&config_map(&route("chat"), "ns")["metadata"]),
            (Value::Null, Value::Null)
        );
    }

    #[test]
    fn gson_escapes_html_characters_like_the_console() {
        let text = gson(&json!({"a": "x<y>&z='q'"}));
        assert_eq!(text, r#"{"a":"x\u003cy\u003e\u0026z\u003d\u0027q\u0027"}"#);
        assert_eq!(gson(&json!("a\u{2028}b\u{2029}")), r#""a\u2028b\u2029""#);
    }

    #[test]
    fn a_domain_configmap_without_enable_https_serves_https_when_it_names_a_cert() {
        let domain = |data: Value| {
            let mut state = State::new();
            state.insert_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "domain-api.example.com"}, "data": data}));
            state
        };
        // The console leaves out a null enableHttps, and takes it as not `off`.
        let no_mode = domain(json!({"domain": "api.example.com", "cert": "api-cert"}));
        assert_eq!(domain_https(&no_mode, "api.example.com"), Some(("", "api-cert")));
        let tls = tls(&["api.example.com".into()], &no_mode).unwrap();
        assert_eq!(
            tls.entries,
            [json!({"hosts": ["api.example.com"], "secretName": "api-cert"})]
        );
        assert!(!tls.force_redirect);
        let off = domain(json!({"domain": "api.example.com", "enableHttps": "off", "cert": "api-cert"}));
        assert_eq!(domain_https(&off, "api.example.com"), None);
        let no_cert = domain(json!({"domain": "api.example.com", "enableHttps": "on"}));
        assert_eq!(domain_https(&no_cert, "api.example.com"), None);
        assert_eq!(domain_https(&State::new(), "api.example.com"), None);
    }

    #[test]
    fn model_predicates_become_one_header_annotation() {
        let eq = |v: &str| ModelPredicate {
            match_type: "EQUAL".into(),
            match_value: v.into(),
        };
        let pre = |v: &str| ModelPredicate {
            match_type: "PRE".into(),
            match_value: v.into(),
        };
        assert_eq!(
            model_predicate_annotation(&[pre("qwen-")]),
            Some((
                "higress.io/prefix-match-header-x-higress-llm-model".into(),
                "qwen-".into()
            ))
        );
        assert_eq!(
            model_predicate_annotation(&[eq("gpt-4o")]),
            Some((
                "higress.io/exact-match-header-x-higress-llm-model".into(),
                "gpt-4o".into()
            ))
        );
        assert_eq!(
            model_predicate_annotation(&[eq("gpt-4.1"), pre("qwen(")]),
            Some((
                "higress.io/regex-match-header-x-higress-llm-model".into(),
                r"^(gpt-4\.1|qwen\(.*)".into()
            ))
        );
    }

    #[test]
    fn header_and_query_predicates_become_console_annotations() {
        let predicate = |key: &str, match_type: &str, value: &str| KeyedRoutePredicate {
            key: Some(key.into()),
            match_type: Some(match_type.into()),
            match_value: Some(value.into()),
            case_sensitive: Some(true),
        };
        let annotation = |p: &KeyedRoutePredicate, query| predicate_annotation(p, query);
        assert_eq!(
            annotation(&predicate("x-a", "EQUAL", "1"), false),
            Some(("higress.io/exact-match-header-x-a".into(), "1".into()))
        );
        assert_eq!(
            annotation(&predicate(":authority", "PRE", "api."), false),
            Some(("higress.io/prefix-match-pseudo-header-authority".into(), "api.".into()))
        );
        assert_eq!(
            annotation(&predicate("q", "REGULAR", "^a+$"), true),
            Some(("higress.io/regex-match-query-q".into(), "^a+$".into()))
        );
        // A blank part: the console skips the predicate.
        assert_eq!(annotation(&predicate("x-a", "EQUAL", " "), false), None);
    }

    #[test]
    fn custom_annotations_and_labels_are_refused_where_the_console_refuses_them() {
        for managed in [
            "higress.io/destination",
            "disabled.higress.io/proxy-next-upstream-tries",
            "higress.io/exact-match-header-x-a",
            "higress.io/regex-match-query-q",
            "nginx.ingress.kubernetes.io/ssl-redirect",
            "nginx.ingress.kubernetes.io/prefix-match-header-x",
            "higress.io/comment",
        ] {
            assert!(console_manages_annotation(managed), "{managed}");
        }
        for custom in [
            "example.com/owner",
            "higress.io/timeout",
            "nginx.ingress.kubernetes.io/proxy-body-size",
        ] {
            assert!(!console_manages_annotation(custom), "{custom}");
        }
        assert!(is_custom_label("team") && is_custom_label("higress.io/biz-type"));
        assert!(!is_custom_label("higress.io/domain_a.com") && !is_custom_label(LABEL_INTERNAL));
    }

    #[test]
    fn the_fallback_strategy_picks_its_upstreams() {
        let upstream = |p: &str| AiUpstream {
            provider: p.into(),
            weight: None,
            model_mapping: None,
        };
        let mut route = AiRoute {
            name: "r".into(),
            upstreams: vec![upstream("main")],
            fallback_config: Some(FallbackConfig {
                enabled: true,
                upstreams: Some(vec![upstream("a"), upstream("b")]),
                fallback_strategy: None,
                response_codes: Some(vec!["5xx".into()]),
            }),
            ..AiRoute::default()
        };
        route.fill_defaults(ConsoleVersion::default());
        let used: Vec<(&str, Option<u32>)> = route
            .fallback_upstreams()
            .iter()
            .map(|u| (u.provider.as_str(), u.weight))
            .collect();
        assert_eq!(used, [("a", Some(1)), ("b", Some(1))], "RAND by default, weight 1");
        route.fallback_config.as_mut().unwrap().fallback_strategy = Some("SEQ".into());
        let used: Vec<&str> = route.fallback_upstreams().iter().map(|u| u.provider.as_str()).collect();
        assert_eq!(used, ["a"]);
        assert_eq!(route.providers(), ["main", "a", "b"]);
        route.fallback_config.as_mut().unwrap().response_codes = Some(vec!["3xx".into()]);
        assert_eq!(route.validate().unwrap_err(), "invalid response code: 3xx");
        route.fallback_config.as_mut().unwrap().enabled = false;
        assert!(route.fallback_upstreams().is_empty() && route.fallback_response_codes().is_none());
        assert!(route.validate().is_ok());
    }

    #[test]
    fn destinations_carry_weights_only_when_several() {
        assert_eq!(destination(&[("a.dns:443".into(), Some(100))]), "a.dns:443");
        assert_eq!(
            destination(&[("a.dns:443".into(), Some(70)), ("b.dns:443".into(), Some(30))]),
            "70% a.dns:443\n30% b.dns:443"
        );
    }

    fn domain(name: &str, mode: &str, cert: Option<&str>) -> Value {
        let mut data = json!({"domain": name, "enableHttps": mode});
        if let Some(cert) = cert {
            data["cert"] = json!(cert);
        }
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": names::domain_config_map(name)}, "data": data})
    }

    #[test]
    fn tls_is_derived_from_domain_config_maps() {
        let mut state = State::new();
        state.insert_object(domain("a.com", "force", Some("a-cert")));
        state.insert_object(domain("b.com", "on", Some("b-cert")));
        state.insert_object(domain("c.com", "off", None));
        state.insert_object(domain("d.com", "on", None));
        let tls_a = tls(&["a.com".into()], &state).unwrap();
        assert_eq!(tls_a.entries, vec![json!({"hosts": ["a.com"], "secretName": "a-cert"})]);
        assert!(tls_a.force_redirect);
        assert_eq!(
            tls(&["c.com".into(), "d.com".into()], &state).unwrap().entries,
            Vec::<Value>::new()
        );
        assert_eq!(
            tls(&["a.com".into(), "c.com".into()], &state).unwrap_err(),
            "Currently only supports domains with the same protocol"
        );
        assert_eq!(
            tls(&["a.com".into(), "b.com".into()], &state).unwrap_err(),
            "All domains must use consistent HTTPS configuration"
        );
        assert!(tls(&["missing.com".into()], &state).unwrap().entries.is_empty());
        state.insert_object(domain(names::DEFAULT_DOMAIN, "on", Some("default")));
        assert_eq!(
            tls(&[], &state).unwrap().entries,
            vec![json!({"secretName": "default"})]
        );
    }

    #[test]
    fn defaults_fill_path_weight_and_proxy_next_upstream() {
        let mut route = AiRoute {
            name: "r".into(),
            upstreams: vec![AiUpstream {
                provider: "p".into(),
                weight: None,
                model_mapping: None,
            }],
            ..AiRoute::default()
        };
        route.fill_defaults(ConsoleVersion::default());
        assert_eq!(route.upstreams[0].weight, Some(100));
        assert_eq!(route.path_predicate.as_ref().unwrap().match_value, "/");
        assert_eq!(route.proxy_next_upstream.as_ref().unwrap().timeout, 120);
        assert!(route.validate().is_ok());
        route.upstreams.push(AiUpstream {
            provider: "q".into(),
            weight: Some(10),
            model_mapping: None,
        });
        assert_eq!(
            route.validate().unwrap_err(),
            "upstream weights sum to 110, must be 100"
        );
    }
}
