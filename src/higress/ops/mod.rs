//! Entry-level edits of shared objects. Each edit touches only its own entries and can be applied
//! again to a freshly read copy after a 409, so other writers' entries survive, field for field.

mod annotations;
mod consumers;
mod fences;
mod json;
mod providers;
mod registries;
mod rules;

pub use annotations::secret_source;
pub use consumers::allow_lists_name;
pub use providers::{provider_in_use, provider_users};

use super::fence::FenceEntry;
use super::index::EntryIndex;
use super::plugins::Targets;
use super::provider::ExistingUpstream;
use crate::gateway::Written;
use crate::reason::Reason;
use json::{default_config, set_default_config_disable};
use serde_json::{json, Map, Value};

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
        let global = || -> Map<String, Value> {
            object
                .and_then(|o| crate::gateway::at_path(o, &["spec", "defaultConfig"]))
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
            Op::SetProviderTokens { provider, tokens } => providers::tokens_written(object, provider, tokens),
            Op::UpsertConsumer(entry) => vec![Written::Consumer(entry.clone())],
            Op::SetConsumerCredentials(consumer) => consumers::credentials_written(object, consumer),
            Op::UpsertProviderServiceRule { provider, service } => vec![Written::Rule(
                Targets::service(service).rule(json!({"activeProviderId": provider}), true),
            )],
            Op::UpsertRule(rule) | Op::InsertRuleIfAbsent(rule) => vec![Written::Rule(rule.clone())],
            Op::SetDefaultConfigKey(key, value) => {
                let mut config = global();
                config.insert(key.clone(), value.clone());
                vec![Written::Global(Value::Object(config))]
            }
            Op::EnsureKeyAuthGlobal => consumers::key_auth_global_written(object),
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
        consumers::refuse_shared_credentials(ops.iter().filter_map(Op::consumer_written))
    }

    /// Whether the edit fits the object as it is, without changing it.
    pub fn check(&self, object: &Value) -> Result<(), EditRefused> {
        self.check_indexed(object, &mut EntryIndex::default())
    }

    /// [`Op::check`] with the object's index (see [`super::index`]).
    pub fn check_indexed(&self, object: &Value, index: &mut EntryIndex) -> Result<(), EditRefused> {
        match self {
            Op::SetFence { model, entry, .. } => fences::check_fence(object, model, entry),
            Op::IfProviderUnused { then, .. } => then.check_indexed(object, index),
            Op::RequireProvider { provider, upstream } => {
                providers::require_provider(object, provider, upstream, false, index)
            }
            Op::RequireRegistry { provider, upstream } => {
                providers::require_provider(object, provider, upstream, true, index)
            }
            Op::RequireNoOtherUsers { provider, route } => {
                providers::require_no_other_users(object, provider, route, index)
            }
            Op::IfRouteNotNewer { route, revision, then } => {
                if annotations::newer_route_recorded(object, route, *revision, index) {
                    return Ok(());
                }
                then.check_indexed(object, index)
            }
            Op::UpsertProviderServiceRule { provider, service } => {
                rules::check_service_rule(object, provider, service, index)
            }
            Op::UpsertConsumer(consumer) | Op::SetConsumerCredentials(consumer) => {
                consumers::check_credentials(object, consumer, index)
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
            Op::IfRouteNotNewer { then, .. } | Op::IfProviderUnused { then, .. } => then.keeps_index(),
            _ => matches!(
                self,
                Op::UpsertRegistry(_)
                    | Op::RemoveRegistry(_)
                    | Op::UpsertProvider(_)
                    | Op::RemoveProvider(_)
                    | Op::RemoveProviderService(_)
                    | Op::RemoveRule(_)
                    | Op::RemoveIngressTarget(_)
                    | Op::RemoveConsumerIfUnused(_)
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
            Op::UpsertRegistry(registry) => registries::upsert_registry(object, registry, index),
            Op::RemoveRegistry(name) => registries::remove_registry(object, name, index),
            Op::UpsertProvider(entry) => providers::upsert_provider(object, entry, index),
            Op::RemoveProvider(id) => providers::remove_provider(object, id, index),
            Op::UpsertProviderServiceRule { provider, service } => {
                rules::upsert_provider_service_rule(object, provider, service, index)
            }
            Op::RemoveProviderService(provider) => rules::remove_provider_service(object, provider, index),
            Op::UpsertRule(rule) => rules::upsert_rule(object, rule.clone(), false, index),
            Op::InsertRuleIfAbsent(rule) => rules::upsert_rule(object, rule.clone(), true, index),
            Op::RemoveRule(targets) => rules::remove_rule(object, targets, index),
            Op::RemoveIngressTarget(ingress) => rules::remove_target(object, "ingress", ingress, index),
            Op::UpsertConsumer(consumer) => consumers::upsert_consumer(object, consumer, index),
            Op::RemoveConsumerIfUnused(name) => consumers::remove_consumer_if_unused(object, name, index),
            Op::EnsureKeyAuthGlobal => consumers::ensure_key_auth_global(object),
            Op::SetProviderTokens { provider, tokens } => providers::set_provider_tokens(object, provider, tokens),
            Op::SetConsumerCredentials(consumer) => consumers::set_consumer_credentials(object, consumer),
            Op::SetDefaultConfigKey(key, value) => {
                let changed = default_config(object).insert(key.clone(), value.clone()).as_ref() != Some(value);
                set_default_config_disable(object, false) | changed
            }
            Op::SetFence {
                model,
                entry,
                prune_before,
            } => fences::set_fence(object, model, entry, prune_before, index),
            Op::AddProviderUser {
                provider,
                route,
                revision,
            } => providers::add_user(object, provider, route, *revision, index),
            Op::RemoveProviderUser {
                provider,
                route,
                revision,
            } => providers::remove_user(object, provider, route, *revision, index),
            Op::RequireProvider { .. } | Op::RequireRegistry { .. } | Op::RequireNoOtherUsers { .. } => false,
            Op::SetSecretSource { entry, source } => annotations::set_secret_source(object, entry, source.as_deref()),
            Op::IfProviderUnused { provider, then } => {
                !providers::provider_used(object, provider, index) && then.apply_checked(object, index)?
            }
            Op::RecordRoute { route, revision } => annotations::record_route(object, route, *revision, index),
            Op::ForgetRoute { route, revision } => annotations::forget_route(object, route, *revision, index),
            Op::IfRouteNotNewer { route, revision, then } => {
                !annotations::newer_route_recorded(object, route, *revision, index)
                    && then.apply_checked(object, index)?
            }
        })
    }
}

#[cfg(test)]
mod tests;
