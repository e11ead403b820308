//! From a Kafka record to a lifecycle event: CloudEvents structured mode (the JSON payload) or
//! binary mode (`ce_*` headers, the payload is `data`), per the CloudEvents Kafka binding.

use crate::contract::{self, InvalidEvent, InvalidReason, Problem, MAX_EVENT_BYTES};
use crate::event::LifecycleEvent;
use serde_json::{Map, Value};

/// Headers of a record, as (name, value) pairs.
pub type Headers = Vec<(String, Vec<u8>)>;

pub fn decode(payload: Option<&[u8]>, headers: &Headers) -> Result<LifecycleEvent, InvalidEvent> {
    let payload = payload.unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event;

    const DATA: &str = r#"{"model":"m","revision":1,"provider":{"type":"deepseek"}}"#;

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
}
