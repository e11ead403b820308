//! The metadata validation every API server type applies: object names and
//! label keys and values. Field validation of `spec` is out of scope.

use serde_json::{Map, Value};

use crate::resources::{ResourceType, NAMESPACES};
use crate::status::FieldError;

const DNS_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
     characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', \
     or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
     'MyValue',  or 'my_value',  or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or \
     '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  \
     or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Namespaces are DNS labels; every other type served here uses DNS subdomain names.
pub(crate) fn metadata_errors(rt: &ResourceType, name: &str, metadata: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (valid, limit, rule) = if rt == NAMESPACES {
        (is_dns_label(name), 63, DNS_LABEL_MSG)
    } else {
        (is_dns_subdomain(name), 253, DNS_SUBDOMAIN_MSG)
    };
    if name.len() > limit {
        let detail = format!("must be no more than {limit} characters");
        errors.push(FieldError::invalid("metadata.name", &quoted(name), &detail));
    } else if !valid {
        errors.push(FieldError::invalid("metadata.name", &quoted(name), rule));
    }
    for (field, must_be_label) in [("labels", true), ("annotations", false)] {
        let Some(entries) = metadata.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(entries) = entries.as_object() else {
            errors.push(FieldError::invalid(
                format!("metadata.{field}"),
                &entries.to_string(),
                "must be a map of strings",
            ));
            continue;
        };
        for (key, value) in entries {
            let path = format!("metadata.{field}");
            if let Some(problem) = qualified_name_problem(key) {
                errors.push(FieldError::invalid(path.clone(), &quoted(key), &problem));
            }
            match value.as_str() {
                None => errors.push(FieldError::invalid(path, &value.to_string(), "must be a string")),
                Some(text) if must_be_label && text.len() > 63 => errors.push(FieldError::invalid(
                    path,
                    &quoted(text),
                    "must be no more than 63 characters",
                )),
                Some(text) if must_be_label && !is_label_value(text) => {
                    errors.push(FieldError::invalid(path, &quoted(text), LABEL_VALUE_MSG))
                }
                Some(_) => {}
            }
        }
    }
    errors
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn starts_and_ends(text: &str, edge: impl Fn(char) -> bool) -> bool {
    text.chars().next().is_some_and(&edge) && text.chars().last().is_some_and(&edge)
}

fn is_dns_label(text: &str) -> bool {
    text.len() <= 63 && starts_and_ends(text, is_alnum_lower) && text.chars().all(|c| is_alnum_lower(c) || c == '-')
}

fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253
        && text
            .split('.')
            .all(|part| starts_and_ends(part, is_alnum_lower) && part.chars().all(|c| is_alnum_lower(c) || c == '-'))
}

fn is_label_value(text: &str) -> bool {
    text.is_empty()
        || (starts_and_ends(text, |c| c.is_ascii_alphanumeric())
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
}

/// Label and annotation keys: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix.filter(|p| !is_dns_subdomain(p)) {
        return Some(format!("prefix part {DNS_SUBDOMAIN_MSG} (prefix {prefix:?})"));
    }
    if name.is_empty() {
        Some("name part must be non-empty".to_string())
    } else if name.len() > 63 {
        Some("name part must be no more than 63 characters".to_string())
    } else if !is_label_value(name) {
        Some(QUALIFIED_NAME_MSG.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_name;
    use serde_json::json;

    fn errors(resource: &str, name: &str, metadata: Value) -> usize {
        let Value::Object(metadata) = metadata else {
            unreachable!()
        };
        metadata_errors(by_name(resource).unwrap(), name, &metadata).len()
    }

    #[test]
    fn names() {
        assert_eq!(errors("configmaps", "higress-config.v1", json!({})), 0);
        assert_eq!(errors("configmaps", "Upper", json!({})), 1);
        assert_eq!(errors("configmaps", "ends-", json!({})), 1);
        assert_eq!(errors("configmaps", "a..b", json!({})), 1);
        assert_eq!(errors("configmaps", &"a".repeat(254), json!({})), 1);
        assert_eq!(errors("namespaces", "has.dot", json!({})), 1);
        assert_eq!(errors("namespaces", "higress-system", json!({})), 0);
    }

    #[test]
    fn labels_and_annotations() {
        let good = json!({
            "labels": {"app.kubernetes.io/name": "Higress_1", "empty": ""},
            "annotations": {"higress.io/anything": "Any text / at all"},
        });
        assert_eq!(errors("configmaps", "x", good), 0);
        assert_eq!(errors("configmaps", "x", json!({"labels": {"k": "has space"}})), 1);
        assert_eq!(errors("configmaps", "x", json!({"labels": {"k": "v".repeat(64)}})), 1);
        assert_eq!(errors("configmaps", "x", json!({"labels": {"Bad_Prefix/k": "v"}})), 1);
        assert_eq!(errors("configmaps", "x", json!({"labels": {"k": 1}})), 1);
        assert_eq!(errors("configmaps", "x", json!({"annotations": {"/k": "v"}})), 1);
    }
}
