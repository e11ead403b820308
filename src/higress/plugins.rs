//! Built-in WasmPlugin CRs as the console creates them (spec 2.4), per console version, and the
//! console's matchRule identity and ordering.

use super::names::{self, ANNOTATION_COMMENT, COMMENT, LABEL_DEFINER, LABEL_INTERNAL};
use super::state::Kind;
use crate::event::KeySource;
use crate::secret::SecretString;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

const IMAGE_REGISTRY: &str = "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins";
const ICON_AI: &str = "https://img.alicdn.com/imgextra/i1/O1CN018iKKih1iVx287RltL_!!6000000004419-2-tps-42-42.png";
const ICON_AUTH: &str = "https://img.alicdn.com/imgextra/i4/O1CN01BPFGlT1pGZ2VDLgaH_!!6000000005333-2-tps-42-42.png";

/// The console release whose conventions we write. Versions differ in plugin version labels and
/// image tags (2.2.4 and later vs. older), and in the proxy-next-upstream timeout default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsoleVersion {
    minor: u32,
    patch: u32,
}

impl ConsoleVersion {
    pub const V2_2_4: ConsoleVersion = ConsoleVersion { minor: 2, patch: 4 };

    /// v2.2.4 (and main) label the catalogue plugins 2.0.1; earlier consoles label them 1.0.0.
    fn uses_2_0_1_catalogue(self) -> bool {
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
    /// Route plugins events may attach (`route.plugins`, see [`ROUTE_PLUGINS`]); not internal.
    AiTokenRatelimit,
    AiQuota,
}

/// The plugins of the console's built-in catalogue an event may attach to its route
/// (`route.plugins`), as a ROUTE instance in the non-internal CR `<plugin>-<version>`. Only plugins
/// whose catalogue entry was checked in the console's sources (`plugins/plugins.properties` and
/// `plugins/<name>/spec.yaml` at v2.1.11, v2.2.1 … v2.2.4 and main; pinned by
/// `tests/fixtures/console/route-plugins.yaml`) are listed. The internal plugins the mapping
/// manages itself (ai-proxy, key-auth, model-router, model-mapper), which the console's AI route
/// plugin page hides too, and ai-statistics (bound by `--no-ai-statistics`) are not.
pub const ROUTE_PLUGINS: [BuiltinPlugin; 2] = [BuiltinPlugin::AiTokenRatelimit, BuiltinPlugin::AiQuota];

struct Catalogue {
    name: &'static str,
    category: &'static str,
    title: &'static str,
    description: &'static str,
    icon: &'static str,
    phase: &'static str,
    priority: u32,
}

impl BuiltinPlugin {
    fn catalogue(self) -> Catalogue {
        match self {
            Self::AiProxy => Catalogue {
                name: "ai-proxy",
                category: "ai",
                title: "AI Proxy",
                description: "Provide unified OpenAI API compatible interface to call different AI service providers.",
                icon: ICON_AI,
                phase: "UNSPECIFIED_PHASE",
                priority: 100,
            },
            Self::KeyAuth => Catalogue {
                name: "key-auth",
                category: "auth",
                title: "Key Auth",
                description: "Authentication based on API Key.",
                icon: ICON_AUTH,
                phase: "AUTHN",
                priority: 310,
            },
            Self::ModelRouter => Catalogue {
                name: "model-router",
                category: "ai",
                title: "AI Model Router",
                description:
                    "Implements the functionality of routing based on the `model` parameter in the LLM protocol.",
                icon: ICON_AI,
                phase: "AUTHN",
                priority: 900,
            },
            Self::ModelMapper => Catalogue {
                name: "model-mapper",
                category: "ai",
                title: "AI Model Mapper",
                description: "Implements the functionality of rule-based model value mapping in the LLM protocol.",
                icon: ICON_AI,
                phase: "AUTHN",
                priority: 800,
            },
            Self::AiStatistics => Catalogue {
                name: "ai-statistics",
                category: "ai",
                title: "AI Statistics",
                description: "Provides statistics of token usage, including logs, monitoring, and alerts.",
                icon: ICON_AI,
                phase: "UNSPECIFIED_PHASE",
                priority: 900,
            },
            // spec.yaml `phase: default` is UNSPECIFIED_PHASE (spec 2.4).
            Self::AiTokenRatelimit => Catalogue {
                name: "ai-token-ratelimit",
                category: "ai",
                title: "AI Token Rate Limit",
                description: "Implement token rate limiting based on specific keys, where the key source can be URL parameters, HTTP request headers, client IP addresses, etc.",
                icon: ICON_AI,
                phase: "UNSPECIFIED_PHASE",
                priority: 600,
            },
            Self::AiQuota => Catalogue {
                name: "ai-quota",
                category: "ai",
                title: "AI Quota",
                description: "Implement quota-based rate limiting according to assigned fixed quotas, while also supporting quota management capabilities, including querying, refreshing, and adjusting quotas.",
                icon: ICON_AI,
                phase: "UNSPECIFIED_PHASE",
                priority: 750,
            },
        }
    }

    /// The route plugin of the catalogue with this name (see [`ROUTE_PLUGINS`]).
    pub fn route_plugin(name: &str) -> Option<BuiltinPlugin> {
        ROUTE_PLUGINS.into_iter().find(|p| p.plugin_name() == name)
    }

    /// Whether the console keeps the plugin in an internal CR `<plugin>.internal`.
    fn is_internal(self) -> bool {
        matches!(
            self,
            Self::AiProxy | Self::KeyAuth | Self::ModelRouter | Self::ModelMapper
        )
    }

    pub fn plugin_name(self) -> &'static str {
        self.catalogue().name
    }

    /// `higress.io/wasm-plugin-version` label and image tag for a console version.
    fn version_and_tag(self, console: ConsoleVersion) -> (&'static str, &'static str) {
        match (self, console.uses_2_0_1_catalogue()) {
            (Self::KeyAuth, _) => ("1.0.0", "2.0.0"),
            (_, true) => ("2.0.1", "2.0.1"),
            (_, false) => ("1.0.0", "2.0.0"),
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
        let c = self.catalogue();
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
        annotations.insert("higress.io/wasm-plugin-icon".into(), c.icon.into());
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
                "url": format!("{IMAGE_REGISTRY}/{}:{tag}", c.name),
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
/// list), then domain rules (by domain list), then rules without targets.
pub fn compare_rules(a: &Value, b: &Value) -> Ordering {
    let group = |rule: &'_ Value| -> (u8, &'static str) {
        for (rank, key) in [(0, "service"), (1, "ingress"), (2, "domain")] {
            if target_list(rule, key).next().is_some() {
                return (rank, key);
            }
        }
        (3, "")
    };
    let ((rank_a, key), (rank_b, _)) = (group(a), group(b));
    rank_a
        .cmp(&rank_b)
        .then_with(|| target_list(a, key).cmp(target_list(b, key)))
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
