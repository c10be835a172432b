//! The sandbox API server through the real `kube` client over loopback HTTP: the protocol behaviours
//! the detector and kubectl rely on.

use drift_kube::sandbox::{Sandbox, SandboxConfig};
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn cm_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps");
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn deploy_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments");
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn cm(name: &str, data: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "x"}}, "data": data}))
        .expect("configmap")
}

fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn crud_conflicts_and_status_errors() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let api = cm_api(&sb.client().expect("client"));
    let created = api
        .create(&PostParams::default(), &cm("a", json!({"k": "v"})))
        .await
        .expect("create");
    let rv = created.metadata.resource_version.clone().expect("rv");
    assert_eq!(
        api_code(
            &api.create(&PostParams::default(), &cm("a", json!({})))
                .await
                .unwrap_err()
        ),
        409
    );
    assert_eq!(api_code(&api.get("missing").await.unwrap_err()), 404);

    // Optimistic concurrency: an update carrying a stale resourceVersion is refused with 409.
    let mut fresh = created.clone();
    fresh.data["data"]["k"] = json!("w");
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .expect("update");
    assert_ne!(updated.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let mut stale = created.clone();
    stale.data["data"]["k"] = json!("z");
    assert_eq!(
        api_code(
            &api.replace("a", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );

    // A JSON patch whose test fails is refused (422) and changes nothing.
    let bad: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "not-this"}, {"op": "replace", "path": "/data/k", "value": "q"}])).expect("patch");
    assert_eq!(
        api_code(
            &api.patch("a", &PatchParams::default(), &Patch::Json::<()>(bad))
                .await
                .unwrap_err()
        ),
        422
    );
    assert_eq!(api.get("a").await.expect("get").data["data"]["k"], "w");

    // Dry run validates without storing.
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let out = api
        .patch("a", &dry, &Patch::Merge(json!({"data": {"k": "dry"}})))
        .await
        .expect("dry patch");
    assert_eq!(out.data["data"]["k"], "dry");
    assert_eq!(api.get("a").await.expect("get").data["data"]["k"], "w");

    api.delete("a", &DeleteParams::default()).await.expect("delete");
    assert_eq!(api_code(&api.get("a").await.unwrap_err()), 404);
    // Objects in a namespace that does not exist are refused.
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps");
    let nowhere: Api<DynamicObject> = Api::namespaced_with(sb.client().expect("client"), "nowhere", &ar);
    assert_eq!(
        api_code(
            &nowhere
                .create(&PostParams::default(), &cm("b", json!({})))
                .await
                .unwrap_err()
        ),
        404
    );
}

#[tokio::test]
async fn lists_paginate_and_select() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let api = cm_api(&sb.client().expect("client"));
    for i in 0..25 {
        let mut o = cm(&format!("cm-{i:02}"), json!({"i": i.to_string()}));
        if i % 5 == 0 {
            o.metadata
                .labels
                .get_or_insert_default()
                .insert("tier".into(), "special".into());
        }
        api.create(&PostParams::default(), &o).await.expect("create");
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(10);
    loop {
        let page = api.list(&params).await.expect("page");
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().filter_map(|o| o.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let special = api
        .list(&ListParams::default().labels("tier=special"))
        .await
        .expect("list");
    assert_eq!(special.items.len(), 5);
    let one = api
        .list(&ListParams::default().fields("metadata.name=cm-07"))
        .await
        .expect("list");
    assert_eq!(one.items.len(), 1);
}

#[tokio::test]
async fn watch_resumes_and_expires() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let api = cm_api(&sb.client().expect("client"));
    let first = api
        .create(&PostParams::default(), &cm("w1", json!({})))
        .await
        .expect("create");
    let rv = first.metadata.resource_version.clone().expect("rv");
    api.create(&PostParams::default(), &cm("w2", json!({})))
        .await
        .expect("create");
    // Resuming from an old resourceVersion replays what came after it.
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("w2")),
        other => panic!("expected w2 added, got {other:?}"),
    }
    drop(stream);
    // After a compaction the same resourceVersion is gone: a 410 ERROR event.
    sb.expire_watches();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_carry_progress() {
    let sb =
        Sandbox::start(SandboxConfig::default().bookmark_interval(std::time::Duration::from_millis(100)))
            .await
            .expect("sandbox");
    let api = cm_api(&sb.client().expect("client"));
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .expect("watch")
        .boxed();
    let mut bookmarked = false;
    for _ in 0..10 {
        if let Some(WatchEvent::Bookmark(b)) = stream.try_next().await.expect("event") {
            assert!(!b.metadata.resource_version.is_empty());
            bookmarked = true;
            break;
        }
    }
    assert!(bookmarked);
}

#[tokio::test]
async fn defaults_generation_scale_and_server_side_apply() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let client = sb.client().expect("client");
    let api = deploy_api(&client, "default");
    let d: DynamicObject = serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}}}]}}}}))
        .expect("deployment");
    let created = api.create(&PostParams::default(), &d).await.expect("create");
    let c = &created.data["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        c["resources"]["requests"]["cpu"], "500m",
        "quantities canonicalised"
    );
    assert_eq!(c["resources"]["requests"]["memory"], "1Gi");
    assert_eq!(
        created.data["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    assert_eq!(created.metadata.generation, Some(1));

    // A status-only update keeps the generation; the scale subresource bumps it.
    let status = api.get_status("web").await.expect("status");
    assert_eq!(
        status.data["status"]["observedGeneration"], 1,
        "the sandbox's controller wrote status"
    );
    let scaled = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("scale");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(4));
    let now = api.get("web").await.expect("get");
    assert_eq!(now.metadata.generation, Some(2));
    assert_eq!(now.data["spec"]["replicas"], 4);
    let managers: Vec<String> = now
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.len() >= 2, "{managers:?}");

    // Server-side apply: conflicts without force, ownership with it.
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    let err = api
        .patch(
            "web",
            &PatchParams::apply("drift-detector"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 409);
    let out = api
        .patch(
            "web",
            &PatchParams::apply("drift-detector").force(),
            &Patch::Apply(&applied),
        )
        .await
        .expect("apply");
    assert_eq!(out.data["spec"]["replicas"], 2);
    assert!(
        out.metadata.managed_fields.iter().flatten().any(
            |m| m.manager.as_deref() == Some("drift-detector") && m.operation.as_deref() == Some("Apply")
        )
    );
}

#[tokio::test]
async fn secrets_fold_string_data() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets");
    let api: Api<DynamicObject> = Api::namespaced_with(sb.client().expect("client"), "default", &ar);
    let s: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"p": "hunter2"}}))
        .expect("secret");
    let out = api.create(&PostParams::default(), &s).await.expect("create");
    assert_eq!(out.data["data"]["p"], "aHVudGVyMg==");
    assert!(out.data.get("stringData").is_none());
    assert_eq!(out.data["type"], "Opaque");
}

#[tokio::test]
async fn openapi_v2_for_older_kubectl() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let client = sb.client().expect("client");
    let req = |accept: &str| {
        http::Request::get("/openapi/v2")
            .header("Accept", accept)
            .body(Vec::new())
            .expect("request")
    };
    // What kubectl before 1.27 asks for: gnostic's Document as protobuf, swagger = "2.0" first.
    let pb = client
        .request_text(req("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"))
        .await
        .expect("protobuf");
    assert!(pb.as_bytes().starts_with(b"\x0a\x032.0\x12"), "{pb:?}");
    let doc: serde_json::Value = client.request(req("application/json")).await.expect("json");
    assert_eq!(doc["swagger"], "2.0");
    assert!(
        doc["definitions"]
            .as_object()
            .is_some_and(serde_json::Map::is_empty)
    );
}

/// JSON Patch as the API server applies it (evanphx/json-patch): a `test` of `null` passes for an
/// absent key — the guard of an `add` — and fails once someone has set the key; a failed test is a
/// 422 whose cause is the patch error, not an invalid field value.
#[tokio::test]
async fn a_null_test_guards_an_add() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let api = cm_api(&sb.client().expect("client"));
    api.create(&PostParams::default(), &cm("g", json!({"a": "1"})))
        .await
        .expect("create");
    let guarded = json!([
        {"op": "test", "path": "/data/b", "value": null},
        {"op": "add", "path": "/data/b", "value": "2"}
    ]);
    let patch: json_patch::Patch = serde_json::from_value(guarded.clone()).expect("patch");
    let out = api
        .patch("g", &PatchParams::default(), &Patch::<()>::Json(patch.clone()))
        .await
        .expect("absent: the guard passes");
    assert_eq!(out.data["data"]["b"], "2");
    // Now b exists: the same guarded add is refused, and b keeps its value.
    api.patch(
        "g",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"b": "theirs"}})),
    )
    .await
    .expect("their write");
    let err = api
        .patch("g", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .expect_err("the guard fails");
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 422);
    let causes = &status.details.as_ref().expect("details").causes;
    assert!(
        causes.iter().all(|c| c.reason == "UnexpectedServerResponse"),
        "{causes:?}"
    );
    assert_eq!(api.get("g").await.expect("get").data["data"]["b"], "theirs");
}

/// Deletes as the API server answers them: a `Status` naming what was deleted; an object with
/// finalizers is only marked (`deletionTimestamp`) and goes when its last finalizer is removed.
#[tokio::test]
async fn deletes_answer_a_status_and_honour_finalizers() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let api = cm_api(&sb.client().expect("client"));
    api.create(&PostParams::default(), &cm("plain", json!({"a": "1"})))
        .await
        .expect("create");
    let gone = api
        .delete("plain", &DeleteParams::default())
        .await
        .expect("delete");
    let status = gone.right().expect("a Status, not the object");
    assert_eq!(status.status, Some(kube::core::response::StatusSummary::Success));
    assert_eq!(status.details.expect("details").name, "plain");

    let mut held = cm("held", json!({"a": "1"}));
    held.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    api.create(&PostParams::default(), &held).await.expect("create");
    let marked = api
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete")
        .left()
        .expect("the object, marked for deletion");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(api.get("held").await.is_ok(), "held by its finalizer");
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove the finalizer");
    let err = api.get("held").await.expect_err("gone once the finalizer is");
    assert_eq!(api_code(&err), 404);
}

/// A label-selector watch, as the API server's watch cache serves it: an object that stops matching
/// arrives as DELETED, one that starts matching as ADDED, a change within the selection as MODIFIED.
#[tokio::test]
async fn a_selector_watch_sees_objects_leave_and_enter() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let api = cm_api(&sb.client().expect("client"));
    let start = api
        .create(&PostParams::default(), &cm("sel", json!({"a": "1"})))
        .await
        .expect("create");
    let rv = start.metadata.resource_version.clone().expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().labels("app=x").timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    let label = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"app": v}}}));
    let data = Patch::Merge(json!({"data": {"a": "2"}}));
    api.patch("sel", &PatchParams::default(), &data)
        .await
        .expect("edit");
    api.patch("sel", &PatchParams::default(), &label("y"))
        .await
        .expect("leave");
    api.patch("sel", &PatchParams::default(), &data)
        .await
        .expect("edit outside");
    api.patch("sel", &PatchParams::default(), &label("x"))
        .await
        .expect("enter");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.expect("event") {
            Some(WatchEvent::Modified(_)) => seen.push("MODIFIED"),
            Some(WatchEvent::Deleted(_)) => seen.push("DELETED"),
            Some(WatchEvent::Added(_)) => seen.push("ADDED"),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["MODIFIED", "DELETED", "ADDED"]);
}

/// Server-side apply as the API server does it: applying a value equal to another manager's makes
/// the field shared; changing a field another manager owns is a 409 whose `details.causes` name the
/// field and the manager, until forced.
#[tokio::test]
async fn apply_shares_equal_values_and_names_conflicts() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let api = deploy_api(&sb.client().expect("client"), "default");
    let body = |replicas: i64| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shared"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "s"}},
                "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})
    };
    let apply = |manager: &str, force: bool| {
        let mut p = PatchParams::apply(manager);
        p.force = force;
        p
    };
    api.patch("shared", &apply("team-a", false), &Patch::Apply(body(3)))
        .await
        .expect("first apply");
    api.patch("shared", &apply("team-b", false), &Patch::Apply(body(3)))
        .await
        .expect("an equal value is no conflict");
    let owners = |o: &DynamicObject| -> Vec<String> {
        o.metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|e| {
                e.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
            })
            .filter_map(|e| e.manager.clone())
            .collect()
    };
    let now = api.get("shared").await.expect("get");
    assert_eq!(owners(&now), ["team-a", "team-b"], "shared ownership");
    let err = api
        .patch("shared", &apply("team-b", false), &Patch::Apply(body(5)))
        .await
        .expect_err("team-a owns replicas too");
    let kube::Error::Api(status) = &err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 409);
    let causes = &status.details.as_ref().expect("details").causes;
    assert!(
        causes.iter().any(|c| c.reason == "FieldManagerConflict"
            && c.field == ".spec.replicas"
            && c.message.contains("team-a")),
        "{causes:?}"
    );
    let forced = api
        .patch("shared", &apply("team-b", true), &Patch::Apply(body(5)))
        .await
        .expect("forced");
    assert_eq!(forced.data["spec"]["replicas"], 5);
    assert_eq!(owners(&forced), ["team-b"], "forcing takes the field over");
}

/// `autoscaling/v1` served beside `v2`, over the same objects: a v1 write is stored as v2 (the CPU
/// target a Resource metric), a v1 read sees the target again, and a v1 update keeps what only v2 can
/// say (behavior); discovery prefers v2.
#[tokio::test]
async fn autoscaling_v1_is_served_beside_v2() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let client = sb.client().expect("client");
    let api = |v: &str| -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("autoscaling", v, "HorizontalPodAutoscaler"),
            "horizontalpodautoscalers",
        );
        Api::namespaced_with(client.clone(), "default", &ar)
    };
    let v1: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 75}}),
    )
    .expect("hpa");
    let created = api("v1")
        .create(&PostParams::default(), &v1)
        .await
        .expect("create v1");
    assert_eq!(created.data["spec"]["targetCPUUtilizationPercentage"], 75);
    let as_v2 = api("v2").get("web").await.expect("get v2");
    assert_eq!(
        as_v2.data["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        75
    );
    // Someone sets a v2-only behavior; a v1 client's update keeps it.
    api("v2")
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}})),
        )
        .await
        .expect("v2 patch");
    let mut again = api("v1").get("web").await.expect("get v1");
    assert!(again.data["spec"].get("behavior").is_none());
    again.data["spec"]["targetCPUUtilizationPercentage"] = json!(60);
    api("v1")
        .replace("web", &PostParams::default(), &again)
        .await
        .expect("replace v1");
    let after = api("v2").get("web").await.expect("get v2");
    assert_eq!(
        after.data["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        60
    );
    assert_eq!(
        after.data["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        60
    );
    let group = kube::discovery::group(&client, "autoscaling")
        .await
        .expect("discovery");
    assert_eq!(group.preferred_version_or_latest(), "v2");
}

/// A resumed watch replays only its own resource's changes: another kind's updates since that
/// resourceVersion never reach it (they once did, as DELETED events of the wrong kind).
#[tokio::test]
async fn a_resumed_watch_replays_only_its_own_resource() {
    let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
    let client = sb.client().expect("client");
    let cms = cm_api(&client);
    let deploys = deploy_api(&client, "default");
    let d: DynamicObject = serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "other"}, "spec": {"selector": {"matchLabels": {"app": "o"}},
        "template": {"metadata": {"labels": {"app": "o"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
    .expect("deployment");
    // The other object exists before the resourceVersion the watch resumes from.
    deploys.create(&PostParams::default(), &d).await.expect("create");
    let start = cms
        .create(&PostParams::default(), &cm("mine", json!({"a": "1"})))
        .await
        .expect("create");
    let rv = start.metadata.resource_version.clone().expect("rv");
    deploys
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("edit");
    cms.patch(
        "mine",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await
    .expect("edit");
    let mut stream = cms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .expect("watch")
        .boxed();
    let mut seen = Vec::new();
    while let Some(ev) = stream.try_next().await.expect("event") {
        match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                seen.push(format!(
                    "{}/{}",
                    o.types.map(|t| t.kind).unwrap_or_default(),
                    o.metadata.name.unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["ConfigMap/mine"]);
}

/// Clients that reconnect their watches the moment they end (as every controller does) cannot hold
/// the sandbox's shutdown open: a watch opened between the watches being broken and the server
/// stopping is broken too (it held the graceful stop for ever, and a daemon test with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_watches_reopened_while_it_stops() {
    for round in 0..10u64 {
        let sb = Sandbox::start(SandboxConfig::default()).await.expect("sandbox");
        let client = sb.client().expect("client");
        let mut watchers = Vec::new();
        for _ in 0..32 {
            let api = cm_api(&client);
            watchers.push(tokio::spawn(async move {
                // Until the server is gone: each ended watch is opened again at once.
                while let Ok(stream) = api.watch(&WatchParams::default().timeout(290), "0").await {
                    let mut stream = stream.boxed();
                    while let Some(Ok(_)) = stream.next().await {}
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100 + 37 * round)).await;
        tokio::time::timeout(std::time::Duration::from_secs(10), sb.shutdown())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the sandbox did not stop within 10 s"));
        for w in watchers {
            w.abort();
        }
    }
}
