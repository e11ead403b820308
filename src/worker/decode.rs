//! From a Kafka record to a lifecycle event: CloudEvents structured mode (the JSON payload) or
//! binary mode (`ce_*` headers, the payload is `data`), per the CloudEvents Kafka binding.

use crate::contract::{self, InvalidEvent, InvalidReason, Problem, MAX_EVENT_BYTES};
use crate::event::LifecycleEvent;
use crate::result::bounded;
use serde_json::{Map, Value};

/// Headers of a record, as (name, value) pairs.
pub type Headers = Vec<(String, Vec<u8>)>;

/// Most `ce_*` headers a binary-mode event may carry: the CloudEvents attributes and a few extensions.
pub const MAX_CE_HEADERS: usize = 32;
/// Largest `ce_*` header value, in bytes; attributes are ids, URIs and timestamps.
pub const MAX_CE_HEADER_BYTES: usize = 4096;
/// Longest `ce_*` header name, in bytes.
pub const MAX_CE_HEADER_NAME_BYTES: usize = 64;

pub fn decode(payload: Option<&[u8]>, headers: &Headers) -> Result<LifecycleEvent, InvalidEvent> {
    let payload = payload.unwrap_or_default();
    check_ce_headers(headers)?;
    let binary: Map<String, Value> = headers
        .iter()
        .filter_map(|(name, value)| {
            let attribute = name.strip_prefix("ce_")?;
            Some((
                attribute.to_string(),
                Value::String(String::from_utf8_lossy(value).into_owned()),
            ))
        })
        .collect();
    if !binary.contains_key("specversion") {
        return contract::parse(payload);
    }
    if payload.len() > MAX_EVENT_BYTES {
        // Reuse the structured-mode check for the one message format.
        return contract::parse(payload);
    }
    let data: Value = serde_json::from_slice(payload).map_err(|e| InvalidEvent {
        reason: InvalidReason::NotJson,
        problems: vec![Problem::new("data", format!("binary-mode payload is not JSON: {e}"))],
        event_id: binary.get("id").and_then(Value::as_str).map(str::to_string),
        event_type: binary.get("type").and_then(Value::as_str).map(str::to_string),
        model: None,
        revision: None,
    })?;
    let mut structured = binary;
    structured.insert("data".into(), data);
    contract::parse_value(Value::Object(structured))
}

/// Binary-mode headers within bounds, checked before anything is copied out of them.
fn check_ce_headers(headers: &Headers) -> Result<(), InvalidEvent> {
    let oversize = |path: &str, rule: String| InvalidEvent {
        reason: InvalidReason::Oversize,
        problems: vec![Problem::new(bounded(path, MAX_CE_HEADER_NAME_BYTES), rule)],
        event_id: None,
        event_type: None,
        model: None,
        revision: None,
    };
    let ce_headers = headers.iter().filter(|(name, _)| name.starts_with("ce_"));
    let count = ce_headers.clone().count();
    if count > MAX_CE_HEADERS {
        return Err(oversize(
            "ce_*",
            format!("{count} binary-mode headers, at most {MAX_CE_HEADERS} allowed"),
        ));
    }
    for (name, value) in ce_headers {
        if name.len() > MAX_CE_HEADER_NAME_BYTES {
            return Err(oversize(
                name,
                format!(
                    "header name is {} bytes, at most {MAX_CE_HEADER_NAME_BYTES} allowed",
                    name.len()
                ),
            ));
        }
        if value.len() > MAX_CE_HEADER_BYTES {
            return Err(oversize(
                name,
                format!("header is {} bytes, at most {MAX_CE_HEADER_BYTES} allowed", value.len()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event;

    const DATA: &str = r#"{"model":"m","revision":1,"provider":{"type":"deepseek","apiTokens":["sk-d"]}}"#;

    #[test]
    fn binary_mode_headers_carry_the_context_attributes() {
        let headers: Headers = vec![
            ("ce_specversion".into(), b"1.0".to_vec()),
            ("ce_id".into(), b"b-1".to_vec()),
            ("ce_source".into(), b"pipeline".to_vec()),
            ("ce_type".into(), event::DEPLOYED_TYPE.as_bytes().to_vec()),
            ("content-type".into(), b"application/json".to_vec()),
        ];
        let event = decode(Some(DATA.as_bytes()), &headers).unwrap();
        assert_eq!(event.envelope.id, "b-1");
        assert_eq!(event.model(), "m");
    }

    #[test]
    fn structured_mode_is_the_default_and_garbage_is_reported() {
        let structured = format!(
            r#"{{"specversion":"1.0","id":"s-1","source":"p","type":"{}","data":{DATA}}}"#,
            event::DEPLOYED_TYPE
        );
        assert_eq!(
            decode(Some(structured.as_bytes()), &Vec::new()).unwrap().envelope.id,
            "s-1"
        );
        assert_eq!(
            decode(Some(b"\xff\x00"), &Vec::new()).unwrap_err().reason,
            InvalidReason::NotJson
        );
        assert_eq!(decode(None, &Vec::new()).unwrap_err().reason, InvalidReason::NotJson);
        let headers: Headers = vec![("ce_specversion".into(), b"1.0".to_vec())];
        assert_eq!(
            decode(Some(b"not json"), &headers).unwrap_err().reason,
            InvalidReason::NotJson
        );
    }

    #[test]
    fn oversize_or_too_many_binary_mode_headers_are_invalid() {
        let mut headers: Headers = vec![
            ("ce_specversion".into(), b"1.0".to_vec()),
            ("ce_id".into(), vec![b'x'; MAX_CE_HEADER_BYTES + 1]),
        ];
        let invalid = decode(Some(DATA.as_bytes()), &headers).unwrap_err();
        assert_eq!(invalid.reason, InvalidReason::Oversize);
        assert_eq!(
            invalid.problems,
            vec![Problem::new("ce_id", "header is 4097 bytes, at most 4096 allowed")]
        );
        headers[1].1.truncate(MAX_CE_HEADER_BYTES);
        headers.extend((0..MAX_CE_HEADERS).map(|i| (format!("ce_x{i}"), b"v".to_vec())));
        let invalid = decode(Some(DATA.as_bytes()), &headers).unwrap_err();
        assert_eq!(invalid.reason, InvalidReason::Oversize);
        assert_eq!(invalid.problems[0].rule, "34 binary-mode headers, at most 32 allowed");
        let long_name: Headers = vec![(format!("ce_{}", "n".repeat(10_000)), b"v".to_vec())];
        let invalid = decode(Some(DATA.as_bytes()), &long_name).unwrap_err();
        assert!(invalid.problems[0].path.len() <= MAX_CE_HEADER_NAME_BYTES);
        assert_eq!(
            invalid.problems[0].rule,
            "header name is 10003 bytes, at most 64 allowed"
        );
    }

    /// Binary-mode context headers of a valid deployed event, before any extension.
    fn binary_context() -> Headers {
        vec![
            ("ce_specversion".into(), b"1.0".to_vec()),
            ("ce_id".into(), b"b-1".to_vec()),
            ("ce_source".into(), b"pipeline".to_vec()),
            ("ce_type".into(), event::DEPLOYED_TYPE.as_bytes().to_vec()),
        ]
    }

    /// `bytes` of JSON: `json` followed by blanks (JSON allows them), so the size is exact.
    fn padded(json: &str, bytes: usize) -> Vec<u8> {
        assert!(json.len() <= bytes);
        let mut out = json.as_bytes().to_vec();
        out.resize(bytes, b' ');
        out
    }

    // The limits are written as the README states them (256 KiB, 32 headers, 64 and 4096 bytes), not
    // as the constants: a changed constant fails these tests.

    #[test]
    fn an_event_of_exactly_256_kib_is_taken_and_one_byte_more_is_oversize() {
        let structured = format!(
            r#"{{"specversion":"1.0","id":"s-1","source":"p","type":"{}","data":{DATA}}}"#,
            event::DEPLOYED_TYPE
        );
        let at_limit = padded(&structured, 262_144);
        assert_eq!(decode(Some(&at_limit), &Vec::new()).unwrap().envelope.id, "s-1");
        let over = padded(&structured, 262_145);
        let invalid = decode(Some(&over), &Vec::new()).unwrap_err();
        assert_eq!(invalid.reason, InvalidReason::Oversize);
        assert_eq!(
            invalid.problems,
            vec![Problem::new("$", "event is 262145 bytes, at most 262144 allowed")]
        );

        // Binary mode: the payload is `data`, held to the same size.
        let at_limit = padded(DATA, 262_144);
        assert_eq!(decode(Some(&at_limit), &binary_context()).unwrap().model(), "m");
        let over = padded(DATA, 262_145);
        let invalid = decode(Some(&over), &binary_context()).unwrap_err();
        assert_eq!(invalid.reason, InvalidReason::Oversize);
        assert_eq!(
            invalid.problems,
            vec![Problem::new("$", "event is 262145 bytes, at most 262144 allowed")]
        );
    }

    #[test]
    fn thirty_two_binary_mode_headers_are_taken_and_thirty_three_are_oversize() {
        let mut headers = binary_context();
        headers.extend((headers.len()..32).map(|i| (format!("ce_x{i}"), b"v".to_vec())));
        // Headers other than ce_* do not count.
        headers.push(("content-type".into(), b"application/json".to_vec()));
        assert_eq!(headers.iter().filter(|(n, _)| n.starts_with("ce_")).count(), 32);
        assert_eq!(decode(Some(DATA.as_bytes()), &headers).unwrap().envelope.id, "b-1");
        headers.push(("ce_x32".into(), b"v".to_vec()));
        let invalid = decode(Some(DATA.as_bytes()), &headers).unwrap_err();
        assert_eq!(invalid.reason, InvalidReason::Oversize);
        assert_eq!(
            invalid.problems,
            vec![Problem::new("ce_*", "33 binary-mode headers, at most 32 allowed")]
        );
    }

    #[test]
    fn a_header_name_of_64_bytes_is_taken_and_65_is_oversize() {
        let name = |bytes: usize| format!("ce_{}", "n".repeat(bytes - 3));
        let mut headers = binary_context();
        headers.push((name(64), b"v".to_vec()));
        assert_eq!(headers.last().unwrap().0.len(), 64);
        assert_eq!(decode(Some(DATA.as_bytes()), &headers).unwrap().envelope.id, "b-1");
        headers.last_mut().unwrap().0 = name(65);
        let invalid = decode(Some(DATA.as_bytes()), &headers).unwrap_err();
        assert_eq!(invalid.reason, InvalidReason::Oversize);
        assert_eq!(invalid.problems[0].rule, "header name is 65 bytes, at most 64 allowed");
    }

    #[test]
    fn a_header_value_of_4096_bytes_passes_the_size_check_and_4097_is_oversize() {
        let mut headers = binary_context();
        headers.push(("ce_x".into(), vec![b'v'; 4096]));
        // Past the byte check, the value reaches the schema, which holds an extension to 1024
        // characters: refused, but as a schema violation, not as oversize.
        let invalid = decode(Some(DATA.as_bytes()), &headers).unwrap_err();
        assert_eq!(invalid.reason, InvalidReason::SchemaViolation);
        assert_eq!(
            invalid.problems,
            vec![Problem::new("x", "must be at most 1024 characters long")]
        );
        headers.last_mut().unwrap().1.push(b'v');
        let invalid = decode(Some(DATA.as_bytes()), &headers).unwrap_err();
        assert_eq!(invalid.reason, InvalidReason::Oversize);
        assert_eq!(
            invalid.problems,
            vec![Problem::new("ce_x", "header is 4097 bytes, at most 4096 allowed")]
        );
    }
}
