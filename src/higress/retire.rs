//! A retired model: its route goes completely — Ingresses, fallback EnvoyFilter, every console plugin
//! rule naming them, the AI route ConfigMap — and, when nothing else uses them, its provider and (if
//! asked) its consumers. Its fence entry keeps late deploys out.

use super::fence::FenceEntry;
use super::names::{self, LABEL_DEFINER};
use super::ops::Op;
use super::plan::{Plan, RouteWriter, Settings, Template};
use super::plugins::BuiltinPlugin;
use super::route::AiRoute;
use super::state::{label, Kind, ObjectKey, State};
use crate::event::ModelRetired;
use std::collections::BTreeSet;

pub fn plan_retire(
    event: &ModelRetired,
    state: &State,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let model = &event.model;
    let config_map_name = names::route_config_map(model);
    let route = state
        .get_named(Kind::ConfigMap, &config_map_name)
        .and_then(AiRoute::from_config_map);
    // What the route uses: from its ConfigMap and from its fence entry, which a deploy writes first —
    // so a deploy cut short before the ConfigMap, or a retirement cut short after its fence, still
    // leaves the retirement what it must clean up. The retirement's entry carries it on until done.
    let previous = state.fence_entry(model);
    let mut providers: BTreeSet<String> = previous.iter().flat_map(|e| e.providers.clone()).collect();
    let mut consumers: BTreeSet<String> = previous.iter().flat_map(|e| e.consumers.clone()).collect();
    if let Some(route) = &route {
        providers.extend(route.providers());
        consumers.extend(route.allowed_consumers());
    }
    if route.is_none() && providers.is_empty() && consumers.is_empty() {
        plan.warnings
            .push(format!("route {model} does not exist; only its retirement is recorded"));
    }
    let entry = FenceEntry {
        revision: event.revision,
        retired_at: Some(rfc3339(now)),
        delete_provider: event.delete_provider,
        delete_consumers: event.delete_consumers,
        providers: providers.iter().cloned().collect(),
        consumers: consumers.iter().cloned().collect(),
        secrets: Vec::new(),
    };
    set_fence(&mut plan, model, entry, settings, now);

    let ingresses = [names::route_ingress(model), names::fallback_ingress(model)];
    for ingress in &ingresses {
        plan.delete(Kind::Ingress, ingress.clone());
    }
    plan.delete(Kind::EnvoyFilter, names::fallback_envoy_filter(model));
    let writer = RouteWriter {
        route: model,
        revision: event.revision,
        retiring: true,
    };
    for ingress in &ingresses {
        remove_rules_naming(&mut plan, state, ingress, writer);
    }
    // Records of the route in objects where none of its rules is left go too.
    let recording: Vec<ObjectKey> = state
        .of_kind(Kind::WasmPlugin)
        .map(|(name, _)| ObjectKey::new(Kind::WasmPlugin, name))
        .filter(|key| state.records_route(key, model))
        .collect();
    for key in recording {
        plan.route_record(key, None, writer);
    }
    plan.delete(Kind::ConfigMap, config_map_name.clone());

    if event.delete_consumers {
        let key_auth = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::KeyAuth.cr_name(settings.console));
        for consumer in consumers {
            plan.edit(key_auth.clone(), None, Op::RemoveConsumerIfUnused(consumer));
        }
    }
    for provider in providers {
        let release = Release {
            route: model,
            revision: event.revision,
            provider: &provider,
            delete: event.delete_provider,
        };
        release_provider(&mut plan, state, settings, release);
    }
    plan
}

/// Every console-managed plugin rule naming an Ingress loses it, whoever wrote the rule
/// (`WasmPluginInstanceServiceImpl.deleteAll` for a route): rules left without an Ingress go —
/// unless the object records a newer revision of the route than `writer`'s.
pub(super) fn remove_rules_naming(plan: &mut Plan, state: &State, ingress: &str, writer: RouteWriter) {
    for (name, plugin) in state.of_kind(Kind::WasmPlugin) {
        if label(plugin, LABEL_DEFINER) != Some("higress") {
            continue;
        }
        // Through the rules index: every deploy asks this for its fallback Ingress.
        let key = ObjectKey::new(Kind::WasmPlugin, name);
        if state.any_rule_names_ingress(&key, ingress) {
            plan.route_edit(key, None, writer, Op::RemoveIngressTarget(ingress.to_string()));
        }
    }
}

pub(super) fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Records a model's fence entry; it goes first, and is refused at write time should another writer
/// have fenced the model with a newer revision since it was read.
pub(super) fn set_fence(
    plan: &mut Plan,
    model: &str,
    entry: FenceEntry,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) {
    let name = names::fence(model);
    plan.edit(
        ObjectKey::new(Kind::ConfigMap, name.clone()),
        Some(Template::Fence {
            name,
            namespace: settings.namespace.clone(),
        }),
        Op::SetFence {
            model: model.to_string(),
            entry,
            prune_before: rfc3339(now - settings.tombstone_ttl),
        },
    );
}

/// A route of ours stops using a provider, by its event at `revision`.
pub(super) struct Release<'a> {
    pub route: &'a str,
    pub revision: u64,
    pub provider: &'a str,
    /// Delete the provider if nothing else uses it (a retirement that asks).
    pub delete: bool,
}

/// A route of ours stops using a provider. It leaves the provider's users in McpBridge `default` and
/// `ai-proxy.internal`; with `delete`, the provider goes from each object if, as that object is at
/// write time (re-read after a 409), no route of ours uses it — so a route another replica deploys
/// meanwhile keeps it — and if no route of the console's uses it now. A route that exists without
/// being among the users (the console's, or written before users were recorded: neither is labelled
/// as ours, so the batch read its ConfigMap) keeps the provider.
pub(super) fn release_provider(plan: &mut Plan, state: &State, settings: &Settings, release: Release) {
    let Release {
        route: model,
        revision,
        provider,
        delete,
    } = release;
    let ai_proxy = ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(settings.console));
    let bridge = ObjectKey::new(Kind::McpBridge, names::MCP_BRIDGE);
    let leave = || Op::RemoveProviderUser {
        provider: provider.to_string(),
        route: model.to_string(),
        revision,
    };
    plan.edit(ai_proxy.clone(), None, leave());
    plan.edit(bridge.clone(), None, leave());
    if !delete {
        return;
    }
    let others = state.other_routes_using(provider, model, &ai_proxy);
    if let Some(other) = &others.first {
        plan.warnings
            .push(format!("provider {provider} is kept: route {other} still uses it"));
    }
    if !others.all_recorded {
        return;
    }
    let unless_used = |then: Op| Op::IfProviderUnused {
        provider: provider.to_string(),
        then: Box::new(then),
    };
    plan.edit(
        ai_proxy.clone(),
        None,
        unless_used(Op::RemoveProviderService(provider.to_string())),
    );
    plan.edit(ai_proxy, None, unless_used(Op::RemoveProvider(provider.to_string())));
    plan.edit(bridge, None, unless_used(Op::RemoveRegistry(names::registry(provider))));
}
