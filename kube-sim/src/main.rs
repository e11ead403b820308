//! `kube-sim --port N --kubeconfig-out FILE [--namespace NS ...]`: serves the
//! simulated API server until killed, for tools outside a Rust test.

use std::path::PathBuf;

use clap::Parser;
use serde_json::json;

/// A small in-memory Kubernetes API server for tests and benchmarks.
/// The namespaces default, kube-system and higress-system always exist.
/// Faults, counters and the audit log are under /_sim (see README.md).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write a kubeconfig for this server (plain HTTP, context namespace higress-system) here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Create this namespace too; repeatable.
    #[arg(long = "namespace", value_name = "NAME")]
    namespaces: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sim = kube_sim::start_on(args.port).await?;
    for name in &args.namespaces {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match sim.insert(namespace) {
            Err(error) if error.reason != "AlreadyExists" => return Err(error.into()),
            _ => {}
        }
    }
    if let Some(path) = &args.kubeconfig_out {
        sim.write_kubeconfig(path)?;
    }
    // The URL on stdout tells a parent process the server is ready.
    println!("{}", sim.base_url());
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
