//! `metadata.managedFields` as the API server keeps them for `Update`
//! operations (POST, PUT, PATCH): which manager last set which field.
//!
//! The field sets follow sigs.k8s.io/structured-merge-diff: the fields a write
//! added or changed, compared with the stored object (on create, with the
//! type's empty object), go to the writing manager and are taken from every
//! other manager; removed fields leave every manager. Lists are atomic (one
//! leaf), which is what the CRDs here and the Ingress lists are; a map gets its
//! own `.` entry when the write created it.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::resources::ResourceType;

/// Metadata the API server never attributes to a manager (its `stripMetaManager`).
const SERVER_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// A set of field paths, as a tree: `member` says the path to this node is in
/// the set, `children` are keyed as in FieldsV1 (`f:name`).
#[derive(Debug, Default, Clone, PartialEq)]
struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (key, child) in &other.children {
            self.children.entry(key.clone()).or_default().union(child);
        }
    }

    /// Removes the paths of `other`, not their descendants (as `Set.Difference`).
    fn difference(&mut self, other: &FieldSet) {
        self.member &= !other.member;
        for (key, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(key) {
                mine.difference(theirs);
                if mine.is_empty() {
                    self.children.remove(key);
                }
            }
        }
    }

    /// FieldsV1: `{}` for a member leaf, `".": {}` for a member with children.
    fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        for (key, child) in value.as_object().into_iter().flatten() {
            if key == "." {
                set.member = true;
                continue;
            }
            let mut child_set = FieldSet::from_fields_v1(child);
            child_set.member |= child.as_object().is_some_and(Map::is_empty);
            set.children.insert(key.clone(), child_set);
        }
        set
    }

    fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (key, child) in &self.children {
            map.insert(key.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// Drops what the API server does not track: the server-owned metadata,
    /// and `status` where it is a subresource (its reset fields).
    fn without_server_fields(mut self, rt: &ResourceType) -> FieldSet {
        self.member = false;
        for dropped in ["f:apiVersion", "f:kind"] {
            self.children.remove(dropped);
        }
        if rt.status_subresource {
            self.children.remove("f:status");
        }
        if let Some(metadata) = self.children.get_mut("f:metadata") {
            metadata.member = false;
            for field in SERVER_METADATA {
                metadata.children.remove(&format!("f:{field}"));
            }
            if metadata.is_empty() {
                self.children.remove("f:metadata");
            }
        }
        self
    }
}

/// What a write did, field by field.
#[derive(Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn of(old: &Value, new: &Value, rt: &ResourceType) -> Comparison {
        let mut comparison = Comparison::default();
        compare(Some(old), Some(new), &mut Vec::new(), &mut comparison);
        Comparison {
            added: comparison.added.without_server_fields(rt),
            modified: comparison.modified.without_server_fields(rt),
            removed: comparison.removed.without_server_fields(rt),
        }
    }
}

fn compare(old: Option<&Value>, new: Option<&Value>, path: &mut Vec<String>, out: &mut Comparison) {
    match (old, new) {
        // Two empty maps are one leaf; otherwise a map is compared field by field.
        (Some(Value::Object(old)), Some(Value::Object(new))) if !(old.is_empty() && new.is_empty()) => {
            for (key, value) in old {
                if !is_managed_fields(path, key) {
                    compare_field(key, Some(value), new.get(key), path, out);
                }
            }
            for (key, value) in new.iter().filter(|(key, _)| !old.contains_key(*key)) {
                if !is_managed_fields(path, key) {
                    compare_field(key, None, Some(value), path, out);
                }
            }
        }
        (None, Some(new)) => {
            out.added.insert(path);
            for (key, value) in new.as_object().into_iter().flatten() {
                if !is_managed_fields(path, key) {
                    compare_field(key, None, Some(value), path, out);
                }
            }
        }
        (Some(old), None) => {
            out.removed.insert(path);
            for (key, value) in old.as_object().into_iter().flatten() {
                if !is_managed_fields(path, key) {
                    compare_field(key, Some(value), None, path, out);
                }
            }
        }
        (Some(old), Some(new)) if old != new => out.modified.insert(path),
        _ => {}
    }
}

fn compare_field(key: &str, old: Option<&Value>, new: Option<&Value>, path: &mut Vec<String>, out: &mut Comparison) {
    path.push(format!("f:{key}"));
    compare(old, new, path, out);
    path.pop();
}

/// One `managedFields` entry.
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    fields: FieldSet,
    /// `subresource`, and anything else a client put there.
    rest: Map<String, Value>,
}

impl Entry {
    fn parse(value: &Value) -> Option<Entry> {
        let mut rest = value.as_object()?.clone();
        let mut take = |key: &str| match rest.shift_remove(key) {
            Some(Value::String(text)) => text,
            _ => String::new(),
        };
        let (manager, operation, api_version, time) =
            (take("manager"), take("operation"), take("apiVersion"), take("time"));
        rest.shift_remove("fieldsType");
        let fields = FieldSet::from_fields_v1(&rest.shift_remove("fieldsV1").unwrap_or_default());
        Some(Entry {
            manager,
            operation,
            api_version,
            time,
            fields,
            rest,
        })
    }

    /// In the field order of the API server's Go type.
    fn render(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".into(), self.manager.clone().into());
        entry.insert("operation".into(), self.operation.clone().into());
        entry.insert("apiVersion".into(), self.api_version.clone().into());
        entry.insert("time".into(), self.time.clone().into());
        entry.insert("fieldsType".into(), "FieldsV1".into());
        entry.insert("fieldsV1".into(), self.fields.to_fields_v1());
        entry.extend(self.rest.clone());
        Value::Object(entry)
    }
}

/// The object a create is compared with: the type's empty object as the API
/// server's decoder produces it, so that a field the server defaults before
/// tracking (a Namespace's `spec.finalizers`) is not attributed to the writer.
pub(crate) fn empty_object(rt: &ResourceType) -> Value {
    match rt.plural {
        "ingresses" => json!({"spec": {}}),
        "namespaces" => json!({"spec": {"finalizers": ["kubernetes"]}}),
        _ => json!({}),
    }
}

/// The manager the API server records: the `fieldManager` query parameter,
/// else the User-Agent up to its first `/` (printable characters, at most 128 bytes).
pub(crate) fn manager_name(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(manager) = field_manager.filter(|m| !m.is_empty()) {
        return manager.to_string();
    }
    let prefix = user_agent.unwrap_or_default().split('/').next().unwrap_or_default();
    let mut name = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if name.len() + c.len_utf8() > 128 {
            break;
        }
        name.push(c);
    }
    name
}

/// The `managedFields` after `manager` wrote `new` over `old`. `recorded` are
/// the entries to start from: the request's own if it sent any, else the
/// stored ones. `old` and `new` are full objects; their `managedFields` are
/// ignored. Returns the entries sorted as the API server sorts them.
pub(crate) fn after_update(
    rt: &ResourceType,
    recorded: &[Value],
    old: &Value,
    new: &Value,
    manager: &str,
    now: &str,
) -> Vec<Value> {
    let comparison = Comparison::of(old, new, rt);
    let mut changed = comparison.added;
    changed.union(&comparison.modified);
    let mut entries: Vec<Entry> = recorded.iter().filter_map(Entry::parse).collect();
    for entry in &mut entries {
        entry.fields.difference(&changed);
        entry.fields.difference(&comparison.removed);
    }
    if !changed.is_empty() {
        let mine = entries
            .iter()
            .position(|e| e.manager == manager && e.operation == "Update" && !e.rest.contains_key("subresource"));
        match mine {
            Some(index) => {
                let entry = &mut entries[index];
                entry.fields.union(&changed);
                entry.time = now.to_string();
                entry.api_version = rt.api_version();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: rt.api_version(),
                time: now.to_string(),
                fields: changed,
                rest: Map::new(),
            }),
        }
    }
    entries.retain(|entry| !entry.fields.is_empty());
    // The API server's order: operation, then time, then manager.
    entries.sort_by(|a, b| (&a.operation, &a.time, &a.manager).cmp(&(&b.operation, &b.time, &b.manager)));
    entries.iter().map(Entry::render).collect()
}

/// `metadata.managedFields`, which no manager owns: comparisons pass over it (rather than over
/// copies without it: objects are large).
fn is_managed_fields(path: &[String], key: &str) -> bool {
    key == "managedFields" && matches!(path, [metadata] if metadata == "f:metadata")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_name;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn fields(entries: &[Value]) -> Vec<(String, Value)> {
        entries
            .iter()
            .map(|e| (e["manager"].as_str().unwrap().to_string(), e["fieldsV1"].clone()))
            .collect()
    }

    #[test]
    fn fields_v1_round_trips() {
        let v1 = json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}});
        assert_eq!(FieldSet::from_fields_v1(&v1).to_fields_v1(), v1);
    }

    #[test]
    fn another_manager_takes_over_what_it_changes() {
        let cms = by_name("configmaps").unwrap();
        let v1 = json!({"metadata": {"name": "a"}, "data": {"k": "1", "j": "1"}});
        let created = after_update(cms, &[], &empty_object(cms), &v1, "first", NOW);
        assert_eq!(
            fields(&created),
            [("first".into(), json!({"f:data": {".": {}, "f:j": {}, "f:k": {}}}))]
        );
        // "second" changes k and removes j: "first" keeps only the map it created.
        let v2 = json!({"metadata": {"name": "a"}, "data": {"k": "2"}});
        let later = "2026-01-01T00:00:01Z";
        let updated = after_update(cms, &created, &v1, &v2, "second", later);
        assert_eq!(
            fields(&updated),
            [
                ("first".into(), json!({"f:data": {}})),
                ("second".into(), json!({"f:data": {"f:k": {}}})),
            ]
        );
        assert_eq!(updated[1]["time"], later);
        // Writing the same again changes nothing, not even the time.
        assert_eq!(
            after_update(cms, &updated, &v2, &v2, "second", "2027-01-01T00:00:00Z"),
            updated
        );
    }

    #[test]
    fn manager_comes_from_field_manager_or_user_agent() {
        assert_eq!(manager_name(Some("worker"), Some("kubectl/v1.32")), "worker");
        assert_eq!(
            manager_name(None, Some("kubectl/v1.32.0 (linux/amd64) kubernetes/abc")),
            "kubectl"
        );
        assert_eq!(manager_name(Some(""), Some("Python-urllib/3.11")), "Python-urllib");
        assert_eq!(manager_name(None, None), "");
        assert_eq!(manager_name(None, Some(&"x".repeat(200))).len(), 128);
    }
}
