//! The lifecycle events, as types: what a valid CloudEvent of the contract says.
//!
//! Only types live here; they import nothing of the project but [`SecretString`]. Reading bytes
//! into these types, with every rule of the published contract checked, is
//! [`crate::contract::parse`]: validation depends on the events, not the other way round.

use crate::secret::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

pub const DEPLOYED_TYPE: &str = "io.higress.model.deployed.v1";
pub const RETIRED_TYPE: &str = "io.higress.model.retired.v1";
pub const RESULT_TYPE: &str = "io.higress.model.route.result.v1";

/// CloudEvents context attributes we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: Option<String>,
    /// The distributed-tracing extension (`traceparent`, `tracestate`), carried onto the result.
    pub trace: Option<TraceContext>,
}

/// W3C Trace Context as CloudEvents carry it (the distributed-tracing extension attributes), in the
/// formats the contract checks: `traceparent` in the version-00 layout, `tracestate` a bounded list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
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
    // Fallback, predicates, custom annotations and labels (issue #14, items 1-3).
    #[serde(default)]
    pub fallback: Option<FallbackSpec>,
    #[serde(default)]
    pub header_predicates: Vec<KeyedPredicate>,
    #[serde(default)]
    pub url_param_predicates: Vec<KeyedPredicate>,
    /// Annotation key → value, in the event's order (the console keeps the order it was given).
    #[serde(default)]
    pub custom_configs: Map<String, Value>,
    /// Label key → value, in the event's order.
    #[serde(default)]
    pub custom_labels: Map<String, Value>,
    /// Plugins of the console's catalogue bound to the route, by name: each config verbatim (it may
    /// hold a Redis password, so `Debug` shows the keys only).
    #[serde(default)]
    pub plugins: BTreeMap<String, RawConfig>,
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
            fallback: None,
            header_predicates: Vec::new(),
            url_param_predicates: Vec::new(),
            custom_configs: Map::new(),
            custom_labels: Map::new(),
            plugins: BTreeMap::new(),
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

/// Where requests go when the route's upstreams answer with one of `response_codes`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FallbackSpec {
    pub upstreams: Vec<FallbackUpstreamSpec>,
    #[serde(default)]
    pub strategy: FallbackStrategy,
    pub response_codes: Vec<ResponseCodeClass>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FallbackUpstreamSpec {
    pub provider: String,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub model_mapping: Map<String, Value>,
}

/// `RAND`: every fallback upstream, equally weighted; `SEQ`: the first one only.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum FallbackStrategy {
    #[default]
    Rand,
    Seq,
}

impl FallbackStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rand => "RAND",
            Self::Seq => "SEQ",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum ResponseCodeClass {
    #[serde(rename = "4xx")]
    ClientError,
    #[serde(rename = "5xx")]
    ServerError,
}

impl ResponseCodeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
        }
    }
}

/// A header or URL-parameter match of the route.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyedPredicate {
    pub key: String,
    pub match_type: KeyedMatch,
    pub match_value: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyedMatch {
    Equal,
    Pre,
    Regular,
}

impl KeyedMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "EQUAL",
            Self::Pre => "PRE",
            Self::Regular => "REGULAR",
        }
    }
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

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
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
