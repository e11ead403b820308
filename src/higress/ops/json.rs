//! Small helpers for the JSON of an object: finding an entry, and the maps and lists an edit writes
//! into, made when they are missing.

use crate::higress::index::{list_at, EntryIndex, Table};
use crate::higress::plugins::field;
use serde_json::{json, Map, Value};

/// The entry of the list at `pointer` whose `key` is `name`, if there is one.
pub(super) fn entry_named<'a>(
    object: &'a mut Value,
    pointer: &str,
    key: &str,
    name: &str,
) -> Option<&'a mut Map<String, Value>> {
    object
        .pointer_mut(pointer)?
        .as_array_mut()?
        .iter_mut()
        .filter_map(Value::as_object_mut)
        .find(|entry| entry.get(key).and_then(Value::as_str) == Some(name))
}

/// A copy of the entry of the list `spec.defaultConfig.<list>` whose `key` is `name`, if `object` has one.
pub(super) fn default_config_entry(
    object: Option<&Value>,
    list: &str,
    key: &str,
    name: &str,
) -> Option<Map<String, Value>> {
    list_at(object?, &format!("/spec/defaultConfig/{list}"))
        .iter()
        .find(|entry| field(entry, key).and_then(Value::as_str) == Some(name))
        .and_then(Value::as_object)
        .cloned()
}

pub(super) fn object_at<'a>(object: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let map = object.as_object_mut().expect("objects are JSON objects");
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

pub(super) fn list_in<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    slot.as_array_mut().expect("just made an array")
}

pub(super) fn spec_list<'a>(object: &'a mut Value, key: &str) -> &'a mut Vec<Value> {
    list_in(object_at(object, "spec"), key)
}

pub(super) fn default_config(object: &mut Value) -> &mut Map<String, Value> {
    let spec = object_at(object, "spec");
    let slot = spec.entry("defaultConfig".to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// Sets `spec.defaultConfigDisable`; says whether it changed.
pub(super) fn set_default_config_disable(object: &mut Value, disabled: bool) -> bool {
    object_at(object, "spec").insert("defaultConfigDisable".into(), Value::Bool(disabled))
        != Some(Value::Bool(disabled))
}

/// Keeps the entries of the list at `pointer` that `keep` accepts; a missing list stays missing.
/// Says whether anything was removed.
pub(super) fn retain_in(object: &mut Value, pointer: &str, keep: impl FnMut(&Value) -> bool) -> bool {
    let Some(list) = object.pointer_mut(pointer).and_then(Value::as_array_mut) else {
        return false;
    };
    let before = list.len();
    let mut keep = keep;
    list.retain(|item| keep(item));
    list.len() != before
}

/// [`retain_in`] for a list `index` has a table of: the table follows the removal.
pub(super) fn retain_indexed(
    object: &mut Value,
    pointer: &str,
    mut keep: impl FnMut(&Value) -> bool,
    index: &mut EntryIndex,
    table: Table,
) -> bool {
    let Some(list) = object.pointer_mut(pointer).and_then(Value::as_array_mut) else {
        return false;
    };
    // In place: a retirement removes one entry from lists of thousands (the few removed are copied
    // for the index).
    let (mut position, mut at, mut gone) = (0, Vec::new(), Vec::new());
    list.retain(|item| {
        let kept = keep(item);
        if !kept {
            at.push(position);
            gone.push(item.clone());
        }
        position += 1;
        kept
    });
    if at.is_empty() {
        return false;
    }
    index.removed(table, &at, &gone);
    true
}

/// Removes every entry of the list at `pointer` (indexed by `table`) whose `key` is `name`. When
/// every entry has a key of its own, the index says where the one entry is: no scan, as a batch of
/// retirements removes an entry per event from lists of thousands.
pub(super) fn remove_keyed(
    object: &mut Value,
    pointer: &str,
    (key, name): (&str, &str),
    index: &mut EntryIndex,
    table: Table,
) -> bool {
    match index.position_if_unique(table, object, name) {
        Some(None) => false,
        Some(Some(at)) => {
            let Some(list) = object.pointer_mut(pointer).and_then(Value::as_array_mut) else {
                return false;
            };
            let gone = list.remove(at);
            index.removed(table, &[at], &[gone]);
            true
        }
        None => retain_indexed(
            object,
            pointer,
            |entry| field(entry, key).and_then(Value::as_str) != Some(name),
            index,
            table,
        ),
    }
}

/// Replaces the entry at `at` (the one with the same key) or appends; says whether the list changed.
pub(super) fn upsert_at(list: &mut Vec<Value>, at: Option<usize>, entry: &Value) -> bool {
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

pub(super) fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}
