//! End to end over loopback HTTP: the real `kubectl` writes to the sandbox API server, the
//! detector learns about it through `KubeLiveSource` watches (no polling), and `KubeRemediator`
//! reverts through the real `kube` client.

#![allow(clippy::print_stderr)] // a test tells what it waits through

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

use drift_core::detector::{Detector, DetectorConfig, Outcome};
use drift_core::ports::{
    DesiredResource, DriftEventKind, LiveEvent, LiveSource, PortError, Provenance, RemediationMode,
    RemediationStatus, Remediator,
};
use drift_core::{DiffEngine, DriftStatus, ResourceKey, load_path};
use drift_kube::sandbox::{Sandbox, SandboxConfig};
use drift_kube::{KubeLiveSource, KubeRemediator, LiveSourceConfig};
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

/// The repository's `testdata/` (external data with provenance, `testdata/PROVENANCE.md`).
fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

struct Harness {
    sandbox: Sandbox,
    kubeconfig: PathBuf,
    detector: Detector,
    events: Option<BoxStream<'static, Result<LiveEvent, PortError>>>,
    remediator: KubeRemediator,
    outcomes: Vec<Outcome>,
}

impl Harness {
    async fn start(name: &str) -> Harness {
        let sandbox = Sandbox::start(SandboxConfig::default().bookmark_interval(Duration::from_millis(200)))
            .await
            .expect("sandbox");
        // Unique per harness: tests run in parallel in one process.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kubeconfig =
            std::env::temp_dir().join(format!("drift-kube-{name}-{}-{n}.kubeconfig", std::process::id()));
        sandbox.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let client = sandbox.client().expect("client");
        let detector = Detector::new(
            DiffEngine::default(),
            DetectorConfig::default(),
            std::sync::Arc::new(drift_core::clock::SystemClock),
        );
        Harness {
            sandbox,
            kubeconfig,
            detector,
            events: None,
            remediator: KubeRemediator::new(client),
            outcomes: Vec::new(),
        }
    }

    /// Starts watching (after the test has set the cluster up, so nothing looks missing meanwhile).
    fn watch(&mut self) {
        let client = self.sandbox.client().expect("client");
        let source = KubeLiveSource::new(
            client,
            LiveSourceConfig::default().kinds([
                ("apps", "Deployment"),
                ("", "Service"),
                ("", "ServiceAccount"),
            ]),
        )
        .expect("source");
        self.events = Some(source.watch());
    }

    async fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.kubeconfig.with_extension("cache"))
            .args(args)
            .output()
            .await
            .expect("kubectl is installed (the CI script installs it)");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Feeds watch events to the detector and processes the queue until `done` holds (or times out).
    async fn pump_until(&mut self, what: &str, mut done: impl FnMut(&Harness) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(k) = self.detector.next_key() {
                let out = self.detector.process(&k);
                self.outcomes.push(out);
            }
            if done(self) {
                return;
            }
            let events = self.events.as_mut().expect("watching");
            let next = tokio::time::timeout_at(deadline, events.next()).await;
            match next {
                Ok(Some(Ok(ev))) => {
                    self.detector.observe(ev);
                }
                Ok(Some(Err(e))) => eprintln!("watch error (the source backs off and recovers): {e}"),
                Ok(None) => panic!("the watch stream ended while waiting for {what}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; events so far: {:?}",
                    self.event_kinds()
                ),
            }
        }
    }

    /// Keeps pumping for a short while, for events that should NOT come.
    async fn settle(&mut self) {
        let until = tokio::time::Instant::now() + Duration::from_millis(400);
        while let Ok(Some(Ok(ev))) =
            tokio::time::timeout_at(until, self.events.as_mut().expect("watching").next()).await
        {
            self.detector.observe(ev);
            while let Some(k) = self.detector.next_key() {
                let out = self.detector.process(&k);
                self.outcomes.push(out);
            }
        }
    }

    fn event_kinds(&self) -> Vec<(String, DriftEventKind)> {
        self.outcomes
            .iter()
            .flat_map(|o| o.events.iter().map(|e| (e.drift.key.name.clone(), e.kind)))
            .collect()
    }

    fn count(&self, kind: DriftEventKind) -> usize {
        self.event_kinds().iter().filter(|(_, k)| *k == kind).count()
    }

    /// Approves a drift and runs the fix as the daemon does: dry run, then for real.
    async fn fix(&mut self, id: &drift_core::DriftId) -> RemediationStatus {
        let (_, plan) = self.detector.approve(id, "tester").expect("approve");
        let dry = self.remediator.remediate(&plan, RemediationMode::DryRun).await;
        if dry.status != RemediationStatus::DryRunOk {
            let out = self.detector.record_fix(&plan, &dry);
            self.outcomes.push(out);
            return dry.status;
        }
        let real = self.remediator.remediate(&plan, RemediationMode::Apply).await;
        let out = self.detector.record_fix(&plan, &real);
        self.outcomes.push(out);
        real.status
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let _ = std::fs::remove_dir_all(self.kubeconfig.with_extension("cache"));
    }
}

fn desired_from(path: &Path, namespace: &str) -> Vec<DesiredResource> {
    let loaded = load_path(path);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded
        .resources
        .into_iter()
        .map(|mut r| {
            r.default_namespace(namespace);
            DesiredResource {
                resource: r,
                provenance: Provenance::file(path.display().to_string()),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microservices_demo_with_real_kubectl() {
    let manifests = shared().join("cases/microservices-demo/kubernetes-manifests.yaml");
    let mut h = Harness::start("demo").await;
    let applied = h
        .kubectl(&["apply", "-f", &manifests.display().to_string()])
        .await;
    assert_eq!(
        applied.lines().filter(|l| l.ends_with(" created")).count(),
        35,
        "{applied}"
    );
    let desired = desired_from(&manifests, "default");
    assert_eq!(desired.len(), 35);
    h.detector.set_desired(desired);
    h.watch();

    h.pump_until("the initial list", |h| {
        h.detector.is_ready() && h.detector.queue_len() == 0
    })
    .await;
    // The latest verdict per object (an object listed before Ready is judged again once ready).
    let latest: std::collections::BTreeMap<String, DriftStatus> = h
        .outcomes
        .iter()
        .filter_map(|o| o.report.as_ref())
        .map(|r| (r.key.to_string(), r.status))
        .collect();
    assert_eq!(latest.len(), 35, "{latest:?}");
    let not_in_sync: Vec<_> = latest
        .iter()
        .filter(|(_, s)| **s != DriftStatus::InSync)
        .collect();
    assert!(not_in_sync.is_empty(), "all 35 objects in sync: {not_in_sync:?}");
    assert!(h.detector.open_drifts().is_empty());

    let image = "us-central1-docker.pkg.dev/online-boutique-ci/microservices-demo/cartservice:v9";
    h.kubectl(&["scale", "deployment/frontend", "--replicas=3"]).await;
    h.kubectl(&[
        "set",
        "image",
        "deployment/cartservice",
        &format!("server={image}"),
    ])
    .await;
    h.pump_until("two drifts", |h| h.count(DriftEventKind::Opened) >= 2)
        .await;
    h.settle().await;
    let open = h.detector.open_drifts();
    let described: Vec<String> = open
        .iter()
        .map(|o| format!("{} {}", o.drift.key.name, o.drift.describe()))
        .collect();
    assert_eq!(open.len(), 2, "exactly two drifts: {described:?}");
    assert_eq!(h.count(DriftEventKind::Opened), 2, "{:?}", h.event_kinds());
    assert!(
        described.contains(&"frontend spec.replicas expected=1, actual=3".to_string()),
        "{described:?}"
    );
    assert!(
        described.iter().any(|d| d
            .starts_with("cartservice spec.template.spec.containers[name=server].image")
            && d.ends_with(image)),
        "{described:?}"
    );
    // Who did it, from managedFields. `kubectl scale` sends no field manager: the server takes it
    // from the User-Agent (`kubectl/v1.33.1 ...` gives `kubectl`), through the `scale` subresource.
    let actors: std::collections::BTreeMap<String, String> = open
        .iter()
        .map(|o| {
            let a = o.drift.actor.as_ref().expect("an actor");
            assert!(a.time.is_some(), "{a:?}");
            (o.drift.key.name.clone(), a.to_string())
        })
        .collect();
    assert!(
        actors["frontend"].starts_with("kubectl (scale) at "),
        "{actors:?}"
    );
    assert!(actors["cartservice"].starts_with("kubectl-set at "), "{actors:?}");

    // Revert both through the cluster remediator; the watch confirms.
    for o in open {
        assert_eq!(h.fix(&o.drift.id).await, RemediationStatus::Applied);
    }
    h.pump_until("both corrected", |h| h.count(DriftEventKind::Corrected) == 2)
        .await;
    assert!(h.detector.open_drifts().is_empty());
    assert_eq!(
        h.kubectl(&["get", "deployment/frontend", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "1"
    );
    assert_eq!(
        h.kubectl(&[
            "get",
            "deployment/cartservice",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ])
        .await,
        "us-central1-docker.pkg.dev/online-boutique-ci/microservices-demo/cartservice:v0.10.6"
    );
}

fn deploy_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments");
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn deployment(name: &str, replicas: i64) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})
}

async fn scale(api: &Api<DynamicObject>, name: &str, replicas: i64) {
    api.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale");
}

async fn harness_with(names: &[&str]) -> (Harness, Api<DynamicObject>) {
    let mut h = Harness::start("gap").await;
    let api = deploy_api(&h.sandbox.client().expect("client"));
    let mut desired = Vec::new();
    for n in names {
        let obj: DynamicObject = serde_json::from_value(deployment(n, 2)).expect("deployment");
        api.create(&PostParams::default(), &obj).await.expect("create");
        desired.push(DesiredResource {
            resource: drift_core::Resource::from_value(deployment(n, 2)).expect("resource"),
            provenance: Provenance::file("test"),
        });
    }
    h.detector.set_desired(desired);
    h.watch();
    h.pump_until("ready", |h| h.detector.is_ready() && h.detector.queue_len() == 0)
        .await;
    (h, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_gap_loses_nothing_and_duplicates_nothing() {
    let (mut h, api) = harness_with(&["a", "b"]).await;
    scale(&api, "a", 3).await;
    h.pump_until("a opened", |h| h.count(DriftEventKind::Opened) == 1)
        .await;
    let relists = h.detector.stats().relists;

    // The watchers' resourceVersion expires; b changes while they are away.
    h.sandbox.expire_watches();
    scale(&api, "b", 4).await;
    h.pump_until("b opened after the re-list", |h| {
        h.count(DriftEventKind::Opened) == 2
    })
    .await;
    // The re-list may land after b's change came through the old watch (the break is asynchronous):
    // wait for it, then check nothing was reported twice.
    h.pump_until("the source re-listed", |h| h.detector.stats().relists > relists)
        .await;
    h.settle().await;
    let opened_a = h
        .event_kinds()
        .iter()
        .filter(|(n, k)| n == "a" && *k == DriftEventKind::Opened)
        .count();
    assert_eq!(opened_a, 1, "a was not opened twice: {:?}", h.event_kinds());
    assert_eq!(h.detector.open_drifts().len(), 2);

    // A dropped connection (history kept) resumes without a re-list and still delivers changes.
    h.sandbox.drop_watches();
    scale(&api, "b", 2).await;
    h.pump_until("b resolved", |h| h.count(DriftEventKind::Resolved) == 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_guard_catches_a_race_and_the_fix_is_re_planned() {
    let (mut h, api) = harness_with(&["web"]).await;
    scale(&api, "web", 5).await;
    h.pump_until("drift", |h| h.count(DriftEventKind::Opened) == 1)
        .await;
    let id = h.detector.open_drifts()[0].drift.id.clone();
    let (_, plan) = h.detector.approve(&id, "tester").expect("plan");

    // Live moves on between the plan and the patch.
    scale(&api, "web", 7).await;
    let dry = h.remediator.remediate(&plan, RemediationMode::DryRun).await;
    assert_eq!(dry.status, RemediationStatus::Conflict, "{}", dry.message);
    let real = h.remediator.remediate(&plan, RemediationMode::Apply).await;
    assert_eq!(real.status, RemediationStatus::Conflict);
    assert_eq!(
        api.get("web").await.expect("get").data["spec"]["replicas"],
        7,
        "nothing was forced"
    );
    let out = h.detector.record_fix(&plan, &real);
    h.outcomes.push(out);

    // The detector re-reads: the drift is updated (actual 7), and a new plan goes through.
    h.pump_until("updated", |h| h.count(DriftEventKind::Updated) >= 1)
        .await;
    assert_eq!(h.fix(&id).await, RemediationStatus::Applied);
    h.pump_until("corrected", |h| h.count(DriftEventKind::Corrected) == 1)
        .await;
    assert_eq!(api.get("web").await.expect("get").data["spec"]["replicas"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_kinds_are_skipped_not_fatal() {
    // A cluster without the policy group: PodDisruptionBudgets answer 404.
    let sandbox = Sandbox::start(SandboxConfig::default().unserved_group("policy"))
        .await
        .expect("sandbox");
    let client = sandbox.client().expect("client");
    let api = deploy_api(&client);
    let obj: DynamicObject = serde_json::from_value(deployment("web", 2)).expect("deployment");
    api.create(&PostParams::default(), &obj).await.expect("create");
    let source = KubeLiveSource::new(
        client,
        LiveSourceConfig::default().kinds([("apps", "Deployment"), ("policy", "PodDisruptionBudget")]),
    )
    .expect("source");
    let stats = source.stats();
    let mut events = source.watch();
    let mut listed = Vec::new();
    let mut unavailable = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("Ready within 10 s")
            .expect("stream open")
        {
            Ok(LiveEvent::Ready) => break,
            Ok(LiveEvent::Restarted { resources, .. }) => listed.extend(resources.into_iter().map(|r| r.key)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => unavailable.push(e.to_string()),
        }
    }
    assert_eq!(
        listed,
        vec![ResourceKey::new("apps/v1", "Deployment", Some("default"), "web")]
    );
    assert_eq!(unavailable.len(), 1, "{unavailable:?}");
    assert!(
        unavailable[0].contains("poddisruptionbudgets") && unavailable[0].contains("not served"),
        "{}",
        unavailable[0]
    );
    assert_eq!(stats.errors.load(std::sync::atomic::Ordering::Relaxed), 1);
    // The list path skips it the same way.
    let all = source_list(&sandbox).await;
    assert_eq!(all.len(), 1);
}

async fn source_list(sandbox: &Sandbox) -> Vec<drift_core::Resource> {
    let source = KubeLiveSource::new(
        sandbox.client().expect("client"),
        LiveSourceConfig::default().kinds([("apps", "Deployment"), ("policy", "PodDisruptionBudget")]),
    )
    .expect("source");
    source.list().await.expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_object_is_re_applied_server_side_and_secrets_are_never_written() {
    let (mut h, api) = harness_with(&["web"]).await;
    h.kubectl(&["delete", "deployment/web"]).await;
    h.pump_until("missing", |h| h.count(DriftEventKind::Opened) == 1)
        .await;
    let open = h.detector.open_drifts();
    assert_eq!(open.len(), 1);
    let (_, plan) = h.detector.approve(&open[0].drift.id, "tester").expect("plan");
    assert_eq!(plan.action.name(), "reapply");

    // A dry run creates nothing.
    let dry = h.remediator.remediate(&plan, RemediationMode::DryRun).await;
    assert_eq!(dry.status, RemediationStatus::DryRunOk, "{}", dry.message);
    assert!(api.get_opt("web").await.expect("get").is_none());

    let real = h.remediator.remediate(&plan, RemediationMode::Apply).await;
    assert_eq!(real.status, RemediationStatus::Applied, "{}", real.message);
    let out = h.detector.record_fix(&plan, &real);
    h.outcomes.push(out);
    h.pump_until("corrected", |h| h.count(DriftEventKind::Corrected) == 1)
        .await;
    let web = api.get("web").await.expect("re-created");
    assert_eq!(web.data["spec"]["replicas"], 2);
    let managers: Vec<_> = web
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&drift_kube::FIELD_MANAGER.to_string()),
        "{managers:?}"
    );

    // A Secret's desired values are hashed before they reach a plan: re-applying would write hashes.
    let secret = drift_core::Resource::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "default"}, "stringData": {"password": "hunter2"}}))
    .expect("secret");
    let secret_plan = drift_core::ports::RemediationPlan {
        key: secret.key.clone(),
        desired: Some(drift_core::DesiredObject::new(secret).resource().clone()),
        ..plan.clone()
    };
    let skipped = h.remediator.remediate(&secret_plan, RemediationMode::Apply).await;
    assert_eq!(skipped.status, RemediationStatus::Skipped, "{}", skipped.message);
    assert!(
        h.sandbox.object("", "secrets", Some("default"), "db").is_none(),
        "nothing was written"
    );
}

/// Helm's release Secrets (type `helm.sh/release.v1`) are never read: a field selector keeps them out
/// of lists and watches; other Secrets are read, hashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_release_secrets_are_never_read() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let client = sandbox.client().expect("client");
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    for (name, ty) in [
        ("db", "Opaque"),
        ("sh.helm.release.v1.web.v1", "helm.sh/release.v1"),
    ] {
        let s: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"}, "type": ty, "data": {"k": "dmFsdWU="}}))
        .expect("secret");
        api.create(&PostParams::default(), &s).await.expect("create");
    }
    let source =
        KubeLiveSource::new(client, LiveSourceConfig::default().kinds([("", "Secret")])).expect("source");
    let listed: Vec<String> = source
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.key.name)
        .collect();
    assert_eq!(listed, ["db"]);
    let mut events = source.watch();
    let mut watched = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("Ready within 10 s")
            .expect("stream open")
            .expect("no error")
        {
            LiveEvent::Ready => break,
            LiveEvent::Restarted { resources, .. } => {
                watched.extend(resources.into_iter().map(|r| r.key.name))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(watched, ["db"]);
}

/// Re-creating a deleted object is a create, not a forced apply: when someone re-created it meanwhile
/// the fix is a conflict, and their object stays as they made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_creating_a_deleted_object_never_overwrites_one_made_meanwhile() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let client = sandbox.client().expect("client");
    let api = deploy_api(&client);
    let desired = drift_core::Resource::from_value(deployment("web", 2)).expect("desired");
    let plan = drift_core::ports::RemediationPlan {
        key: desired.key.clone(),
        drifts: vec![drift_core::detector::missing_live_drift(&desired.key)],
        action: drift_core::ports::RemediationAction::Reapply,
        provenance: None,
        desired: Some(desired.clone()),
        actor: "test".into(),
        reason: "missing".into(),
    };
    let rem = KubeRemediator::new(client.clone());
    // Someone else re-creates it first, with 5 replicas.
    let theirs: DynamicObject = serde_json::from_value(deployment("web", 5)).expect("obj");
    api.create(&PostParams::default(), &theirs)
        .await
        .expect("their create");
    let o = drift_core::ports::Remediator::remediate(&rem, &plan, drift_core::ports::RemediationMode::Apply)
        .await;
    assert_eq!(
        o.status,
        drift_core::ports::RemediationStatus::Conflict,
        "{}",
        o.message
    );
    let live = api.get("web").await.expect("get");
    assert_eq!(live.data["spec"]["replicas"], 5, "their object is untouched");
    // Gone again: the re-create goes through, dry run first.
    api.delete("web", &Default::default()).await.expect("delete");
    let dry =
        drift_core::ports::Remediator::remediate(&rem, &plan, drift_core::ports::RemediationMode::DryRun)
            .await;
    assert_eq!(
        dry.status,
        drift_core::ports::RemediationStatus::DryRunOk,
        "{}",
        dry.message
    );
    assert!(
        api.get_opt("web").await.expect("get").is_none(),
        "a dry run creates nothing"
    );
    let done =
        drift_core::ports::Remediator::remediate(&rem, &plan, drift_core::ports::RemediationMode::Apply)
            .await;
    assert_eq!(
        done.status,
        drift_core::ports::RemediationStatus::Applied,
        "{}",
        done.message
    );
    assert_eq!(api.get("web").await.expect("get").data["spec"]["replicas"], 2);
}

/// `kubectl set env` on a Deployment we manage adds an env list the manifest never had: a person's
/// tool added it, so it is drift ("added by hand"), not an unmanaged extra. With a `kubectl scale`
/// beside it: exactly two drifts, each naming the tool that made it (`kubectl scale` sends no field
/// manager, so the server records `kubectl` from the User-Agent, subresource `scale`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_env_and_scale_are_two_drifts_with_their_actors() {
    let mut h = Harness::start("actors").await;
    let manifest = std::env::temp_dir().join(format!("drift-kube-actors-{}.yaml", std::process::id()));
    std::fs::write(
        &manifest,
        serde_json::to_string(&deployment("checkout", 2)).expect("json"),
    )
    .expect("write manifest");
    h.kubectl(&["apply", "-f", &manifest.display().to_string()]).await;
    h.kubectl(&["rollout", "restart", "deployment/checkout"]).await;
    h.detector.set_desired(desired_from(&manifest, "default"));
    let _ = std::fs::remove_file(&manifest);
    h.watch();
    h.pump_until("ready", |h| h.detector.is_ready() && h.detector.queue_len() == 0)
        .await;
    assert!(
        h.detector.open_drifts().is_empty(),
        "a rollout restart is not drift (the rollout-restart preset): {:?}",
        h.event_kinds()
    );

    h.kubectl(&["set", "env", "deployment/checkout", "FEATURE_FLAG=on"])
        .await;
    h.kubectl(&["scale", "deployment/checkout", "--replicas=4"]).await;
    h.pump_until("two drifts", |h| h.count(DriftEventKind::Opened) >= 2)
        .await;
    h.settle().await;
    let open = h.detector.open_drifts();
    let mut seen: Vec<(String, String, Option<String>, Option<String>)> = open
        .iter()
        .map(|o| {
            (
                o.drift.path.readable(),
                o.drift.change.to_string(),
                o.drift.actor.as_ref().map(|a| a.manager.clone()),
                o.drift.actor.as_ref().and_then(|a| a.subresource.clone()),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "spec.replicas".to_string(),
                "changed".to_string(),
                Some("kubectl".to_string()),
                Some("scale".to_string())
            ),
            (
                "spec.template.spec.containers[name=c].env".to_string(),
                "extra".to_string(),
                Some("kubectl-set".to_string()),
                None
            ),
        ],
        "{seen:?}"
    );
    // Each transition as a Kubernetes Event on the object, which `kubectl describe` shows (it selects
    // events by the object's uid) and `kubectl get events` lists.
    let recorder = drift_kube::KubeEventRecorder::new(h.sandbox.client().expect("client"), "test-0");
    for e in h.outcomes.iter().flat_map(|o| &o.events) {
        recorder.record(e).await.expect("event written");
    }
    let described = h.kubectl(&["describe", "deployment/checkout"]).await;
    let events_part = described.split("Events:").nth(1).unwrap_or_default();
    assert_eq!(events_part.matches("DriftDetected").count(), 2, "{described}");
    assert!(
        events_part.contains("spec.replicas expected=2, actual=4"),
        "{described}"
    );
    let listed = h
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=DriftDetected,involvedObject.name=checkout",
            "-o",
            "jsonpath={range .items[*]}{.source.component}/{.type} {end}",
        ])
        .await;
    assert_eq!(listed.trim(), "drift-detector/Warning drift-detector/Warning");
    // `kubectl get all` finds the Deployment through the `all` category.
    let all = h.kubectl(&["get", "all", "-o", "name"]).await;
    assert!(all.lines().any(|l| l == "deployment.apps/checkout"), "{all}");

    // The env drift's revert removes exactly the list kubectl-set added, guarded by its value.
    let env = open
        .iter()
        .find(|o| o.drift.change == drift_core::Change::Extra)
        .expect("env drift");
    assert_eq!(h.fix(&env.drift.id.clone()).await, RemediationStatus::Applied);
    h.pump_until("env corrected", |h| h.count(DriftEventKind::Corrected) >= 1)
        .await;
    assert_eq!(
        h.kubectl(&[
            "get",
            "deployment/checkout",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env}"
        ])
        .await,
        ""
    );
}

/// A CRD and a custom resource applied with kubectl: the kind is found through discovery and
/// watched once the desired state names it, its CRD's schema defaults are known defaults (in sync
/// as applied), and a `kubectl patch` of one field is exactly that drift, with its actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_is_watched_and_its_schema_defaults_are_known() {
    let mut h = Harness::start("crd").await;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let crd = fixtures.join("backup-crd.yaml");
    let cr = fixtures.join("backup-nightly.yaml");
    h.kubectl(&["apply", "-f", &crd.display().to_string()]).await;
    h.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "crd/backups.ops.example.com",
        "--timeout=10s",
    ])
    .await;
    h.kubectl(&["apply", "-f", &cr.display().to_string()]).await;
    // The server filled in the schema's defaults.
    assert_eq!(
        h.kubectl(&[
            "get",
            "backup",
            "nightly",
            "-o",
            "jsonpath={.spec.retainDays} {.spec.target.region}"
        ])
        .await,
        "7 eu-west-1"
    );
    let mut desired = desired_from(&crd, "default");
    desired.extend(desired_from(&cr, "default"));
    h.detector.set_desired(desired);

    // The default kinds only; the desired state's kinds are added as the daemon adds them.
    let source = KubeLiveSource::new(h.sandbox.client().expect("client"), LiveSourceConfig::default())
        .expect("source");
    h.events = Some(source.watch());
    source.ensure_watched(&[
        ("ops.example.com".into(), "Backup".into()),
        ("apiextensions.k8s.io".into(), "CustomResourceDefinition".into()),
    ]);
    let backup = ResourceKey::new("ops.example.com/v1", "Backup", Some("default"), "nightly");
    h.pump_until("the custom resource judged", |h| {
        h.detector.is_ready()
            && h.detector.queue_len() == 0
            && h.outcomes
                .iter()
                .filter_map(|o| o.report.as_ref())
                .any(|r| r.key == backup && r.status == DriftStatus::InSync)
    })
    .await;
    h.settle().await;
    assert!(
        h.detector.open_drifts().is_empty(),
        "applied as is, the custom resource is in sync: {:?}",
        h.event_kinds()
    );
    assert!(
        h.detector.not_watched().is_empty(),
        "{:?}",
        h.detector.not_watched()
    );

    // As on a cluster: a custom resource takes no strategic merge patch (kubectl's default type).
    let smp = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .arg("--cache-dir")
        .arg(h.kubeconfig.with_extension("cache"))
        .args(["patch", "backup", "nightly", "-p", r#"{"spec":{"retainDays":2}}"#])
        .output()
        .await
        .expect("kubectl");
    assert!(!smp.status.success());
    assert!(
        String::from_utf8_lossy(&smp.stderr).contains("unknown format"),
        "{}",
        String::from_utf8_lossy(&smp.stderr)
    );
    h.kubectl(&[
        "patch",
        "backup",
        "nightly",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"retainDays":1}}"#,
    ])
    .await;
    h.pump_until("the drift", |h| h.count(DriftEventKind::Opened) >= 1)
        .await;
    h.settle().await;
    let open = h.detector.open_drifts();
    let seen: Vec<String> = open
        .iter()
        .map(|o| {
            format!(
                "{} {} by {}",
                o.drift.key.name,
                o.drift.describe(),
                o.drift.actor.as_ref().map_or("?", |a| a.manager.as_str())
            )
        })
        .collect();
    assert_eq!(
        seen,
        ["nightly spec.retainDays expected=7, actual=1 by kubectl-patch"]
    );
}

/// A kind the cluster does not serve is reported, never fatal, and its objects are "not watched",
/// never "missing".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unserved_custom_kind_is_not_watched_not_missing() {
    let mut h = Harness::start("nocrd").await;
    let cr = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backup-nightly.yaml");
    h.detector.set_desired(desired_from(&cr, "default"));
    let source = KubeLiveSource::new(
        h.sandbox.client().expect("client"),
        LiveSourceConfig::default().kinds([("ops.example.com", "Backup"), ("apps", "Deployment")]),
    )
    .expect("source");
    h.events = Some(source.watch());
    h.pump_until("ready", |h| h.detector.is_ready() && h.detector.queue_len() == 0)
        .await;
    h.settle().await;
    assert!(h.detector.open_drifts().is_empty(), "{:?}", h.event_kinds());
    let not_watched = h.detector.not_watched();
    assert_eq!(not_watched.len(), 1, "{not_watched:?}");
    assert!(not_watched[0].1.contains("not watched"), "{not_watched:?}");
}

/// kubectl's imperative commands against the sandbox as against a cluster: `create` (whose bodies are
/// protobuf), `autoscale`, `get all`, `scale`, `set image`, `rollout status`, `label`, `delete`. What
/// each `create` would send (`--dry-run=client -o yaml`) is then the desired state, and the objects
/// the server stored from it scan in sync: no default the server filled in is taken for drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_imperative_commands_work_and_what_they_create_scans_in_sync() {
    let mut h = Harness::start("imperative").await;
    // Debian's kubectl 1.20 (the CI fallback) creates CronJobs as batch/v1beta1, which this sandbox
    // (v1.33) does not serve, as a v1.25+ cluster does not. (Its `autoscale` uses autoscaling/v1,
    // which is served beside v2.)
    let version = h.kubectl(&["version", "--client", "-o", "json"]).await;
    let minor: u32 = serde_json::from_str::<serde_json::Value>(&version)
        .ok()
        .and_then(|v| {
            v["clientVersion"]["minor"]
                .as_str()
                .map(|m| m.trim_end_matches('+').parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let modern = minor >= 21;
    if !modern {
        eprintln!("kubectl 1.{minor}: skipping `create cronjob` (batch/v1beta1, removed in 1.25)");
    }
    h.kubectl(&["create", "namespace", "demo"]).await;
    let all_creates: &[&[&str]] = &[
        &[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=1",
            "--from-literal=empty=",
        ],
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=hunter2",
        ],
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        &[
            "create",
            "job",
            "once",
            "--image=busybox:1.37",
            "--",
            "echo",
            "hi",
        ],
        &[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox:1.37",
            "--schedule=0 3 * * *",
            "--",
            "echo",
            "hi",
        ],
        &["create", "serviceaccount", "builder"],
        &["create", "role", "reader", "--verb=get,list", "--resource=pods"],
        &[
            "create",
            "rolebinding",
            "readers",
            "--role=reader",
            "--serviceaccount=demo:builder",
        ],
    ];
    let creates: Vec<&[&str]> = all_creates
        .iter()
        .copied()
        .filter(|a| modern || a[1] != "cronjob")
        .collect();
    let mut manifests = String::new();
    for args in &creates {
        let mut dry: Vec<&str> = vec!["-n", "demo"];
        dry.extend_from_slice(args);
        let at = dry.iter().position(|a| *a == "--").unwrap_or(dry.len());
        dry.splice(at..at, ["--dry-run=client", "-o", "yaml"]);
        manifests.push_str(&h.kubectl(&dry).await);
        manifests.push_str("\n---\n");
        let mut real: Vec<&str> = vec!["-n", "demo"];
        real.extend_from_slice(args);
        let out = h.kubectl(&real).await;
        assert!(out.trim_end().ends_with("created"), "{args:?}: {out}");
    }
    {
        let out = h
            .kubectl(&[
                "-n",
                "demo",
                "autoscale",
                "deployment",
                "web",
                "--min=2",
                "--max=5",
                "--cpu-percent=80",
            ])
            .await;
        assert!(out.contains("autoscaled"), "{out}");
    }
    // What the server stored, as a cluster would.
    assert_eq!(
        h.kubectl(&[
            "-n",
            "demo",
            "get",
            "secret",
            "creds",
            "-o",
            "jsonpath={.data.password} {.type}"
        ])
        .await,
        "aHVudGVyMg== Opaque"
    );
    assert_eq!(
        h.kubectl(&["-n", "demo", "get", "configmap", "cfg", "-o", "jsonpath={.data}"])
            .await,
        r#"{"a":"1","empty":""}"#
    );
    {
        assert_eq!(
            h.kubectl(&[
                "-n",
                "demo",
                "get",
                "hpa",
                "web",
                "-o",
                "jsonpath={.spec.metrics[0].resource.target.averageUtilization}"
            ])
            .await,
            "80"
        );
    }
    let all = h.kubectl(&["-n", "demo", "get", "all", "-o", "name"]).await;
    let mut expected_all = vec![
        "deployment.apps/web",
        "service/web",
        "job.batch/once",
        "horizontalpodautoscaler.autoscaling/web",
    ];
    if modern {
        expected_all.push("cronjob.batch/nightly");
    }
    for name in expected_all {
        assert!(all.lines().any(|l| l == name), "{name} in {all}");
    }

    // The manifests kubectl would have sent are the desired state: in sync.
    let file = std::env::temp_dir().join(format!("drift-kube-imperative-{}.yaml", std::process::id()));
    std::fs::write(&file, &manifests).expect("write");
    let desired = desired_from(&file, "demo");
    let _ = std::fs::remove_file(&file);
    assert_eq!(desired.len(), creates.len());
    h.detector.set_desired(desired);
    let source = KubeLiveSource::new(
        h.sandbox.client().expect("client"),
        LiveSourceConfig::default().namespaces(["demo"]).kinds([
            ("", "ConfigMap"),
            ("", "Secret"),
            ("apps", "Deployment"),
            ("", "Service"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("", "ServiceAccount"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("autoscaling", "HorizontalPodAutoscaler"),
        ]),
    )
    .expect("source");
    h.events = Some(source.watch());
    h.pump_until("ready", |h| h.detector.is_ready() && h.detector.queue_len() == 0)
        .await;
    h.settle().await;
    let open: Vec<String> = h
        .detector
        .open_drifts()
        .iter()
        .map(|o| format!("{} {}", o.drift.key, o.drift.describe()))
        .collect();
    assert!(
        open.is_empty(),
        "what kubectl created is what it would have sent: {open:?}"
    );

    // And the everyday commands.
    let rollout: &[&str] = &[
        "-n",
        "demo",
        "rollout",
        "status",
        "deployment/web",
        "--timeout=10s",
    ];
    for cmd in [
        rollout,
        &["-n", "demo", "label", "deployment", "web", "tier=frontend"],
        &["-n", "demo", "scale", "deployment", "web", "--replicas=3"],
        &["-n", "demo", "set", "image", "deployment/web", "nginx=nginx:1.28"],
        rollout,
    ] {
        h.kubectl(cmd).await;
    }
    let want = 2;
    h.pump_until("the label and the image", |h| {
        h.count(DriftEventKind::Opened) >= want
    })
    .await;
    h.settle().await;
    let mut seen: Vec<String> = h
        .detector
        .open_drifts()
        .iter()
        .map(|o| o.drift.path.readable())
        .collect();
    seen.sort();
    // The HPA `kubectl autoscale` made owns web's replicas: the scale is not drift. The label
    // kubectl-label added to a managed object is.
    assert_eq!(
        seen,
        [
            "metadata.labels.tier",
            "spec.template.spec.containers[name=nginx].image"
        ]
    );
    let out = h.kubectl(&["-n", "demo", "delete", "configmap", "cfg"]).await;
    assert!(out.contains("deleted"), "{out}");
    h.pump_until("the deleted ConfigMap is missing", |h| {
        h.detector
            .open_drifts()
            .iter()
            .any(|o| o.drift.key.name == "cfg" && o.drift.rule == "missing-live")
    })
    .await;
}

/// An immutable field (a Deployment's selector) cannot be fixed by a patch: the server answers 422
/// `Invalid` with `details.causes`, as a cluster does, and the remediator reports it as rejected —
/// not as a conflict to re-plan and retry forever. kubectl sees the same refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_field_is_rejected_never_retried() {
    let mut h = Harness::start("immutable").await;
    let api = deploy_api(&h.sandbox.client().expect("client"));
    let live: DynamicObject = serde_json::from_value(deployment("web", 2)).expect("obj");
    api.create(&PostParams::default(), &live).await.expect("create");
    // The desired state moved to another selector: a drift no patch can revert.
    let mut wanted = deployment("web", 2);
    wanted["spec"]["selector"]["matchLabels"]["app"] = json!("web-v2");
    wanted["spec"]["template"]["metadata"]["labels"]["app"] = json!("web-v2");
    h.detector.set_desired(vec![DesiredResource {
        resource: drift_core::Resource::from_value(wanted).expect("resource"),
        provenance: Provenance::file("test"),
    }]);
    h.watch();
    h.pump_until("the selector drift", |h| {
        h.detector
            .open_drifts()
            .iter()
            .any(|o| o.drift.path.readable().starts_with("spec.selector"))
    })
    .await;
    let id = h
        .detector
        .open_drifts()
        .iter()
        .find(|o| o.drift.path.readable().starts_with("spec.selector"))
        .map(|o| o.drift.id.clone())
        .expect("selector drift");
    assert_eq!(h.fix(&id).await, RemediationStatus::Rejected);
    let last = h.outcomes.last().expect("outcome");
    assert!(
        last.events.iter().any(|e| e.kind == DriftEventKind::FixFailed),
        "{:?}",
        last.events
    );
    assert_eq!(h.detector.queue_len(), 0, "nothing re-planned");
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&h.kubeconfig)
        .arg("--cache-dir")
        .arg(h.kubeconfig.with_extension("cache"))
        .args(["patch", "deployment", "web", "--type", "merge", "-p"])
        .arg(r#"{"spec":{"selector":{"matchLabels":{"app":"other"}}}}"#)
        .output()
        .await
        .expect("kubectl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field is immutable"), "{err}");
    assert!(
        err.contains("Deployment \"web\" is invalid: spec.selector"),
        "{err}"
    );
}
