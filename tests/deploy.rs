//! deploy/, the Kustomize base: it renders with `kubectl kustomize`, every object is a valid Kubernetes
//! object in its namespace, the pod runs locked down with probes, resources and a grace period longer
//! than the drain deadline, its settings are flags of `run`, and the Role grants exactly the requests
//! the apply engine makes (measured against the in-memory API server), nothing more and nothing less.

#[path = "support/kustomize.rs"]
mod kustomize;

use higress_route_worker::cluster::{self, Engine, EngineConfig};
use higress_route_worker::contract;
use higress_route_worker::event::{self, LifecycleEvent};
use higress_route_worker::higress::{names, Kind};
use higress_route_worker::metrics::Metrics;
use higress_route_worker::result::{Outcome, RouteResult};
use higress_route_worker::worker::WorkerConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const WORKER_NS: &str = "higress-route-worker";
const HIGRESS_NS: &str = "higress-system";
const WORKER_BIN: &str = env!("CARGO_BIN_EXE_higress-route-worker");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The objects `kubectl kustomize deploy/` renders.
fn rendered() -> Vec<Value> {
    kustomize::render("deploy")
}

fn the<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in deploy/, found {}", found.len());
    found[0]
}

fn str_of<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {object}"))
}

fn settings(objects: &[Value]) -> BTreeMap<String, String> {
    serde_json::from_value(the(objects, "ConfigMap")["data"].clone()).expect("ConfigMap data of strings")
}

/// The drain deadline the worker runs with: the ConfigMap's, else the default.
fn drain_deadline_secs(objects: &[Value]) -> u64 {
    match settings(objects).get("HRW_DRAIN_DEADLINE_SECS") {
        Some(secs) => secs.parse().expect("HRW_DRAIN_DEADLINE_SECS is a number of seconds"),
        None => WorkerConfig::default().drain_deadline.as_secs(),
    }
}

#[test]
fn every_object_is_in_its_namespace() {
    let objects = rendered();
    let kinds: BTreeSet<&str> = objects.iter().map(|o| str_of(o, "/kind")).collect();
    let expected = [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ];
    assert_eq!(kinds, expected.into_iter().collect(), "kinds rendered from deploy/");
    assert_eq!(objects.len(), expected.len(), "one object of each kind");

    assert_eq!(str_of(the(&objects, "Namespace"), "/metadata/name"), WORKER_NS);
    for object in &objects {
        let kind = str_of(object, "/kind");
        let expected = match kind {
            "Namespace" => continue,
            // Where Higress keeps its objects and the worker writes them.
            "Role" | "RoleBinding" => HIGRESS_NS,
            _ => WORKER_NS,
        };
        assert_eq!(
            str_of(object, "/metadata/namespace"),
            expected,
            "namespace of the {kind}"
        );
    }
    assert_eq!(
        settings(&objects)["HRW_NAMESPACE"],
        HIGRESS_NS,
        "the worker writes where its Role grants"
    );

    let role = the(&objects, "Role");
    let binding = the(&objects, "RoleBinding");
    let account = the(&objects, "ServiceAccount");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": WORKER_NS}])
    );
    assert_eq!(
        the(&objects, "Deployment").pointer("/spec/template/spec/serviceAccountName"),
        account.pointer("/metadata/name")
    );
}

/// Read into the typed Kubernetes API and written back unchanged: no misspelt or misplaced field, no
/// value of the wrong type.
fn assert_typed<T: DeserializeOwned + Serialize>(object: &Value) {
    let kind = str_of(object, "/kind");
    let typed: T = serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("not a valid {kind}: {e}"));
    let mut unknown = Vec::new();
    differences(
        object,
        &serde_json::to_value(typed).unwrap(),
        String::new(),
        &mut unknown,
    );
    assert!(
        unknown.is_empty(),
        "the {kind} has fields the Kubernetes API does not know: {unknown:?}"
    );
}

/// JSON pointers where `written` differs from `read`.
fn differences(read: &Value, written: &Value, at: String, out: &mut Vec<String>) {
    match (read, written) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                differences(value, b.get(key).unwrap_or(&Value::Null), format!("{at}/{key}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, format!("{at}/{i}"), out);
            }
        }
        (a, b) if a != b => out.push(at),
        _ => {}
    }
}

#[test]
fn every_object_is_a_valid_kubernetes_object() {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, policy::v1 as policy, rbac::v1 as rbac};
    for object in &rendered() {
        match str_of(object, "/kind") {
            "Namespace" => assert_typed::<core::Namespace>(object),
            "ServiceAccount" => assert_typed::<core::ServiceAccount>(object),
            "ConfigMap" => assert_typed::<core::ConfigMap>(object),
            "Service" => assert_typed::<core::Service>(object),
            "Deployment" => assert_typed::<apps::Deployment>(object),
            "PodDisruptionBudget" => assert_typed::<policy::PodDisruptionBudget>(object),
            "Role" => assert_typed::<rbac::Role>(object),
            "RoleBinding" => assert_typed::<rbac::RoleBinding>(object),
            other => panic!("unexpected kind {other}"),
        }
    }
}

/// The first number after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> u64 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("README no longer says {marker:?}"))
        + marker.len();
    let digits: String = text[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {marker:?}"))
}

/// README's "Deploying" describes the replicas, the grace period and the drain deadline as deploy/ has them.
#[test]
fn the_readme_gives_the_deployments_replicas_grace_period_and_drain_deadline_as_they_are() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let objects = rendered();
    let deployment = the(&objects, "Deployment");
    let said = (
        number_after(&readme, "Deployment ("),
        number_after(&readme, "`terminationGracePeriodSeconds`"),
        number_after(&readme, "> the "),
    );
    let is = (
        deployment["spec"]["replicas"].as_u64().expect("replicas"),
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds"),
        drain_deadline_secs(&objects),
    );
    assert_eq!(
        said, is,
        "README (replicas, grace period, drain deadline) against deploy/"
    );
}

#[test]
fn the_pod_is_locked_down_probed_and_bounded() {
    let objects = rendered();
    let deployment = the(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    let container = &containers[0];

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "pod runs as non-root");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "read-only root filesystem");
    assert_eq!(security["allowPrivilegeEscalation"], false, "no privilege escalation");
    assert_eq!(
        security["capabilities"]["drop"],
        json!(["ALL"]),
        "all capabilities dropped"
    );
    assert_ne!(security["privileged"], true);
    assert_ne!(security["runAsUser"], 0);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);

    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource} is set"
            );
        }
    }

    assert_eq!(container["args"], json!(["run"]), "runs the worker");
    assert_eq!(
        container["envFrom"],
        json!([{"configMapRef": {"name": the(&objects, "ConfigMap")["metadata"]["name"]}}]),
        "settings from the ConfigMap"
    );

    // Probes and metrics on the port the worker listens on.
    let addr: std::net::SocketAddr = settings(&objects)["HRW_METRICS_ADDR"]
        .parse()
        .expect("HRW_METRICS_ADDR");
    assert_eq!(
        container["ports"],
        json!([{"name": "metrics", "containerPort": addr.port(), "protocol": "TCP"}])
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(
            container[probe]["httpGet"],
            json!({"path": path, "port": "metrics"}),
            "{probe}"
        );
    }

    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let drain = drain_deadline_secs(&objects);
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds ({grace}) must exceed the drain deadline ({drain} s)"
    );
}

#[test]
fn the_service_and_the_budget_select_the_pods() {
    let objects = rendered();
    let deployment = the(&objects, "Deployment");
    let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    let selects_pods = |selector: &Value, what: &str| {
        let selector = selector.as_object().unwrap_or_else(|| panic!("{what} has a selector"));
        assert!(!selector.is_empty(), "{what} selects something");
        for (key, value) in selector {
            assert_eq!(pod_labels.get(key), Some(value), "{what} selects the pods by {key}");
        }
    };
    selects_pods(&deployment["spec"]["selector"]["matchLabels"], "the Deployment");

    let service = the(&objects, "Service");
    selects_pods(&service["spec"]["selector"], "the Service");
    let port = settings(&objects)["HRW_METRICS_ADDR"]
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .port();
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}])
    );
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let budget = the(&objects, "PodDisruptionBudget");
    selects_pods(&budget["spec"]["selector"]["matchLabels"], "the PodDisruptionBudget");
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let allowed = match (
        budget["spec"]["maxUnavailable"].as_i64(),
        budget["spec"]["minAvailable"].as_i64(),
    ) {
        (Some(max_unavailable), None) => max_unavailable,
        (None, Some(min_available)) => replicas - min_available,
        _ => panic!("the budget sets an integer maxUnavailable or minAvailable"),
    };
    assert!(
        allowed >= 1,
        "the budget lets a node drain evict a replica ({replicas} replicas)"
    );
}

#[test]
fn the_settings_are_flags_of_run() {
    let objects = rendered();
    let help = Command::new(WORKER_BIN).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let known: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
        .collect();
    assert!(known.contains("HRW_BROKERS"), "env names in run --help:\n{help}");
    let settings = settings(&objects);
    for key in settings.keys().filter(|k| k.starts_with("HRW_")) {
        assert!(
            known.contains(key.as_str()),
            "{key} is not an environment variable of `run`"
        );
    }
    assert!(["json", "text"].contains(&settings["HRW_LOG_FORMAT"].as_str()));
    for (key, value) in settings
        .iter()
        .filter(|(k, _)| k.ends_with("_SECS") || k.ends_with("_MS"))
    {
        assert!(value.parse::<u64>().is_ok(), "{key}={value} is a number");
    }

    // The mapping settings (namespace, console version) as the binary reads them.
    let render = Command::new(WORKER_BIN)
        .args(["render", "--event"])
        .arg(repo().join("schemas/examples/valid/seed-deployed.json"))
        .env_clear()
        .envs(&settings)
        .output()
        .unwrap();
    assert!(
        render.status.success(),
        "render with the ConfigMap's settings: {}",
        String::from_utf8_lossy(&render.stderr)
    );
    assert!(String::from_utf8_lossy(&render.stdout).contains(&format!("namespace: {}", settings["HRW_NAMESPACE"])));
}

/// docker-compose's k3s installs these CRDs: without a served, stored version of every custom kind the
/// worker writes, at the group, version and scope it writes them, the demo's writes would be 404s.
#[test]
fn the_compose_crds_serve_every_custom_kind_the_worker_writes() {
    let text = std::fs::read_to_string(repo().join("deploy/compose/higress-crds.yaml")).unwrap();
    let crds: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|crd| crd["kind"] == "CustomResourceDefinition")
        .collect();
    let custom = Kind::ALL
        .into_iter()
        .filter(|k| !matches!(k.group(), "" | "networking.k8s.io"));
    for kind in custom {
        let name = format!("{}.{}", kind.plural(), kind.group());
        let crd = crds
            .iter()
            .find(|crd| crd["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no CRD {name} in deploy/compose/higress-crds.yaml"));
        assert_eq!(crd["spec"]["group"], kind.group(), "{name}");
        assert_eq!(crd["spec"]["names"]["kind"], kind.kind(), "{name}");
        assert_eq!(crd["spec"]["scope"], "Namespaced", "{name}");
        let version = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == kind.version())
            .unwrap_or_else(|| panic!("{name} has no version {}", kind.version()));
        assert_eq!(
            (&version["served"], &version["storage"]),
            (&json!(true), &json!(true)),
            "{name} {}",
            kind.version()
        );
    }
}

// --- The Role against the requests the code makes -------------------------------------------------

fn rules_granted(objects: &[Value]) -> BTreeSet<(String, String, String)> {
    let mut granted = BTreeSet::new();
    for rule in the(objects, "Role")["rules"].as_array().expect("rules") {
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
        let list = |field: &str| -> Vec<String> { serde_json::from_value(rule[field].clone()).expect("a list") };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

fn event_file(name: &str) -> Value {
    let path = repo().join("schemas/examples/valid").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn parse(event: &Value) -> LifecycleEvent {
    contract::parse(event.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn with(mut event: Value, id: &str, revision: u64) -> Value {
    event["id"] = json!(id);
    event["data"]["revision"] = json!(revision);
    event
}

fn applied(results: Vec<RouteResult>) -> Vec<RouteResult> {
    for result in &results {
        assert_eq!(result.outcome, Outcome::Applied, "{result:?}");
    }
    results
}

fn deploy(model: &str) -> LifecycleEvent {
    parse(&json!({
        "specversion": "1.0", "id": format!("deploy-{model}"), "source": "tests", "type": event::DEPLOYED_TYPE,
        "data": {"model": model, "revision": 1,
                 "provider": {"name": format!("p-{model}"), "type": "openai", "url": format!("https://{model}.example.com/v1")},
                 "route": {"domains": ["api.example.com"], "path": format!("/{model}")}}
    }))
}

/// Runs every path of the apply engine that reaches the API server: targeted reads of a few events,
/// lists of a large batch, Secrets, a re-read after a conflict, creates, replaces and deletes of every
/// kind the mapping writes. Returns each (API group, resource, verb) requested.
async fn requests_of_the_engine() -> BTreeSet<(String, String, String)> {
    let sim = kube_sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let client = cluster::connect(Some(&kubeconfig)).await.unwrap();
    let engine = Engine::new(client, EngineConfig::default(), Arc::new(Metrics::default()));

    let seed = event_file("seed-deployed.json");
    let model = seed["data"]["model"].as_str().unwrap().to_string();
    for object in [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "llm-tokens", "namespace": HIGRESS_NS, "labels": {"higress-route-worker.io/readable": "true"}},
               "stringData": {"anthropic": "sk-ant"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "consumer-keys", "namespace": HIGRESS_NS, "labels": {"higress-route-worker.io/readable": "true"}},
               "stringData": {"alice": "alice-key", "bob.keys": "bob-key"}}),
        // The console's fallback of the seed route, which its retirement deletes.
        json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
               "metadata": {"name": names::fallback_envoy_filter(&model), "namespace": HIGRESS_NS,
                            "labels": {"higress.io/resource-definer": "higress"}}, "spec": {}}),
    ] {
        sim.insert(object).unwrap();
    }

    // Secrets named by an event.
    applied(vec![engine.apply(&parse(&event_file("secret-refs.json"))).await]);
    // A Secret rotation round reads the fences, the plugin objects and those Secrets; nothing changed,
    // so it writes nothing.
    assert!(engine.rotate_secrets().await.unwrap().is_empty());
    // A concurrent writer: the engine re-reads the plugin and applies its edits again.
    sim.faults().conflict_next("wasmplugins", "ai-proxy.internal", 1);
    let first = applied(vec![engine.apply(&parse(&seed)).await]);
    assert_eq!(first[0].conflicts, 1, "the one forced conflict was met: {first:?}");
    // A new revision replaces the route's own objects.
    let mut moved = with(seed.clone(), "seed-2", 2);
    moved["data"]["route"]["path"] = json!("/v2");
    applied(vec![engine.apply(&parse(&moved)).await]);
    // A route with a fallback writes its EnvoyFilter, replaces it when the codes change, and deletes
    // it when a redeploy drops the fallback.
    let fallback = |revision: u64, codes: Value| {
        let mut data = json!({"model": "fb", "revision": revision,
                              "provider": {"name": "p-fb", "type": "openai", "url": "https://fb.example.com/v1"}});
        if !codes.is_null() {
            data["route"] = json!({"fallback": {"upstreams": [{"provider": "lololo"}], "responseCodes": codes}});
        }
        parse(
            &json!({"specversion": "1.0", "id": format!("fb-{revision}"), "source": "tests",
                      "type": event::DEPLOYED_TYPE, "data": data}),
        )
    };
    applied(vec![engine.apply(&fallback(1, json!(["5xx"]))).await]);
    applied(vec![engine.apply(&fallback(2, json!(["4xx", "5xx"]))).await]);
    applied(vec![engine.apply(&fallback(3, Value::Null)).await]);
    assert!(sim
        .get("envoyfilters", HIGRESS_NS, &names::fallback_envoy_filter("fb"))
        .is_none());
    // Retirement deletes them, the fallback EnvoyFilter with them.
    applied(vec![
        engine
            .apply(&parse(&with(event_file("seed-retired.json"), "seed-3", 3)))
            .await,
    ]);
    assert!(sim
        .get("envoyfilters", HIGRESS_NS, &names::fallback_envoy_filter(&model))
        .is_none());
    // A batch of many models reads by listing.
    let mut batch: Vec<LifecycleEvent> = (1..=5).map(|i| deploy(&format!("batch-{i}"))).collect();
    batch.push(parse(&json!({
        "specversion": "1.0", "id": "retire-claude", "source": "tests", "type": event::RETIRED_TYPE,
        "data": {"model": "claude", "revision": 2}
    })));
    applied(engine.apply_batch(&batch).await);
    // A batch redeploying many existing routes lists their Ingresses instead of reading each.
    let many: Vec<LifecycleEvent> = (1..=40).map(|i| deploy(&format!("many-{i}"))).collect();
    applied(engine.apply_batch(&many).await);
    let redeployed: Vec<LifecycleEvent> = (1..=40)
        .map(|i| {
            let mut event = deploy(&format!("many-{i}"));
            if let event::Lifecycle::Deployed(deployed) = &mut event.body {
                deployed.revision = 2;
                deployed.route.path = "/moved".into();
            }
            event
        })
        .collect();
    applied(engine.apply_batch(&redeployed).await);
    // Only the redeploy of the 40 existing routes lists Ingresses, in one read (those labelled with the
    // 40 routes, and the unlabelled ones: two requests): a new route's Ingress is not read, and a few
    // existing ones are read by name.
    assert_eq!(sim.counters().get("list", "ingresses"), 2);
    // Route plugins: their CRs created, a redeploy without them and a retirement edit them.
    let plugins = event_file("route-plugins.json");
    applied(vec![engine.apply(&parse(&plugins)).await]);
    let mut without = with(plugins.clone(), "plugins-2", 4);
    without["data"]["route"].as_object_mut().unwrap().remove("plugins");
    applied(vec![engine.apply(&parse(&without)).await]);
    applied(vec![
        engine
            .apply(&parse(&json!({
                "specversion": "1.0", "id": "plugins-3", "source": "tests", "type": event::RETIRED_TYPE,
                "data": {"model": plugins["data"]["model"], "revision": 5}
            })))
            .await,
    ]);

    let group_of: BTreeMap<&str, &str> = Kind::ALL.iter().map(|k| (k.plural(), k.group())).collect();
    sim.counters()
        .requests
        .keys()
        .map(|(verb, resource)| {
            let group = group_of
                .get(resource.as_str())
                .unwrap_or_else(|| panic!("the engine requested {resource}, a resource the mapping does not know"));
            (group.to_string(), resource.clone(), verb.clone())
        })
        .collect()
}

#[tokio::test]
async fn the_role_grants_exactly_what_the_engine_requests() {
    let granted = rules_granted(&rendered());
    let requested = requests_of_the_engine().await;
    let unused: Vec<_> = granted.difference(&requested).collect();
    let missing: Vec<_> = requested.difference(&granted).collect();
    assert!(
        unused.is_empty() && missing.is_empty(),
        "deploy/rbac.yaml must grant exactly the (apiGroup, resource, verb) the worker requests\n  granted but never requested: {unused:?}\n  requested but not granted: {missing:?}"
    );
}
