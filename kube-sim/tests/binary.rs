//! The `kube-sim` binary and its `/_sim` control API, driven from outside the process.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Request;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

/// The binary as a child process, killed when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary, waits for the URL it prints, and returns a client built
/// from the kubeconfig it wrote.
async fn start(dir: &std::path::Path) -> (Server, String, Client) {
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--port", "0", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .args(["--namespace", "team-a", "--namespace", "higress-system"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kube-sim binary starts");
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let server = Server(child);
    let client = common::client(&std::fs::read_to_string(&kubeconfig).unwrap(), false).await;
    (server, url.trim().to_string(), client)
}

async fn control(client: &Client, method: &str, path: &str, body: Value) -> Result<String, kube::Error> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    client.request_text(request).await
}

fn api_code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn configmap(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm
}

#[tokio::test]
async fn binary_serves_with_its_kubeconfig_and_extra_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, client) = start(dir.path()).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["default", "kube-system", "higress-system", "team-a"] {
        namespaces.get(name).await.unwrap();
    }
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let created = cms.create(&PostParams::default(), &configmap("a")).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("higress-system"));
}

#[tokio::test]
async fn control_api_switches_faults_on_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _, client) = start(dir.path()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &configmap("a")).await.unwrap();

    let fault = json!({"n": 1, "status": 503, "method": "get", "pathContains": "/configmaps/a"});
    control(&client, "POST", "/_sim/faults/fail-next", fault).await.unwrap();
    assert_eq!(api_code(cms.get("a").await), 503);
    cms.get("a").await.unwrap();

    let conflict = json!({"n": 1, "resource": "configmaps", "name": "a"});
    control(&client, "POST", "/_sim/faults/conflict-next", conflict)
        .await
        .unwrap();
    assert_eq!(
        api_code(cms.replace("a", &PostParams::default(), &configmap("a")).await),
        409
    );

    control(
        &client,
        "POST",
        "/_sim/faults/drop-next",
        json!({"n": 1, "method": "GET"}),
    )
    .await
    .unwrap();
    assert!(!matches!(cms.get("a").await, Ok(_) | Err(kube::Error::Api(_))));

    control(
        &client,
        "POST",
        "/_sim/faults/lose-answer-next",
        json!({"n": 1, "method": "POST", "pathContains": "configmaps"}),
    )
    .await
    .unwrap();
    let lost = cms.create(&PostParams::default(), &configmap("lost")).await;
    assert!(!matches!(lost, Ok(_) | Err(kube::Error::Api(_))), "{lost:?}");
    assert!(
        cms.get_opt("lost").await.unwrap().is_some(),
        "served, then the answer was lost"
    );

    let rate = json!({"probability": 1.0, "status": 500, "method": "DELETE"});
    control(&client, "PUT", "/_sim/faults/error-rate", rate).await.unwrap();
    assert_eq!(api_code(cms.delete("a", &DeleteParams::default()).await), 500);
    let impossible = json!({"probability": 2.0, "status": 500});
    assert_eq!(
        api_code(control(&client, "PUT", "/_sim/faults/error-rate", impossible).await),
        400
    );

    control(
        &client,
        "PUT",
        "/_sim/faults/latency",
        json!({"baseMs": 120, "delayReads": true}),
    )
    .await
    .unwrap();
    let started = Instant::now();
    cms.get("a").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(120));

    control(&client, "DELETE", "/_sim/faults", json!({})).await.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn control_api_reports_counters_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _, client) = start(dir.path()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    control(&client, "DELETE", "/_sim/counters", json!({})).await.unwrap();
    cms.create(&PostParams::default(), &configmap("a")).await.unwrap();
    cms.get("a").await.unwrap();

    let counters: Value =
        serde_json::from_str(&control(&client, "GET", "/_sim/counters", json!({})).await.unwrap()).unwrap();
    assert_eq!(counters["total"], 2);
    assert_eq!(
        counters["requests"],
        json!([{"verb": "create", "resource": "configmaps", "count": 1},
               {"verb": "get", "resource": "configmaps", "count": 1}])
    );

    let audit: Value = serde_json::from_str(&control(&client, "GET", "/_sim/audit", json!({})).await.unwrap()).unwrap();
    assert_eq!(audit[0]["verb"], "create");
    assert_eq!(audit[0]["namespace"], "higress-system");
    assert!(audit[0]["resourceVersion"].is_string());
    control(&client, "DELETE", "/_sim/audit", json!({})).await.unwrap();
    let audit = control(&client, "GET", "/_sim/audit", json!({})).await.unwrap();
    assert_eq!(audit, "[]");
}
