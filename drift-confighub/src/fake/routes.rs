//! The simulator's HTTP side: the contract gate (only the operations of `confighub-routes.tsv`, with
//! their query parameters and content types), auth, fault injection, and the handlers.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::state::{ApiErr, R, Shared, State as Data, UpdateQuery, parse_where};
use crate::model::{ChangeSet, FunctionInvocationsRequest, UnitData, data_hash};
use crate::where_clause::Entity;

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;

/// The version the simulator reports (`GET /info`, `ConfigHub-Version`) unless configured otherwise.
pub const SIMULATED_VERSION: &str = "v0.8.5";

/// The operations table: ConfigHub v0.8.5's routes with their query parameters and content types.
pub const ROUTES_TSV: &str = include_str!("confighub-routes.tsv");

/// One operation of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path template (`/space/{space_id}/unit`).
    pub path: String,
    /// `ListUnits`, ...
    pub operation_id: String,
    /// Known query parameters.
    pub query: Vec<String>,
    /// The request content type (`None`: no body).
    pub content_type: Option<String>,
}

impl Operation {
    /// Whether a concrete path fits the template.
    pub fn matches_path(&self, path: &str) -> bool {
        let t: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let p: Vec<&str> = path.trim_matches('/').split('/').collect();
        t.len() == p.len()
            && t.iter()
                .zip(&p)
                .all(|(a, b)| (a.starts_with('{') && a.ends_with('}') && !b.is_empty()) || a == b)
    }
}

/// The operations of [`ROUTES_TSV`].
pub fn operations() -> &'static [Operation] {
    static OPS: OnceLock<Vec<Operation>> = OnceLock::new();
    OPS.get_or_init(|| {
        ROUTES_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                (c.len() >= 5).then(|| Operation {
                    method: c[0].to_string(),
                    path: c[1].to_string(),
                    operation_id: c[2].to_string(),
                    query: if c[3] == "-" {
                        Vec::new()
                    } else {
                        c[3].split(',').map(str::to_string).collect()
                    },
                    content_type: (c[4] != "-").then(|| c[4].to_string()),
                })
            })
            .collect()
    })
}

/// Checks a request against the table: the operation, or why it is not one.
pub fn check_request(
    method: &str,
    path: &str,
    query_keys: &[&str],
    content_type: Option<&str>,
    has_body: bool,
) -> Result<&'static Operation, (u16, String)> {
    let op = operations()
        .iter()
        .find(|o| o.method == method && o.matches_path(path))
        .ok_or_else(|| (404, format!("no operation {method} {path} in ConfigHub v0.8.5")))?;
    if let Some(k) = query_keys.iter().find(|k| !op.query.iter().any(|q| q == *k)) {
        return Err((
            400,
            format!(
                "{} ({method} {}) has no query parameter {k:?}",
                op.operation_id, op.path
            ),
        ));
    }
    let ct = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match (&op.content_type, ct) {
        (Some(want), Some(got)) if *want != got => {
            Err((415, format!("{} takes {want}, not {got}", op.operation_id)))
        }
        (Some(want), None) if has_body => Err((
            415,
            format!("{} takes {want}; no Content-Type was sent", op.operation_id),
        )),
        (None, _) if has_body => Err((400, format!("{} takes no request body", op.operation_id))),
        _ => Ok(op),
    }
}

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

/// One page of a list: `limit` (0–1000; absent = everything) and `continue` (an opaque token, here
/// the offset); the `ConfigHub-Continue` header when more may follow.
fn page(items: Vec<Value>, q: &HashMap<String, String>) -> R<Response> {
    let limit = match q.get("limit") {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n <= 1000 => Some(n),
            _ => return Err(ApiErr::bad(format!("limit must be 0 to 1000, not {l}"))),
        },
    };
    let start = match q.get("continue") {
        None => 0,
        Some(c) => c
            .strip_prefix("off-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiErr::bad(format!("continue token {c:?} is not one this server gave")))?,
    };
    let total = items.len();
    let (slice, next) = match limit {
        Some(n) if n > 0 && start + n < total => (items[start..start + n].to_vec(), Some(start + n)),
        _ => (items.into_iter().skip(start).collect(), None),
    };
    let mut r = ok(Value::Array(slice));
    if let Some(n) = next
        && let Ok(v) = HeaderValue::from_str(&format!("off-{n}"))
    {
        r.headers_mut().insert("confighub-continue", v);
    }
    Ok(r)
}

/// Drops fields not named in `select` (ids and `Slug` always stay), as the API does; `Data` and
/// `MutationSources` are no fields of any entity any more.
fn apply_select(mut unit: Value, select: Option<&String>) -> R<Value> {
    let Some(sel) = select else { return Ok(unit) };
    let keep: Vec<&str> = sel.split(',').map(str::trim).collect();
    if let Some(gone) = keep.iter().find(|k| matches!(**k, "Data" | "MutationSources")) {
        return Err(ApiErr::bad(format!(
            "select={gone}: no entity has it; read data with GET .../data or /unit_data"
        )));
    }
    if let Some(m) = unit.as_object_mut() {
        m.retain(|k, _| k.ends_with("ID") || k == "Slug" || keep.contains(&k.as_str()));
    }
    Ok(unit)
}

type Handler = axum::routing::MethodRouter<Arc<Shared>>;

/// Every route the simulator serves: method, path (relative to `/api`), handler. The router is built
/// from this list and nothing else, and the contract test checks each entry against the table.
fn served() -> Vec<(Method, &'static str, Handler)> {
    use axum::routing::{delete, patch, put};
    vec![
        (Method::GET, "/info", get(info)),
        (Method::GET, "/space", get(list_spaces)),
        (Method::POST, "/space", post(create_space)),
        (Method::GET, "/space/{space_id}", get(get_space)),
        (Method::PATCH, "/space/{space_id}", patch(patch_space)),
        (Method::DELETE, "/space/{space_id}", delete(delete_space)),
        (Method::GET, "/space/{space_id}/unit", get(list_units)),
        (Method::POST, "/space/{space_id}/unit", post(create_unit)),
        (Method::GET, "/space/{space_id}/unit/{unit_id}", get(get_unit)),
        (Method::PUT, "/space/{space_id}/unit/{unit_id}", put(put_unit)),
        (
            Method::PATCH,
            "/space/{space_id}/unit/{unit_id}",
            patch(patch_unit),
        ),
        (
            Method::DELETE,
            "/space/{space_id}/unit/{unit_id}",
            delete(delete_unit),
        ),
        (
            Method::GET,
            "/space/{space_id}/unit/{unit_id}/data",
            get(get_data),
        ),
        (
            Method::PUT,
            "/space/{space_id}/unit/{unit_id}/data",
            put(put_data),
        ),
        (
            Method::GET,
            "/space/{space_id}/unit/{unit_id}/revision",
            get(revisions),
        ),
        (
            Method::GET,
            "/space/{space_id}/unit/{unit_id}/revision/{revision_id}",
            get(get_revision),
        ),
        (
            Method::GET,
            "/space/{space_id}/unit/{unit_id}/revision/{revision_id}/data",
            get(revision_data),
        ),
        (Method::GET, "/unit", get(list_all_units)),
        (Method::PATCH, "/unit", patch(bulk_patch)),
        (Method::GET, "/unit_data", get(search_unit_data)),
        (Method::GET, "/space/{space_id}/release", get(list_releases)),
        (Method::POST, "/space/{space_id}/release", post(publish_release)),
        (
            Method::GET,
            "/space/{space_id}/release/{release_id}",
            get(get_release),
        ),
        (
            Method::PATCH,
            "/space/{space_id}/release/{release_id}",
            patch(patch_release),
        ),
        (Method::GET, "/space/{space_id}/filter", get(list_filters)),
        (Method::POST, "/space/{space_id}/filter", post(create_filter)),
        (
            Method::GET,
            "/space/{space_id}/filter/{filter_id}",
            get(get_filter),
        ),
        (
            Method::PUT,
            "/space/{space_id}/filter/{filter_id}",
            put(put_filter),
        ),
        (
            Method::DELETE,
            "/space/{space_id}/filter/{filter_id}",
            delete(delete_filter),
        ),
        (Method::GET, "/space/{space_id}/change_set", get(list_change_sets)),
        (
            Method::POST,
            "/space/{space_id}/change_set",
            post(create_change_set),
        ),
        (Method::GET, "/space/{space_id}/target", get(list_targets)),
        (Method::POST, "/space/{space_id}/target", post(create_target)),
        (Method::GET, "/space/{space_id}/function", get(list_functions)),
        (Method::POST, "/space/{space_id}/function/invoke", post(invoke)),
    ]
}

/// The operations the simulator serves, as (method, path template relative to `/api`).
pub fn served_operations() -> Vec<(String, String)> {
    served()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut by_path: Vec<(&'static str, Handler)> = Vec::new();
    for (_, path, h) in served() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(h),
            None => by_path.push((path, h)),
        }
    }
    let mut r = Router::new();
    for (path, h) in by_path {
        r = r.route(&format!("/api{path}"), h);
    }
    r.fallback(|m: Method, uri: axum::http::Uri| async move {
        ApiErr::new(404, format!("{m} {} is not served by this simulator", uri.path()))
    })
    .layer(middleware::from_fn_with_state(shared.clone(), gate))
    .with_state(shared)
}

/// The contract, auth, logging and fault injection around every request.
async fn gate(State(sh): S, req: Request, next: Next) -> Response {
    let line = format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map_or(req.uri().path(), |p| p.as_str())
    );
    let version = sh
        .config
        .version
        .clone()
        .unwrap_or_else(|| SIMULATED_VERSION.to_string());
    let with_version = |mut r: Response| {
        if let Ok(v) = HeaderValue::from_str(&version) {
            r.headers_mut().insert("confighub-version", v);
        }
        r
    };
    let log = |status: u16, note: &str| {
        sh.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{line} -> {status}{note}"));
    };
    // The contract: only the operations of the table, with their parameters and content types.
    let path = req.uri().path().strip_prefix("/api").unwrap_or("");
    let keys: Vec<String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect()
        })
        .unwrap_or_default();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let has_body = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    if let Err((status, why)) = check_request(req.method().as_str(), path, &key_refs, ct.as_deref(), has_body)
    {
        sh.violation(format!("{line}: {why}"));
        log(status, " (contract)");
        return with_version(ApiErr::new(status, why).into_response());
    }
    let is_write = req.method() != Method::GET;
    let authorized = path == "/info"
        || req
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
    if !authorized {
        log(401, "");
        return with_version(ApiErr::new(401, "missing or invalid bearer token").into_response());
    }
    if applies && sh.rng.next() < faults.rate_limit_429 {
        sh.count(|c| c.injected_429 += 1);
        log(429, " (injected)");
        let mut r = ApiErr::new(429, "rate limited").into_response();
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(faults.retry_after_secs));
        return with_version(r);
    }
    if applies && sh.rng.next() < faults.error_500 {
        sh.count(|c| c.injected_500 += 1);
        log(500, " (injected)");
        return with_version(ApiErr::new(500, "injected failure").into_response());
    }
    let drop_it = applies && sh.rng.next() < faults.drop_after_commit;
    let slow = applies && !drop_it && sh.rng.next() < faults.slow_after_commit;
    let resp = with_version(next.run(req).await);
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

async fn info(State(sh): S) -> Response {
    let version = sh
        .config
        .version
        .clone()
        .unwrap_or_else(|| SIMULATED_VERSION.to_string());
    ok(json!({
        "Version": version, "Build": "drift-detector simulator", "BuiltAt": "",
        "AuthIssuer": "", "ClientID": "", "OCIHost": "127.0.0.1", "OCIPort": "",
        "UIURL": "", "WorkerPort": ""
    }))
}

// ------------------------------------------------------------------------------------------------
// spaces

async fn list_spaces(State(sh): S, Query(q): Q) -> R<Response> {
    let clause = parse_where(q.get("where"), Entity::Space, None)?;
    let st = sh.state();
    let items: Vec<Value> = st
        .spaces
        .values()
        .filter(|s| {
            clause
                .as_ref()
                .is_none_or(|c| crate::where_clause::eval::matches(c, &Data::space_row(s)))
        })
        .map(|s| {
            let n = st
                .units
                .values()
                .filter(|u| u.unit.space_id == s.space_id)
                .count();
            let unreleased = st
                .units
                .values()
                .filter(|u| u.unit.space_id == s.space_id && u.unit.has_unreleased_changes())
                .count();
            json!({"Space": s, "TotalUnitCount": n, "UnreleasedUnitCount": unreleased})
        })
        .collect();
    page(items, &q)
}

async fn create_space(State(sh): S, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    let s = sh.state().create_space(&b)?;
    if let Some(t) = &sh.config.auto_target {
        let _ = sh.add_target(&s.slug, t);
    }
    let s = sh.state().space(&s.space_id)?.clone();
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
    Ok(ok(json!({"Message": format!("space {id} deleted")})))
}

// ------------------------------------------------------------------------------------------------
// units

fn unit_clause(st: &Data, q: &HashMap<String, String>) -> R<Option<crate::where_clause::WhereClause>> {
    let mut clause = parse_where(q.get("where"), Entity::Unit, q.get("include"))?;
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
        if let Some(fc) = parse_where(Some(&f.r#where), Entity::Unit, q.get("include"))? {
            clause = Some(match clause {
                Some(mut c) => {
                    c.terms.extend(fc.terms);
                    c
                }
                None => fc,
            });
        }
    }
    Ok(clause)
}

fn list(st: &Data, space_id: Option<&str>, q: &HashMap<String, String>) -> R<Response> {
    apply_select(json!({}), q.get("select"))?;
    let clause = unit_clause(st, q)?;
    let mut items = Vec::new();
    for u in st.select_units(space_id, clause.as_ref()) {
        let mut e = st.extended_unit(u, q.get("include"));
        e["Unit"] = apply_select(e["Unit"].take(), q.get("select"))?;
        items.push(e);
    }
    page(items, q)
}

async fn list_units(State(sh): S, Path(space_id): Path<String>, Query(q): Q) -> R<Response> {
    let st = sh.state();
    st.space(&space_id)?;
    list(&st, Some(&space_id), &q)
}

async fn list_all_units(State(sh): S, Query(q): Q) -> R<Response> {
    list(&sh.state(), None, &q)
}

async fn search_unit_data(State(sh): S, Query(q): Q) -> R<Response> {
    let st = sh.state();
    let clause = unit_clause(&st, &q)?;
    let items: Vec<Value> = st
        .select_units(None, clause.as_ref())
        .into_iter()
        .map(|u| {
            let space_slug = st
                .spaces
                .get(&u.unit.space_id)
                .map(|s| s.slug.clone())
                .unwrap_or_default();
            let mut d = json!(UnitData {
                unit_id: u.unit.unit_id.clone(),
                slug: u.unit.slug.clone(),
                space_id: u.unit.space_id.clone(),
                data_hash: u.unit.data_hash.clone(),
                data: String::from_utf8_lossy(&u.data).into_owned(),
                extra: serde_json::Map::new(),
            });
            d["SpaceSlug"] = json!(space_slug);
            d["DataSize"] = json!(u.data.len());
            d
        })
        .collect();
    page(items, &q)
}

fn written(u: crate::model::Unit) -> Response {
    ok(json!({"Unit": u}))
}

async fn create_unit(State(sh): S, Path(space_id): Path<String>, Query(q): Q, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    let upstream = match (q.get("upstream_space_id"), q.get("upstream_unit_id")) {
        (Some(s), Some(u)) => Some((s.as_str(), u.as_str())),
        (None, None) => None,
        _ => return Err(ApiErr::bad("upstream_space_id and upstream_unit_id go together")),
    };
    let existing = {
        let st = sh.state();
        let slug = b.get("Slug").and_then(Value::as_str).unwrap_or_default();
        st.units
            .values()
            .find(|u| u.unit.space_id == space_id && u.unit.slug == slug)
            .map(|u| u.unit.clone())
    };
    if flag(&q, "allow_exists")
        && let Some(u) = existing
    {
        return Ok(written(u));
    }
    let u = sh
        .state()
        .create_unit(&space_id, &b, upstream, flag(&q, "dry_run"))?;
    Ok(written(u))
}

async fn get_unit(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
) -> R<Response> {
    let st = sh.state();
    let u = st.unit_in(&space_id, &unit_id)?;
    let mut e = st.extended_unit(u, q.get("include"));
    e["Unit"] = apply_select(e["Unit"].take(), q.get("select"))?;
    Ok(ok(e))
}

async fn put_unit(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
    body: Bytes,
) -> R<Response> {
    let b = body_json(&body)?;
    if let Some(gone) = ["Data", "LiveState", "LiveRevisionNum", "LastAppliedRevisionNum"]
        .iter()
        .find(|k| b.get(**k).is_some())
    {
        return Err(ApiErr::bad(format!("Unit has no field {gone}")));
    }
    let next: crate::model::Unit =
        serde_json::from_value(b).map_err(|e| ApiErr::bad(format!("invalid Unit: {e}")))?;
    let u = sh
        .state()
        .update_unit(&space_id, &unit_id, next, &update_query(&q), true)?;
    Ok(written(u))
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
    Ok(written(u))
}

async fn delete_unit(State(sh): S, Path((space_id, unit_id)): Path<(String, String)>) -> R<Response> {
    sh.state().delete_unit(&space_id, &unit_id)?;
    Ok(ok(json!({"Message": format!("unit {unit_id} deleted")})))
}

fn etag_of(v: &str) -> String {
    v.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

async fn get_data(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> R<Response> {
    let st = sh.state();
    let su = st.unit_in(&space_id, &unit_id)?;
    let etag = format!("\"{}\"", su.unit.data_hash);
    let inm = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(etag_of);
    if inm.as_deref() == Some(su.unit.data_hash.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response());
    }
    Ok((
        [
            ("content-type", "application/octet-stream".to_string()),
            ("etag", etag),
        ],
        su.data.clone(),
    )
        .into_response())
}

async fn put_data(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> R<Response> {
    let if_match = headers.get("if-match").and_then(|v| v.to_str().ok()).map(etag_of);
    let dry = flag(&q, "dry_run");
    let data = body.to_vec();
    let u = sh.state().put_data(
        &space_id,
        &unit_id,
        data.clone(),
        if_match.as_deref(),
        q.get("last_change_description").map(String::as_str),
        dry,
    )?;
    let include_data = q
        .get("include")
        .is_some_and(|i| i.split(',').any(|p| p.trim() == "ConfigData"));
    let mut out = json!({"Unit": u});
    if include_data {
        out["ConfigData"] = json!(String::from_utf8_lossy(&data));
    }
    Ok(ok(out))
}

async fn bulk_patch(State(sh): S, Query(q): Q, body: Bytes) -> R<Response> {
    let patch = body_json(&body)?;
    let uq = update_query(&q);
    let mut st = sh.state();
    let clause = unit_clause(&st, &q)?.ok_or_else(|| ApiErr::bad("where or filter is required"))?;
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
                    "Error": {"Message": e.message, "Status": e.status, "Type": "BadRequest"}}));
            }
        }
    }
    Ok(bulk(items, any_error))
}

// ------------------------------------------------------------------------------------------------
// revisions

async fn revisions(
    State(sh): S,
    Path((space_id, unit_id)): Path<(String, String)>,
    Query(q): Q,
) -> R<Response> {
    let clause = parse_where(q.get("where"), Entity::Revision, None)?;
    let st = sh.state();
    let su = st.unit_in(&space_id, &unit_id)?;
    let items: Vec<Value> = su
        .revisions
        .iter()
        .filter(|r| {
            clause
                .as_ref()
                .is_none_or(|c| crate::where_clause::eval::matches(c, &json!(r.rev)))
        })
        .map(|r| json!({"Revision": r.rev}))
        .collect();
    page(items, &q)
}

async fn get_revision(
    State(sh): S,
    Path((space_id, unit_id, rid)): Path<(String, String, String)>,
) -> R<Response> {
    let st = sh.state();
    let su = st.unit_in(&space_id, &unit_id)?;
    let r = su
        .revisions
        .iter()
        .find(|r| r.rev.revision_id == rid)
        .ok_or_else(|| ApiErr::not_found(format!("revision {rid}")))?;
    Ok(ok(json!({"Revision": r.rev})))
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
        .find(|r| r.rev.revision_id == rid)
        .ok_or_else(|| ApiErr::not_found(format!("revision {rid}")))?;
    Ok((
        [
            ("content-type", "application/octet-stream".to_string()),
            ("etag", format!("\"{}\"", data_hash(&r.data))),
        ],
        r.data.clone(),
    )
        .into_response())
}

// ------------------------------------------------------------------------------------------------
// releases

async fn publish_release(State(sh): S, Path(space_id): Path<String>, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    let (release, message, delivery) = sh.state().publish(&space_id, &b)?;
    if let Some(d) = delivery {
        // The GitOps agent pulls the new Release a moment later, as Argo CD or Flux would.
        let sh2 = sh.clone();
        tokio::spawn(async move {
            tokio::time::sleep(sh2.config.sync_delay).await;
            let release_id = d.release.release_id.clone();
            let result = match sh2.release_hook() {
                Some(h) => h(d).await,
                None => Ok(()),
            };
            if let Err(e) = &result {
                tracing::warn!(error = %e, "simulated GitOps agent: sync failed");
            }
            if let Some(r) = &sh2.config.agent_reporter {
                sh2.state().report_live_status(&release_id, r, &result);
            }
            sh2.state().delivered.push((release_id, result.err()));
        });
    }
    Ok(ok(json!({"Release": release, "Message": message})))
}

async fn list_releases(State(sh): S, Path(space_id): Path<String>, Query(q): Q) -> R<Response> {
    let clause = parse_where(q.get("where"), Entity::Release, None)?;
    let st = sh.state();
    let space = st.space(&space_id)?.clone();
    let items: Vec<Value> = st
        .releases
        .values()
        .filter(|r| r.release.space_id == space_id)
        .filter(|r| {
            clause
                .as_ref()
                .is_none_or(|c| crate::where_clause::eval::matches(c, &json!(r.release)))
        })
        .map(|r| json!({"Release": r.release, "Space": space}))
        .collect();
    page(items, &q)
}

async fn get_release(State(sh): S, Path((space_id, rid)): Path<(String, String)>) -> R<Response> {
    let st = sh.state();
    let r = st.release_in(&space_id, &rid)?;
    Ok(ok(json!({"Release": r.release})))
}

async fn patch_release(
    State(sh): S,
    Path((space_id, rid)): Path<(String, String)>,
    body: Bytes,
) -> R<Response> {
    let b = body_json(&body)?;
    Ok(ok(json!(sh.state().patch_release(&space_id, &rid, &b)?)))
}

// ------------------------------------------------------------------------------------------------
// filters, change sets, targets

async fn list_filters(State(sh): S, Path(space_id): Path<String>, Query(q): Q) -> R<Response> {
    let st = sh.state();
    st.space(&space_id)?;
    let items: Vec<Value> = st
        .filters
        .values()
        .filter(|f| f.space_id == space_id)
        .map(|f| json!({"Filter": f}))
        .collect();
    page(items, &q)
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
    Ok(ok(json!({"Message": format!("filter {fid} deleted")})))
}

async fn list_change_sets(State(sh): S, Path(space_id): Path<String>, Query(q): Q) -> R<Response> {
    let st = sh.state();
    st.space(&space_id)?;
    let items: Vec<Value> = st
        .change_sets
        .values()
        .filter(|(s, _)| *s == space_id)
        .map(|(_, c)| json!({"ChangeSet": c}))
        .collect();
    page(items, &q)
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

async fn list_targets(State(sh): S, Path(space_id): Path<String>, Query(q): Q) -> R<Response> {
    let st = sh.state();
    st.space(&space_id)?;
    let items: Vec<Value> = st
        .targets
        .values()
        .filter(|t| t.space_id == space_id)
        .map(|t| json!({"Target": t}))
        .collect();
    page(items, &q)
}

async fn create_target(State(sh): S, Path(space_id): Path<String>, body: Bytes) -> R<Response> {
    let b = body_json(&body)?;
    Ok(ok(json!(sh.state().create_target(&space_id, &b)?)))
}

// ------------------------------------------------------------------------------------------------
// functions

/// Name, parameters (name, type), whether it changes data.
type FunctionSignature = (&'static str, &'static [(&'static str, &'static str)], bool);

/// The functions the simulator runs, with today's parameter names (FN-K8S, FN-GEN).
const FUNCTIONS: &[FunctionSignature] = &[
    ("set-replicas", &[("replicas", "int")], true),
    ("get-replicas", &[], false),
    (
        "set-container-image",
        &[("container-name", "string"), ("container-image", "string")],
        true,
    ),
    (
        "set-image",
        &[("container-name", "string"), ("container-image", "string")],
        true,
    ),
    (
        "set-int-path",
        &[
            ("resource-type", "string"),
            ("path", "string"),
            ("attribute-value", "int"),
        ],
        true,
    ),
    (
        "set-string-path",
        &[
            ("resource-type", "string"),
            ("path", "string"),
            ("attribute-value", "string"),
        ],
        true,
    ),
    (
        "set-bool-path",
        &[
            ("resource-type", "string"),
            ("path", "string"),
            ("attribute-value", "bool"),
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
            json!({"FunctionName": name, "Parameters": ps, "Mutating": mutating, "Validating": false,
                "ToolchainType": crate::model::KUBERNETES_YAML}),
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

/// Runs the calls on one unit's documents; returns the outputs of read functions.
fn run_functions(docs: &mut [Value], req: &FunctionInvocationsRequest) -> Result<Vec<Value>, String> {
    let mut output = Vec::new();
    for inv in &req.function_invocations {
        match inv.function_name.as_str() {
            "set-replicas" => {
                let n = arg(inv, "replicas")?
                    .as_i64()
                    .filter(|n| *n >= 0)
                    .ok_or("set-replicas: replicas must be an integer ≥ 0")?;
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
                    output.push(
                        json!({"ResourceName": d["metadata"]["name"], "ResourceType": d["kind"],
                        "Path": "spec.replicas", "Value": d["spec"]["replicas"]}),
                    );
                }
            }
            "set-container-image" | "set-image" => {
                let name = arg(inv, "container-name")?
                    .as_str()
                    .ok_or("container-name must be a string")?
                    .to_string();
                let image = arg(inv, "container-image")?
                    .as_str()
                    .ok_or("container-image must be a string")?
                    .to_string();
                for d in docs.iter_mut() {
                    if let Some(cs) = d
                        .pointer_mut("/spec/template/spec/containers")
                        .and_then(Value::as_array_mut)
                    {
                        for c in cs
                            .iter_mut()
                            .filter(|c| name == "*" || c["name"] == name.as_str())
                        {
                            c["image"] = json!(image);
                        }
                    }
                }
            }
            "set-int-path" | "set-string-path" | "set-bool-path" => {
                let rt = arg(inv, "resource-type")?
                    .as_str()
                    .ok_or("resource-type must be a string like apps/v1/Deployment")?
                    .to_string();
                let path = arg(inv, "path")?
                    .as_str()
                    .ok_or("path must be a string like spec.replicas")?
                    .to_string();
                let value = arg(inv, "attribute-value")?.clone();
                let typed_ok = match inv.function_name.as_str() {
                    "set-int-path" => value.is_i64(),
                    "set-bool-path" => value.is_boolean(),
                    _ => value.is_string(),
                };
                if !typed_ok {
                    return Err(format!(
                        "{}: attribute-value has the wrong type",
                        inv.function_name
                    ));
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
    let clause = unit_clause(&st, &q)?;
    let ids: Vec<String> = st
        .select_units(Some(&space_id), clause.as_ref())
        .into_iter()
        .filter(|u| q.get("unit_id").is_none_or(|id| *id == u.unit.unit_id))
        .map(|u| u.unit.unit_id.clone())
        .collect();
    let mut items = Vec::new();
    let mut any_error = false;
    for uid in ids {
        let (unit, data) = {
            let su = &st.units[&uid];
            (su.unit.clone(), su.data.clone())
        };
        if !req.toolchain_type.is_empty() && req.toolchain_type != unit.toolchain_type {
            any_error = true;
            items.push(json!({"UnitID": uid, "UnitSlug": unit.slug, "SpaceID": space_id, "Success": false,
                "Error": {"Message": format!("{}: ToolchainType {} does not match the unit's {}", unit.slug, req.toolchain_type, unit.toolchain_type), "Status": 400}}));
            continue;
        }
        let result = crate::yaml::documents(&String::from_utf8_lossy(&data)).and_then(|mut docs| {
            let out = run_functions(&mut docs, &req)?;
            let text = crate::yaml::render(&docs)?;
            Ok((out, text))
        });
        match result {
            Ok((out, text)) => {
                let changed = text.as_bytes() != data.as_slice();
                let description = if req.change_description.is_empty() {
                    "Function invocation".to_string()
                } else {
                    req.change_description.clone()
                };
                if !dry_run && changed {
                    st.put_data(
                        &space_id,
                        &uid,
                        text.clone().into_bytes(),
                        None,
                        Some(&description),
                        false,
                    )?;
                }
                let mut outputs = serde_json::Map::new();
                if !out.is_empty() {
                    outputs.insert("AttributeValueList".into(), json!(Value::Array(out).to_string()));
                }
                let mut item = json!({"UnitID": uid, "UnitSlug": unit.slug, "SpaceID": space_id,
                    "Success": true, "DataHash": data_hash(text.as_bytes()), "Outputs": outputs,
                    "HasNewMutations": changed});
                if changed {
                    item["ConfigData"] = json!(text);
                }
                items.push(item);
            }
            Err(m) => {
                any_error = true;
                items.push(json!({"UnitID": uid, "UnitSlug": unit.slug, "SpaceID": space_id, "Success": false,
                    "Error": {"Message": format!("{}: {m}", unit.slug), "Status": 400, "Type": "BadRequest"}}));
                if req.stop_on_error {
                    break;
                }
            }
        }
    }
    Ok(bulk(items, any_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_every_operation_once() {
        let ops = operations();
        assert_eq!(ops.len(), 124, "confighub-routes.tsv lists 124 operations");
        let mut seen = std::collections::BTreeSet::new();
        for o in ops {
            assert!(seen.insert((o.method.clone(), o.path.clone())), "twice: {o:?}");
        }
    }

    #[test]
    fn requests_are_held_to_the_table() {
        assert!(check_request("GET", "/space/s1/unit", &["where", "limit"], None, false).is_ok());
        assert_eq!(
            check_request("POST", "/space/s1/unit/u1/apply", &[], None, false).map_err(|e| e.0),
            Err(404)
        );
        assert_eq!(
            check_request("GET", "/space/s1/unit/u1/live_state", &[], None, false).map_err(|e| e.0),
            Err(404)
        );
        assert_eq!(
            check_request("GET", "/space/s1/unit", &["cursor"], None, false).map_err(|e| e.0),
            Err(400)
        );
        assert_eq!(
            check_request(
                "PUT",
                "/space/s1/unit/u1/data",
                &[],
                Some("application/json"),
                true
            )
            .map_err(|e| e.0),
            Err(415)
        );
        assert!(
            check_request(
                "PUT",
                "/space/s1/unit/u1/data",
                &["dry_run"],
                Some("application/octet-stream"),
                true
            )
            .is_ok()
        );
    }
}
