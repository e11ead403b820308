//! A kube-rs client built from the sim's kubeconfig, so every test also checks
//! that kube-rs accepts that kubeconfig.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// `retry` keeps kube-rs's default retry of 429, 503 and 504 responses; tests
/// that want to see those responses switch it off.
pub async fn client(kubeconfig_yaml: &str, retry: bool) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig_yaml).expect("kubeconfig parses");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube-rs accepts the kubeconfig");
    config.default_retry = retry;
    Client::try_from(config).expect("client")
}
