//! `kubectl kustomize` of a directory of the repository, as the objects it renders.

use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The objects `kubectl kustomize <dir>` renders (`dir` relative to the repository; `KUBECTL` names
/// another binary).
pub fn render(dir: &str) -> Vec<Value> {
    let kubectl = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
    let output = Command::new(&kubectl)
        .arg("kustomize")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {kubectl:?} ({e}): these tests render {dir}/ with `kubectl kustomize`; install kubectl (Debian: kubernetes-client; scripts/test does) or set KUBECTL")
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}/ failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 output");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("rendered YAML"))
        .filter(|object| !object.is_null())
        .collect()
}
