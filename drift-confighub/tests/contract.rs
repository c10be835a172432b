//! The contract that keeps client and simulator to ConfigHub v0.8.5 as published
//! (`src/fake/confighub-routes.tsv`, from ConfigHub's OpenAPI spec and generated clients):
//!
//! 1. every route the simulator serves is an operation of the table;
//! 2. every route the client can call (each `Call::new(Method::…, "METHOD /path", …)` in its source)
//!    is an operation of the table;
//! 3. every client call, driven once against the simulator, sends only the table's query parameters
//!    and content types (the simulator's gate refuses anything else and records it).

use std::collections::BTreeSet;
use std::time::Duration;

use drift_confighub::fake::{FakeHub, FakeHubConfig, check_request, operations, served_operations};
use drift_confighub::model::{
    ChangeSet, FunctionInvocation, FunctionInvocationsRequest, KUBERNETES_YAML, Labels,
    ReleasePublishRequest, Unit,
};
use drift_confighub::setup::{self, UnitSpec};
use drift_confighub::{
    ConfigHubClient, ConfigHubDesiredStore, ConfigHubDriftLog, ConfigHubRemediator, DataRead, DataWrite,
    DesiredStoreConfig, RemediatorConfig, UnitQuery, UpdateOptions,
};
use drift_core::ports::{DesiredStore, DriftEvent, DriftEventKind, DriftLog, HistoryQuery};
use drift_core::{DesiredObject, DiffEngine, LiveObject, Resource};
use serde_json::json;

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - {name: app, image: 'app:1'}\n";

#[test]
fn contract_every_route_the_simulator_serves_is_in_the_table() {
    let table: BTreeSet<(String, String)> = operations()
        .iter()
        .map(|o| (o.method.clone(), o.path.clone()))
        .collect();
    let served = served_operations();
    assert!(served.len() >= 30, "{served:?}");
    for op in &served {
        assert!(
            table.contains(op),
            "the simulator serves {op:?}, which ConfigHub v0.8.5 does not have"
        );
    }
    // The removed routes are not operations: the gate answers 404 before any handler runs.
    for (m, p) in [
        ("POST", "/space/s/unit/u/apply"),
        ("POST", "/space/s/unit/u/refresh"),
        ("GET", "/space/s/unit/u/live_state"),
        ("POST", "/unit/apply"),
        ("POST", "/unit/refresh"),
    ] {
        assert_eq!(
            check_request(m, p, &[], None, false).map_err(|e| e.0),
            Err(404),
            "{m} {p}"
        );
    }
}

#[test]
fn contract_every_route_in_the_client_source_is_in_the_table() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/client.rs"))
        .expect("client source");
    let mut routes = BTreeSet::new();
    // Each call names its route as `"METHOD /path/{param}"` right after `Method::METHOD,`.
    for chunk in src.split("Call::new(").skip(1) {
        let Some(lit) = chunk.split('"').nth(1) else {
            continue;
        };
        let Some((method, path)) = lit.split_once(' ') else {
            panic!("a call whose route is not `METHOD /path`: {lit:?}")
        };
        assert!(
            chunk.trim_start().starts_with(&format!("Method::{method}")),
            "the route {lit:?} does not match its method: {}",
            &chunk[..chunk.len().min(80)]
        );
        routes.insert((method.to_string(), path.to_string()));
    }
    assert!(routes.len() >= 25, "found {} routes: {routes:?}", routes.len());
    for (m, p) in &routes {
        assert!(
            operations().iter().any(|o| o.method == *m && o.path == *p),
            "the client calls {m} {p}, which is not an operation of ConfigHub v0.8.5"
        );
    }
}

fn drift(name: &str) -> drift_core::Drift {
    let d = |r: i64| {
        Resource::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"}, "spec": {"replicas": r}}))
        .expect("resource")
    };
    DiffEngine::default()
        .diff(&DesiredObject::new(d(2)), Some(&LiveObject::new(d(5))))
        .drifts
        .remove(0)
}

#[tokio::test]
async fn contract_every_client_call_is_an_operation_with_its_parameters() {
    let hub = FakeHub::start(FakeHubConfig::default().agent_reporter("argobot"))
        .await
        .expect("hub");
    let c = ConfigHubClient::new(hub.client_config()).expect("client");
    c.check_server().await.expect("info");
    let labels: Labels = [("environment".to_string(), "prod".to_string())].into();
    let (base, _) = c.ensure_space("c-base", "base", &labels).await.expect("space");
    let (space, _) = c.ensure_space("c-prod", "prod", &labels).await.expect("space");
    c.ensure_space("c-prod", "prod", &[("x".to_string(), "y".to_string())].into())
        .await
        .expect("patch space");
    c.list_spaces(None).await.expect("spaces");
    let up = c
        .create_unit_with_data(
            &base.space_id,
            &Unit {
                slug: "web".into(),
                toolchain_type: KUBERNETES_YAML.into(),
                ..Unit::default()
            },
            WEB.as_bytes(),
        )
        .await
        .expect("create");
    let web = c
        .clone_unit(&space.space_id, &up, "web", &labels)
        .await
        .expect("clone");
    c.get_unit(&space.space_id, &web.unit_id).await.expect("get");
    c.list_units(
        &space.space_id,
        &UnitQuery::default()
            .select("Slug,HeadRevisionNum")
            .include("SpaceID"),
    )
    .await
    .expect("list");
    c.list_all_units(&UnitQuery::with_where(
        "HeadRevisionNum > LastReleasedRevisionNum",
    ))
    .await
    .expect("list all");
    c.unit_by_slug(&space.space_id, "web").await.expect("by slug");
    let (_, hash) = c
        .read_unit_data(&space.space_id, &web.unit_id)
        .await
        .expect("data");
    assert_eq!(
        c.unit_data(&space.space_id, &web.unit_id, Some(&hash))
            .await
            .expect("304"),
        DataRead::NotModified
    );
    c.put_unit_data_full(
        &space.space_id,
        &web.unit_id,
        WEB.as_bytes(),
        &DataWrite::default().dry_run(true),
    )
    .await
    .expect("dry run");
    c.put_unit_data(
        &space.space_id,
        &web.unit_id,
        WEB.replace("replicas: 2", "replicas: 3").as_bytes(),
        &DataWrite::if_match(hash).description("edit"),
    )
    .await
    .expect("write");
    c.search_unit_data(&UnitQuery::with_where(format!("SpaceID = '{}'", space.space_id)))
        .await
        .expect("unit_data");
    c.revisions(&space.space_id, &web.unit_id, None)
        .await
        .expect("revisions");
    c.revision_data_by_num(&space.space_id, &web.unit_id, 1)
        .await
        .expect("revision data");
    let u = c.get_unit(&space.space_id, &web.unit_id).await.expect("get").unit;
    c.update_unit(&u, &UpdateOptions::default()).await.expect("put");
    c.patch_unit(
        &space.space_id,
        &web.unit_id,
        json!({"Labels": {"a": "b"}}),
        &UpdateOptions::default(),
    )
    .await
    .expect("patch");
    c.stale_downstream_units(&space.space_id).await.expect("stale");
    c.bulk_patch_units(
        &format!("SpaceID = '{}'", space.space_id),
        serde_json::Value::Null,
        &UpdateOptions::upgrade().dry_run(true),
    )
    .await
    .expect("bulk");
    c.ensure_filter(&space.space_id, "f", "Unit", "Labels.a = 'b'")
        .await
        .expect("filter");
    c.ensure_filter(&space.space_id, "f", "Unit", "Labels.a = 'c'")
        .await
        .expect("filter update");
    c.list_units(
        &space.space_id,
        &UnitQuery::default().filter(
            c.list_filters(&space.space_id).await.expect("filters")[0]
                .filter_id
                .clone(),
        ),
    )
    .await
    .expect("by filter");
    c.create_change_set(
        &space.space_id,
        &ChangeSet {
            slug: "cs".into(),
            ..ChangeSet::default()
        },
    )
    .await
    .expect("change set");
    let req = FunctionInvocationsRequest {
        function_invocations: vec![FunctionInvocation::new("get-replicas", &[])],
        toolchain_type: KUBERNETES_YAML.into(),
        change_description: String::new(),
        stop_on_error: false,
    };
    c.invoke_functions(&space.space_id, "Slug = 'web'", &req, true)
        .await
        .expect("invoke");
    setup::connect_target(&c, "c-prod", "cluster")
        .await
        .expect("target");
    let r = c
        .publish_release(&space.space_id, &ReleasePublishRequest::default())
        .await
        .expect("publish");
    hub.wait_delivered(&r.release.release_id, Duration::from_secs(5))
        .await
        .expect("synced");
    c.list_releases(&space.space_id, Some("ReleaseNum > 0"))
        .await
        .expect("releases");
    c.latest_release(&space.space_id).await.expect("latest");
    c.patch_release(
        &space.space_id,
        &r.release.release_id,
        json!({"Labels": {"k": "v"}}),
    )
    .await
    .expect("patch release");
    // The adapters.
    let store = ConfigHubDesiredStore::new(c.clone(), DesiredStoreConfig::spaces(["c-prod"]));
    let set = store.load().await.expect("desired");
    assert!(!set.resources.is_empty());
    let log = ConfigHubDriftLog::connect(c.clone(), "c-records")
        .await
        .expect("log");
    let prov = set.resources[0].provenance.clone();
    let e = DriftEvent::new(DriftEventKind::Opened, 1, drift("web"), "t", "r").with_provenance(Some(prov));
    log.append(&e).await.expect("append");
    log.append(
        &DriftEvent::new(DriftEventKind::Resolved, 2, drift("web"), "t", "r")
            .with_provenance(e.provenance.clone()),
    )
    .await
    .expect("append");
    log.records(&HistoryQuery::default()).await.expect("records");
    c.put_unit_data(
        &space.space_id,
        &web.unit_id,
        WEB.as_bytes(),
        &DataWrite::default(),
    )
    .await
    .expect("edit");
    c.publish_release(&space.space_id, &ReleasePublishRequest::default())
        .await
        .expect("publish 2");
    let rem = ConfigHubRemediator::new(c.clone(), RemediatorConfig::default());
    rem.rollback(&space.space_id, &web.unit_id, "contract", true)
        .await
        .expect("rollback dry run");
    rem.rollback(&space.space_id, &web.unit_id, "contract", false)
        .await
        .expect("rollback");
    setup::install_base(
        &c,
        "c",
        &[UnitSpec::new(
            "ns",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n",
            &[],
        )],
    )
    .await
    .expect("install");
    c.delete_unit(
        &space.space_id,
        &c.unit_by_slug(&space.space_id, "web")
            .await
            .expect("get")
            .expect("unit")
            .unit_id,
    )
    .await
    .expect("delete");

    assert!(
        hub.contract_violations().is_empty(),
        "requests outside ConfigHub v0.8.5: {:#?}",
        hub.contract_violations()
    );
    // And each request the simulator saw parses back into an operation of the table.
    let requests = hub.requests();
    assert!(requests.len() > 60, "{}", requests.len());
    let mut ops_used = BTreeSet::new();
    for line in &requests {
        let (method, rest) = line.split_once(' ').expect("method");
        let target = rest.split(" -> ").next().expect("target");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let keys: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, _)| k.into_owned())
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let op = check_request(
            method,
            path.strip_prefix("/api").expect("/api"),
            &refs,
            None,
            false,
        )
        .unwrap_or_else(|e| panic!("{line}: {e:?}"));
        ops_used.insert(op.operation_id.clone());
    }
    assert!(ops_used.len() >= 25, "{ops_used:?}");
}
