//! kube-sim against a real kube-apiserver (v1.24, Higress CRDs installed): the
//! requests of `fixtures/kube-apiserver-answers.json` are replayed in their
//! order, with the recording client's User-Agent, and every answer must equal
//! the recorded one: status code, and body field by field. The values a server
//! picks (uids, resourceVersions, timestamps) cannot be equal; they are mapped
//! one to one instead, so a resourceVersion the real server kept must be kept
//! and one it changed must change. Requests that sent those values get the
//! mapped ones.

mod common;

use std::collections::HashMap;

use axum::http::{header, Request};
use kube::Client;
use serde_json::{json, Value};

const ANSWERS: &str = include_str!("fixtures/kube-apiserver-answers.json");
/// The client that made the recording (Python's urllib).
const RECORDED_USER_AGENT: &str = "Python-urllib/3.11";

/// Recorded value -> kube-sim's value.
#[derive(Default)]
struct Bindings {
    /// resourceVersions and uids: a bijection over the whole replay.
    strict: HashMap<String, String>,
    /// Timestamps, by object name: the latest answer's, since a timestamp
    /// the real server wrote in the same second may be a second later here.
    times: HashMap<(String, String), String>,
}

impl Bindings {
    fn bind_strict(&mut self, recorded: &str, actual: &str, at: &str) -> Result<(), String> {
        match self.strict.get(recorded) {
            Some(bound) if bound != actual => Err(format!(
                "{at}: recorded {recorded:?} was {bound:?} before, now {actual:?}"
            )),
            Some(_) => Ok(()),
            None if self.strict.values().any(|v| v == actual) => Err(format!(
                "{at}: {actual:?} already stands for another recorded value than {recorded:?}"
            )),
            None => {
                self.strict.insert(recorded.into(), actual.into());
                Ok(())
            }
        }
    }
}

/// Server-chosen fields, by key.
fn volatile(key: &str) -> Option<bool> {
    match key {
        "uid" | "resourceVersion" => Some(true),
        "creationTimestamp" | "time" => Some(false),
        _ => None,
    }
}

fn unify(recorded: &Value, actual: &Value, at: &str, object: &str, bindings: &mut Bindings) -> Result<(), String> {
    match (recorded, actual) {
        (Value::Object(r), Value::Object(a)) => {
            let (mut rk, mut ak): (Vec<&String>, Vec<&String>) = (r.keys().collect(), a.keys().collect());
            rk.sort();
            ak.sort();
            if rk != ak {
                return Err(format!("{at}: keys {ak:?}, recorded {rk:?}"));
            }
            for (key, r_value) in r {
                let here = format!("{at}.{key}");
                match (volatile(key), r_value.as_str(), a[key].as_str()) {
                    (Some(true), Some(rv), Some(av)) => bindings.bind_strict(rv, av, &here)?,
                    (Some(false), Some(rv), Some(av)) => {
                        let well_formed = av.len() == 20 && av.ends_with('Z') && av.as_bytes()[10] == b'T';
                        if !well_formed {
                            return Err(format!("{here}: {av:?} is not an RFC 3339 UTC second"));
                        }
                        bindings.times.insert((object.into(), rv.into()), av.into());
                    }
                    _ => unify(r_value, &a[key], &here, object, bindings)?,
                }
            }
            Ok(())
        }
        (Value::Array(r), Value::Array(a)) if r.len() == a.len() => r
            .iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (r, a))| unify(r, a, &format!("{at}[{i}]"), object, bindings)),
        _ if recorded == actual => Ok(()),
        _ => Err(format!("{at}: {actual}, recorded {recorded}")),
    }
}

/// The recorded request body with the recorded server-chosen values replaced by kube-sim's.
fn translate(body: &Value, object: &str, bindings: &Bindings) -> Value {
    match body {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| {
                    let mapped = match (volatile(key), value.as_str()) {
                        (Some(true), Some(recorded)) => bindings.strict.get(recorded).cloned(),
                        (Some(false), Some(recorded)) => bindings.times.get(&(object.into(), recorded.into())).cloned(),
                        _ => None,
                    };
                    let value = mapped.map_or_else(|| translate(value, object, bindings), Value::from);
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|item| translate(item, object, bindings)).collect()),
        other => other.clone(),
    }
}

/// The bodies recorded only by their size: rebuilt from their description and
/// checked to be within 1 % of the recorded size.
fn large_body(entry: &Value) -> Vec<u8> {
    let description = entry["request"]["body"].as_str().unwrap();
    let recorded_size: usize = description[1..].split(' ').next().unwrap().parse().unwrap();
    let plugin = |providers: usize| {
        // About 330 bytes each, as recorded.
        let providers: Vec<Value> = (0..providers)
            .map(|i| {
                json!({"id": format!("provider-{i:05}"), "type": "openai",
                            "apiTokens": [format!("sk-{}", "x".repeat(220))],
                            "modelMapping": {"*": format!("model-{i:05}-{}", "m".repeat(38))}})
            })
            .collect();
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "rec-big", "namespace": "higress-system"},
               "spec": {"defaultConfig": {"providers": providers}, "matchRules": []}})
    };
    let body = match entry["name"].as_str().unwrap() {
        "configmap-too-big" => json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "rec-big", "namespace": "higress-system"},
            "data": {"big": "x".repeat(1_048_586)}}),
        "wasmplugin-over-etcd-limit" => plugin(5200),
        "wasmplugin-over-request-limit" => plugin(11_000),
        other => panic!("no recipe for the large body of {other}"),
    };
    let bytes = serde_json::to_vec(&body).unwrap();
    let off_by = bytes.len().abs_diff(recorded_size) as f64 / recorded_size as f64;
    assert!(off_by < 0.01, "{description}: rebuilt {} bytes", bytes.len());
    bytes
}

async fn send(client: &Client, entry: &Value, bindings: &Bindings) -> (u16, Value) {
    let request = &entry["request"];
    let path = request["path"].as_str().unwrap();
    let object = object_name(entry);
    let body = match &request["body"] {
        Value::Null => Vec::new(),
        Value::String(_) => large_body(entry),
        body => serde_json::to_vec(&translate(body, &object, bindings)).unwrap(),
    };
    let mut builder = Request::builder()
        .method(request["method"].as_str().unwrap())
        .uri(path)
        .header(header::USER_AGENT, RECORDED_USER_AGENT);
    if let Some(content_type) = request["contentType"].as_str() {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    let response = client.send(builder.body(body).unwrap().map(Into::into)).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect_bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// The object a request is about: the last path segment of a named request, else the body's name.
fn object_name(entry: &Value) -> String {
    let request = &entry["request"];
    match request["method"].as_str() {
        Some("POST") => request["body"]["metadata"]["name"]
            .as_str()
            .unwrap_or("rec-big")
            .to_string(),
        _ => request["path"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string(),
    }
}

#[tokio::test]
async fn answers_as_the_real_api_server_did() {
    let sim = kube_sim::start().await;
    let client = common::client(&sim.kubeconfig_yaml(), false).await;
    let answers: Vec<Value> = serde_json::from_str(ANSWERS).unwrap();
    assert_eq!(answers.len(), 16, "the fixture is the recording of 16 requests");
    let mut bindings = Bindings::default();
    let mut mismatches = Vec::new();
    for entry in &answers {
        let name = entry["name"].as_str().unwrap();
        let (status, body) = send(&client, entry, &bindings).await;
        let recorded = &entry["response"];
        if status != recorded["status"] {
            mismatches.push(format!(
                "{name}: status {status}, recorded {}: {body}",
                recorded["status"]
            ));
            continue;
        }
        if let Err(difference) = unify(&recorded["body"], &body, name, &object_name(entry), &mut bindings) {
            mismatches.push(difference);
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // What was stored is what was answered: a pruned field is not kept aside.
    let plugin = sim.get("wasmplugins", "higress-system", "rec-wp").unwrap();
    assert_eq!(plugin["spec"], json!({"defaultConfig": {"a": 1}, "matchRules": []}));
    assert!(plugin.get("unknownTopLevel").is_none());
    // Neither refused large object was stored.
    assert!(sim.get("configmaps", "higress-system", "rec-big").is_none());
    assert!(sim.get("wasmplugins", "higress-system", "rec-big").is_none());
}
