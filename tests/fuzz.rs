//! Property test of decode → validate → map: whatever bytes arrive, parsing never panics, and an
//! event the contract accepts maps (against an empty cluster, default settings) only to objects a
//! real kube-apiserver stores. What the API server refuses is taken from its recorded answers in
//! `tests/fixtures/kube-apiserver/answers.json` and from the validation rules they name; the checker
//! is first held against those answers, so it is known to refuse what the server refused.

use higress_route_worker::contract;
use higress_route_worker::higress::{self, Decision, Settings, State};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::path::Path;

// ---------------------------------------------------------------- what the API server refuses

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`, at most 253 characters
/// (IsDNS1123Subdomain: object names of ConfigMaps, Ingresses, Secrets, custom resources; Ingress hosts).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

/// An Ingress host: a lower-case RFC 1123 subdomain, or `*.` and one (the recorded answers
/// `ingress-create` and `ingress-uppercase-host`).
fn is_ingress_host(s: &str) -> bool {
    is_dns_subdomain(s.strip_prefix("*.").unwrap_or(s))
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters: the name part of a label or
/// annotation key (the recorded answer `configmap-bad-label`).
fn is_qualified_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain.
fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => !prefix.is_empty() && is_dns_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(s),
    }
}

/// A label value: empty, or a qualified name part (at most 63 characters).
fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// A ConfigMap data key: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn is_config_map_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An Ingress path of pathType Prefix or Exact: absolute (the recorded answer `ingress-relative-path`),
/// and without the sequences the API server refuses in such paths.
fn ingress_path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("{path:?}: must be an absolute path"));
    }
    for sequence in ["//", "/./", "/../", "%2f", "%2F"] {
        if path.contains(sequence) {
            return Some(format!("{path:?}: must not contain {sequence:?}"));
        }
    }
    for suffix in ["/..", "/."] {
        if path.ends_with(suffix) {
            return Some(format!("{path:?}: cannot end with {suffix:?}"));
        }
    }
    // Stricter than the server, which stores "/x\n---\nkind: Secret": the contract allows RFC 3986
    // path characters only, so no path can break a YAML rendering or a log line.
    let pchar = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
    if !path.bytes().all(pchar) {
        return Some(format!("{path:?}: only RFC 3986 path characters"));
    }
    None
}

/// Control characters and bidirectional or invisible formatting characters: never in an object's
/// names; in values only tab and line breaks (multi-line keys in a provider's configuration).
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

fn text_problems(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.chars().any(|c| is_invisible(c) && !matches!(c, '\t' | '\n' | '\r')) => {
            out.push(format!("{path}: control or bidi character in a value"))
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                text_problems(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                if key.chars().any(is_invisible) {
                    out.push(format!("{path}: control or bidi character in a name"));
                }
                text_problems(member, &format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// Why a real API server would refuse `object` on create, or nothing.
fn refusals(object: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !is_dns_subdomain(name) {
        found.push(format!("{kind} name {name:?} is not a DNS subdomain"));
    }
    let members = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    for (key, value) in members("/metadata/labels") {
        if !is_qualified_name(&key) {
            found.push(format!("label key {key:?}"));
        }
        if !value.as_str().is_some_and(is_label_value) {
            found.push(format!("label {key:?} value {value}"));
        }
    }
    let mut annotation_bytes = 0;
    for (key, value) in members("/metadata/annotations") {
        if !is_qualified_name(&key) {
            found.push(format!("annotation key {key:?}"));
        }
        match value.as_str() {
            Some(text) => annotation_bytes += key.len() + text.len(),
            None => found.push(format!("annotation {key:?} is not a string")),
        }
    }
    // TotalAnnotationSizeLimitB.
    if annotation_bytes > 256 * 1024 {
        found.push(format!("annotations are {annotation_bytes} bytes"));
    }
    if kind == "ConfigMap" {
        let data = members("/data");
        let mut bytes = 0;
        for (key, value) in &data {
            if !is_config_map_key(key) {
                found.push(format!("ConfigMap data key {key:?}"));
            }
            bytes += key.len() + value.as_str().map_or(usize::MAX / 2, str::len);
        }
        // The recorded answer `configmap-too-big`.
        if bytes > 1024 * 1024 {
            found.push(format!("ConfigMap data is {bytes} bytes"));
        }
    }
    if kind == "Ingress" {
        for rule in object
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(host) = rule.get("host") {
                if !host.as_str().is_some_and(is_ingress_host) {
                    found.push(format!("Ingress host {host}"));
                }
            }
            for path in rule
                .pointer("/http/paths")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match path["path"].as_str() {
                    Some(text) => found.extend(ingress_path_problem(text)),
                    None => found.push("Ingress path is not a string".into()),
                }
            }
        }
        for tls in object
            .pointer("/spec/tls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for host in tls["hosts"].as_array().into_iter().flatten() {
                if !host.as_str().is_some_and(is_ingress_host) {
                    found.push(format!("Ingress TLS host {host}"));
                }
            }
            if let Some(secret) = tls.get("secretName") {
                if !secret.as_str().is_some_and(is_dns_subdomain) {
                    found.push(format!("Ingress TLS secretName {secret}"));
                }
            }
        }
    }
    let text = object.to_string();
    // etcd's default request limit (the recorded answer `wasmplugin-over-etcd-limit`).
    if text.len() > 1536 * 1024 {
        found.push(format!("object is {} bytes", text.len()));
    }
    // The worker and every other client must be able to read it back.
    if let Err(e) = serde_json::from_str::<Value>(&text) {
        found.push(format!("does not read back: {e}"));
    }
    text_problems(object, kind, &mut found);
    found
}

/// What the API server stores but Higress would misread: a destination line or a registry domain
/// that is not a lower-case host. A line break in a service name would add a destination.
fn misreadings(object: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let host_port = |text: &str| {
        text.rsplit_once(':')
            .is_some_and(|(host, port)| is_dns_subdomain(host) && port.parse::<u16>().is_ok())
    };
    if object["kind"] == "Ingress" {
        if let Some(destination) = object.pointer("/metadata/annotations/higress.io~1destination") {
            let text = destination.as_str().unwrap_or_default();
            let lines: Vec<&str> = text.split('\n').collect();
            let weighted = |line: &str| {
                line.split_once("% ")
                    .is_some_and(|(weight, target)| weight.parse::<u32>().is_ok() && host_port(target))
            };
            let fine = match lines[..] {
                [one] => host_port(one),
                ref many => many.iter().all(|line| weighted(line)),
            };
            if !fine {
                found.push(format!("destination {destination}"));
            }
        }
    }
    if object["kind"] == "McpBridge" {
        for registry in object
            .pointer("/spec/registries")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let domain = registry["domain"].as_str().unwrap_or_default();
            let fine = match registry["type"].as_str() {
                Some("static") => domain.split(',').all(|d| {
                    d.rsplit_once(':').is_some_and(|(ip, port)| {
                        ip.parse::<std::net::Ipv4Addr>().is_ok() && port.parse::<u16>().is_ok()
                    })
                }),
                _ => is_dns_subdomain(domain),
            };
            if !fine {
                found.push(format!("registry domain {:?}", registry["domain"]));
            }
        }
    }
    found
}

#[test]
fn the_misreading_checker_sees_an_added_destination_or_an_odd_registry() {
    let ingress = |destination: &str| json!({"kind": "Ingress", "metadata": {"name": "i", "annotations": {"higress.io/destination": destination}}});
    assert!(misreadings(&ingress("llm-a.internal.dns:443")).is_empty());
    assert!(misreadings(&ingress("70% a.dns:443\n30% b.dns:80")).is_empty());
    for bad in [
        "svc\n100% evil.dns:8000",
        "Svc.default:80",
        "svc",
        "a.dns:443\n",
        "50% a.dns:443",
    ] {
        assert!(!misreadings(&ingress(bad)).is_empty(), "{bad:?}");
    }
    let bridge = |kind: &str, domain: &str| json!({"kind": "McpBridge", "metadata": {"name": "default"}, "spec": {"registries": [{"type": kind, "domain": domain}]}});
    assert!(misreadings(&bridge("dns", "api.openai.com")).is_empty());
    assert!(misreadings(&bridge("static", "10.0.0.1:80,10.0.0.2:80")).is_empty());
    assert!(!misreadings(&bridge("dns", "DashScope.aliyuncs.com")).is_empty());
    assert!(!misreadings(&bridge("dns", "a.com\nb")).is_empty());
}

// ---------------------------------------------------------------- the checker against the recorded answers

fn recorded_answers() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube-apiserver/answers.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("answers.json is JSON")
}

/// Every recorded create of a ConfigMap or an Ingress with its body: the checker refuses exactly
/// those the real server answered 422.
#[test]
fn the_checker_refuses_what_the_recorded_api_server_refused() {
    let mut checked = Vec::new();
    for answer in recorded_answers() {
        let request = &answer["request"];
        let body = &request["body"];
        let kind = body["kind"].as_str().unwrap_or_default();
        if request["method"] != "POST" || !matches!(kind, "ConfigMap" | "Ingress") {
            continue;
        }
        let status = answer["response"]["status"].as_u64().expect("status");
        let found = refusals(body);
        assert_eq!(
            !found.is_empty(),
            status == 422,
            "{}: the server answered {status}, the checker says {found:?}",
            answer["name"]
        );
        checked.push(answer["name"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        checked,
        [
            "configmap-create",
            "configmap-bad-label",
            "ingress-relative-path",
            "ingress-create",
            "ingress-uppercase-host"
        ]
    );
    // `configmap-too-big` is recorded without its body: "one data value of 1048586 characters", 422.
    let too_big = recorded_answers()
        .into_iter()
        .find(|a| a["name"] == "configmap-too-big")
        .expect("recorded");
    assert_eq!(too_big["response"]["status"], 422);
    let big = json!({"kind": "ConfigMap", "metadata": {"name": "rec-big"}, "data": {"k": "x".repeat(1_048_586)}});
    assert_eq!(refusals(&big), ["ConfigMap data is 1048587 bytes"]);
}

// ---------------------------------------------------------------- decode → validate → map

/// The objects an accepted event creates or changes in an empty cluster; `None` when the contract
/// rejects the bytes or the mapping refuses the event (both are fine: nothing is written).
fn objects_for(bytes: &[u8]) -> Option<Vec<Value>> {
    let event = contract::parse(bytes).ok()?;
    let now = chrono::Utc::now();
    let plan = match higress::plan(&event, &State::new(), &Settings::default(), now).ok()? {
        Decision::Apply(plan) => plan,
        Decision::Stale { .. } => return Some(Vec::new()),
    };
    let mut state = State::new();
    let changes = higress::simulate(&mut state, &plan).ok()?;
    Some(
        changes
            .into_iter()
            .filter_map(|(key, _)| state.get(&key).cloned())
            .collect(),
    )
}

fn assert_storable(objects: &[Value], event: &Value) {
    for object in objects {
        let found = refusals(object);
        assert!(
            found.is_empty(),
            "the API server would refuse {} {}: {found:?}\nevent: {event}",
            object["kind"],
            object["metadata"]["name"]
        );
        let found = misreadings(object);
        assert!(
            found.is_empty(),
            "Higress would misread {} {}: {found:?}\nevent: {event}",
            object["kind"],
            object["metadata"]["name"]
        );
    }
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?"
}

fn model_id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9./:_-]{0,30}"
}

fn free_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~\t\n]{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z0-9_.*-]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

prop_compose! {
    /// A deploy event the contract accepts, in all its shapes.
    fn valid_deploy()(
        model in (label(), prop::option::of(label())).prop_map(|(a, b)| match b { Some(b) => format!("{a}.{b}"), None => a }),
        provider in prop::option::of(label()),
        kind in prop::sample::select(vec!["openai", "vllm", "deepseek", "qwen", "ollama"]),
        host in "[a-z]{1,10}\\.(com|io|internal)",
        domains in prop::collection::btree_set(
            (prop::bool::ANY, label(), label()).prop_map(|(wild, a, b)| format!("{}{a}.{b}", if wild { "*." } else { "" })),
            0..4),
        https in prop::sample::select(vec!["off", "on", "force"]),
        cert in label(),
        path in prop::collection::vec("[A-Za-z0-9_~-]{1,8}|%[0-9A-E][0-9A-E]", 0..4),
        predicates in prop::collection::vec((prop::bool::ANY, model_id()), 0..4),
        mapping in prop::collection::btree_map("\\*|[a-z0-9][a-z0-9.-]{0,10}\\*?", model_id(), 0..4),
        config in prop::collection::btree_map("x[A-Za-z0-9_]{0,10}", free_json(), 0..4),
        consumers in prop::collection::btree_map(label(), (0..3usize, "[A-Za-z0-9._~+/=-]{1,40}", "[A-Za-z0-9_-]{1,20}"), 0..4),
        // deepseek and qwen need a token (the schema says so, as the gateway does); one for every type.
        tokens in prop::collection::vec("[A-Za-z0-9._~+/=-]{1,60}", 1..3),
        revision in 0u64..1_000_000,
    ) -> Value {
        let url = match kind {
            "deepseek" => None,
            "ollama" => Some(format!("http://{host}:11434")),
            _ => Some(format!("https://{host}/v1")),
        };
        let mut provider_spec = json!({"type": kind, "apiTokens": tokens, "config": config});
        if let Some(name) = &provider { provider_spec["name"] = json!(name); }
        if let Some(url) = url { provider_spec["url"] = json!(url); }
        let consumers: Vec<Value> = consumers.into_iter().enumerate().map(|(i, (name, (source, credential, key)))| {
            let source = ["BEARER", "HEADER", "QUERY"][source];
            // Unique across consumers: key-auth refuses a credential given to two.
            let mut c = json!({"name": name, "source": source, "credentials": [format!("{credential}{i}")]});
            if source != "BEARER" { c["key"] = json!(key); }
            c
        }).collect();
        let mut https_spec = json!({"mode": https});
        if https != "off" { https_spec["cert"] = json!(cert); }
        json!({
            "specversion": "1.0", "id": "fuzz", "source": "/fuzz", "type": "io.higress.model.deployed.v1",
            "data": {
                "model": model, "revision": revision, "provider": provider_spec,
                "route": {
                    "domains": domains, "https": https_spec, "path": format!("/{}", path.join("/")),
                    "modelPredicates": predicates.into_iter().map(|(pre, v)| json!({"matchType": if pre { "PRE" } else { "EQUAL" }, "matchValue": v})).collect::<Vec<_>>(),
                    "modelMapping": mapping,
                },
                "auth": {"enabled": !consumers.is_empty(), "consumers": consumers},
            }
        })
    }
}

/// Pieces hostile strings are made of: what broke or could break an object, a path or a reader.
const HOSTILE_PIECES: &[&str] = &[
    "\n---\nkind: Secret\n",
    "\r\n",
    "\u{0}",
    "\u{7}",
    "\u{1b}[31m",
    "\u{85}",
    "\u{202E}",
    "\u{2066}",
    "\u{200F}",
    "\u{200B}",
    "\u{FEFF}",
    "\u{2028}",
    " ",
    "\t",
    "A",
    "Ä",
    "ß",
    "中文",
    "😀",
    "..",
    ".",
    "-",
    "_",
    "*.",
    "*",
    "/",
    "//",
    "/../",
    "/./",
    "%2F",
    "%zz",
    "?",
    "#",
    "\\",
    "\"",
    "'",
    "{",
    "}",
    "[",
    "]",
    "(a+)+$",
    "${x}",
    "<script>",
    "=",
    "a",
    "z9",
    "llm",
    ".internal",
    "higress.io/",
    ":",
    "@",
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(HOSTILE_PIECES), 1..8).prop_map(|p| p.concat()),
        any::<String>(),
        (prop::sample::select(HOSTILE_PIECES), 60usize..400).prop_map(|(p, n)| format!("a{}", p.repeat(n))),
        "[a-z]{250,300}",
        // Near the edge of valid, so that hostile runs also reach the mapping for names, hosts and paths.
        "[a-z0-9]{1,3}([.-][a-z0-9]{1,8}){0,8}",
        "(\\*\\.)?[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){1,5}",
        "(/[A-Za-z0-9._~!$&'()*+,;=:@-]{1,12}){1,20}",
    ]
}

/// Where a hostile value goes: every field whose value reaches an object.
const TARGETS: &[&str] = &[
    "/id",
    "/subject",
    "/data/model",
    "/data/provider/name",
    "/data/provider/url",
    "/data/route/path",
    "/data/route/domains",
    "/data/route/https/cert",
    "/data/route/modelPredicates",
    "/data/route/modelMapping",
    "/data/provider/config",
    "/data/provider/config/openaiCustomServiceName",
    "/data/provider/apiTokens",
    "/data/auth/consumers",
    "/data/auth/allowedConsumers",
];

fn deeply_nested(levels: usize) -> Value {
    (0..levels).fold(json!("leaf"), |inner, i| {
        if i % 2 == 0 {
            json!([inner])
        } else {
            json!({"k": inner})
        }
    })
}

/// Puts `text` where `target` says, in the shape that field has.
fn plant(event: &mut Value, target: &str, text: &str, nesting: usize) {
    let value = match target {
        "/data/route/domains" | "/data/provider/apiTokens" | "/data/auth/allowedConsumers" => json!([text]),
        "/data/route/modelPredicates" => json!([{"matchType": "EQUAL", "matchValue": text}]),
        "/data/route/modelMapping" => json!({ text: text }),
        "/data/provider/config" => json!({ text: text, "xDeep": deeply_nested(nesting) }),
        "/data/provider/config/openaiCustomServiceName" => {
            // An in-cluster service: the Ingress destination is `<service>:<port>`.
            event["data"]["provider"]["type"] = json!("openai");
            event["data"]["provider"]["config"]["openaiCustomServicePort"] = json!(8000);
            json!(text)
        }
        "/data/auth/consumers" => json!([{"name": text, "source": "HEADER", "key": text, "credentials": [text]}]),
        _ => json!(text),
    };
    let (parent, field) = target.rsplit_once('/').expect("pointer");
    if let Some(Value::Object(members)) = event.pointer_mut(parent) {
        members.insert(field.to_string(), value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Structurally valid events are accepted and map to objects the API server stores.
    #[test]
    fn valid_events_map_to_objects_the_api_server_stores(event in valid_deploy()) {
        let bytes = event.to_string();
        let parsed = contract::parse(bytes.as_bytes());
        prop_assert!(parsed.is_ok(), "rejected: {}\nevent: {event}", parsed.unwrap_err());
        let objects = objects_for(bytes.as_bytes());
        prop_assert!(objects.as_ref().is_some_and(|o| !o.is_empty()), "nothing mapped for {event}");
        assert_storable(&objects.unwrap_or_default(), &event);
    }

    /// A hostile value in any field: never a panic, and never an object the API server refuses.
    #[test]
    fn hostile_values_never_reach_an_object_the_api_server_refuses(
        event in valid_deploy(),
        target in prop::sample::select(TARGETS),
        text in hostile_string(),
        nesting in prop_oneof![0usize..8, 0usize..140],
    ) {
        let mut event = event;
        plant(&mut event, target, &text, nesting);
        let bytes = event.to_string();
        if let Some(objects) = objects_for(bytes.as_bytes()) {
            assert_storable(&objects, &event);
        }
    }

    /// Bytes that are not even JSON, or JSON that is not an event: never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), value in free_json()) {
        prop_assert!(contract::parse(&bytes).is_err() || serde_json::from_slice::<Value>(&bytes).is_ok());
        let mut event = Map::new();
        event.insert("data".into(), value);
        let _ = contract::parse_value(Value::Object(event));
    }
}

/// The families above, each shown once exactly, so the property cannot pass by accepting nothing:
/// every one of these is rejected, and at the field it broke.
#[test]
fn each_hostile_family_is_rejected_at_its_field() {
    let base = json!({
        "specversion": "1.0", "id": "h", "source": "/fuzz", "type": "io.higress.model.deployed.v1",
        "data": {"model": "m", "revision": 1, "provider": {"type": "openai", "url": "https://a.com/v1"},
                 "route": {"path": "/v1"}, "auth": {"consumers": [{"name": "c", "source": "BEARER", "credentials": ["k"]}]}}
    });
    let cases: &[(&str, &str, usize, &str)] = &[
        ("/data/route/path", "/x\n---\nkind: Secret", 0, "data.route.path"),
        ("/data/route/path", "/a/../b", 0, "data.route.path"),
        ("/data/route/domains", "Zimomo.com", 0, "data.route.domains[0]"),
        ("/data/route/domains", "a\u{202E}.com", 0, "data.route.domains[0]"),
        ("/data/model", "a..b", 0, "data.model"),
        (
            "/data/route/modelPredicates",
            "gpt\u{2066}4",
            0,
            "data.route.modelPredicates[0].matchValue",
        ),
        (
            "/data/provider/apiTokens",
            "sk\nInjected: 1",
            0,
            "data.provider.apiTokens[0]",
        ),
        (
            "/data/provider/config",
            "xOk",
            120,
            "data.provider.config.xDeep.k[0].k[0].k[0].k",
        ),
        (
            "/data/provider/config/openaiCustomServiceName",
            "svc\n100% evil.dns",
            0,
            "data.provider.config.openaiCustomServiceName",
        ),
        (
            "/data/provider/config/openaiCustomServiceName",
            "Svc.Default",
            0,
            "data.provider.config.openaiCustomServiceName",
        ),
        ("/data/route/https/cert", "Bad Cert", 0, "data.route.https.cert"),
        ("/id", &"i".repeat(300), 0, "id"),
    ];
    for (target, text, nesting, path) in cases {
        let mut event = base.clone();
        if *target == "/data/route/https/cert" {
            event["data"]["route"]["https"] = json!({"mode": "on"});
        }
        plant(&mut event, target, text, *nesting);
        let invalid = contract::parse(event.to_string().as_bytes()).expect_err("hostile");
        assert!(
            invalid.problems.iter().any(|p| p.path == *path),
            "{target} = {text:?}: expected a problem at {path}, got {}",
            invalid.message()
        );
        assert!(
            !invalid.message().chars().any(is_invisible),
            "the message carries an invisible character: {:?}",
            invalid.message()
        );
    }
}
