//! YAML output that any Kubernetes client reads back as the same JSON. Strings are quoted unless
//! plainly safe, because YAML 1.1 readers (kubectl among them) take `off`, `on`, `yes`, `no`, `y`,
//! `n` as booleans and `0755`, `1e3` as numbers; a ConfigMap with `enableHttps: off` would break.

use serde_json::Value;

pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_block(&mut out, value, 0);
    out
}

fn is_plain(text: &str) -> bool {
    const KEYWORDS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ];
    let first = text.chars().next();
    !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && first.is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && !KEYWORDS.contains(&text)
        && !matches!(text, "null" | "Null" | "NULL" | "~")
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) if is_plain(s) => s.clone(),
        Value::String(s) => serde_json::to_string(s).expect("strings serialise"),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => false,
    }
}

fn write_block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                out.push_str(&format!("{pad}{}:", scalar(&Value::String(key.clone()))));
                write_child(out, item, indent + 2);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key goes on the dash line; the rest align under it.
                        let mut nested = String::new();
                        write_block(&mut nested, item, indent + 2);
                        out.push(' ');
                        out.push_str(nested.trim_start());
                    }
                    _ => write_child(out, item, indent + 2),
                }
            }
        }
        scalar_value => out.push_str(&format!("{pad}{}\n", scalar(scalar_value))),
    }
}

fn write_child(out: &mut String, item: &Value, indent: usize) {
    if is_block(item) {
        out.push('\n');
        write_block(out, item, indent);
    } else {
        out.push_str(&format!(" {}\n", scalar(item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_a_yaml_reader_and_quotes_ambiguous_strings() {
        let value = json!({
            "data": {"enableHttps": "off", "cert": "on", "n": "0755", "data": "{\"a\":1}\nx"},
            "spec": {"registries": [{"name": "a", "port": 443, "list": ["x", {"k": "v"}]}, "plain"], "empty": [], "obj": {}},
            "labels": {"higress.io/internal": "true", "v": "2.0.1", "null": null}
        });
        let text = to_yaml(&value);
        assert!(text.contains("enableHttps: \"off\""), "{text}");
        assert!(text.contains("higress.io/internal: \"true\""), "{text}");
        let back: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
