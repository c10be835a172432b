//! The fake hub's HTTP side: routes, auth, fault injection.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::state::{ApiErr, HookRequest, R, Shared, State as Data, UpdateQuery, parse_where};
use crate::model::{ChangeSet, FunctionInvocationsRequest, QueuedOperation, Unit, decode_data, encode_data};
use crate::where_clause::eval;

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            axum::Json(json!({"Code": self.code(), "Message": self.message})),
        )
            .into_response()
    }
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn bulk(items: Vec<Value>, any_error: bool) -> Response {
    let status = if any_error {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::OK
    };
    (status, axum::Json(Value::Array(items))).into_response()
}

fn body_json(body: &Bytes) -> R<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| ApiErr::bad(format!("the body is not JSON: {e}")))
}

fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

fn update_query(q: &HashMap<String, String>) -> UpdateQuery {
    UpdateQuery {
        upgrade: flag(q, "upgrade"),
        restore: q.get("restore").cloned(),
        revision_id: q.get("revision_id").cloned(),
        dry_run: flag(q, "dry_run"),
    }
}

/// Drops fields not named in `select` (ids and `Slug` always stay), as the API does.
fn apply_select(mut unit: Value, select: Option<&String>) -> Value {
    let Some(sel) = select else { return unit };
    let keep: Vec<&str> = sel.split(',').map(str::trim).collect();
    if let Some(m) = unit.as_object_mut() {
        m.retain(|k, _| k.ends_with("ID") || k == "Slug" || keep.contains(&k.as_str()));
    }
    unit
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let live = if shared.config.legacy_routes {
        "/api/space/{space_id}/unit/{unit_id}/live-state"
    } else {
        "/api/space/{space_id}/unit/{unit_id}/live_state"
    };
    Router::new()
        .route("/api/space", get(list_spaces).post(create_space))
        .route(
            "/api/space/{space_id}",
            get(get_space).patch(patch_space).delete(delete_space),
        )
        .route("/api/space/{space_id}/unit", get(list_units).post(create_unit))
        .route(
            "/api/space/{space_id}/unit/{unit_id}",
            get(get_unit).put(put_unit).patch(patch_unit).delete(delete_unit),
        )
        .route("/api/space/{space_id}/unit/{unit_id}/apply", post(apply_unit))
        .route("/api/space/{space_id}/unit/{unit_id}/refresh", post(refresh_unit))
        .route(
            "/api/space/{space_id}/unit/{unit_id}/unit_event",
            get(unit_events),
        )
        .route("/api/space/{space_id}/unit/{unit_id}/revision", get(revisions))
        .route(
            "/api/space/{space_id}/unit/{unit_id}/revision/{revision_id}/data",
            get(revision_data),
        )
        .route(live, get(live_state))
        .route("/api/unit", get(list_all_units).patch(bulk_patch))
        .route("/api/unit/apply", post(bulk_apply))
        .route(
            "/api/space/{space_id}/filter",
            get(list_filters).post(create_filter),
        )
        .route(
            "/api/space/{space_id}/filter/{filter_id}",
            get(get_filter).put(put_filter).delete(delete_filter),
        )
        .route(
            "/api/space/{space_id}/change_set",
            get(list_change_sets).post(create_change_set),
        )
        .route("/api/space/{space_id}/target", get(list_targets))
        .route("/api/space/{space_id}/function", get(list_functions))
        .route("/api/space/{space_id}/function/invoke", post(invoke))
        .fallback(|m: Method, uri: axum::http::Uri| async move {
            ApiErr::new(404, format!("no route {m} {}", uri.path()))
        })
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Auth, logging and fault injection around every request.
async fn gate(State(sh): S, req: Request, next: Next) -> Response {
    let line = format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map_or(req.uri().path(), |p| p.as_str())
    );
    let is_write = req.method() != Method::GET;
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.strip_prefix("Bearer ").is_some_and(|t| t == sh.config.token));
    sh.count(|c| c.requests += 1);
    let faults = sh.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let applies = !faults.writes_only || is_write;
    let log = |status: u16, note: &str| {
        sh.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{line} -> {status}{note}"));
    };
    if !authorized {
        log(401, "");
        return ApiErr::new(401, "missing or invalid bearer token").into_response();
    }
    if applies && sh.rng.next() < faults.rate_limit_429 {
        sh.count(|c| c.injected_429 += 1);
        log(429, " (injected)");
        let mut r = ApiErr::new(429, "rate limited").into_response();
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(faults.retry_after_secs));
        return r;
    }
    if applies && sh.rng.next() < faults.error_500 {
        sh.count(|c| c.injected_500 += 1);
        log(500, " (injected)");
        return ApiErr::new(500, "injected failure").into_response();
    }
    let drop_it = applies && sh.rng.next() < faults.drop_after_commit;
    let slow = applies && !drop_it && sh.rng.next() < faults.slow_after_commit;
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    if drop_it {
        sh.count(|c| c.dropped_after_commit += 1);
        log(status, " (committed, connection dropped)");
        // Abort this connection without an answer; no panic message is printed.
        std::panic::resume_unwind(Box::new("fake ConfigHub: injected dropped connection"));
    }
    if slow {
        sh.count(|c| c.slow_after_commit += 1);
        log(status, " (committed, answer held)");
        tokio::time::sleep(faults.slow_delay).await;
        return resp;
    }
    log(status, "");
    resp
}

// ------------------------------------------------------------------------------------------------
// spaces

async fn list_spaces(State(sh): S, Query(q): Q) -> R<Response> {
    let clause = parse_where(q.get("where"), eval::SPACE)?;
    let st = sh.state();
    let items: Vec<Value> = st
        .spaces
        .values()
        .filter(|s| {
            clause
                .as_ref()
                .is_none_or(|c| eval::matches(c, &Data::space_row(s)))
        })
        .map(|s| {
            let n = st
                .units
                .values()
                .filter(|u| u.unit.space_id == s.space_id)
                .count();
            json!({"Space": s, "TotalUnitCount": n})
        })
        .collect();
    Ok(ok(Value::Array(items)))
}

async fn create_space(State(sh): S, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    let s = sh.state().create_space(&b)?;
    if let Some(t) = &sh.config.auto_target {
        let _ = sh.add_target(&s.slug, t);
    }
    Ok(ok(json!(s)))
}

async fn get_space(State(sh): S, Path(id): Path<String>) -> R<Response> {
    let st = sh.state();
    let s = st.space(&id)?;
    Ok(ok(json!({"Space": s})))
}

async fn patch_space(State(sh): S, Path(id): Path<String>, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    Ok(ok(json!(sh.state().patch_space(&id, &b)?)))
}

async fn delete_space(State(sh): S, Path(id): Path<String>) -> R<Response> {
    sh.state().delete_space(&id)?;
    Ok(StatusCode::OK.into_response())
}

// ------------------------------------------------------------------------------------------------
// units

fn list(st: &Data, space_id: Option<&str>, q: &HashMap<String, String>) -> R<Response> {
    let mut clause = parse_where(q.get("where"), eval::UNIT)?;
    if let Some(fid) = q.get("filter") {
        let f = st
            .filters
            .get(fid)
            .ok_or_else(|| ApiErr::bad(format!("filter {fid} does not exist")))?;
        if f.from != "Unit" {
            return Err(ApiErr::bad(format!(
                "filter {} selects {}, not units",
                f.slug, f.from
            )));
        }
        if let Some(fc) = parse_where(Some(&f.r#where), eval::UNIT)? {
            clause = Some(match clause {
                Some(mut c) => {
                    c.terms.extend(fc.terms);
                    c
                }
                None => fc,
            });
        }
    }
    let items: Vec<Value> = st
        .select_units(space_id, clause.as_ref())
        .into_iter()
        .map(|u| {
            let mut e = st.extended_unit(&u.unit);
            e["Unit"] = apply_select(e["Unit"].take(), q.get("select"));
            e
        })
        .collect();
    Ok(ok(Value::Array(items)))
}

async fn list_units(State(sh): S, Path(space_id): Path<String>, Query(q): Q) -> R<Response> {
    let st = sh.state();
    st.space(&space_id)?;
    list(&st, Some(&space_id), &q)
}

async fn list_all_units(State(sh): S, Query(q): Q) -> R<Response> {
    list(&sh.state(), None, &q)
}

async fn create_unit(State(sh): S, Path(space_id): Path<String>, Query(q): Q, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    let upstream = match (q.get("upstream_space_id"), q.get("upstream_unit_id")) {
        (Some(s), Some(u)) => Some((s.as_str(), u.as_str())),
        (None, None) => None,
        _ => return Err(ApiErr::bad("upstream_space_id and upstream_unit_id go together")),
    };
    let u = sh.state().create_unit(&space_id, &b, upstream)?;
    Ok(ok(json!(u)))
}

async fn get_unit(State(sh): S, Path((space_id, unit_id)): Path<(String, String)>) -> R<Response> {
    let st = sh.state();
    let u = st.unit_in(&space_id, &unit_id)?;
    Ok(ok(st.extended_unit(&u.unit)))
}

async fn put_unit(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
    body: Bytes,
) -> R<Response> {
    let b = body_json(&body)?;
    let next: Unit = serde_json::from_value(b).map_err(|e| ApiErr::bad(format!("invalid Unit: {e}")))?;
    let u = sh
        .state()
        .update_unit(&space_id, &unit_id, next, &update_query(&q), true)?;
    Ok(ok(json!(u)))
}

async fn patch_unit(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
    body: Bytes,
) -> R<Response> {
    let b = body_json(&body)?;
    let u = sh
        .state()
        .patch_unit(&space_id, &unit_id, &b, &update_query(&q))?;
    Ok(ok(json!(u)))
}

async fn delete_unit(State(sh): S, Path((space_id, unit_id)): Path<(String, String)>) -> R<Response> {
    sh.state().delete_unit(&space_id, &unit_id)?;
    Ok(StatusCode::OK.into_response())
}

async fn bulk_patch(State(sh): S, Query(q): Q, body: Bytes) -> R<Response> {
    let clause = parse_where(q.get("where"), eval::UNIT)?.ok_or_else(|| ApiErr::bad("where is required"))?;
    let patch = body_json(&body)?;
    let uq = update_query(&q);
    let mut st = sh.state();
    let targets: Vec<(String, String)> = st
        .select_units(None, Some(&clause))
        .into_iter()
        .map(|u| (u.unit.space_id.clone(), u.unit.unit_id.clone()))
        .collect();
    let mut items = Vec::new();
    let mut any_error = false;
    for (sid, uid) in targets {
        match st.patch_unit(&sid, &uid, &patch, &uq) {
            Ok(u) => items.push(json!({"Unit": u})),
            Err(e) => {
                any_error = true;
                let slug = st
                    .units
                    .get(&uid)
                    .map(|u| u.unit.slug.clone())
                    .unwrap_or_default();
                items.push(json!({"Unit": {"UnitID": uid, "SpaceID": sid, "Slug": slug},
                    "Error": {"Message": e.message, "Status": e.status, "Type": e.code()}}));
            }
        }
    }
    Ok(bulk(items, any_error))
}

// ------------------------------------------------------------------------------------------------
// apply, refresh, events

fn spawn_operation(sh: Arc<Shared>, op: QueuedOperation, dry_run: bool) {
    tokio::spawn(async move {
        tokio::time::sleep(sh.config.operation_delay).await;
        let req = {
            let st = sh.state();
            let Some(su) = st.units.get(&op.unit_id) else {
                return;
            };
            let data = su
                .revisions
                .iter()
                .find(|r| r.revision_num == op.revision_num)
                .map_or_else(|| su.unit.data.clone(), |r| r.data.clone());
            let space = st
                .spaces
                .get(&op.space_id)
                .map(|s| s.slug.clone())
                .unwrap_or_default();
            HookRequest {
                space,
                unit: su.unit.clone(),
                data: decode_data(&data).unwrap_or_default(),
            }
        };
        match op.action.as_str() {
            "Apply" => {
                let outcome = match (dry_run, sh.apply_hook()) {
                    (false, Some(h)) => h(req).await,
                    _ => Ok(()),
                };
                let mut st = sh.state();
                match outcome {
                    Ok(()) => {
                        if !dry_run {
                            st.mark_applied(&op);
                        }
                        st.finish(
                            &op,
                            "Completed",
                            "ApplyCompleted",
                            if dry_run {
                                "dry run: nothing was applied"
                            } else {
                                ""
                            },
                        );
                    }
                    Err(m) => st.finish(&op, "Failed", "ApplyFailed", &m),
                }
            }
            _ => {
                let live = match sh.refresh_hook() {
                    Some(h) => h(req).await,
                    None => Ok(None),
                };
                let mut st = sh.state();
                match live {
                    Ok(Some(bytes)) => {
                        let drifted = st.mark_refreshed(&op, &bytes, dry_run);
                        st.finish(
                            &op,
                            "Completed",
                            if drifted {
                                "RefreshAndDrifted"
                            } else {
                                "RefreshAndNoDrift"
                            },
                            "",
                        );
                    }
                    Ok(None) => st.finish(&op, "Completed", "RefreshAndNoDrift", ""),
                    Err(m) => st.finish(&op, "Failed", "RefreshFailed", &m),
                }
            }
        }
    });
}

async fn unit_action(
    sh: Arc<Shared>,
    space_id: &str,
    unit_id: &str,
    action: &str,
    q: &HashMap<String, String>,
) -> R<Response> {
    let dry_run = flag(q, "dry_run");
    let op = sh.state().queue(space_id, unit_id, action, dry_run)?;
    spawn_operation(sh, op.clone(), dry_run);
    Ok(ok(json!(op)))
}

async fn apply_unit(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
) -> R<Response> {
    unit_action(sh, &space_id, &unit_id, "Apply", &q).await
}

async fn refresh_unit(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
) -> R<Response> {
    unit_action(sh, &space_id, &unit_id, "Refresh", &q).await
}

async fn bulk_apply(State(sh): S, Query(q): Q) -> R<Response> {
    let clause = parse_where(q.get("where"), eval::UNIT)?.ok_or_else(|| ApiErr::bad("where is required"))?;
    let dry_run = flag(&q, "dry_run");
    let targets: Vec<(String, String, String)> = {
        let st = sh.state();
        st.select_units(None, Some(&clause))
            .into_iter()
            .map(|u| {
                (
                    u.unit.space_id.clone(),
                    u.unit.unit_id.clone(),
                    u.unit.slug.clone(),
                )
            })
            .collect()
    };
    let mut items = Vec::new();
    let mut any_error = false;
    for (sid, uid, slug) in targets {
        let queued = sh.state().queue(&sid, &uid, "Apply", dry_run);
        match queued {
            Ok(op) => {
                spawn_operation(sh.clone(), op.clone(), dry_run);
                items.push(json!({"Action": op}));
            }
            Err(e) => {
                any_error = true;
                items.push(json!({"Error": {"Message": format!("{slug}: {}", e.message), "Status": e.status, "Type": e.code()}}));
            }
        }
    }
    Ok(bulk(items, any_error))
}

async fn unit_events(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
) -> R<Response> {
    let clause = parse_where(q.get("where"), eval::UNIT_EVENT)?;
    let st = sh.state();
    st.unit_in(&space_id, &unit_id)?;
    let items: Vec<Value> = st
        .events
        .iter()
        .filter(|e| e.unit_id == unit_id)
        .filter(|e| clause.as_ref().is_none_or(|c| eval::matches(c, &json!(e))))
        .map(|e| json!({"UnitEvent": e}))
        .collect();
    Ok(ok(Value::Array(items)))
}

async fn revisions(State(sh): S, Path((space_id, unit_id)): Path<(String, String)>) -> R<Response> {
    let st = sh.state();
    let su = st.unit_in(&space_id, &unit_id)?;
    let items: Vec<Value> = su.revisions.iter().map(|r| json!({"Revision": r})).collect();
    Ok(ok(Value::Array(items)))
}

async fn revision_data(
    State(sh): S,
    Path((space_id, unit_id, rid)): Path<(String, String, String)>,
) -> R<Response> {
    let st = sh.state();
    let su = st.unit_in(&space_id, &unit_id)?;
    let r = su
        .revisions
        .iter()
        .find(|r| r.revision_id == rid)
        .ok_or_else(|| ApiErr::not_found(format!("revision {rid}")))?;
    Ok((
        [("content-type", "application/octet-stream")],
        decode_data(&r.data).unwrap_or_default(),
    )
        .into_response())
}

async fn live_state(State(sh): S, Path((space_id, unit_id)): Path<(String, String)>) -> R<Response> {
    let st = sh.state();
    let su = st.unit_in(&space_id, &unit_id)?;
    let live = su
        .unit
        .extra_str("LiveState")
        .ok_or_else(|| ApiErr::not_found(format!("live state of unit {}", su.unit.slug)))?;
    Ok((
        [("content-type", "application/octet-stream")],
        decode_data(live).unwrap_or_default(),
    )
        .into_response())
}

// ------------------------------------------------------------------------------------------------
// filters, change sets, targets

async fn list_filters(State(sh): S, Path(space_id): Path<String>) -> R<Response> {
    let st = sh.state();
    st.space(&space_id)?;
    let items: Vec<Value> = st
        .filters
        .values()
        .filter(|f| f.space_id == space_id)
        .map(|f| json!({"Filter": f}))
        .collect();
    Ok(ok(Value::Array(items)))
}

async fn create_filter(State(sh): S, Path(space_id): Path<String>, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    Ok(ok(json!(sh.state().create_filter(&space_id, &b)?)))
}

async fn get_filter(State(sh): S, Path((space_id, fid)): Path<(String, String)>) -> R<Response> {
    let st = sh.state();
    let f = st
        .filters
        .get(&fid)
        .filter(|f| f.space_id == space_id)
        .ok_or_else(|| ApiErr::not_found(format!("filter {fid}")))?;
    Ok(ok(json!({"Filter": f})))
}

async fn put_filter(State(sh): S, Path((space_id, fid)): Path<(String, String)>, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    Ok(ok(json!(sh.state().update_filter(&space_id, &fid, &b)?)))
}

async fn delete_filter(State(sh): S, Path((space_id, fid)): Path<(String, String)>) -> R<Response> {
    let mut st = sh.state();
    st.filters
        .get(&fid)
        .filter(|f| f.space_id == space_id)
        .ok_or_else(|| ApiErr::not_found(format!("filter {fid}")))?;
    st.filters.remove(&fid);
    Ok(StatusCode::OK.into_response())
}

async fn list_change_sets(State(sh): S, Path(space_id): Path<String>) -> R<Response> {
    let st = sh.state();
    st.space(&space_id)?;
    let items: Vec<Value> = st
        .change_sets
        .values()
        .filter(|(s, _)| *s == space_id)
        .map(|(_, c)| json!({"ChangeSet": c}))
        .collect();
    Ok(ok(Value::Array(items)))
}

async fn create_change_set(State(sh): S, Path(space_id): Path<String>, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    let mut st = sh.state();
    st.space(&space_id)?;
    let mut cs: ChangeSet =
        serde_json::from_value(b).map_err(|e| ApiErr::bad(format!("invalid ChangeSet: {e}")))?;
    if cs.slug.is_empty() {
        return Err(ApiErr::bad("Slug is required"));
    }
    if st
        .change_sets
        .values()
        .any(|(s, c)| *s == space_id && c.slug == cs.slug)
    {
        return Err(ApiErr::new(
            409,
            format!("a change set with slug {} already exists", cs.slug),
        ));
    }
    cs.change_set_id = st.id(0xc5);
    st.change_sets
        .insert(cs.change_set_id.clone(), (space_id, cs.clone()));
    Ok(ok(json!(cs)))
}

async fn list_targets(State(sh): S, Path(space_id): Path<String>) -> R<Response> {
    let st = sh.state();
    st.space(&space_id)?;
    let items: Vec<Value> = st
        .targets
        .values()
        .filter(|(s, _)| *s == space_id)
        .map(|(_, t)| json!({"Target": t}))
        .collect();
    Ok(ok(Value::Array(items)))
}

// ------------------------------------------------------------------------------------------------
// functions

/// Name, parameters (name, type), whether it changes data.
type FunctionSignature = (&'static str, &'static [(&'static str, &'static str)], bool);

const FUNCTIONS: &[FunctionSignature] = &[
    ("set-replicas", &[("replicas", "int")], true),
    ("get-replicas", &[], false),
    (
        "set-image",
        &[("container-name", "string"), ("image", "string")],
        true,
    ),
    (
        "set-int-path",
        &[("resource-type", "string"), ("path", "string"), ("value", "int")],
        true,
    ),
    (
        "set-string-path",
        &[
            ("resource-type", "string"),
            ("path", "string"),
            ("value", "string"),
        ],
        true,
    ),
];

async fn list_functions(State(sh): S, Path(space_id): Path<String>) -> R<Response> {
    sh.state().space(&space_id)?;
    let mut fs = serde_json::Map::new();
    for (name, params, mutating) in FUNCTIONS {
        let ps: Vec<Value> = params
            .iter()
            .map(|(n, t)| json!({"ParameterName": n, "DataType": t, "Required": true}))
            .collect();
        fs.insert(
            (*name).to_string(),
            json!({"FunctionName": name, "Parameters": ps, "Mutating": mutating}),
        );
    }
    Ok(ok(json!({crate::model::KUBERNETES_YAML: fs})))
}

const WORKLOADS: &[&str] = &["Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"];

fn arg<'a>(inv: &'a crate::model::FunctionInvocation, name: &str) -> Result<&'a Value, String> {
    inv.arguments
        .iter()
        .find(|a| a.parameter_name == name)
        .map(|a| &a.value)
        .ok_or_else(|| format!("{}: argument {name} is required", inv.function_name))
}

/// Runs the calls on one unit's documents; returns the output of read functions.
fn run_functions(docs: &mut [Value], req: &FunctionInvocationsRequest) -> Result<Vec<Value>, String> {
    let mut output = Vec::new();
    for inv in &req.function_invocations {
        match inv.function_name.as_str() {
            "set-replicas" => {
                let n = arg(inv, "replicas")?
                    .as_i64()
                    .ok_or("set-replicas: replicas must be an integer")?;
                for d in docs.iter_mut().filter(|d| {
                    d["kind"]
                        .as_str()
                        .is_some_and(|k| WORKLOADS.contains(&k) && k != "DaemonSet")
                }) {
                    d["spec"]["replicas"] = json!(n);
                }
            }
            "get-replicas" => {
                for d in docs
                    .iter()
                    .filter(|d| d["kind"].as_str().is_some_and(|k| WORKLOADS.contains(&k)))
                {
                    output.push(json!({"kind": d["kind"], "name": d["metadata"]["name"], "replicas": d["spec"]["replicas"]}));
                }
            }
            "set-image" => {
                let name = arg(inv, "container-name")?
                    .as_str()
                    .ok_or("set-image: container-name must be a string")?
                    .to_string();
                let image = arg(inv, "image")?
                    .as_str()
                    .ok_or("set-image: image must be a string")?
                    .to_string();
                for d in docs.iter_mut() {
                    if let Some(cs) = d
                        .pointer_mut("/spec/template/spec/containers")
                        .and_then(Value::as_array_mut)
                    {
                        for c in cs.iter_mut().filter(|c| c["name"] == name.as_str()) {
                            c["image"] = json!(image);
                        }
                    }
                }
            }
            "set-int-path" | "set-string-path" => {
                let rt = arg(inv, "resource-type")?
                    .as_str()
                    .ok_or("resource-type must be a string like apps/v1/Deployment")?
                    .to_string();
                let path = arg(inv, "path")?
                    .as_str()
                    .ok_or("path must be a string like spec.replicas")?
                    .to_string();
                let value = arg(inv, "value")?.clone();
                let typed_ok = if inv.function_name == "set-int-path" {
                    value.is_i64()
                } else {
                    value.is_string()
                };
                if !typed_ok {
                    return Err(format!("{}: value has the wrong type", inv.function_name));
                }
                let pointer = format!(
                    "/{}",
                    path.split('.')
                        .map(|s| s.replace('~', "~0").replace('/', "~1"))
                        .collect::<Vec<_>>()
                        .join("/")
                );
                for d in docs.iter_mut() {
                    let this = format!(
                        "{}/{}",
                        d["apiVersion"].as_str().unwrap_or_default(),
                        d["kind"].as_str().unwrap_or_default()
                    );
                    if this == rt {
                        crate::yaml::set_pointer(d, &pointer, value.clone())?;
                    }
                }
            }
            other => return Err(format!("unknown function {other}")),
        }
    }
    Ok(output)
}

async fn invoke(State(sh): S, Path(space_id): Path<String>, Query(q): Q, body: Bytes) -> R<Response> {
    let clause = parse_where(q.get("where"), eval::UNIT)?.ok_or_else(|| ApiErr::bad("where is required"))?;
    let req: FunctionInvocationsRequest = serde_json::from_value(body_json(&body)?)
        .map_err(|e| ApiErr::bad(format!("invalid request: {e}")))?;
    if let Some(f) = req
        .function_invocations
        .iter()
        .find(|f| !FUNCTIONS.iter().any(|(n, ..)| *n == f.function_name))
    {
        return Err(ApiErr::bad(format!("unknown function {}", f.function_name)));
    }
    let dry_run = flag(&q, "dry_run");
    let mut st = sh.state();
    st.space(&space_id)?;
    let ids: Vec<String> = st
        .select_units(Some(&space_id), Some(&clause))
        .into_iter()
        .map(|u| u.unit.unit_id.clone())
        .collect();
    let mut items = Vec::new();
    let mut any_error = false;
    for uid in ids {
        let unit = st.units[&uid].unit.clone();
        let result = unit
            .data_text()
            .and_then(|t| crate::yaml::documents(&t))
            .and_then(|mut docs| {
                let out = run_functions(&mut docs, &req)?;
                let text = crate::yaml::render(&docs)?;
                Ok((out, text))
            });
        match result {
            Ok((out, text)) => {
                let data = encode_data(text.as_bytes());
                if !dry_run && data != unit.data {
                    let mut next = unit.clone();
                    next.data.clone_from(&data);
                    next.last_change_description = if req.change_description.is_empty() {
                        "Function invocation".into()
                    } else {
                        req.change_description.clone()
                    };
                    st.update_unit(&space_id, &uid, next, &UpdateQuery::default(), false)?;
                }
                items.push(
                    json!({"UnitID": uid, "SpaceID": space_id, "Success": true, "ConfigData": data,
                    "Output": Value::Array(out).to_string(), "OutputType": "JSON"}),
                );
            }
            Err(m) => {
                any_error = true;
                items.push(json!({"UnitID": uid, "SpaceID": space_id, "Success": false,
                    "Error": {"Message": format!("{}: {m}", unit.slug), "Status": 400, "Type": "BadRequest"}}));
                if req.stop_on_error {
                    break;
                }
            }
        }
    }
    Ok(bulk(items, any_error))
}
