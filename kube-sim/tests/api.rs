//! The API server semantics kube-sim reproduces, seen through kube-rs.

mod common;

use std::collections::BTreeMap;

use axum::http::{header, Request, StatusCode};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::core::Status;
use kube::{Api, Client};
use serde_json::{json, Value};

const NS: &str = "higress-system";

async fn setup() -> (kube_sim::Sim, Client) {
    let sim = kube_sim::start().await;
    let client = common::client(&sim.kubeconfig_yaml(), false).await;
    (sim, client)
}

fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let to_map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.metadata.labels = Some(to_map(labels)).filter(|l| !l.is_empty());
    cm.data = Some(to_map(data));
    cm
}

fn wasm_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("extensions.higress.io", "v1alpha1", "WasmPlugin");
    ApiResource::from_gvk_with_plural(&gvk, "wasmplugins")
}

fn wasmplugin(name: &str, spec: Value) -> DynamicObject {
    DynamicObject::new(name, &wasm_resource()).data(json!({ "spec": spec }))
}

fn ingress(name: &str, host: &str) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"rules": [{"host": host}]},
    }))
    .unwrap()
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn version_of(meta: &kube::api::ObjectMeta) -> u64 {
    meta.resource_version.as_deref().unwrap().parse().unwrap()
}

/// A raw request, for what kube-rs does not expose: status line, headers, body.
async fn raw(client: &Client, request: Request<Vec<u8>>) -> (StatusCode, header::HeaderMap, Value) {
    let response = client.send(request.map(Into::into)).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect_bytes().await.unwrap();
    (parts.status, parts.headers, serde_json::from_slice(&body).unwrap())
}

fn get(uri: &str) -> Request<Vec<u8>> {
    Request::get(uri).body(Vec::new()).unwrap()
}

#[tokio::test]
async fn kubeconfig_context_namespace_is_higress_system() {
    let (_sim, client) = setup().await;
    assert_eq!(client.default_namespace(), NS);
    let namespaces: Api<Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|ns| ns.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["default", "higress-system", "kube-system"]);
}

#[tokio::test]
async fn create_fills_in_server_fields_and_refuses_duplicates() {
    let (sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let created = cms
        .create(&PostParams::default(), &configmap("a", &[], &[("k", "v")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.namespace.as_deref(), Some(NS));
    assert_eq!(meta.generation, None, "ConfigMaps have no generation");
    assert_eq!(sim.get("configmaps", NS, "a").unwrap()["data"]["k"], "v");

    let status = api_error(cms.create(&PostParams::default(), &configmap("a", &[], &[])).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(status.message, "configmaps \"a\" already exists");
    let details = status.details.unwrap();
    assert_eq!((details.name.as_str(), details.kind.as_str()), ("a", "configmaps"));
}

#[tokio::test]
async fn create_in_a_missing_namespace_is_not_found() {
    let (_sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "nowhere");
    let status = api_error(cms.create(&PostParams::default(), &configmap("a", &[], &[])).await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, "namespaces \"nowhere\" not found");
    assert_eq!(status.details.unwrap().kind, "namespaces");
}

#[tokio::test]
async fn create_needs_a_name_and_the_path_namespace() {
    let (_sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let nameless = ConfigMap::default();
    let status = api_error(cms.create(&PostParams::default(), &nameless).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status.message.contains("metadata.name: Required value"),
        "{}",
        status.message
    );

    let mut elsewhere = configmap("b", &[], &[]);
    elsewhere.metadata.namespace = Some("default".into());
    let status = api_error(cms.create(&PostParams::default(), &elsewhere).await);
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));

    let status = api_error(
        cms.create(&PostParams::default(), &configmap("Not_A_Name", &[], &[]))
            .await,
    );
    assert_eq!(status.code, 422);
}

#[tokio::test]
async fn generate_name_makes_a_unique_name() {
    let (_sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let mut cm = ConfigMap::default();
    cm.metadata.generate_name = Some("gen-".into());
    let first = cms.create(&PostParams::default(), &cm).await.unwrap();
    let second = cms.create(&PostParams::default(), &cm).await.unwrap();
    let first = first.metadata.name.unwrap();
    assert!(first.starts_with("gen-") && first.len() == "gen-".len() + 5, "{first}");
    assert_ne!(Some(first), second.metadata.name);
}

#[tokio::test]
async fn not_found_is_the_api_servers_status_object() {
    let (_sim, client) = setup().await;
    let (code, headers, body) = raw(&client, get(&format!("/api/v1/namespaces/{NS}/configmaps/x"))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        body,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message":"configmaps \"x\" not found","reason":"NotFound",
               "details":{"name":"x","kind":"configmaps"},"code":404})
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let status = api_error(cms.get("x").await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(cms.get_opt("x").await.unwrap(), None);

    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), NS);
    let details = api_error(ingresses.get("y").await).details.unwrap();
    assert_eq!(
        (details.group.as_str(), details.kind.as_str()),
        ("networking.k8s.io", "ingresses")
    );

    let plugins: Api<DynamicObject> = Api::namespaced_with(client, NS, &wasm_resource());
    let status = api_error(plugins.get("z").await);
    assert_eq!(status.message, "wasmplugins.extensions.higress.io \"z\" not found");
    assert_eq!(status.details.unwrap().group, "extensions.higress.io");
}

#[tokio::test]
async fn list_selects_by_label() {
    let (sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    for (name, labels) in [
        ("d", vec![("app", "gw"), ("tier", "edge")]),
        ("b", vec![("app", "gw")]),
        ("c", vec![("app", "console"), ("tier", "core")]),
        ("a", vec![]),
    ] {
        cms.create(&PostParams::default(), &configmap(name, &labels, &[]))
            .await
            .unwrap();
    }
    let select = |selector: &'static str| {
        let cms = cms.clone();
        async move {
            let list = cms.list(&ListParams::default().labels(selector)).await.unwrap();
            list.items
                .into_iter()
                .map(|cm| cm.metadata.name.unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(select("").await, ["a", "b", "c", "d"], "sorted by name");
    assert_eq!(select("app=gw").await, ["b", "d"]);
    assert_eq!(select("app==gw").await, ["b", "d"]);
    assert_eq!(select("app!=gw").await, ["a", "c"]);
    assert_eq!(select("tier in (edge,core)").await, ["c", "d"]);
    assert_eq!(select("tier notin (edge)").await, ["a", "b", "c"]);
    assert_eq!(select("tier").await, ["c", "d"]);
    assert_eq!(select("!tier").await, ["a", "b"]);
    assert_eq!(select("app=gw,tier").await, ["d"]);
    assert_eq!(select("app in (gw),!tier").await, ["b"]);

    let status = api_error(cms.list(&ListParams::default().labels("app in gw")).await);
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));

    let (_, _, list) = raw(
        &client,
        get(&format!("/api/v1/namespaces/{NS}/configmaps?labelSelector=app%3Dgw")),
    )
    .await;
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["apiVersion"], "v1");
    let last_write = sim.get("configmaps", NS, "a").unwrap();
    let revision = last_write["metadata"]["resourceVersion"].clone();
    assert_eq!(
        list["metadata"]["resourceVersion"], revision,
        "the current global resourceVersion"
    );
    for item in list["items"].as_array().unwrap() {
        assert_eq!(
            (item["apiVersion"].as_str(), item["kind"].as_str()),
            (Some("v1"), Some("ConfigMap"))
        );
    }
}

#[tokio::test]
async fn list_across_namespaces_and_by_field() {
    let (_sim, client) = setup().await;
    for ns in ["default", NS] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for name in ["y", "x"] {
            cms.create(&PostParams::default(), &configmap(name, &[], &[]))
                .await
                .unwrap();
        }
    }
    let all: Api<ConfigMap> = Api::all(client);
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|cm| format!("{}/{}", cm.metadata.namespace.unwrap(), cm.metadata.name.unwrap()))
            .collect()
    };
    let everything = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        names(everything),
        ["default/x", "default/y", "higress-system/x", "higress-system/y"]
    );
    let named = all
        .list(&ListParams::default().fields("metadata.name=x"))
        .await
        .unwrap();
    assert_eq!(names(named), ["default/x", "higress-system/x"]);
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_conflicts() {
    let (_sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let created = cms
        .create(&PostParams::default(), &configmap("a", &[], &[("k", "1")]))
        .await
        .unwrap();
    let mut first = created.clone();
    first.data = Some(BTreeMap::from([("k".into(), "2".into())]));
    let replaced = cms.replace("a", &PostParams::default(), &first).await.unwrap();
    assert!(version_of(&replaced.metadata) > version_of(&created.metadata));

    let status = api_error(cms.replace("a", &PostParams::default(), &created).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
}

#[tokio::test]
async fn built_in_types_accept_an_unconditional_replace() {
    let (_sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let created = cms
        .create(&PostParams::default(), &configmap("a", &[], &[("k", "1")]))
        .await
        .unwrap();
    let replaced = cms
        .replace("a", &PostParams::default(), &configmap("a", &[], &[("k", "2")]))
        .await
        .unwrap();
    assert_eq!(replaced.data.unwrap()["k"], "2");
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_eq!(
        replaced.metadata.creation_timestamp,
        created.metadata.creation_timestamp
    );

    let ingresses: Api<Ingress> = Api::namespaced(client, NS);
    let created = ingresses
        .create(&PostParams::default(), &ingress("i", "a.example"))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let same_spec = ingresses
        .replace("i", &PostParams::default(), &ingress("i", "a.example"))
        .await
        .unwrap();
    assert_eq!(same_spec.metadata.generation, Some(1));
    assert_eq!(
        same_spec.metadata.resource_version, created.metadata.resource_version,
        "nothing changed"
    );
    let new_spec = ingresses
        .replace("i", &PostParams::default(), &ingress("i", "b.example"))
        .await
        .unwrap();
    assert_eq!(new_spec.metadata.generation, Some(2));

    let status = api_error(
        ingresses
            .replace("missing", &PostParams::default(), &ingress("missing", "c"))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn custom_resources_need_a_resource_version_to_replace() {
    let (_sim, client) = setup().await;
    let plugins: Api<DynamicObject> = Api::namespaced_with(client, NS, &wasm_resource());
    let created = plugins
        .create(&PostParams::default(), &wasmplugin("p", json!({"priority": 1})))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    let status = api_error(
        plugins
            .replace("p", &PostParams::default(), &wasmplugin("p", json!({"priority": 2})))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        // As a real kube-apiserver names a custom resource here (tests/recorded.rs).
        "wasmplugins.extensions.higress.io \"p\" is invalid: metadata.resourceVersion: \
         Invalid value: 0x0: must be specified for an update"
    );

    let mut update = created.clone();
    update.data["spec"]["priority"] = 2.into();
    update.data["status"] = json!({"ignored": "status is a subresource"});
    let updated = plugins.replace("p", &PostParams::default(), &update).await.unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(updated.data["spec"]["priority"], 2);
    assert!(updated.data.get("status").is_none());
    assert_eq!(updated.metadata.uid, created.metadata.uid);
}

#[tokio::test]
async fn managed_fields_follow_the_field_manager() {
    let (_sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let as_manager = |name: &str| PostParams {
        field_manager: Some(name.to_string()),
        ..PostParams::default()
    };
    let created = cms
        .create(&as_manager("worker"), &configmap("a", &[("app", "x")], &[("k", "v")]))
        .await
        .unwrap();
    let mut edited = created.clone();
    edited.data.as_mut().unwrap().insert("k".into(), "console".into());
    edited.metadata.managed_fields = None;
    let edited = cms.replace("a", &as_manager("console"), &edited).await.unwrap();
    let mut entries: Vec<(String, String, Value)> = edited
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|e| {
            assert_eq!(
                (e.api_version.as_deref(), e.fields_type.as_deref()),
                (Some("v1"), Some("FieldsV1"))
            );
            (e.manager.unwrap(), e.operation.unwrap(), e.fields_v1.unwrap().0)
        })
        .collect();
    // The server sorts by time, then manager; both may write in the same second.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    // The console took over data.k; the worker keeps the map it made and the label.
    assert_eq!(
        entries,
        [
            (
                "console".to_string(),
                "Update".to_string(),
                json!({"f:data": {"f:k": {}}})
            ),
            (
                "worker".to_string(),
                "Update".to_string(),
                json!({"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
            ),
        ]
    );
}

#[tokio::test]
async fn merge_patch() {
    let (_sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    cms.create(
        &PostParams::default(),
        &configmap("a", &[], &[("keep", "1"), ("drop", "2")]),
    )
    .await
    .unwrap();
    let patch = json!({"metadata": {"labels": {"patched": "yes"}}, "data": {"drop": null, "new": "3"}});
    let patched = cms
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        patched.data.unwrap(),
        BTreeMap::from([("keep".into(), "1".into()), ("new".into(), "3".into())])
    );
    assert_eq!(patched.metadata.labels.unwrap()["patched"], "yes");

    // Strategic merge patch is applied as a merge patch for built-in types...
    let strategic = json!({"data": {"keep": "4"}});
    let patched = cms
        .patch("a", &PatchParams::default(), &Patch::Strategic(&strategic))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["keep"], "4");

    // ...and refused for custom resources, as by a real CRD.
    let plugins: Api<DynamicObject> = Api::namespaced_with(client, NS, &wasm_resource());
    plugins
        .create(
            &PostParams::default(),
            &wasmplugin("p", json!({"priority": 1, "url": "oci://x"})),
        )
        .await
        .unwrap();
    let patched = plugins
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"priority": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"], json!({"priority": 5, "url": "oci://x"}));
    assert_eq!(patched.metadata.generation, Some(2));
    let status = api_error(
        plugins
            .patch("p", &PatchParams::default(), &Patch::Strategic(json!({})))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (415, "UnsupportedMediaType"));
}

fn json_patch(name: &str, operations: Value) -> Request<Vec<u8>> {
    Request::patch(format!("/api/v1/namespaces/{NS}/configmaps/{name}"))
        .header(header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(&operations).unwrap())
        .unwrap()
}

#[tokio::test]
async fn json_patch_applies_and_a_failing_test_is_invalid() {
    let (sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    cms.create(&PostParams::default(), &configmap("a", &[], &[("k", "1")]))
        .await
        .unwrap();
    let patched: ConfigMap = client
        .request(json_patch(
            "a",
            json!([
                {"op": "test", "path": "/data/k", "value": "1"},
                {"op": "replace", "path": "/data/k", "value": "2"},
                {"op": "add", "path": "/data/n", "value": "3"},
            ]),
        ))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "2");

    let failing = json!([
        {"op": "test", "path": "/data/k", "value": "1"},
        {"op": "replace", "path": "/data/k", "value": "9"},
    ]);
    let status = api_error(client.request::<ConfigMap>(json_patch("a", failing)).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let cause = &status.details.unwrap().causes[0];
    assert_eq!(cause.message, "testing value /data/k failed: test failed");
    assert_eq!(
        sim.get("configmaps", NS, "a").unwrap()["data"]["k"],
        "2",
        "nothing applied"
    );
}

#[tokio::test]
async fn patch_with_a_stale_resource_version_conflicts_and_missing_is_not_found() {
    let (_sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let created = cms
        .create(&PostParams::default(), &configmap("a", &[], &[]))
        .await
        .unwrap();
    let version = created.metadata.resource_version.unwrap();
    let current = json!({"metadata": {"resourceVersion": version}, "data": {"k": "1"}});
    cms.patch("a", &PatchParams::default(), &Patch::Merge(&current))
        .await
        .unwrap();

    let stale = json!({"metadata": {"resourceVersion": version}, "data": {"k": "2"}});
    let status = api_error(cms.patch("a", &PatchParams::default(), &Patch::Merge(&stale)).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let status = api_error(cms.patch("zz", &PatchParams::default(), &Patch::Merge(json!({}))).await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn delete_returns_the_object_then_not_found() {
    let (sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    let created = cms
        .create(&PostParams::default(), &configmap("a", &[], &[]))
        .await
        .unwrap();

    let stale = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let status = api_error(cms.delete("a", &stale).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    let deleted = deleted.left().expect("the deleted object");
    assert_eq!(deleted.metadata.uid, created.metadata.uid);
    assert_eq!(sim.get("configmaps", NS, "a"), None);
    let status = api_error(cms.delete("a", &DeleteParams::default()).await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn resource_version_is_global_and_increases_with_every_write() {
    let (sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let plugins: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &wasm_resource());
    let mut versions = Vec::new();
    let cm = cms
        .create(&PostParams::default(), &configmap("a", &[], &[]))
        .await
        .unwrap();
    versions.push(version_of(&cm.metadata));
    let plugin = plugins
        .create(&PostParams::default(), &wasmplugin("p", json!({})))
        .await
        .unwrap();
    versions.push(version_of(&plugin.metadata));
    let cm = cms
        .replace("a", &PostParams::default(), &configmap("a", &[], &[("k", "v")]))
        .await
        .unwrap();
    versions.push(version_of(&cm.metadata));
    let patch = Patch::Merge(json!({"spec": {"priority": 3}}));
    let plugin = plugins.patch("p", &PatchParams::default(), &patch).await.unwrap();
    versions.push(version_of(&plugin.metadata));
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let after_delete = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version;
    versions.push(after_delete.unwrap().parse().unwrap());

    assert!(versions.windows(2).all(|pair| pair[1] == pair[0] + 1), "{versions:?}");
    let audited: Vec<u64> = sim
        .audit()
        .iter()
        .map(|e| e.resource_version.parse().unwrap())
        .collect();
    assert_eq!(audited, versions);
}

#[tokio::test]
async fn racing_writers_one_wins_and_the_other_retries_after_a_conflict() {
    let (_sim, first_client) = setup().await;
    let second_client = first_client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(first_client.clone(), NS);
    cms.create(&PostParams::default(), &configmap("shared", &[], &[]))
        .await
        .unwrap();

    let writer = |client: Client, key: &'static str| async move {
        let cms: Api<ConfigMap> = Api::namespaced(client, NS);
        let mut cm = cms.get("shared").await.unwrap();
        cm.data.get_or_insert_default().insert(key.into(), "written".into());
        (cms, cm)
    };
    let ((cms_a, cm_a), (cms_b, cm_b)) = tokio::join!(writer(first_client, "a"), writer(second_client, "b"));
    assert_eq!(cm_a.metadata.resource_version, cm_b.metadata.resource_version);
    let params = PostParams::default();
    let (a, b) = tokio::join!(
        cms_a.replace("shared", &params, &cm_a),
        cms_b.replace("shared", &params, &cm_b),
    );
    let (loser_api, loser_key, loser_result) = match (&a, &b) {
        (Ok(_), Err(_)) => (cms_b, "b", b),
        (Err(_), Ok(_)) => (cms_a, "a", a),
        _ => panic!("exactly one writer must win: {a:?} / {b:?}"),
    };
    assert_eq!(api_error(loser_result).code, 409);

    let mut reread = loser_api.get("shared").await.unwrap();
    reread
        .data
        .get_or_insert_default()
        .insert(loser_key.into(), "written".into());
    let merged = loser_api
        .replace("shared", &PostParams::default(), &reread)
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap().len(), 2, "both writes survive");
}

#[tokio::test]
async fn watch_is_refused_with_a_clear_status() {
    let (_sim, client) = setup().await;
    let (code, _, status) = raw(&client, get(&format!("/api/v1/namespaces/{NS}/configmaps?watch=true"))).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(status["reason"], "MethodNotAllowed");
    assert!(status["message"].as_str().unwrap().contains("watch is not supported"));
}

#[tokio::test]
async fn unknown_paths_and_media_types() {
    let (_sim, client) = setup().await;
    let (code, _, status) = raw(&client, get("/apis/apps/v1/namespaces/default/deployments")).await;
    assert_eq!((code, &status["reason"]), (StatusCode::NOT_FOUND, &json!("NotFound")));
    let (code, _, _) = raw(&client, get("/openapi/v2")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    let yaml = Request::post(format!("/api/v1/namespaces/{NS}/configmaps"))
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(b"metadata: {name: a}".to_vec())
        .unwrap();
    let (code, _, status) = raw(&client, yaml).await;
    assert_eq!(
        (code, &status["reason"]),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, &json!("UnsupportedMediaType"))
    );
}

#[tokio::test]
async fn discovery_is_enough_for_kube_rs() {
    let (_sim, client) = setup().await;
    assert_eq!(client.apiserver_version().await.unwrap().minor, "33");
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (resource, capabilities) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("networking.higress.io", "v1", "McpBridge"))
        .expect("McpBridge is discovered");
    assert_eq!(resource.plural, "mcpbridges");
    assert_eq!(capabilities.scope, kube::discovery::Scope::Namespaced);
    assert!(discovery.has_group("networking.istio.io"));

    // kubectl asks for aggregated discovery first; plain JSON makes it fall back.
    let aggregated = Request::get("/apis")
        .header(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let (code, headers, groups) = raw(&client, aggregated).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(groups["kind"], "APIGroupList");
    let core = client.list_core_api_resources("v1").await.unwrap();
    let configmaps = core.resources.iter().find(|r| r.name == "configmaps").unwrap();
    assert_eq!(configmaps.short_names.as_deref(), Some(&["cm".to_string()][..]));
}

#[tokio::test]
async fn preloaded_objects_are_served_but_not_counted() {
    let (sim, client) = setup().await;
    let stored = sim
        .insert(json!({
            "apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "preloaded", "namespace": NS}, "spec": {"priority": 7},
        }))
        .unwrap();
    assert_eq!(stored["metadata"]["generation"], 1);
    let duplicate = sim.insert(stored.clone()).unwrap_err();
    assert_eq!(duplicate.reason, "AlreadyExists");
    let mut copy = stored.clone();
    copy["metadata"]["name"] = "copy".into();
    let error = sim.insert(copy).unwrap_err();
    assert_eq!(
        error.message,
        "resourceVersion should not be set on objects to be created"
    );
    let no_namespace = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    assert_eq!(sim.insert(no_namespace).unwrap_err().code, 400);

    let plugins: Api<DynamicObject> = Api::namespaced_with(client, NS, &wasm_resource());
    let served = plugins.get("preloaded").await.unwrap();
    assert_eq!(served.data["spec"]["priority"], 7);
    assert_eq!(sim.counters().get("get", "wasmplugins"), 1);
    assert_eq!(sim.counters().get("create", "wasmplugins"), 0);
    assert!(sim.audit().is_empty());
    assert_eq!(
        sim.get("wasmplugins.extensions.higress.io", NS, "preloaded").unwrap(),
        stored
    );
    assert_eq!(sim.list("wasmplugins", "").len(), 1);
    assert_eq!(sim.list("wasmplugins", "default").len(), 0);
    assert!(sim.get("namespaces", "", "kube-system").is_some());
}

#[tokio::test]
#[should_panic(expected = "kube-sim does not serve \"deployments\"")]
async fn reading_an_unserved_resource_directly_panics() {
    let sim = kube_sim::start().await;
    sim.get("deployments", NS, "x");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let (sim, client) = setup().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    cms.list(&ListParams::default()).await.unwrap();
    sim.shutdown().await;
    let error = cms.list(&ListParams::default()).await.unwrap_err();
    assert!(!matches!(error, kube::Error::Api(_)), "{error:?}");
}

#[tokio::test]
async fn metadata_only_reads_answer_partial_object_metadata() {
    let (sim, client) = setup().await;
    let plugins: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &wasm_resource());
    let written = plugins
        .create(
            &PostParams::default(),
            &wasmplugin(
                "key-auth.internal",
                json!({"defaultConfig": {"consumers": [{"name": "c"}]}}),
            ),
        )
        .await
        .unwrap();
    // kube-rs's own metadata calls: the object's metadata, none of its spec.
    let got = plugins.get_metadata("key-auth.internal").await.unwrap();
    assert_eq!(got.metadata.resource_version, written.metadata.resource_version);
    assert_eq!(got.metadata.managed_fields, written.metadata.managed_fields);
    let listed = plugins.list_metadata(&ListParams::default()).await.unwrap();
    let versions: Vec<_> = listed
        .items
        .iter()
        .map(|item| item.metadata.resource_version.clone())
        .collect();
    assert_eq!(versions, vec![written.metadata.resource_version.clone()]);
    let missing = plugins.get_metadata("absent").await;
    assert_eq!(api_error(missing).code, 404);
    // As the API server sends them: typed as PartialObjectMetadata, no spec.
    let path = format!("/apis/extensions.higress.io/v1alpha1/namespaces/{NS}/wasmplugins");
    let request = |path: String, accept: &str| {
        Request::get(path)
            .header(header::ACCEPT, accept)
            .body(Vec::new())
            .unwrap()
    };
    let (status, _, list) = raw(
        &client,
        request(
            path.clone(),
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["metadata"]["name"], "key-auth.internal");
    assert!(list["items"][0].get("spec").is_none());
    assert_eq!(sim.counters().metadata_only("get", "wasmplugins"), 2);
    assert_eq!(sim.counters().metadata_only("list", "wasmplugins"), 2);
    // Both lists returned the one object there is.
    assert_eq!(sim.counters().listed("wasmplugins"), 2);
    // Empty, it says `"items": null`, as a real API server's PartialObjectMetadataList does; its
    // full list says `[]`. (kube-rs reads both as empty.)
    let (_, _, none) = raw(
        &client,
        request(
            format!("{path}?labelSelector=absent%3Dyes"),
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        ),
    )
    .await;
    assert_eq!(none["kind"], "PartialObjectMetadataList");
    assert!(none["items"].is_null(), "{none}");
    let (_, _, none) = raw(
        &client,
        request(format!("{path}?labelSelector=absent%3Dyes"), "application/json"),
    )
    .await;
    assert_eq!(none["items"], json!([]));
    let empty = plugins
        .list_metadata(&ListParams::default().labels("absent=yes"))
        .await
        .unwrap();
    assert!(empty.items.is_empty());
    assert_eq!(sim.counters().listed("wasmplugins"), 2, "an empty list returns nothing");
    // A form the server cannot give: 406, as from the API server.
    let (status, _, refused) = raw(
        &client,
        request(format!("{path}/key-auth.internal"), "application/yaml"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(refused["reason"], "NotAcceptable");
}
