//! A retired model: its route goes completely — Ingresses, fallback EnvoyFilter, every console plugin
//! rule naming them, the AI route ConfigMap — and, when nothing else uses them, its provider and (if
//! asked) its consumers. A tombstone keeps late deploys out.

use super::names::{self, LABEL_DEFINER};
use super::ops::Op;
use super::plan::{Plan, Settings, Template};
use super::plugins::{BuiltinPlugin, Targets};
use super::provider;
use super::route::AiRoute;
use super::state::{label, Kind, ObjectKey, State};
use crate::event::ModelRetired;
use serde_json::Value;

pub fn plan_retire(
    event: &ModelRetired,
    state: &State,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
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
            if let Some((service, _)) = provider::existing_upstream(state, settings.console, &provider) {
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
