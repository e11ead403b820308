//! Lookup tables for the entries of a shared object, so that an edit of an object holding thousands
//! of rules, consumers or providers does not scan them all: a batch applies hundreds of events' edits
//! to the same few objects, and scanning made planning grow with the cluster.
//!
//! An index answers exactly what the scan it replaces would (debug builds check every answer against
//! the scan). Each table is built from the object on first use and kept up to date by the edits that
//! go through it ([`super::ops::Op::apply_indexed`]); an edit that does not keep a table up to date
//! drops it, and a table whose list no longer has the length it knows is rebuilt. [`super::State`]
//! keeps an object's index beside it for as long as the object is changed only through it.

use super::plugins::{compare_rules, field, target_list};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The tables of one object.
#[derive(Clone, Debug, Default)]
pub struct EntryIndex {
    rules: Option<Rules>,
    registries: Option<Positions>,
    providers: Option<Positions>,
    consumers: Option<Consumers>,
    users: Option<Users>,
    routes: Option<RouteRevisions>,
    retirements: Option<Retirements>,
}

impl EntryIndex {
    /// Forgets every table: the object changed in a way they do not follow.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// `spec.matchRules`, built or rebuilt as needed.
    pub(super) fn rules(&mut self, object: &Value) -> &mut Rules {
        let list = list_at(object, "/spec/matchRules");
        if self.rules.as_ref().is_none_or(|r| r.len != list.len()) {
            self.rules = Some(Rules::build(list));
        }
        self.rules.as_mut().expect("just built")
    }

    pub(super) fn forget_rules(&mut self) {
        self.rules = None;
    }

    /// `spec.registries` by `name`.
    pub(super) fn registries(&mut self, object: &Value) -> &mut Positions {
        positions(&mut self.registries, list_at(object, "/spec/registries"), "name")
    }

    /// `spec.defaultConfig.providers` by `id`.
    pub(super) fn providers(&mut self, object: &Value) -> &mut Positions {
        positions(
            &mut self.providers,
            list_at(object, "/spec/defaultConfig/providers"),
            "id",
        )
    }

    /// `spec.defaultConfig.consumers` by `name`, and their credentials.
    pub(super) fn consumers(&mut self, object: &Value) -> &mut Consumers {
        let list = list_at(object, "/spec/defaultConfig/consumers");
        if self.consumers.as_ref().is_none_or(|c| c.names.len != list.len()) {
            self.consumers = Some(Consumers::build(list));
        }
        self.consumers.as_mut().expect("just built")
    }

    /// Entries left the list `table` indexes: `at` their positions before (ascending), `gone` the
    /// entries themselves. The table follows, or is dropped when it cannot (a list with entries
    /// sharing a key, or without one): a batch of retirements removes an entry per event from lists
    /// of thousands, and rebuilding a table after each made planning it quadratic.
    pub(super) fn removed(&mut self, table: Table, at: &[usize], gone: &[Value]) {
        match table {
            Table::Registries => follow_removal(&mut self.registries, at),
            Table::Providers => follow_removal(&mut self.providers, at),
            Table::Consumers => {
                if let Some(consumers) = &mut self.consumers {
                    if consumers.names.removed(at) {
                        for consumer in gone {
                            consumers.hold(consumer, false);
                        }
                    } else {
                        self.consumers = None;
                    }
                }
            }
            Table::Rules => {
                if let Some(rules) = &mut self.rules {
                    for rule in gone {
                        rules.count(rule, false);
                    }
                    rules.len -= gone.len();
                }
            }
        }
    }

    /// Where the entry keyed `name` is in the list `table` indexes (`Some(None)`: absent), when every
    /// entry there has a key of its own; `None` when some share one or have none (scan instead).
    pub(super) fn position_if_unique(&mut self, table: Table, object: &Value, name: &str) -> Option<Option<usize>> {
        let (positions, pointer) = match table {
            Table::Registries => (self.registries(object), "/spec/registries"),
            Table::Providers => (self.providers(object), "/spec/defaultConfig/providers"),
            Table::Consumers => (&mut self.consumers(object).names, "/spec/defaultConfig/consumers"),
            Table::Rules => return None,
        };
        let unique = positions.first.len() == positions.len;
        unique.then(|| positions.find(list_at(object, pointer), Some(&Value::String(name.to_string()))))
    }

    /// A fence shard's retirements.
    pub(super) fn retirements(&mut self, object: &Value) -> &mut Retirements {
        let data = object.get("data").and_then(Value::as_object);
        let len = data.map_or(0, serde_json::Map::len);
        if self.retirements.as_ref().is_none_or(|r| r.len != len) {
            let earliest = data
                .into_iter()
                .flatten()
                .filter_map(|(_, entry)| retired_at(entry))
                .min();
            self.retirements = Some(Retirements { len, earliest });
        }
        self.retirements.as_mut().expect("just built")
    }

    pub(super) fn forget_retirements(&mut self) {
        self.retirements = None;
    }

    /// An entry was written to the fence shard whose retirements were looked at last.
    pub(super) fn retirement_written(&mut self, len: usize, retired_at: Option<&str>) {
        if let Some(retirements) = &mut self.retirements {
            retirements.written(len, retired_at);
        }
    }

    /// The provider-users annotation, parsed once and re-parsed only when its text changed otherwise.
    pub(super) fn users(&mut self, text: Option<&str>) -> &mut Users {
        if self.users.as_ref().is_none_or(|u| !u.matches(text)) {
            self.users = Some(Users::parse(text));
        }
        self.users.as_mut().expect("just parsed")
    }

    /// The route-revisions annotation, parsed once and re-parsed only when its text changed otherwise.
    pub(super) fn routes(&mut self, text: Option<&str>) -> &mut RouteRevisions {
        if self.routes.as_ref().is_none_or(|r| !r.matches(text)) {
            self.routes = Some(RouteRevisions::parse(text));
        }
        self.routes.as_mut().expect("just parsed")
    }
}

pub(super) fn list_at<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn positions<'a>(slot: &'a mut Option<Positions>, list: &[Value], key: &'static str) -> &'a mut Positions {
    if slot.as_ref().is_none_or(|p| p.len != list.len()) {
        *slot = Some(Positions::build(list, key));
    }
    slot.as_mut().expect("just built")
}

/// The lists of an object that [`EntryIndex`] indexes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Table {
    Registries,
    Providers,
    Consumers,
    Rules,
}

fn follow_removal(slot: &mut Option<Positions>, at: &[usize]) {
    if slot.as_mut().is_some_and(|positions| !positions.removed(at)) {
        *slot = None;
    }
}

/// Where the first entry with each string value of `key` is, in a list that only grows at its end
/// or changes entries in place without changing their `key`.
#[derive(Clone, Debug)]
pub(super) struct Positions {
    key: &'static str,
    len: usize,
    first: HashMap<String, usize>,
}

impl Positions {
    fn build(list: &[Value], key: &'static str) -> Self {
        let mut positions = Self {
            key,
            len: 0,
            first: HashMap::with_capacity(list.len()),
        };
        for item in list {
            positions.pushed(item);
        }
        positions
    }

    /// The first entry whose `key` equals `id` (compared as JSON values, as a scan would).
    pub(super) fn find(&self, list: &[Value], id: Option<&Value>) -> Option<usize> {
        let scan = || list.iter().position(|item| field(item, self.key) == id);
        match id.and_then(Value::as_str) {
            Some(id) => {
                let found = self.first.get(id).copied();
                debug_assert_eq!(found, scan(), "index of {:?} out of step", self.key);
                found
            }
            None => scan(),
        }
    }

    /// The entries at `at` (ascending positions) were removed; false when the table cannot follow
    /// (some entries share a key or have none, so a later one may now be the first).
    pub(super) fn removed(&mut self, at: &[usize]) -> bool {
        if self.first.len() != self.len {
            return false;
        }
        self.first.retain(|_, position| match at.binary_search(position) {
            Ok(_) => false,
            Err(before) => {
                *position -= before;
                true
            }
        });
        self.len -= at.len();
        true
    }

    /// An entry was appended.
    pub(super) fn pushed(&mut self, item: &Value) {
        if let Some(id) = field(item, self.key).and_then(Value::as_str) {
            self.first.entry(id.to_string()).or_insert(self.len);
        }
        self.len += 1;
    }
}

/// The identity of a matchRule: its three target lists as sets.
type TargetSets = [Vec<String>; 3];

fn target_sets(rule: &Value) -> TargetSets {
    ["service", "ingress", "domain"].map(|key| {
        let mut items: Vec<String> = target_list(rule, key).map(str::to_string).collect();
        items.sort_unstable();
        items.dedup();
        items
    })
}

/// The one service a rule targets, when it targets nothing else (`Targets::is_exactly`).
fn exact_service(rule: &Value) -> Option<&str> {
    let mut services = target_list(rule, "service");
    let first = services.next()?;
    let only = services.all(|s| s == first)
        && target_list(rule, "ingress").next().is_none()
        && target_list(rule, "domain").next().is_none();
    only.then_some(first)
}

pub(super) fn rule_provider(rule: &Value) -> Option<&str> {
    field(rule, "config")
        .and_then(|c| field(c, "activeProviderId"))
        .and_then(Value::as_str)
}

/// Counts over `spec.matchRules`.
#[derive(Clone, Debug)]
pub(super) struct Rules {
    len: usize,
    /// Whether the list is in the console's order ([`compare_rules`]): then a new rule's place is
    /// found by bisection, and inserting it there keeps the order.
    sorted: bool,
    targets: HashMap<TargetSets, u32>,
    /// Rules whose `ingress` list names an Ingress.
    ingresses: HashMap<String, u32>,
    /// Rules whose `service` list names a service.
    services: HashMap<String, u32>,
    /// Rules whose `config.activeProviderId` is a provider.
    providers: HashMap<String, u32>,
    /// Rules whose `config.allow` (key-auth) names a consumer.
    allowed: HashMap<String, u32>,
    /// For each service a rule targets exactly, the providers of those rules.
    exact_services: HashMap<String, Vec<Option<String>>>,
    /// For each provider, the services its rules that target exactly one service target.
    exact_of_provider: HashMap<String, Vec<String>>,
    /// Rules with an item twice in a target list: a rule equal to them as sets sorts elsewhere.
    repeating: u32,
}

impl Rules {
    fn build(list: &[Value]) -> Self {
        let mut rules = Self {
            len: 0,
            sorted: list.windows(2).all(|w| compare_rules(&w[0], &w[1]).is_le()),
            targets: HashMap::with_capacity(list.len()),
            ingresses: HashMap::with_capacity(list.len()),
            services: HashMap::new(),
            providers: HashMap::new(),
            allowed: HashMap::new(),
            exact_services: HashMap::new(),
            exact_of_provider: HashMap::new(),
            repeating: 0,
        };
        for rule in list {
            rules.added(rule);
        }
        rules
    }

    /// A rule joined the list (the caller keeps `sorted` true only if it went to its place).
    pub(super) fn added(&mut self, rule: &Value) {
        self.count(rule, true);
        self.len += 1;
    }

    /// A rule was replaced in place by one with the same targets.
    pub(super) fn replaced(&mut self, old: &Value, new: &Value) {
        self.count(old, false);
        self.count(new, true);
    }

    /// The rule at `at` of `list` changed its targets: the list stays in the console's order only if
    /// the rule still sorts between its neighbours.
    pub(super) fn moved_in_place(&mut self, list: &[Value], at: usize) {
        let in_order = |a: usize, b: usize| compare_rules(&list[a], &list[b]).is_le();
        if (at > 0 && !in_order(at - 1, at)) || (at + 1 < list.len() && !in_order(at, at + 1)) {
            self.sorted = false;
        }
    }

    fn count(&mut self, rule: &Value, add: bool) {
        fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: K, add: bool) {
            let n = map.entry(key).or_default();
            *n = if add { *n + 1 } else { n.saturating_sub(1) };
        }
        let sets = target_sets(rule);
        let listed: usize = ["service", "ingress", "domain"]
            .iter()
            .map(|key| target_list(rule, key).count())
            .sum();
        if listed != sets.iter().map(Vec::len).sum::<usize>() {
            self.repeating = if add {
                self.repeating + 1
            } else {
                self.repeating.saturating_sub(1)
            };
        }
        for service in &sets[0] {
            bump(&mut self.services, service.clone(), add);
        }
        for ingress in &sets[1] {
            bump(&mut self.ingresses, ingress.clone(), add);
        }
        bump(&mut self.targets, sets, add);
        let provider = rule_provider(rule);
        if let Some(provider) = provider {
            bump(&mut self.providers, provider.to_string(), add);
        }
        let allow = field(rule, "config")
            .and_then(|c| field(c, "allow"))
            .and_then(Value::as_array);
        for consumer in allow.into_iter().flatten().filter_map(Value::as_str) {
            bump(&mut self.allowed, consumer.to_string(), add);
        }
        if let Some(service) = exact_service(rule) {
            let owners = self.exact_services.entry(service.to_string()).or_default();
            let owner = provider.map(str::to_string);
            if add {
                owners.push(owner);
            } else if let Some(at) = owners.iter().position(|p| *p == owner) {
                owners.remove(at);
            }
            if let Some(provider) = provider {
                let services = self.exact_of_provider.entry(provider.to_string()).or_default();
                if add {
                    services.push(service.to_string());
                } else if let Some(at) = services.iter().position(|s| s == service) {
                    services.remove(at);
                }
            }
        }
    }

    /// Whether a rule with these targets (as sets) is in the list.
    pub(super) fn has_targets(&self, rule: &Value) -> bool {
        self.targets.get(&target_sets(rule)).is_some_and(|n| *n > 0)
    }

    /// The first rule with the targets of `rule` (as sets): `matches` says whether a rule has them.
    /// In a list in the console's order, a rule with one item per target list has its equals
    /// among the rules that sort equal to it, found by bisection.
    pub(super) fn find(&self, list: &[Value], rule: &Value, matches: impl Fn(&Value) -> bool) -> Option<usize> {
        let scan = || list.iter().position(&matches);
        if !self.has_targets(rule) {
            debug_assert_eq!(scan(), None, "rules index out of step");
            return None;
        }
        let single = ["service", "ingress", "domain"]
            .iter()
            .all(|key| target_list(rule, key).nth(1).is_none());
        if !(self.sorted && single && self.repeating == 0) {
            return scan();
        }
        let from = list.partition_point(|r| compare_rules(r, rule).is_lt());
        let to = list.partition_point(|r| !compare_rules(r, rule).is_gt());
        let found = list[from..to].iter().position(&matches).map(|at| from + at);
        debug_assert_eq!(found, scan(), "rules index out of step");
        found
    }

    /// Whether a rule's `config.allow` names the consumer.
    pub(super) fn allow(&self, consumer: &str) -> bool {
        self.allowed.get(consumer).is_some_and(|n| *n > 0)
    }

    /// Whether a rule's `config.activeProviderId` is the provider.
    pub(super) fn has_provider(&self, provider: &str) -> bool {
        self.providers.get(provider).is_some_and(|n| *n > 0)
    }

    /// The services of the provider's rules, when each of them targets exactly one service (then
    /// no scan is needed to find them); `None` otherwise.
    pub(super) fn services_of(&self, provider: &str) -> Option<&[String]> {
        let rules = self.providers.get(provider).copied().unwrap_or(0) as usize;
        let services = self.exact_of_provider.get(provider).map_or(&[][..], Vec::as_slice);
        (rules == services.len()).then_some(services)
    }

    /// The one rule whose `key` list (`ingress` or `service`) names `target`, when the index can tell
    /// where it is without a scan (`Some(None)`: no rule names it): in a list in the console's order,
    /// a rule targeting only that one sorts among the rules equal to `{key: [target]}`, found by
    /// bisection.
    pub(super) fn sole_rule_naming(&self, list: &[Value], key: &str, target: &str) -> Option<Option<usize>> {
        let scan = || {
            let mut naming = list
                .iter()
                .enumerate()
                .filter(|(_, r)| target_list(r, key).any(|i| i == target));
            let first = naming.next().map(|(at, _)| at);
            naming.next().is_none().then_some(first)
        };
        let counts = match key {
            "ingress" => &self.ingresses,
            "service" => &self.services,
            _ => return None,
        };
        let found = match counts.get(target).copied().unwrap_or(0) {
            0 => Some(None),
            1 if self.sorted && self.repeating == 0 => {
                let probe = serde_json::json!({key: [target]});
                let from = list.partition_point(|r| compare_rules(r, &probe).is_lt());
                let to = list.partition_point(|r| !compare_rules(r, &probe).is_gt());
                list[from..to]
                    .iter()
                    .position(|r| target_list(r, key).any(|i| i == target))
                    .map(|at| Some(from + at))
            }
            _ => None,
        };
        debug_assert!(found.is_none() || found == scan(), "rules index out of step");
        found
    }

    /// Whether a rule's `ingress` list names the Ingress.
    pub(super) fn names_ingress(&self, ingress: &str) -> bool {
        self.ingresses.get(ingress).is_some_and(|n| *n > 0)
    }

    /// Whether a rule targeting exactly `service` has a provider other than `provider`.
    pub(super) fn service_taken(&self, service: &str, provider: &str) -> bool {
        self.exact_services
            .get(service)
            .is_some_and(|owners| owners.iter().any(|p| p.as_deref() != Some(provider)))
    }

    /// Whether every rule of `provider` targets exactly `service` (nothing to move).
    pub(super) fn provider_only_on(&self, provider: &str, service: &str) -> bool {
        let of_provider = self.providers.get(provider).copied().unwrap_or(0) as usize;
        let on_service = self.exact_services.get(service).map_or(0, |owners| {
            owners.iter().filter(|p| p.as_deref() == Some(provider)).count()
        });
        of_provider == on_service
    }

    /// Where a new rule goes: before the first rule that sorts after it.
    pub(super) fn place(&self, list: &[Value], rule: &Value) -> usize {
        let scan = || {
            list.iter()
                .position(|r| compare_rules(r, rule).is_gt())
                .unwrap_or(list.len())
        };
        if !self.sorted {
            return scan();
        }
        let at = list.partition_point(|r| !compare_rules(r, rule).is_gt());
        debug_assert_eq!(at, scan(), "rules index out of step");
        at
    }
}

/// Key-auth consumers by name, and who holds each credential.
#[derive(Clone, Debug)]
pub(super) struct Consumers {
    pub(super) names: Positions,
    /// Each credential, with the name of every consumer listing it (once per listing).
    holders: HashMap<String, Vec<Option<String>>>,
}

impl Consumers {
    fn build(list: &[Value]) -> Self {
        let mut consumers = Self {
            names: Positions::build(&[], "name"),
            holders: HashMap::with_capacity(list.len()),
        };
        for consumer in list {
            consumers.added(consumer);
        }
        consumers
    }

    pub(super) fn added(&mut self, consumer: &Value) {
        self.names.pushed(consumer);
        self.hold(consumer, true);
    }

    /// A consumer was replaced in place by one with the same name.
    pub(super) fn replaced(&mut self, old: &Value, new: &Value) {
        self.hold(old, false);
        self.hold(new, true);
    }

    fn hold(&mut self, consumer: &Value, add: bool) {
        let name = field(consumer, "name").and_then(Value::as_str).map(str::to_string);
        for credential in credentials_of(consumer) {
            let holders = self.holders.entry(credential.to_string()).or_default();
            if add {
                holders.push(name.clone());
            } else if let Some(at) = holders.iter().position(|h| *h == name) {
                holders.remove(at);
            }
        }
    }

    /// Whether a consumer not named `name` holds one of `consumer`'s credentials.
    pub(super) fn credential_taken(&self, consumer: &Value, name: &str) -> bool {
        credentials_of(consumer).any(|ours| {
            self.holders
                .get(ours.as_ref())
                .is_some_and(|holders| holders.iter().any(|h| h.as_deref() != Some(name)))
        })
    }
}

/// What key-auth reads as a consumer's credentials: `gateway::key_auth::credentials_of`, the one definition.
pub(super) use crate::gateway::key_auth::credentials_of;

/// The routes of ours that use each provider (the provider-users annotation), each with the revision
/// of the route's event that recorded it, and each provider's part of the annotation's JSON kept apart,
/// so that a change re-serializes one provider's routes and joins the parts instead of serializing them
/// all; a new provider's part is appended to the text in place ([`AnnotationEdit::Append`]). Providers are
/// kept in the order of the text (new ones last): the text stays exactly what `render` would make.
///
/// The revision is what makes the record safe across writers: a retirement (or a redeploy letting a
/// provider go) removes its route's record only up to its own revision, so an older retirement landing
/// after a newer deploy of the same route leaves that deploy's record, and with it the provider.
#[derive(Clone, Debug)]
pub(super) struct Users {
    /// The length of the annotation's text this matches (see [`RouteRevisions`]'s `len`).
    len: Option<usize>,
    map: BTreeMap<String, BTreeMap<String, u64>>,
    parts: indexmap::IndexMap<String, String>,
    /// Whether the text is exactly the parts joined, as `render` makes it: only then do the parts say
    /// where a user stands in it (text written by hand, with spaces say, is written again instead).
    exact: bool,
}

impl Users {
    /// Each provider's users are a list of `route@revision` (`route` alone: recorded before revisions
    /// were, read as revision 0 so that any retirement of theirs removes it). A list of strings, as
    /// before revisions, so that a replica of an older version still reads every user during a
    /// rolling upgrade: it cannot remove a `route@revision` (the provider stays, the safe side), and a
    /// name it adds reads as revision 0 here. Model names cannot hold `@`.
    pub(super) fn parse(text: Option<&str>) -> Self {
        let stored: serde_json::Map<String, Value> =
            text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
        let mut map: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut order = Vec::new();
        for (provider, users) in stored {
            let routes = map.entry(provider.clone()).or_default();
            order.push(provider);
            let names = users.as_array().into_iter().flatten().filter_map(Value::as_str);
            for user in names {
                let (route, revision) = match user.rsplit_once('@') {
                    Some((route, revision)) => (route.to_string(), revision.parse().unwrap_or(0)),
                    None => (user.to_string(), 0),
                };
                let recorded = routes.entry(route).or_insert(revision);
                *recorded = (*recorded).max(revision);
            }
        }
        let parts = order.into_iter().map(|p| {
            let part = part(&p, &map[&p]);
            (p, part)
        });
        let parts: indexmap::IndexMap<String, String> = parts.collect();
        let exact = text == joined(&parts).as_deref();
        Self {
            len: text.map(str::len),
            parts,
            map,
            exact,
        }
    }

    fn matches(&self, text: Option<&str>) -> bool {
        let same = self.len == text.map(str::len);
        debug_assert!(
            !same || text.is_none_or(|t| Users::parse(Some(t)).map == self.map),
            "provider-users index out of step"
        );
        same
    }

    pub(super) fn map(&self) -> &BTreeMap<String, BTreeMap<String, u64>> {
        &self.map
    }

    /// Records a user at `revision` (a record at a newer revision stays).
    pub(super) fn add(&mut self, provider: &str, route: &str, revision: u64) -> AnnotationEdit {
        let new_provider = !self.map.contains_key(provider);
        let routes = self.map.entry(provider.to_string()).or_default();
        match routes.get(route) {
            Some(&recorded) if recorded >= revision => return AnnotationEdit::Unchanged,
            _ => routes.insert(route.to_string(), revision),
        };
        let part = part(provider, routes);
        self.parts.insert(provider.to_string(), part.clone());
        if new_provider {
            AnnotationEdit::Append(part)
        } else {
            AnnotationEdit::Rewrite
        }
    }

    /// Removes a user recorded at `revision` or earlier, and every provider left without users: how
    /// the text changes. A batch of retirements removes hundreds of users of the same few providers,
    /// each with thousands: the user's element is taken out of its provider's part, and of the text,
    /// in place ([`AnnotationEdit::Splice`]), not the part serialized and the text joined again.
    pub(super) fn remove(&mut self, provider: &str, route: &str, revision: u64) -> AnnotationEdit {
        let Some(routes) = self.map.get_mut(provider) else {
            return AnnotationEdit::Unchanged;
        };
        let Some(recorded) = routes.get(route).copied().filter(|&recorded| recorded <= revision) else {
            return AnnotationEdit::Unchanged;
        };
        routes.remove(route);
        let emptied = routes.is_empty();
        // Providers the text listed without users go too, as a render drops them.
        if self.map.iter().any(|(p, routes)| routes.is_empty() && p != provider) {
            self.map.retain(|_, routes| !routes.is_empty());
            let map = &self.map;
            self.parts.retain(|p, _| map.contains_key(p));
            if let Some(routes) = self.map.get(provider) {
                self.parts.insert(provider.to_string(), part(provider, routes));
            }
            return AnnotationEdit::Rewrite;
        }
        let Some(index) = self.parts.get_index_of(provider) else {
            return AnnotationEdit::Rewrite;
        };
        // Where the provider's part starts in the text: `{`, then each earlier part and its comma.
        let at = 1 + self.parts[..index].values().map(|p| p.len() + 1).sum::<usize>();
        let exact = self.exact;
        let splice = |range: std::ops::Range<usize>| match exact {
            true => AnnotationEdit::Splice(range),
            false => AnnotationEdit::Rewrite,
        };
        if emptied {
            self.map.remove(provider);
            let (_, old) = self.parts.shift_remove_index(index).expect("indexed");
            return match (self.parts.is_empty(), index) {
                (true, _) => AnnotationEdit::Rewrite,
                // With the comma before it, or after it when first.
                (false, 0) => splice(at..at + old.len() + 1),
                (false, _) => splice(at - 1..at + old.len()),
            };
        }
        let element = serde_json::to_string(&entry(route, recorded)).expect("a string serializes");
        let part = &mut self.parts[index];
        match separated_range(part, &element, b'[', b']') {
            Some(range) => {
                part.replace_range(range.clone(), "");
                splice(at + range.start..at + range.end)
            }
            None => {
                *part = self::part(provider, &self.map[provider]);
                AnnotationEdit::Rewrite
            }
        }
    }
}

/// The provider-users text of these parts (`None`: no part, no annotation).
fn joined(parts: &indexmap::IndexMap<String, String>) -> Option<String> {
    (!parts.is_empty()).then(|| {
        let mut text = String::with_capacity(parts.values().map(|p| p.len() + 1).sum::<usize>() + 2);
        text.push('{');
        for (i, part) in parts.values().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(part);
        }
        text.push('}');
        text
    })
}

/// Where `item` stands in the JSON text `text` between `open` and `close` (an element of a list, `[`
/// and `]`; a member of an object, `{` and `}`), with one of its commas; `None` when it is not there
/// as a whole item or is the only one.
pub(super) fn separated_range(text: &str, item: &str, open: u8, close: u8) -> Option<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let at = memchr::memmem::find_iter(bytes, item).find(|&at| {
        let end = at + item.len();
        at > 0
            && (bytes[at - 1] == open || bytes[at - 1] == b',')
            && bytes.get(end).is_some_and(|&b| b == b',' || b == close)
    })?;
    let end = at + item.len();
    match (bytes[at - 1], bytes[end]) {
        (b',', _) => Some(at - 1..end),
        (before, b',') if before == open => Some(at..end + 1),
        _ => None,
    }
}

impl AnnotationTable for Users {
    fn render(&mut self) -> Option<String> {
        let text = joined(&self.parts);
        self.len = text.as_deref().map(str::len);
        self.exact = true;
        text
    }

    fn appended(&mut self, len: usize) {
        self.len = Some(len);
    }
}

/// One provider's users as stored: `route@revision`, or `route` for revision 0 (see `Users::parse`).
fn entries(routes: &BTreeMap<String, u64>) -> Vec<String> {
    routes.iter().map(|(route, &revision)| entry(route, revision)).collect()
}

fn entry(route: &str, revision: u64) -> String {
    match revision {
        0 => route.to_string(),
        _ => format!("{route}@{revision}"),
    }
}

/// One provider's `"provider":["route@revision",…]`, as serde_json writes it.
fn part(provider: &str, routes: &BTreeMap<String, u64>) -> String {
    let key = serde_json::to_string(provider).expect("a string serializes");
    let value = serde_json::to_string(&entries(routes)).expect("strings serialize");
    format!("{key}:{value}")
}

/// The revision of the event that last wrote each route's entries in a shared object (the
/// route-revisions annotation, `{"route": revision}`, in the order the routes were first recorded).
/// An edit of a route's entries is made only when the object records no newer revision of the
/// route: the record lives in the object it guards, so the check and the edit are one atomic write
/// (re-checked on the 409 re-read), whatever other engines write meanwhile.
///
/// A batch records hundreds of new routes in the same few objects, so a new route's record is
/// appended to the annotation's text in place ([`AnnotationEdit::Append`]) rather than the text being
/// written again: the text stays exactly what `render` would make of the table.
#[derive(Clone, Debug)]
pub(super) struct RouteRevisions {
    /// The length of the annotation's text this table matches (`None`: no annotation). Only edits
    /// through this table change the text while the index is kept (`Op::keeps_index`), so the length
    /// tells whether the text is still the one parsed; debug builds compare the whole text.
    len: Option<usize>,
    map: serde_json::Map<String, Value>,
}

/// How a change of one of our annotation tables ([`RouteRevisions`], [`Users`]) changes the
/// annotation's text (a JSON object).
pub(super) enum AnnotationEdit {
    Unchanged,
    /// Append this member (`"key":value`) before the closing brace, after a comma unless first.
    Append(String),
    /// Take this member (`"key":value`) out of the text in place, or write the text again when it
    /// is not there as rendered.
    Remove(String),
    /// Take these bytes out of the text in place (the table knows where they are), or write the text
    /// again when they cannot be.
    Splice(std::ops::Range<usize>),
    /// Write the text again ([`AnnotationTable::render`]).
    Rewrite,
}

/// A table kept beside one of our annotations, whose text it renders.
pub(super) trait AnnotationTable {
    /// The annotation's new text (`None`: the table is empty, the annotation goes).
    fn render(&mut self) -> Option<String>;
    /// The text now has `len` bytes (after an [`AnnotationEdit::Append`] or a `Remove` made in place).
    fn appended(&mut self, len: usize);
}

impl RouteRevisions {
    /// Unreadable text reads as no records: every edit is then allowed, as before records existed.
    pub(super) fn parse(text: Option<&str>) -> Self {
        Self {
            len: text.map(str::len),
            map: text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default(),
        }
    }

    fn matches(&self, text: Option<&str>) -> bool {
        let same = self.len == text.map(str::len);
        debug_assert!(
            !same
                || text.is_none_or(
                    |t| serde_json::from_str::<serde_json::Map<String, Value>>(t).ok().as_ref() == Some(&self.map)
                ),
            "route-revisions index out of step"
        );
        same
    }

    /// The revision recorded for the route (0: none, as for routes the console wrote).
    pub(super) fn get(&self, route: &str) -> u64 {
        self.map.get(route).and_then(Value::as_u64).unwrap_or(0)
    }

    pub(super) fn recorded(&self, route: &str) -> bool {
        self.map.contains_key(route)
    }

    /// Records `revision` unless the same or a newer one is there.
    pub(super) fn record(&mut self, route: &str, revision: u64) -> AnnotationEdit {
        match self.map.get(route).map(|r| r.as_u64().unwrap_or(0)) {
            Some(recorded) if recorded >= revision => AnnotationEdit::Unchanged,
            Some(_) => {
                self.map.insert(route.to_string(), Value::from(revision));
                AnnotationEdit::Rewrite
            }
            None => {
                self.map.insert(route.to_string(), Value::from(revision));
                let key = serde_json::to_string(route).expect("a string serializes");
                AnnotationEdit::Append(format!("{key}:{revision}"))
            }
        }
    }

    /// Removes the route's record if it is of `revision` or earlier: how the text changes. A batch of
    /// retirements forgets hundreds of routes in the same large text, which is not written again each time.
    pub(super) fn forget(&mut self, route: &str, revision: u64) -> AnnotationEdit {
        if self.get(route) > revision {
            return AnnotationEdit::Unchanged;
        }
        match self.map.shift_remove(route) {
            None => AnnotationEdit::Unchanged,
            Some(_) if self.map.is_empty() => AnnotationEdit::Rewrite,
            Some(recorded) => {
                let key = serde_json::to_string(route).expect("a string serializes");
                AnnotationEdit::Remove(format!("{key}:{recorded}"))
            }
        }
    }
}

impl AnnotationTable for RouteRevisions {
    fn render(&mut self) -> Option<String> {
        let text = (!self.map.is_empty()).then(|| serde_json::to_string(&self.map).expect("records serialize"));
        self.len = text.as_deref().map(str::len);
        text
    }

    fn appended(&mut self, len: usize) {
        self.len = Some(len);
    }
}

/// When a fence entry says its model was retired (entries are JSON in a ConfigMap's data).
pub(super) fn retired_at(entry: &Value) -> Option<String> {
    // Only an entry that mentions a retirement can be one: most entries are not parsed at all.
    let text = entry.as_str()?;
    if !(text.contains("retiredAt") || text.contains('\\')) {
        return None;
    }
    super::fence::FenceEntry::parse(entry)?.retired_at
}

/// A fence shard's entries: how many, and a time no retirement among them is older than (`None`:
/// none is retired), so pruning old retirements looks at the entries only when one may be due.
#[derive(Clone, Debug)]
pub(super) struct Retirements {
    len: usize,
    earliest: Option<String>,
}

impl Retirements {
    /// Whether a retirement older than `before` may be there.
    pub(super) fn may_prune(&self, before: &str) -> bool {
        self.earliest.as_deref().is_some_and(|earliest| earliest < before)
    }

    /// An entry was written; the shard now has `len` entries.
    fn written(&mut self, len: usize, retired_at: Option<&str>) {
        self.len = len;
        if let Some(at) = retired_at {
            if self.earliest.as_deref().is_none_or(|earliest| at < earliest) {
                self.earliest = Some(at.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::separated_range;

    /// The in-place cuts of our annotations: an element of a list, a member of an object, each with one
    /// of its commas, and only where it stands whole.
    #[test]
    fn an_item_is_cut_with_one_comma_where_it_stands_whole() {
        let cut = |text: &str, item: &str, open: u8, close: u8| {
            separated_range(text, item, open, close).map(|range| {
                let mut text = text.to_string();
                text.replace_range(range, "");
                text
            })
        };
        let list = r#"["a@1","b@2","c@3"]"#;
        assert_eq!(cut(list, r#""a@1""#, b'[', b']').as_deref(), Some(r#"["b@2","c@3"]"#));
        assert_eq!(cut(list, r#""b@2""#, b'[', b']').as_deref(), Some(r#"["a@1","c@3"]"#));
        assert_eq!(cut(list, r#""c@3""#, b'[', b']').as_deref(), Some(r#"["a@1","b@2"]"#));
        // Not a whole element, the only one, or the other delimiters: left to a render.
        assert_eq!(cut(list, r#"b@2"#, b'[', b']'), None);
        assert_eq!(cut(r#"["a@1"]"#, r#""a@1""#, b'[', b']'), None);
        assert_eq!(cut(list, r#""a@1""#, b'{', b'}'), None);
        let object = r#"{"p":["r"],"q":["s"]}"#;
        assert_eq!(
            cut(object, r#""p":["r"]"#, b'{', b'}').as_deref(),
            Some(r#"{"q":["s"]}"#)
        );
        assert_eq!(
            cut(object, r#""q":["s"]"#, b'{', b'}').as_deref(),
            Some(r#"{"p":["r"]}"#)
        );
        assert_eq!(cut(object, r#""q":["s"]"#, b'[', b']'), None);
    }
}
