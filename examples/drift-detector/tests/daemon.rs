//! The daemon end to end: `drift-detector watch` as a process against the sandbox API server (and the
//! fake ConfigHub), driven over its HTTP API and, for the dashboard, by headless Chromium.
#![allow(clippy::print_stderr)] // tests say what they skip

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use drift_kube::sandbox::{Sandbox, SandboxConfig};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_drift-detector");

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}})
}

fn deploy_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments");
    Api::namespaced_with(client.clone(), "shop", &ar)
}

/// Creates an object through the API.
async fn create(api: &Api<DynamicObject>, obj: &Value) {
    api.create(
        &PostParams::default(),
        &serde_json::from_value(obj.clone()).expect("obj"),
    )
    .await
    .expect("create");
}

async fn scale(client: &kube::Client, name: &str, n: i64) {
    deploy_api(client)
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": n}})),
        )
        .await
        .expect("scale");
}

async fn replicas(client: &kube::Client, name: &str) -> i64 {
    deploy_api(client).get(name).await.expect("get").data["spec"]["replicas"]
        .as_i64()
        .unwrap_or(-1)
}

struct Env {
    sandbox: Sandbox,
    client: kube::Client,
    dir: PathBuf,
    kubeconfig: PathBuf,
    manifests: PathBuf,
}

/// A sandbox with namespace shop and the given deployments, their manifests in a directory.
async fn env(name: &str, apps: &[(&str, i64)]) -> Env {
    let dir = std::env::temp_dir().join(format!("drift-daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).expect("dir");
    let sandbox = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let kubeconfig = dir.join("kubeconfig");
    sandbox.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let client = sandbox.client().expect("client");
    let ns_ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces");
    let ns: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    )
    .expect("ns");
    Api::<DynamicObject>::all_with(client.clone(), &ns_ar)
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let mut docs = Vec::new();
    for (app, n) in apps {
        let d = deployment(app, *n);
        create(&deploy_api(&client), &d).await;
        docs.push(d);
    }
    let manifests = dir.join("manifests");
    std::fs::write(
        manifests.join("apps.json"),
        serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": docs})).expect("json"),
    )
    .expect("write");
    Env {
        sandbox,
        client,
        dir,
        kubeconfig,
        manifests,
    }
}

/// A running `drift-detector watch`, its URL and token.
struct Daemon {
    child: Child,
    url: String,
    token: String,
    http: reqwest::Client,
    log: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg("watch").args(args);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env_remove("KUBECONFIG")
            .env_remove("CUB_TOKEN")
            .env_remove("CLAUDE_API_KEY")
            .env("RUST_LOG", "warn,drift_detector=info");
        let mut token = format!("test-token-{}", std::process::id());
        cmd.env("DRIFT_DASHBOARD_TOKEN", &token);
        for (k, v) in envs {
            cmd.env(k, v);
            if *k == "DRIFT_DASHBOARD_TOKEN" {
                token = (*v).to_string();
            }
        }
        #[allow(clippy::zombie_processes)] // Drop kills and waits for it
        let mut child = cmd.spawn().expect("spawn drift-detector watch");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no dashboard line; stderr: {seen:#?}"));
            if let Some(rest) = line.strip_prefix("dashboard: ") {
                let url = rest
                    .split_whitespace()
                    .next()
                    .expect("url")
                    .trim_end_matches('/')
                    .to_string();
                return Daemon {
                    child,
                    url,
                    token,
                    http: reqwest::Client::new(),
                    log: rx,
                };
            }
            seen.push(line);
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("get");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("post");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `/api/drifts` until `pred` holds.
    async fn until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.get("/api/drifts").await;
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {v:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open(v: &Value) -> Vec<Value> {
    v["open"].as_array().cloned().unwrap_or_default()
}

fn args<'a>(e: &'a Env, state: &'a Path, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--kubeconfig".into(),
        e.kubeconfig.display().to_string(),
        "--desired".into(),
        e.manifests.display().to_string(),
        "-n".into(),
        "shop".into(),
        "--state-dir".into(),
        state.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| (*s).to_string()));
    a
}

/// A webhook receiver that refuses its first request (500) and keeps the bodies of the others.
async fn webhook() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = std::sync::Arc::default();
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let (g, c) = (got.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let (g, c) = (g.clone(), c.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                g.lock().expect("lock").push(v);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, got, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_fixes_with_a_token_metrics_parse_and_sigterm_loses_no_record() {
    let e = env("api", &[("web", 2), ("api", 3)]).await;
    let state = e.dir.join("state");
    let (hook, alerts, calls) = webhook().await;
    let a = args(&e, &state, &["--remediate", "cluster", "--webhook", &hook]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut d = Daemon::start(&a, &[]);
    d.until("ready", |v| v["ready"] == true).await;
    let health = d.get("/health").await;
    assert_eq!(health.0, 200, "{}", health.1);
    assert_eq!(d.get("/ready").await.0, 200);

    scale(&e.client, "web", 5).await;
    let v = d.until("a drift", |v| open(v).len() == 1).await;
    let drift = &open(&v)[0];
    assert_eq!(drift["drift"]["field"], "spec.replicas");
    let id = drift["drift"]["id"].as_str().expect("id").to_string();

    // Changes need the token.
    assert_eq!(d.post(&format!("/api/drifts/{id}/fix"), None).await.0, 401);
    assert_eq!(
        d.post(&format!("/api/drifts/{id}/fix"), Some("wrong")).await.0,
        401
    );
    assert_eq!(d.post("/api/drifts/d-nope/fix", Some(&d.token)).await.0, 404);
    let (code, body) = d.post(&format!("/api/drifts/{id}/fix"), Some(&d.token)).await;
    assert_eq!(code, 202, "{body}");
    d.until("the fix verified", |v| {
        open(v).is_empty() && v["stats"]["corrected"] == 1
    })
    .await;
    assert_eq!(replicas(&e.client, "web").await, 2, "live is back");
    // The alert ("auto-fix is off: fixing it needs approval") reached the webhook, retried after a 500.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alerts.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no alert delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alert = alerts.lock().expect("lock")[0].clone();
    assert_eq!(alert["driftId"], id.as_str(), "{alert:#}");
    assert_eq!(alert["field"], "spec.replicas");
    assert!(
        alert["reason"].as_str().unwrap_or_default().contains("approval"),
        "{alert:#}"
    );
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "retried after the 500"
    );

    // /metrics in the Prometheus text format.
    let text = d
        .http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let lines: Vec<Result<String, std::io::Error>> = text.lines().map(|l| Ok(l.to_string())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("parses as Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(x)
                | prometheus_parse::Value::Gauge(x)
                | prometheus_parse::Value::Untyped(x) => x,
                prometheus_parse::Value::Histogram(ref h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(value("drift_detector_drifts_detected_total", None), 1.0, "{text}");
    assert_eq!(
        value("drift_detector_fixes_total", Some(("result", "applied"))),
        1.0,
        "{text}"
    );
    assert_eq!(value("drift_detector_ready", None), 1.0);
    assert!(
        value("drift_detector_event_to_report_seconds", None) >= 1.0,
        "{text}"
    );
    assert!(value("drift_detector_events_processed_total", None) >= 2.0);

    // The history, with its patterns.
    let (_, h) = d.get("/api/history").await;
    assert_eq!(h["total"], 1);
    assert_eq!(h["records"][0]["state"], "corrected");
    assert!(h["perDay"].as_object().is_some_and(|m| !m.is_empty()));

    // SIGTERM while a new drift is open: its record is written before the process ends.
    scale(&e.client, "api", 1).await;
    d.until("a second drift", |v| open(v).len() == 1).await;
    d.signal("-TERM");
    assert_eq!(d.wait_exit(), 0, "{:#?}", d.logs());
    drop(d);
    let mut d2 = Daemon::start(&a, &[]);
    let v = d2
        .until("the open drift restored", |v| {
            open(v).len() == 1 && v["ready"] == true
        })
        .await;
    assert_eq!(open(&v)[0]["drift"]["resource"]["name"], "api");
    let (_, h) = d2.get("/api/history").await;
    assert_eq!(h["total"], 2, "both records survived: {h:#}");
    let api = h["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["drift"]["resource"]["name"] == "api")
        .expect("api record")
        .clone();
    let opened = api["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|t| t["kind"] == "opened")
        .count();
    assert_eq!(opened, 1, "not reported twice after the restart: {api:#}");
    d2.signal("-TERM");
    assert_eq!(d2.wait_exit(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flap_guard_stops_fighting_an_hpa_like_controller() {
    let e = env("flap", &[("web", 2)]).await;
    let state = e.dir.join("state");
    let config = e.dir.join("config.yaml");
    std::fs::write(&config, "flapGuard: {threshold: 2, windowMs: 600000}\nrateLimit: {perResource: 50, perResourceWindowMs: 60000, global: 100, globalWindowMs: 60000}\n").expect("config");
    let a = args(
        &e,
        &state,
        &[
            "--remediate",
            "cluster",
            "--auto-fix",
            "true",
            "--config",
            config.to_str().expect("path"),
        ],
    );
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let d = Daemon::start(&a, &[]);
    d.until("ready", |v| v["ready"] == true).await;
    // An HPA-like actor: whenever web is not at 5 replicas, it scales it back.
    let client = e.client.clone();
    let actor = tokio::spawn(async move {
        loop {
            if replicas(&client, "web").await != 5 {
                scale(&client, "web", 5).await;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let v = d
        .until("an escalation", |v| {
            open(v).iter().any(|o| o["state"] == "escalated")
        })
        .await;
    let o = &open(&v)[0];
    assert!(
        o["note"]
            .as_str()
            .unwrap_or_default()
            .contains("another controller"),
        "{o:#}"
    );
    assert_eq!(o["needsApproval"], true);
    let fixes = |t: &str| -> f64 {
        t.lines()
            .filter(|l| l.starts_with("drift_detector_fixes_total{result=\"applied\"}"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum()
    };
    let before = fixes(
        &d.http
            .get(format!("{}/metrics", d.url))
            .send()
            .await
            .expect("m")
            .text()
            .await
            .expect("t"),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = fixes(
        &d.http
            .get(format!("{}/metrics", d.url))
            .send()
            .await
            .expect("m")
            .text()
            .await
            .expect("t"),
    );
    assert_eq!(before, after, "no more fixes once escalated");
    assert!(before >= 2.0, "it fixed before giving up: {before}");
    assert!(
        v["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["escalation"] == true)),
        "an escalation alert"
    );
    actor.abort();
}

/// A GitOps agent on the simulator: every published Release is applied to the sandbox (server-side,
/// as `confighub-gitops`). Returns how many Releases it has applied.
fn gitops_agent(
    hub: &drift_confighub::fake::FakeHub,
    client: &kube::Client,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let applies = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (client, count) = (client.clone(), applies.clone());
    hub.on_release(std::sync::Arc::new(move |d| {
        let client = client.clone();
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            for u in d.units {
                let text = String::from_utf8(u.data).map_err(|e| e.to_string())?;
                for r in drift_core::parse_documents("u", &text).resources {
                    deploy_api(&client)
                        .patch(
                            &r.key.name,
                            &PatchParams::apply("confighub-gitops").force(),
                            &Patch::Apply(&r.object),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        })
    }));
    applies
}

/// A sandbox whose desired state is a ConfigHub space (`ha-prod`, one unit `web`, applied), in the fake
/// simulator, whose Releases land in the sandbox; and a counter of those syncs.
async fn hub_env(
    name: &str,
) -> (
    Env,
    drift_confighub::fake::FakeHub,
    drift_confighub::ConfigHubClient,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    usize,
) {
    use drift_confighub::fake::{FakeHub, FakeHubConfig};
    let e = env(name, &[]).await;
    // Desired state in the ConfigHub simulator, whose Releases a GitOps agent syncs into the sandbox.
    let hub = FakeHub::start(
        FakeHubConfig::default()
            .auto_target("k8s-sandbox")
            .sync_delay(Duration::from_millis(5)),
    )
    .await
    .expect("hub");
    let applies = gitops_agent(&hub, &e.client);
    let c = drift_confighub::ConfigHubClient::new(hub.client_config()).expect("client");
    let yaml = serde_json::to_string(&deployment("web", 2)).expect("yaml");
    drift_confighub::setup::deploy_test_workloads(&c, "ha", "ha-prod", &yaml)
        .await
        .expect("units");
    drift_confighub::setup::connect_target(&c, "ha-prod", "k8s-sandbox")
        .await
        .expect("target");
    let r = drift_confighub::setup::publish_space(&c, "ha-prod", "test")
        .await
        .expect("publish");
    hub.wait_delivered(&r.release.release_id, Duration::from_secs(10))
        .await
        .expect("synced");
    let initial_applies = applies.load(std::sync::atomic::Ordering::SeqCst);

    (e, hub, c, applies, initial_applies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_a_takeover_without_duplicates() {
    let (e, hub, c, applies, initial_applies) = hub_env("leader").await;
    let start = |who: &str| {
        let state = e.dir.join(format!("state-{who}"));
        let a: Vec<String> = vec![
            "--kubeconfig".into(),
            e.kubeconfig.display().to_string(),
            "-n".into(),
            "shop".into(),
            "--cub-space".into(),
            "ha-prod".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--leader-elect".into(),
            "--lease-namespace".into(),
            "shop".into(),
            "--lease-seconds".into(),
            "2".into(),
            "--identity".into(),
            who.into(),
        ];
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Daemon::start(&a, &[("CUB_API_URL", &hub.url()), ("CUB_TOKEN", &hub.token())])
    };
    let a = start("replica-a");
    let b = start("replica-b");
    let leader_of = |v: &Value| v["leader"] == true;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut leader, standby) = loop {
        let (va, vb) = (a.get("/api/drifts").await.1, b.get("/api/drifts").await.1);
        match (
            leader_of(&va) && va["ready"] == true,
            leader_of(&vb) && vb["ready"] == true,
        ) {
            (true, false) if vb["ready"] == true => break (a, b),
            (false, true) if va["ready"] == true => break (b, a),
            (true, true) => panic!("two leaders"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no single leader: {va:#} {vb:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A drift: both see it; only the leader writes it.
    scale(&e.client, "web", 6).await;
    leader.until("the leader sees it", |v| open(v).len() == 1).await;
    standby.until("the standby sees it", |v| open(v).len() == 1).await;
    let records = || async {
        let log = drift_confighub::ConfigHubDriftLog::connect(c.clone(), "ha-prod-drift-records")
            .await
            .expect("log");
        drift_core::ports::DriftLog::records(&log, &drift_core::ports::HistoryQuery::default())
            .await
            .expect("records")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while records().await.is_empty() {
        assert!(Instant::now() < deadline, "the leader never wrote the record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The standby refuses fixes.
    let id = open(&standby.get("/api/drifts").await.1)[0]["drift"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        standby
            .post(&format!("/api/drifts/{id}/fix"), Some(&standby.token))
            .await
            .0,
        409
    );

    // The leader dies without a word; the standby takes over and fixes it, once.
    leader.signal("-KILL");
    leader.wait_exit();
    let new_leader = standby;
    new_leader.until("the takeover", |v| v["leader"] == true).await;
    let (code, body) = new_leader
        .post(&format!("/api/drifts/{id}/fix"), Some(&new_leader.token))
        .await;
    assert_eq!(code, 202, "{body}");
    new_leader.until("corrected", |v| open(v).is_empty()).await;
    assert_eq!(replicas(&e.client, "web").await, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let rs = records().await;
        if rs.len() == 1 && rs[0].state == drift_core::ports::DriftState::Corrected {
            break rs[0].clone();
        }
        assert!(Instant::now() < deadline, "the record was not corrected: {rs:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let kinds: Vec<&str> = record.timeline.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "opened").count(),
        1,
        "reported once: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "remediated").count(),
        1,
        "fixed once: {kinds:?}"
    );
    assert_eq!(
        applies.load(std::sync::atomic::Ordering::SeqCst) - initial_applies,
        0,
        "the fix is the guarded patch of the drifted field, not a Release of the whole space"
    );
    let space = c.require_space("ha-prod").await.expect("space");
    let unit = c
        .list_units(&space.space_id, &drift_confighub::UnitQuery::default())
        .await
        .expect("units")
        .remove(0)
        .unit;
    let audit = unit
        .annotations
        .get(drift_confighub::AUDIT_ANNOTATION)
        .expect("the audit line is recorded in ConfigHub");
    assert!(audit.contains("applied"), "{audit}");
}

/// Chromium and chromedriver, or a reason to skip (never skipped in CI: `.ci/run` installs them).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.exists());
    let chrome = find(&[
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]);
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    match (chrome, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if std::env::var("CI").is_ok() => {
            panic!("Chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)")
        }
        _ => None,
    }
}

struct WebDriver {
    http: reqwest::Client,
    base: String,
    session: String,
    process: Child,
}

impl WebDriver {
    async fn start(chrome: &Path, driver: &Path) -> WebDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let process = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let profile = std::env::temp_dir().join(format!("drift-chrome-{}", std::process::id()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chrome,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display())]}}}});
        let deadline = Instant::now() + Duration::from_secs(20);
        let session = loop {
            if let Ok(r) = http.post(format!("{base}/session")).json(&caps).send().await {
                let v: Value = r.json().await.expect("session");
                match v["value"]["sessionId"].as_str() {
                    Some(s) => break s.to_string(),
                    None => panic!("no browser session: {v:#}"),
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        WebDriver {
            http,
            base,
            session,
            process,
        }
    }
    async fn cmd(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/session/{}/{path}", self.base, self.session))
            .json(&body)
            .send()
            .await
            .expect("webdriver");
        let v: Value = r.json().await.expect("json");
        v["value"].clone()
    }
    async fn js(&self, script: &str) -> Value {
        self.cmd("execute/sync", json!({"script": script, "args": []}))
            .await
    }
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.js(script).await;
            if v != Value::Null && v != false && v != json!(0) {
                return v;
            }
            let page = self.js("return document.body.innerText").await;
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page says:\n{}",
                page.as_str().unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        // Close the session first: chromedriver then quits the browser. Killing chromedriver alone
        // leaves the browser running, orphaned (a plain request: no runtime is needed in Drop).
        use std::io::{Read as _, Write as _};
        let addr = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium_fixes_two_drifts_live() {
    let Some((chrome, driver)) = browser() else {
        eprintln!(
            "SKIPPED the_dashboard_in_headless_chromium: no chromium/chromedriver here (CI installs them)"
        );
        return;
    };
    let e = env("browser", &[("web", 2), ("api", 3)]).await;
    let state = e.dir.join("state");
    let a = args(&e, &state, &["--remediate", "cluster"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let d = Daemon::start(&a, &[]);
    d.until("ready", |v| v["ready"] == true).await;
    scale(&e.client, "web", 4).await;
    scale(&e.client, "api", 1).await;
    d.until("two drifts", |v| open(v).len() == 2).await;

    let wd = WebDriver::start(&chrome, &driver).await;
    wd.cmd("url", json!({"url": format!("{}/", d.url)})).await;
    wd.until(
        "two drift rows",
        "return document.querySelectorAll('tr.drift').length === 2",
    )
    .await;
    wd.js("window.__sameDocument = 'yes'; return true").await;
    // Without the token the server refuses, and the page says so.
    wd.js("document.querySelector('button.fix').click(); return true")
        .await;
    wd.until(
        "the refusal",
        "return /token/i.test(document.getElementById('msg').textContent)",
    )
    .await;
    assert_eq!(
        wd.js("return document.querySelectorAll('tr.drift').length").await,
        2
    );
    // With the token: fix both.
    wd.js(&format!("const t = document.getElementById('token'); t.value = '{}'; t.dispatchEvent(new Event('change')); return true", d.token)).await;
    wd.js("document.querySelectorAll('button.fix').forEach(b => b.click()); return true")
        .await;
    wd.until(
        "no drift rows",
        "return document.querySelectorAll('tr.drift').length === 0",
    )
    .await;
    wd.until(
        "two corrected events",
        "return document.querySelectorAll('li.event[data-kind=\"corrected\"]').length === 2",
    )
    .await;
    assert_eq!(
        wd.js("return window.__sameDocument").await,
        "yes",
        "updated live, without a reload"
    );
    assert_eq!(
        (replicas(&e.client, "web").await, replicas(&e.client, "api").await),
        (2, 3)
    );
    let _ = e.sandbox.object("apps", "deployments", Some("shop"), "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confighub_outage_and_a_restart_lose_no_drift_record() {
    use drift_confighub::fake::Faults;
    let (e, hub, c, _, _) = hub_env("outage").await;
    let state = e.dir.join("state");
    let a: Vec<String> = vec![
        "--kubeconfig".into(),
        e.kubeconfig.display().to_string(),
        "-n".into(),
        "shop".into(),
        "--cub-space".into(),
        "ha-prod".into(),
        "--state-dir".into(),
        state.display().to_string(),
    ];
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let envs = [("CUB_API_URL", hub.url()), ("CUB_TOKEN", hub.token())];
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut d = Daemon::start(&a, &envs);
    d.until("ready", |v| v["ready"] == true).await;

    // ConfigHub refuses every write; the drift is detected anyway and waits in the spool.
    hub.set_faults(Faults::none().error_500(1.0).writes_only(true));
    scale(&e.client, "web", 7).await;
    d.until("the drift, spooled", |v| {
        open(v).len() == 1 && v["spooled"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let records = || async {
        let space = c
            .require_space("ha-prod-drift-records")
            .await
            .expect("records space");
        c.list_units(&space.space_id, &drift_confighub::UnitQuery::default())
            .await
            .expect("units")
            .len()
    };
    assert_eq!(records().await, 0, "nothing reached ConfigHub yet");

    // Stopped during the outage: the event stays in the spool on disk.
    d.signal("-TERM");
    assert_eq!(d.wait_exit(), 0);
    drop(d);

    // ConfigHub is back; the next start writes it, once.
    hub.set_faults(Faults::none());
    let d2 = Daemon::start(&a, &envs);
    let deadline = Instant::now() + Duration::from_secs(20);
    while records().await == 0 {
        assert!(
            Instant::now() < deadline,
            "the spooled record never reached ConfigHub"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d2.until("the spool drained", |v| v["spooled"] == 0 && open(v).len() == 1)
        .await;
    let log = drift_confighub::ConfigHubDriftLog::connect(c.clone(), "ha-prod-drift-records")
        .await
        .expect("log");
    let rs = drift_core::ports::DriftLog::records(&log, &drift_core::ports::HistoryQuery::default())
        .await
        .expect("records");
    assert_eq!(rs.len(), 1);
    let opened = rs[0]
        .timeline
        .iter()
        .filter(|t| t.kind == drift_core::ports::DriftEventKind::Opened)
        .count();
    assert_eq!(opened, 1, "{:?}", rs[0].timeline);
    assert_eq!(rs[0].drift.actual, Some(json!(7)));
}

/// Hostile clients: 300 connections that never finish their headers, more event streams than allowed,
/// then SIGTERM while streams are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_holds_against_stalled_clients_and_sigterm_ends_open_streams() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let e = env("hostile", &[("web", 2)]).await;
    let state = e.dir.join("state");
    let a = args(&e, &state, &["--max-event-streams", "2"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut d = Daemon::start(&a, &[]);
    d.until("ready", |v| v["ready"] == true).await;
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        if i % 2 == 0 {
            // Half a request, then nothing.
            let _ = s.write_all(b"GET /api/drifts HTTP/1.1\r\nHost: x\r\n").await;
        }
        stalled.push(s);
    }
    // The probe still gets through while they hang.
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let r = probe
        .get(format!("{}/health", d.url))
        .send()
        .await
        .expect("/health answers");
    assert_eq!(r.status(), 200);
    // The server closes them once their time to send headers is up (5 s), instead of holding them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut closed = 0;
    for s in &mut stalled {
        let mut buf = [0u8; 256];
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(_) | Err(_)) => closed += 1,
            Err(_) => break,
        }
    }
    assert_eq!(closed, 300, "stalled connections are dropped by the server");
    // Two event streams are served; a third is refused, not queued.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let r = d
            .http
            .get(format!("{}/api/events", d.url))
            .send()
            .await
            .expect("stream");
        assert_eq!(r.status(), 200);
        streams.push(r);
    }
    let third = d
        .http
        .get(format!("{}/api/events", d.url))
        .send()
        .await
        .expect("third");
    assert_eq!(third.status(), 503);
    // SIGTERM with the streams open: the daemon stops (the streams end), exit 0.
    d.signal("-TERM");
    assert_eq!(d.wait_exit(), 0);
    drop(streams);
}

/// Beyond loopback the API's reads need the token; the scheme's case does not matter; an empty token
/// is an error, not a random one; a generated token goes to a private file, not to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_reads_beyond_loopback_and_never_reach_the_log() {
    let e = env("tokens", &[("web", 2)]).await;
    let state = e.dir.join("state");
    let a = args(&e, &state, &["--listen", "0.0.0.0:0"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let d = Daemon::start(&a, &[]);
    assert_eq!(
        d.get("/api/drifts").await.0,
        401,
        "reads need the token beyond loopback"
    );
    assert_eq!(d.get("/health").await.0, 200, "probes stay open");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = d
            .http
            .get(format!("{}/api/drifts", d.url))
            .header("authorization", format!("{scheme} {}", d.token))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{scheme}");
    }
    drop(d);

    // An empty DRIFT_DASHBOARD_TOKEN is a mistake to report, not a reason to make one up.
    let out = Command::new(BIN)
        .arg("watch")
        .args(args(&e, &state, &[]))
        .env("DRIFT_DASHBOARD_TOKEN", "")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set but empty"));

    // Generated: in a 0600 file in the 0700 state directory; the log says where, not what.
    let gen_state = e.dir.join("generated");
    let mut cmd = Command::new(BIN);
    cmd.arg("watch")
        .args(args(&e, &gen_state, &["--listen", "127.0.0.1:0"]))
        .env_remove("DRIFT_DASHBOARD_TOKEN")
        .env_remove("KUBECONFIG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("dashboard: "))
        .expect("the dashboard line");
    let _ = child.kill();
    let _ = child.wait();
    let file = gen_state.join("dashboard.token");
    let token = std::fs::read_to_string(&file)
        .expect("token file")
        .trim()
        .to_string();
    assert_eq!(token.len(), 32);
    assert!(!line.contains(&token), "{line}");
    assert!(line.contains("dashboard.token"), "{line}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&gen_state), 0o700);
        assert_eq!(mode(&gen_state.join("drift-detector.db")), 0o600);
    }
}

/// ConfigHub unreachable at start: the daemon is alive (`/health` 200), not ready, and retries; once
/// ConfigHub answers it loads the desired state, becomes ready and detects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confighub_down_at_start_means_alive_not_ready_then_recovers() {
    use drift_confighub::fake::{FakeHub, FakeHubConfig};
    let e = env("hub-down", &[]).await;
    // A port with nothing on it, for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}/api");
    let state = e.dir.join("state");
    let a: Vec<String> = vec![
        "--kubeconfig".into(),
        e.kubeconfig.display().to_string(),
        "-n".into(),
        "shop".into(),
        "--cub-space".into(),
        "ha-prod".into(),
        "--state-dir".into(),
        state.display().to_string(),
    ];
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let d = Daemon::start(
        &a,
        &[("CUB_API_URL", &url), ("CUB_TOKEN", "fake-confighub-token")],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (h, _) = d.get("/health").await;
        if h == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        d.get("/ready").await.0,
        503,
        "not ready without the desired state"
    );
    // ConfigHub comes up, with the desired state.
    let hub = FakeHub::start(
        FakeHubConfig::default()
            .port(port)
            .auto_target("k8s-sandbox")
            .sync_delay(Duration::from_millis(5)),
    )
    .await
    .expect("hub");
    gitops_agent(&hub, &e.client);
    let c = drift_confighub::ConfigHubClient::new(hub.client_config()).expect("client");
    let yaml = serde_json::to_string(&deployment("web", 2)).expect("yaml");
    drift_confighub::setup::deploy_test_workloads(&c, "ha", "ha-prod", &yaml)
        .await
        .expect("units");
    let r = drift_confighub::setup::publish_space(&c, "ha-prod", "test")
        .await
        .expect("publish");
    hub.wait_delivered(&r.release.release_id, Duration::from_secs(10))
        .await
        .expect("synced");
    let deadline = Instant::now() + Duration::from_secs(40);
    while d.get("/ready").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never became ready after ConfigHub came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    scale(&e.client, "web", 4).await;
    d.until("the drift", |v| open(v).len() == 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = drift_confighub::ConfigHubDriftLog::connect(c.clone(), "ha-prod-drift-records")
            .await
            .expect("log");
        let rs = drift_core::ports::DriftLog::records(&log, &drift_core::ports::HistoryQuery::default())
            .await
            .expect("records");
        if rs.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the record never reached ConfigHub");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Unattended, through ConfigHub: the replica drift is fixed with a patch of that field alone; the
/// critical image drift on the same Deployment waits for a person, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unattended_fix_never_touches_a_critical_drift_awaiting_approval() {
    let (e, hub, c, applies, initial) = hub_env("scoped").await;
    let state = e.dir.join("state");
    let a: Vec<String> = vec![
        "--kubeconfig".into(),
        e.kubeconfig.display().to_string(),
        "-n".into(),
        "shop".into(),
        "--cub-space".into(),
        "ha-prod".into(),
        "--state-dir".into(),
        state.display().to_string(),
        "--auto-fix".into(),
        "true".into(),
        "--remediate".into(),
        "confighub".into(),
    ];
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let d = Daemon::start(&a, &[("CUB_API_URL", &hub.url()), ("CUB_TOKEN", &hub.token())]);
    d.until("ready", |v| v["ready"] == true).await;
    // Someone swaps the image (critical: held for approval)...
    deploy_api(&e.client)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                    "value": "evil.example/backdoor:latest"}]),
                )
                .expect("patch"),
            ),
        )
        .await
        .expect("set image");
    d.until("the image drift, held", |v| {
        open(v)
            .iter()
            .any(|o| o["drift"]["path"].as_str().is_some_and(|p| p.contains("image")))
    })
    .await;
    // ...then scales it (auto-correctable: fixed unattended).
    scale(&e.client, "web", 7).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while replicas(&e.client, "web").await != 2 {
        assert!(Instant::now() < deadline, "the replica drift was not fixed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let live = deploy_api(&e.client).get("web").await.expect("get").data;
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"], "evil.example/backdoor:latest",
        "the unapproved critical drift was not touched by the other fix"
    );
    let v = d.get("/api/drifts").await.1;
    let still: Vec<Value> = open(&v);
    assert_eq!(still.len(), 1, "{still:#?}");
    assert!(
        still[0]["drift"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("image"))
    );
    assert_eq!(
        applies.load(std::sync::atomic::Ordering::SeqCst),
        initial,
        "no Release (no whole-space apply) was made for the fix"
    );
    let _ = c;
}

const BACKUP_CRD: &str = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "backups.ops.example.com"},
  "spec": {"group": "ops.example.com", "names": {"kind": "Backup", "plural": "backups"}, "scope": "Namespaced",
    "versions": [{"name": "v1", "served": true, "storage": true,
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "schedule": {"type": "string"}, "retainDays": {"type": "integer", "default": 7}}}}}}}]}}"#;
const BACKUP: &str = r#"{"apiVersion": "ops.example.com/v1", "kind": "Backup",
  "metadata": {"name": "nightly", "namespace": "shop"}, "spec": {"schedule": "0 3 * * *"}}"#;

fn backup_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ops.example.com", "v1", "Backup"),
        "backups",
    );
    Api::namespaced_with(client.clone(), "shop", &ar)
}

/// The Backup CRD and one Backup in the cluster, the Backup in the manifests too.
async fn with_backup(e: &Env) {
    let crd_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    );
    Api::<DynamicObject>::all_with(e.client.clone(), &crd_ar)
        .create(
            &PostParams::default(),
            &serde_json::from_str(BACKUP_CRD).expect("crd"),
        )
        .await
        .expect("crd");
    backup_api(&e.client)
        .create(&PostParams::default(), &serde_json::from_str(BACKUP).expect("cr"))
        .await
        .expect("cr");
    std::fs::write(e.manifests.join("backup.json"), BACKUP).expect("write");
}

/// A custom resource in the manifests: the daemon watches its kind (found through discovery) without
/// being told, knows its CRD's schema defaults, and reports a patch of one field as that drift; a
/// custom kind the cluster does not serve is "not watched", never missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_watches_the_custom_kinds_its_desired_state_names() {
    let e = env("crd", &[("web", 2)]).await;
    with_backup(&e).await;
    // A kind no CRD defines.
    std::fs::write(
        e.manifests.join("cert.json"),
        r#"{"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "web-tls", "namespace": "shop"}, "spec": {"secretName": "web-tls"}}"#,
    )
    .expect("write");
    let state = e.dir.join("state");
    let a = args(&e, &state, &[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let d = Daemon::start(&a, &[]);
    let v = d
        .until("the Certificate is not watched and nothing is open", |v| {
            v["ready"] == true
                && v["notWatched"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|x| x.to_string().contains("web-tls")))
        })
        .await;
    assert!(open(&v).is_empty(), "in sync as applied: {v}");
    backup_api(&e.client)
        .patch(
            "nightly",
            &PatchParams {
                field_manager: Some("kubectl-patch".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"retainDays": 1}})),
        )
        .await
        .expect("patch");
    let v = d
        .until("the custom resource's drift", |v| !open(v).is_empty())
        .await;
    let drifts: Vec<String> = open(&v)
        .iter()
        .map(|o| {
            format!(
                "{} {} {} {} {}",
                o["drift"]["resource"]["kind"].as_str().unwrap_or("?"),
                o["drift"]["field"].as_str().unwrap_or("?"),
                o["drift"]["expected"],
                o["drift"]["actual"],
                o["drift"]["actor"]["manager"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(drifts, ["Backup spec.retainDays 7 1 kubectl-patch"], "{v}");
}

/// `scan` compares custom resources with their CRD's defaults, and says which objects it could not
/// judge because the cluster does not serve their kind (exit 2), instead of calling them missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_judges_custom_resources_and_names_unserved_kinds() {
    let e = env("scan-crd", &[("web", 2)]).await;
    with_backup(&e).await;
    let scan = |dir: PathBuf, kubeconfig: PathBuf| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["scan", "--kubeconfig"])
                .arg(&kubeconfig)
                .arg("--desired")
                .arg(&dir)
                .args(["-n", "shop", "-o", "json"])
                .env_remove("KUBECONFIG")
                .output()
                .expect("scan")
        })
    };
    let out = scan(e.manifests.clone(), e.kubeconfig.clone())
        .await
        .expect("join");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["summary"]["inSync"], 2, "{v}");

    std::fs::write(
        e.manifests.join("cert.json"),
        r#"{"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "web-tls", "namespace": "shop"}, "spec": {"secretName": "web-tls"}}"#,
    )
    .expect("write");
    let out = scan(e.manifests.clone(), e.kubeconfig.clone())
        .await
        .expect("join");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert_eq!(v["summary"]["missingLive"], 0, "{v}");
    let errors = v["errors"].to_string();
    assert!(
        errors.contains(
            "Certificate.cert-manager.io: not served by this cluster; 1 desired object not compared"
        ),
        "{errors}"
    );
}

/// `watch --sharding`: two replicas split eight namespaces (each watches only its own), every drift is
/// reported by exactly one of them, and when one is killed the other takes all eight within 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sharded_replicas_split_eight_namespaces_and_one_takes_over() {
    let e = env("shard", &[]).await;
    let namespaces: Vec<String> = (0..8).map(|i| format!("team-{i}")).collect();
    let ns_ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces");
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments");
    let mut docs = Vec::new();
    for ns in namespaces.iter().map(String::as_str).chain(["drift-system"]) {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        Api::<DynamicObject>::all_with(e.client.clone(), &ns_ar)
            .create(&PostParams::default(), &serde_json::from_value(obj).expect("ns"))
            .await
            .expect("namespace");
    }
    for ns in &namespaces {
        let mut d = deployment("web", 2);
        d["metadata"]["namespace"] = json!(ns);
        create(&Api::namespaced_with(e.client.clone(), ns, &ar), &d).await;
        docs.push(d);
    }
    std::fs::write(
        e.manifests.join("apps.json"),
        serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": docs})).expect("json"),
    )
    .expect("write");
    let start = |who: &str| {
        let state = e.dir.join(format!("state-{who}"));
        let a: Vec<String> = [
            "--kubeconfig",
            &e.kubeconfig.display().to_string(),
            "--desired",
            &e.manifests.display().to_string(),
            "--state-dir",
            &state.display().to_string(),
            "--sharding",
            "--lease-namespace",
            "drift-system",
            "--lease-seconds",
            "3",
            "--identity",
            who,
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Daemon::start(&a, &[])
    };
    let a = start("replica-a");
    let mut b = start("replica-b");
    let shard_of = |v: &Value| -> Vec<String> {
        v["shard"]["namespaces"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    // Both settle on two members and split the eight namespaces, each held once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (sa, sb) = loop {
        let (va, vb) = (a.get("/api/drifts").await.1, b.get("/api/drifts").await.1);
        let (sa, sb) = (shard_of(&va), shard_of(&vb));
        let two = |v: &Value| v["shard"]["members"].as_array().map(Vec::len) == Some(2);
        if two(&va) && two(&vb) && va["ready"] == true && vb["ready"] == true && sa.len() + sb.len() == 8 {
            break (sa, sb);
        }
        assert!(Instant::now() < deadline, "no split: {va:#} {vb:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut all: Vec<String> = sa.iter().chain(&sb).cloned().collect();
    all.sort();
    assert_eq!(
        all, namespaces,
        "every namespace held by exactly one replica: {sa:?} {sb:?}"
    );
    assert!(
        !sa.is_empty() && !sb.is_empty(),
        "both hold a part: {sa:?} {sb:?}"
    );
    // Give the new namespace watches a moment to list, then drift every namespace.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ns in &namespaces {
        Api::<DynamicObject>::namespaced_with(e.client.clone(), ns, &ar)
            .patch_scale(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 5}})),
            )
            .await
            .expect("scale");
    }
    let drifted_namespaces = |v: &Value| -> Vec<String> {
        open(v)
            .iter()
            .filter_map(|o| o["drift"]["resource"]["namespace"].as_str().map(str::to_string))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (va, vb) = (a.get("/api/drifts").await.1, b.get("/api/drifts").await.1);
        let (da, db) = (drifted_namespaces(&va), drifted_namespaces(&vb));
        if da.len() + db.len() >= 8 {
            // Each replica reports its own namespaces' drifts, and only those.
            let mut both: Vec<String> = da.iter().chain(&db).cloned().collect();
            both.sort();
            assert_eq!(
                both, namespaces,
                "a drift reported twice or missed: {da:?} {db:?}"
            );
            assert!(da.iter().all(|n| sa.contains(n)), "{da:?} outside {sa:?}");
            assert!(db.iter().all(|n| sb.contains(n)), "{db:?} outside {sb:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drifts not all reported: {da:?} {db:?}\n{va:#}\n{:#?}",
            a.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each drift opened once in the two histories together (each replica writes its own).
    let opened = |v: &Value| -> usize {
        v["records"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .flat_map(|r| r["timeline"].as_array().cloned().unwrap_or_default())
                    .filter(|t| t["kind"] == "opened")
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ha, hb) = (
            opened(&a.get("/api/history").await.1),
            opened(&b.get("/api/history").await.1),
        );
        assert!(ha + hb <= 8, "a drift opened twice: {ha} + {hb}");
        if ha + hb == 8 {
            break;
        }
        assert!(Instant::now() < deadline, "history: {ha} + {hb} opened");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let metrics = reqwest::get(format!("{}/metrics", a.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!("drift_detector_shard_namespaces {}", sa.len())),
        "{metrics}"
    );

    // Kill b without a word: a takes all eight within 30 s, and reports b's drifts.
    b.signal("-KILL");
    b.wait_exit();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(30);
    loop {
        let va = a.get("/api/drifts").await.1;
        let mut d = drifted_namespaces(&va);
        d.sort();
        if shard_of(&va) == namespaces && d == namespaces {
            break;
        }
        assert!(Instant::now() < deadline, "no takeover within 30 s: {va:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("takeover of all eight namespaces in {:?}", killed.elapsed());
}

/// A sharded replica that cannot renew its membership Lease (the API server is gone) gives up its
/// namespaces before the others would count it dead and take them: never two owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_replica_that_cannot_renew_gives_up_its_namespaces() {
    let e = env("shard-down", &[("web", 2)]).await;
    let state = e.dir.join("state");
    let a = args(
        &e,
        &state,
        &[
            "--sharding",
            "--lease-namespace",
            "shop",
            "--lease-seconds",
            "3",
            "--identity",
            "solo",
        ],
    );
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let d = Daemon::start(&a, &[]);
    let held = |v: &Value| v["shard"]["namespaces"].as_array().cloned().unwrap_or_default();
    d.until("the shard holds shop", |v| held(v) == [json!("shop")])
        .await;
    let Env { sandbox, .. } = e;
    sandbox.shutdown().await;
    let t = Instant::now();
    d.until("the shard is given up", |v| held(v).is_empty()).await;
    eprintln!(
        "gave up its namespaces {:?} after the API server went away",
        t.elapsed()
    );
}
