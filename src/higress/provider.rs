//! LLM providers (spec section 2): the console's provider model, and what it stores for one —
//! an McpBridge registry, an ai-proxy provider entry, and the upstream service routes point at.

use super::index::{list_at, EntryIndex};
use super::names;
use super::plugins::{BuiltinPlugin, ConsoleVersion};
use super::state::{Kind, ObjectKey, State};
use crate::event::{ProviderProtocol, ProviderSpec};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::net::Ipv4Addr;
use url::{Host, Url};

/// Provider types with a console handler; any other type would be invisible to the console.
pub const SUPPORTED_TYPES: [&str; 26] = [
    "openai",
    "qwen",
    "azure",
    "zhipuai",
    "ollama",
    "claude",
    "vllm",
    "bedrock",
    "vertex",
    "moonshot",
    "ai360",
    "github",
    "groq",
    "baichuan",
    "yi",
    "deepseek",
    "baidu",
    "stepfun",
    "minimax",
    "gemini",
    "mistral",
    "cohere",
    "doubao",
    "coze",
    "openrouter",
    "grok",
];

/// Types served from one fixed host over https:443.
fn fixed_host(provider_type: &str) -> Option<&'static str> {
    Some(match provider_type {
        "moonshot" => "api.moonshot.cn",
        "ai360" => "api.360.cn",
        "github" => "models.inference.ai.azure.com",
        "groq" => "api.groq.com",
        "baichuan" => "api.baichuan-ai.com",
        "yi" => "api.lingyiwanwu.com",
        "deepseek" => "api.deepseek.com",
        "baidu" => "qianfan.baidubce.com",
        "stepfun" => "api.stepfun.com",
        "minimax" => "api.minimax.chat",
        "gemini" => "generativelanguage.googleapis.com",
        "mistral" => "api.mistral.ai",
        "cohere" => "api.cohere.com",
        "doubao" => "ark.cn-beijing.volces.com",
        "coze" => "api.coze.cn",
        "openrouter" => "openrouter.ai",
        "grok" => "api.x.ai",
        _ => return None,
    })
}

/// The console API model of a provider (`model/ai/LlmProvider.java`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LlmProvider {
    pub name: String,
    #[serde(rename = "type")]
    pub provider_type: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub token_failover_config: Option<Map<String, Value>>,
    #[serde(default)]
    pub raw_configs: Map<String, Value>,
}

/// What the console stores for a provider.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderObjects {
    /// McpBridge registries: none for an in-cluster service, two for vertex (its shared auth registry).
    pub registries: Vec<Value>,
    /// The `ai-proxy.internal` `defaultConfig.providers[]` entry.
    pub entry: Value,
    /// Upstream service: the ai-proxy service-rule target and the Ingress destination host.
    pub service: String,
    pub port: u16,
}

impl ProviderObjects {
    pub fn destination(&self) -> String {
        format!("{}:{}", self.service, self.port)
    }
}

struct Endpoint {
    scheme: String,
    host: Host<String>,
    port: u16,
    path: String,
}

fn endpoint(key: &str, text: &str) -> Result<Endpoint, String> {
    let url = Url::parse(text).map_err(|e| format!("{key} is not a valid URL: {e}"))?;
    let scheme = url.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{key} must be an http or https URL"));
    }
    let host = url.host().ok_or_else(|| format!("{key} has no host"))?.to_owned();
    // The host becomes McpBridge's registry domain: a name the gateway's DNS can resolve, or IPv4.
    match &host {
        Host::Domain(name) if !is_host_name(name) => {
            return Err(format!("{key}'s host {}", NameRule::HostOrIpv4.rule()))
        }
        Host::Ipv6(_) => return Err(format!("{key}'s host must be a host name or an IPv4 address")),
        _ => {}
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let path = url.path().to_string();
    Ok(Endpoint {
        scheme,
        host,
        port,
        path,
    })
}

fn https(host: &str) -> Endpoint {
    Endpoint {
        scheme: "https".into(),
        host: Host::Domain(host.into()),
        port: 443,
        path: "/".into(),
    }
}

/// `fillV1RegistryConfig`: IPv4 endpoints make a static registry on port 80, a host name a dns one.
fn registry(name: &str, endpoints: &[Endpoint]) -> Result<Value, String> {
    let first = &endpoints[0];
    let all_ipv4 = endpoints.iter().all(|e| matches!(e.host, Host::Ipv4(_)));
    if endpoints.len() > 1 && !all_ipv4 {
        return Err("several endpoints are only allowed when all are IPv4 addresses".into());
    }
    if endpoints.iter().any(|e| e.scheme != first.scheme) {
        return Err("all endpoints must use the same scheme".into());
    }
    // The console refuses them otherwise ("Multiple context paths found").
    if endpoints.iter().any(|e| e.path != first.path) {
        return Err("all endpoints must have the same path".into());
    }
    let (kind, domain, port) = if all_ipv4 {
        let domain = endpoints
            .iter()
            .map(|e| format!("{}:{}", e.host, e.port))
            .collect::<Vec<_>>()
            .join(",");
        ("static", domain, 80)
    } else {
        ("dns", first.host.to_string(), first.port)
    };
    Ok(json!({"domain": domain, "name": name, "port": port, "protocol": first.scheme, "type": kind}))
}

/// What a provider config value that becomes (part of) a host name must look like. Free-form config
/// values may carry tab and line breaks (a service-account key is multi-line text), so these are
/// checked on their own: a line break in a service name would add a line to the Ingress
/// `higress.io/destination` annotation, and an upper-case or odd host an invalid McpBridge registry.
#[derive(Clone, Copy, Debug)]
enum NameRule {
    /// A lower-case RFC 1123 host name: a registry `domain`, or the service of the destination.
    Host,
    /// As [`NameRule::Host`], or an IPv4 address (ollama's server, a `static` registry).
    HostOrIpv4,
    /// A cloud region, which becomes part of one label of a host name.
    Region,
}

/// Longest region: vertex makes `<region>-aiplatform.googleapis.com`, whose first label must stay
/// within 63 characters.
const MAX_REGION_CHARS: usize = 52;

impl NameRule {
    fn holds(self, value: &str) -> bool {
        match self {
            NameRule::Host => is_host_name(value),
            NameRule::HostOrIpv4 => value.parse::<Ipv4Addr>().is_ok() || is_host_name(value),
            NameRule::Region => {
                let bytes = value.as_bytes();
                !bytes.is_empty()
                    && bytes.len() <= MAX_REGION_CHARS
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                    && bytes[0] != b'-'
                    && bytes[bytes.len() - 1] != b'-'
            }
        }
    }

    /// The rule, never the value (config values may be secrets).
    fn rule(self) -> String {
        const HOST: &str = "a lower-case RFC 1123 host name (letters a-z, digits, '-' and '.'; each '.'-separated part 1 to 63 characters, starting and ending with a letter or digit; at most 253 characters)";
        match self {
            NameRule::Host => format!("must be {HOST}"),
            NameRule::HostOrIpv4 => format!("must be an IPv4 address or {HOST}"),
            NameRule::Region => format!(
                "must be a region name: lower-case letters, digits and '-', starting and ending with a letter or digit, at most {MAX_REGION_CHARS} characters"
            ),
        }
    }
}

/// A lower-case RFC 1123 subdomain, as Kubernetes checks a DNS name (IsDNS1123Subdomain).
fn is_host_name(value: &str) -> bool {
    value.len() <= 253
        && value.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

/// The config keys a provider type turns into a host name, the destination's service or a region.
fn name_keys(provider_type: &str) -> &'static [(&'static str, NameRule)] {
    match provider_type {
        // The Ingress `higress.io/destination` (`<service>:<port>`) and the ai-proxy service rule.
        "openai" => &[("openaiCustomServiceName", NameRule::Host)],
        // McpBridge `registries[].domain`, directly or inside a host name.
        "qwen" => &[("qwenDomain", NameRule::Host)],
        "zhipuai" => &[("zhipuDomain", NameRule::Host)],
        "ollama" => &[("ollamaServerHost", NameRule::HostOrIpv4)],
        "claude" => &[("providerDomain", NameRule::Host)],
        "bedrock" => &[("awsRegion", NameRule::Region)],
        "vertex" => &[("vertexRegion", NameRule::Region)],
        _ => &[],
    }
}

/// The keys of `raw` (the console's rawConfigs) that would make a bad host, service name or region,
/// each with the rule it breaks. An empty string counts as absent, as everywhere in the handlers.
fn raw_name_problems(provider_type: &str, raw: &Map<String, Value>) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    for &(key, rule) in name_keys(provider_type) {
        let holds = match raw.get(key) {
            None => true,
            Some(Value::String(text)) if text.is_empty() => true,
            // The console lowercases vertex's region before it uses it; so does `endpoints_and_configs`.
            Some(Value::String(text)) if key == "vertexRegion" => rule.holds(&text.to_lowercase()),
            Some(Value::String(text)) => rule.holds(text),
            Some(_) => false,
        };
        if !holds {
            problems.push((key, rule.rule()));
        }
    }
    problems
}

/// The fields of an event's provider whose values would become a host name, the Ingress
/// destination's service or a region, and are not one: `(field, rule)` with the field under
/// `data.provider` (`config.<key>`, or `url` when the value was taken from it), never the value.
/// The contract checks this before planning (`contract::rules::cross_field_problems`), and the
/// deploy mapping again before it renders the provider.
pub fn name_problems(spec: &ProviderSpec) -> Vec<(String, String)> {
    // An event `from_event` refuses is reported by `check`.
    let Ok(provider) = from_event(spec, "", Vec::new()) else {
        return Vec::new();
    };
    raw_name_problems(&spec.provider_type, &provider.raw_configs)
        .into_iter()
        .map(|(key, rule)| {
            let field = if spec.config.contains_key(key) {
                format!("config.{key}")
            } else {
                "url".to_string()
            };
            (field, rule)
        })
        .collect()
}

fn text<'a>(raw: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    raw.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn required<'a>(raw: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    text(raw, key).ok_or_else(|| format!("{key} is required"))
}

fn urls(raw: &Map<String, Value>, main: &str, extra: &str) -> Result<Vec<Endpoint>, String> {
    let mut endpoints = vec![endpoint(main, required(raw, main)?)?];
    if let Some(extra_urls) = raw.get(extra) {
        let list = extra_urls
            .as_array()
            .ok_or_else(|| format!("{extra} must be a list of URLs"))?;
        for url in list {
            endpoints.push(endpoint(
                extra,
                url.as_str().ok_or_else(|| format!("{extra} must be a list of URLs"))?,
            )?);
        }
    }
    Ok(endpoints)
}

fn set_default(raw: &mut Map<String, Value>, key: &str, value: Value) {
    raw.entry(key.to_string()).or_insert(value);
}

/// Endpoints of the provider and its raw configs after the handler's `normalizeConfigs`; no
/// endpoints means an in-cluster service given by `openaiCustomServiceName`/`Port`.
fn endpoints_and_configs(p: &LlmProvider) -> Result<(Vec<Endpoint>, Map<String, Value>), String> {
    let mut raw = p.raw_configs.clone();
    if let Some((key, rule)) = raw_name_problems(&p.provider_type, &raw).into_iter().next() {
        return Err(format!("{key} {rule}"));
    }
    let endpoints = match p.provider_type.as_str() {
        "openai" => {
            if raw.contains_key("openaiCustomServiceName") {
                Vec::new()
            } else if raw.contains_key("openaiCustomUrl") {
                urls(&raw, "openaiCustomUrl", "openaiExtraCustomUrls")?
            } else {
                vec![https("api.openai.com")]
            }
        }
        "vllm" => urls(&raw, "vllmCustomUrl", "vllmExtraCustomUrls")?,
        "qwen" => {
            let host = text(&raw, "qwenDomain").unwrap_or("dashscope.aliyuncs.com").to_string();
            set_default(&mut raw, "qwenEnableSearch", json!(false));
            set_default(&mut raw, "qwenEnableCompatible", json!(true));
            if raw.get("qwenFileIds").is_some_and(|ids| !ids.is_array()) {
                return Err("qwenFileIds must be a list".into());
            }
            vec![https(&host)]
        }
        "azure" => {
            let service_url = required(&raw, "azureServiceUrl")?;
            // The api-version parameter the gateway requires (`azure.go`, ValidateConfig) is checked by
            // the schema and by `gateway::ai_proxy`; it may be empty there, and so here. The console's
            // form asks for a value (`AzureLlmProviderHandler.normalizeConfigs`), but only when it saves
            // the provider: it lists, deletes and routes one with an empty value.
            vec![endpoint("azureServiceUrl", service_url)?]
        }
        "zhipuai" => {
            let host = text(&raw, "zhipuDomain").unwrap_or("open.bigmodel.cn").to_string();
            set_default(&mut raw, "zhipuCodePlanMode", json!(true));
            vec![https(&host)]
        }
        "ollama" => {
            let host = required(&raw, "ollamaServerHost")?.to_string();
            let port = match raw.get("ollamaServerPort") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .and_then(|p| u16::try_from(p).ok())
            // The console (`OllamaLlmProviderHandler.normalizeConfigs`, `ValidateUtil.checkPort`)
            // refuses 0, and so does the gateway (`ollama.go`, ValidateConfig).
            .filter(|&p| p != 0)
            .ok_or("ollamaServerPort is required and must be a port number from 1 to 65535")?;
            raw.insert("ollamaServerPort".into(), json!(port));
            let host = match host.parse::<Ipv4Addr>() {
                Ok(ip) => Host::Ipv4(ip),
                Err(_) => Host::Domain(host),
            };
            vec![Endpoint {
                scheme: "http".into(),
                host,
                port,
                path: "/".into(),
            }]
        }
        "claude" => {
            set_default(&mut raw, "claudeVersion", json!("2023-06-01"));
            match (text(&raw, "claudeCustomUrl"), text(&raw, "providerDomain")) {
                (Some(url), _) => vec![endpoint("claudeCustomUrl", url)?],
                (None, Some(domain)) => vec![https(domain)],
                (None, None) => vec![https("api.anthropic.com")],
            }
        }
        "bedrock" => {
            // The gateway takes apiTokens or both AWS keys (`bedrock.go`, ValidateConfig; checked by the
            // schema and `gateway::ai_proxy`). The console's form asks for both keys
            // (`BedrockLlmProviderHandler.normalizeConfigs`), but only when it saves the provider; what it
            // needs to list, delete and route one is the region (`getProviderEndpoints`).
            let region = required(&raw, "awsRegion")?.to_string();
            vec![https(&format!("bedrock-runtime.{region}.amazonaws.com"))]
        }
        "vertex" => {
            // Express mode (an API token) needs nothing else at the gateway (`vertex.go`, ValidateConfig)
            // and sends every request to the global host whatever the region; without a token the schema
            // and `gateway::ai_proxy` require region, project and key. The console's form asks for all
            // three (`VertexLlmProviderHandler.normalizeConfigs`) but only when it saves; to list,
            // delete or route a provider it needs a region (`getProviderEndpoints` throws without one),
            // so a missing one is written as `global`, the host express mode uses. The console lowercases
            // the region and always sets vertexAuthServiceName.
            let region = text(&raw, "vertexRegion").unwrap_or("global").to_lowercase();
            raw.insert("vertexRegion".into(), json!(region));
            raw.insert("vertexAuthServiceName".into(), json!("vertex-auth.internal"));
            let host = if region == "global" {
                "aiplatform.googleapis.com".to_string()
            } else {
                format!("{region}-aiplatform.googleapis.com")
            };
            vec![https(&host)]
        }
        other => match fixed_host(other) {
            Some(host) => vec![https(host)],
            None => {
                return Err(format!(
                    "provider type {other:?} is not supported by the Higress console"
                ))
            }
        },
    };
    Ok((endpoints, raw))
}

/// McpBridge `default` as the console creates it, with no registries.
pub fn new_mcp_bridge(namespace: &str) -> Value {
    json!({
        "apiVersion": Kind::McpBridge.api_version(),
        "kind": "McpBridge",
        "metadata": {"name": names::MCP_BRIDGE, "namespace": namespace},
        "spec": {"registries": [], "proxies": []}
    })
}

/// Where a provider already in the cluster is served, as the console derives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingUpstream {
    pub service: String,
    pub port: u16,
    /// The McpBridge registry serving it, unless ai-proxy names a custom service.
    pub registry: Option<String>,
}

/// Service and port of a provider already in the cluster, as the console derives them.
pub fn existing_upstream(state: &State, console: ConsoleVersion, provider: &str) -> Option<ExistingUpstream> {
    let ai_proxy = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(console));
    match state.inspect(&ai_proxy, |object, index| custom_service(object, index, provider))?? {
        Some((service, port)) => Some(ExistingUpstream {
            service,
            port,
            registry: None,
        }),
        None => {
            let bridge = ObjectKey::new(Kind::McpBridge, names::MCP_BRIDGE);
            state.inspect(&bridge, |object, index| registry_upstream(object, index, provider))?
        }
    }
}

/// In ai-proxy (found through its index: every deploy asks): `None` when it has no entry for the
/// provider; `Some(None)` when the entry is served by its McpBridge registry; `Some(Some(service and
/// port))` for an in-cluster service.
pub(super) fn custom_service(
    ai_proxy: &Value,
    index: &mut EntryIndex,
    provider: &str,
) -> Option<Option<(String, u16)>> {
    let list = list_at(ai_proxy, "/spec/defaultConfig/providers");
    let entry = &list[index.providers(ai_proxy).find(list, Some(&json!(provider)))?];
    Some(
        match (
            entry.get("openaiCustomServiceName").and_then(Value::as_str),
            entry.get("openaiCustomServicePort").and_then(Value::as_u64),
        ) {
            (Some(service), Some(port)) => Some((service.to_string(), u16::try_from(port).ok()?)),
            _ => None,
        },
    )
}

/// In McpBridge (through its index): where the provider's registry serves it.
pub(super) fn registry_upstream(bridge: &Value, index: &mut EntryIndex, provider: &str) -> Option<ExistingUpstream> {
    let registry_name = names::registry(provider);
    let list = list_at(bridge, "/spec/registries");
    let registry = &list[index.registries(bridge).find(list, Some(&json!(registry_name)))?];
    let kind = registry.get("type")?.as_str()?;
    let port = if kind == "static" {
        80
    } else {
        u16::try_from(registry.get("port")?.as_u64()?).ok()?
    };
    Some(ExistingUpstream {
        service: format!("{registry_name}.{kind}"),
        port,
        registry: Some(registry_name),
    })
}

/// What the console writes for a provider (`AbstractLlmProviderHandler.saveConfig` and `buildServiceSource`).
pub fn render(p: &LlmProvider) -> Result<ProviderObjects, String> {
    let (endpoints, raw) = endpoints_and_configs(p)?;
    let (registries, service, port) = if endpoints.is_empty() {
        let service = required(&raw, "openaiCustomServiceName")?.to_string();
        let port = raw
            .get("openaiCustomServicePort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("openaiCustomServicePort must be an integer port")?;
        (Vec::new(), service, port)
    } else {
        let own = registry(&names::registry(&p.name), &endpoints)?;
        let service = format!(
            "{}.{}",
            own["name"].as_str().unwrap_or_default(),
            own["type"].as_str().unwrap_or_default()
        );
        let port = own["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(80);
        let mut registries = vec![own];
        if p.provider_type == "vertex" {
            registries.push(registry("vertex-auth.internal", &[https("oauth2.googleapis.com")])?);
        }
        (registries, service, port)
    };
    let mut entry = Map::new();
    entry.insert("id".into(), json!(p.name));
    entry.insert("type".into(), json!(p.provider_type));
    let protocol = match p.protocol.as_deref() {
        None | Some("openai/v1") | Some("openai") => "openai",
        Some("original") => "original",
        Some(other) => return Err(format!("protocol {other:?} must be openai/v1 or original")),
    };
    entry.insert("protocol".into(), json!(protocol));
    if !p.tokens.is_empty() {
        entry.insert("apiTokens".into(), json!(p.tokens));
    }
    for (key, value) in raw {
        if !matches!(
            key.as_str(),
            "id" | "type" | "protocol" | "apiTokens" | "failover" | "retryOnFailure"
        ) {
            entry.insert(key, value);
        }
    }
    if let Some(failover) = &p.token_failover_config {
        let enabled = failover.get("enabled").cloned().unwrap_or(Value::Bool(false));
        let members: Map<String, Value> = failover
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entry.insert("failover".into(), Value::Object(members));
        entry.insert("retryOnFailure".into(), json!({"enabled": enabled}));
    }
    Ok(ProviderObjects {
        registries,
        entry: Value::Object(entry),
        service,
        port,
    })
}

/// Where a provider type takes the event's `url`; `None` for fixed-host types.
fn url_key(provider_type: &str) -> Option<&'static str> {
    Some(match provider_type {
        "openai" => "openaiCustomUrl",
        "vllm" => "vllmCustomUrl",
        "azure" => "azureServiceUrl",
        "claude" => "claudeCustomUrl",
        "ollama" => "ollamaServerHost",
        "qwen" => "qwenDomain",
        "zhipuai" => "zhipuDomain",
        _ => return None,
    })
}

/// The console provider an event describes. `tokens` are the resolved API tokens.
pub fn from_event(spec: &ProviderSpec, name: &str, tokens: Vec<String>) -> Result<LlmProvider, String> {
    let mut raw = Map::new();
    if let Some(url) = &spec.url {
        let key = url_key(&spec.provider_type).ok_or_else(|| {
            format!(
                "url is not used by provider type {:?}, which has a fixed endpoint",
                spec.provider_type
            )
        })?;
        if spec.config.contains_key(key) {
            return Err(format!("url and config.{key} say the same thing: give only one"));
        }
        let parsed = endpoint("url", url)?;
        match key {
            "ollamaServerHost" => {
                raw.insert(key.into(), json!(parsed.host.to_string()));
                raw.insert("ollamaServerPort".into(), json!(parsed.port));
            }
            "qwenDomain" | "zhipuDomain" => {
                raw.insert(key.into(), json!(parsed.host.to_string()));
            }
            _ => {
                raw.insert(key.into(), json!(url));
            }
        }
    }
    raw.extend(spec.config.0.clone());
    let protocol = match spec.protocol {
        ProviderProtocol::Openai => "openai/v1",
        ProviderProtocol::Original => "original",
    };
    Ok(LlmProvider {
        name: name.to_string(),
        provider_type: spec.provider_type.clone(),
        protocol: Some(protocol.to_string()),
        tokens,
        // The console UI always sends a failover config; `{enabled: false}` when untouched.
        token_failover_config: Some(spec.failover.clone().unwrap_or_else(|| {
            let mut off = Map::new();
            off.insert("enabled".into(), Value::Bool(false));
            off
        })),
        raw_configs: raw,
    })
}

/// Checks an event's provider can be rendered, before any secret is resolved.
pub fn check(spec: &ProviderSpec, name: &str) -> Result<(), String> {
    from_event(spec, name, Vec::new()).and_then(|p| render(&p)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ModelDeployed;
    use crate::higress::plan::Settings;

    fn spec(value: Value) -> ProviderSpec {
        serde_json::from_value(value).unwrap()
    }

    fn fields(value: Value) -> Vec<String> {
        name_problems(&spec(value))
            .into_iter()
            .map(|(field, _)| field)
            .collect()
    }

    #[test]
    fn hosts_service_names_and_regions_in_config_are_checked_by_type() {
        let bad_hosts = [
            "svc\n100% evil.dns",
            "Svc.default",
            "a..b",
            "-a.b",
            "a b",
            "a\t",
            "x".repeat(64).as_str(),
            "a_b",
        ]
        .map(str::to_string);
        for (provider_type, key, extra) in [
            (
                "openai",
                "openaiCustomServiceName",
                json!({"openaiCustomServicePort": 8000}),
            ),
            ("qwen", "qwenDomain", json!({})),
            ("zhipuai", "zhipuDomain", json!({})),
            ("ollama", "ollamaServerHost", json!({"ollamaServerPort": 11434})),
            ("claude", "providerDomain", json!({})),
        ] {
            for bad in bad_hosts.iter().map(|s| json!(s)).chain([json!(1), json!(["a.b"])]) {
                let mut config = extra.clone();
                config[key] = bad.clone();
                let value = json!({"type": provider_type, "config": config});
                assert_eq!(
                    fields(value.clone()),
                    [format!("config.{key}")],
                    "{provider_type} {bad}"
                );
                let rule = &name_problems(&spec(value.clone()))[0].1;
                assert!(rule.starts_with("must be") && !rule.contains("evil"), "{rule}");
                // The mapping refuses it on its own too.
                let provider = from_event(&spec(value), "p", Vec::new()).unwrap();
                let refused = render(&provider).unwrap_err();
                assert!(refused.starts_with(&format!("{key} must be")), "{refused}");
            }
            let mut config = extra.clone();
            config[key] = json!("llm.default.svc.cluster.local");
            let value = json!({"type": provider_type, "config": config});
            assert!(fields(value.clone()).is_empty(), "{provider_type}");
            render(&from_event(&spec(value), "p", Vec::new()).unwrap()).unwrap();
        }
        // Where another type does not make a host of the key, it is passed on as before.
        assert!(fields(json!({"type": "deepseek", "config": {"qwenDomain": "A B"}})).is_empty());
        // ollama's host may be an IPv4 address; from a url, the field is the url.
        assert!(fields(
            json!({"type": "ollama", "config": {"ollamaServerHost": "192.168.1.10", "ollamaServerPort": 1}})
        )
        .is_empty());
        // A URL's host is refused where the URL is read (`url_hosts_are_host_names_or_ipv4`).
        assert!(from_event(
            &spec(json!({"type": "ollama", "url": "http://[::1]:11434"})),
            "p",
            Vec::new()
        )
        .is_err());
        assert!(fields(json!({"type": "qwen", "url": "https://DashScope.aliyuncs.com/v1"})).is_empty());
    }

    #[test]
    fn several_endpoints_share_scheme_and_path_as_the_console_requires() {
        let render_with = |extra: Value| {
            let value = json!({"type": "openai", "config": {
                "openaiCustomUrl": "http://10.0.0.1:8000/v1", "openaiExtraCustomUrls": extra}});
            render(&from_event(&spec(value), "p", Vec::new()).unwrap())
        };
        let fine = render_with(json!(["http://10.0.0.2:8000/v1"])).unwrap();
        assert_eq!(fine.registries[0]["domain"], "10.0.0.1:8000,10.0.0.2:8000");
        assert_eq!(
            render_with(json!(["http://10.0.0.2:8000/v2"])).unwrap_err(),
            "all endpoints must have the same path"
        );
        assert_eq!(
            render_with(json!(["https://10.0.0.2:8000/v1"])).unwrap_err(),
            "all endpoints must use the same scheme"
        );
    }

    /// A URL's host becomes McpBridge's registry domain: the url crate lower-cases it, but lets `_`
    /// through, and an IPv6 host would make no registry the gateway can use.
    #[test]
    fn url_hosts_are_host_names_or_ipv4() {
        for bad in ["https://a_b.example.com/v1", "http://[::1]:8000/v1"] {
            let refused = from_event(&spec(json!({"type": "openai", "url": bad})), "p", Vec::new())
                .and_then(|provider| render(&provider).map(drop))
                .unwrap_err();
            assert!(refused.contains("host must be"), "{bad}: {refused}");
        }
        for good in ["https://LLM.Example.com/v1", "http://10.0.0.5:8000/v1"] {
            let provider = from_event(&spec(json!({"type": "openai", "url": good})), "p", Vec::new()).unwrap();
            render(&provider).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn regions_are_lower_case_labels() {
        let bedrock = |region: Value| {
            fields(
                json!({"type": "bedrock", "config": {"awsRegion": region, "awsAccessKey": "a", "awsSecretKey": "s"}}),
            )
        };
        let vertex = |region: Value| {
            fields(
                json!({"type": "vertex", "config": {"vertexRegion": region, "vertexProjectId": "p", "vertexAuthKey": "k"}}),
            )
        };
        assert!(bedrock(json!("us-east-1")).is_empty());
        for bad in [
            "US-EAST-1",
            "us-east-1.evil.com",
            "us east",
            "us-east-1\n",
            "-us",
            "x".repeat(53).as_str(),
        ] {
            assert_eq!(bedrock(json!(bad)), ["config.awsRegion"], "{bad:?}");
        }
        // The console lowercases vertex's region (the recorded `vertex-1` case), so upper case is fine there.
        assert!(vertex(json!("US-CENTRAL1")).is_empty());
        assert!(vertex(json!("global")).is_empty());
        for bad in ["us-central1.evil.com", "us_central1", "us-central1\n"] {
            assert_eq!(vertex(json!(bad)), ["config.vertexRegion"], "{bad:?}");
        }
    }

    /// Where the gateway's ai-proxy accepts a provider whose form the Higress console would not save,
    /// the mapping writes it, in the shape the console needs to list, delete and route it.
    #[test]
    fn what_the_gateway_accepts_is_written_where_the_console_only_asks_more_of_its_form() {
        let refused = |value: Value| check(&spec(value), "p").unwrap_err();
        let rendered = |value: Value| {
            let provider = from_event(&spec(value.clone()), "p", vec!["t".into()]).unwrap();
            render(&provider).unwrap_or_else(|e| panic!("{value}: {e}"))
        };
        let bedrock = rendered(json!({"type": "bedrock", "config": {"awsRegion": "us-east-1"}}));
        assert_eq!(bedrock.entry["apiTokens"], json!(["t"]));
        assert!(bedrock.entry.get("awsAccessKey").is_none(), "{}", bedrock.entry);
        assert_eq!(
            bedrock.registries[0]["domain"],
            "bedrock-runtime.us-east-1.amazonaws.com"
        );
        // The region is what the console needs to find the provider's service.
        assert_eq!(
            refused(json!({"type": "bedrock", "config": {}})),
            "awsRegion is required"
        );
        // Express mode: the global host, as the plugin uses it, and a region the console can read.
        let vertex = rendered(json!({"type": "vertex"}));
        assert_eq!(vertex.entry["vertexRegion"], "global");
        assert_eq!(vertex.entry["vertexAuthServiceName"], "vertex-auth.internal");
        assert!(vertex.entry.get("vertexProjectId").is_none(), "{}", vertex.entry);
        assert_eq!(vertex.registries[0]["domain"], "aiplatform.googleapis.com");
        let regional = rendered(json!({"type": "vertex", "config": {"vertexRegion": "US-Central1"}}));
        assert_eq!(regional.entry["vertexRegion"], "us-central1");
        assert_eq!(
            regional.registries[0]["domain"],
            "us-central1-aiplatform.googleapis.com"
        );
        for url in [
            "https://x.openai.azure.com/chat?api-version=",
            "https://x.openai.azure.com/chat?api-version",
            "https://x.openai.azure.com/chat?api-version=&api-version=2024-06-01",
        ] {
            let azure = rendered(json!({"type": "azure", "url": url}));
            assert_eq!(azure.entry["azureServiceUrl"], url);
            assert_eq!(azure.registries[0]["domain"], "x.openai.azure.com");
        }
        // Port 0: the console (ValidateUtil.checkPort) and the gateway refuse it alike.
        for value in [
            json!({"type": "ollama", "config": {"ollamaServerHost": "llm.local", "ollamaServerPort": 0}}),
            json!({"type": "ollama", "url": "http://10.0.0.1:0"}),
        ] {
            assert!(
                refused(value).starts_with("ollamaServerPort is required and must be a port number from 1 to 65535")
            );
        }
    }

    /// What the console accepts is written as the console writes it: the tokens next to the AWS keys
    /// or the service account.
    #[test]
    fn bedrock_and_vertex_with_tokens_render_as_the_console_writes_them() {
        let bedrock = from_event(
            &spec(json!({"type": "bedrock", "config": {"awsRegion": "us-east-1", "awsAccessKey": "a", "awsSecretKey": "s"}})),
            "b",
            vec!["t".into()],
        )
        .unwrap();
        let rendered = render(&bedrock).unwrap();
        assert_eq!(rendered.entry["apiTokens"], json!(["t"]));
        assert_eq!(rendered.entry["awsAccessKey"], "a");
        assert_eq!(
            rendered.registries[0]["domain"],
            "bedrock-runtime.us-east-1.amazonaws.com"
        );
        let vertex = from_event(
            &spec(json!({"type": "vertex", "config": {"vertexRegion": "global", "vertexProjectId": "p", "vertexAuthKey": "{}"}})),
            "v",
            vec!["t".into()],
        )
        .unwrap();
        let rendered = render(&vertex).unwrap();
        assert_eq!(rendered.entry["apiTokens"], json!(["t"]));
        assert_eq!(rendered.entry["vertexAuthServiceName"], "vertex-auth.internal");
        assert_eq!(rendered.registries.len(), 2);
    }

    #[test]
    fn the_deploy_mapping_refuses_a_bad_service_name_naming_the_field() {
        let event: ModelDeployed = serde_json::from_value(json!({"model": "m", "revision": 1,
            "provider": {"type": "openai", "config": {"openaiCustomServiceName": "svc\n100% evil.dns", "openaiCustomServicePort": 80}}}))
        .unwrap();
        let refusal =
            super::super::deploy::plan_deploy(&event, &State::new(), &Settings::default(), chrono::Utc::now())
                .unwrap_err();
        assert_eq!(refusal.reason, crate::reason::Reason::InvalidProvider);
        assert!(
            refusal
                .message
                .starts_with("data.provider.config.openaiCustomServiceName: must be a lower-case RFC 1123 host name"),
            "{}",
            refusal.message
        );
        assert!(!refusal.message.contains("evil"), "{}", refusal.message);
    }
}
