//! The PATCH bodies the API server understands: JSON merge patch (RFC 7386),
//! JSON patch (RFC 6902), and strategic merge patch, approximated here as a
//! merge patch with its `$` directives dropped.

use serde_json::{Map, Value};

pub(crate) enum Patch {
    Merge(Value),
    /// Applied as a merge patch: lists are replaced rather than merged by key,
    /// and directives such as `$patch` or `$setElementOrder/...` are ignored.
    Strategic(Value),
    Json(Vec<Value>),
}

#[derive(Debug, PartialEq)]
pub(crate) enum PatchError {
    /// The patch document itself is malformed (400 in the API server).
    Malformed(String),
    /// The patch is well formed but cannot be applied to the object (422).
    NotApplicable(String),
}

impl Patch {
    pub(crate) fn apply(&self, object: &Value) -> Result<Value, PatchError> {
        let mut patched = object.clone();
        match self {
            Patch::Merge(patch) => merge(&mut patched, patch),
            Patch::Strategic(patch) => merge(&mut patched, &without_directives(patch)),
            Patch::Json(operations) => {
                for operation in operations {
                    apply_operation(&mut patched, operation)?;
                }
            }
        }
        Ok(patched)
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.shift_remove(key);
            } else {
                merge(target.entry(key.as_str()).or_insert(Value::Null), value);
            }
        }
    }
}

fn without_directives(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(key, value)| (key.clone(), without_directives(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn apply_operation(doc: &mut Value, operation: &Value) -> Result<(), PatchError> {
    let field = |name: &str| {
        operation
            .get(name)
            .ok_or_else(|| PatchError::Malformed(format!("operation {operation} is missing {name:?}")))
    };
    let pointer = |name: &str| {
        field(name)?
            .as_str()
            .ok_or_else(|| PatchError::Malformed(format!("{name:?} of {operation} is not a string")))
    };
    let op = pointer("op")?;
    let path = pointer("path")?;
    match op {
        "add" => add(doc, path, field("value")?.clone()),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            let target = doc.pointer_mut(path).ok_or_else(|| missing("replace", path))?;
            *target = field("value")?.clone();
            Ok(())
        }
        "move" => {
            let value = remove(doc, pointer("from")?)?;
            add(doc, path, value)
        }
        "copy" => {
            let from = pointer("from")?;
            let value = doc.pointer(from).cloned().ok_or_else(|| missing("copy", from))?;
            add(doc, path, value)
        }
        "test" => match doc.pointer(path) {
            Some(actual) if actual == field("value")? => Ok(()),
            _ => Err(PatchError::NotApplicable(format!(
                "testing value {path} failed: test failed"
            ))),
        },
        other => Err(PatchError::Malformed(format!(
            "unexpected kind of operation: {other:?}"
        ))),
    }
}

fn missing(op: &str, path: &str) -> PatchError {
    PatchError::NotApplicable(format!("{op} operation does not apply: doc is missing path: {path:?}"))
}

/// Splits `/a/b~1c` into the parent pointer `/a` and the unescaped last token `b/c`.
fn split_last(path: &str) -> Result<(&str, String), PatchError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| PatchError::Malformed(format!("JSON pointer {path:?} must start with '/'")))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn array_index(token: &str, len: usize) -> Option<usize> {
    let canonical = token == "0" || !token.starts_with('0');
    let index = token.parse::<usize>().ok().filter(|_| canonical)?;
    (index <= len).then_some(index)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, token) = split_last(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(token, value);
            Ok(())
        }
        Some(Value::Array(items)) if token == "-" => {
            items.push(value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = array_index(&token, items.len()).ok_or_else(|| missing("add", path))?;
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing("add", path)),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, token) = split_last(path)?;
    let removed = match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => map.shift_remove(&token),
        Some(Value::Array(items)) => array_index(&token, items.len())
            .filter(|index| *index < items.len())
            .map(|index| items.remove(index)),
        _ => None,
    };
    removed.ok_or_else(|| missing("remove", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_patch(doc: Value, ops: Value) -> Result<Value, PatchError> {
        let Value::Array(ops) = ops else {
            panic!("ops must be an array")
        };
        Patch::Json(ops).apply(&doc)
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]});
        let patch = json!({"a": "z", "c": {"f": null, "new": {"x": null}}, "list": [3]});
        assert_eq!(
            Patch::Merge(patch).apply(&doc).unwrap(),
            json!({"a": "z", "c": {"d": "e", "new": {}}, "list": [3]})
        );
        assert_eq!(Patch::Merge(json!(["x"])).apply(&doc).unwrap(), json!(["x"]));
    }

    #[test]
    fn merge_patch_keeps_key_order() {
        let doc = json!({"a": 1, "b": 2, "c": 3});
        let patched = Patch::Merge(json!({"b": null})).apply(&doc).unwrap();
        let keys: Vec<&String> = patched.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "c"]);
    }

    #[test]
    fn strategic_patch_ignores_directives() {
        let doc = json!({"spec": {"items": [{"name": "a"}]}});
        let patch = json!({"spec": {"$setElementOrder/items": [{"name": "b"}], "items": [{"name": "b"}]}});
        assert_eq!(
            Patch::Strategic(patch).apply(&doc).unwrap(),
            json!({"spec": {"items": [{"name": "b"}]}})
        );
    }

    #[test]
    fn json_patch_operations() {
        let doc = json!({"data": {"a": "1", "x/y": "2"}, "list": [1, 2, 3]});
        let ops = json!([
            {"op": "test", "path": "/data/a", "value": "1"},
            {"op": "replace", "path": "/data/a", "value": "one"},
            {"op": "remove", "path": "/data/x~1y"},
            {"op": "add", "path": "/list/1", "value": 9},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "copy", "from": "/data/a", "path": "/copied"},
            {"op": "move", "from": "/copied", "path": "/data/moved"},
        ]);
        assert_eq!(
            json_patch(doc, ops).unwrap(),
            json!({"data": {"a": "one", "moved": "one"}, "list": [1, 9, 2, 3, 4]})
        );
    }

    #[test]
    fn json_patch_failures() {
        let doc = json!({"data": {"a": "1"}, "list": [1]});
        let failed_test = json_patch(doc.clone(), json!([{"op": "test", "path": "/data/a", "value": "2"}]));
        assert_eq!(
            failed_test,
            Err(PatchError::NotApplicable(
                "testing value /data/a failed: test failed".into()
            ))
        );
        for ops in [
            json!([{"op": "remove", "path": "/data/missing"}]),
            json!([{"op": "replace", "path": "/nope/x", "value": 1}]),
            json!([{"op": "add", "path": "/list/5", "value": 1}]),
            json!([{"op": "remove", "path": "/list/01"}]),
        ] {
            assert!(matches!(
                json_patch(doc.clone(), ops),
                Err(PatchError::NotApplicable(_))
            ));
        }
        for ops in [
            json!([{"op": "frobnicate", "path": "/data"}]),
            json!([{"op": "add", "path": "/data/b"}]),
            json!([{"op": "add", "path": "data", "value": 1}]),
        ] {
            assert!(matches!(json_patch(doc.clone(), ops), Err(PatchError::Malformed(_))));
        }
    }
}
