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

/// An object as the console sees it: without the worker's own annotations and labels
/// (`higress-route-worker.io/`).
fn as_console_sees(mut object: Value) -> Value {
    let metadata = object["metadata"].as_object_mut().unwrap();
    if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
        labels.retain(|key, _| !key.starts_with("higress-route-worker.io/"));
    }
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
            "data":{"model":"bad","revision":1,"provider":{"name":"x","type":"deepseek","apiTokens":["sk-x"]},
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

/// Runs the worker with these arguments off the async runtime.
async fn run_worker(args: Vec<std::ffi::OsString>) -> std::process::Output {
    tokio::task::spawn_blocking(move || worker().args(args).output().unwrap())
        .await
        .unwrap()
}

fn os(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<std::ffi::OsString> {
    parts.iter().map(|part| part.as_ref().to_os_string()).collect()
}

/// `render --state`, `apply --dry-run` and `apply` refuse the same events: one the gateway would
/// refuse, and one past the shared-object budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_dry_run_and_apply_refuse_the_same_events() {
    let sim = kube_sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    // The cluster and the state file hold the same ai-proxy, with a provider of someone else's.
    let ai_proxy = serde_json::json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "ai-proxy.internal", "namespace": "higress-system",
                     "labels": {"higress.io/wasm-plugin-name": "ai-proxy", "higress.io/internal": "true",
                                "higress.io/resource-definer": "higress"}},
        "spec": {"defaultConfig": {"providers": [{"id": "theirs", "type": "openai", "protocol": "openai",
                                                  "apiTokens": ["sk-theirs"], "openaiCustomUrl": "https://a.example.com/v1"}]},
                 "defaultConfigDisable": false, "failStrategy": "FAIL_OPEN", "phase": "UNSPECIFIED_PHASE", "priority": 100,
                 "url": "oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/ai-proxy:2.0.1"}});
    sim.insert(ai_proxy.clone()).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("ai-proxy.json"), ai_proxy.to_string()).unwrap();

    let event = |name: &str, plugins: Value| {
        let path = dir.path().join(format!("{name}.json"));
        let event = serde_json::json!({"specversion": "1.0", "id": name, "source": "tests", "type": "io.higress.model.deployed.v1",
            "data": {"model": name, "revision": 1,
                     "provider": {"name": format!("p-{name}"), "type": "openai", "url": "https://b.example.com/v1", "apiTokens": ["sk-ours"]},
                     "route": {"path": "/v1", "plugins": plugins}}});
        std::fs::write(&path, event.to_string()).unwrap();
        path
    };
    let gateway = event(
        "gw",
        serde_json::json!({"ai-quota": {"redis": {"service_name": "redis.dns"}}}),
    );
    let fine = event("fine", serde_json::json!({}));
    // The state's ai-proxy alone is about 400 bytes: a budget it is already past.
    let budget = "300";
    for (event, budget, reason) in [(&gateway, None, "gateway-refuses"), (&fine, Some(budget), "capacity")] {
        let budget_args = |args: &mut Vec<std::ffi::OsString>| {
            if let Some(budget) = budget {
                args.extend(os(&[&"--shared-object-budget-bytes", &budget]));
            }
        };
        let mut args = os(&[&"render", &"--event", event, &"--state", &state]);
        budget_args(&mut args);
        let rendered = run_worker(args).await;
        let stderr = String::from_utf8_lossy(&rendered.stderr);
        assert_eq!(rendered.status.code(), Some(2), "render: {stderr}");
        assert!(stderr.starts_with(&format!("error: rejected ({reason}): ")), "{stderr}");
        assert!(rendered.stdout.is_empty());
        for dry in [true, false] {
            let mut args = os(&[&"apply", &"--event", event, &"--kubeconfig", &kubeconfig]);
            if dry {
                args.push("--dry-run".into());
            }
            budget_args(&mut args);
            let applied = run_worker(args).await;
            assert_eq!(
                applied.status.code(),
                Some(2),
                "apply (dry run {dry}): {}",
                String::from_utf8_lossy(&applied.stderr)
            );
            let result: Value = serde_json::from_slice(&applied.stdout).unwrap();
            assert_eq!(result["data"]["outcome"], "rejected");
            assert_eq!(result["data"]["error"]["reason"], reason);
            assert!(
                !String::from_utf8_lossy(&applied.stdout).contains("sk-"),
                "no token in the result"
            );
        }
    }
    let writes: u64 = sim
        .counters()
        .requests
        .iter()
        .filter(|((verb, _), _)| matches!(verb.as_str(), "create" | "update" | "delete"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(writes, 0, "nothing written");
    // Without the budget, the fine event renders and applies.
    let rendered = run_worker(os(&[&"render", &"--event", &fine, &"--state", &state])).await;
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
}

/// `audit` names a provider of someone else's that the gateway refuses, and exits 1; a clean
/// cluster exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_names_a_foreign_broken_provider_and_exits_1() {
    let sim = kube_sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let clean = run_worker(os(&[&"audit", &"--kubeconfig", &kubeconfig])).await;
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(String::from_utf8_lossy(&clean.stdout).starts_with("no problems"));

    // qwen needs apiTokens; this one, written by hand, has none, and a service rule selects it (the
    // plugin validates only the providers rules select).
    sim.insert(serde_json::json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "ai-proxy.internal", "namespace": "higress-system",
                     "labels": {"higress.io/wasm-plugin-name": "ai-proxy", "higress.io/internal": "true"}},
        "spec": {"defaultConfig": {"providers": [
                    {"id": "fine", "type": "openai", "protocol": "openai", "apiTokens": ["sk-fine"]},
                    {"id": "handmade", "type": "qwen", "protocol": "openai"}]},
                 "matchRules": [{"config": {"activeProviderId": "handmade"}, "configDisable": false, "service": ["llm-handmade.internal.dns"]},
                                {"config": {"activeProviderId": "fine"}, "configDisable": false, "service": ["llm-fine.internal.dns"]}],
                 "defaultConfigDisable": false, "url": "oci://x/ai-proxy:2.0.1"}}))
    .unwrap();
    let table = run_worker(os(&[&"audit", &"--kubeconfig", &kubeconfig])).await;
    assert_eq!(
        table.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("OBJECT") && lines[0].contains("RULE") && lines[0].contains("SOURCE"),
        "{text}"
    );
    assert!(
        lines[1..].iter().any(|l| l.contains("WasmPlugin/ai-proxy.internal")
            && l.contains(r#"provider "handmade""#)
            && l.contains("apiTokens")
            && l.contains("plugins/wasm-go/extensions/ai-proxy/")),
        "{text}"
    );
    assert!(
        !text.contains(r#"provider "fine""#) && !text.contains("sk-fine"),
        "{text}"
    );

    let json = run_worker(os(&[&"audit", &"--kubeconfig", &kubeconfig, &"--output", &"json"])).await;
    assert_eq!(json.status.code(), Some(1));
    let findings: Value = serde_json::from_slice(&json.stdout).unwrap();
    let finding = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["entry"] == r#"provider "handmade""#)
        .unwrap_or_else(|| panic!("{findings}"));
    assert_eq!(finding["object"], "WasmPlugin/ai-proxy.internal");
    assert_eq!(finding["source"]["repository"], "alibaba/higress");
    assert!(finding["source"]["path"]
        .as_str()
        .unwrap()
        .starts_with("plugins/wasm-go/extensions/ai-proxy/"));
}
