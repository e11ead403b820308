//! What a batch must read before it is planned, declared by the mapping itself: the engine fetches
//! exactly this, so when the planner starts consulting something new, this is the one place to say so
//! (and `tests/reads.rs` fails until it does).
//!
//! A few models read their own objects by name; a larger batch lists them, so a batch costs a fixed
//! number of reads whatever its size. A larger batch reads only the routes its fence entries say
//! exist (see [`follow_up_reads`]), so it costs the same whatever the size of the cluster.

use super::names;
use super::state::{label, Kind, ObjectKey, State};
use crate::event::{Lifecycle, LifecycleEvent};
use serde_json::Value;
use std::collections::BTreeSet;

/// Up to this many models, their objects are read by name.
pub const TARGETED_UP_TO: usize = 4;
/// Above this many existing routes in a batch, their Ingresses are listed rather than read by name.
pub const LIST_INGRESSES_ABOVE: usize = 32;

/// Above this many Ingresses, a look lists them (metadata only) rather than reading them by name.
pub const LOOK_BY_NAME_UP_TO: usize = 2 * TARGETED_UP_TO;

/// The most route names one list's label selector carries, in bytes: its URL stays under the 8 KiB
/// that proxies in front of an API server commonly allow.
const ROUTES_PER_SELECTOR_BYTES: usize = 4096;

/// Objects to read by name, lists by label selector, and lists of which only the objects' metadata is
/// read (enough for a look: names, annotations, versions, uids).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSet {
    pub gets: BTreeSet<ObjectKey>,
    pub lists: BTreeSet<(Kind, String)>,
    pub metadata_lists: BTreeSet<(Kind, String)>,
}

impl ReadSet {
    fn get(&mut self, kind: Kind, name: impl Into<String>) {
        self.gets.insert(ObjectKey::new(kind, name));
    }

    fn list(&mut self, kind: Kind, selector: impl Into<String>) {
        self.lists.insert((kind, selector.into()));
    }

    fn metadata_list(&mut self, kind: Kind, selector: impl Into<String>) {
        self.metadata_lists.insert((kind, selector.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.gets.is_empty() && self.lists.is_empty() && self.metadata_lists.is_empty()
    }

    /// Whether reading this set returns `object` (stored under `key`), whole or its metadata.
    pub fn covers(&self, key: &ObjectKey, object: &Value) -> bool {
        self.gets.contains(key)
            || self
                .lists
                .iter()
                .chain(&self.metadata_lists)
                .any(|(kind, selector)| *kind == key.kind && matches_selector(object, selector))
    }

    /// This set's reads that `done` does not make.
    pub fn without(mut self, done: &ReadSet) -> ReadSet {
        self.gets.retain(|key| !done.gets.contains(key));
        self.lists.retain(|list| !done.lists.contains(list));
        self.metadata_lists
            .retain(|list| !done.lists.contains(list) && !done.metadata_lists.contains(list));
        self
    }

    /// Both sets' reads.
    pub fn union(mut self, other: ReadSet) -> ReadSet {
        self.gets.extend(other.gets);
        self.lists.extend(other.lists);
        self.metadata_lists.extend(other.metadata_lists);
        self
    }
}

/// The forms the mapping uses: `a=b`, `!a` and `a in (x,y)`, joined by commas.
fn matches_selector(object: &Value, selector: &str) -> bool {
    let mut terms = Vec::new();
    let mut rest = selector;
    while !rest.is_empty() {
        // A comma inside `in (…)` separates values, not terms.
        let end = match (rest.find(','), rest.find('(')) {
            (Some(comma), Some(open)) if open < comma => rest[open..].find(')').map_or(rest.len(), |c| open + c + 1),
            (Some(comma), _) => comma,
            (None, _) => rest.len(),
        };
        terms.push(&rest[..end]);
        rest = rest[end..].strip_prefix(',').unwrap_or(&rest[end..]);
    }
    terms.into_iter().all(|term| {
        if let Some(key) = term.strip_prefix('!') {
            label(object, key).is_none()
        } else if let Some((key, values)) = term.split_once(" in (") {
            let values = values.strip_suffix(')').unwrap_or(values);
            label(object, key).is_some_and(|value| values.split(',').any(|v| v == value))
        } else if let Some((key, value)) = term.split_once('=') {
            label(object, key) == Some(value)
        } else {
            false
        }
    })
}

fn retirements_only(events: &[LifecycleEvent]) -> bool {
    events.iter().all(|e| matches!(e.body, Lifecycle::Retired(_)))
}

fn models(events: &[LifecycleEvent]) -> BTreeSet<&str> {
    events.iter().map(LifecycleEvent::model).collect()
}

/// The first read of a batch.
pub fn reads(events: &[LifecycleEvent]) -> ReadSet {
    let mut set = ReadSet::default();
    let models = models(events);
    let retiring = events.iter().any(|e| matches!(e.body, Lifecycle::Retired(_)));
    set.get(Kind::McpBridge, names::MCP_BRIDGE);
    // Plugin CRs are few (one per plugin), and a retirement removes every console rule naming its route.
    set.list(Kind::WasmPlugin, names::SELECT_CONSOLE);
    if models.len() <= TARGETED_UP_TO {
        for model in &models {
            set.get(Kind::ConfigMap, names::fence(model));
            set.get(Kind::ConfigMap, names::route_config_map(model));
            set.get(Kind::Ingress, names::route_ingress(model));
            set.get(Kind::Ingress, names::fallback_ingress(model));
            // A deploy writes the fallback EnvoyFilter, or deletes one a previous fallback left.
            set.get(Kind::EnvoyFilter, names::fallback_envoy_filter(model));
        }
        domains(&mut set, events);
        if retiring {
            // A provider goes only when no remaining route uses it: a route of ours is in its users
            // record (in ai-proxy and McpBridge, read anyway); any other's ConfigMap says so.
            set.list(Kind::ConfigMap, names::SELECT_UNLABELLED_AI_ROUTES);
        }
    } else {
        // Not every console ConfigMap (one per route: megabytes on a large cluster): the fences,
        // which say which of the batch's routes exist, and the domains by name.
        set.list(Kind::ConfigMap, names::SELECT_FENCES);
        domains(&mut set, events);
        // Fallback EnvoyFilters are few: deploys and retirements alike may write or delete them.
        set.list(Kind::EnvoyFilter, names::SELECT_CONSOLE);
        if retiring {
            for selector in route_config_map_lists(models.iter().copied()) {
                set.list(Kind::ConfigMap, selector);
            }
        }
        // A retired route counts as existing whatever the fences say: when a batch of retirements alone
        // will list the Ingresses (see `follow_up_reads`), it does so beside the first read, not after it.
        if retirements_only(events) && models.len() > LIST_INGRESSES_ABOVE {
            for selector in route_ingress_lists(models.iter().copied()) {
                set.metadata_list(Kind::Ingress, selector);
            }
        }
    }
    for name in events.iter().flat_map(secret_names) {
        set.get(Kind::Secret, name);
    }
    set
}

/// The default domain's ConfigMap and those of the deploys' domains.
fn domains(set: &mut ReadSet, events: &[LifecycleEvent]) {
    set.get(Kind::ConfigMap, names::domain_config_map(names::DEFAULT_DOMAIN));
    for event in events {
        if let Lifecycle::Deployed(deployed) = &event.body {
            for domain in &deployed.route.domains {
                set.get(Kind::ConfigMap, names::domain_config_map(domain));
            }
        }
    }
}

/// What a large batch reads once the first read is in: the route ConfigMaps and Ingresses of routes
/// that exist (or are retired), not every route's. A route of ours exists only if its model has a
/// fence entry (a deploy writes it first, a retirement keeps it), so a model without one is new: its
/// objects are created, and should one exist after all (a route made in the console under the same
/// name), the create's 409 makes the write a replace of what is there. A console route's fallback
/// Ingress is read too, when its EnvoyFilter shows it: a deploy without a fallback deletes it.
pub fn follow_up_reads(events: &[LifecycleEvent], state: &State) -> ReadSet {
    let mut set = ReadSet::default();
    let models = models(events);
    if models.len() <= TARGETED_UP_TO {
        return set;
    }
    let existing: Vec<&str> = models
        .into_iter()
        .filter(|m| {
            events
                .iter()
                .any(|e| e.model() == *m && matches!(e.body, Lifecycle::Retired(_)))
                || state.fence_entry(m).is_some()
                || state.get_named(Kind::ConfigMap, &names::route_config_map(m)).is_some()
                // A console route with a fallback (its EnvoyFilter is listed): its fallback Ingress
                // goes when a deploy without one takes the route over.
                || state.get_named(Kind::EnvoyFilter, &names::fallback_envoy_filter(m)).is_some()
        })
        .collect();
    if existing.len() > LIST_INGRESSES_ABOVE {
        // A retirement deletes its route's Ingresses on the version read and never reads their spec: a
        // batch without deploys lists their metadata only.
        for selector in route_ingress_lists(existing.iter().copied()) {
            if retirements_only(events) {
                set.metadata_list(Kind::Ingress, selector);
            } else {
                set.list(Kind::Ingress, selector);
            }
        }
        for selector in route_config_map_lists(existing.iter().copied()) {
            set.list(Kind::ConfigMap, selector);
        }
    } else {
        for model in existing {
            set.get(Kind::ConfigMap, names::route_config_map(model));
            set.get(Kind::Ingress, names::route_ingress(model));
            set.get(Kind::Ingress, names::fallback_ingress(model));
        }
    }
    // What the first read has read already (a large batch that retires lists its AI route ConfigMaps).
    set.without(&reads(events))
}

/// The engine's looks between and after a batch's writes, each a safety property of ARCHITECTURE.md
/// ("Fences and shared entries across writers"): before a retirement takes its route's key-auth rule,
/// the route's Ingresses (`take_late_ingresses`); before the first route is exposed, the fences
/// (`fenced_past`); after the writes, the fences and the retired routes' Ingresses (`settle_fences`),
/// and an overtaken deploy's Ingresses (`leave_to_newer_deploys`). A look is one read for the whole
/// batch, not one per event: the Ingresses of `routes` by name for a few (`fallback`: the fallback
/// Ingress too), else their metadata in [`route_ingress_lists`] (a look needs their revision
/// annotation, version and uid, not their spec).
pub fn ingress_look<'a>(routes: impl IntoIterator<Item = &'a str>, fallback: bool) -> ReadSet {
    let mut set = ReadSet::default();
    let routes: BTreeSet<&str> = routes.into_iter().collect();
    let per_route = if fallback { 2 } else { 1 };
    if routes.len() * per_route > LOOK_BY_NAME_UP_TO {
        for selector in route_ingress_lists(routes) {
            set.metadata_list(Kind::Ingress, selector);
        }
    } else {
        for route in routes {
            set.get(Kind::Ingress, names::route_ingress(route));
            if fallback {
                set.get(Kind::Ingress, names::fallback_ingress(route));
            }
        }
    }
    set
}

/// The lists that return every Ingress that can be one of `routes`' (main or fallback): see
/// [`route_lists`].
pub fn route_ingress_lists<'a>(routes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    route_lists(names::SELECT_CONSOLE, names::SELECT_UNLABELLED_INGRESSES, routes)
}

/// The lists that return every AI route ConfigMap that can be one of `routes`', and every one of a
/// route not of ours: see [`route_lists`].
pub fn route_config_map_lists<'a>(routes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    route_lists(names::SELECT_AI_ROUTES, names::SELECT_UNLABELLED_AI_ROUTES, routes)
}

/// The lists (`all` narrowed) that return every object that can be one of `routes`', and not every
/// route's: those the worker labelled with one of them ([`names::LABEL_ROUTE`]; a few kilobytes of
/// names a list), and all those it did not label (`unlabelled`) — the console's own routes', one the
/// console saved since (a save rebuilds the object without our label), one written before the label
/// was. An object of ours is labelled with its own route only, so none is missed; on a cluster of
/// the worker's routes, a batch reads its own routes' objects whatever the cluster's size.
fn route_lists<'a>(all: &str, unlabelled: &str, routes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut lists = vec![unlabelled.to_string()];
    let mut chunk: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for route in routes {
        if bytes + route.len() + 1 > ROUTES_PER_SELECTOR_BYTES && !chunk.is_empty() {
            lists.push(names::select_routes(all, chunk.drain(..)));
            bytes = 0;
        }
        bytes += route.len() + 1;
        chunk.push(route);
    }
    if !chunk.is_empty() {
        lists.push(names::select_routes(all, chunk));
    }
    lists
}

/// A look at models' fence entries: their shards by name, at most [`names::FENCE_SHARDS`] reads
/// whatever the batch (a shard is kept between batches, so a read of one that has not moved is a
/// metadata read).
pub fn fence_look<'a>(models: impl IntoIterator<Item = &'a str>) -> ReadSet {
    let mut set = ReadSet::default();
    for model in models {
        set.get(Kind::ConfigMap, names::fence(model));
    }
    set
}

/// The Ingresses of a route: main and fallback.
pub fn route_ingresses(model: &str) -> [String; 2] {
    [names::route_ingress(model), names::fallback_ingress(model)]
}

fn secret_names(event: &LifecycleEvent) -> Vec<&str> {
    let Lifecycle::Deployed(deployed) = &event.body else {
        return Vec::new();
    };
    let provider = deployed.provider.api_tokens_secret_ref.iter();
    let consumers = deployed
        .auth
        .iter()
        .flat_map(|a| a.consumers.iter())
        .filter_map(|c| c.credentials_secret_ref.as_ref());
    provider.chain(consumers).map(|r| r.name.as_str()).collect()
}

/// Secret rotation's first read: the fence shards, where deploys record the Secrets they used.
pub fn fence_reads() -> ReadSet {
    let mut set = ReadSet::default();
    set.list(Kind::ConfigMap, names::SELECT_FENCES);
    set
}

/// Secret rotation's second and third reads: the objects the live routes' Secret values went into,
/// then the Secrets. In that order: a Secret read after the object is never older than a value
/// another writer put there before our read, so rotation never writes an older value over it.
pub fn rotation_reads(
    users: &[(String, super::fence::FenceEntry)],
    console: super::ConsoleVersion,
) -> (ReadSet, ReadSet) {
    use super::plugins::BuiltinPlugin;
    let mut objects = ReadSet::default();
    objects.get(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(console));
    objects.get(Kind::WasmPlugin, BuiltinPlugin::KeyAuth.cr_name(console));
    let mut secrets = ReadSet::default();
    for (_, entry) in users {
        for used in &entry.secrets {
            secrets.get(Kind::Secret, used.secret.clone());
        }
    }
    (objects, secrets)
}
