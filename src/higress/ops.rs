//! Entry-level edits of shared objects. Each edit touches only its own entries and can be applied
//! again to a freshly read copy after a 409, so other writers' entries survive, field for field.

use super::fence::FenceEntry;
use super::index::{self, credentials_of, list_at, rule_provider, AnnotationEdit, AnnotationTable, EntryIndex};
use super::names;
use super::plugins::{field, Targets};
use super::provider::{self, ExistingUpstream};
use crate::gateway::Written;
use crate::reason::Reason;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Why an edit cannot be applied to the current object; the event is rejected (or, when a newer
/// event has fenced the model meanwhile, stale).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditRefused(pub Reason, pub String);

/// One entry-level edit. Which object it applies to is said by the [`super::plan::Step`] holding it.
/// Its `Debug` output redacts API tokens and credentials.
#[derive(Clone, PartialEq)]
pub enum Op {
    /// McpBridge: update `spec.registries[name]` in place (console-managed fields only) or append.
    UpsertRegistry(Value),
    RemoveRegistry(String),
    /// ai-proxy: replace `defaultConfig.providers[id]` or append; enables the global config.
    UpsertProvider(Value),
    /// ai-proxy: remove the provider entry; an empty list disables the global config.
    RemoveProvider(String),
    /// ai-proxy: the provider's service rule `{service: [s], config: {activeProviderId: p}}`; rules of
    /// the same provider on another service go; a rule of another provider on `s` refuses the edit.
    UpsertProviderServiceRule {
        provider: String,
        service: String,
    },
    /// Removes the provider's upstream service (the `service` of its rule, the one whose
    /// `config.activeProviderId` names it) from every rule's `service` list, as the console does when
    /// it deletes a provider; a rule whose list empties goes. Decided on the object at write time, so
    /// a rule another writer added after the batch read goes too.
    RemoveProviderService(String),
    /// Replaces the rule with the same targets, or inserts it in the console's order.
    UpsertRule(Value),
    /// Inserts the rule only when no rule has the same targets (leaves a user's edits alone).
    InsertRuleIfAbsent(Value),
    RemoveRule(Targets),
    /// Removes an Ingress from every rule's `ingress` list; a rule whose list empties goes.
    RemoveIngressTarget(String),
    /// key-auth: replace `defaultConfig.consumers[name]` or append, refusing duplicate credentials.
    UpsertConsumer(Value),
    /// key-auth: remove the consumer unless an allow list (global or any rule) still names it.
    RemoveConsumerIfUnused(String),
    /// key-auth: create the global config with the console's defaults when it is missing or empty.
    EnsureKeyAuthGlobal,
    /// Sets one key of `defaultConfig` and enables it (model-router `modelToHeader`).
    SetDefaultConfigKey(String, Value),
    /// Fence ConfigMap: record the model's entry unless a newer one is there (then the edit is
    /// refused as superseded); drop other models' retirements older than `prune_before`.
    SetFence {
        model: String,
        entry: FenceEntry,
        prune_before: String,
    },
    /// McpBridge, ai-proxy: record that a route of ours uses a provider (the object's annotation), so
    /// a concurrent clean-up of the provider, re-checking on its 409 re-read, keeps it.
    /// The revision is the route's event's: see `index::Users`.
    AddProviderUser {
        provider: String,
        route: String,
        revision: u64,
    },
    /// ai-proxy: changes nothing, but refuses the write when the object no longer holds the provider
    /// as the route relies on it (another route's, which that route's retirement may remove, or its
    /// redeploy move to another service, between our read and our write).
    RequireProvider {
        provider: String,
        upstream: ExistingUpstream,
    },
    /// McpBridge: as [`Op::RequireProvider`], for the registry the provider's service is served from.
    RequireRegistry {
        provider: String,
        upstream: ExistingUpstream,
    },
    /// ai-proxy, McpBridge: refuses the write when routes other than `route` use the provider (a
    /// redeploy moving its provider to another service would leave their Ingresses behind).
    RequireNoOtherUsers {
        provider: String,
        route: String,
    },
    /// ai-proxy, key-auth: records `source` (`route@revision`) as the event that built the entry
    /// (`names::secret_source_of_*`) from a Secret, or removes the record (`None`: written inline).
    SetSecretSource {
        entry: String,
        source: Option<String>,
    },
    /// Removes the route's record if it is of `revision` or earlier.
    RemoveProviderUser {
        provider: String,
        route: String,
        revision: u64,
    },
    /// ai-proxy: set the `apiTokens` of provider `provider`, if it is there (a rotated Secret).
    SetProviderTokens {
        provider: String,
        tokens: Vec<String>,
    },
    /// key-auth: set the `credentials` of the consumer named in the entry, if it is there (a rotated
    /// Secret), refusing duplicate credentials as [`Op::UpsertConsumer`] does.
    SetConsumerCredentials(Value),
    /// The edit, only if no route of ours uses the provider according to this object, as it is now.
    IfProviderUnused {
        provider: String,
        then: Box<Op>,
    },
    /// Records that the route's event at `revision` wrote its entries in this object (the object's
    /// route-revisions annotation); a newer record stays. A deploy records itself in every object
    /// where it has route entries, so its write happens even when the entries are already in place:
    /// an older event's edit landing later then finds the newer record.
    RecordRoute {
        route: String,
        revision: u64,
    },
    /// Removes the route's record if it is of `revision` or earlier (a retirement).
    ForgetRoute {
        route: String,
        revision: u64,
    },
    /// The edit of a route's entries, only if this object, as it is now, records no newer revision
    /// of the route: an older retirement or deploy landing after a newer deploy leaves its work alone.
    IfRouteNotNewer {
        route: String,
        revision: u64,
        then: Box<Op>,
    },
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::UpsertProvider(entry) => f.debug_tuple("UpsertProvider").field(&redacted(entry)).finish(),
            Op::UpsertConsumer(entry) => f.debug_tuple("UpsertConsumer").field(&redacted(entry)).finish(),
            Op::UpsertRegistry(v) => f.debug_tuple("UpsertRegistry").field(v).finish(),
            Op::RemoveRegistry(v) => f.debug_tuple("RemoveRegistry").field(v).finish(),
            Op::RemoveProvider(v) => f.debug_tuple("RemoveProvider").field(v).finish(),
            Op::UpsertProviderServiceRule { provider, service } => f
                .debug_struct("UpsertProviderServiceRule")
                .field("provider", provider)
                .field("service", service)
                .finish(),
            Op::RemoveProviderService(v) => f.debug_tuple("RemoveProviderService").field(v).finish(),
            // Route plugin configs may hold a Redis password.
            Op::UpsertRule(v) => f.debug_tuple("UpsertRule").field(&redacted(v)).finish(),
            Op::InsertRuleIfAbsent(v) => f.debug_tuple("InsertRuleIfAbsent").field(&redacted(v)).finish(),
            Op::RemoveRule(v) => f.debug_tuple("RemoveRule").field(v).finish(),
            Op::RemoveIngressTarget(v) => f.debug_tuple("RemoveIngressTarget").field(v).finish(),
            Op::RemoveConsumerIfUnused(v) => f.debug_tuple("RemoveConsumerIfUnused").field(v).finish(),
            Op::EnsureKeyAuthGlobal => f.write_str("EnsureKeyAuthGlobal"),
            Op::SetDefaultConfigKey(k, v) => f.debug_tuple("SetDefaultConfigKey").field(k).field(v).finish(),
            Op::SetFence { model, entry, .. } => f
                .debug_struct("SetFence")
                .field("model", model)
                .field("entry", entry)
                .finish(),
            Op::AddProviderUser {
                provider,
                route,
                revision,
            } => f
                .debug_tuple("AddProviderUser")
                .field(provider)
                .field(route)
                .field(revision)
                .finish(),
            Op::SetSecretSource { entry, source } => {
                f.debug_tuple("SetSecretSource").field(entry).field(source).finish()
            }
            Op::RequireProvider { provider, upstream } | Op::RequireRegistry { provider, upstream } => f
                .debug_struct("Require")
                .field("provider", provider)
                .field("upstream", upstream)
                .finish(),
            Op::RequireNoOtherUsers { provider, route } => f
                .debug_tuple("RequireNoOtherUsers")
                .field(provider)
                .field(route)
                .finish(),
            Op::RemoveProviderUser {
                provider,
                route,
                revision,
            } => f
                .debug_tuple("RemoveProviderUser")
                .field(provider)
                .field(route)
                .field(revision)
                .finish(),
            Op::IfProviderUnused { provider, then } => {
                f.debug_tuple("IfProviderUnused").field(provider).field(then).finish()
            }
            Op::RecordRoute { route, revision } => f.debug_tuple("RecordRoute").field(route).field(revision).finish(),
            Op::ForgetRoute { route, revision } => f.debug_tuple("ForgetRoute").field(route).field(revision).finish(),
            Op::IfRouteNotNewer { route, revision, then } => f
                .debug_tuple("IfRouteNotNewer")
                .field(route)
                .field(revision)
                .field(then)
                .finish(),
            Op::SetProviderTokens { provider, .. } => f
                .debug_struct("SetProviderTokens")
                .field("provider", provider)
                .field("tokens", &"<redacted>")
                .finish(),
            Op::SetConsumerCredentials(entry) => {
                f.debug_tuple("SetConsumerCredentials").field(&redacted(entry)).finish()
            }
        }
    }
}

/// A copy of an object with every secret-bearing value replaced, for diagnostics.
pub fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match k.as_str() {
                    "apiTokens" | "credentials" | "credential" | "data" | "stringData" | "password" => {
                        (k.clone(), Value::String("<redacted>".into()))
                    }
                    _ => (k.clone(), redacted(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

impl Op {
    /// An upper bound of how many bytes the edit can add to the object's JSON: what a batch adds to
    /// a shared object is known without serializing it after every event.
    pub fn growth_bound(&self) -> usize {
        let json = |value: &Value| serde_json::to_string(value).map_or(0, |text| text.len());
        // A value stored inside a JSON string (annotations, ConfigMap data) may double when escaped.
        const ENTRY: usize = 64;
        match self {
            Op::UpsertRegistry(v) | Op::UpsertProvider(v) | Op::UpsertConsumer(v) | Op::SetConsumerCredentials(v) => {
                json(v) + ENTRY
            }
            Op::SetProviderTokens { tokens, .. } => tokens.iter().map(|t| 2 * t.len() + 4).sum::<usize>() + ENTRY,
            Op::UpsertRule(v) | Op::InsertRuleIfAbsent(v) => json(v) + ENTRY,
            Op::SetDefaultConfigKey(k, v) => k.len() + json(v) + ENTRY,
            Op::UpsertProviderServiceRule { provider, service } => 2 * (provider.len() + service.len()) + 4 * ENTRY,
            Op::EnsureKeyAuthGlobal => 4 * ENTRY,
            Op::SetFence { model, entry, .. } => 2 * (model.len() + entry.to_json().len()) + ENTRY,
            // The route's name and revision, in the annotation's JSON and in its part kept apart.
            Op::AddProviderUser { provider, route, .. } => 2 * (provider.len() + route.len() + 20) + ENTRY,
            Op::RecordRoute { route, .. } => 2 * (route.len() + 24) + ENTRY,
            Op::SetSecretSource { entry, source } => {
                2 * (entry.len() + source.as_ref().map_or(0, String::len) + 8) + ENTRY
            }
            Op::IfRouteNotNewer { then, .. } => then.growth_bound(),
            // The last provider out disables the global config.
            Op::RemoveProvider(_) => 16,
            Op::RemoveRegistry(_)
            | Op::RemoveProviderService(_)
            | Op::RemoveRule(_)
            | Op::RemoveIngressTarget(_)
            | Op::RemoveConsumerIfUnused(_)
            | Op::RemoveProviderUser { .. }
            | Op::ForgetRoute { .. }
            | Op::IfProviderUnused { .. }
            | Op::RequireProvider { .. }
            | Op::RequireRegistry { .. }
            | Op::RequireNoOtherUsers { .. } => 0,
        }
    }

    /// What the edit writes into a plugin's config, as the gateway will read it (under any condition),
    /// for `gateway::admit`. `object`: the plugin CR as it is before the edit.
    pub fn gateway_writes(&self, object: Option<&Value>) -> Vec<Written> {
        let existing = |list: &str, key: &str, name: &str| -> Option<Map<String, Value>> {
            list_at(object?, &format!("/spec/defaultConfig/{list}"))
                .iter()
                .find(|entry| field(entry, key).and_then(Value::as_str) == Some(name))
                .and_then(Value::as_object)
                .cloned()
        };
        let global = || -> Map<String, Value> {
            object
                .and_then(|o| o.pointer("/spec/defaultConfig"))
                .and_then(Value::as_object)
                .map(|config| {
                    config
                        .iter()
                        .filter(|(key, _)| !matches!(key.as_str(), "providers" | "consumers"))
                        .map(|(key, value)| (key.clone(), value.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        match self {
            Op::UpsertProvider(entry) => vec![Written::Provider(entry.clone())],
            Op::SetProviderTokens { provider, tokens } => existing("providers", "id", provider)
                .map(|mut entry| {
                    entry.insert("apiTokens".into(), json!(tokens));
                    Written::Provider(Value::Object(entry))
                })
                .into_iter()
                .collect(),
            Op::UpsertConsumer(entry) => vec![Written::Consumer(entry.clone())],
            Op::SetConsumerCredentials(consumer) => {
                let name = field(consumer, "name").and_then(Value::as_str).unwrap_or_default();
                existing("consumers", "name", name)
                    .map(|mut entry| {
                        let credentials = consumer.get("credentials").cloned().unwrap_or_else(|| json!([]));
                        entry.insert("credentials".into(), credentials);
                        Written::Consumer(Value::Object(entry))
                    })
                    .into_iter()
                    .collect()
            }
            Op::UpsertProviderServiceRule { provider, service } => vec![Written::Rule(
                Targets::service(service).rule(json!({"activeProviderId": provider}), true),
            )],
            Op::UpsertRule(rule) | Op::InsertRuleIfAbsent(rule) => vec![Written::Rule(rule.clone())],
            Op::SetDefaultConfigKey(key, value) => {
                let mut config = global();
                config.insert(key.clone(), value.clone());
                vec![Written::Global(Value::Object(config))]
            }
            Op::EnsureKeyAuthGlobal => {
                let present = object
                    .and_then(|o| o.pointer("/spec/defaultConfig"))
                    .and_then(Value::as_object)
                    .is_some_and(|config| !config.is_empty());
                if present {
                    // The edit leaves a global config that is there alone.
                    return Vec::new();
                }
                let mut probe = json!({"spec": {}});
                ensure_key_auth_global(&mut probe);
                // With its (empty) consumer list: the plugin requires one.
                let config = probe["spec"]["defaultConfig"].as_object().cloned().unwrap_or_default();
                vec![Written::Global(Value::Object(config))]
            }
            Op::IfProviderUnused { then, .. } | Op::IfRouteNotNewer { then, .. } => then.gateway_writes(object),
            _ => Vec::new(),
        }
    }

    /// The consumer entry the edit writes, if it writes one (under any condition).
    fn consumer_written(&self) -> Option<&Value> {
        match self {
            Op::UpsertConsumer(consumer) | Op::SetConsumerCredentials(consumer) => Some(consumer),
            Op::IfProviderUnused { then, .. } | Op::IfRouteNotNewer { then, .. } => then.consumer_written(),
            _ => None,
        }
    }

    /// What checking each edit against the object cannot see: edits of one object colliding with each
    /// other. Two consumers of one event (or one rotation) may get the same credential from Secrets,
    /// which the contract cannot compare; the key-auth plugin rejects its whole config then.
    pub fn check_together(ops: &[Op]) -> Result<(), EditRefused> {
        let consumers: Vec<(&str, &Value)> = ops
            .iter()
            .filter_map(Op::consumer_written)
            .map(|consumer| {
                (
                    field(consumer, "name").and_then(Value::as_str).unwrap_or_default(),
                    consumer,
                )
            })
            .collect();
        for (i, (name, consumer)) in consumers.iter().enumerate() {
            let shared = consumers[..i].iter().find(|(other, earlier)| {
                other != name && credentials_of(earlier).any(|v| credentials_of(consumer).any(|ours| ours == v))
            });
            if let Some((other, _)) = shared {
                return Err(EditRefused(
                    Reason::EntryTaken,
                    format!("consumers {other:?} and {name:?} would share a credential"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the edit fits the object as it is, without changing it.
    pub fn check(&self, object: &Value) -> Result<(), EditRefused> {
        self.check_indexed(object, &mut EntryIndex::default())
    }

    /// [`Op::check`] with the object's index (see [`super::index`]).
    pub fn check_indexed(&self, object: &Value, index: &mut EntryIndex) -> Result<(), EditRefused> {
        match self {
            Op::SetFence { model, entry, .. } => {
                let current = object
                    .pointer("/data")
                    .and_then(|d| d.get(model))
                    .and_then(FenceEntry::parse);
                match current.filter(|c| c.supersedes(entry)) {
                    Some(current) => Err(EditRefused(
                        Reason::Superseded,
                        format!("model {model} has meanwhile seen revision {}", current.revision),
                    )),
                    None => Ok(()),
                }
            }
            Op::IfProviderUnused { then, .. } => then.check_indexed(object, index),
            Op::RequireProvider { provider, upstream } => {
                let relied = match &upstream.registry {
                    Some(_) => None,
                    None => Some((upstream.service.clone(), upstream.port)),
                };
                match provider::custom_service(object, index, provider) {
                    Some(custom) if custom == relied => Ok(()),
                    Some(_) => Err(provider_moved(provider, object, upstream)),
                    None => Err(provider_gone(provider, object, "it")),
                }
            }
            Op::RequireRegistry { provider, upstream } => match provider::registry_upstream(object, index, provider) {
                Some(found) if &found == upstream => Ok(()),
                Some(_) => Err(provider_moved(provider, object, upstream)),
                None => Err(provider_gone(provider, object, "its registry")),
            },
            Op::RequireNoOtherUsers { provider, route } => {
                let users = index.users(provider_users_text(object));
                let others: Vec<&String> = users
                    .map()
                    .get(provider)
                    .into_iter()
                    .flat_map(BTreeMap::keys)
                    .filter(|user| *user != route)
                    .collect();
                match others.is_empty() {
                    true => Ok(()),
                    false => Err(provider_in_use(provider, &others)),
                }
            }
            Op::IfRouteNotNewer { route, revision, then } => {
                if index.routes(route_revisions_text(object)).get(route) > *revision {
                    return Ok(());
                }
                then.check_indexed(object, index)
            }
            Op::UpsertProviderServiceRule { provider, service } => {
                if !index.rules(object).service_taken(service, provider) {
                    return Ok(());
                }
                let rules = object.pointer("/spec/matchRules").and_then(Value::as_array);
                let taken = rules.into_iter().flatten().find(|r| {
                    Targets::is_exactly(r, "service", service) && rule_provider(r) != Some(provider.as_str())
                });
                match taken {
                    Some(other) => Err(EditRefused(
                        Reason::EntryTaken,
                        format!(
                            "service {service} is already bound to provider {:?} in ai-proxy.internal",
                            rule_provider(other).unwrap_or_default()
                        ),
                    )),
                    None => Ok(()),
                }
            }
            Op::UpsertConsumer(consumer) | Op::SetConsumerCredentials(consumer) => {
                let name = consumer.get("name").and_then(Value::as_str).unwrap_or_default();
                if !index.consumers(object).credential_taken(consumer, name) {
                    return Ok(());
                }
                let consumers = object
                    .pointer("/spec/defaultConfig/consumers")
                    .and_then(Value::as_array);
                // The key-auth plugin rejects its whole config when a credential string is used twice.
                let taken = consumers.into_iter().flatten().find(|c| {
                    field(c, "name").and_then(Value::as_str) != Some(name)
                        && credentials_of(c).any(|v| credentials_of(consumer).any(|ours| ours == v))
                });
                match taken {
                    Some(other) => Err(EditRefused(
                        Reason::EntryTaken,
                        format!(
                            "a credential of consumer {name:?} is already used by consumer {:?}",
                            other.get("name").and_then(Value::as_str).unwrap_or_default()
                        ),
                    )),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Applies the edit; says whether the object changed.
    pub fn apply(&self, object: &mut Value) -> Result<bool, EditRefused> {
        self.apply_indexed(object, &mut EntryIndex::default())
    }

    /// [`Op::apply`] with the object's index, kept up to date (see [`super::index`]).
    pub fn apply_indexed(&self, object: &mut Value, index: &mut EntryIndex) -> Result<bool, EditRefused> {
        self.check_indexed(object, index)?;
        let changed = self.apply_checked(object, index)?;
        if changed && !self.keeps_index() {
            index.reset();
        }
        Ok(changed)
    }

    /// Whether the edit keeps the object's index up to date; edits that do not drop it.
    fn keeps_index(&self) -> bool {
        match self {
            Op::IfRouteNotNewer { then, .. } => then.keeps_index(),
            _ => matches!(
                self,
                Op::UpsertRegistry(_)
                    | Op::UpsertProvider(_)
                    | Op::UpsertProviderServiceRule { .. }
                    | Op::UpsertRule(_)
                    | Op::InsertRuleIfAbsent(_)
                    | Op::UpsertConsumer(_)
                    | Op::EnsureKeyAuthGlobal
                    | Op::AddProviderUser { .. }
                    | Op::RemoveProviderUser { .. }
                    | Op::RecordRoute { .. }
                    | Op::ForgetRoute { .. }
                    | Op::SetFence { .. }
                    | Op::RequireProvider { .. }
                    | Op::RequireRegistry { .. }
                    | Op::RequireNoOtherUsers { .. }
                    | Op::SetSecretSource { .. }
            ),
        }
    }

    /// Applies an edit already checked against the object.
    fn apply_checked(&self, object: &mut Value, index: &mut EntryIndex) -> Result<bool, EditRefused> {
        Ok(match self {
            Op::UpsertRegistry(registry) => upsert_registry(object, registry, index),
            Op::RemoveRegistry(name) => retain_in(object, "/spec/registries", |r| {
                field(r, "name").and_then(Value::as_str) != Some(name)
            }),
            Op::UpsertProvider(entry) => {
                let positions = index.providers(object);
                let at = positions.find(list_at(object, "/spec/defaultConfig/providers"), field(entry, "id"));
                if at.is_none() {
                    positions.pushed(entry);
                }
                let changed = upsert_at(list_in(default_config(object), "providers"), at, entry);
                set_default_config_disable(object, false) | changed
            }
            Op::RemoveProvider(id) => {
                let removed = retain_in(object, "/spec/defaultConfig/providers", |p| {
                    field(p, "id").and_then(Value::as_str) != Some(id)
                });
                let empty = object
                    .pointer("/spec/defaultConfig/providers")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty);
                if removed && empty {
                    *default_config(object) = Map::from_iter([("providers".to_string(), json!([]))]);
                    set_default_config_disable(object, true);
                }
                removed
            }
            Op::UpsertProviderServiceRule { provider, service } => {
                // Rules of the provider on other services go (usually there are none to look for).
                let moved = !index.rules(object).provider_only_on(provider, service)
                    && retain_in(object, "/spec/matchRules", |r| {
                        rule_provider(r) != Some(provider.as_str()) || Targets::is_exactly(r, "service", service)
                    });
                if moved {
                    index.forget_rules();
                }
                let rule = Targets::service(service).rule(json!({"activeProviderId": provider}), true);
                upsert_rule(object, rule, false, index) | moved
            }
            Op::RemoveProviderService(provider) => {
                let services: Vec<String> = object
                    .pointer("/spec/matchRules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|rule| rule.pointer("/config/activeProviderId").and_then(Value::as_str) == Some(provider))
                    .filter_map(|rule| rule.get("service").and_then(Value::as_array))
                    .flatten()
                    .filter_map(|service| service.as_str().map(str::to_string))
                    .collect();
                let mut changed = false;
                for service in &services {
                    changed |= remove_target(object, "service", service);
                }
                changed
            }
            Op::UpsertRule(rule) => upsert_rule(object, rule.clone(), false, index),
            Op::InsertRuleIfAbsent(rule) => upsert_rule(object, rule.clone(), true, index),
            Op::RemoveRule(targets) => retain_in(object, "/spec/matchRules", |r| !targets.matches(r)),
            Op::RemoveIngressTarget(ingress) => remove_target(object, "ingress", ingress),
            Op::UpsertConsumer(consumer) => {
                let mut changed = ensure_key_auth_global(object);
                let consumers = index.consumers(object);
                let list = list_at(object, "/spec/defaultConfig/consumers");
                let at = consumers.names.find(list, field(consumer, "name"));
                match at {
                    Some(at) => consumers.replaced(&list[at], consumer),
                    None => consumers.added(consumer),
                }
                let config = default_config(object);
                changed |= upsert_at(list_in(config, "consumers"), at, consumer);
                changed | (config.insert("global_auth".into(), Value::Bool(false)) != Some(Value::Bool(false)))
            }
            Op::RemoveConsumerIfUnused(name) => {
                !allow_lists_name(object, name)
                    && retain_in(object, "/spec/defaultConfig/consumers", |c| {
                        field(c, "name").and_then(Value::as_str) != Some(name)
                    })
            }
            Op::EnsureKeyAuthGlobal => ensure_key_auth_global(object),
            Op::SetProviderTokens { provider, tokens } => {
                let tokens = json!(tokens);
                entry_named(object, "/spec/defaultConfig/providers", "id", provider)
                    .is_some_and(|entry| entry.insert("apiTokens".into(), tokens.clone()).as_ref() != Some(&tokens))
            }
            Op::SetConsumerCredentials(consumer) => {
                let name = consumer.get("name").and_then(Value::as_str).unwrap_or_default();
                let credentials = consumer.get("credentials").cloned().unwrap_or_else(|| json!([]));
                entry_named(object, "/spec/defaultConfig/consumers", "name", name).is_some_and(|entry| {
                    entry.insert("credentials".into(), credentials.clone()).as_ref() != Some(&credentials)
                })
            }
            Op::SetDefaultConfigKey(key, value) => {
                let changed = default_config(object).insert(key.clone(), value.clone()).as_ref() != Some(value);
                set_default_config_disable(object, false) | changed
            }
            Op::SetFence {
                model,
                entry,
                prune_before,
            } => {
                // The shard's entries are looked at only when a retirement may be due for pruning.
                let may_prune = index.retirements(object).may_prune(prune_before);
                let data = object_at(object, "data");
                let before = data.len();
                if may_prune {
                    data.retain(|key, other| {
                        key == model || index::retired_at(other).is_none_or(|at| at.as_str() >= prune_before.as_str())
                    });
                }
                let pruned = data.len() != before;
                // A replayed retirement keeps the first retirement's time. A retirement also keeps what
                // the entry it replaces says the route uses: a deploy may have recorded it after the
                // retirement was planned, and the retirement's replay must still release it.
                let current = data.get(model).and_then(FenceEntry::parse);
                let mut entry = entry.clone();
                if let (Some(current), true) = (&current, entry.is_retired()) {
                    for (ours, theirs) in [
                        (&mut entry.providers, &current.providers),
                        (&mut entry.consumers, &current.consumers),
                    ] {
                        for name in theirs {
                            if !ours.contains(name) {
                                ours.push(name.clone());
                            }
                        }
                    }
                }
                let same = current.as_ref().is_some_and(|c| {
                    c.revision == entry.revision
                        && c.is_retired() == entry.is_retired()
                        && c.providers == entry.providers
                        && c.consumers == entry.consumers
                        && c.secrets == entry.secrets
                });
                if !same {
                    if let Some(first) = current.filter(|c| c.revision == entry.revision && c.is_retired()) {
                        entry.retired_at = first.retired_at;
                    }
                    data.insert(model.clone(), Value::String(entry.to_json()));
                }
                if may_prune {
                    index.forget_retirements();
                } else {
                    let retired_at = entry.retired_at.as_deref().filter(|_| !same);
                    index.retirement_written(data.len(), retired_at);
                }
                pruned || !same
            }
            Op::AddProviderUser {
                provider,
                route,
                revision,
            } => {
                let users = index.users(provider_users_text(object));
                let edit = users.add(provider, route, *revision);
                write_annotation(object, names::ANNOTATION_PROVIDER_USERS, edit, users)
            }
            Op::RemoveProviderUser {
                provider,
                route,
                revision,
            } => {
                let users = index.users(provider_users_text(object));
                users.remove(provider, route, *revision)
                    && write_annotation(object, names::ANNOTATION_PROVIDER_USERS, AnnotationEdit::Rewrite, users)
            }
            Op::RequireProvider { .. } | Op::RequireRegistry { .. } | Op::RequireNoOtherUsers { .. } => false,
            Op::SetSecretSource { entry, source } => {
                let text = secret_sources_text(object);
                let key = serde_json::to_string(entry).expect("a string serializes");
                // Most entries are written inline: no record to remove, and no text to parse.
                if source.is_none() && !text.is_some_and(|t| t.contains(&key)) {
                    return Ok(false);
                }
                let mut sources: Map<String, Value> =
                    text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
                let changed = match source {
                    Some(source) => sources.insert(entry.clone(), json!(source)).as_ref() != Some(&json!(source)),
                    None => sources.shift_remove(entry).is_some(),
                };
                let text = (!sources.is_empty()).then(|| Value::Object(sources).to_string());
                changed && set_annotation(object, names::ANNOTATION_SECRET_SOURCES, text.as_deref())
            }
            Op::IfProviderUnused { provider, then } => {
                let used = index
                    .users(provider_users_text(object))
                    .map()
                    .get(provider)
                    .is_some_and(|routes| !routes.is_empty());
                !used && then.apply_checked(object, index)?
            }
            Op::RecordRoute { route, revision } => {
                let routes = index.routes(route_revisions_text(object));
                let edit = routes.record(route, *revision);
                write_annotation(object, names::ANNOTATION_ROUTE_REVISIONS, edit, routes)
            }
            Op::ForgetRoute { route, revision } => {
                let routes = index.routes(route_revisions_text(object));
                routes.forget(route, *revision)
                    && write_annotation(
                        object,
                        names::ANNOTATION_ROUTE_REVISIONS,
                        AnnotationEdit::Rewrite,
                        routes,
                    )
            }
            Op::IfRouteNotNewer { route, revision, then } => {
                let newer = index.routes(route_revisions_text(object)).get(route) > *revision;
                !newer && then.apply_checked(object, index)?
            }
        })
    }
}

/// Brings one of our annotations in line with its table after `edit`; says whether it changed.
fn write_annotation(
    object: &mut Value,
    annotation: &str,
    edit: AnnotationEdit,
    table: &mut impl AnnotationTable,
) -> bool {
    match edit {
        AnnotationEdit::Unchanged => false,
        AnnotationEdit::Append(part) => {
            table.appended(append_to_annotation(object, annotation, &part));
            true
        }
        AnnotationEdit::Rewrite => {
            let text = table.render();
            set_annotation(object, annotation, text.as_deref())
        }
    }
}

/// Appends a member (`"key":value`) to the JSON object held by one of our annotations, in place
/// (a batch adds hundreds to the same large text); returns the text's new length.
fn append_to_annotation(object: &mut Value, annotation: &str, part: &str) -> usize {
    let slot = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .and_then(|annotations| annotations.get_mut(annotation));
    let Some(Value::String(text)) = slot else {
        let text = format!("{{{part}}}");
        let len = text.len();
        set_annotation(object, annotation, Some(&text));
        return len;
    };
    text.pop();
    if text.len() > 1 {
        text.push(',');
    }
    text.push_str(part);
    text.push('}');
    text.len()
}

fn route_revisions_text(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(names::ANNOTATION_ROUTE_REVISIONS))
        .and_then(Value::as_str)
}

/// The routes of ours that use each provider, from the object's annotation.
pub fn provider_users(object: &Value) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    crate::higress::index::Users::parse(provider_users_text(object))
        .map()
        .iter()
        .map(|(provider, routes)| (provider.clone(), routes.keys().cloned().collect()))
        .collect()
}

/// The record of the event that built the entry (`names::secret_source_of_*`) from a Secret, if any.
pub fn secret_source(object: &Value, entry: &str) -> Option<String> {
    let sources: Map<String, Value> = serde_json::from_str(secret_sources_text(object)?).ok()?;
    Some(sources.get(entry)?.as_str()?.to_string())
}

fn secret_sources_text(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(names::ANNOTATION_SECRET_SOURCES))
        .and_then(Value::as_str)
}

fn provider_users_text(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(names::ANNOTATION_PROVIDER_USERS))
        .and_then(Value::as_str)
}

/// Writes one of our annotations (`None`: it goes). Always true: the annotation changed.
fn set_annotation(object: &mut Value, key: &str, text: Option<&str>) -> bool {
    let metadata = object_at(object, "metadata");
    let slot = metadata.entry("annotations".to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    let annotations = slot.as_object_mut().expect("just made an object");
    match text {
        None => {
            annotations.shift_remove(key);
            if annotations.is_empty() {
                metadata.shift_remove("annotations");
            }
        }
        Some(text) => {
            annotations.insert(key.to_string(), Value::String(text.to_string()));
        }
    }
    true
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A route relies on another route's provider that `object` no longer holds (`what`: the provider, or
/// its registry): the console's "Unknown provider", found at the write.
fn provider_gone(provider: &str, object: &Value, what: &str) -> EditRefused {
    let name = name_of(object);
    EditRefused(
        Reason::UnknownProvider,
        format!("data.route: Unknown provider {provider:?}: {name} no longer holds {what} (removed meanwhile, as its route was retired)"),
    )
}

/// A route relies on another route's provider that `object` now serves elsewhere.
fn provider_moved(provider: &str, object: &Value, upstream: &ExistingUpstream) -> EditRefused {
    let name = name_of(object);
    EditRefused(
        Reason::UnknownProvider,
        format!(
            "data.route: provider {provider:?} is no longer served at {}:{} in {name} (moved meanwhile by its own route's redeploy)",
            upstream.service, upstream.port
        ),
    )
}

/// Routes other than the event's use the provider it would move.
pub fn provider_in_use(provider: &str, others: &[impl AsRef<str>]) -> EditRefused {
    let others: Vec<&str> = others.iter().map(AsRef::as_ref).take(5).collect();
    EditRefused(
        Reason::EntryTaken,
        format!(
            "data.provider: provider {provider:?} also serves routes {others:?}: moving it to another service or \
             port would leave their Ingresses at the old one; give this route its own provider, or redeploy \
             those routes with another provider first"
        ),
    )
}

/// The entry of the list at `pointer` whose `key` is `name`, if there is one.
fn entry_named<'a>(object: &'a mut Value, pointer: &str, key: &str, name: &str) -> Option<&'a mut Map<String, Value>> {
    object
        .pointer_mut(pointer)?
        .as_array_mut()?
        .iter_mut()
        .filter_map(Value::as_object_mut)
        .find(|entry| entry.get(key).and_then(Value::as_str) == Some(name))
}

fn object_at<'a>(object: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let map = object.as_object_mut().expect("objects are JSON objects");
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

fn list_in<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    slot.as_array_mut().expect("just made an array")
}

fn spec_list<'a>(object: &'a mut Value, key: &str) -> &'a mut Vec<Value> {
    list_in(object_at(object, "spec"), key)
}

fn default_config(object: &mut Value) -> &mut Map<String, Value> {
    let spec = object_at(object, "spec");
    let slot = spec.entry("defaultConfig".to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// Sets `spec.defaultConfigDisable`; says whether it changed.
fn set_default_config_disable(object: &mut Value, disabled: bool) -> bool {
    object_at(object, "spec").insert("defaultConfigDisable".into(), Value::Bool(disabled))
        != Some(Value::Bool(disabled))
}

/// Keeps the entries of the list at `pointer` that `keep` accepts; a missing list stays missing.
/// Says whether anything was removed.
fn retain_in(object: &mut Value, pointer: &str, keep: impl FnMut(&Value) -> bool) -> bool {
    let Some(list) = object.pointer_mut(pointer).and_then(Value::as_array_mut) else {
        return false;
    };
    let before = list.len();
    let mut keep = keep;
    list.retain(|item| keep(item));
    list.len() != before
}

/// Replaces the entry at `at` (the one with the same key) or appends; says whether the list changed.
fn upsert_at(list: &mut Vec<Value>, at: Option<usize>, entry: &Value) -> bool {
    match at.and_then(|at| list.get_mut(at)) {
        Some(existing) if existing == entry => false,
        Some(existing) => {
            *existing = entry.clone();
            true
        }
        None => {
            list.push(entry.clone());
            true
        }
    }
}

/// Replaces the rule with equal targets in place, or inserts before the first rule that sorts after it,
/// so a list in the console's order stays in it and nobody else's rule moves relative to another.
fn upsert_rule(object: &mut Value, rule: Value, only_if_absent: bool, index: &mut EntryIndex) -> bool {
    let rules = index.rules(object);
    let targets = Targets::of(&rule);
    let list = list_at(object, "/spec/matchRules");
    let found = rules.find(list, &rule, |r| targets.matches(r));
    match found {
        Some(at) => {
            if only_if_absent || list[at] == rule {
                return false;
            }
            rules.replaced(&list[at], &rule);
            spec_list(object, "matchRules")[at] = rule;
        }
        None => {
            let at = rules.place(list, &rule);
            rules.added(&rule);
            spec_list(object, "matchRules").insert(at, rule);
        }
    }
    true
}

/// Removes a target from every rule's list; a rule whose list empties goes. A missing list stays missing.
fn remove_target(object: &mut Value, list_key: &str, target: &str) -> bool {
    let Some(rules) = object.pointer_mut("/spec/matchRules").and_then(Value::as_array_mut) else {
        return false;
    };
    let mut changed = false;
    rules.retain_mut(|rule| {
        let Some(list) = rule.get_mut(list_key).and_then(Value::as_array_mut) else {
            return true;
        };
        if !list.iter().any(|t| t.as_str() == Some(target)) {
            return true;
        }
        changed = true;
        list.retain(|t| t.as_str() != Some(target));
        !list.is_empty()
    });
    changed
}

/// McpBridge registry update in place: the console overwrites these fields and keeps all others.
fn upsert_registry(object: &mut Value, registry: &Value, index: &mut EntryIndex) -> bool {
    const MANAGED: [&str; 8] = [
        "domain",
        "type",
        "port",
        "name",
        "protocol",
        "sni",
        "proxyName",
        "vport",
    ];
    let positions = index.registries(object);
    let at = positions.find(list_at(object, "/spec/registries"), registry.get("name"));
    if at.is_none() {
        positions.pushed(registry);
    }
    let registries = spec_list(object, "registries");
    match at.and_then(|at| registries.get_mut(at)) {
        Some(existing) => {
            let existing = existing.as_object_mut().expect("registries are objects");
            let mut changed = false;
            for field in MANAGED {
                changed |= match registry.get(field) {
                    Some(value) => existing.insert(field.to_string(), value.clone()).as_ref() != Some(value),
                    None => existing.shift_remove(field).is_some(),
                };
            }
            changed
        }
        None => {
            registries.push(registry.clone());
            true
        }
    }
}

/// Creates the key-auth global config with the console's defaults when it is missing or empty, and
/// enables it; says whether anything changed.
fn ensure_key_auth_global(object: &mut Value) -> bool {
    let config = default_config(object);
    // "The plugin requires at least one global key": defaults only for a missing or empty global config.
    let created = config.is_empty();
    if created {
        config.insert("global_auth".into(), Value::Bool(false));
        config.insert("allow".into(), json!([]));
        config.insert("keys".into(), json!(["x-higress-dummy-key"]));
        config.insert("consumers".into(), json!([]));
    }
    set_default_config_disable(object, false) | created
}

/// Whether any allow list of a key-auth CR (global or any rule, enabled or not) names the consumer.
pub fn allow_lists_name(object: &Value, consumer: &str) -> bool {
    let names = |config: Option<&Value>| {
        config
            .and_then(|c| c.get("allow"))
            .and_then(Value::as_array)
            .is_some_and(|allow| allow.iter().any(|a| a.as_str() == Some(consumer)))
    };
    names(object.pointer("/spec/defaultConfig"))
        || object
            .pointer("/spec/matchRules")
            .and_then(Value::as_array)
            .is_some_and(|rules| rules.iter().any(|r| names(field(r, "config"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(spec: Value) -> Value {
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "x"}, "spec": spec})
    }

    /// A retirement decides on ai-proxy as it is at write time: the service of the provider's rule
    /// goes from every rule, even when that rule came after the batch read (another writer's deploy).
    #[test]
    fn a_provider_service_goes_from_every_rule_as_the_object_is_at_write_time() {
        let mut object = plugin(json!({"matchRules": [
            {"config": {"activeProviderId": "p"}, "configDisable": false, "service": ["llm-p.internal.dns"]},
            {"config": {"x": 1}, "configDisable": false, "service": ["llm-p.internal.dns", "other.dns"]},
            {"config": {"activeProviderId": "q"}, "configDisable": false, "service": ["llm-q.internal.dns"]},
            {"config": {}, "configDisable": false, "ingress": ["route"]}
        ]}));
        let unused = Op::IfProviderUnused {
            provider: "p".into(),
            then: Box::new(Op::RemoveProviderService("p".into())),
        };
        assert_eq!(unused.apply(&mut object), Ok(true));
        assert_eq!(
            object["spec"]["matchRules"],
            json!([
                {"config": {"x": 1}, "configDisable": false, "service": ["other.dns"]},
                {"config": {"activeProviderId": "q"}, "configDisable": false, "service": ["llm-q.internal.dns"]},
                {"config": {}, "configDisable": false, "ingress": ["route"]}
            ])
        );
        assert_eq!(unused.apply(&mut object), Ok(false), "nothing left to remove");
    }

    /// An index kept up to date across many edits answers as one built afresh for each edit (and,
    /// in debug builds, as the scans it replaces).
    #[test]
    fn edits_through_a_kept_index_equal_edits_on_a_fresh_one() {
        let start = plugin(json!({
            "defaultConfig": {"consumers": [{"name": "z", "credentials": ["k-z", "k-z"]}, {"name": "a", "credential": "k-a"}],
                              "providers": [{"id": "p1"}]},
            "registries": [{"name": "r1", "domain": "x"}],
            "matchRules": [
                {"config": {"activeProviderId": "p1"}, "configDisable": false, "service": ["s1"]},
                {"config": {"allow": ["a"]}, "configDisable": false, "ingress": ["i5", "i5"]},
                {"config": {"allow": ["z"]}, "configDisable": false, "ingress": ["i2"]}
            ]
        }));
        let rule = |ingress: &str, allow: &str| Targets::ingress(ingress).rule(json!({"allow": [allow]}), true);
        let consumer = |name: &str, key: &str| json!({"name": name, "credentials": [key]});
        let user = |provider: &str, route: &str| Op::AddProviderUser {
            provider: provider.into(),
            route: route.into(),
            revision: 1,
        };
        let mut ops = vec![
            Op::UpsertRule(rule("i3", "a")),
            Op::UpsertRule(rule("i5", "b")),
            Op::InsertRuleIfAbsent(rule("i2", "c")),
            Op::InsertRuleIfAbsent(rule("i1", "c")),
            Op::UpsertConsumer(consumer("b", "k-b")),
            Op::UpsertConsumer(consumer("b", "k-b2")),
            Op::UpsertConsumer(consumer("c", "k-z")),
            Op::UpsertConsumer(consumer("c", "k-b")),
            Op::UpsertProviderServiceRule {
                provider: "p2".into(),
                service: "s1".into(),
            },
            Op::UpsertProviderServiceRule {
                provider: "p1".into(),
                service: "s0".into(),
            },
            Op::UpsertProviderServiceRule {
                provider: "p2".into(),
                service: "s2".into(),
            },
            Op::UpsertProvider(json!({"id": "p2"})),
            Op::UpsertProvider(json!({"id": "p1", "type": "openai"})),
            Op::UpsertRegistry(json!({"name": "r2", "domain": "y"})),
            Op::UpsertRegistry(json!({"name": "r1", "domain": "z"})),
            user("p1", "m1"),
            user("p1", "m2"),
            user("p2", "m1"),
            Op::RemoveProviderUser {
                provider: "p1".into(),
                route: "m1".into(),
                revision: 1,
            },
            Op::RemoveRule(Targets::ingress("i3")),
            Op::UpsertRule(rule("i4", "a")),
            Op::RemoveIngressTarget("i2".into()),
            Op::InsertRuleIfAbsent(rule("i2", "d")),
            Op::IfProviderUnused {
                provider: "p2".into(),
                then: Box::new(Op::RemoveProvider("p2".into())),
            },
            Op::RemoveProviderUser {
                provider: "p2".into(),
                route: "m1".into(),
                revision: 1,
            },
            Op::IfProviderUnused {
                provider: "p2".into(),
                then: Box::new(Op::RemoveProvider("p2".into())),
            },
            Op::UpsertConsumer(consumer("d", "k-d")),
            // Route records: appended, rewritten for a newer revision, kept for an older one,
            // forgotten, guarded edits.
            Op::RecordRoute {
                route: "m2".into(),
                revision: 1,
            },
            Op::RecordRoute {
                route: "m1".into(),
                revision: 2,
            },
            Op::RecordRoute {
                route: "m2".into(),
                revision: 3,
            },
            Op::RecordRoute {
                route: "m1".into(),
                revision: 1,
            },
            Op::IfRouteNotNewer {
                route: "m2".into(),
                revision: 2,
                then: Box::new(Op::RemoveIngressTarget("i4".into())),
            },
            Op::ForgetRoute {
                route: "m2".into(),
                revision: 2,
            },
            Op::ForgetRoute {
                route: "m1".into(),
                revision: 2,
            },
            Op::RecordRoute {
                route: "m\"3".into(),
                revision: 1,
            },
            Op::ForgetRoute {
                route: "m2".into(),
                revision: 3,
            },
            Op::ForgetRoute {
                route: "m\"3".into(),
                revision: 1,
            },
            Op::RecordRoute {
                route: "m4".into(),
                revision: 4,
            },
        ];
        ops.extend((0..40).rev().map(|i| Op::UpsertRule(rule(&format!("n{i:02}"), "a"))));
        ops.extend((0..40).map(|i| Op::RecordRoute {
            route: format!("r{i}"),
            revision: i,
        }));
        let (mut kept, mut fresh) = (start.clone(), start);
        let mut index = EntryIndex::default();
        for op in &ops {
            let through_kept = op.apply_indexed(&mut kept, &mut index);
            let through_fresh = op.apply(&mut fresh);
            assert_eq!(through_kept, through_fresh, "{op:?}");
            assert_eq!(kept, fresh, "{op:?}");
            // The records' text, appended to in place, is what serde_json writes of them.
            if let Some(text) = route_revisions_text(&kept) {
                let records: Map<String, Value> = serde_json::from_str(text).unwrap();
                assert_eq!(text, serde_json::to_string(&records).unwrap(), "{op:?}");
            }
        }
        let records = route_revisions_text(&kept).unwrap();
        assert!(records.starts_with(r#"{"m4":4,"r0":0,"r1":1,"#), "{records}");
        let rules = kept["spec"]["matchRules"].as_array().unwrap();
        assert!(rules.len() > 40);
        assert_eq!(
            kept["spec"]["defaultConfig"]["providers"],
            json!([{"id": "p1", "type": "openai"}])
        );
    }

    #[test]
    fn registry_upsert_keeps_unmodelled_fields_and_other_registries() {
        let mut bridge = json!({"spec": {"registries": [
            {"name": "nacos", "type": "nacos2", "domain": "n", "port": 8848, "nacosNamespace": "prod"},
            {"name": "llm-a.internal", "type": "dns", "domain": "old", "port": 80, "protocol": "http", "authSecretName": "s", "sni": "x"}
        ], "proxies": [{"name": "p"}]}});
        Op::UpsertRegistry(
            json!({"domain": "a.com", "name": "llm-a.internal", "port": 443, "protocol": "https", "type": "dns"}),
        )
        .apply(&mut bridge)
        .unwrap();
        let registries = bridge["spec"]["registries"].as_array().unwrap();
        assert_eq!(registries[0]["nacosNamespace"], "prod");
        assert_eq!(registries[1]["domain"], "a.com");
        assert_eq!(registries[1]["authSecretName"], "s", "authSecretName is kept");
        assert!(
            registries[1].get("sni").is_none(),
            "sni is console-managed and written as null"
        );
        assert_eq!(bridge["spec"]["proxies"][0]["name"], "p");
    }

    #[test]
    fn a_required_provider_or_registry_changes_nothing_and_refuses_the_write_once_gone_or_moved() {
        let mut ai_proxy = plugin(json!({"defaultConfig": {"providers": [{"id": "a"}]}}));
        ai_proxy["metadata"] = json!({"name": "ai-proxy.internal"});
        let before = ai_proxy.clone();
        let upstream = |port: u16| ExistingUpstream {
            service: "llm-a.internal.dns".into(),
            port,
            registry: Some("llm-a.internal".into()),
        };
        let require = |provider: &str| Op::RequireProvider {
            provider: provider.into(),
            upstream: upstream(443),
        };
        assert_eq!(require("a").apply(&mut ai_proxy), Ok(false));
        assert_eq!(ai_proxy, before);
        let EditRefused(reason, message) = require("b").apply(&mut ai_proxy).unwrap_err();
        assert_eq!(reason, Reason::UnknownProvider);
        assert!(
            message.contains("Unknown provider \"b\": ai-proxy.internal no longer holds it"),
            "{message}"
        );
        // Served by an in-cluster service now, not by its registry.
        ai_proxy["spec"]["defaultConfig"]["providers"][0]["openaiCustomServiceName"] = json!("in-cluster.svc");
        ai_proxy["spec"]["defaultConfig"]["providers"][0]["openaiCustomServicePort"] = json!(8000);
        let EditRefused(_, message) = require("a").apply(&mut ai_proxy).unwrap_err();
        assert!(
            message.contains("no longer served at llm-a.internal.dns:443"),
            "{message}"
        );

        let mut bridge = json!({"metadata": {"name": "default"}, "spec": {"registries": [
            {"name": "llm-a.internal", "type": "dns", "domain": "a.example.com", "port": 443}]}});
        let require = |provider: &str, port: u16| Op::RequireRegistry {
            provider: provider.into(),
            upstream: upstream(port),
        };
        assert_eq!(require("a", 443).apply(&mut bridge), Ok(false));
        let EditRefused(reason, message) = require("a", 8443).apply(&mut bridge).unwrap_err();
        assert_eq!(reason, Reason::UnknownProvider);
        assert!(
            message.contains("no longer served at llm-a.internal.dns:8443"),
            "{message}"
        );
        let EditRefused(_, message) = require("b", 443).apply(&mut bridge).unwrap_err();
        assert!(
            message.contains("Unknown provider \"b\": default no longer holds its registry"),
            "{message}"
        );
    }

    #[test]
    fn a_provider_moves_only_while_no_other_route_uses_it() {
        let mut ai_proxy = plugin(json!({}));
        ai_proxy["metadata"]["annotations"] =
            json!({names::ANNOTATION_PROVIDER_USERS: r#"{"p":["a@1"],"q":["a@1","b@2"]}"#});
        let alone = |provider: &str| Op::RequireNoOtherUsers {
            provider: provider.into(),
            route: "a".into(),
        };
        assert_eq!(alone("p").apply(&mut ai_proxy), Ok(false));
        assert_eq!(alone("unused").apply(&mut ai_proxy), Ok(false));
        let EditRefused(reason, message) = alone("q").apply(&mut ai_proxy).unwrap_err();
        assert_eq!(reason, Reason::EntryTaken);
        assert!(
            message.contains("provider \"q\" also serves routes [\"b\"]"),
            "{message}"
        );
    }

    #[test]
    fn removing_the_last_provider_disables_the_global_config() {
        let mut ai_proxy =
            plugin(json!({"defaultConfig": {"providers": [{"id": "a"}]}, "defaultConfigDisable": false}));
        Op::RemoveProvider("a".into()).apply(&mut ai_proxy).unwrap();
        assert_eq!(ai_proxy["spec"]["defaultConfig"], json!({"providers": []}));
        assert_eq!(ai_proxy["spec"]["defaultConfigDisable"], true);
    }

    #[test]
    fn provider_service_rule_moves_with_the_service_and_refuses_a_taken_service() {
        let mut ai_proxy = plugin(json!({"matchRules": [
            {"config": {"activeProviderId": "a"}, "configDisable": false, "service": ["llm-a.internal.dns"]},
            {"config": {"activeProviderId": "b"}, "configDisable": false, "service": ["llm-b.internal.dns"]}
        ]}));
        Op::UpsertProviderServiceRule {
            provider: "a".into(),
            service: "llm-a.internal.static".into(),
        }
        .apply(&mut ai_proxy)
        .unwrap();
        let services: Vec<&str> = ai_proxy["spec"]["matchRules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["service"][0].as_str().unwrap())
            .collect();
        assert_eq!(services, ["llm-a.internal.static", "llm-b.internal.dns"]);
        let taken = Op::UpsertProviderServiceRule {
            provider: "c".into(),
            service: "llm-b.internal.dns".into(),
        };
        assert!(taken
            .apply(&mut ai_proxy)
            .unwrap_err()
            .1
            .contains("already bound to provider \"b\""));
    }

    #[test]
    fn rule_upsert_replaces_equal_targets_and_inserts_in_console_order() {
        let mut key_auth = plugin(json!({"matchRules": [
            {"config": {"allow": ["x"]}, "configDisable": false, "ingress": ["a"]},
            {"config": {"allow": ["y"]}, "configDisable": false, "ingress": ["c"]},
            {"config": {"allow": ["z"]}, "configDisable": false, "domain": ["d.com"]}
        ]}));
        Op::UpsertRule(Targets::ingress("b").rule(json!({"allow": ["n"]}), true))
            .apply(&mut key_auth)
            .unwrap();
        Op::UpsertRule(Targets::ingress("a").rule(json!({"allow": ["x2"]}), false))
            .apply(&mut key_auth)
            .unwrap();
        let rules = key_auth["spec"]["matchRules"].as_array().unwrap();
        let ingresses: Vec<&str> = rules.iter().filter_map(|r| r["ingress"][0].as_str()).collect();
        assert_eq!(ingresses, ["a", "b", "c"]);
        assert_eq!(rules[0]["config"]["allow"], json!(["x2"]));
        assert_eq!(rules[0]["configDisable"], true);
        assert_eq!(rules[3]["domain"], json!(["d.com"]));
    }

    #[test]
    fn insert_if_absent_leaves_an_existing_rule_alone() {
        let mut stats =
            plugin(json!({"matchRules": [{"config": {"custom": 1}, "configDisable": false, "ingress": ["a"]}]}));
        Op::InsertRuleIfAbsent(Targets::ingress("a").rule(json!({"use_default_response_attributes": true}), true))
            .apply(&mut stats)
            .unwrap();
        assert_eq!(
            stats["spec"]["matchRules"],
            json!([{"config": {"custom": 1}, "configDisable": false, "ingress": ["a"]}])
        );
    }

    #[test]
    fn removing_an_ingress_target_drops_only_emptied_rules() {
        let mut mapper = plugin(json!({"matchRules": [
            {"config": {}, "configDisable": false, "ingress": ["a"], "service": ["s"]},
            {"config": {}, "configDisable": false, "ingress": ["a", "b"]},
            {"config": {}, "configDisable": false, "ingress": ["c"]}
        ]}));
        Op::RemoveIngressTarget("a".into()).apply(&mut mapper).unwrap();
        assert_eq!(
            mapper["spec"]["matchRules"],
            json!([{"config": {}, "configDisable": false, "ingress": ["b"]}, {"config": {}, "configDisable": false, "ingress": ["c"]}])
        );
    }

    #[test]
    fn consumers_get_console_defaults_and_duplicate_credentials_are_refused() {
        let mut key_auth = plugin(json!({}));
        let alice = json!({"name": "alice", "keys": ["Authorization"], "in_header": true, "in_query": false, "credentials": ["Bearer k1"]});
        Op::UpsertConsumer(alice).apply(&mut key_auth).unwrap();
        assert_eq!(
            key_auth["spec"]["defaultConfig"],
            json!({"global_auth": false, "allow": [], "keys": ["x-higress-dummy-key"], "consumers": [
                {"name": "alice", "keys": ["Authorization"], "in_header": true, "in_query": false, "credentials": ["Bearer k1"]}]})
        );
        assert_eq!(key_auth["spec"]["defaultConfigDisable"], false);
        let bob = json!({"name": "bob", "keys": ["Authorization"], "in_header": true, "in_query": false, "credentials": ["Bearer k1"]});
        let refused = Op::UpsertConsumer(bob).apply(&mut key_auth).unwrap_err();
        assert!(refused.1.contains("already used by consumer \"alice\""));
        assert!(!refused.1.contains("k1"), "the credential never appears in the error");
    }

    #[test]
    fn a_consumer_named_by_an_allow_list_is_kept() {
        let mut key_auth = plugin(json!({
            "defaultConfig": {"consumers": [{"name": "alice"}, {"name": "bob"}]},
            "matchRules": [{"config": {"allow": ["alice"]}, "configDisable": true, "ingress": ["x"]}]
        }));
        Op::RemoveConsumerIfUnused("alice".into()).apply(&mut key_auth).unwrap();
        Op::RemoveConsumerIfUnused("bob".into()).apply(&mut key_auth).unwrap();
        assert_eq!(
            key_auth["spec"]["defaultConfig"]["consumers"],
            json!([{"name": "alice"}])
        );
    }

    #[test]
    fn fences_record_entries_refuse_older_ones_and_prune_old_retirements() {
        let retired = |revision, at: &str| FenceEntry {
            retired_at: Some(at.into()),
            delete_provider: true,
            ..FenceEntry::deployed(revision)
        };
        let mut fence = json!({"data": {"old": retired(1, "2026-01-01T00:00:00Z").to_json()}});
        let set = |entry: FenceEntry| Op::SetFence {
            model: "m".into(),
            entry,
            prune_before: "2026-11-18T00:00:00Z".into(),
        };
        assert_eq!(set(retired(7, "2026-11-25T00:00:00Z")).apply(&mut fence), Ok(true));
        let entry = |fence: &Value, model: &str| fence["data"].get(model).and_then(FenceEntry::parse);
        assert_eq!(entry(&fence, "m").map(|e| e.revision), Some(7));
        assert_eq!(entry(&fence, "old"), None, "pruned");
        // A replay keeps the first retirement's time; a deploy of the retired revision is refused.
        assert_eq!(set(retired(7, "2026-11-26T00:00:00Z")).apply(&mut fence), Ok(false));
        let deployed = FenceEntry::deployed(7);
        assert_eq!(set(deployed.clone()).check(&fence).unwrap_err().0, Reason::Superseded);
        assert_eq!(set(FenceEntry::deployed(8)).apply(&mut fence), Ok(true));
        assert!(!entry(&fence, "m").unwrap().is_retired());
    }

    #[test]
    fn a_provider_is_removed_only_when_no_route_of_ours_uses_it_as_the_object_says() {
        let mut ai_proxy = plugin(json!({"defaultConfig": {"providers": [{"id": "p"}]}}));
        let add = |route: &str, revision: u64| Op::AddProviderUser {
            provider: "p".into(),
            route: route.into(),
            revision,
        };
        let remove = |route: &str, revision: u64| Op::RemoveProviderUser {
            provider: "p".into(),
            route: route.into(),
            revision,
        };
        let if_unused = Op::IfProviderUnused {
            provider: "p".into(),
            then: Box::new(Op::RemoveProvider("p".into())),
        };
        add("a", 1).apply(&mut ai_proxy).unwrap();
        add("b", 3).apply(&mut ai_proxy).unwrap();
        remove("a", 2).apply(&mut ai_proxy).unwrap();
        assert_eq!(if_unused.apply(&mut ai_proxy), Ok(false), "b still uses p");
        // An older retirement of b, landing after b's newer deploy, leaves b's record.
        assert_eq!(remove("b", 2).apply(&mut ai_proxy), Ok(false));
        assert_eq!(
            if_unused.apply(&mut ai_proxy),
            Ok(false),
            "b's deploy at 3 still uses p"
        );
        // An older deploy landing late does not lower the record.
        assert_eq!(add("b", 1).apply(&mut ai_proxy), Ok(false));
        assert_eq!(remove("b", 3).apply(&mut ai_proxy), Ok(true));
        assert_eq!(if_unused.apply(&mut ai_proxy), Ok(true));
        assert_eq!(ai_proxy["spec"]["defaultConfig"]["providers"], json!([]));
        assert!(
            ai_proxy["metadata"].get("annotations").is_none(),
            "no empty annotation is left"
        );
    }

    /// Annotations written before revisions were recorded (plain route names) still count, and any
    /// retirement of theirs removes them; a record with its revision is a `route@revision` string, so
    /// an older replica still reads it as a user.
    #[test]
    fn provider_users_written_without_revisions_still_count() {
        let mut bridge = plugin(json!({}));
        bridge["metadata"]["annotations"] = json!({names::ANNOTATION_PROVIDER_USERS: r#"{"p":["a","b"]}"#});
        let remove = Op::RemoveProviderUser {
            provider: "p".into(),
            route: "a".into(),
            revision: 1,
        };
        assert_eq!(remove.apply(&mut bridge), Ok(true));
        assert_eq!(
            bridge["metadata"]["annotations"][names::ANNOTATION_PROVIDER_USERS],
            r#"{"p":["b"]}"#
        );
        assert_eq!(provider_users(&bridge)["p"].iter().collect::<Vec<_>>(), ["b"]);
        let add = Op::AddProviderUser {
            provider: "p".into(),
            route: "b".into(),
            revision: 4,
        };
        assert_eq!(add.apply(&mut bridge), Ok(true));
        let text = bridge["metadata"]["annotations"][names::ANNOTATION_PROVIDER_USERS]
            .as_str()
            .unwrap();
        assert_eq!(text, r#"{"p":["b@4"]}"#);
        // What a replica of the version before revisions reads: still a user of p.
        let before_revisions: BTreeMap<String, Vec<String>> = serde_json::from_str(text).unwrap();
        assert_eq!(before_revisions["p"].len(), 1);
    }

    #[test]
    fn rule_edits_do_not_show_a_plugin_password() {
        let rule = Targets::ingress("a").rule(
            json!({"redis": {"service_name": "r.dns", "password": "p-hidden"}}),
            true,
        );
        for op in [Op::UpsertRule(rule.clone()), Op::InsertRuleIfAbsent(rule)] {
            let text = format!("{op:?}");
            assert!(!text.contains("p-hidden") && text.contains("r.dns"), "{text}");
        }
    }
}
