//! The detector end to end at scale (issue #12, "the moonshot").
//!
//! `cargo run --release -p drift-benches --bin scale -- --objects N`
//!
//! 1. Starts the sandbox API server in a process of its own holding N objects (Deployments, Services
//!    and ConfigMaps across 100 namespaces), seeded in process (no HTTP) through the same create path
//!    as a request.
//! 2. Writes the same objects as the desired state and runs the real `drift-detector watch` in
//!    another process against the sandbox over HTTP; waits until it is ready (`/ready`).
//! 3. Makes 1,000 kubectl-style edits (`kubectl scale` of a Deployment, `kubectl patch` of a
//!    ConfigMap), each on another object, at a steady pace, and times each from the write's answer
//!    to the detector's report of it on its event stream (`/api/events`).
//! 4. Prints, as its last line,
//!    `objects=N ready_s=X detector_rss_mb=Y p50_ms=Z p99_ms=W` (RSS: the detector's peak, VmHWM).
//!
//! Options: `--edits 1000`, `--rate 100` (edits per second), `--namespaces 100`,
//! `--detector PATH` (default: `drift-detector` beside this binary, built if missing).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark: its output is the report

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drift_kube::sandbox::{Sandbox, SandboxConfig};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Args {
    objects: usize,
    edits: usize,
    rate: f64,
    namespaces: usize,
    detector: Option<PathBuf>,
    serve_sandbox: Option<PathBuf>,
    /// Time `drift-detector scan` (one pass) instead of the daemon.
    scan: bool,
}

const USAGE: &str =
    "usage: scale --objects N [--edits 1000] [--rate 100] [--namespaces 100] [--detector PATH] [--scan]
Runs the sandbox API server with N objects and `drift-detector watch` against it, makes the
edits, and prints: objects=N ready_s=X detector_rss_mb=Y p50_ms=Z p99_ms=W
With --scan, times one `drift-detector scan` of the same objects instead and prints:
objects=N scan_s=X scan_rss_mb=Y exit=Z";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        objects: 10_000,
        edits: 1_000,
        rate: 100.0,
        namespaces: 100,
        detector: None,
        serve_sandbox: None,
        scan: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--objects" => a.objects = number(value()?)?,
            "--edits" => a.edits = number(value()?)?,
            "--rate" => a.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--namespaces" => a.namespaces = number(value()?)?,
            "--detector" => a.detector = Some(value()?.into()),
            "--serve-sandbox" => a.serve_sandbox = Some(value()?.into()),
            "--scan" => a.scan = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.objects == 0 || a.namespaces == 0 || a.rate <= 0.0 {
        return Err("--objects, --namespaces and --rate must be positive".into());
    }
    Ok(a)
}

/// Object `i` of the set: a Deployment, a Service or a ConfigMap, in namespace `ns-(i % namespaces)`.
fn object(i: usize, namespaces: usize) -> Value {
    let ns = format!("ns-{}", i % namespaces);
    let name = format!("obj-{i}");
    match i % 3 {
        0 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                        "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}}),
        1 => json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": format!("obj-{}", i - 1)}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        _ => json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"LOG_LEVEL": "info", "FEATURE_X": "on"}}),
    }
}

/// The sandbox process: seeds the objects, writes the kubeconfig, serves until killed.
fn serve_sandbox(args: &Args, kubeconfig: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // The history must hold the seeding's events, or every watch would start with a 410.
        let config = SandboxConfig::default().history(args.objects * 3 + 100_000);
        let sandbox = Sandbox::start(config).await.expect("sandbox");
        let t = Instant::now();
        for n in 0..args.namespaces {
            sandbox
                .create(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{n}")}}),
                    "scale-seed",
                )
                .expect("namespace");
        }
        for i in 0..args.objects {
            sandbox
                .create(object(i, args.namespaces), "kubectl-client-side-apply")
                .unwrap_or_else(|e| panic!("seeding object {i}: {e}"));
        }
        eprintln!("sandbox: {} objects seeded in {:.1?}", args.objects, t.elapsed());
        let tmp = kubeconfig.with_extension("tmp");
        sandbox.write_kubeconfig(&tmp).expect("kubeconfig");
        std::fs::rename(&tmp, kubeconfig).expect("kubeconfig");
        std::future::pending::<()>().await;
    });
}

/// Kills and reaps a child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn detector_binary(args: &Args) -> Result<PathBuf, String> {
    if let Some(p) = &args.detector {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().expect("current exe");
    let beside = exe.with_file_name("drift-detector");
    if !beside.exists() {
        eprintln!("building drift-detector (release) beside this binary...");
        let release = exe
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut c = Command::new(cargo);
        c.args(["build", "-p", "drift-detector"]);
        if release {
            c.arg("--release");
        }
        let ok = c.status().is_ok_and(|s| s.success());
        if !ok || !beside.exists() {
            return Err("could not build drift-detector; pass --detector PATH".into());
        }
    }
    Ok(beside)
}

fn vm_hwm_mb(pid: u32) -> f64 {
    vm_mb(pid, "VmHWM:")
}

fn vm_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(kubeconfig) = &args.serve_sandbox {
        serve_sandbox(&args, kubeconfig);
        return std::process::ExitCode::SUCCESS;
    }
    drift_kube::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("drift-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("desired")).expect("dir");
    let kubeconfig = dir.join("kubeconfig");
    let detector = match detector_binary(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };

    eprintln!("starting the sandbox with {} objects...", args.objects);
    let exe = std::env::current_exe().expect("exe");
    let sandbox = Reaped(
        Command::new(exe)
            .args([
                "--objects",
                &args.objects.to_string(),
                "--namespaces",
                &args.namespaces.to_string(),
                "--serve-sandbox",
                &kubeconfig.display().to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("sandbox process"),
    );
    // The desired state: the same objects, as one JSON list (what `kubectl get -o json` writes).
    let items: Vec<Value> = (0..args.objects).map(|i| object(i, args.namespaces)).collect();
    std::fs::write(
        dir.join("desired/objects.json"),
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )
    .expect("desired");
    drop(items);
    while !kubeconfig.exists() {
        std::thread::sleep(Duration::from_millis(50));
    }

    let line = if args.scan {
        scan_once(&args, &detector, &dir, &kubeconfig)
    } else {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(run(&args, &detector, &dir, &kubeconfig))
    };
    drop(sandbox);
    let _ = std::fs::remove_dir_all(&dir);
    println!("{line}");
    std::process::ExitCode::SUCCESS
}

/// `drift-detector <sub>` against the sandbox with the objects as its desired state, quiet, and
/// with nothing from the environment pointing it elsewhere.
fn detector_command(detector: &Path, sub: &str, dir: &Path, kubeconfig: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(detector);
    c.arg(sub)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--desired")
        .arg(dir.join("desired"))
        .args(extra)
        .env("RUST_LOG", "error")
        .env_remove("KUBECONFIG")
        .env_remove("CUB_TOKEN")
        .env_remove("CLAUDE_API_KEY")
        .stdout(Stdio::null());
    c
}

/// One `drift-detector scan` of the objects: its wall time and peak RSS (VmHWM, read until it exits).
fn scan_once(args: &Args, detector: &Path, dir: &Path, kubeconfig: &Path) -> String {
    let started = Instant::now();
    let mut child = detector_command(detector, "scan", dir, kubeconfig, &["--output", "json"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("drift-detector scan");
    let pid = child.id();
    let mut peak = 0.0f64;
    let code = loop {
        let hwm = vm_hwm_mb(pid);
        if hwm.is_finite() {
            peak = peak.max(hwm);
        }
        if let Ok(Some(status)) = child.try_wait() {
            break status.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    format!(
        "objects={} scan_s={:.2} scan_rss_mb={peak:.0} exit={code}",
        args.objects,
        started.elapsed().as_secs_f64()
    )
}

async fn run(args: &Args, detector: &Path, dir: &Path, kubeconfig: &Path) -> String {
    let token = "scale-bench-token";
    let started = Instant::now();
    let state = dir.join("state").display().to_string();
    let mut child = detector_command(
        detector,
        "watch",
        dir,
        kubeconfig,
        &[
            "--state-dir",
            &state,
            "--listen",
            "127.0.0.1:0",
            "--kube-events",
            "false",
        ],
    )
    .env("DRIFT_DASHBOARD_TOKEN", token)
    .stderr(Stdio::piped())
    .spawn()
    .expect("drift-detector watch");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let child = Reaped(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let url = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the detector printed no dashboard line");
        if let Some(rest) = l.strip_prefix("dashboard: ") {
            break rest
                .split_whitespace()
                .next()
                .expect("url")
                .trim_end_matches('/')
                .to_string();
        }
        eprintln!("detector: {l}");
    };
    // The detector's own warnings go on being shown.
    std::thread::spawn(move || {
        for l in rx {
            eprintln!("detector: {l}");
        }
    });
    let http = reqwest::Client::new();
    let mut last_report = Instant::now();
    loop {
        if std::env::var_os("SCALE_TRACE").is_some() && last_report.elapsed() > Duration::from_millis(500) {
            last_report = Instant::now();
            eprintln!(
                "  {:>6.1} s: detector rss {:.0} MB",
                started.elapsed().as_secs_f64(),
                vm_mb(pid, "VmRSS:")
            );
        }
        if let Ok(r) = http.get(format!("{url}/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the detector was not ready within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_s = started.elapsed().as_secs_f64();
    eprintln!(
        "ready in {ready_s:.2} s (rss {:.0} MB); {} edits at {}/s...",
        vm_hwm_mb(pid),
        args.edits,
        args.rate
    );

    // Reports as they come: the first "opened" of each object, when it arrived.
    let reported: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let events = http
        .get(format!("{url}/api/events"))
        .send()
        .await
        .expect("event stream");
    let r2 = reported.clone();
    tokio::spawn(async move {
        let mut events = events;
        let mut buf = String::new();
        while let Ok(Some(chunk)) = events.chunk().await {
            let now = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                    let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                        continue;
                    };
                    if v["type"] == "drift" && v["event"]["kind"] == "opened" {
                        let r = &v["event"]["drift"]["resource"];
                        let key = format!(
                            "{}/{}",
                            r["namespace"].as_str().unwrap_or(""),
                            r["name"].as_str().unwrap_or("")
                        );
                        r2.lock().expect("lock").entry(key).or_insert(now);
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("config"),
    )
    .expect("client");
    let deploy =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments");
    let cm = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps");
    // Distinct objects, spread over the set: Deployments (index % 3 == 0) and ConfigMaps (== 2).
    let targets: Vec<usize> = (0..args.objects).filter(|i| i % 3 != 1).collect();
    let step = (targets.len() / args.edits.max(1)).max(1);
    let mut answered: Vec<(String, Instant)> = Vec::with_capacity(args.edits);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut next = Instant::now();
    for k in 0..args.edits.min(targets.len()) {
        // Alternately a Deployment and a ConfigMap (neighbours in `targets`).
        let i = targets[(k * step + k % 2) % targets.len()];
        let ns = format!("ns-{}", i % args.namespaces);
        let name = format!("obj-{i}");
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let result = if i.is_multiple_of(3) {
            // kubectl scale deployment obj-i --replicas=5
            Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &deploy)
                .patch_scale(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 5}})),
                )
                .await
                .map(|_| ())
        } else {
            // kubectl patch configmap obj-i -p '{"data":{"LOG_LEVEL":"debug"}}'
            Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &cm)
                .patch(
                    &name,
                    &PatchParams {
                        field_manager: Some("kubectl-patch".into()),
                        ..PatchParams::default()
                    },
                    &Patch::Merge(json!({"data": {"LOG_LEVEL": "debug"}})),
                )
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => answered.push((format!("{ns}/{name}"), Instant::now())),
            Err(e) => eprintln!("edit of {ns}/{name} failed: {e}"),
        }
    }
    // Every report, or 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = {
            let seen = reported.lock().expect("lock");
            answered.iter().filter(|(k, _)| seen.contains_key(k)).count()
        };
        if n == answered.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = reported.lock().expect("lock").clone();
    let mut latencies: Vec<f64> = answered
        .iter()
        .filter_map(|(k, at)| {
            seen.get(k)
                .map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    let missed = answered.len() - latencies.len();
    latencies.sort_by(f64::total_cmp);
    let rss = vm_hwm_mb(pid);
    eprintln!(
        "detector rss now {:.0} MB, peak {rss:.0} MB",
        vm_mb(pid, "VmRSS:")
    );
    drop(child);
    eprintln!(
        "{} edits answered, {} reported, {missed} not reported within 30 s; max {:.2} ms",
        answered.len(),
        latencies.len(),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    format!(
        "objects={} ready_s={ready_s:.2} detector_rss_mb={rss:.0} p50_ms={:.2} p99_ms={:.2}",
        args.objects,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0)
    )
}
