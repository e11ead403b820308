//! kubectl as an outside client. kubectl must be installed (Debian package
//! `kubernetes-client`); without it this test fails rather than skips.
//!
//! kube-sim serves no OpenAPI documents, so `kubectl apply` needs
//! `--validate=false` (kubectl 1.32 otherwise stops at "failed to download openapi").

use std::path::{Path, PathBuf};

use kube_sim::Sim;
use serde_json::json;
use tokio::process::Command;

const NS: &str = "higress-system";

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(sim: &Sim, dir: &Path) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            kubeconfig,
            cache: dir.join("cache"),
        }
    }

    /// Runs kubectl without blocking the runtime the sim is served on.
    async fn run(&self, args: &[&str]) -> Output {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|error| {
                panic!("cannot run kubectl ({error}); install it, e.g. `apt-get install -y kubernetes-client`")
            });
        Output {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(output.success, "kubectl {args:?} failed: {}", output.stderr);
        output.stdout
    }
}

fn configmap_yaml(value: &str) -> String {
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: higress-config
  labels:
    app: higress-gateway
data:
  mesh: \"{value}\"
"
    )
}

fn wasmplugin_yaml(priority: u32) -> String {
    format!(
        "apiVersion: extensions.higress.io/v1alpha1
kind: WasmPlugin
metadata:
  name: ai-proxy
  labels:
    higress.io/resource-definer: higress
spec:
  priority: {priority}
  url: oci://higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/ai-proxy:1.0.0
  defaultConfig:
    providers: []
"
    )
}

#[tokio::test]
async fn kubectl_applies_gets_selects_and_deletes() {
    let sim = kube_sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubectl = Kubectl::new(&sim, dir.path());
    let manifest = dir.path().join("configmap.yaml");
    let plugin = dir.path().join("wasmplugin.yaml");
    let (manifest, plugin) = (manifest.to_str().unwrap(), plugin.to_str().unwrap());

    // apply: create (GET, then POST), then update (strategic merge PATCH for a ConfigMap).
    std::fs::write(manifest, configmap_yaml("1")).unwrap();
    let out = kubectl.ok(&["apply", "--validate=false", "-f", manifest]).await;
    assert_eq!(out.trim(), "configmap/higress-config created");
    std::fs::write(manifest, configmap_yaml("2")).unwrap();
    let out = kubectl.ok(&["apply", "--validate=false", "-f", manifest]).await;
    assert_eq!(out.trim(), "configmap/higress-config configured");
    let stored = sim.get("configmaps", NS, "higress-config").unwrap();
    assert_eq!(stored["data"]["mesh"], "2");
    assert!(stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
    assert_eq!(sim.counters().get("patch", "configmaps"), 1);
    let out = kubectl.ok(&["apply", "--validate=false", "-f", manifest]).await;
    assert_eq!(out.trim(), "configmap/higress-config unchanged");

    // A custom resource: created, then updated with a JSON merge PATCH.
    std::fs::write(plugin, wasmplugin_yaml(100)).unwrap();
    let out = kubectl.ok(&["apply", "--validate=false", "-f", plugin]).await;
    assert_eq!(out.trim(), "wasmplugin.extensions.higress.io/ai-proxy created");
    std::fs::write(plugin, wasmplugin_yaml(200)).unwrap();
    let out = kubectl.ok(&["apply", "--validate=false", "-f", plugin]).await;
    assert_eq!(out.trim(), "wasmplugin.extensions.higress.io/ai-proxy configured");
    let stored = sim.get("wasmplugins", NS, "ai-proxy").unwrap();
    assert_eq!(
        (
            stored["spec"]["priority"].as_u64(),
            stored["metadata"]["generation"].as_u64()
        ),
        (Some(200), Some(2))
    );

    // get -o yaml
    let yaml = kubectl.ok(&["get", "configmap", "higress-config", "-o", "yaml"]).await;
    for line in [
        "kind: ConfigMap",
        "  name: higress-config",
        "  namespace: higress-system",
        "  mesh: \"2\"",
    ] {
        assert!(yaml.lines().any(|l| l == line), "{line:?} missing from\n{yaml}");
    }
    let yaml = kubectl.ok(&["get", "wasmplugins", "ai-proxy", "-o", "yaml"]).await;
    assert!(yaml.contains("priority: 200"), "{yaml}");

    // get -l: label selection, short name, all namespaces.
    sim.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "other", "namespace": NS, "labels": {"app": "console"}}}))
        .unwrap();
    let selected = kubectl
        .ok(&["get", "cm", "-l", "app=higress-gateway", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "configmap/higress-config");
    let selected = kubectl
        .ok(&["get", "cm", "-l", "app in (console,none)", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "configmap/other");
    let everywhere = kubectl.ok(&["get", "configmaps", "-A", "-o", "name"]).await;
    assert_eq!(everywhere.lines().count(), 2);

    // delete, then NotFound.
    let out = kubectl.ok(&["delete", "configmap", "higress-config"]).await;
    assert_eq!(out.trim(), "configmap \"higress-config\" deleted");
    assert_eq!(sim.get("configmaps", NS, "higress-config"), None);
    let out = kubectl.ok(&["delete", "-f", plugin]).await;
    assert_eq!(out.trim(), "wasmplugin.extensions.higress.io \"ai-proxy\" deleted");
    let missing = kubectl.run(&["get", "configmap", "higress-config"]).await;
    assert!(!missing.success);
    assert!(
        missing
            .stderr
            .contains("Error from server (NotFound): configmaps \"higress-config\" not found"),
        "{}",
        missing.stderr
    );
}
