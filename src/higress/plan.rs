//! From one lifecycle event and the current objects to the steps that bring the cluster to the
//! desired state: whole owned objects to put or delete, entry-level edits of shared objects, in a
//! write order that never exposes a half-built route. Pure: no I/O.

use super::names::{self, LABEL_DEFINER};
use super::ops::{self, EditRefused, Op};
use super::plugins::{BuiltinPlugin, ConsoleVersion, Targets};
use super::provider;
use super::route::{self, AiRoute, AiUpstream, AuthConfig, IngressContext, PathPredicate};
use super::state::{annotation, label, Kind, ObjectKey, State};
use crate::event::{KeySource, Lifecycle, LifecycleEvent, ModelDeployed, ModelRetired, SecretRef};
use crate::secret::SecretString;
use serde_json::{json, Value};

/// How the mapping writes, beyond the event itself.
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub console: ConsoleVersion,
    pub ingress_class: String,
    /// Bind new routes to ai-statistics, as the console does by default (`AI_ROUTE_AUTO_ENABLE_AI_STATS`).
    pub ai_statistics: bool,
    /// Enable model-router for routes with model predicates (`AI_ROUTE_AUTO_ENABLE_MODEL_ROUTER`).
    pub model_router: bool,
    /// How long a retired model's tombstone is kept.
    pub tombstone_ttl: chrono::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: names::DEFAULT_NAMESPACE.into(),
            console: ConsoleVersion::default(),
            ingress_class: names::INGRESS_CLASS.into(),
            ai_statistics: true,
            model_router: true,
            tombstone_ttl: chrono::Duration::days(7),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Entry-level edits of a shared object; `template` creates it when missing.
    Edit {
        template: Option<Template>,
        ops: Vec<Op>,
    },
    /// An owned object, written whole.
    Put(Value),
    /// Created when missing, left alone when present (domain ConfigMaps: existing settings win).
    CreateIfMissing(Value),
    Delete,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub key: ObjectKey,
    pub action: Action,
}

impl Step {
    /// Position in the write order. Traffic reaches a route only through its Ingress, so: fence
    /// first; retired Ingresses go before anything they use; domains, providers, consumers and
    /// plugin rules (auth!) are in place before a new Ingress; the ConfigMap the console lists
    /// routes by comes last.
    pub fn rank(&self) -> u8 {
        match (&self.action, self.key.kind) {
            (_, Kind::ConfigMap) if self.key.name == names::TOMBSTONES => 0,
            (Action::Delete, Kind::Ingress | Kind::EnvoyFilter) => 1,
            (Action::Delete, _) => 2,
            (_, Kind::ConfigMap) if self.key.name.starts_with("domain-") => 3,
            (_, Kind::McpBridge) => 4,
            (_, Kind::WasmPlugin) => match self.key.name.as_str() {
                "ai-proxy.internal" => 5,
                "key-auth.internal" => 6,
                "model-mapper.internal" => 7,
                "model-router.internal" => 8,
                _ => 9,
            },
            (_, Kind::Ingress) => 10,
            _ => 11,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

impl Plan {
    fn edit(&mut self, key: ObjectKey, template: Option<Template>, op: Op) {
        if let Some(Step {
            action: Action::Edit { template: t, ops },
            ..
        }) = self.steps.iter_mut().find(|s| s.key == key)
        {
            if t.is_none() {
                *t = template;
            }
            ops.push(op);
            return;
        }
        self.steps.push(Step {
            key,
            action: Action::Edit {
                template,
                ops: vec![op],
            },
        });
    }

    fn put(&mut self, object: Value) {
        self.push(object, Action::Put)
    }

    fn push(&mut self, object: Value, action: impl FnOnce(Value) -> Action) {
        let kind = Kind::from_api(
            object["apiVersion"].as_str().unwrap_or_default(),
            object["kind"].as_str().unwrap_or_default(),
        )
        .expect("the mapping only builds known kinds");
        let key = ObjectKey::new(kind, object["metadata"]["name"].as_str().unwrap_or_default());
        self.steps.push(Step {
            key,
            action: action(object),
        });
    }

    fn delete(&mut self, kind: Kind, name: String) {
        self.steps.push(Step {
            key: ObjectKey::new(kind, name),
            action: Action::Delete,
        });
    }

    /// Steps in write order (stable: the mapping's order within a rank).
    pub fn sorted(mut self) -> Self {
        self.steps.sort_by_key(Step::rank);
        self
    }
}

/// How a missing shared object is created: described, and built only when needed (a batch holds
/// thousands of steps).
#[derive(Clone, Debug, PartialEq)]
pub enum Template {
    Plugin {
        plugin: BuiltinPlugin,
        console: ConsoleVersion,
        namespace: String,
    },
    McpBridge {
        namespace: String,
    },
    Tombstones {
        namespace: String,
    },
}

impl Template {
    pub fn build(&self) -> Value {
        match self {
            Template::Plugin {
                plugin,
                console,
                namespace,
            } => plugin.new_cr(*console, namespace),
            Template::McpBridge { namespace } => new_mcp_bridge(namespace),
            Template::Tombstones { namespace } => new_tombstones(namespace),
        }
    }

    fn plugin(plugin: BuiltinPlugin, settings: &Settings) -> Option<Template> {
        Some(Template::Plugin {
            plugin,
            console: settings.console,
            namespace: settings.namespace.clone(),
        })
    }
}

/// What the mapping decided for an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Apply(Plan),
    /// The route has already seen a newer revision (or the model was retired at a newer one).
    Stale {
        seen: u64,
    },
}

/// Why the event cannot be applied; nothing is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A short CamelCase code (`UnknownProvider`, `SecretNotFound`, …).
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl From<EditRefused> for Refusal {
    fn from(refused: EditRefused) -> Self {
        Refusal::new("Conflict", refused.0)
    }
}

pub fn plan(
    event: &LifecycleEvent,
    state: &State,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Decision, Refusal> {
    let route_revision = state
        .get_named(Kind::ConfigMap, &names::route_config_map(event.model()))
        .and_then(|cm| annotation(cm, names::ANNOTATION_REVISION))
        .and_then(|r| r.parse::<u64>().ok());
    let tombstone_revision = state
        .get_named(Kind::ConfigMap, names::TOMBSTONES)
        .and_then(|t| ops::tombstone_revision(t, event.model()));
    let revision = event.revision();
    // An equal revision is a replay of the same event: it is applied again (and changes nothing when
    // the first run finished), so a retry after a partial failure completes the job.
    let stale = match &event.body {
        Lifecycle::Deployed(_) => {
            route_revision.is_some_and(|r| r > revision) || tombstone_revision.is_some_and(|t| t >= revision)
        }
        Lifecycle::Retired(_) => {
            route_revision.is_some_and(|r| r > revision) || tombstone_revision.is_some_and(|t| t > revision)
        }
    };
    if stale {
        let seen = route_revision
            .into_iter()
            .chain(tombstone_revision)
            .max()
            .unwrap_or_default();
        return Ok(Decision::Stale { seen });
    }
    let plan = match &event.body {
        Lifecycle::Deployed(deployed) => plan_deploy(deployed, state, settings, tombstone_revision.is_some())?,
        Lifecycle::Retired(retired) => plan_retire(retired, state, settings, now),
    };
    Ok(Decision::Apply(plan.sorted()))
}

fn secret_value(state: &State, secret: &SecretRef, path: &str) -> Result<SecretString, Refusal> {
    let missing = || {
        Refusal::new(
            "SecretNotFound",
            format!("{path}: key {:?} of Secret {:?} not found", secret.key, secret.name),
        )
    };
    let object = state.get_named(Kind::Secret, &secret.name).ok_or_else(missing)?;
    if let Some(plain) = object
        .pointer("/stringData")
        .and_then(|d| d.get(&secret.key))
        .and_then(Value::as_str)
    {
        return Ok(SecretString::new(plain.trim()));
    }
    let encoded = object
        .pointer("/data")
        .and_then(|d| d.get(&secret.key))
        .and_then(Value::as_str)
        .ok_or_else(missing)?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| {
        Refusal::new(
            "SecretInvalid",
            format!("{path}: key {:?} of Secret {:?} is not base64", secret.key, secret.name),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Refusal::new(
            "SecretInvalid",
            format!("{path}: key {:?} of Secret {:?} is not UTF-8", secret.key, secret.name),
        )
    })?;
    Ok(SecretString::new(text.trim()))
}

/// Service and `service:port` of a provider already in the cluster, as the console derives them.
fn existing_upstream(state: &State, provider: &str) -> Option<(String, u16)> {
    let entry = state
        .get_named(Kind::WasmPlugin, "ai-proxy.internal")?
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

fn new_mcp_bridge(namespace: &str) -> Value {
    json!({
        "apiVersion": Kind::McpBridge.api_version(),
        "kind": "McpBridge",
        "metadata": {"name": names::MCP_BRIDGE, "namespace": namespace},
        "spec": {"registries": [], "proxies": []}
    })
}

fn new_tombstones(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names::TOMBSTONES, "namespace": namespace, "labels": {names::LABEL_MANAGED_BY: names::MANAGER}},
        "data": {}
    })
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

fn domain_config_map(domain: &str, namespace: &str, https: Option<&crate::event::HttpsSpec>) -> Value {
    let mut data = json!({"domain": domain, "enableHttps": https.map_or("off", |h| h.mode.as_str())});
    if let Some(cert) = https
        .and_then(|h| h.cert.as_deref())
        .filter(|_| https.is_some_and(|h| h.mode != crate::event::HttpsMode::Off))
    {
        data["cert"] = json!(cert);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names::domain_config_map(domain),
            "namespace": namespace,
            "labels": {names::LABEL_CONFIG_MAP_TYPE: "domain", LABEL_DEFINER: "higress"}
        },
        "data": data
    })
}

/// The console's AI route for a deploy event, shaped as the console UI sends it.
pub fn ai_route(event: &ModelDeployed) -> AiRoute {
    let upstreams = event
        .upstreams()
        .into_iter()
        .map(|u| AiUpstream {
            provider: u.provider,
            weight: Some(u.weight),
            model_mapping: Some(u.model_mapping),
        })
        .collect();
    let auth = event.auth.as_ref();
    AiRoute {
        name: event.model.clone(),
        domains: Some(event.route.domains.clone()),
        path_predicate: Some(PathPredicate {
            match_type: "PRE".into(),
            match_value: event.route.path.clone(),
            case_sensitive: None,
        }),
        header_predicates: Some(Vec::new()),
        url_param_predicates: Some(Vec::new()),
        upstreams,
        model_predicates: Some(
            event
                .route
                .model_predicates
                .iter()
                .map(|p| route::ModelPredicate {
                    match_type: match p.match_type {
                        crate::event::PredicateMatch::Equal => "EQUAL".into(),
                        crate::event::PredicateMatch::Pre => "PRE".into(),
                    },
                    match_value: p.match_value.clone(),
                })
                .collect(),
        ),
        auth_config: Some(AuthConfig {
            enabled: auth.is_some_and(|a| a.enabled),
            allowed_credential_types: None,
            allowed_consumers: Some(auth.map(|a| a.allow_list()).unwrap_or_default()),
        }),
        fallback_config: Some(route::FallbackConfig {
            enabled: false,
            upstreams: None,
            fallback_strategy: None,
            response_codes: None,
        }),
        ..AiRoute::default()
    }
}

fn plan_deploy(event: &ModelDeployed, state: &State, settings: &Settings, tombstoned: bool) -> Result<Plan, Refusal> {
    let ns = settings.namespace.as_str();
    let console = settings.console;
    let mut plan = Plan::default();

    // Provider: McpBridge registry, ai-proxy entry and service rule.
    let tokens = match &event.provider.api_tokens_secret_ref {
        Some(secret) => vec![secret_value(state, secret, "data.provider.apiTokensSecretRef")?],
        None => event.provider.api_tokens.clone(),
    };
    let provider_name = event.provider_name();
    let llm_provider = provider::from_event(
        &event.provider,
        provider_name,
        tokens.iter().map(|t| t.expose().to_string()).collect(),
    )
    .map_err(|m| Refusal::new("InvalidProvider", format!("data.provider: {m}")))?;
    let provider =
        provider::render(&llm_provider).map_err(|m| Refusal::new("InvalidProvider", format!("data.provider: {m}")))?;

    // Domains: created only when missing; existing settings win. The route's TLS comes from them.
    let mut route_domains = State::new();
    if let Some(default) = state.get_named(Kind::ConfigMap, &names::domain_config_map(names::DEFAULT_DOMAIN)) {
        route_domains.insert_object(default.clone());
    }
    for domain in &event.route.domains {
        let desired = domain_config_map(domain, ns, event.route.https.as_ref());
        match state.get_named(Kind::ConfigMap, &names::domain_config_map(domain)) {
            Some(existing) => {
                route_domains.insert_object(existing.clone());
                let field = |o: &Value, k: &str| {
                    o.pointer(&format!("/data/{k}"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                if event.route.https.is_some()
                    && (field(existing, "enableHttps").unwrap_or_else(|| "off".into())
                        != field(&desired, "enableHttps").unwrap_or_default()
                        || field(existing, "cert") != field(&desired, "cert"))
                {
                    plan.warnings.push(format!(
                        "domain {domain} already exists with other HTTPS settings; the existing settings are kept"
                    ));
                }
            }
            None => {
                route_domains.insert_object(desired.clone());
                plan.push(desired, Action::CreateIfMissing);
            }
        }
    }

    if !provider.registries.is_empty() {
        let key = ObjectKey::new(Kind::McpBridge, names::MCP_BRIDGE);
        for registry in &provider.registries {
            plan.edit(
                key.clone(),
                Some(Template::McpBridge {
                    namespace: ns.to_string(),
                }),
                Op::UpsertRegistry(registry.clone()),
            );
        }
    }
    let ai_proxy = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(console));
    let ai_proxy_cr = Template::plugin(BuiltinPlugin::AiProxy, settings);
    plan.edit(
        ai_proxy.clone(),
        ai_proxy_cr.clone(),
        Op::UpsertProvider(provider.entry.clone()),
    );
    plan.edit(
        ai_proxy,
        ai_proxy_cr,
        Op::UpsertProviderServiceRule {
            provider: provider_name.to_string(),
            service: provider.service.clone(),
        },
    );

    // Route: upstream services must exist (the console fails later with "Unknown provider").
    let mut route = ai_route(event);
    route.fill_defaults(console);
    route
        .validate()
        .map_err(|m| Refusal::new("InvalidRoute", format!("data.route: {m}")))?;
    let mut upstream_services = Vec::new();
    for upstream in &route.upstreams {
        let (service, port) = if upstream.provider == provider_name {
            (provider.service.clone(), provider.port)
        } else {
            existing_upstream(state, &upstream.provider).ok_or_else(|| {
                Refusal::new(
                    "UnknownProvider",
                    format!("data.route.upstreams: Unknown provider {:?}: it is neither this event's provider nor in ai-proxy.internal", upstream.provider),
                )
            })?
        };
        upstream_services.push((service, port, upstream.weight));
    }
    let ingress_name = names::route_ingress(&route.name);

    // Consumers and the route's allow rule, always written (disabled when auth is off).
    let key_auth = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::KeyAuth.cr_name(console));
    let key_auth_cr = Template::plugin(BuiltinPlugin::KeyAuth, settings);
    let auth = event.auth.as_ref();
    let auth_enabled = auth.is_some_and(|a| a.enabled);
    if auth_enabled {
        plan.edit(key_auth.clone(), key_auth_cr.clone(), Op::EnsureKeyAuthGlobal);
    }
    for (i, consumer) in auth
        .map(|a| a.consumers.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let values = match &consumer.credentials_secret_ref {
            Some(secret) => vec![secret_value(
                state,
                secret,
                &format!("data.auth.consumers[{i}].credentialsSecretRef"),
            )?],
            None => consumer.credentials.clone(),
        };
        let entry = consumer_entry(&consumer.name, consumer.source, consumer.key.as_deref(), &values);
        plan.edit(key_auth.clone(), key_auth_cr.clone(), Op::UpsertConsumer(entry));
    }
    let allow = route.allowed_consumers();
    let known = state
        .get_named(Kind::WasmPlugin, &key_auth.name)
        .and_then(|k| k.pointer("/spec/defaultConfig/consumers"))
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for name in &allow {
        let in_event = auth.is_some_and(|a| a.consumers.iter().any(|c| &c.name == name));
        if !in_event && !known.contains(name) {
            plan.warnings
                .push(format!("allowed consumer {name:?} does not exist in key-auth.internal"));
        }
    }
    plan.edit(
        key_auth,
        key_auth_cr,
        Op::UpsertRule(Targets::ingress(&ingress_name).rule(json!({"allow": allow}), auth_enabled)),
    );

    // model-mapper: one rule per upstream with a mapping; rules of upstreams without one go.
    let mapper = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::ModelMapper.cr_name(console));
    for (upstream, (service, _, _)) in route.upstreams.iter().zip(&upstream_services) {
        let targets = Targets {
            ingress: vec![ingress_name.clone()],
            service: vec![service.clone()],
            domain: Vec::new(),
        };
        match upstream.model_mapping.as_ref().filter(|m| !m.is_empty()) {
            Some(mapping) => plan.edit(
                mapper.clone(),
                Template::plugin(BuiltinPlugin::ModelMapper, settings),
                Op::UpsertRule(targets.rule(json!({"modelMapping": mapping}), true)),
            ),
            None if state.get(&mapper).is_some() => plan.edit(mapper.clone(), None, Op::RemoveRule(targets)),
            None => {}
        }
    }

    if settings.model_router && route.model_predicates.as_ref().is_some_and(|p| !p.is_empty()) {
        plan.edit(
            ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::ModelRouter.cr_name(console)),
            Template::plugin(BuiltinPlugin::ModelRouter, settings),
            Op::SetDefaultConfigKey("modelToHeader".into(), json!("x-higress-llm-model")),
        );
    }

    if settings.ai_statistics && !has_ai_statistics_rule(state, &ingress_name) {
        plan.edit(
            ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiStatistics.cr_name(console)),
            Template::plugin(BuiltinPlugin::AiStatistics, settings),
            Op::InsertRuleIfAbsent(
                Targets::ingress(&ingress_name).rule(json!({"use_default_response_attributes": true}), true),
            ),
        );
    }

    let tls = route::tls(&event.route.domains, &route_domains)
        .map_err(|m| Refusal::new("InvalidDomains", format!("data.route.domains: {m}")))?;
    let ctx = IngressContext {
        namespace: ns,
        ingress_class: &settings.ingress_class,
        tls: &tls,
        destinations: upstream_services
            .iter()
            .map(|(s, p, w)| (format!("{s}:{p}"), *w))
            .collect(),
        fallback_from: None,
    };
    plan.put(route::ingress(&route, &ctx));
    // The route of a previous deploy may have had a fallback (made in the console): it goes.
    plan.delete(Kind::Ingress, names::fallback_ingress(&route.name));
    plan.put(route::config_map(&route, ns, Some(event.revision)));
    if tombstoned {
        plan.edit(
            ObjectKey::new(Kind::ConfigMap, names::TOMBSTONES),
            None,
            Op::ClearTombstone(event.model.clone()),
        );
    }
    Ok(plan)
}

/// Whether a non-internal ai-statistics CR already has a rule for the Ingress (then the console adds none).
fn has_ai_statistics_rule(state: &State, ingress: &str) -> bool {
    state.of_kind(Kind::WasmPlugin).any(|(name, plugin)| {
        !names::is_internal(name)
            && label(plugin, "higress.io/wasm-plugin-name") == Some("ai-statistics")
            && plugin
                .pointer("/spec/matchRules")
                .and_then(Value::as_array)
                .is_some_and(|rules| {
                    rules
                        .iter()
                        .any(|r| Targets::of(r).ingress.iter().any(|i| i == ingress))
                })
    })
}

fn plan_retire(event: &ModelRetired, state: &State, settings: &Settings, now: chrono::DateTime<chrono::Utc>) -> Plan {
    let ns = settings.namespace.as_str();
    let mut plan = Plan::default();
    let model = &event.model;
    let config_map_name = names::route_config_map(model);
    let route = state
        .get_named(Kind::ConfigMap, &config_map_name)
        .and_then(AiRoute::from_config_map);
    if route.is_none() {
        plan.warnings
            .push(format!("route {model} does not exist; only its tombstone is recorded"));
    }

    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    plan.edit(
        ObjectKey::new(Kind::ConfigMap, names::TOMBSTONES),
        Some(Template::Tombstones {
            namespace: ns.to_string(),
        }),
        Op::SetTombstone {
            model: model.clone(),
            revision: event.revision,
            retired_at: time(now),
            prune_before: time(now - settings.tombstone_ttl),
        },
    );

    let ingresses = [names::route_ingress(model), names::fallback_ingress(model)];
    for ingress in &ingresses {
        plan.delete(Kind::Ingress, ingress.clone());
    }
    plan.delete(Kind::EnvoyFilter, names::fallback_envoy_filter(model));
    // Every console-managed plugin rule naming the route's Ingresses, whoever wrote it.
    for (name, plugin) in state.of_kind(Kind::WasmPlugin) {
        if label(plugin, LABEL_DEFINER) != Some("higress") {
            continue;
        }
        let rules = plugin.pointer("/spec/matchRules").and_then(Value::as_array);
        for ingress in &ingresses {
            if rules.is_some_and(|rules| rules.iter().any(|r| Targets::of(r).ingress.contains(ingress))) {
                plan.edit(
                    ObjectKey::new(Kind::WasmPlugin, name),
                    None,
                    Op::RemoveIngressTarget(ingress.clone()),
                );
            }
        }
    }
    plan.delete(Kind::ConfigMap, config_map_name.clone());

    let Some(route) = route else { return plan };
    if event.delete_consumers {
        let key_auth = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::KeyAuth.cr_name(settings.console));
        for consumer in route.allowed_consumers() {
            plan.edit(key_auth.clone(), None, Op::RemoveConsumerIfUnused(consumer));
        }
    }
    if event.delete_provider {
        let others: Vec<AiRoute> = state
            .of_kind(Kind::ConfigMap)
            .filter(|(name, cm)| {
                *name != config_map_name && label(cm, names::LABEL_CONFIG_MAP_TYPE) == Some("ai-route")
            })
            .filter_map(|(_, cm)| AiRoute::from_config_map(cm))
            .collect();
        for provider in route.providers() {
            if let Some(user) = others.iter().find(|r| r.providers().contains(&provider)) {
                plan.warnings.push(format!(
                    "provider {provider} is kept: route {} still uses it",
                    user.name
                ));
                continue;
            }
            let ai_proxy = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(settings.console));
            if let Some((service, _)) = existing_upstream(state, &provider) {
                plan.edit(ai_proxy.clone(), None, Op::RemoveServiceTarget(service));
            }
            plan.edit(ai_proxy, None, Op::RemoveProvider(provider.clone()));
            plan.edit(
                ObjectKey::new(Kind::McpBridge, names::MCP_BRIDGE),
                None,
                Op::RemoveRegistry(names::registry(&provider)),
            );
        }
    }
    plan
}

/// How one step changed an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Created,
    Updated,
    Deleted,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Created => "created",
            Operation::Updated => "updated",
            Operation::Deleted => "deleted",
        }
    }
}

/// Brings an object (`None`: absent) to what a step makes of it; says whether it changed.
pub fn apply_step(step: &Step, object: &mut Option<Value>) -> Result<bool, EditRefused> {
    match &step.action {
        Action::Delete => Ok(object.take().is_some()),
        Action::CreateIfMissing(new) => Ok(object.is_none() && object.replace(new.clone()).is_none()),
        Action::Put(desired) => {
            let desired = merge_server_fields(desired, object.as_ref());
            let changed = object.as_ref() != Some(&desired);
            *object = Some(desired);
            Ok(changed)
        }
        Action::Edit { template, ops } => {
            let mut changed = false;
            if object.is_none() {
                let Some(template) = template else { return Ok(false) };
                *object = Some(template.build());
                changed = true;
            }
            let current = object.as_mut().expect("present");
            for op in ops {
                changed |= op.apply(current)?;
            }
            Ok(changed)
        }
    }
}

/// A whole-object write keeps what the API server owns, so comparing it with the current object
/// shows only real differences.
fn merge_server_fields(desired: &Value, current: Option<&Value>) -> Value {
    let mut desired = desired.clone();
    let Some(current) = current else { return desired };
    for field in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
        if let Some(value) = current.pointer(&format!("/metadata/{field}")) {
            desired["metadata"][field] = value.clone();
        }
    }
    if let Some(status) = current.get("status") {
        desired["status"] = status.clone();
    }
    desired
}

/// Applies a plan to an in-memory state and says which objects changed, in write order. On a refused
/// edit nothing is applied.
pub fn simulate(state: &mut State, plan: &Plan) -> Result<Vec<(ObjectKey, Operation)>, Refusal> {
    // Check every edit first, so a refusal leaves the state untouched without copying it: batches
    // simulate many events against large shared objects.
    for step in &plan.steps {
        if let (Action::Edit { ops, .. }, Some(object)) = (&step.action, state.get(&step.key)) {
            for op in ops {
                op.check(object)?;
            }
        }
    }
    let mut changes = Vec::new();
    for step in &plan.steps {
        let mut object = state.take(&step.key);
        let existed = object.is_some();
        // Unreachable after the checks unless one event's own edits collide (the contract rules
        // that out); the object goes back either way.
        let applied = apply_step(step, &mut object);
        let changed = match applied {
            Ok(changed) => changed,
            Err(refused) => {
                state.set(step.key.clone(), object);
                return Err(refused.into());
            }
        };
        if changed {
            let operation = match (existed, object.is_some()) {
                (false, _) => Operation::Created,
                (true, false) => Operation::Deleted,
                (true, true) => Operation::Updated,
            };
            changes.push((step.key.clone(), operation));
        }
        state.set(step.key.clone(), object);
    }
    Ok(changes)
}
