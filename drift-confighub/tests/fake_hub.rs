//! The client against the ConfigHub simulator over loopback HTTP: today's routes (v0.8.5), JSON and
//! behaviours — data endpoints, write wrappers, paging, releases, the removed routes answering 404.

use std::time::Duration;

use drift_confighub::fake::{FakeHub, FakeHubConfig, Faults};
use drift_confighub::model::{
    FunctionInvocation, FunctionInvocationsRequest, KUBERNETES_YAML, Labels, ReleasePublishRequest, Space,
    Unit,
};
use drift_confighub::{
    ClientConfig, ConfigHubClient, ConfigHubError, DataRead, DataWrite, RetryPolicy, UnitQuery, UpdateOptions,
};
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
    let u = Unit {
        slug: slug.into(),
        toolchain_type: KUBERNETES_YAML.into(),
        labels: labels(l),
        ..Unit::default()
    };
    c.create_unit_with_data(&s.space_id, &u, data.as_bytes())
        .await
        .expect("create unit")
}

async fn text(c: &ConfigHubClient, u: &Unit) -> String {
    String::from_utf8(c.read_unit_data(&u.space_id, &u.unit_id).await.expect("data").0).expect("utf8")
}

#[tokio::test]
async fn units_data_endpoints_revisions_and_where_clauses() {
    let (hub, c) = hub().await;
    let info = c.check_server().await.expect("info");
    assert_eq!(info.version, "v0.8.5");
    assert_eq!(c.server_version(), Some("v0.8.5"));
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
    // Created empty (revision 1), then its data written (revision 2): data is not in the Unit.
    assert_eq!(web.head_revision_num, 2);
    assert_eq!(web.data_hash, drift_confighub::model::data_hash(WEB.as_bytes()));
    assert_eq!(web.last_released_revision_num, 0);
    assert_eq!(text(&c, &web).await, WEB, "raw bytes, not base64");

    // Reads are cached by hash: If-None-Match answers 304.
    assert_eq!(
        c.unit_data(&s.space_id, &web.unit_id, Some(&web.data_hash))
            .await
            .expect("304"),
        DataRead::NotModified
    );
    // A write conditional on a stale hash is a conflict, never a blind overwrite.
    let stale = c
        .put_unit_data(
            &s.space_id,
            &web.unit_id,
            b"x: 1\n",
            &DataWrite::if_match("0".repeat(64)),
        )
        .await
        .expect_err("stale If-Match");
    assert!(matches!(stale, ConfigHubError::Conflict { .. }), "{stale}");
    let v3 = c
        .put_unit_data(
            &s.space_id,
            &web.unit_id,
            WEB.replace("replicas: 2", "replicas: 3").as_bytes(),
            &DataWrite::if_match(web.data_hash.clone()).description("scale web to 3"),
        )
        .await
        .expect("conditional write");
    assert_eq!(v3.head_revision_num, 3);
    let revs = c
        .revisions(&s.space_id, &web.unit_id, None)
        .await
        .expect("revisions");
    assert_eq!(
        revs.iter()
            .map(|r| (r.revision_num, r.description.as_str()))
            .collect::<Vec<_>>(),
        [(1, "Created"), (2, "Updated data"), (3, "scale web to 3")]
    );
    let (old, rev) = c
        .revision_data_by_num(&s.space_id, &web.unit_id, 2)
        .await
        .expect("revision data");
    assert_eq!(String::from_utf8(old).expect("utf8"), WEB);
    assert_eq!(rev.data_hash, web.data_hash);
    // A dry run shows what the write would produce and writes nothing.
    let dry = c
        .put_unit_data_full(
            &s.space_id,
            &web.unit_id,
            b"a: 1\n",
            &DataWrite::default().dry_run(true),
        )
        .await
        .expect("dry run");
    assert_eq!(dry.config_data.as_deref(), Some("a: 1\n"));
    assert_eq!(
        c.get_unit(&s.space_id, &web.unit_id)
            .await
            .expect("get")
            .unit
            .head_revision_num,
        3
    );

    // Lists come wrapped as ExtendedUnit; joins are filled as `include` asks.
    let crit = c
        .list_units(
            &s.space_id,
            &UnitQuery::with_where("Labels.tier = 'critical'").include("SpaceID"),
        )
        .await
        .expect("list");
    assert_eq!(
        crit.iter().map(|u| u.unit.slug.as_str()).collect::<Vec<_>>(),
        ["web"]
    );
    assert_eq!(crit[0].space.as_ref().map(|s| s.slug.as_str()), Some("shop-dev"));
    let unreleased = c
        .list_units(
            &s.space_id,
            &UnitQuery::with_where("HeadRevisionNum > LastReleasedRevisionNum"),
        )
        .await
        .expect("list");
    assert_eq!(unreleased.len(), 2);
    // `/unit_data` reads many units' data in one call.
    let rows = c
        .search_unit_data(&UnitQuery::with_where(format!("SpaceID = '{}'", s.space_id)))
        .await
        .expect("unit_data");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r.slug == "db" && r.data.contains("kind: ConfigMap"))
    );

    // Merge-patch of unit fields: a null removes a label; labels are not data: no new revision.
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
    assert_eq!(patched.head_revision_num, 3);
    // Metadata PUT with a stale Version is a conflict.
    let mut meta = patched.clone();
    meta.version -= 1;
    assert!(matches!(
        c.update_unit(&meta, &UpdateOptions::default()).await,
        Err(ConfigHubError::Conflict { .. })
    ));

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
    assert!(
        hub.contract_violations().is_empty(),
        "{:?}",
        hub.contract_violations()
    );
}

#[tokio::test]
async fn lists_page_until_no_continue_header() {
    let (hub, c) = hub().await;
    let s = space(&c, "many").await;
    for i in 0..(drift_confighub::PAGE_SIZE + 7) {
        let u = Unit {
            slug: format!("u{i}"),
            toolchain_type: KUBERNETES_YAML.into(),
            ..Unit::default()
        };
        c.create_unit(&s.space_id, &u).await.expect("create");
    }
    let all = c
        .list_units(&s.space_id, &UnitQuery::default())
        .await
        .expect("list");
    assert_eq!(all.len(), drift_confighub::PAGE_SIZE as usize + 7);
    let pages = hub
        .requests()
        .iter()
        .filter(|r| r.starts_with(&format!("GET /api/space/{}/unit?", s.space_id)))
        .count();
    assert_eq!(
        pages,
        2,
        "one page of {} and the rest",
        drift_confighub::PAGE_SIZE
    );
    assert!(
        hub.requests().iter().any(|r| r.contains("continue=off-")),
        "the second page sends the token back"
    );
}

#[tokio::test]
async fn the_api_rejects_what_the_real_one_rejects() {
    let (hub, c) = hub().await;
    let s = space(&c, "shop").await;
    // Caught before sending: the grammar and today's attributes.
    for bad in [
        "SetIDs contains 'x'",
        "Labels['monitor'] = 'true'",
        "Slug = 'a' OR Slug = 'b'",
        "HeadRevisionNum > LiveRevisionNum",
        "LastAppliedRevisionNum > 0",
        "Slug = 'it''s'",
    ] {
        let e = c
            .list_units(&s.space_id, &UnitQuery::with_where(bad))
            .await
            .expect_err(bad);
        assert!(matches!(e, ConfigHubError::Where(_)), "{bad}: {e}");
    }
    let http = reqwest::Client::new();
    let get = |q: String| {
        let http = http.clone();
        let url = format!("{}/space/{}/unit?{q}", hub.url(), s.space_id);
        let token = hub.token();
        async move {
            let r = http.get(url).bearer_auth(token).send().await.expect("send");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    // Sent raw, the simulator refuses them as the server does: 400 with a message.
    for (q, why) in [
        ("where=LiveRevisionNum%20%3E%200", "LastReleasedRevisionNum"),
        (
            "where=UpstreamRevisionNum%20%3C%20UpstreamUnit.HeadRevisionNum",
            "include=UpstreamUnitID",
        ),
        ("select=Data", "no entity has it"),
        ("limit=5000", "limit must be"),
    ] {
        let (status, body) = get(q.to_string()).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body.contains(why), "{q}: {body}");
    }
    // The routes of the older API, and those the earlier Go implementation invented, are gone: 404.
    let web = unit(&c, &s, "web", WEB, &[]).await;
    for (m, path) in [
        (
            "POST",
            format!("/space/{}/unit/{}/apply", s.space_id, web.unit_id),
        ),
        (
            "POST",
            format!("/space/{}/unit/{}/refresh", s.space_id, web.unit_id),
        ),
        (
            "GET",
            format!("/space/{}/unit/{}/live_state", s.space_id, web.unit_id),
        ),
        (
            "GET",
            format!("/space/{}/unit/{}/live-state", s.space_id, web.unit_id),
        ),
        (
            "GET",
            format!("/space/{}/unit/{}/extended", s.space_id, web.unit_id),
        ),
        ("POST", "/unit/apply".to_string()),
        ("PATCH", format!("/space/{}/unit/bulk-patch", s.space_id)),
        ("POST", format!("/space/{}/set", s.space_id)),
    ] {
        let r = http
            .request(m.parse().expect("method"), format!("{}{path}", hub.url()))
            .bearer_auth(hub.token())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404, "{m} {path}");
    }
    // Data inside the Unit JSON is refused; a body of the wrong content type too.
    let raw = json!({"Slug": "x", "ToolchainType": KUBERNETES_YAML, "Data": "a2luZDogWAo="});
    let r = http
        .post(format!("{}/space/{}/unit", hub.url(), s.space_id))
        .bearer_auth(hub.token())
        .json(&raw)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap_or_default()
            .contains("PUT /space/{space_id}/unit/{unit_id}/data")
    );
    let r = http
        .put(format!(
            "{}/space/{}/unit/{}/data",
            hub.url(),
            s.space_id,
            web.unit_id
        ))
        .bearer_auth(hub.token())
        .json(&json!({"Data": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 415);
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
    // `/info` needs no token.
    assert!(anon.info().await.is_ok());
}

#[tokio::test]
async fn an_older_server_is_refused_with_a_clear_error() {
    let hub = FakeHub::start(FakeHubConfig::default().version("v0.4.21"))
        .await
        .expect("hub");
    let c = ConfigHubClient::new(hub.client_config()).expect("client");
    let e = c.check_server().await.expect_err("old");
    assert!(matches!(e, ConfigHubError::Unsupported { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("v0.4.21") && msg.contains("API 0.8"), "{msg}");
    let newer = FakeHub::start(FakeHubConfig::default().version("v0.9.0"))
        .await
        .expect("hub");
    let c = ConfigHubClient::new(newer.client_config()).expect("client");
    assert!(
        c.check_server().await.is_ok(),
        "a newer server is accepted with a warning"
    );
}

#[tokio::test]
async fn clone_upgrade_merges_and_push_upgrade() {
    let (hub, c) = hub().await;
    let base = space(&c, "p-base").await;
    let dev = space(&c, "p-dev").await;
    let up = unit(&c, &base, "web", WEB, &[]).await;
    let down = c
        .clone_unit(&dev.space_id, &up, "web", &labels(&[("environment", "dev")]))
        .await
        .expect("clone");
    assert_eq!(down.upstream_unit_id.as_deref(), Some(up.unit_id.as_str()));
    assert_eq!(down.upstream_revision_num, 2);
    assert_eq!(text(&c, &down).await, WEB, "data copied server-side");

    // dev customises replicas; base changes the image.
    c.put_unit_data(
        &dev.space_id,
        &down.unit_id,
        WEB.replace("replicas: 2", "replicas: 5").as_bytes(),
        &DataWrite::default(),
    )
    .await
    .expect("dev edit");
    c.put_unit_data(
        &base.space_id,
        &up.unit_id,
        WEB.replace("app:1", "app:2").as_bytes(),
        &DataWrite::default(),
    )
    .await
    .expect("base edit");

    let stale = c.stale_downstream_units(&dev.space_id).await.expect("stale");
    assert_eq!(stale.iter().map(|u| u.slug.as_str()).collect::<Vec<_>>(), ["web"]);
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.contains("include=UpstreamUnitID") && r.starts_with("GET /api/unit?")),
        "the join is sent with its include"
    );
    let result = drift_confighub::environments::push_upgrade(
        &c,
        &c.get_unit(&base.space_id, &up.unit_id).await.expect("get").unit,
    )
    .await
    .expect("push-upgrade");
    assert_eq!(result.status, 200);
    let after = result.items[0].unit.clone().expect("unit");
    let t = text(&c, &after).await;
    assert!(
        t.contains("replicas: 5") && t.contains("app:2"),
        "both changes kept: {t}"
    );
    assert_eq!(after.upstream_revision_num, 3);
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
async fn releases_advance_the_released_revision_and_carry_live_status() {
    let hub = FakeHub::start(FakeHubConfig::default().agent_reporter("argobot"))
        .await
        .expect("hub");
    let c = ConfigHubClient::new(hub.client_config()).expect("client");
    let s = space(&c, "rel").await;
    let web = unit(&c, &s, "web", WEB, &[]).await;
    // No release Target: nothing to publish for.
    let e = c
        .publish_release(&s.space_id, &ReleasePublishRequest::default())
        .await
        .expect_err("no target");
    assert!(e.to_string().contains("ReleaseTargetID"), "{e}");
    drift_confighub::setup::connect_target(&c, "rel", "cluster-a")
        .await
        .expect("target");
    let r1 = c
        .publish_release(&s.space_id, &ReleasePublishRequest::default())
        .await
        .expect("publish");
    assert_eq!((r1.release.release_num, r1.release.unit_count), (1, 1));
    assert!(r1.message.is_empty());
    let u = c.get_unit(&s.space_id, &web.unit_id).await.expect("get").unit;
    assert_eq!(u.last_released_revision_num, u.head_revision_num);
    // Nothing changed: the latest Release, with a message (v0.8.4).
    let again = c
        .publish_release(&s.space_id, &ReleasePublishRequest::default())
        .await
        .expect("publish again");
    assert_eq!(again.release.release_id, r1.release.release_id);
    assert!(again.message.contains("nothing changed"), "{}", again.message);
    // The agent syncs and reports LiveStatus as argobot would.
    hub.wait_delivered(&r1.release.release_id, Duration::from_secs(5))
        .await
        .expect("synced");
    let latest = c.latest_release(&s.space_id).await.expect("list").expect("one");
    let ls = latest.live_status.expect("live status");
    assert_eq!(ls.sync.as_deref(), Some("Synced"));
    assert_eq!(ls.reporter.as_deref(), Some("argobot"));
    // Only Labels, Annotations, DeleteGates and LiveStatus change; messages are capped at 1024.
    let e = c
        .patch_release(&s.space_id, &latest.release_id, json!({"UnitCount": 9}))
        .await
        .expect_err("immutable");
    assert!(e.to_string().contains("cannot change"), "{e}");
    let e = c
        .patch_release(
            &s.space_id,
            &latest.release_id,
            json!({"LiveStatus": {"Message": "x".repeat(1025)}}),
        )
        .await
        .expect_err("too long");
    assert!(e.to_string().contains("1024"), "{e}");

    // An edit is unreleased until the next Release; a rollback restores the revision before it.
    c.put_unit_data(
        &s.space_id,
        &web.unit_id,
        WEB.replace("replicas: 2", "replicas: 9").as_bytes(),
        &DataWrite::default(),
    )
    .await
    .expect("edit");
    let u = c.get_unit(&s.space_id, &web.unit_id).await.expect("get").unit;
    assert!(u.has_unreleased_changes());
    let r2 = c
        .publish_release(&s.space_id, &ReleasePublishRequest::default())
        .await
        .expect("publish 2");
    assert_eq!(r2.release.release_num, 2);
    let restored = c
        .patch_unit(
            &s.space_id,
            &web.unit_id,
            json!({"LastChangeDescription": "roll back"}),
            &UpdateOptions::restore("Before:LastReleasedRevisionNum"),
        )
        .await
        .expect("restore");
    assert!(text(&c, &restored).await.contains("replicas: 2"));
    let e = c
        .patch_unit(
            &s.space_id,
            &web.unit_id,
            serde_json::Value::Null,
            &UpdateOptions::restore("LiveRevisionNum"),
        )
        .await
        .expect_err("old selector");
    assert!(matches!(e, ConfigHubError::Api { status: 400, .. }), "{e}");
}

#[tokio::test]
async fn functions_edit_data_with_a_change_description() {
    let (_hub, c) = hub().await;
    let s = space(&c, "fn").await;
    let u = unit(&c, &s, "web", WEB, &[]).await;
    let req = FunctionInvocationsRequest {
        function_invocations: vec![
            FunctionInvocation::new("set-replicas", &[("replicas", json!(4))]),
            FunctionInvocation::new(
                "set-container-image",
                &[
                    ("container-name", json!("app")),
                    ("container-image", json!("app:3")),
                ],
            ),
        ],
        toolchain_type: KUBERNETES_YAML.into(),
        change_description: "drift-detector: revert replicas".into(),
        stop_on_error: true,
    };
    let dry = c
        .invoke_functions(&s.space_id, "Slug = 'web'", &req, true)
        .await
        .expect("dry run");
    assert!(dry.items[0].success);
    assert!(
        dry.items[0]
            .config_data
            .as_deref()
            .is_some_and(|d| d.contains("replicas: 4"))
    );
    assert_eq!(
        c.get_unit(&s.space_id, &u.unit_id)
            .await
            .expect("get")
            .unit
            .head_revision_num,
        2,
        "a dry run changes nothing"
    );
    c.invoke_functions(&s.space_id, "Slug = 'web'", &req, false)
        .await
        .expect("invoke");
    let after = c.get_unit(&s.space_id, &u.unit_id).await.expect("get").unit;
    assert_eq!(after.head_revision_num, 3);
    assert_eq!(after.last_change_description, "drift-detector: revert replicas");
    let t = text(&c, &after).await;
    assert!(t.contains("replicas: 4") && t.contains("app:3"), "{t}");
    let get = FunctionInvocationsRequest {
        function_invocations: vec![FunctionInvocation::new("get-replicas", &[])],
        toolchain_type: KUBERNETES_YAML.into(),
        change_description: String::new(),
        stop_on_error: false,
    };
    let out = c
        .invoke_functions(&s.space_id, "Slug = 'web'", &get, true)
        .await
        .expect("get");
    assert!(
        out.items[0].config_data.is_none(),
        "unchanged data is not sent back"
    );
    assert!(out.items[0].outputs["AttributeValueList"].contains('4'));
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
