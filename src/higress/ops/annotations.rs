//! Our bookkeeping annotations on shared objects: writing them in place, and the route-revisions and
//! secret-sources records (the provider-users record is with the providers).

use super::json::object_at;
use crate::higress::index::{self, AnnotationEdit, AnnotationTable, EntryIndex};
use crate::higress::names;
use serde_json::{json, Map, Value};

/// Brings one of our annotations in line with its table after `edit`; says whether it changed.
pub(super) fn write_annotation(
    object: &mut Value,
    annotation: &str,
    edit: AnnotationEdit,
    table: &mut impl AnnotationTable,
) -> bool {
    // An edit made in place gives the text's new length; the others render the table again.
    let in_place = match edit {
        AnnotationEdit::Unchanged => return false,
        AnnotationEdit::Append(part) => Some(append_to_annotation(object, annotation, &part)),
        AnnotationEdit::Remove(member) => remove_from_annotation(object, annotation, &member),
        AnnotationEdit::Splice(range) => splice_annotation(object, annotation, range),
        AnnotationEdit::Rewrite => None,
    };
    match in_place {
        Some(len) => {
            table.appended(len);
            true
        }
        None => {
            let text = table.render();
            set_annotation(object, annotation, text.as_deref())
        }
    }
}

/// Takes a member (`"key":value`, as rendered) out of the JSON object held by one of our annotations,
/// in place, with its comma; the text's new length, or `None` when the member is not there as rendered
/// (the text was written by hand, say) or was the only one.
fn remove_from_annotation(object: &mut Value, annotation: &str, member: &str) -> Option<usize> {
    let text = match object.pointer_mut("/metadata/annotations")?.get_mut(annotation)? {
        Value::String(text) => text,
        _ => return None,
    };
    let range = index::separated_range(text, member, b'{', b'}')?;
    text.replace_range(range, "");
    Some(text.len())
}

/// Takes a range of bytes out of one of our annotations, in place; the text's new length, or `None`
/// when the text is not there or the range is not in it.
fn splice_annotation(object: &mut Value, annotation: &str, range: std::ops::Range<usize>) -> Option<usize> {
    let Value::String(text) = object.pointer_mut("/metadata/annotations")?.get_mut(annotation)? else {
        return None;
    };
    text.get(range.clone())?;
    text.replace_range(range, "");
    Some(text.len())
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

pub(super) fn route_revisions_text(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(names::ANNOTATION_ROUTE_REVISIONS))
        .and_then(Value::as_str)
}

/// Whether the object records a revision of the route newer than `revision`.
pub(super) fn newer_route_recorded(object: &Value, route: &str, revision: u64, index: &mut EntryIndex) -> bool {
    index.routes(route_revisions_text(object)).get(route) > revision
}

/// Records that the route's event at `revision` wrote its entries here (a newer record stays).
pub(super) fn record_route(object: &mut Value, route: &str, revision: u64, index: &mut EntryIndex) -> bool {
    let routes = index.routes(route_revisions_text(object));
    let edit = routes.record(route, revision);
    write_annotation(object, names::ANNOTATION_ROUTE_REVISIONS, edit, routes)
}

/// Removes the route's record if it is of `revision` or earlier.
pub(super) fn forget_route(object: &mut Value, route: &str, revision: u64, index: &mut EntryIndex) -> bool {
    let routes = index.routes(route_revisions_text(object));
    let edit = routes.forget(route, revision);
    write_annotation(object, names::ANNOTATION_ROUTE_REVISIONS, edit, routes)
}

/// Records `source` as the event that built the entry from a Secret, or removes the record (`None`).
pub(super) fn set_secret_source(object: &mut Value, entry: &str, source: Option<&str>) -> bool {
    let text = secret_sources_text(object);
    let key = serde_json::to_string(entry).expect("a string serializes");
    // Most entries are written inline: no record to remove, and no text to parse.
    if source.is_none() && !text.is_some_and(|t| t.contains(&key)) {
        return false;
    }
    let mut sources: Map<String, Value> = text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    let changed = match source {
        Some(source) => sources.insert(entry.to_string(), json!(source)).as_ref() != Some(&json!(source)),
        None => sources.shift_remove(entry).is_some(),
    };
    let text = (!sources.is_empty()).then(|| Value::Object(sources).to_string());
    changed && set_annotation(object, names::ANNOTATION_SECRET_SOURCES, text.as_deref())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Forgetting a route takes its member out of the text in place, wherever it is, and the text is
    /// then exactly what rendering the table would make; the last one takes the annotation with it.
    #[test]
    fn a_forgotten_route_leaves_the_text_a_render_would_make() {
        let text = r#"{"a":1,"b":2,"c":3}"#;
        for (route, left) in [
            ("a", r#"{"b":2,"c":3}"#),
            ("b", r#"{"a":1,"c":3}"#),
            ("c", r#"{"a":1,"b":2}"#),
        ] {
            let mut object = json!({"metadata": {"annotations": {names::ANNOTATION_ROUTE_REVISIONS: text}}});
            let mut index = EntryIndex::default();
            assert!(forget_route(&mut object, route, 5, &mut index));
            assert_eq!(route_revisions_text(&object), Some(left), "{route}");
            // A newer record stays.
            assert!(!forget_route(
                &mut object,
                if route == "a" { "b" } else { "a" },
                0,
                &mut index
            ));
        }
        let mut object = json!({"metadata": {"annotations": {names::ANNOTATION_ROUTE_REVISIONS: r#"{"a":1}"#}}});
        assert!(forget_route(&mut object, "a", 1, &mut EntryIndex::default()));
        assert_eq!(route_revisions_text(&object), None);
        // Text written by hand (spaces) is written again, as a render makes it.
        let mut object =
            json!({"metadata": {"annotations": {names::ANNOTATION_ROUTE_REVISIONS: r#"{"a": 1, "b": 2}"#}}});
        assert!(forget_route(&mut object, "a", 1, &mut EntryIndex::default()));
        assert_eq!(route_revisions_text(&object), Some(r#"{"b":2}"#));
    }
}
