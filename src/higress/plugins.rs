//! Built-in WasmPlugin CRs as the console creates them (spec 2.4), per console version, and the
//! console's matchRule identity and ordering.

use super::names::{self, ANNOTATION_COMMENT, COMMENT, LABEL_DEFINER, LABEL_INTERNAL};
use super::object::Kind;
use crate::event::KeySource;
use crate::secret::SecretString;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

const IMAGE_REGISTRY: &str = "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins";
const ICON_AI: &str = "https://img.alicdn.com/imgextra/i1/O1CN018iKKih1iVx287RltL_!!6000000004419-2-tps-42-42.png";
const ICON_AUTH: &str = "https://img.alicdn.com/imgextra/i4/O1CN01BPFGlT1pGZ2VDLgaH_!!6000000005333-2-tps-42-42.png";
const ICON_TRAFFIC: &str = "https://img.alicdn.com/imgextra/i3/O1CN01bAFa9k1t1gdQcVTH0_!!6000000005842-2-tps-42-42.png";
const ICON_SECURITY: &str =
    "https://img.alicdn.com/imgextra/i1/O1CN01jKT9vC1O059vNaq5u_!!6000000001642-2-tps-42-42.png";
const ICON_MCP: &str = "https://img.alicdn.com/imgextra/i1/O1CN01wv8H4g1mS4MUzC1QC_!!6000000004952-2-tps-1764-597.png";

/// The console release whose conventions we write. Versions differ in plugin version labels and
/// image tags (2.2.4 and later vs. older), and in the proxy-next-upstream timeout default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsoleVersion {
    minor: u32,
    patch: u32,
}

impl ConsoleVersion {
    pub const V2_2_4: ConsoleVersion = ConsoleVersion { minor: 2, patch: 4 };

    /// Whether the console ships the catalogue of v2.2.4 (later versions and `main` are written as
    /// v2.2.4), which labels most plugins 2.0.1 and has json-converter, or that of v2.1.11 and
    /// v2.2.1 … v2.2.3, which labels every plugin 1.0.0 with `:2.0.0` images.
    fn ships_v2_2_4_catalogue(self) -> bool {
        self >= Self::V2_2_4
    }

    /// `proxyNextUpstream.timeout` default: 120 s from v2.2.2 on, 120000 (ms) in v2.1.11 to v2.2.1.
    pub fn proxy_next_upstream_timeout(self) -> u64 {
        if self >= (ConsoleVersion { minor: 2, patch: 2 }) {
            120
        } else {
            120_000
        }
    }
}

impl Default for ConsoleVersion {
    fn default() -> Self {
        Self::V2_2_4
    }
}

impl fmt::Display for ConsoleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v2.{}.{}", self.minor, self.patch)
    }
}

impl FromStr for ConsoleVersion {
    type Err = String;

    /// Accepts `v2.1.11`, `2.2.1` … `2.2.4` and later 2.x, and `main` (treated as v2.2.4). v2.1.9 and
    /// v2.2.0 wrote a different ai-statistics config and are not supported.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "main" {
            return Ok(Self::V2_2_4);
        }
        let unsupported =
            || format!("console version {text:?} is not supported: use v2.1.11, v2.2.1 or later (default v2.2.4)");
        let parts: Vec<u32> = text
            .trim_start_matches('v')
            .split('.')
            .map(|p| p.parse().map_err(|_| unsupported()))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [2, minor, patch] if (minor, patch) == (1, 11) || (minor == 2 && patch >= 1) || minor > 2 => {
                Ok(Self { minor, patch })
            }
            _ => Err(unsupported()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinPlugin {
    AiProxy,
    KeyAuth,
    ModelRouter,
    ModelMapper,
    /// Not internal: its CR is named `ai-statistics-<version>`.
    AiStatistics,
    /// A plugin an event may attach to its route (`route.plugins`, see [`route_plugins`]); not internal.
    Route(RoutePlugin),
}

/// A route plugin: a row of [`CATALOGUE`] not in [`NOT_ROUTE_PLUGINS`].
#[derive(Clone, Copy)]
pub struct RoutePlugin(&'static Entry);

impl PartialEq for RoutePlugin {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for RoutePlugin {}

impl fmt::Debug for RoutePlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoutePlugin({:?})", self.0.name)
    }
}

/// A plugin of the console's built-in catalogue: what its `plugins.properties` line and `spec.yaml` say,
/// as `WasmPluginServiceImpl.PluginCacheItem.buildWasmPlugin` (no language) and
/// `KubernetesModelConverter.wasmPluginToCr` put it into a new CR.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// The `plugins.properties` key: the `higress.io/wasm-plugin-name` label and the CR name's stem.
    pub name: &'static str,
    /// The image's repository under [`IMAGE_REGISTRY`] (the name, except for json-converter).
    pub image: &'static str,
    pub category: &'static str,
    /// `info.title` and `info.description`, untranslated (the console builds the CR without a language).
    pub title: &'static str,
    pub description: &'static str,
    /// `info.iconUrl`; the icon annotation is left out without one.
    pub icon: Option<&'static str>,
    /// `spec.phase` as the CR states it (`default` is `UNSPECIFIED_PHASE`).
    pub phase: &'static str,
    pub priority: u32,
    /// `(info.version, image tag)` of consoles v2.2.4 and later.
    pub since_v2_2_4: (&'static str, &'static str),
    /// `(info.version, image tag)` of consoles v2.1.11 and v2.2.1 … v2.2.3; `None`: not shipped then.
    pub before_v2_2_4: Option<(&'static str, &'static str)>,
}

/// The plugins of the console's catalogue that are not route plugins, and why:
/// * ai-proxy, key-auth, model-router, model-mapper: the mapping manages them itself in their internal
///   CRs (`<plugin>.internal`), and the console's plugin page for an AI route hides exactly these four
///   (frontend `PluginList`, `HIDDEN_PLUGINS_BY_QUERY_TYPE[AI_ROUTE]`);
/// * ai-statistics: the console shows it, but the mapping writes the route's rule in
///   `ai-statistics-<version>` itself (`--no-ai-statistics` turns that off); an event's rule for the
///   same Ingress would be the same matchRule, and the two would overwrite each other.
///
/// The console lets every other built-in plugin be bound to a route (a ROUTE instance is validated
/// for a non-empty target only, `WasmPluginInstance.validate`).
pub const NOT_ROUTE_PLUGINS: [&str; 5] = ["ai-proxy", "key-auth", "model-router", "model-mapper", "ai-statistics"];

/// The console's built-in plugin catalogue, one row per plugin, in name order (as the console sorts
/// it). Data of `backend/sdk/src/main/resources/plugins/plugins.properties` and
/// `plugins/<name>/spec.yaml` of higress-console v2.2.4, and v2.1.11, v2.2.1 … v2.2.3 for
/// `before_v2_2_4` (those four ship the same catalogue; v2.2.4 relabels most plugins and adds
/// json-converter). Pinned by `tests/fixtures/console/plugin-catalogue.yaml`. Adding a plugin is adding a
/// row; unless it is in [`NOT_ROUTE_PLUGINS`], it is a route plugin (also add it to the enum of
/// `route.plugins` in `schemas/model-deployed.schema.json`: a test compares the two).
pub static CATALOGUE: [Entry; 44] = [
    Entry {
        name: "ai-agent",
        image: "ai-agent",
        category: "ai",
        title: "AI Agent",
        description: "Quickly build intelligent agent applications with zero code, support interaction with large models and external services, and tool calls.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 200,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-cache",
        image: "ai-cache",
        category: "ai",
        title: "AI 缓存",
        description: "缓存大语言模型的响应结果，显著降低相似问题的响应时延并节省成本。",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 800,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-data-masking",
        image: "ai-data-masking",
        category: "ai",
        title: "AI data masking",
        description: "Intercept, replace, and restore sensitive information in requests/responses.",
        icon: Some(ICON_AI),
        phase: "AUTHN",
        priority: 991,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-history",
        image: "ai-history",
        category: "ai",
        title: "AI History",
        description: "Automatically cache the corresponding user's historical dialogue and automatically fill it in the context in subsequent dialogues.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 650,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-intent",
        image: "ai-intent",
        category: "ai",
        title: "AI Intent",
        description: "Intelligently assess the compatibility between a user's request and the capabilities of a specific domain or agent, thereby enhancing the effectiveness of different models and improving the user experience.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 700,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-json-resp",
        image: "ai-json-resp",
        category: "ai",
        title: "AI JSON Format",
        description: "LLM Response Structuring Plugin, designed to structure AI responses based on a default or user-configured JSON Schema, facilitating subsequent plugin processing. Note that currently, only non-streaming responses are supported.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 150,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-load-balancer",
        image: "ai-load-balancer",
        category: "ai",
        title: "AI LOAD BALANCER",
        description: "For LLM services, a hot-swapping load balancing strategy is provided. If the plugin is disabled, the load balancing strategy will degenerate into the load balancing strategy of the service itself (such as round-robin, local minimum request count, random, consistent hash, etc.).",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 50,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-prompt-decorator",
        image: "ai-prompt-decorator",
        category: "ai",
        title: "AI Prompt Decorator",
        description: "Add additional prompts before and after the user's input to simplify the interaction between the user and the large language model.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 450,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-prompt-template",
        image: "ai-prompt-template",
        category: "ai",
        title: "AI Prompt Template",
        description: "Quickly construct fixed-format prompts based on templates.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 500,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-proxy",
        image: "ai-proxy",
        category: "ai",
        title: "AI Proxy",
        description: "Provide unified OpenAI API compatible interface to call different AI service providers.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 100,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-quota",
        image: "ai-quota",
        category: "ai",
        title: "AI Quota",
        description: "Implement quota-based rate limiting according to assigned fixed quotas, while also supporting quota management capabilities, including querying, refreshing, and adjusting quotas.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 750,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-rag",
        image: "ai-rag",
        category: "ai",
        title: "AI RAG",
        description: "Simplify the development of RAG applications by integrating with Alibaba Cloud Vector Retrieval Service (DashVector) and optimize the generated content of large models.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 400,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-search",
        image: "ai-search",
        category: "ai",
        title: "AI Search",
        description: "Higress supports enhancing the accuracy and timeliness of responses from models like DeepSeek-R1 by integrating real-time results from search engines (Google/Bing/Arxiv/Elasticsearch etc.)",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 440,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-security-guard",
        image: "ai-security-guard",
        category: "ai",
        title: "AI Security Guard",
        description: "Securely check the input and output of large models based on Alibaba Cloud Content Moderation Service.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 300,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-statistics",
        image: "ai-statistics",
        category: "ai",
        title: "AI Statistics",
        description: "Provides statistics of token usage, including logs, monitoring, and alerts.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 900,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-token-ratelimit",
        image: "ai-token-ratelimit",
        category: "ai",
        title: "AI Token Rate Limit",
        description: "Implement token rate limiting based on specific keys, where the key source can be URL parameters, HTTP request headers, client IP addresses, etc.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 600,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ai-transformer",
        image: "ai-transformer",
        category: "ai",
        title: "AI Transformer",
        description: "Modify the requests/responses of the gateway in a natural language way without writing code.",
        icon: Some(ICON_AI),
        phase: "UNSPECIFIED_PHASE",
        priority: 550,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "basic-auth",
        image: "basic-auth",
        category: "auth",
        title: "Basic Auth",
        description: "implement authentication feature based on HTTP Basic Auth standard.",
        icon: Some(ICON_AUTH),
        phase: "AUTHN",
        priority: 320,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "bot-detect",
        image: "bot-detect",
        category: "security",
        title: "Bot Detect",
        description: "Identify and block resource crawling from bots on the Internet.",
        icon: Some(ICON_SECURITY),
        phase: "AUTHZ",
        priority: 310,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "cache-control",
        image: "cache-control",
        category: "transform",
        title: "Browser Cache Control",
        description: "Add Expires and Cache-Control headers to the response headers to facilitate browser caching of specific file types, such as jpg, png, and other image files.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHN",
        priority: 420,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "cluster-key-rate-limit",
        image: "cluster-key-rate-limit",
        category: "traffic",
        title: "Key Cluster Rate Limit",
        description: "Implement cluster-level rate limiting based on specific key values, which can be derived from URL parameters, HTTP request headers, client IP addresses, etc.",
        icon: Some(ICON_TRAFFIC),
        phase: "UNSPECIFIED_PHASE",
        priority: 20,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "cors",
        image: "cors",
        category: "security",
        title: "CORS",
        description: "Enables CORS (Cross-Origin Resource Sharing) HTTP response headers for the server.",
        icon: Some(ICON_SECURITY),
        phase: "AUTHZ",
        priority: 340,
        since_v2_2_4: ("2.0.2", "2.0.2"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "custom-response",
        image: "custom-response",
        category: "transform",
        title: "Custom Response",
        description: "Support configuring custom responses, including HTTP response status code, header and body.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHN",
        priority: 910,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "de-graphql",
        image: "de-graphql",
        category: "transform",
        title: "DeGraphQL",
        description: "Convert a RESTful API to a GraphQL request.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHN",
        priority: 430,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ext-auth",
        image: "ext-auth",
        category: "auth",
        title: "Ext Auth",
        description: "Sends an authentication request to an external authorization service to check whether the client request is authorized.",
        icon: Some(ICON_AUTH),
        phase: "AUTHN",
        priority: 360,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "frontend-gray",
        image: "frontend-gray",
        category: "transform",
        title: "Frontend Gray",
        description: "Implement the function of frontend user grayscale. Through this plugin, not only can it be used for business A/B experiments, but also through grayscale matching with monitoring, rollback strategies to ensure the stability of system release and operation and maintenance.",
        icon: Some(ICON_TRAFFIC),
        phase: "UNSPECIFIED_PHASE",
        priority: 450,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "geo-ip",
        image: "geo-ip",
        category: "o11y",
        title: "Geo IP",
        description: "Query the geographical location information based on the user IP, and then pass the geographical location information to subsequent plugins through request attributes and newly added request headers.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHN",
        priority: 440,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "hmac-auth",
        image: "hmac-auth",
        category: "auth",
        title: "HMAC Auth",
        description: "Generate a unforgeable signatures using HMAC algorithms and perform authentication and authorization with it.",
        icon: Some(ICON_AUTH),
        phase: "AUTHN",
        priority: 330,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "ip-restriction",
        image: "ip-restriction",
        category: "security",
        title: "IP Restriction",
        description: "Add IP addresses to a whitelist or blacklist to restrict access to services or routes.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHN",
        priority: 210,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "json-converter",
        image: "jsonrpc-converter",
        category: "transformation",
        title: "JSON CONVERTER",
        description: "Converts compatible JSON-RPC request and response payloads.",
        icon: None,
        phase: "UNSPECIFIED_PHASE",
        priority: 50,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: None,
    },
    Entry {
        name: "jwt-auth",
        image: "jwt-auth",
        category: "auth",
        title: "JWT Auth",
        description: "Implement an authentication and authorization feature based on JSON Web Tokens, which supports extracting JWT from URL parameters, request headers and cookies, and checking whether the given token is allowed to access the corresponding resource.",
        icon: Some(ICON_AUTH),
        phase: "AUTHN",
        priority: 340,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "key-auth",
        image: "key-auth",
        category: "auth",
        title: "Key Auth",
        description: "Authentication based on API Key.",
        icon: Some(ICON_AUTH),
        phase: "AUTHN",
        priority: 310,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "key-rate-limit",
        image: "key-rate-limit",
        category: "traffic",
        title: "Key Rate Limit",
        description: "Perform rate-limiting based on given keys and values, which can be extracted from URL parameters and HTTP request headers.",
        icon: Some(ICON_TRAFFIC),
        phase: "UNSPECIFIED_PHASE",
        priority: 10,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "mcp-server",
        image: "mcp-server",
        category: "ai",
        title: "MCP Server",
        description: "Host MCP servers for AI tool integration.",
        icon: Some(ICON_MCP),
        phase: "UNSPECIFIED_PHASE",
        priority: 999,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "model-mapper",
        image: "model-mapper",
        category: "ai",
        title: "AI Model Mapper",
        description: "Implements the functionality of rule-based model value mapping in the LLM protocol.",
        icon: Some(ICON_AI),
        phase: "AUTHN",
        priority: 800,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "model-router",
        image: "model-router",
        category: "ai",
        title: "AI Model Router",
        description: "Implements the functionality of routing based on the `model` parameter in the LLM protocol.",
        icon: Some(ICON_AI),
        phase: "AUTHN",
        priority: 900,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "oauth",
        image: "oauth",
        category: "auth",
        title: "OAuth2",
        description: "Authentication based on OAuth2.",
        icon: Some(ICON_AUTH),
        phase: "AUTHN",
        priority: 350,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "oidc",
        image: "oidc",
        category: "auth",
        title: "OIDC Auth",
        description: "Implement user authentication based on the OpenID Connect standard.",
        icon: Some(ICON_AUTH),
        phase: "AUTHN",
        priority: 350,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "opa",
        image: "opa",
        category: "auth",
        title: "OPA",
        description: "Implemented OPA policy control.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHN",
        priority: 225,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "request-block",
        image: "request-block",
        category: "security",
        title: "Request Block",
        description: "Block HTTP requests based on characteristics like URI and request headers, which can be used to prevent some of the resources being accessed.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHZ",
        priority: 320,
        since_v2_2_4: ("1.0.0", "2.0.0"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "request-validation",
        image: "request-validation",
        category: "traffic",
        title: "Request Validation",
        description: "Validate the requests forwarded to the upstream service in advance, which can verify the data of the request body and headers.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHN",
        priority: 220,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "traffic-tag",
        image: "traffic-tag",
        category: "traffic",
        title: "Traffic Tagging",
        description: "Mark request traffic by adding specific request headers based on weight or specific request content.",
        icon: Some(ICON_TRAFFIC),
        phase: "UNSPECIFIED_PHASE",
        priority: 400,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "transformer",
        image: "transformer",
        category: "transform",
        title: "Transformer",
        description: "Convert request/response headers, request query parameters, and request/response body parameters.",
        icon: Some(ICON_TRAFFIC),
        phase: "AUTHN",
        priority: 410,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
    Entry {
        name: "waf",
        image: "waf",
        category: "security",
        title: "WAF",
        description: "Support configuring WAF rules based on OWASP ModSecurity Core Rule Set (CRS).",
        icon: Some(ICON_SECURITY),
        phase: "AUTHZ",
        priority: 330,
        since_v2_2_4: ("2.0.1", "2.0.1"),
        before_v2_2_4: Some(("1.0.0", "2.0.0")),
    },
];

/// Every route plugin of the catalogue (of any supported console version), in name order.
pub fn route_plugins() -> impl Iterator<Item = BuiltinPlugin> {
    CATALOGUE
        .iter()
        .filter(|e| !NOT_ROUTE_PLUGINS.contains(&e.name))
        .map(|e| BuiltinPlugin::Route(RoutePlugin(e)))
}

impl BuiltinPlugin {
    /// The plugin's row of the catalogue.
    pub fn entry(self) -> &'static Entry {
        let name = match self {
            Self::Route(RoutePlugin(entry)) => return entry,
            Self::AiProxy => "ai-proxy",
            Self::KeyAuth => "key-auth",
            Self::ModelRouter => "model-router",
            Self::ModelMapper => "model-mapper",
            Self::AiStatistics => "ai-statistics",
        };
        let index = CATALOGUE.binary_search_by(|e| e.name.cmp(name));
        &CATALOGUE[index.expect("the mapping's own plugins are in the catalogue")]
    }

    /// The route plugin of the catalogue with this name (see [`route_plugins`]), whichever console
    /// version ships it (see [`BuiltinPlugin::shipped_by`]).
    pub fn route_plugin(name: &str) -> Option<BuiltinPlugin> {
        // Looked up for every plugin CR a deploy reads: the table is in name order.
        let entry = &CATALOGUE[CATALOGUE.binary_search_by(|e| e.name.cmp(name)).ok()?];
        (!NOT_ROUTE_PLUGINS.contains(&name)).then_some(BuiltinPlugin::Route(RoutePlugin(entry)))
    }

    /// Whether this console version's catalogue has the plugin (json-converter: v2.2.4 and later).
    pub fn shipped_by(self, console: ConsoleVersion) -> bool {
        console.ships_v2_2_4_catalogue() || self.entry().before_v2_2_4.is_some()
    }

    /// Whether the console keeps the plugin in an internal CR `<plugin>.internal`.
    fn is_internal(self) -> bool {
        matches!(
            self,
            Self::AiProxy | Self::KeyAuth | Self::ModelRouter | Self::ModelMapper
        )
    }

    pub fn plugin_name(self) -> &'static str {
        self.entry().name
    }

    /// `higress.io/wasm-plugin-version` label and image tag for a console version (for a plugin the
    /// version does not ship, those of v2.2.4: callers check [`BuiltinPlugin::shipped_by`] first).
    fn version_and_tag(self, console: ConsoleVersion) -> (&'static str, &'static str) {
        let entry = self.entry();
        match entry.before_v2_2_4 {
            Some(before) if !console.ships_v2_2_4_catalogue() => before,
            _ => entry.since_v2_2_4,
        }
    }

    /// The CR name: `<plugin>.internal`, or `<plugin>-<version>` for a non-internal one (ai-statistics,
    /// the route plugins).
    pub fn cr_name(self, console: ConsoleVersion) -> String {
        if self.is_internal() {
            format!("{}.internal", self.plugin_name())
        } else {
            format!("{}-{}", self.plugin_name(), self.version_and_tag(console).0)
        }
    }

    /// The built-in plugin whose internal CR has this name (`ai-proxy.internal` → `AiProxy`).
    pub fn of_internal_cr(name: &str) -> Option<BuiltinPlugin> {
        let plugin = name.strip_suffix(".internal")?;
        [Self::AiProxy, Self::KeyAuth, Self::ModelRouter, Self::ModelMapper]
            .into_iter()
            .find(|p| p.plugin_name() == plugin)
    }

    /// The whole CR as the console creates it when it is missing, with no global config and no rules.
    pub fn new_cr(self, console: ConsoleVersion, namespace: &str) -> Value {
        let c = self.entry();
        let (version, tag) = self.version_and_tag(console);
        let name = self.cr_name(console);
        let internal = names::is_internal(&name);
        let mut labels = Map::new();
        labels.insert("higress.io/wasm-plugin-name".into(), c.name.into());
        labels.insert("higress.io/wasm-plugin-version".into(), version.into());
        labels.insert("higress.io/wasm-plugin-category".into(), c.category.into());
        labels.insert("higress.io/wasm-plugin-built-in".into(), "true".into());
        labels.insert(LABEL_DEFINER.into(), "higress".into());
        let mut annotations = Map::new();
        annotations.insert("higress.io/wasm-plugin-title".into(), c.title.into());
        annotations.insert("higress.io/wasm-plugin-description".into(), c.description.into());
        if let Some(icon) = c.icon {
            annotations.insert("higress.io/wasm-plugin-icon".into(), icon.into());
        }
        if internal {
            labels.insert(LABEL_INTERNAL.into(), "true".into());
            annotations.insert(ANNOTATION_COMMENT.into(), COMMENT.into());
        }
        json!({
            "apiVersion": Kind::WasmPlugin.api_version(),
            "kind": "WasmPlugin",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
            "spec": {
                "defaultConfigDisable": true,
                "failStrategy": "FAIL_OPEN",
                "imagePullPolicy": "UNSPECIFIED_POLICY",
                "phase": c.phase,
                "priority": c.priority,
                "url": format!("{IMAGE_REGISTRY}/{}:{tag}", c.image),
            }
        })
    }
}

/// The target lists that identify a matchRule (`keyEquals`: compared as sets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub service: Vec<String>,
    pub ingress: Vec<String>,
    pub domain: Vec<String>,
}

impl Targets {
    pub fn ingress(name: &str) -> Self {
        Self {
            ingress: vec![name.to_string()],
            ..Self::default()
        }
    }

    pub fn service(name: &str) -> Self {
        Self {
            service: vec![name.to_string()],
            ..Self::default()
        }
    }

    pub fn of(rule: &Value) -> Self {
        let list = |key: &str| -> Vec<String> {
            rule.get(key)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        Self {
            service: list("service"),
            ingress: list("ingress"),
            domain: list("domain"),
        }
    }

    /// Whether a rule has these targets (compared as sets), without copying the rule's lists: rules
    /// are matched against every rule of a plugin, thousands of times in a batch.
    pub fn matches(&self, rule: &Value) -> bool {
        [
            ("service", &self.service),
            ("ingress", &self.ingress),
            ("domain", &self.domain),
        ]
        .into_iter()
        .all(|(key, ours)| same_set(target_list(rule, key), ours))
    }

    /// Whether a rule's only target is `value` in the list `key`.
    pub fn is_exactly(rule: &Value, key: &str, value: &str) -> bool {
        ["service", "ingress", "domain"].into_iter().all(|list| {
            let mut items = target_list(rule, list);
            if list == key {
                items.next() == Some(value) && items.all(|i| i == value)
            } else {
                items.next().is_none()
            }
        })
    }

    /// A rule in the console's JSON shape: `config`, `configDisable`, then the non-empty target lists.
    pub fn rule(&self, config: Value, enabled: bool) -> Value {
        let mut rule = Map::new();
        rule.insert("config".into(), config);
        rule.insert("configDisable".into(), Value::Bool(!enabled));
        for (key, list) in [
            ("domain", &self.domain),
            ("ingress", &self.ingress),
            ("service", &self.service),
        ] {
            if !list.is_empty() {
                rule.insert(key.into(), json!(list));
            }
        }
        Value::Object(rule)
    }
}

/// A field of a small JSON object. Entries (rules, consumers, registries) have a handful of keys;
/// comparing them beats hashing the key, and these lookups run for every entry of every edit.
pub fn field<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    let map = object.as_object()?;
    if map.len() <= 8 {
        map.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        map.get(key)
    }
}

pub(super) fn target_list<'a>(rule: &'a Value, key: &str) -> impl Iterator<Item = &'a str> + Clone {
    field(rule, key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn same_set<'a>(items: impl Iterator<Item = &'a str> + Clone, ours: &[String]) -> bool {
    items.clone().all(|i| ours.iter().any(|o| o == i)) && ours.iter().all(|o| items.clone().any(|i| i == o))
}

/// `compareMatchRules`: rules with services first (by service list), then ingress rules (by ingress
/// list), then domain rules (by domain list), then rules without targets. Rules with equal service
/// lists go on to their ingresses, then their domains, in the same way: two routes' model-mapper
/// rules on one upstream are in the order of their Ingresses.
pub fn compare_rules(a: &Value, b: &Value) -> Ordering {
    const KEYS: [&str; 3] = ["service", "ingress", "domain"];
    let has = |rule: &Value, key: &str| target_list(rule, key).next().is_some();
    let empty = |rule: &Value| !KEYS.iter().any(|key| has(rule, key));
    if empty(a) || empty(b) {
        return empty(a).cmp(&empty(b));
    }
    for key in KEYS {
        let order = match (has(a, key), has(b, key)) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => target_list(a, key).cmp(target_list(b, key)),
        };
        if order.is_ne() {
            return order;
        }
    }
    Ordering::Equal
}

/// A key-auth consumer entry as `KeyAuthCredentialHandler.saveConsumer` writes it.
pub fn consumer_entry(name: &str, source: KeySource, key: Option<&str>, values: &[SecretString]) -> Value {
    let (keys, in_header, credentials): (String, bool, Vec<String>) = match source {
        KeySource::Bearer => (
            "Authorization".into(),
            true,
            values.iter().map(|v| format!("Bearer {}", v.expose())).collect(),
        ),
        KeySource::Header => (
            key.unwrap_or_default().into(),
            true,
            values.iter().map(|v| v.expose().to_string()).collect(),
        ),
        KeySource::Query => (
            key.unwrap_or_default().into(),
            false,
            values.iter().map(|v| v.expose().to_string()).collect(),
        ),
    };
    json!({"name": name, "keys": [keys], "in_header": in_header, "in_query": !in_header, "credentials": credentials})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_versions_parse_and_pick_the_label_generation() {
        let v224: ConsoleVersion = "v2.2.4".parse().unwrap();
        assert_eq!(v224, ConsoleVersion::default());
        assert_eq!("main".parse::<ConsoleVersion>().unwrap(), v224);
        let v223: ConsoleVersion = "2.2.3".parse().unwrap();
        let cr = BuiltinPlugin::AiProxy.new_cr(v223, "higress-system");
        assert_eq!(cr["metadata"]["labels"]["higress.io/wasm-plugin-version"], "1.0.0");
        assert!(cr["spec"]["url"].as_str().unwrap().ends_with("/ai-proxy:2.0.0"));
        assert_eq!(BuiltinPlugin::AiStatistics.cr_name(v223), "ai-statistics-1.0.0");
        assert_eq!(BuiltinPlugin::AiStatistics.cr_name(v224), "ai-statistics-2.0.1");
        assert_eq!(
            "v2.1.11"
                .parse::<ConsoleVersion>()
                .unwrap()
                .proxy_next_upstream_timeout(),
            120_000
        );
        assert_eq!(v224.proxy_next_upstream_timeout(), 120);
        for unsupported in ["v2.1.9", "2.2.0", "1.0.0", "latest"] {
            assert!(unsupported.parse::<ConsoleVersion>().is_err(), "{unsupported}");
        }
    }

    #[test]
    fn the_catalogue_is_sorted_and_holds_the_mappings_own_plugins() {
        let names: Vec<&str> = CATALOGUE.iter().map(|e| e.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "in name order, each once");
        for plugin in [
            BuiltinPlugin::AiProxy,
            BuiltinPlugin::KeyAuth,
            BuiltinPlugin::ModelRouter,
            BuiltinPlugin::ModelMapper,
            BuiltinPlugin::AiStatistics,
        ] {
            assert!(NOT_ROUTE_PLUGINS.contains(&plugin.plugin_name()));
            assert_eq!(BuiltinPlugin::route_plugin(plugin.plugin_name()), None);
        }
        for excluded in NOT_ROUTE_PLUGINS {
            assert!(names.contains(&excluded), "{excluded}");
        }
        assert_eq!(route_plugins().count(), CATALOGUE.len() - NOT_ROUTE_PLUGINS.len());
        let v223: ConsoleVersion = "v2.2.3".parse().unwrap();
        let json_converter = BuiltinPlugin::route_plugin("json-converter").unwrap();
        assert!(json_converter.shipped_by(ConsoleVersion::V2_2_4));
        assert!(!json_converter.shipped_by(v223));
        let cr = json_converter.new_cr(ConsoleVersion::V2_2_4, "higress-system");
        assert_eq!(
            cr["spec"]["url"],
            "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/jsonrpc-converter:2.0.1"
        );
        assert!(cr["metadata"]["annotations"]
            .get("higress.io/wasm-plugin-icon")
            .is_none());
    }

    /// README ("Route plugins"): the v2.2.4 catalogue has 44 plugins, 39 of which an event may name
    /// (38 before v2.2.4, without json-converter). Counted with the checks of the contract (`route_plugin`)
    /// and of the mapping (`shipped_by`).
    #[test]
    fn the_catalogue_has_44_plugins_of_which_39_may_be_named() {
        assert_eq!(CATALOGUE.len(), 44);
        let nameable = |console: ConsoleVersion| {
            CATALOGUE
                .iter()
                .filter_map(|entry| BuiltinPlugin::route_plugin(entry.name))
                .filter(|plugin| plugin.shipped_by(console))
                .count()
        };
        assert_eq!(nameable(ConsoleVersion::V2_2_4), 39);
        assert_eq!(nameable("v2.2.3".parse().unwrap()), 38);
    }

    #[test]
    fn rules_sort_services_then_ingresses_then_domains() {
        let mut rules = [
            json!({"domain": ["a.com"]}),
            json!({"ingress": ["ai-route-b.internal"]}),
            json!({"config": {}}),
            json!({"service": ["llm-z.internal.dns"]}),
            json!({"ingress": ["ai-route-a.internal"], "service": ["llm-a.internal.dns"]}),
            json!({"ingress": ["ai-route-a.internal"]}),
        ];
        rules.sort_by(compare_rules);
        let order: Vec<Targets> = rules.iter().map(Targets::of).collect();
        assert_eq!(order[0].service, ["llm-a.internal.dns"]);
        assert_eq!(order[1].service, ["llm-z.internal.dns"]);
        assert_eq!(order[2].ingress, ["ai-route-a.internal"]);
        assert_eq!(order[3].ingress, ["ai-route-b.internal"]);
        assert_eq!(order[4].domain, ["a.com"]);
        assert_eq!(order[5], Targets::default());
        // Equal services: by ingress (the console's order, whatever order they were added in).
        let mut rules = [
            json!({"ingress": ["ai-route-b.internal"], "service": ["llm-p.internal.dns"]}),
            json!({"service": ["llm-p.internal.dns"]}),
            json!({"ingress": ["ai-route-a.internal"], "service": ["llm-p.internal.dns"]}),
        ];
        rules.sort_by(compare_rules);
        let ingresses: Vec<Vec<String>> = rules.iter().map(|r| Targets::of(r).ingress).collect();
        assert_eq!(
            ingresses,
            [
                vec!["ai-route-a.internal".to_string()],
                vec!["ai-route-b.internal".to_string()],
                vec![]
            ]
        );
    }

    #[test]
    fn targets_are_compared_as_sets() {
        let a = Targets {
            ingress: vec!["x".into(), "y".into()],
            ..Targets::default()
        };
        assert!(a.matches(&json!({"ingress": ["y", "x"]})));
        assert!(!a.matches(&json!({"ingress": ["x"]})));
        assert!(!a.matches(&json!({"ingress": ["x", "y"], "service": ["s"]})));
        assert!(Targets::is_exactly(&json!({"service": ["s"]}), "service", "s"));
        assert!(!Targets::is_exactly(
            &json!({"service": ["s"], "ingress": ["i"]}),
            "service",
            "s"
        ));
    }
}
