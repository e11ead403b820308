//! The slice of the cluster the mapping reads and edits: objects of the controller namespace as
//! dynamic JSON, keyed by kind and name. Dynamic JSON keeps every field we do not model, byte for byte.

use super::fence::FenceEntry;
use super::index::EntryIndex;
use super::names;
pub use super::object::{Kind, ObjectKey};
use super::plugins::Targets;
use super::route::AiRoute;
use crate::gateway;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// Objects of the controller namespace, as read from (or about to be written to) the cluster. An
/// object may be shared with the plan step that puts it ([`State::put_shared`]); changing it copies it.
#[derive(Default)]
pub struct State {
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    /// Lookup tables of objects edited entry by entry ([`EntryIndex`]), kept while every change of
    /// the object goes through them: taking or setting an object drops its index.
    indexes: Mutex<BTreeMap<ObjectKey, EntryIndex>>,
    /// Serialized sizes known without serializing (from the write that stored the object), until
    /// the object changes.
    sizes: BTreeMap<ObjectKey, usize>,
    /// Which AI routes use each provider, from their ConfigMaps: built on first use and kept in step
    /// as the ConfigMaps change (a batch of retirements asks once per event).
    route_providers: Mutex<Option<RouteProviders>>,
}

/// A copy holds the objects; its indexes are built again when needed.
impl Clone for State {
    fn clone(&self) -> Self {
        Self {
            objects: self.objects.clone(),
            indexes: Mutex::default(),
            sizes: self.sizes.clone(),
            route_providers: Mutex::default(),
        }
    }
}

/// What [`State::other_routes_using`] finds.
#[derive(Debug, PartialEq, Eq)]
pub struct OtherRoutes {
    /// The first other route using the provider, by name.
    pub first: Option<String>,
    /// Whether the provider-users record names every other route using it (vacuously, when none does).
    pub all_recorded: bool,
}

/// The AI route ConfigMaps by the providers their routes use.
#[derive(Default)]
struct RouteProviders {
    /// ConfigMap name → its route's name and providers.
    routes: HashMap<String, (String, Vec<String>)>,
    /// Provider → the ConfigMaps of the routes using it.
    users: HashMap<String, BTreeSet<String>>,
}

impl RouteProviders {
    fn learn(&mut self, name: &str, config_map: &Value) {
        if !names::is_route_config_map(name) || label(config_map, names::LABEL_CONFIG_MAP_TYPE) != Some("ai-route") {
            return;
        }
        let Some(route) = AiRoute::from_config_map(config_map) else {
            return;
        };
        let providers = route.providers();
        for provider in &providers {
            self.users.entry(provider.clone()).or_default().insert(name.to_string());
        }
        self.routes.insert(name.to_string(), (route.name, providers));
    }

    fn forget(&mut self, name: &str) {
        for provider in self
            .routes
            .remove(name)
            .map(|(_, providers)| providers)
            .unwrap_or_default()
        {
            if let Some(users) = self.users.get_mut(&provider) {
                users.remove(name);
            }
        }
    }
}

/// States are equal when their objects are.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.objects == other.objects
    }
}

/// Names only: the objects hold API tokens, credentials and Secrets.
impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.objects.keys().map(ToString::to_string))
            .finish()
    }
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an object by its own `apiVersion`, `kind` and `metadata.name`; `None` if it is not one of ours.
    pub fn insert_object(&mut self, object: Value) -> Option<ObjectKey> {
        let kind = Kind::from_api(object.get("apiVersion")?.as_str()?, object.get("kind")?.as_str()?)?;
        let name = object.pointer("/metadata/name")?.as_str()?.to_string();
        let key = ObjectKey::new(kind, name);
        self.set(key.clone(), Some(object));
        Some(key)
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key).map(Arc::as_ref)
    }

    /// The object, shared rather than copied: what a batch keeps of an object as it was before it.
    pub fn get_shared(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.objects.get(key).cloned()
    }

    pub fn get_named(&self, kind: Kind, name: &str) -> Option<&Value> {
        self.get(&ObjectKey::new(kind, name))
    }

    /// Removes and returns an object, to edit it in place.
    pub fn take(&mut self, key: &ObjectKey) -> Option<Value> {
        self.changing(key, None);
        self.indexes().remove(key);
        self.sizes.remove(key);
        self.objects.remove(key).map(Arc::unwrap_or_clone)
    }

    pub fn set(&mut self, key: ObjectKey, value: Option<Value>) {
        self.changing(&key, value.as_ref());
        self.indexes().remove(&key);
        self.sizes.remove(&key);
        match value {
            Some(value) => self.objects.insert(key, Arc::new(value)),
            None => self.objects.remove(&key),
        };
    }

    /// Puts an object shared with whoever else holds it (the step that puts it), without a copy.
    pub fn put_shared(&mut self, key: ObjectKey, object: Arc<Value>) {
        self.changing(&key, Some(&object));
        self.indexes().remove(&key);
        self.sizes.remove(&key);
        self.objects.insert(key, object);
    }

    /// Adds an object with its index, which must be in step with it, and its serialized size if
    /// known (kept from an earlier state).
    pub fn insert_indexed(&mut self, key: ObjectKey, object: Value, index: EntryIndex, size: Option<usize>) {
        self.changing(&key, Some(&object));
        self.indexes().insert(key.clone(), index);
        match size {
            Some(size) => self.sizes.insert(key.clone(), size),
            None => self.sizes.remove(&key),
        };
        self.objects.insert(key, Arc::new(object));
    }

    /// Removes an object with its index (empty when none was built), to keep them for later.
    pub fn take_indexed(&mut self, key: &ObjectKey) -> Option<(Value, EntryIndex)> {
        self.changing(key, None);
        let index = self.indexes().remove(key).unwrap_or_default();
        self.sizes.remove(key);
        self.objects
            .remove(key)
            .map(|object| (Arc::unwrap_or_clone(object), index))
    }

    /// The object's serialized size, if known without serializing it.
    pub fn known_size(&self, key: &ObjectKey) -> Option<usize> {
        self.sizes.get(key).copied()
    }

    /// Keeps [`RouteProviders`] in step: the object under `key` becomes `now` (`None`: goes).
    fn changing(&mut self, key: &ObjectKey, now: Option<&Value>) {
        if key.kind != Kind::ConfigMap {
            return;
        }
        if let Some(routes) = self.route_providers.get_mut().unwrap_or_else(PoisonError::into_inner) {
            routes.forget(&key.name);
            if let Some(object) = now {
                routes.learn(&key.name, object);
            }
        }
    }

    /// The routes other than `route` that use `provider`: those whose ConfigMaps, as read, say so, and
    /// those of ours `recorded_in`'s provider-users annotation records. A batch reads the ConfigMaps of
    /// its own routes and of every route not labelled as ours, not of every route of ours: the record
    /// is what keeps a provider for those (`Op::IfProviderUnused` checks it as written; see
    /// `reads::route_config_map_lists`). The first by name, and whether the record names every route
    /// the ConfigMaps show. One pass under one lock: on a large cluster a provider has thousands of
    /// users, and a batch of retirements asks for each of its routes.
    pub fn other_routes_using(&self, provider: &str, route: &str, recorded_in: &ObjectKey) -> OtherRoutes {
        let mut cache = self.route_providers.lock().unwrap_or_else(PoisonError::into_inner);
        let routes = cache.get_or_insert_with(|| {
            let mut routes = RouteProviders::default();
            for (name, config_map) in self.of_kind(Kind::ConfigMap) {
                routes.learn(name, config_map);
            }
            routes
        });
        // ConfigMap names are the route's name behind one prefix: in their order, the routes are too.
        let others = || {
            routes
                .users
                .get(provider)
                .into_iter()
                .flatten()
                .filter_map(|config_map| routes.routes.get(config_map))
                .map(|(name, _)| name)
                .filter(|name| *name != route)
        };
        let listed_first = others().next().cloned();
        let (recorded_first, all_recorded) = self
            .inspect(recorded_in, |object, index| {
                let users = index.users(annotation(object, names::ANNOTATION_PROVIDER_USERS)).map();
                let recorded = users.get(provider);
                let first = recorded.and_then(|routes| routes.keys().find(|r| r.as_str() != route).cloned());
                let all = others().all(|other| recorded.is_some_and(|routes| routes.contains_key(other)));
                (first, all)
            })
            .unwrap_or((None, listed_first.is_none()));
        debug_assert_eq!(
            listed_first,
            self.of_kind(Kind::ConfigMap)
                .filter(|(name, cm)| {
                    names::is_route_config_map(name) && label(cm, names::LABEL_CONFIG_MAP_TYPE) == Some("ai-route")
                })
                .filter_map(|(_, cm)| AiRoute::from_config_map(cm))
                .filter(|r| r.name != route && r.providers().iter().any(|p| p == provider))
                .map(|r| r.name)
                .min(),
            "route-providers index out of step"
        );
        let first = listed_first.into_iter().chain(recorded_first).min();
        OtherRoutes { first, all_recorded }
    }

    fn indexes(&mut self) -> &mut BTreeMap<ObjectKey, EntryIndex> {
        self.indexes.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets `edit` change an object (`None`: absent) with its index, which it must keep up to date;
    /// the index stays with the object while it exists.
    pub fn edit<R>(&mut self, key: &ObjectKey, edit: impl FnOnce(&mut Option<Value>, &mut EntryIndex) -> R) -> R {
        let mut index = self.indexes().remove(key).unwrap_or_default();
        self.sizes.remove(key);
        let mut object = self.objects.remove(key).map(Arc::unwrap_or_clone);
        let result = edit(&mut object, &mut index);
        self.changing(key, object.as_ref());
        if let Some(object) = object {
            self.objects.insert(key.clone(), Arc::new(object));
            self.indexes().insert(key.clone(), index);
        }
        result
    }

    /// Looks at an object (if present) with its index, building the index as needed.
    pub fn inspect<R>(&self, key: &ObjectKey, look: impl FnOnce(&Value, &mut EntryIndex) -> R) -> Option<R> {
        let object = self.objects.get(key)?;
        let mut indexes = self.indexes.lock().unwrap_or_else(PoisonError::into_inner);
        Some(look(object, indexes.entry(key.clone()).or_default()))
    }

    /// The model's fence entry, as the state holds it.
    pub fn fence_entry(&self, model: &str) -> Option<FenceEntry> {
        self.get_named(Kind::ConfigMap, &super::names::fence(model))?
            .get("data")?
            .get(model)
            .and_then(FenceEntry::parse)
    }

    /// Where, in a plugin CR, the entries and rules `gateway::admit` reads for these writes are
    /// (`gateway::needed`, with what they replace when `before`): positions in its global entry list and
    /// in `spec.matchRules`, found through the object's index. `None` when the CR is absent.
    pub fn gateway_positions(
        &self,
        key: &ObjectKey,
        plugin: &str,
        written: &[gateway::Written],
        before: bool,
    ) -> Option<(Vec<usize>, Vec<usize>)> {
        let (names, rules) = gateway::needed(plugin, written, before);
        self.inspect(key, |object, index| {
            let list = match plugin {
                "ai-proxy" => list_of(object, &["spec", "defaultConfig", "providers"]),
                "key-auth" => list_of(object, &["spec", "defaultConfig", "consumers"]),
                _ => &[],
            };
            let entries = names
                .iter()
                .filter_map(|name| {
                    let name = Value::String(name.clone());
                    match plugin {
                        "ai-proxy" => index.providers(object).find(list, Some(&name)),
                        "key-auth" => index.consumers(object).names.find(list, Some(&name)),
                        _ => None,
                    }
                })
                .collect();
            let matches = list_of(object, &["spec", "matchRules"]);
            let rules = rules
                .iter()
                .filter_map(|rule| {
                    let targets = Targets::of(rule);
                    index.rules(object).find(matches, rule, |r| targets.matches(r))
                })
                .collect();
            (entries, rules)
        })
    }

    /// Whether the object records a revision of the route (see `index::RouteRevisions`).
    pub fn records_route(&self, key: &ObjectKey, route: &str) -> bool {
        self.inspect(key, |object, index| {
            index
                .routes(annotation(object, super::names::ANNOTATION_ROUTE_REVISIONS))
                .recorded(route)
        })
        .unwrap_or(false)
    }

    /// Whether any `spec.matchRules` entry of the object names the Ingress in its `ingress` list.
    pub fn any_rule_names_ingress(&self, key: &ObjectKey, ingress: &str) -> bool {
        self.inspect(key, |object, index| {
            let found = index.rules(object).names_ingress(ingress);
            debug_assert_eq!(
                found,
                object
                    .pointer("/spec/matchRules")
                    .and_then(Value::as_array)
                    .is_some_and(|rules| rules
                        .iter()
                        .any(|r| super::plugins::Targets::of(r).ingress.iter().any(|i| i == ingress))),
                "rules index out of step"
            );
            found
        })
        .unwrap_or(false)
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&str, &Value)> {
        self.objects
            .range(ObjectKey::new(kind, String::new())..)
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(k, v)| (k.name.as_str(), v.as_ref()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Value)> {
        self.objects.iter().map(|(key, object)| (key, object.as_ref()))
    }

    pub fn into_objects(self) -> impl Iterator<Item = (ObjectKey, Value)> {
        self.objects
            .into_iter()
            .map(|(key, object)| (key, Arc::unwrap_or_clone(object)))
    }
}

/// The `metadata` fields the API server owns. A whole-object write keeps them as read; comparisons
/// leave them out, so an object read back from a real cluster equals what we would write.
pub const SERVER_FIELDS: [&str; 6] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
];

/// Removes what the API server owns, so two versions of an object can be compared by content.
pub fn without_server_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in SERVER_FIELDS {
            metadata.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

pub fn label<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.pointer("/metadata/labels")?.get(key)?.as_str()
}

pub fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.pointer("/metadata/annotations")?.get(key)?.as_str()
}

/// The list at a path of object keys (empty when there is none), read without parsing a pointer.
fn list_of<'a>(object: &'a Value, path: &[&str]) -> &'a [Value] {
    gateway::at_path(object, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}
