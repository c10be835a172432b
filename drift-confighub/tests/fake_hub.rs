//! The client against the fake hub over loopback HTTP: the documented routes, JSON and behaviours.

use std::time::Duration;

use drift_confighub::fake::{FakeHub, FakeHubConfig, Faults};
use drift_confighub::model::{
    FunctionInvocation, FunctionInvocationsRequest, KUBERNETES_YAML, Labels, Space, Unit,
};
use drift_confighub::{ClientConfig, ConfigHubClient, ConfigHubError, RetryPolicy, UnitQuery, UpdateOptions};
use serde_json::json;

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - name: app\n        image: app:1\n";

async fn hub() -> (FakeHub, ConfigHubClient) {
    let hub = FakeHub::start(FakeHubConfig::default()).await.expect("fake hub");
    let client = ConfigHubClient::new(
        hub.client_config()
            .retry(RetryPolicy::default().base_delay(Duration::from_millis(5))),
    )
    .expect("client");
    (hub, client)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

async fn space(c: &ConfigHubClient, slug: &str) -> Space {
    c.ensure_space(slug, slug, &labels(&[("environment", "dev")]))
        .await
        .expect("space")
        .0
}

async fn unit(c: &ConfigHubClient, s: &Space, slug: &str, data: &str, l: &[(&str, &str)]) -> Unit {
    let mut u = Unit {
        slug: slug.into(),
        toolchain_type: KUBERNETES_YAML.into(),
        labels: labels(l),
        ..Unit::default()
    };
    u.set_data(data.as_bytes());
    c.create_unit(&s.space_id, &u).await.expect("create unit")
}

#[tokio::test]
async fn units_versions_revisions_and_where_clauses() {
    let (_hub, c) = hub().await;
    let s = space(&c, "shop-dev").await;
    let web = unit(&c, &s, "web", WEB, &[("tier", "critical")]).await;
    unit(
        &c,
        &s,
        "db",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\n",
        &[("tier", "data")],
    )
    .await;
    assert_eq!(web.head_revision_num, 1);
    assert_eq!(
        web.data_text().expect("text"),
        WEB,
        "Data is base64 of the YAML, decoded back exactly"
    );
    assert_eq!(web.data_hash.len(), 64);

    // Lists come wrapped as ExtendedUnit; where-clauses use label dot notation.
    let crit = c
        .list_units(&s.space_id, &UnitQuery::with_where("Labels.tier = 'critical'"))
        .await
        .expect("list");
    assert_eq!(
        crit.iter().map(|u| u.unit.slug.as_str()).collect::<Vec<_>>(),
        ["web"]
    );
    assert_eq!(crit[0].space.as_ref().map(|s| s.slug.as_str()), Some("shop-dev"));
    let both = c
        .list_units(
            &s.space_id,
            &UnitQuery::with_where("Slug IN ('web', 'db') AND HeadRevisionNum > LiveRevisionNum"),
        )
        .await
        .expect("list");
    assert_eq!(both.len(), 2);
    // `select` trims the fields (ids and Slug always come).
    let lean = c
        .list_units(&s.space_id, &UnitQuery::default().select("HeadRevisionNum"))
        .await
        .expect("select");
    assert!(
        lean.iter()
            .all(|u| u.unit.data.is_empty() && !u.unit.unit_id.is_empty())
    );

    // Read-modify-write with Version; a stale Version is a conflict.
    let mut edit = c.get_unit(&s.space_id, &web.unit_id).await.expect("get").unit;
    edit.set_data(WEB.replace("replicas: 2", "replicas: 3").as_bytes());
    edit.last_change_description = "scale web to 3".into();
    let v2 = c
        .update_unit(&edit, &UpdateOptions::default())
        .await
        .expect("update");
    assert_eq!(v2.head_revision_num, 2);
    assert!(v2.version > edit.version);
    let stale = c
        .update_unit(&edit, &UpdateOptions::default())
        .await
        .expect_err("stale");
    assert!(matches!(stale, ConfigHubError::Conflict { .. }), "{stale}");
    assert!(
        stale.to_string().contains("PUT /space/{space_id}/unit/{unit_id}")
            && stale.to_string().contains("unit web"),
        "{stale}"
    );
    let revs = c.revisions(&s.space_id, &web.unit_id).await.expect("revisions");
    assert_eq!(
        revs.iter()
            .map(|r| (r.revision_num, r.description.as_str()))
            .collect::<Vec<_>>(),
        [(1, "Created"), (2, "scale web to 3")]
    );

    // Merge-patch of unit fields: a null removes a label.
    let patched = c
        .patch_unit(
            &s.space_id,
            &web.unit_id,
            json!({"Labels": {"tier": null, "team": "a"}}),
            &UpdateOptions::default(),
        )
        .await
        .expect("patch");
    assert_eq!(patched.labels, labels(&[("team", "a")]));
    assert_eq!(
        patched.head_revision_num, 2,
        "labels are not data: no new revision"
    );

    // Duplicate slugs and unknown units.
    let dup = Unit {
        slug: "web".into(),
        toolchain_type: KUBERNETES_YAML.into(),
        ..Unit::default()
    };
    assert!(matches!(
        c.create_unit(&s.space_id, &dup).await,
        Err(ConfigHubError::Conflict { .. })
    ));
    assert!(matches!(
        c.get_unit(&s.space_id, "00000000-0000-4000-8000-000000000000")
            .await,
        Err(ConfigHubError::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_api_rejects_what_the_real_one_rejects() {
    let (hub, c) = hub().await;
    let s = space(&c, "shop").await;
    // Caught before sending: the grammar.
    for bad in [
        "SetIDs contains 'x'",
        "Labels['monitor'] = 'true'",
        "Slug = 'a' OR Slug = 'b'",
    ] {
        let e = c
            .list_units(&s.space_id, &UnitQuery::with_where(bad))
            .await
            .expect_err(bad);
        assert!(matches!(e, ConfigHubError::Where(_)), "{bad}: {e}");
    }
    // Sent, and refused by the server (valid grammar, wrong for the entity): 400 with a message.
    for (bad, why) in [
        ("SetID = 'x'", "Sets no longer exist"),
        ("Colour = 'red'", "unknown attribute"),
        ("HeadRevisionNum LIKE '1%'", "does not apply"),
    ] {
        let e = c
            .list_units(&s.space_id, &UnitQuery::with_where(bad))
            .await
            .expect_err(bad);
        assert!(
            matches!(&e, ConfigHubError::Api { status: 400, message, .. } if message.contains(why)),
            "{bad}: {e}"
        );
    }
    // The routes the earlier Go implementation used do not exist.
    let http = reqwest::Client::new();
    for (m, path) in [
        ("PATCH", format!("/space/{}/unit/bulk-patch", s.space_id)),
        ("POST", format!("/space/{}/set", s.space_id)),
        ("POST", "/target".to_string()),
    ] {
        let r = http
            .request(m.parse().expect("method"), format!("{}{path}", hub.url()))
            .bearer_auth(hub.token())
            .body("{}")
            .send()
            .await
            .expect("send");
        assert!(
            r.status() == 404 || r.status() == 405,
            "{m} {path}: {}",
            r.status()
        );
    }
    // Data that is not base64, a missing toolchain, a bad token.
    let raw = json!({"Slug": "x", "ToolchainType": KUBERNETES_YAML, "Data": "{not base64}"});
    let r = http
        .post(format!("{}/space/{}/unit", hub.url(), s.space_id))
        .bearer_auth(hub.token())
        .json(&raw)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let no_tool = Unit {
        slug: "y".into(),
        ..Unit::default()
    };
    assert!(matches!(
        c.create_unit(&s.space_id, &no_tool).await,
        Err(ConfigHubError::Api { status: 400, .. })
    ));
    let anon = ConfigHubClient::new(ClientConfig::default().base_url(hub.url())).expect("client");
    assert!(matches!(
        anon.list_spaces(None).await,
        Err(ConfigHubError::Unauthorized { status: 401, .. })
    ));
}

#[tokio::test]
async fn clone_upgrade_merges_and_push_upgrade() {
    let (_hub, c) = hub().await;
    let base = space(&c, "p-base").await;
    let dev = space(&c, "p-dev").await;
    let up = unit(&c, &base, "web", WEB, &[]).await;
    let down = c
        .clone_unit(&dev.space_id, &up, "web", &labels(&[("environment", "dev")]))
        .await
        .expect("clone");
    assert_eq!(down.upstream_unit_id.as_deref(), Some(up.unit_id.as_str()));
    assert_eq!(down.upstream_revision_num, 1);
    assert_eq!(down.data_text().expect("text"), WEB);

    // dev customises replicas; base changes the image.
    let mut d = down.clone();
    d.set_data(WEB.replace("replicas: 2", "replicas: 5").as_bytes());
    c.update_unit(&d, &UpdateOptions::default())
        .await
        .expect("dev edit");
    let mut u = c.get_unit(&base.space_id, &up.unit_id).await.expect("get").unit;
    u.set_data(WEB.replace("app:1", "app:2").as_bytes());
    c.update_unit(&u, &UpdateOptions::default())
        .await
        .expect("base edit");

    let stale = c.stale_downstream_units(&dev.space_id).await.expect("stale");
    assert_eq!(stale.iter().map(|u| u.slug.as_str()).collect::<Vec<_>>(), ["web"]);
    let result = drift_confighub::environments::push_upgrade(
        &c,
        &c.get_unit(&base.space_id, &up.unit_id).await.expect("get").unit,
    )
    .await
    .expect("push-upgrade");
    assert_eq!(result.status, 200);
    let after = result.items[0].unit.clone().expect("unit");
    let text = after.data_text().expect("text");
    assert!(
        text.contains("replicas: 5") && text.contains("app:2"),
        "both changes kept: {text}"
    );
    assert_eq!(after.upstream_revision_num, 2);
    assert!(
        c.stale_downstream_units(&dev.space_id)
            .await
            .expect("stale")
            .is_empty()
    );
}

#[tokio::test]
async fn bulk_results_are_per_unit_with_207() {
    let (_hub, c) = hub().await;
    let base = space(&c, "q-base").await;
    let dev = space(&c, "q-dev").await;
    let up = unit(&c, &base, "a", WEB, &[]).await;
    c.clone_unit(&dev.space_id, &up, "a", &Labels::new())
        .await
        .expect("clone");
    unit(&c, &dev, "b", WEB, &[]).await; // no upstream: an upgrade of it fails
    let w = format!("SpaceID = '{}'", dev.space_id);
    let r = c
        .bulk_patch_units(&w, serde_json::Value::Null, &UpdateOptions::upgrade())
        .await
        .expect("bulk");
    assert_eq!(r.status, 207);
    let errors: Vec<_> = r.items.iter().filter_map(|i| i.error.as_ref()).collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("no upstream"), "{:?}", errors[0]);
    assert_eq!(r.items.iter().filter(|i| i.error.is_none()).count(), 1);
}

#[tokio::test]
async fn apply_is_asynchronous_and_needs_a_target() {
    let (hub, c) = hub().await;
    let s = space(&c, "apply").await;
    let u = unit(&c, &s, "web", WEB, &[]).await;
    let e = c
        .apply_unit(&s.space_id, &u.unit_id, false)
        .await
        .expect_err("no target");
    assert!(e.to_string().contains("no target"), "{e}");
    let target = hub.add_target("apply", "k8s-worker").expect("target");
    c.patch_unit(
        &s.space_id,
        &u.unit_id,
        json!({"TargetID": target}),
        &UpdateOptions::default(),
    )
    .await
    .expect("set target");
    assert!(
        c.live_state(&s.space_id, &u.unit_id)
            .await
            .expect("live")
            .is_none()
    );

    let op = c.apply_unit(&s.space_id, &u.unit_id, false).await.expect("apply");
    assert_eq!(op.action, "Apply");
    let done = c
        .wait_for_operation(&op, Duration::from_secs(5))
        .await
        .expect("completes");
    assert_eq!(
        (done.status.as_str(), done.result.as_str()),
        ("Completed", "ApplyCompleted")
    );
    let after = c.get_unit(&s.space_id, &u.unit_id).await.expect("get").unit;
    assert_eq!((after.live_revision_num, after.last_applied_revision_num), (1, 1));
    assert_eq!(
        c.live_state(&s.space_id, &u.unit_id)
            .await
            .expect("live")
            .as_deref(),
        Some(WEB.as_bytes())
    );

    // An apply that the worker fails is reported as such.
    hub.on_apply(std::sync::Arc::new(|_req| {
        Box::pin(async { Err("the cluster refused".to_string()) })
    }));
    let op = c.apply_unit(&s.space_id, &u.unit_id, false).await.expect("apply");
    let e = c
        .wait_for_operation(&op, Duration::from_secs(5))
        .await
        .expect_err("fails");
    assert!(
        matches!(&e, ConfigHubError::OperationFailed { result, .. } if result == "ApplyFailed"),
        "{e}"
    );
}

#[tokio::test]
async fn older_servers_serve_live_state_under_the_old_route() {
    let hub = FakeHub::start(FakeHubConfig::default().legacy_routes(true))
        .await
        .expect("hub");
    let c = ConfigHubClient::new(hub.client_config()).expect("client");
    let s = space(&c, "old").await;
    let u = unit(&c, &s, "web", WEB, &[]).await;
    let t = hub.add_target("old", "k8s").expect("target");
    c.patch_unit(
        &s.space_id,
        &u.unit_id,
        json!({"TargetID": t}),
        &UpdateOptions::default(),
    )
    .await
    .expect("target");
    let op = c.apply_unit(&s.space_id, &u.unit_id, false).await.expect("apply");
    c.wait_for_operation(&op, Duration::from_secs(5))
        .await
        .expect("done");
    assert_eq!(
        c.live_state(&s.space_id, &u.unit_id)
            .await
            .expect("live")
            .as_deref(),
        Some(WEB.as_bytes())
    );
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.contains("/live_state") && r.ends_with("404")),
        "tried the new route first"
    );
}

#[tokio::test]
async fn functions_edit_data_with_a_change_description() {
    let (_hub, c) = hub().await;
    let s = space(&c, "fn").await;
    let u = unit(&c, &s, "web", WEB, &[]).await;
    let req = FunctionInvocationsRequest {
        function_invocations: vec![FunctionInvocation::new("set-replicas", &[("replicas", json!(4))])],
        change_description: "drift-detector: revert replicas".into(),
        stop_on_error: true,
    };
    let dry = c
        .invoke_functions(&s.space_id, "Slug = 'web'", &req, true)
        .await
        .expect("dry run");
    assert!(dry.items[0].success);
    assert_eq!(
        c.get_unit(&s.space_id, &u.unit_id)
            .await
            .expect("get")
            .unit
            .head_revision_num,
        1,
        "a dry run changes nothing"
    );
    c.invoke_functions(&s.space_id, "Slug = 'web'", &req, false)
        .await
        .expect("invoke");
    let after = c.get_unit(&s.space_id, &u.unit_id).await.expect("get").unit;
    assert_eq!(after.head_revision_num, 2);
    assert_eq!(after.last_change_description, "drift-detector: revert replicas");
    assert!(after.data_text().expect("text").contains("replicas: 4"));
}

#[tokio::test]
async fn idempotent_calls_retry_and_creates_do_not() {
    let hub = FakeHub::start(FakeHubConfig::default()).await.expect("hub");
    let c = ConfigHubClient::new(
        hub.client_config().retry(
            RetryPolicy::default()
                .base_delay(Duration::from_millis(2))
                .attempts(8),
        ),
    )
    .expect("client");
    let s = space(&c, "retry").await;
    // Every other request is rate limited (Retry-After: 0): reads get through.
    hub.set_faults(Faults::none().rate_limit_429(0.5, 0).seed(7));
    for _ in 0..10 {
        c.list_units(&s.space_id, &UnitQuery::default())
            .await
            .expect("retried through 429s");
    }
    assert!(hub.fault_counts().injected_429 > 0);
    assert!(c.stats().retries.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // A create is never repeated blindly: one request, one error.
    hub.set_faults(Faults::none().error_500(1.0).writes_only(true));
    let before = hub.fault_counts().requests;
    let u = Unit {
        slug: "x".into(),
        toolchain_type: KUBERNETES_YAML.into(),
        ..Unit::default()
    };
    let e = c.create_unit(&s.space_id, &u).await.expect_err("500");
    assert!(matches!(e, ConfigHubError::Api { status: 500, .. }), "{e}");
    assert_eq!(hub.fault_counts().requests - before, 1);
}
