//! Runs the sandbox API server until interrupted and writes its kubeconfig.
//! Run with `cargo run -p drift-kube --features sandbox --example sandbox -- [KUBECONFIG] [PORT]`.
#![allow(clippy::print_stdout)] // prints where it listens

use drift_kube::sandbox::{Sandbox, SandboxConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sandbox.kubeconfig".into());
    let port = std::env::args().nth(2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let sandbox = Sandbox::start(SandboxConfig::default().port(port).log_requests(true)).await?;
    sandbox.write_kubeconfig(&path)?;
    println!(
        "sandbox API server at {}; kubeconfig written to {path}",
        sandbox.url()
    );
    tokio::signal::ctrl_c().await?;
    for r in sandbox.requests() {
        println!("{r}");
    }
    Ok(())
}
