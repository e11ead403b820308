//! LLM providers (spec section 2): the console's provider model, and what it stores for one —
//! an McpBridge registry, an ai-proxy provider entry, and the upstream service routes point at.

use super::names;
use super::plugins::{BuiltinPlugin, ConsoleVersion};
use super::state::{Kind, State};
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
}

fn endpoint(key: &str, text: &str) -> Result<Endpoint, String> {
    let url = Url::parse(text).map_err(|e| format!("{key} is not a valid URL: {e}"))?;
    let scheme = url.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{key} must be an http or https URL"));
    }
    let host = url.host().ok_or_else(|| format!("{key} has no host"))?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    Ok(Endpoint { scheme, host, port })
}

fn https(host: &str) -> Endpoint {
    Endpoint {
        scheme: "https".into(),
        host: Host::Domain(host.into()),
        port: 443,
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
            let parsed = Url::parse(service_url).map_err(|e| format!("azureServiceUrl is not a valid URL: {e}"))?;
            if !parsed.query_pairs().any(|(k, v)| k == "api-version" && !v.is_empty()) {
                return Err("azureServiceUrl must contain a non-empty api-version query parameter".into());
            }
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
            .ok_or("ollamaServerPort is required and must be a port number")?;
            raw.insert("ollamaServerPort".into(), json!(port));
            let host = match host.parse::<Ipv4Addr>() {
                Ok(ip) => Host::Ipv4(ip),
                Err(_) => Host::Domain(host),
            };
            vec![Endpoint {
                scheme: "http".into(),
                host,
                port,
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
            let region = required(&raw, "awsRegion")?.to_string();
            required(&raw, "awsAccessKey")?;
            required(&raw, "awsSecretKey")?;
            vec![https(&format!("bedrock-runtime.{region}.amazonaws.com"))]
        }
        "vertex" => {
            let region = required(&raw, "vertexRegion")?.to_lowercase();
            required(&raw, "vertexProjectId")?;
            required(&raw, "vertexAuthKey")?;
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

/// Service and `service:port` of a provider already in the cluster, as the console derives them.
pub fn existing_upstream(state: &State, console: ConsoleVersion, provider: &str) -> Option<(String, u16)> {
    let entry = state
        .get_named(Kind::WasmPlugin, &BuiltinPlugin::AiProxy.cr_name(console))?
        .pointer("/spec/defaultConfig/providers")?
        .as_array()?
        .iter()
        .find(|p| p.get("id").and_then(Value::as_str) == Some(provider))?;
    if let (Some(service), Some(port)) = (
        entry.get("openaiCustomServiceName").and_then(Value::as_str),
        entry.get("openaiCustomServicePort").and_then(Value::as_u64),
    ) {
        return Some((service.to_string(), u16::try_from(port).ok()?));
    }
    let registry_name = names::registry(provider);
    let registry = state
        .get_named(Kind::McpBridge, names::MCP_BRIDGE)?
        .pointer("/spec/registries")?
        .as_array()?
        .iter()
        .find(|r| r.get("name").and_then(Value::as_str) == Some(registry_name.as_str()))?;
    let kind = registry.get("type")?.as_str()?;
    let port = if kind == "static" {
        80
    } else {
        u16::try_from(registry.get("port")?.as_u64()?).ok()?
    };
    Some((format!("{registry_name}.{kind}"), port))
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
