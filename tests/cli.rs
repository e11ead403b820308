//! The `render` and `apply` subcommands as a user runs them.

use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_higress-route-worker"))
}

/// An object as the console sees it: without the worker's own annotations (`higress-route-worker.io/`).
fn as_console_sees(mut object: Value) -> Value {
    let metadata = object["metadata"].as_object_mut().unwrap();
    if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.retain(|key, _| !key.starts_with("higress-route-worker.io/"));
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    object
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn render_prints_the_seed_scenario_as_the_console_writes_it() {
    let output = worker()
        .args(["render", "--event"])
        .arg(root().join("schemas/examples/valid/seed-deployed.json"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rendered = documents(&String::from_utf8(output.stdout).unwrap());
    let expected = documents(
        &std::fs::read_to_string(root().join("tests/fixtures/console/blog-scenario-as-console-writes-it.yaml"))
            .unwrap(),
    );
    let find = |kind: &str, name: &str| {
        rendered
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .map(|o| as_console_sees(o.clone()))
            .unwrap_or_else(|| panic!("{kind} {name} not rendered"))
    };
    assert_eq!(find("ConfigMap", "domain-zimomo.com"), expected[0]);
    assert_eq!(find("Ingress", "ai-route-zimomo2lololo.internal"), expected[3]);
    assert_eq!(find("ConfigMap", "ai-route-zimomo2lololo"), expected[2]);
    let key_auth = find("WasmPlugin", "key-auth.internal");
    assert_eq!(
        key_auth["spec"]["defaultConfig"]["consumers"][0],
        expected[1]["consumer"]
    );
}

#[test]
fn render_against_a_state_prints_updates_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let deployed = worker()
        .args(["render", "--event"])
        .arg(root().join("schemas/examples/valid/seed-deployed.json"))
        .output()
        .unwrap();
    std::fs::write(dir.path().join("state.yaml"), &deployed.stdout).unwrap();
    let output = worker()
        .args(["render", "--event"])
        .arg(root().join("schemas/examples/valid/seed-retired.json"))
        .arg("--state")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("# deleted: Ingress/ai-route-zimomo2lololo.internal"),
        "{text}"
    );
    assert!(text.contains("# deleted: ConfigMap/ai-route-zimomo2lololo"), "{text}");
    assert!(text.contains("# updated: McpBridge/default"), "{text}");
}

#[test]
fn render_of_an_invalid_event_exits_2_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("bad.json");
    std::fs::write(
        &event,
        r#"{"specversion":"1.0","id":"x","source":"t","type":"io.higress.model.deployed.v1",
            "data":{"model":"m","revision":1,"provider":{"type":"deepseek","apiTokens":["sk-secret-value"]},
                    "route":{"upstreams":[{"provider":"m","weight":60},{"provider":"n","weight":30}]}}}"#,
    )
    .unwrap();
    let output = worker().args(["render", "--event"]).arg(&event).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("data.route.upstreams: weights sum to 90, must be 100"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk-secret-value"));
}

/// README ("Plan before going live"): exit 2 on a refused event too, not only an invalid one. The
/// contract accepts this event; the mapping refuses it, since no provider "ghost" exists in an empty
/// cluster (`tests/apply.rs::a_batch_coalesces_shared_writes_and_reports_each_event`).
#[test]
fn render_of_an_event_the_mapping_refuses_exits_2_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("refused.json");
    std::fs::write(
        &event,
        r#"{"specversion":"1.0","id":"x","source":"t","type":"io.higress.model.deployed.v1",
            "data":{"model":"bad","revision":1,"provider":{"name":"x","type":"deepseek"},
                    "route":{"upstreams":[{"provider":"x","weight":50},{"provider":"ghost","weight":50}]}}}"#,
    )
    .unwrap();
    let output = worker().args(["render", "--event"]).arg(&event).output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: rejected (unknown-provider): ") && stderr.contains(r#""ghost""#),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing rendered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_writes_to_the_cluster_and_dry_run_does_not() {
    let sim = kube_sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let event = root().join("schemas/examples/valid/seed-deployed.json");
    let run = move |dry: bool| {
        let mut command = worker();
        command
            .args(["apply", "--event"])
            .arg(&event)
            .arg("--kubeconfig")
            .arg(&kubeconfig);
        if dry {
            command.arg("--dry-run");
        }
        command.output().unwrap()
    };
    let dry = tokio::task::spawn_blocking(move || run(true)).await.unwrap();
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let result: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(result["data"]["outcome"], "applied");
    assert!(
        sim.get("ingresses", "higress-system", "ai-route-zimomo2lololo.internal")
            .is_none(),
        "dry run wrote nothing"
    );
    let creates: u64 = sim
        .counters()
        .requests
        .iter()
        .filter(|((verb, _), _)| verb == "create")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(creates, 0);

    let event = root().join("schemas/examples/valid/seed-deployed.json");
    let kubeconfig = dir.path().join("kubeconfig");
    let applied = tokio::task::spawn_blocking(move || {
        worker()
            .args(["apply", "--event"])
            .arg(&event)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let result: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(result["data"]["outcome"], "applied");
    assert_eq!(result["subject"], "zimomo2lololo");
    assert!(
        !String::from_utf8_lossy(&applied.stdout).contains("123456-xxx"),
        "no credential in the result"
    );
    assert!(sim
        .get("ingresses", "higress-system", "ai-route-zimomo2lololo.internal")
        .is_some());
}

/// A route with a fallback renders its second Ingress and the EnvoyFilter; rendered again without the
/// fallback, against the objects the first render printed, both are deleted.
#[test]
fn render_shows_a_fallback_and_its_removal() {
    let dir = tempfile::tempdir().unwrap();
    let render = |event: &std::path::Path| {
        let output = worker()
            .args(["render", "--event"])
            .arg(event)
            .arg("--state")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    // The seed scenario brings the fallback's provider (lololo).
    let seed = render(&root().join("schemas/examples/valid/seed-deployed.json"));
    std::fs::write(dir.path().join("1-seed.yaml"), &seed).unwrap();
    let event = root().join("schemas/examples/valid/route-fallback.json");
    let with_fallback = render(&event);
    let rendered = documents(&with_fallback);
    let find = |kind: &str, name: &str| {
        rendered
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} not rendered:\n{with_fallback}"))
            .clone()
    };
    let fallback = find("Ingress", "ai-route-chat.fallback.internal");
    assert_eq!(
        fallback["metadata"]["annotations"]["higress.io/destination"],
        "llm-lololo.internal.dns:443"
    );
    let filter = find("EnvoyFilter", "ai-route-chat.internal");
    assert_eq!(
        filter["spec"]["configPatches"][0]["match"]["routeConfiguration"]["vhost"]["route"]["name"],
        "ai-route-chat.internal"
    );
    std::fs::write(dir.path().join("2-chat.yaml"), &with_fallback).unwrap();

    let mut without: Value = serde_json::from_str(&std::fs::read_to_string(&event).unwrap()).unwrap();
    without["data"]["revision"] = 4.into();
    without["data"]["route"].as_object_mut().unwrap().remove("fallback");
    let event = dir.path().join("without-fallback.json");
    std::fs::write(&event, without.to_string()).unwrap();
    let dropped = render(&event);
    for line in [
        "# deleted: Ingress/ai-route-chat.fallback.internal",
        "# deleted: EnvoyFilter/ai-route-chat.internal",
        "# updated: WasmPlugin/key-auth.internal",
        "# updated: WasmPlugin/model-mapper.internal",
    ] {
        assert!(dropped.contains(line), "{line} missing:\n{dropped}");
    }
}

#[test]
fn render_shows_the_route_plugin_crs_as_the_console_writes_them() {
    let output = worker()
        .args(["render", "--event"])
        .arg(root().join("schemas/examples/valid/route-plugins.json"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rendered = documents(&String::from_utf8(output.stdout).unwrap());
    let expected =
        documents(&std::fs::read_to_string(root().join("tests/fixtures/console/route-plugins.yaml")).unwrap());
    for doc in &expected[..2] {
        let name = &doc["metadata"]["name"];
        let found = rendered
            .iter()
            .find(|o| o["kind"] == "WasmPlugin" && &o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} not rendered"));
        assert_eq!(&as_console_sees(found.clone()), doc);
    }
}
