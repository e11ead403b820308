//! A deployed model: its provider (McpBridge registry, ai-proxy entry and service rule), its domains,
//! its consumers and the route's plugin rules, then its Ingress and AI route ConfigMap — all as the
//! console writes them for the same route.

use super::fence::{FenceEntry, SecretTarget, SecretUse};
use super::names;
use super::ops::Op;
use super::plan::{Action, Plan, Refusal, RouteWriter, Settings, Template};
use super::plugins::{self, BuiltinPlugin, Targets};
use super::route::{self, AiRoute, AiUpstream, AuthConfig, IngressContext, PathPredicate};
use super::state::{label, Kind, ObjectKey, State};
use super::{provider, retire};
use crate::event::{ModelDeployed, SecretRef};
use crate::reason::Reason;
use crate::secret::SecretString;
use serde_json::{json, Value};
use std::collections::BTreeSet;

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
        header_predicates: Some(keyed_predicates(&event.route.header_predicates)),
        url_param_predicates: Some(keyed_predicates(&event.route.url_param_predicates)),
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
        fallback_config: Some(fallback_config(event.route.fallback.as_ref())),
        custom_configs: Some(event.route.custom_configs.clone()).filter(|c| !c.is_empty()),
        custom_labels: Some(event.route.custom_labels.clone()).filter(|l| !l.is_empty()),
        ..AiRoute::default()
    }
}

fn keyed_predicates(predicates: &[crate::event::KeyedPredicate]) -> Vec<route::KeyedRoutePredicate> {
    predicates
        .iter()
        .map(|p| route::KeyedRoutePredicate {
            key: Some(p.key.clone()),
            match_type: Some(p.match_type.as_str().into()),
            match_value: Some(p.match_value.clone()),
            case_sensitive: None,
        })
        .collect()
}

/// `{enabled: false}` without a fallback, as the console UI sends it.
fn fallback_config(fallback: Option<&crate::event::FallbackSpec>) -> route::FallbackConfig {
    let Some(fallback) = fallback else {
        return route::FallbackConfig {
            enabled: false,
            upstreams: None,
            fallback_strategy: None,
            response_codes: None,
        };
    };
    route::FallbackConfig {
        enabled: true,
        upstreams: Some(
            fallback
                .upstreams
                .iter()
                .map(|u| AiUpstream {
                    provider: u.provider.clone(),
                    weight: u.weight,
                    model_mapping: Some(u.model_mapping.clone()),
                })
                .collect(),
        ),
        fallback_strategy: Some(fallback.strategy.as_str().into()),
        // Listed once each (the contract says so; `AiRouteFallbackConfig.validate` drops repeats).
        response_codes: Some(fallback.response_codes.iter().map(|c| c.as_str().into()).collect()),
    }
}

/// Service, port and weight of an upstream, in upstream order.
type UpstreamService = (String, u16, Option<u32>);

pub fn plan_deploy(
    event: &ModelDeployed,
    state: &State,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Plan, Refusal> {
    let ns = settings.namespace.as_str();
    let console = settings.console;
    let mut plan = Plan::default();

    // Provider: McpBridge registry, ai-proxy entry and service rule.
    let provider_name = event.provider_name();
    // The contract refuses these already; a plan must not depend on it, and no
    // Secret is read for an event refused here.
    if let Some((field, rule)) = provider::name_problems(&event.provider).into_iter().next() {
        return Err(Refusal::new(
            Reason::InvalidProvider,
            format!("data.provider.{field}: {rule}"),
        ));
    }
    // What the route's entries carry from Secrets, for rotation.
    let mut secrets = Vec::new();
    let tokens = match &event.provider.api_tokens_secret_ref {
        Some(secret) => {
            secrets.push(SecretUse {
                secret: secret.name.clone(),
                key: secret.key.clone(),
                target: SecretTarget::Provider(provider_name.to_string()),
                recorded: true,
            });
            vec![secret_value(
                state,
                settings,
                secret,
                "data.provider.apiTokensSecretRef",
            )?]
        }
        None => event.provider.api_tokens.clone(),
    };
    let llm_provider = provider::from_event(
        &event.provider,
        provider_name,
        tokens.iter().map(|t| t.expose().to_string()).collect(),
    )
    .map_err(|m| Refusal::new(Reason::InvalidProvider, format!("data.provider: {m}")))?;
    let provider = provider::render(&llm_provider)
        .map_err(|m| Refusal::new(Reason::InvalidProvider, format!("data.provider: {m}")))?;

    // Domains: created only when missing; existing settings win. The route's TLS comes from them.
    let mut route_domains = State::new();
    if let Some(default) = state.get_named(Kind::ConfigMap, &names::domain_config_map(names::DEFAULT_DOMAIN)) {
        route_domains.insert_object(default.clone());
    }
    for domain in &event.route.domains {
        let desired = route::domain_config_map(domain, ns, event.route.https.as_ref());
        match state.get_named(Kind::ConfigMap, &names::domain_config_map(domain)) {
            Some(existing) => {
                route_domains.insert_object(existing.clone());
                let field = |o: &Value, k: &str| {
                    o.pointer(&format!("/data/{k}"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                if event.route.https.is_some()
                    && (field(existing, "enableHttps") != field(&desired, "enableHttps")
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
    // A provider other routes use stays where they reach it: the console would re-save those routes;
    // we refuse the move (`Op::RequireNoOtherUsers`, below) rather than leave their Ingresses at the
    // old service.
    let moves_its_provider = provider::existing_upstream(state, console, provider_name)
        .is_some_and(|old| (old.service.as_str(), old.port) != (provider.service.as_str(), provider.port));
    let ai_proxy = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(console));
    let ai_proxy_cr = Template::plugin(BuiltinPlugin::AiProxy, settings);
    plan.edit(
        ai_proxy.clone(),
        ai_proxy_cr.clone(),
        Op::UpsertProvider(provider.entry.clone()),
    );
    let source = Op::SetSecretSource {
        entry: names::secret_source_of_provider(provider_name),
        source: event
            .provider
            .api_tokens_secret_ref
            .as_ref()
            .map(|_| secret_source(event)),
    };
    plan.edit(ai_proxy.clone(), ai_proxy_cr.clone(), source);
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
        .map_err(|m| Refusal::new(Reason::InvalidRoute, format!("data.route: {m}")))?;
    let service_of = |upstream: &AiUpstream, path: &str| -> Result<(String, u16), Refusal> {
        if upstream.provider == provider_name {
            return Ok((provider.service.clone(), provider.port));
        }
        let existing = provider::existing_upstream(state, console, &upstream.provider).ok_or_else(|| {
            Refusal::new(
                Reason::UnknownProvider,
                format!(
                    "{path}: Unknown provider {:?}: it is neither this event's provider nor in ai-proxy.internal",
                    upstream.provider
                ),
            )
        })?;
        Ok((existing.service, existing.port))
    };
    let mut upstream_services = Vec::new();
    for upstream in &route.upstreams {
        let (service, port) = service_of(upstream, "data.route.upstreams")?;
        upstream_services.push((service, port, upstream.weight));
    }
    // Every fallback provider the route names must exist, like its upstreams'; the fallback Ingress
    // routes to those of its strategy.
    let fallback_upstreams = route.fallback_config.iter().filter(|f| f.enabled);
    for upstream in fallback_upstreams.flat_map(|f| f.upstreams.iter().flatten()) {
        service_of(upstream, "data.route.fallback.upstreams")?;
    }
    let mut fallback_services = Vec::new();
    for upstream in route.fallback_upstreams() {
        let (service, port) = service_of(upstream, "data.route.fallback.upstreams")?;
        fallback_services.push((service, port, upstream.weight));
    }
    let ingress_name = names::route_ingress(&route.name);
    let fallback_ingress = names::fallback_ingress(&route.name);
    let fallback_codes = route.fallback_response_codes().map(<[String]>::to_vec);
    // The Ingresses the route's plugin rules name: the main one, and the fallback's when it has one.
    let route_ingresses: Vec<(&String, &[AiUpstream], &[UpstreamService])> =
        std::iter::once((&ingress_name, route.upstreams.as_slice(), upstream_services.as_slice()))
            .chain(fallback_codes.is_some().then_some((
                &fallback_ingress,
                route.fallback_upstreams(),
                fallback_services.as_slice(),
            )))
            .collect();

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
            Some(secret) => {
                secrets.push(SecretUse {
                    secret: secret.name.clone(),
                    key: secret.key.clone(),
                    target: SecretTarget::Consumer {
                        name: consumer.name.clone(),
                        source: consumer.source,
                        key: consumer.key.clone(),
                    },
                    recorded: true,
                });
                vec![secret_value(
                    state,
                    settings,
                    secret,
                    &format!("data.auth.consumers[{i}].credentialsSecretRef"),
                )?]
            }
            None => consumer.credentials.clone(),
        };
        let entry = plugins::consumer_entry(&consumer.name, consumer.source, consumer.key.as_deref(), &values);
        plan.edit(key_auth.clone(), key_auth_cr.clone(), Op::UpsertConsumer(entry));
        let source = Op::SetSecretSource {
            entry: names::secret_source_of_consumer(&consumer.name),
            source: consumer.credentials_secret_ref.as_ref().map(|_| secret_source(event)),
        };
        plan.edit(key_auth.clone(), key_auth_cr.clone(), source);
    }
    let allow = route.allowed_consumers();
    let known = |name: &str| {
        state
            .get_named(Kind::WasmPlugin, &key_auth.name)
            .and_then(|k| k.pointer("/spec/defaultConfig/consumers"))
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(name)))
    };
    for name in &allow {
        let in_event = auth.is_some_and(|a| a.consumers.iter().any(|c| &c.name == name));
        if !in_event && !known(name) {
            plan.warnings
                .push(format!("allowed consumer {name:?} does not exist in key-auth.internal"));
        }
    }
    // The route's rules in shared plugin objects carry its revision there (see `Plan::route_edit`).
    let writer = RouteWriter {
        route: &route.name,
        revision: event.revision,
        retiring: false,
    };
    for (ingress, _, _) in &route_ingresses {
        plan.route_edit(
            key_auth.clone(),
            key_auth_cr.clone(),
            writer,
            Op::UpsertRule(Targets::ingress(ingress).rule(json!({"allow": allow}), auth_enabled)),
        );
    }

    // model-mapper: one rule per upstream with a mapping; rules of upstreams without one go.
    let mapper = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::ModelMapper.cr_name(console));
    for (ingress, upstreams, services) in &route_ingresses {
        for (upstream, (service, _, _)) in upstreams.iter().zip(services.iter()) {
            let targets = Targets {
                ingress: vec![ingress.to_string()],
                service: vec![service.clone()],
                domain: Vec::new(),
            };
            match upstream.model_mapping.as_ref().filter(|m| !m.is_empty()) {
                Some(mapping) => plan.route_edit(
                    mapper.clone(),
                    Template::plugin(BuiltinPlugin::ModelMapper, settings),
                    writer,
                    Op::UpsertRule(targets.rule(json!({"modelMapping": mapping}), true)),
                ),
                None if state.get(&mapper).is_some() => {
                    plan.route_edit(mapper.clone(), None, writer, Op::RemoveRule(targets))
                }
                None => {}
            }
        }
    }

    if settings.model_router && route.model_predicates.as_ref().is_some_and(|p| !p.is_empty()) {
        plan.edit(
            ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::ModelRouter.cr_name(console)),
            Template::plugin(BuiltinPlugin::ModelRouter, settings),
            Op::SetDefaultConfigKey("modelToHeader".into(), json!("x-higress-llm-model")),
        );
    }

    let statistics = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiStatistics.cr_name(console));
    for (ingress, _, _) in &route_ingresses {
        // Asked of our CR even when its rule is there, so the route's revision is recorded with it.
        if settings.ai_statistics && !has_ai_statistics_rule_elsewhere(state, ingress, &statistics.name) {
            plan.route_edit(
                statistics.clone(),
                Template::plugin(BuiltinPlugin::AiStatistics, settings),
                writer,
                Op::InsertRuleIfAbsent(
                    Targets::ingress(ingress).rule(json!({"use_default_response_attributes": true}), true),
                ),
            );
        }
    }

    plan_route_plugins(&mut plan, event, state, settings, &ingress_name, writer)?;

    let tls = route::tls(&event.route.domains, &route_domains)
        .map_err(|m| Refusal::new(Reason::InvalidDomains, format!("data.route.domains: {m}")))?;
    let ingress_of = |services: &[UpstreamService], fallback_from: Option<String>| {
        let ctx = IngressContext {
            namespace: ns,
            ingress_class: &settings.ingress_class,
            tls: &tls,
            destinations: services.iter().map(|(s, p, w)| (format!("{s}:{p}"), *w)).collect(),
            fallback_from,
        };
        route::ingress(&route, &ctx)
    };
    let revised = |object: Value| with_revision(object, event.revision);
    let ours = |object: Value| with_route_label(revised(object), &route.name);
    plan.put(ours(ingress_of(&upstream_services, None)));
    match &fallback_codes {
        Some(codes) => {
            plan.put(ours(ingress_of(&fallback_services, Some(ingress_name.clone()))));
            plan.put(revised(route::fallback_envoy_filter(&route.name, codes, ns)));
        }
        None => {
            // Without a fallback (now, or ever made in the console) its objects and rules go.
            plan.delete(Kind::EnvoyFilter, names::fallback_envoy_filter(&route.name));
            plan.delete(Kind::Ingress, fallback_ingress.clone());
            retire::remove_rules_naming(&mut plan, state, &fallback_ingress, writer);
        }
    }
    plan.put(ours(route::config_map(&route, ns)));

    // The route's providers know it uses them, where a concurrent clean-up re-checks (see
    // `retire::release_provider`); providers a redeploy no longer uses are let go, not deleted.
    // Another route's provider may go with that route's retirement before our writes land: each
    // object must still hold what the route relies on when written.
    let providers = route.providers();
    for provider in &providers {
        let ai_proxy = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(console));
        let bridge = ObjectKey::new(Kind::McpBridge, names::MCP_BRIDGE);
        let bridge_cr = || {
            Some(Template::McpBridge {
                namespace: ns.to_string(),
            })
        };
        if provider != provider_name {
            // Checked with the route's upstreams above; refused, not assumed, should the two differ.
            let upstream = provider::existing_upstream(state, console, provider).ok_or_else(|| {
                Refusal::new(
                    Reason::UnknownProvider,
                    format!("data.route: Unknown provider {provider:?}"),
                )
            })?;
            if upstream.registry.is_some() {
                let require = Op::RequireRegistry {
                    provider: provider.clone(),
                    upstream: upstream.clone(),
                };
                plan.edit(bridge.clone(), None, require);
            }
            let require = Op::RequireProvider {
                provider: provider.clone(),
                upstream,
            };
            plan.edit(ai_proxy.clone(), None, require);
        } else if moves_its_provider {
            for object in [&ai_proxy, &bridge] {
                let alone = Op::RequireNoOtherUsers {
                    provider: provider.clone(),
                    route: route.name.clone(),
                };
                plan.edit(object.clone(), None, alone);
            }
        }
        let join = || Op::AddProviderUser {
            provider: provider.clone(),
            route: route.name.clone(),
            revision: event.revision,
        };
        plan.edit(ai_proxy, Template::plugin(BuiltinPlugin::AiProxy, settings), join());
        plan.edit(bridge, bridge_cr(), join());
    }
    // What the route used: from its ConfigMap and from its fence entry, as a retirement takes it (a
    // deploy cut short before its ConfigMap recorded its providers only there).
    let previous: BTreeSet<String> = state
        .get_named(Kind::ConfigMap, &names::route_config_map(&route.name))
        .and_then(AiRoute::from_config_map)
        .iter()
        .flat_map(AiRoute::providers)
        .chain(
            state
                .fence_entry(&event.model)
                .into_iter()
                .flat_map(|entry| entry.providers),
        )
        .collect();
    for provider in previous {
        if !providers.contains(&provider) {
            let release = retire::Release {
                route: &route.name,
                revision: event.revision,
                provider: &provider,
                delete: false,
            };
            retire::release_provider(&mut plan, state, settings, release);
        }
    }
    let entry = FenceEntry {
        providers,
        consumers: allow,
        secrets,
        ..FenceEntry::deployed(event.revision)
    };
    retire::set_fence(&mut plan, &event.model, entry, settings, now);
    Ok(plan)
}

/// The event, as the record of an entry it builds from a Secret (`names::ANNOTATION_SECRET_SOURCES`).
pub(super) fn secret_source(event: &ModelDeployed) -> String {
    format!("{}@{}", event.model, event.revision)
}

/// A route's own object, annotated with the revision that writes it (see [`names::ANNOTATION_REVISION`]).
fn with_revision(mut object: Value, revision: u64) -> Value {
    let metadata = object["metadata"].as_object_mut().expect("objects have metadata");
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    annotations[names::ANNOTATION_REVISION] = Value::String(revision.to_string());
    object
}

/// A route's own object (Ingress, AI route ConfigMap), labelled with its route (see
/// [`names::LABEL_ROUTE`]): a batch lists its routes' objects by it, not every route's.
fn with_route_label(mut object: Value, route: &str) -> Value {
    let metadata = object["metadata"].as_object_mut().expect("objects have metadata");
    let labels = metadata.entry("labels").or_insert_with(|| json!({}));
    labels[names::LABEL_ROUTE] = Value::String(route.to_string());
    object
}

/// `route.plugins`, as the console's plugin page for an AI route binds a plugin: a ROUTE instance
/// `{config, configDisable: false, ingress: [<ingress>]}` in the non-internal CR `<plugin>-<version>`
/// of the console version, created with the catalogue's labels when missing. The event states the
/// route's whole set of the plugins it manages, one instance per plugin: the route's own rule
/// (targets exactly its Ingress) goes from every other CR of a catalogue plugin where a deploy of
/// ours wrote it — a plugin left out, or another version's CR; a rule bound in the console stays. A
/// plugin the console version does not ship (json-converter before v2.2.4) is refused.
fn plan_route_plugins(
    plan: &mut Plan,
    event: &ModelDeployed,
    state: &State,
    settings: &Settings,
    ingress: &str,
    writer: RouteWriter,
) -> Result<(), Refusal> {
    let targets = Targets::ingress(ingress);
    for (name, config) in &event.route.plugins {
        // The contract admits catalogue plugins only.
        let Some(plugin) = BuiltinPlugin::route_plugin(name) else {
            continue;
        };
        if !plugin.shipped_by(settings.console) {
            return Err(Refusal::new(
                Reason::InvalidRoute,
                format!(
                    "data.route.plugins: {name:?} is not in the built-in catalogue of console {}",
                    settings.console
                ),
            ));
        }
        if !crate::gateway::is_ported(name) && !settings.unvalidated_plugins.iter().any(|p| p == name) {
            return Err(Refusal::new(
                Reason::PluginNotValidated,
                format!(
                    "data.route.plugins: {name:?} is in the catalogue, but the worker cannot check its config \
                     as the gateway will (its parser is not ported), and one config it refuses fails the plugin \
                     for every route; the operator may allow it with --unvalidated-plugin {name}"
                ),
            ));
        }
        plan.route_edit(
            ObjectKey::new(Kind::WasmPlugin, plugin.cr_name(settings.console)),
            Template::plugin(plugin, settings),
            writer,
            Op::UpsertRule(targets.rule(Value::Object(config.0.clone()), true)),
        );
    }
    for (name, cr) in state.of_kind(Kind::WasmPlugin) {
        let Some(plugin) = label(cr, "higress.io/wasm-plugin-name").and_then(BuiltinPlugin::route_plugin) else {
            continue;
        };
        let in_event = event.route.plugins.contains_key(plugin.plugin_name());
        let wanted = in_event && name == plugin.cr_name(settings.console);
        let ours = cr
            .pointer("/spec/matchRules")
            .and_then(Value::as_array)
            .is_some_and(|rules| rules.iter().any(|r| targets.matches(r)));
        // A plugin the event leaves out goes only where a deploy of ours wrote the route's rule (the
        // CR records the route): a plugin someone bound to the route in the console stays. One the
        // event names goes from every other version's CR, so the route keeps one instance.
        let key = ObjectKey::new(Kind::WasmPlugin, name);
        let ours = ours && (in_event || state.records_route(&key, writer.route));
        if !wanted && ours && !names::is_internal(name) && label(cr, names::LABEL_DEFINER) == Some("higress") {
            plan.route_edit(key, None, writer, Op::RemoveRule(targets.clone()));
        }
    }
    Ok(())
}

/// Whether another non-internal ai-statistics CR (another version's) already has a rule for the
/// Ingress (then the console adds none).
fn has_ai_statistics_rule_elsewhere(state: &State, ingress: &str, ours: &str) -> bool {
    state.of_kind(Kind::WasmPlugin).any(|(name, plugin)| {
        name != ours
            && !names::is_internal(name)
            && label(plugin, "higress.io/wasm-plugin-name") == Some("ai-statistics")
            && state.any_rule_names_ingress(&ObjectKey::new(Kind::WasmPlugin, name), ingress)
    })
}

/// The value of a Secret an event refers to, if the operator made it readable: it carries the label
/// [`names::LABEL_READABLE`] `"true"` or is named in the settings. Refusals name the reference, never
/// the content.
pub(super) fn secret_value(
    state: &State,
    settings: &Settings,
    secret: &SecretRef,
    path: &str,
) -> Result<SecretString, Refusal> {
    let missing = || {
        Refusal::new(
            Reason::SecretNotFound,
            format!("{path}: key {:?} of Secret {:?} not found", secret.key, secret.name),
        )
    };
    let object = state.get_named(Kind::Secret, &secret.name).ok_or_else(missing)?;
    let readable =
        label(object, names::LABEL_READABLE) == Some("true") || settings.readable_secrets.contains(&secret.name);
    if !readable {
        return Err(Refusal::new(
            Reason::SecretNotAllowed,
            format!(
                "{path}: Secret {:?} may not be read by events: label it {}=true or name it in --readable-secret",
                secret.name,
                names::LABEL_READABLE
            ),
        ));
    }
    // As an inline token or credential must be (the contract's `secretValue`): it travels in an HTTP
    // header or query, and key-auth refuses its whole config over a bad one.
    let usable = |text: &str| {
        let text = text.trim();
        let fits = !text.is_empty()
            && text.chars().count() <= MAX_SECRET_VALUE_CHARS
            && !text
                .chars()
                .any(|c| c.is_whitespace() || crate::contract::rules::is_forbidden_char(c));
        fits.then(|| SecretString::new(text)).ok_or_else(|| {
            Refusal::new(
                Reason::SecretInvalid,
                format!(
                    "{path}: key {:?} of Secret {:?} is no token or credential: 1 to {MAX_SECRET_VALUE_CHARS} \
                     characters, no whitespace, control or bidirectional-formatting characters",
                    secret.key, secret.name
                ),
            )
        })
    };
    if let Some(plain) = object
        .pointer("/stringData")
        .and_then(|d| d.get(&secret.key))
        .and_then(Value::as_str)
    {
        return usable(plain);
    }
    let encoded = object
        .pointer("/data")
        .and_then(|d| d.get(&secret.key))
        .and_then(Value::as_str)
        .ok_or_else(missing)?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| {
        Refusal::new(
            Reason::SecretInvalid,
            format!("{path}: key {:?} of Secret {:?} is not base64", secret.key, secret.name),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Refusal::new(
            Reason::SecretInvalid,
            format!("{path}: key {:?} of Secret {:?} is not UTF-8", secret.key, secret.name),
        )
    })?;
    usable(&text)
}

/// Longest token or credential, as the contract's `secretValue` allows inline.
const MAX_SECRET_VALUE_CHARS: usize = 4096;
