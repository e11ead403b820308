//! Secrets never leave the cluster: distinctive API tokens and consumer credentials, inline in events
//! and in Secrets referenced by `apiTokensSecretRef`/`credentialsSecretRef`, go through valid, invalid,
//! refused and failing deploys; then every log line (at debug), result, dead letter and the metrics
//! are searched for them.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/worker.rs"]
mod worker;

use base64::Engine as _;
use kube_sim::FaultSpec;
use serde_json::{json, Value};
use std::time::Duration;
use worker::{Fixture, WorkerProcess, DLQ, NS, RESULTS};

const INLINE_TOKEN: &str = "sk-PLANTED-inline-token-5f1c0de";
const INLINE_CREDENTIAL: &str = "key-PLANTED-inline-cred-8a2b91";
const SECRET_TOKEN: &str = "sk-PLANTED-secret-token-3e9d77";
const SECRET_CREDENTIAL: &str = "key-PLANTED-secret-cred-47aa03";
const STORED_TOKEN: &str = "sk-PLANTED-stored-token-0b7f12";
const ROTATED_TOKEN: &str = "sk-PLANTED-rotated-token-91c4e2";
const ROTATED_CREDENTIAL: &str = "key-PLANTED-rotated-cred-d05b3f";

const DEPLOYED: &str = "io.higress.model.deployed.v1";
const RETIRED: &str = "io.higress.model.retired.v1";

fn event(id: &str, kind: &str, data: Value) -> Vec<u8> {
    json!({"specversion": "1.0", "id": id, "source": "secrets", "type": kind, "data": data})
        .to_string()
        .into_bytes()
}

fn inline(model: &str, revision: u64) -> Value {
    json!({"model": model, "revision": revision,
           "provider": {"name": format!("p-{model}"), "type": "openai", "url": "https://llm.example.com/v1", "apiTokens": [INLINE_TOKEN]},
           "route": {"path": format!("/{model}")},
           "auth": {"consumers": [{"name": format!("c-{model}"), "source": "BEARER", "credentials": [INLINE_CREDENTIAL]}]}})
}

fn by_reference(model: &str, token_key: &str, credential_key: &str) -> Value {
    json!({"model": model, "revision": 1,
           "provider": {"name": format!("p-{model}"), "type": "openai", "url": "https://llm.example.com/v1",
                        "apiTokensSecretRef": {"name": "llm-keys", "key": token_key}},
           "route": {"path": format!("/{model}")},
           "auth": {"consumers": [{"name": format!("c-{model}"), "source": "BEARER",
                                   "credentialsSecretRef": {"name": "llm-keys", "key": credential_key}}]}})
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Every planted value, and the base64 form a Secret stores it in.
fn needles(values: &[&str]) -> Vec<String> {
    values.iter().flat_map(|v| [v.to_string(), b64(v)]).collect()
}

/// Where any needle shows up in `text` (named `place`), as a readable finding.
fn find_leaks(place: &str, text: &[u8], needles: &[String]) -> Vec<String> {
    let text = String::from_utf8_lossy(text);
    needles
        .iter()
        .filter_map(|needle| {
            let at = text.find(needle.as_str())?;
            // The line it is on, from its start: who wrote it.
            let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            let line: String = text[line_start..]
                .chars()
                .take(at - line_start + needle.len() + 80)
                .collect();
            Some(format!("{needle} in {place}: {line}…"))
        })
        .collect()
}

/// Everything the worker said and wrote: log, results, dead letters (whole, or their headers and key
/// only when the input itself carried inline secrets: a dead letter keeps the input's bytes), metrics.
async fn leaks(
    fixture: &Fixture,
    worker: &WorkerProcess,
    secret_values: &[String],
    inline_values: &[String],
) -> Vec<String> {
    let all: Vec<String> = secret_values.iter().chain(inline_values).cloned().collect();
    let mut found = find_leaks("the worker log", worker.log().as_bytes(), &all);
    for record in fixture.read(RESULTS, 100_000, Duration::from_secs(2)).await {
        found.extend(find_leaks("a result", &record.payload, &all));
    }
    for record in fixture.read(DLQ, 100_000, Duration::from_secs(2)).await {
        let key = record.key.clone().unwrap_or_default();
        found.extend(find_leaks(
            &format!("dead letter {key} (payload)"),
            &record.payload,
            secret_values,
        ));
        found.extend(find_leaks(&format!("dead letter {key} (key)"), key.as_bytes(), &all));
        for (name, value) in &record.headers {
            found.extend(find_leaks(&format!("dead letter {key} header {name}"), value, &all));
        }
    }
    let (_, metrics) = worker.http_get("/metrics").await;
    found.extend(find_leaks("/metrics", metrics.as_bytes(), &all));
    found
}

async fn wait_for(fixture: &Fixture, worker: &mut WorkerProcess, ids: &[&str]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        worker.assert_alive();
        let results = fixture.results(100_000, Duration::from_secs(2)).await;
        let seen = |id: &&str| results.iter().any(|r| r["inputEventId"] == *id);
        if ids.iter().all(seen) {
            return results;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no result for some of {ids:?}; log:\n{}",
            worker.log()
        );
    }
}

fn outcome<'a>(results: &'a [Value], id: &str) -> (&'a Value, &'a Value) {
    let result = results.iter().rev().find(|r| r["inputEventId"] == id).unwrap();
    (&result["outcome"], &result["error"]["reason"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_appear_in_no_log_result_dead_letter_or_metric() {
    let fixture = Fixture::start().await;
    fixture
        .sim
        .insert(json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "llm-keys", "namespace": NS,
                                    "labels": {"higress-route-worker.io/readable": "true"}},
                       "data": {"token": b64(SECRET_TOKEN), "cred": b64(SECRET_CREDENTIAL)}}))
        .unwrap();
    let mut worker = fixture.worker(
        "w",
        "debug",
        &[
            "--event-deadline-secs",
            "2",
            "--retry-deadline-secs",
            "1",
            "--secret-rotation-interval-secs",
            "1",
        ],
    );

    let mut bad_name = inline("Bad_Name", 1);
    bad_name["auth"]["consumers"][0]["credentials"] = json!([INLINE_CREDENTIAL, INLINE_CREDENTIAL]);
    let mut mistyped = inline("mistyped", 1);
    mistyped["provider"]["apiTokens"] = json!([INLINE_TOKEN, 5, {"token": INLINE_TOKEN}, ""]);
    let mut both = inline("both", 1);
    both["provider"]["apiTokensSecretRef"] = json!({"name": "llm-keys", "key": "token"});
    let events: Vec<(&str, Vec<u8>)> = vec![
        ("inline-1", event("inline-1", DEPLOYED, inline("inline", 1))),
        (
            "byref-1",
            event("byref-1", DEPLOYED, by_reference("byref", "token", "cred")),
        ),
        ("bad-name", event("bad-name", DEPLOYED, bad_name)),
        ("mistyped", event("mistyped", DEPLOYED, mistyped)),
        ("both", event("both", DEPLOYED, both)),
        (
            "missing-key",
            event("missing-key", DEPLOYED, by_reference("missing", "token", "no-such-key")),
        ),
        ("inline-2", event("inline-2", DEPLOYED, inline("inline", 2))),
        (
            "byref-retired",
            event("byref-retired", RETIRED, json!({"model": "byref", "revision": 2})),
        ),
    ];
    for (key, payload) in &events {
        fixture.produce(key, payload, &[]).await;
    }
    // Binary mode with an oversize attribute, the tokens in its data.
    let data = inline("binary", 1).to_string();
    let long_subject = vec![b's'; 10_000];
    let binary_headers: [(&str, &[u8]); 5] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"binary-1"),
        ("ce_source", b"secrets"),
        ("ce_type", DEPLOYED.as_bytes()),
        ("ce_subject", &long_subject),
    ];
    fixture.produce("binary", data.as_bytes(), &binary_headers).await;
    let ids = [
        "inline-1",
        "byref-1",
        "bad-name",
        "mistyped",
        "both",
        "missing-key",
        "inline-2",
        "byref-retired",
    ];
    let results = wait_for(&fixture, &mut worker, &ids).await;
    for id in ["inline-1", "byref-1"] {
        assert_eq!(outcome(&results, id).0, "applied", "{id}: {results:?}");
    }
    for id in ["bad-name", "mistyped", "both", "missing-key"] {
        assert_eq!(outcome(&results, id).0, "rejected", "{id}");
    }
    // A newer revision with the same content still moves the route's revision fence.
    assert_eq!(outcome(&results, "inline-2").0, "applied");
    assert_eq!(outcome(&results, "byref-retired").0, "applied");

    // The planted values did reach the cluster, where they belong: the search below is not vacuous.
    let ai_proxy = fixture
        .sim
        .get("wasmplugins", NS, "ai-proxy.internal")
        .unwrap()
        .to_string();
    assert!(ai_proxy.contains(INLINE_TOKEN));
    let key_auth = fixture
        .sim
        .get("wasmplugins", NS, "key-auth.internal")
        .unwrap()
        .to_string();
    assert!(key_auth.contains(INLINE_CREDENTIAL));

    // A deploy that keeps failing: failed, then dead-lettered.
    fixture
        .sim
        .faults()
        .set_error_rate(1.0, FaultSpec::new(503).for_path("wasmplugins"));
    fixture
        .produce(
            "flaky",
            &event("flaky", DEPLOYED, by_reference("flaky", "token", "cred")),
            &[],
        )
        .await;
    let results = wait_for(&fixture, &mut worker, &["flaky"]).await;
    assert_eq!(outcome(&results, "flaky").0, "failed", "log:\n{}", worker.log());
    fixture.sim.faults().clear();

    // A route built from the Secret, then the Secret rotated: the worker logs and reports the rotation.
    // (The retired route again: its consumer still holds the Secret's credential, which no other
    // consumer may take.)
    let mut kept = by_reference("byref", "token", "cred");
    kept["revision"] = json!(3);
    fixture.produce("kept", &event("kept", DEPLOYED, kept), &[]).await;
    let results = wait_for(&fixture, &mut worker, &["kept"]).await;
    assert_eq!(outcome(&results, "kept").0, "applied", "log:\n{}", worker.log());
    let client = higress_route_worker::cluster::connect(Some(&fixture.dir.path().join("kubeconfig")))
        .await
        .unwrap();
    let api = higress_route_worker::cluster::Api::new(client, NS);
    let key = higress_route_worker::higress::ObjectKey::new(higress_route_worker::higress::Kind::Secret, "llm-keys");
    let mut secret = api.get(&key).await.unwrap().unwrap();
    secret["data"] = json!({"token": b64(ROTATED_TOKEN), "cred": b64(ROTATED_CREDENTIAL)});
    api.replace(&key, &secret).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !fixture
        .results(100_000, Duration::from_secs(1))
        .await
        .iter()
        .any(|r| r["reason"] == "secret-rotated" && r["model"] == "byref")
    {
        worker.assert_alive();
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rotation; log:\n{}",
            worker.log()
        );
    }
    let ai_proxy = fixture
        .sim
        .get("wasmplugins", NS, "ai-proxy.internal")
        .unwrap()
        .to_string();
    assert!(
        ai_proxy.contains(ROTATED_TOKEN),
        "the rotated value reached the cluster"
    );

    let dead = fixture.read(DLQ, 5, Duration::from_secs(30)).await;
    let dead_keys: Vec<&str> = dead.iter().filter_map(|r| r.key.as_deref()).collect();
    for key in ["bad-name", "mistyped", "both", "binary", "flaky"] {
        assert!(dead_keys.contains(&key), "{key} not dead-lettered: {dead_keys:?}");
    }
    let log = worker.log();
    assert!(log.contains("DEBUG"), "the log is at debug level");

    let found = leaks(
        &fixture,
        &worker,
        &needles(&[SECRET_TOKEN, SECRET_CREDENTIAL, ROTATED_TOKEN, ROTATED_CREDENTIAL]),
        &needles(&[INLINE_TOKEN, INLINE_CREDENTIAL]),
    )
    .await;
    assert!(found.is_empty(), "{} leaks:\n{}", found.len(), found.join("\n"));
    assert!(worker.terminate().success());
}

/// Issue #12 (2): a shared object too deep to parse is reported, never logged with its content. It
/// carries the console's label, as the real `ai-proxy.internal` does, so it is read through the
/// WasmPlugin list: the error names the object, not the list, and is permanent, so every event
/// after it is refused at once instead of after a retry deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_object_that_cannot_be_parsed_is_not_logged_with_its_tokens() {
    let fixture = Fixture::start().await;
    let mut deep = json!([]);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    fixture
        .sim
        .insert(
            json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
                       "metadata": {"name": "ai-proxy.internal", "namespace": NS,
                                    "labels": {"higress.io/resource-definer": "higress"}},
                       "spec": {"defaultConfig": {"providers": [
                           {"id": "stored", "type": "openai", "apiTokens": [STORED_TOKEN], "nested": deep}]}}}),
        )
        .unwrap();
    // A deadline long enough that an error retried until it would show: results must come well before.
    const EVENT_DEADLINE: Duration = Duration::from_secs(30);
    let deadline = EVENT_DEADLINE.as_secs().to_string();
    let mut worker = fixture.worker(
        "w",
        "debug",
        &["--event-deadline-secs", &deadline, "--retry-deadline-secs", "1"],
    );
    for (i, id) in ["inline-1", "inline-2"].into_iter().enumerate() {
        let model = format!("inline{}", i + 1);
        let sent = tokio::time::Instant::now();
        fixture
            .produce(&model, &event(id, DEPLOYED, inline(&model, 1)), &[])
            .await;
        let results = wait_for(&fixture, &mut worker, &[id]).await;
        let result = results.iter().rev().find(|r| r["inputEventId"] == id).unwrap();
        let error = &result["error"];
        assert_eq!(
            (&result["outcome"], &error["reason"], &error["retryable"]),
            (&json!("rejected"), &json!("unreadable"), &json!(false)),
            "{id}: {result}"
        );
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("WasmPlugin/ai-proxy.internal"), "{id}: {message}");
        // The first event may wait for the worker to join its group; the second is refused at once.
        if i == 1 {
            assert!(
                sent.elapsed() < EVENT_DEADLINE / 2,
                "{id}: its result took {:?}, as if retried",
                sent.elapsed()
            );
        }
    }
    let found = leaks(
        &fixture,
        &worker,
        &needles(&[STORED_TOKEN]),
        &needles(&[INLINE_TOKEN, INLINE_CREDENTIAL]),
    )
    .await;
    assert!(found.is_empty(), "{} leaks:\n{}", found.len(), found.join("\n"));
    assert!(worker.terminate().success());
}
