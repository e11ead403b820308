//! Failure injection, request counters and the audit log, seen through kube-rs.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{header, Request, StatusCode};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_sim::{AuditEntry, FaultSpec, Method, Sim};
use serde_json::json;

const NS: &str = "higress-system";

/// A sim holding ConfigMap `a`, and a client without kube-rs's own retries.
async fn setup() -> (Sim, Api<ConfigMap>) {
    let sim = kube_sim::start().await;
    let client = common::client(&sim.kubeconfig_yaml(), false).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    cms.create(&PostParams::default(), &configmap("a", "1")).await.unwrap();
    (sim, cms)
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.data = Some(BTreeMap::from([("k".to_string(), value.to_string())]));
    cm
}

fn status_code(result: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason),
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

#[tokio::test]
async fn next_n_failures_then_success() {
    let (sim, cms) = setup().await;
    sim.faults()
        .fail_next(2, FaultSpec::new(503).for_method(Method::GET).for_path("/configmaps/a"));
    assert_eq!(status_code(cms.get("a").await), (503, "ServiceUnavailable".into()));
    cms.list(&ListParams::default()).await.expect("the path does not match");
    assert_eq!(status_code(cms.get("a").await), (503, "ServiceUnavailable".into()));
    cms.get("a").await.expect("the failures are used up");

    sim.faults().fail_next(1, FaultSpec::new(500));
    let written = cms.replace("a", &PostParams::default(), &configmap("a", "2")).await;
    assert_eq!(status_code(written), (500, "InternalError".into()));
    assert_eq!(
        sim.get("configmaps", NS, "a").unwrap()["data"]["k"],
        "1",
        "nothing written"
    );
}

#[tokio::test]
async fn kube_rs_retries_injected_503s_by_default() {
    let sim = kube_sim::start().await;
    let client = common::client(&sim.kubeconfig_yaml(), true).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    sim.faults().fail_next(2, FaultSpec::new(503));
    cms.list(&ListParams::default())
        .await
        .expect("retried until the failures ran out");
    assert_eq!(sim.counters().get("list", "configmaps"), 3);
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let (sim, cms) = setup().await;
    sim.faults().fail_next(2, FaultSpec::new(429).with_retry_after(7));
    match cms.get("a").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (429, "TooManyRequests"));
            assert_eq!(status.details.unwrap().retry_after_seconds, 7);
        }
        other => panic!("expected 429, got {other:?}"),
    }

    let sim_client = common::client(&sim.kubeconfig_yaml(), false).await;
    let request = Request::get(format!("/api/v1/namespaces/{NS}/configmaps/a"))
        .body(Vec::new())
        .unwrap();
    let response = sim_client.send(request.map(Into::into)).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "7");
}

#[tokio::test]
async fn forced_conflict_fails_a_fresh_update_until_the_client_rereads() {
    let (sim, cms) = setup().await;
    let fresh = cms.get("a").await.unwrap();
    sim.faults().conflict_next("configmaps", "a", 1);
    let mut update = fresh.clone();
    update.data = configmap("a", "2").data;
    let (code, reason) = status_code(cms.replace("a", &PostParams::default(), &update).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    // As if another writer had won: the version the client holds is stale now.
    assert_eq!(
        status_code(cms.replace("a", &PostParams::default(), &update).await).0,
        409
    );

    let mut reread = cms.get("a").await.unwrap();
    assert_ne!(reread.metadata.resource_version, fresh.metadata.resource_version);
    reread.data = configmap("a", "2").data;
    cms.replace("a", &PostParams::default(), &reread).await.unwrap();

    sim.faults().conflict_next("configmaps", "a", 1);
    let patch = Patch::Merge(json!({"data": {"k": "3"}}));
    assert_eq!(
        status_code(cms.patch("a", &PatchParams::default(), &patch).await).0,
        409
    );
    cms.patch("a", &PatchParams::default(), &patch).await.unwrap();
}

#[tokio::test]
async fn dropped_connection_is_a_transport_error() {
    let (sim, cms) = setup().await;
    sim.faults().drop_next(1, Some(Method::GET), Some("/configmaps/a"));
    match cms.get("a").await {
        Err(kube::Error::Api(status)) => panic!("expected no response at all, got {status:?}"),
        // kube-rs reports hyper's IncompleteMessage: the request went out, nothing came back.
        Err(transport) => {
            let description = format!("{transport:?}");
            assert!(matches!(transport, kube::Error::Service(_)), "{description}");
            assert!(description.contains("IncompleteMessage"), "{description}");
        }
        Ok(cm) => panic!("expected the connection to be dropped, got {cm:?}"),
    }
    cms.get("a").await.expect("only one request is dropped");
    assert_eq!(sim.counters().get("get", "configmaps"), 2, "the dropped request counts");
}

#[tokio::test]
async fn a_lost_answer_is_a_transport_error_after_the_write_is_stored() {
    let (sim, cms) = setup().await;
    sim.faults()
        .lose_answer_next(1, Some(Method::POST), Some("/configmaps"));
    assert_eq!(sim.faults().pending(), 1);
    match cms.create(&PostParams::default(), &configmap("lost", "1")).await {
        Err(kube::Error::Api(status)) => panic!("expected no response at all, got {status:?}"),
        Err(transport) => assert!(format!("{transport:?}").contains("IncompleteMessage"), "{transport:?}"),
        Ok(cm) => panic!("expected the answer to be lost, got {cm:?}"),
    }
    assert_eq!(sim.faults().pending(), 0);
    let stored = cms.get("lost").await.expect("the write was stored");
    assert_eq!(stored.data, configmap("lost", "1").data);
    let audit: Vec<(String, String)> = sim.audit().into_iter().map(|e| (e.verb, e.name)).collect();
    assert!(audit.contains(&("create".to_string(), "lost".to_string())), "{audit:?}");
    // A dropped request, by contrast, is never served.
    sim.faults().drop_next(1, Some(Method::POST), Some("/configmaps"));
    assert!(cms
        .create(&PostParams::default(), &configmap("dropped", "1"))
        .await
        .is_err());
    assert!(cms.get_opt("dropped").await.unwrap().is_none());
}

#[tokio::test]
async fn latency_delays_every_request_by_at_least_the_base() {
    let (sim, cms) = setup().await;
    let base = Duration::from_millis(150);
    sim.faults().set_latency(base, Duration::from_millis(50));
    let started = Instant::now();
    cms.get("a").await.unwrap();
    assert!(started.elapsed() >= base, "{:?}", started.elapsed());

    sim.faults().set_delay_reads(false);
    let started = Instant::now();
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}})))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= base,
        "writes stay delayed: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn error_rate_applies_to_matching_requests_until_cleared() {
    let (sim, cms) = setup().await;
    sim.faults()
        .set_error_rate(1.0, FaultSpec::new(503).for_method(Method::PUT));
    for _ in 0..3 {
        let result = cms.replace("a", &PostParams::default(), &configmap("a", "2")).await;
        assert_eq!(status_code(result).0, 503);
    }
    cms.get("a").await.expect("reads do not match");
    sim.faults().clear();
    cms.replace("a", &PostParams::default(), &configmap("a", "2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn counters_count_requests_by_verb_and_resource() {
    let (sim, cms) = setup().await;
    sim.reset_counters();
    assert_eq!(sim.counters().total, 0);
    cms.get("a").await.unwrap();
    cms.get("a").await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &configmap("b", "1")).await.unwrap();
    cms.replace("b", &PostParams::default(), &configmap("b", "2"))
        .await
        .unwrap();
    cms.patch("b", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "3"}})))
        .await
        .unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    let _ = cms.get("b").await.unwrap_err();

    let counters = sim.counters();
    for (verb, count) in [
        ("get", 3),
        ("list", 1),
        ("create", 1),
        ("update", 1),
        ("patch", 1),
        ("delete", 1),
    ] {
        assert_eq!(counters.get(verb, "configmaps"), count, "{verb}");
    }
    assert_eq!(counters.get("get", "secrets"), 0);
    assert_eq!(counters.total, 8);
    assert_eq!(counters.requests.values().sum::<u64>(), 8);
    sim.reset_counters();
    assert!(sim.counters().requests.is_empty());
}

#[tokio::test]
async fn audit_lists_successful_writes() {
    let (sim, cms) = setup().await;
    let created = sim.audit();
    assert_eq!(created.len(), 1);
    assert_eq!((created[0].verb.as_str(), created[0].name.as_str()), ("create", "a"));
    sim.clear_audit();

    let updated = cms
        .replace("a", &PostParams::default(), &configmap("a", "2"))
        .await
        .unwrap();
    let _ = cms
        .replace("missing", &PostParams::default(), &configmap("missing", "2"))
        .await
        .unwrap_err();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let audit = sim.audit();
    let updated_version = updated.metadata.resource_version.unwrap();
    let deleted_version = (updated_version.parse::<u64>().unwrap() + 1).to_string();
    let entry = |verb: &str, resource_version: &str| AuditEntry {
        verb: verb.into(),
        resource: "configmaps".into(),
        namespace: NS.into(),
        name: "a".into(),
        resource_version: resource_version.into(),
    };
    assert_eq!(
        audit,
        [entry("update", &updated_version), entry("delete", &deleted_version)]
    );
    sim.clear_audit();
    assert!(sim.audit().is_empty());
}

#[tokio::test]
async fn dropping_the_sim_stops_the_server() {
    let sim = kube_sim::start().await;
    let client: Client = common::client(&sim.kubeconfig_yaml(), false).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    // A list always succeeds on a running server: only a stopped one makes it fail.
    cms.list(&ListParams::default()).await.unwrap();
    drop(sim);
    // The abort takes effect once the runtime polls the server task: poll until the
    // connection fails (not an API answer), within a short deadline.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match cms.list(&ListParams::default()).await {
            Err(error) if !matches!(error, kube::Error::Api(_)) => break,
            answer => assert!(
                Instant::now() < deadline,
                "the server still answers after the Sim was dropped: {answer:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
