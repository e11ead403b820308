//! What the gateway accepts: ports of the Higress Wasm plugins' own config parsers, pure, no I/O.
//!
//! Every shared object the worker edits is parsed by one plugin as ONE config (`defaultConfig` is the
//! global config, each `matchRules[].config` a rule's), and one entry its parser refuses fails the whole
//! plugin: a running gateway keeps its last good config and ignores every later update, a starting one runs
//! without the plugin. So an event must never leave a config the parser refuses. Each rule here names its
//! source: a path in the Higress repository at [`HIGRESS_COMMIT`] and the function that enforces it.

pub mod ai_proxy;
pub mod key_auth;
pub mod route_plugins;

use serde_json::Value;
use std::fmt;

/// alibaba/higress v2.2.1, the newest release: the commit every [`Source`] path is read at.
pub const HIGRESS_COMMIT: &str = "2c15f97246f0a0d39c1563c801d57940a5843245";

/// Where a rule is enforced in the plugin's sources: a path in alibaba/higress at [`HIGRESS_COMMIT`]
/// (or in the `wasm-go` module it pins, prefixed `wasm-go@<version>/`) and the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub path: &'static str,
    pub function: &'static str,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.function)
    }
}

/// A rule a plugin's parser enforces, broken: what the rule says (never a config value: values may be
/// secrets) and where the parser says it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Broken {
    pub rule: String,
    pub source: Source,
}

impl Broken {
    pub fn new(rule: impl Into<String>, source: Source) -> Self {
        Broken {
            rule: rule.into(),
            source,
        }
    }
}

/// The part of a plugin config a problem is in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// `defaultConfig` outside its entries.
    Global,
    /// An ai-proxy `providers[]` entry, by id.
    Provider(String),
    /// A key-auth `consumers[]` entry, by name.
    Consumer(String),
    /// A `matchRules[]` entry, by its targets (`ingress a, b`, `service s`, `domain d`).
    Rule(String),
}

/// How much of an entry's name a message shows: another writer's names are not bounded.
const NAME_CHARS: usize = 120;

fn shown(name: &str) -> String {
    match name.char_indices().nth(NAME_CHARS) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_string(),
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Global => write!(f, "defaultConfig"),
            Entry::Provider(id) => write!(f, "provider {:?}", shown(id)),
            Entry::Consumer(name) => write!(f, "consumer {:?}", shown(name)),
            Entry::Rule(targets) => write!(f, "matchRule {}", shown(targets)),
        }
    }
}

/// The rules broken in one entry, as problems of that entry.
pub fn at(entry: &Entry, broken: Vec<Broken>) -> Vec<Problem> {
    broken
        .into_iter()
        .map(|broken| Problem {
            entry: entry.clone(),
            broken,
        })
        .collect()
}

/// A problem the gateway has with a plugin object: in which entry, and which rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub entry: Entry,
    pub broken: Broken,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.entry, self.broken.rule, self.broken.source)
    }
}

/// The value at a path of object keys. (`Value::pointer` parses and unescapes its path on every call:
/// admission reads these paths for every event.)
pub fn at_path<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.as_object()?.get(*key))
}

/// A shortcut for the ports: the value at `key` of a JSON object, if it is one.
pub(crate) fn get<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    config.as_object().and_then(|map| map.get(key))
}

/// An empty config: what a plugin is handed for an absent or disabled one.
static EMPTY_CONFIG: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| Value::Object(Default::default()));

/// The plugin a WasmPlugin CR configures: its `higress.io/wasm-plugin-name` label, else its name without
/// `.internal` or `-<version>`.
pub fn plugin_of(object: &Value) -> Option<&str> {
    if let Some(name) = object
        .get("metadata")
        .and_then(|m| at_path(m, &["labels", "higress.io/wasm-plugin-name"]))
        .and_then(Value::as_str)
    {
        return Some(name);
    }
    let name = at_path(object, &["metadata", "name"]).and_then(Value::as_str)?;
    Some(name.strip_suffix(".internal").unwrap_or(name))
}

/// Whether the plugin's parser is ported here: its objects are checked, and a route may bind it.
pub fn is_ported(plugin: &str) -> bool {
    matches!(plugin, "ai-proxy" | "key-auth") || route_plugins::is_ported(plugin)
}

/// The global config the gateway hands the plugin: `defaultConfig`, or `{}` when `defaultConfigDisable`
/// is set or it is absent (`pkg/ingress/config/ingress_config.go`, `convertToWasmPluginWrapper`).
fn global_config(object: &Value) -> &Value {
    let disabled = at_path(object, &["spec", "defaultConfigDisable"]).and_then(Value::as_bool) == Some(true);
    match at_path(object, &["spec", "defaultConfig"]) {
        Some(config) if !disabled && !config.is_null() => config,
        _ => &EMPTY_CONFIG,
    }
}

/// The name of a matchRule: its target lists, as [`Entry::Rule`] shows them.
pub fn rule_name(rule: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["ingress", "service", "domain"] {
        let targets: Vec<&str> = get(rule, key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !targets.is_empty() {
            parts.push(format!("{key} {}", targets.join(",")));
        }
    }
    if parts.is_empty() {
        "with no target".into()
    } else {
        parts.join("; ")
    }
}

const CONVERT: Source = Source {
    path: "pkg/ingress/config/ingress_config.go",
    function: "convertToWasmPluginWrapper",
};

/// Every problem the gateway has with a WasmPlugin CR, as it converts the CR (`matchRules` with
/// `configDisable` are left out, a rule without targets fails the whole CR) and the plugin parses it.
/// Nothing for a plugin whose parser is not ported.
pub fn check(object: &Value) -> Vec<Problem> {
    let Some(plugin) = plugin_of(object) else {
        return Vec::new();
    };
    if !is_ported(plugin) {
        return Vec::new();
    }
    let global = global_config(object);
    let mut problems = Vec::new();
    let mut rules = Vec::new();
    for rule in object
        .get("spec")
        .and_then(|spec| spec.get("matchRules"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if get(rule, "configDisable").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let has_target = ["ingress", "service", "domain"].iter().any(|key| {
            get(rule, key)
                .and_then(Value::as_array)
                .is_some_and(|list| !list.is_empty())
        });
        if !has_target {
            problems.push(Problem {
                entry: Entry::Rule(rule_name(rule)),
                broken: Broken::new("a matchRule must name an ingress, a service or a domain", CONVERT),
            });
        }
        rules.push(rule);
    }
    // Rules are named only where a problem needs the name: CRs hold thousands, checked once a batch.
    match plugin {
        "ai-proxy" => {
            // ai-proxy names a rule's problems by the provider it selects; by the rule only when the rule
            // brings its own providers.
            let named: Vec<(Entry, &Value)> = rules
                .iter()
                .map(|&rule| {
                    let config = get(rule, "config").filter(|c| !c.is_null()).unwrap_or(&*EMPTY_CONFIG);
                    let own = get(config, "providers").is_some() || get(config, "provider").is_some();
                    let entry = if own {
                        Entry::Rule(rule_name(rule))
                    } else {
                        Entry::Global
                    };
                    (entry, config)
                })
                .collect();
            problems.extend(ai_proxy::check(global, &named));
        }
        plugin => {
            problems.extend(match plugin {
                "key-auth" => key_auth::check(global, &[]),
                other => route_plugins::check(other, global, &[]).unwrap_or_default(),
            });
            for rule in &rules {
                problems.extend(rule_problems(plugin, rule, global));
            }
        }
    }
    problems
}

/// What an edit of a plugin CR writes, as it will be written, for [`admit`].
#[derive(Clone, Debug, PartialEq)]
pub enum Written {
    /// An ai-proxy `providers[]` entry, whole.
    Provider(Value),
    /// A key-auth `consumers[]` entry, whole.
    Consumer(Value),
    /// A matchRule, whole (targets and config).
    Rule(Value),
    /// `defaultConfig` outside its entries: what it becomes. Its entry list, if given, counts only where the
    /// CR has none yet.
    Global(Value),
}

/// The list of entries a plugin's global config holds, and each entry's key.
fn entry_list(plugin: &str) -> Option<(&'static str, &'static str)> {
    match plugin {
        "ai-proxy" => Some(("providers", "id")),
        "key-auth" => Some(("consumers", "name")),
        _ => None,
    }
}

/// `defaultConfig` without its entry list (large: every provider or consumer), but for those of
/// `candidates` (entries of that list the caller found) named in `keep`, and `extra` entries. What a
/// rule or the global config is checked against: the rules here read only the entries a rule names.
fn narrowed(plugin: &str, global: &Value, candidates: &[&Value], keep: &[&str], extra: &[&Value]) -> Value {
    let mut map = serde_json::Map::new();
    let list = entry_list(plugin);
    if let Some(object) = global.as_object() {
        for (key, value) in object {
            if list.is_some_and(|(list, _)| list == key) {
                continue;
            }
            map.insert(key.clone(), value.clone());
        }
    }
    if let Some((list, id)) = list {
        let same = |entry: &Value, name: &str| get(entry, id).and_then(Value::as_str) == Some(name);
        let mut entries: Vec<Value> = extra.iter().map(|e| (*e).clone()).collect();
        for entry in candidates {
            let named = keep.iter().any(|name| same(entry, name));
            if named && !extra.iter().any(|e| get(e, id) == get(entry, id)) {
                entries.push((*entry).clone());
            }
        }
        if get(global, list).is_some() || !entries.is_empty() {
            map.insert(list.into(), Value::Array(entries));
        }
    }
    Value::Object(map)
}

/// The entries of `candidates` (of the global config's list) named `name`.
fn entries_named<'a>(plugin: &str, candidates: &[&'a Value], name: &str) -> Vec<&'a Value> {
    let Some((_, id)) = entry_list(plugin) else {
        return Vec::new();
    };
    candidates
        .iter()
        .copied()
        .filter(|entry| get(entry, id).and_then(Value::as_str) == Some(name))
        .collect()
}

/// The names a rule config refers to in the global entry list: ai-proxy's `activeProviderId`, key-auth's
/// `allow`.
fn referred(rule_config: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = get(rule_config, "allow")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    names.extend(get(rule_config, "activeProviderId").and_then(Value::as_str));
    names
}

fn rule_problems(plugin: &str, rule: &Value, global: &Value) -> Vec<Problem> {
    let config = get(rule, "config").filter(|c| !c.is_null()).unwrap_or(&*EMPTY_CONFIG);
    let broken = match plugin {
        "ai-proxy" => ai_proxy::rule_problems(config, global),
        "key-auth" => key_auth::rule_problems(config, global),
        other => route_plugins::rule_problems(other, config, global).unwrap_or_default(),
    };
    if broken.is_empty() {
        // Named only when something is wrong: admission checks a rule per event.
        return Vec::new();
    }
    at(&Entry::Rule(rule_name(rule)), broken)
}

/// Whether the plugin reads the global config's entries when it parses a rule: ai-proxy's rule selects
/// its provider there. The others' rules stand alone.
fn rules_read_entries(plugin: &str) -> bool {
    plugin == "ai-proxy"
}

/// What [`admit`] reads of a CR for these writes: the names of the entries they write or their rules
/// refer to, and the rules they write (whose targets name the rules to compare with). Without `before`,
/// only what checking the writes as written needs (the entries ai-proxy's rules select): the answer is
/// then a superset of the problems added, and empty when nothing is; the caller looks again, with
/// `before`, only when it is not.
pub fn needed<'a>(plugin: &str, written: &'a [Written], before: bool) -> (Vec<String>, Vec<&'a Value>) {
    let mut names = Vec::new();
    let mut rules = Vec::new();
    for w in written {
        match w {
            Written::Provider(entry) if before => {
                names.extend(get(entry, "id").and_then(Value::as_str).map(str::to_string))
            }
            Written::Consumer(entry) if before => {
                names.extend(get(entry, "name").and_then(Value::as_str).map(str::to_string))
            }
            Written::Rule(rule) => {
                if rules_read_entries(plugin) {
                    let config = get(rule, "config").unwrap_or(&EMPTY_CONFIG);
                    names.extend(referred(config).into_iter().map(str::to_string));
                }
                if before {
                    rules.push(rule);
                }
            }
            _ => {}
        }
    }
    names.sort_unstable();
    names.dedup();
    (names, rules)
}

/// What [`admit`] reads of a CR, found by the caller (by its indexes, or [`found_by_scan`]): the CR (its
/// global config), the entries of its list that the writes name or their rules refer to ([`needed`]),
/// and its rules with the targets of the rules written. Shared CRs hold thousands of entries; nothing
/// here scans them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Found<'a> {
    pub object: Option<&'a Value>,
    pub entries: &'a [&'a Value],
    pub rules: &'a [&'a Value],
}

/// The entries and rules [`admit`] reads for these writes, found by scanning: for a caller without the
/// mapping's indexes (the unit tests; admission finds them by index, `State::gateway_positions`).
pub fn found_by_scan<'a>(plugin: &str, object: &'a Value, written: &[Written]) -> (Vec<&'a Value>, Vec<&'a Value>) {
    let (names, wanted) = needed(plugin, written, true);
    let list: Vec<&Value> = entry_list(plugin)
        .and_then(|(list, _)| get(global_config(object), list))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let entries = names
        .iter()
        .flat_map(|name| entries_named(plugin, &list, name))
        .collect();
    let rules = object
        .get("spec")
        .and_then(|spec| spec.get("matchRules"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rule| wanted.iter().any(|w| rule_name(w) == rule_name(rule)))
        .collect();
    (entries, rules)
}

/// The problems an edit would add to a CR of `plugin` (`object`: as it is before, `None` when absent): each
/// entry it writes is checked as written, in the config the gateway would hand the plugin, against the
/// same entry as it is now, so what was wrong before (another writer's entry) does not count. Rules are
/// checked against the global config narrowed to the entries they name, with the edit's own entries.
/// (What is true of entries together, such as a credential used twice, is refused by the edit itself:
/// `Op::check`.)
pub fn admit(plugin: &str, found: Found, written: &[Written]) -> Vec<Problem> {
    if !is_ported(plugin) {
        return Vec::new();
    }
    let global_before = found.object.map_or(&*EMPTY_CONFIG, global_config);
    let new_global = written.iter().rev().find_map(|w| match w {
        Written::Global(global) => Some(global),
        _ => None,
    });
    let entries_written: Vec<&Value> = written
        .iter()
        .filter_map(|w| match w {
            Written::Provider(entry) | Written::Consumer(entry) => Some(entry),
            _ => None,
        })
        .collect();
    let mut added = Vec::new();
    let mut diff = |after: Vec<Problem>, before: Vec<Problem>| {
        added.extend(after.into_iter().filter(|p| !before.contains(p)));
    };
    let global_of = |base: &Value| match new_global {
        // The new global, with this object's entries.
        Some(global) => {
            let mut merged = global.clone();
            if let (Some(map), Some((list, _))) = (merged.as_object_mut(), entry_list(plugin)) {
                if let Some(entries) = get(base, list) {
                    map.insert(list.into(), entries.clone());
                }
            }
            merged
        }
        None => base.clone(),
    };
    for w in written {
        match w {
            Written::Provider(entry) | Written::Consumer(entry) => {
                let id = entry_list(plugin).map_or("", |(_, id)| id);
                let name = get(entry, id).and_then(Value::as_str).unwrap_or_default();
                let one = |entry: &Value| -> Vec<Broken> {
                    match plugin {
                        "ai-proxy" => ai_proxy::provider_problems(entry),
                        "key-auth" => key_auth::consumer_problems(entry),
                        _ => Vec::new(),
                    }
                };
                let as_entry = |broken: Vec<Broken>| -> Vec<Problem> {
                    let entry = match plugin {
                        "ai-proxy" => Entry::Provider(name.to_string()),
                        _ => Entry::Consumer(name.to_string()),
                    };
                    at(&entry, broken)
                };
                let before: Vec<Problem> = entries_named(plugin, found.entries, name)
                    .into_iter()
                    .flat_map(|old| as_entry(one(old)))
                    .collect();
                diff(as_entry(one(entry)), before);
            }
            Written::Rule(rule) => {
                let old_rule = match found.rules {
                    [] => None,
                    rules => {
                        let targets = rule_name(rule);
                        rules.iter().find(|r| rule_name(r) == targets)
                    }
                };
                let (after, before) = if rules_read_entries(plugin) {
                    let config = get(rule, "config").unwrap_or(&*EMPTY_CONFIG);
                    let names = referred(config);
                    let after_global = global_of(&narrowed(
                        plugin,
                        global_before,
                        found.entries,
                        &names,
                        &entries_written,
                    ));
                    let before = old_rule.map_or_else(Vec::new, |old| {
                        let old_names = referred(get(old, "config").unwrap_or(&*EMPTY_CONFIG));
                        rule_problems(
                            plugin,
                            old,
                            &narrowed(plugin, global_before, found.entries, &old_names, &[]),
                        )
                    });
                    (rule_problems(plugin, rule, &after_global), before)
                } else {
                    let before = old_rule.map_or_else(Vec::new, |old| rule_problems(plugin, old, global_before));
                    (rule_problems(plugin, rule, global_before), before)
                };
                diff(after, before);
            }
            Written::Global(_) => {}
        }
    }
    if new_global.is_some() {
        let before = narrowed(plugin, global_before, &[], &[], &[]);
        let after = global_of(&before);
        let global_problems = |global: &Value| -> Vec<Problem> {
            let broken = match plugin {
                "ai-proxy" => ai_proxy::global_problems(global),
                "key-auth" => key_auth::global_problems(global),
                other => route_plugins::global_problems(other, global).unwrap_or_default(),
            };
            at(&Entry::Global, broken)
        };
        diff(global_problems(&after), global_problems(&before));
    }
    added.sort();
    added.dedup();
    // A rule's problem that is the provider's it selects (ai-proxy) is named once, by the provider.
    let providers: Vec<Broken> = added
        .iter()
        .filter(|p| matches!(p.entry, Entry::Provider(_)))
        .map(|p| p.broken.clone())
        .collect();
    added.retain(|p| !matches!(p.entry, Entry::Rule(_)) || !providers.contains(&p.broken));
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ai_proxy(providers: Value, rules: Value) -> Value {
        json!({"metadata": {"name": "ai-proxy.internal", "labels": {"higress.io/wasm-plugin-name": "ai-proxy"}},
               "spec": {"defaultConfig": {"providers": providers}, "defaultConfigDisable": false, "matchRules": rules}})
    }

    #[test]
    fn admit_counts_only_what_an_edit_adds_and_answers_the_same_given_only_what_it_needs() {
        let good = json!({"id": "a", "type": "qwen", "protocol": "openai", "apiTokens": ["sk-a"]});
        let theirs = json!({"id": "t", "type": "qwen", "protocol": "openai"});
        let rules = json!([{"service": ["t.dns"], "config": {"activeProviderId": "t"}, "configDisable": false}]);
        let cr = ai_proxy(json!([theirs, good]), rules);
        // Their selected provider has no token: a problem that was there before.
        assert_eq!(check(&cr).len(), 1, "{:?}", check(&cr));
        let rule = |id: &str| json!({"service": [format!("{id}.dns")], "config": {"activeProviderId": id}, "configDisable": false});
        let bad = json!({"id": "b", "type": "qwen", "protocol": "openai"});
        let cases = [
            (vec![Written::Provider(good.clone()), Written::Rule(rule("a"))], 0),
            (vec![Written::Provider(bad.clone()), Written::Rule(rule("b"))], 1),
            // Their entry, rewritten as it was, adds nothing.
            (vec![Written::Provider(theirs.clone()), Written::Rule(rule("t"))], 0),
        ];
        // Every entry and rule of the CR as candidates: what admit answers when it is given only what
        // `needed` names must be the same.
        let all_entries: Vec<&Value> = cr["spec"]["defaultConfig"]["providers"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        let all_rules: Vec<&Value> = cr["spec"]["matchRules"].as_array().unwrap().iter().collect();
        let everything = Found {
            object: Some(&cr),
            entries: &all_entries,
            rules: &all_rules,
        };
        for (written, added) in cases {
            let (entries, rules) = found_by_scan("ai-proxy", &cr, &written);
            assert!(entries.len() <= 1 && rules.len() <= 1, "{entries:?} {rules:?}");
            let found = Found {
                object: Some(&cr),
                entries: &entries,
                rules: &rules,
            };
            let narrow = admit("ai-proxy", found, &written);
            assert_eq!(narrow.len(), added, "{written:?}: {narrow:?}");
            assert_eq!(admit("ai-proxy", everything, &written), narrow, "{written:?}");
        }
        // A provider whose problem names it, never its token.
        let refused = admit(
            "ai-proxy",
            everything,
            &[Written::Provider(
                json!({"id": "c", "type": "azure", "apiTokens": ["sk-secret"]}),
            )],
        );
        assert!(!refused.is_empty());
        assert!(refused
            .iter()
            .all(|p| p.entry == Entry::Provider("c".into()) && !p.to_string().contains("sk-secret")));
    }

    #[test]
    fn a_new_key_auth_cr_gets_a_global_config_the_plugin_accepts() {
        let global = json!({"global_auth": false, "allow": [], "keys": ["x-higress-dummy-key"], "consumers": []});
        let consumer = json!({"name": "c", "credentials": ["Bearer k"], "keys": ["Authorization"], "in_header": true, "in_query": false});
        let written = [Written::Global(global.clone()), Written::Consumer(consumer)];
        assert_eq!(admit("key-auth", Found::default(), &written), []);
        // Without a consumer list the C++ parser refuses the global config.
        let mut no_list = global;
        no_list.as_object_mut().unwrap().remove("consumers");
        assert_eq!(
            admit("key-auth", Found::default(), &[Written::Global(no_list)]).len(),
            1
        );
    }

    #[test]
    fn the_gateway_skips_disabled_rules_and_an_empty_disabled_default_config() {
        let cr = json!({"metadata": {"name": "ai-quota-2.0.1", "labels": {"higress.io/wasm-plugin-name": "ai-quota"}},
            "spec": {"defaultConfigDisable": true, "defaultConfig": {"admin_consumer": ""},
                     "matchRules": [{"ingress": ["a"], "config": {}, "configDisable": true},
                                    {"ingress": ["b"], "config": {"admin_consumer": "x", "redis": {"service_name": "r.dns"}}}]}});
        assert_eq!(check(&cr), []);
        let mut broken = cr.clone();
        broken["spec"]["matchRules"][0]["configDisable"] = json!(false);
        assert_eq!(check(&broken).len(), 2, "{:?}", check(&broken));
        let mut untargeted = cr;
        untargeted["spec"]["matchRules"][1]
            .as_object_mut()
            .unwrap()
            .remove("ingress");
        assert!(check(&untargeted).iter().any(|p| p.broken.source == CONVERT));
    }
}
