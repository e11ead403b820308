//! The validation kube-sim applies: object names, label keys and values
//! (every type), the size of ConfigMap and Secret data, and Ingress hosts and
//! paths. Other validation of `spec` is out of scope.

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
const WILDCARD_DNS_SUBDOMAIN_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', \
     followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, \
     '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for \
     validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
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
        // apimachinery's `ValidateAnnotations`: keys and values together at most 256 KiB.
        let total: usize = entries
            .iter()
            .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
            .sum();
        if !must_be_label && total > MAX_ANNOTATION_BYTES {
            errors.push(FieldError::too_long("metadata.annotations", MAX_ANNOTATION_BYTES));
        }
    }
    errors
}

/// What an object's annotations may hold, keys and values together (`TotalAnnotationSizeLimitB`).
pub(crate) const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// A ConfigMap's (or Secret's) data may hold at most 1 MiB.
pub(crate) const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Limits on the object's content: the total size of a ConfigMap's or
/// Secret's `data` and `binaryData` (keys and values; `binaryData` and Secret
/// `data` counted decoded).
pub(crate) fn content_errors(rt: &ResourceType, body: &Map<String, Value>) -> Vec<FieldError> {
    // The API server reports a ConfigMap's excess at the path "" (rendered
    // "[]"), a Secret's at "data".
    let (encoded, reported_at) = match rt.plural {
        "configmaps" => (["binaryData"].as_slice(), "[]"),
        "secrets" => (["data"].as_slice(), "data"),
        "ingresses" => return ingress_errors(body),
        _ => return Vec::new(),
    };
    let mut size = 0;
    for field in ["data", "binaryData"] {
        for (key, value) in body.get(field).and_then(Value::as_object).into_iter().flatten() {
            let text = value.as_str().unwrap_or_default();
            let value_size = if encoded.contains(&field) {
                base64_decoded_len(text)
            } else {
                text.len()
            };
            size += key.len() + value_size;
        }
    }
    if size > MAX_DATA_BYTES {
        vec![FieldError::too_long(reported_at, MAX_DATA_BYTES)]
    } else {
        Vec::new()
    }
}

/// An Ingress's rule hosts (lower-case DNS names, optionally `*.` wildcards)
/// and HTTP paths (absolute for `Prefix` and `Exact`).
fn ingress_errors(body: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let rules = body
        .get("spec")
        .and_then(|spec| spec.get("rules"))
        .and_then(Value::as_array);
    for (r, rule) in rules.into_iter().flatten().enumerate() {
        if let Some(host) = rule.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()) {
            let field = format!("spec.rules[{r}].host");
            if is_ipv4_sloppy(host) {
                errors.push(FieldError::invalid(
                    field.clone(),
                    &quoted(host),
                    "must be a DNS name, not an IP address",
                ));
            }
            match host.strip_prefix("*.") {
                Some(domain) if !is_dns_subdomain(domain) => {
                    errors.push(FieldError::invalid(field, &quoted(host), WILDCARD_DNS_SUBDOMAIN_MSG))
                }
                None if !is_dns_subdomain(host) => {
                    errors.push(FieldError::invalid(field, &quoted(host), DNS_SUBDOMAIN_MSG))
                }
                _ => {}
            }
        }
        let paths = rule.pointer("/http/paths").and_then(Value::as_array);
        for (p, path) in paths.into_iter().flatten().enumerate() {
            let kind = path.get("pathType").and_then(Value::as_str).unwrap_or_default();
            let text = path.get("path").and_then(Value::as_str).unwrap_or_default();
            let field = format!("spec.rules[{r}].http.paths[{p}].path");
            // Any path type: a path, when given, is absolute; Prefix and Exact ones are also clean.
            if (matches!(kind, "Prefix" | "Exact") || !text.is_empty()) && !text.starts_with('/') {
                errors.push(FieldError::invalid(
                    field.clone(),
                    &quoted(text),
                    "must be an absolute path",
                ));
            }
            if matches!(kind, "Prefix" | "Exact") {
                for sequence in ["//", "/./", "/../", "%2f", "%2F"] {
                    if text.contains(sequence) {
                        let rule = format!("must not contain '{sequence}'");
                        errors.push(FieldError::invalid(field.clone(), &quoted(text), &rule));
                    }
                }
                for suffix in ["/..", "/."] {
                    if text.ends_with(suffix) {
                        let rule = format!("cannot end with '{suffix}'");
                        errors.push(FieldError::invalid(field.clone(), &quoted(text), &rule));
                    }
                }
            }
        }
    }
    errors
}

/// An IPv4 address as Go's `netutils.ParseIPSloppy` reads one (leading zeros allowed); the API
/// server refuses it as an Ingress host. (An IPv6 address is no DNS name to begin with.)
fn is_ipv4_sloppy(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.len() <= 3
                && part.bytes().all(|b| b.is_ascii_digit())
                && part.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

fn base64_decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
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
    fn data_size_is_limited_to_one_mebibyte() {
        let size = |resource: &str, body: Value| {
            let Value::Object(body) = body else { unreachable!() };
            content_errors(by_name(resource).unwrap(), &body).len()
        };
        let exactly = "v".repeat(MAX_DATA_BYTES - 1);
        assert_eq!(size("configmaps", json!({"data": {"k": exactly}})), 0);
        assert_eq!(size("configmaps", json!({"data": {"k": exactly, "x": ""}})), 1);
        // binaryData counts decoded bytes: 4 base64 characters are 3 bytes.
        let encoded = "AAAA".repeat(MAX_DATA_BYTES / 3);
        assert_eq!(size("configmaps", json!({"binaryData": {"k": encoded}})), 0);
        assert_eq!(size("secrets", json!({"data": {"kk": encoded}})), 1);
        assert_eq!(size("ingresses", json!({"data": {"k": "v".repeat(MAX_DATA_BYTES)}})), 0);
    }

    #[test]
    fn ingress_hosts_and_paths() {
        let ingress = |host: &str, path: &str| {
            let body = json!({"spec": {"rules": [{"host": host, "http": {"paths": [
                {"path": path, "pathType": "Prefix"},
                {"path": "anything", "pathType": "ImplementationSpecific"},
            ]}}]}});
            let Value::Object(body) = body else { unreachable!() };
            let errors = content_errors(by_name("ingresses").unwrap(), &body);
            errors.into_iter().map(|e| e.field).collect::<Vec<_>>()
        };
        let implementation_specific = "spec.rules[0].http.paths[1].path";
        assert_eq!(ingress("a.example.com", "/v1"), [implementation_specific]);
        assert_eq!(ingress("*.a.example.com", "/"), [implementation_specific]);
        assert_eq!(
            ingress("A.example.com", "/"),
            ["spec.rules[0].host", implementation_specific]
        );
        assert_eq!(
            ingress("*.-a.com", "/"),
            ["spec.rules[0].host", implementation_specific]
        );
        assert_eq!(
            ingress("a.com", "v1"),
            ["spec.rules[0].http.paths[0].path", implementation_specific]
        );
        // An IP address is no DNS name; leading zeros as Go reads them.
        for ip in ["10.0.0.1", "010.000.000.001"] {
            assert_eq!(
                ingress(ip, "/"),
                ["spec.rules[0].host", implementation_specific],
                "{ip}"
            );
        }
        assert_eq!(ingress("10.0.0.1.example.com", "/"), [implementation_specific]);
        for unclean in ["/a//b", "/a/./b", "/a/../b", "/a%2fb", "/a/..", "/a/."] {
            assert_eq!(
                ingress("a.com", unclean),
                ["spec.rules[0].http.paths[0].path", implementation_specific],
                "{unclean}"
            );
        }
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
    fn annotations_hold_at_most_256_kib() {
        let at = |bytes: usize| json!({"annotations": {"k": "v".repeat(bytes - 1)}});
        assert_eq!(errors("configmaps", "x", at(MAX_ANNOTATION_BYTES)), 0);
        assert_eq!(errors("configmaps", "x", at(MAX_ANNOTATION_BYTES + 1)), 1);
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
