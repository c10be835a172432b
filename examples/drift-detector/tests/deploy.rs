//! The shipped manifests against the sandbox: `kubectl apply -k deploy/` works, and the binary started
//! with the manifest's exact arguments (and its environment, the Secret's values made up) stays up and
//! serves `/health` — here with ConfigHub unreachable, which it rides out.
#![allow(clippy::print_stderr)] // tests say what they skip

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drift_kube::sandbox::{Sandbox, SandboxConfig};

const BIN: &str = env!("CARGO_BIN_EXE_drift-detector");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_k_works_and_the_manifest_args_start_the_daemon() {
    let dir = std::env::temp_dir().join(format!("drift-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let sandbox = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let kubeconfig = dir.join("kubeconfig");
    sandbox.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    // Also installs the process's TLS crypto provider, which the HTTP client below needs.
    let _ = sandbox.client().expect("client");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    // A discovery cache of its own: another sandbox may have had this port before.
    let out = Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig.display().to_string()])
        .arg("--cache-dir")
        .arg(dir.join("kube-cache"))
        .args(["apply", "-k"])
        .arg(&deploy)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl apply -k: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for what in [
        "namespace/drift-detector",
        "serviceaccount/drift-detector",
        "statefulset.apps/drift-detector",
        "service/drift-detector",
        "networkpolicy.networking.k8s.io/drift-detector",
        "clusterrole.rbac.authorization.k8s.io/drift-detector-read",
    ] {
        assert!(text.contains(what), "{what} not applied: {text}");
    }
    assert!(
        sandbox
            .object("apps", "statefulsets", Some("drift-detector"), "drift-detector")
            .is_some()
    );

    // The manifest's exact args. Its state directory is an absolute path: only root can create it here.
    let doc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(deploy.join("statefulset.yaml")).expect("read"))
            .expect("yaml");
    let c = &doc["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").to_string())
        .collect();
    let state = args
        .windows(2)
        .find(|w| w[0] == "--state-dir")
        .map(|w| w[1].clone())
        .expect("--state-dir");
    if std::fs::create_dir_all(&state).is_err() {
        eprintln!(
            "SKIPPED starting the daemon with the manifest's args: {state} cannot be created (not root)"
        );
        return;
    }
    // The environment the manifest sets; the Secret's values made up, ConfigHub pointed at nothing.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut cmd = Command::new(BIN);
    cmd.args(&args)
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "drift-detector-0")
        .env("POD_NAMESPACE", "drift-detector")
        .env("CUB_API_URL", format!("http://{dead}/api"))
        .env("CUB_TOKEN", "made-up")
        .env_remove("CLAUDE_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for e in c["env"].as_array().expect("env") {
        if let Some(v) = e["value"].as_str() {
            cmd.env(e["name"].as_str().expect("name"), v);
        }
    }
    // Killed however the test ends: a daemon left behind would keep reconnecting to this port and
    // act on whatever sandbox binds it next.
    let mut child = KillOnDrop(cmd.spawn().expect("spawn"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut healthy = false;
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait().expect("wait") {
            panic!("the daemon exited: {status}");
        }
        if let Ok(r) = http.get("http://127.0.0.1:8080/health").send().await
            && r.status() == 200
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healthy, "/health never answered 200");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(child.0.try_wait().expect("wait").is_none(), "it stays up");
    let r = http
        .get("http://127.0.0.1:8080/ready")
        .send()
        .await
        .expect("ready");
    assert_eq!(r.status(), 503, "not ready while ConfigHub is unreachable");
    drop(child);
}

/// A child process killed and reaped when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
