//! The sandbox's HTTP side: Kubernetes REST paths, discovery, CRUD, patches, watches.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use drift_core::ignore::LabelSelector;
use drift_core::kinds::KindInfo;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Shared;
use super::fields::{self, Operation};
use super::smp;
use super::store::{Event, EventType, Inner, ObjKey, Store};

/// An error answered as a Kubernetes `Status`.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    fn not_found(info: &KindInfo, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!(
                "{}.{} \"{name}\" not found",
                info.plural,
                group_or_core(info.group)
            ),
            details: Some(json!({"name": name, "group": info.group, "kind": info.plural})),
        }
        .trim_core()
    }
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
    fn trim_core(mut self) -> Self {
        self.message = self.message.replace(".core \"", " \"");
        self
    }
    fn status_json(&self) -> Value {
        let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code});
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

fn group_or_core(g: &str) -> &str {
    if g.is_empty() { "core" } else { g }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.status_json())
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

/// The request's query parameters.
#[derive(Debug, Default)]
struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let mut m = BTreeMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            m.insert(dec(k), dec(v));
        }
        Query(m)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// What a path names.
enum Target {
    Version,
    Api,
    Apis,
    CoreResources,
    GroupResources(String, String),
    Group(String),
    OpenApiRoot,
    OpenApiDoc(String),
    OpenApiV2,
    OpenApi,
    Resource {
        info: &'static KindInfo,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

fn route(kinds: &[&'static KindInfo], path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    match segs.as_slice() {
        ["version"] => Ok(Target::Version),
        ["api"] => Ok(Target::Api),
        ["apis"] => Ok(Target::Apis),
        ["api", "v1"] => Ok(Target::CoreResources),
        ["apis", g] => Ok(Target::Group((*g).to_string())),
        ["apis", g, v] => Ok(Target::GroupResources((*g).to_string(), (*v).to_string())),
        ["openapi", "v3"] => Ok(Target::OpenApiRoot),
        ["openapi", "v3", rest @ ..] => Ok(Target::OpenApiDoc(rest.join("/"))),
        ["openapi", "v2"] => Ok(Target::OpenApiV2),
        ["openapi", ..] => Ok(Target::OpenApi),
        ["api", "v1", rest @ ..] => resource_target(kinds, "", "v1", rest).ok_or_else(not_found),
        ["apis", g, v, rest @ ..] => resource_target(kinds, g, v, rest).ok_or_else(not_found),
        _ => Err(not_found()),
    }
}

fn resource_target(kinds: &[&'static KindInfo], group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let find = |plural: &str| {
        kinds
            .iter()
            .copied()
            .find(|k| k.group == group && k.plural == plural && k.version == version)
    };
    let t = |info, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target::Resource {
        info,
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    };
    match rest {
        ["namespaces", ns, plural] if group.is_empty() || *plural != "namespaces" => {
            let info = find(plural)?;
            info.namespaced.then(|| t(info, Some(ns), None, None))
        }
        ["namespaces", ns, plural, name] => {
            let info = find(plural)?;
            info.namespaced.then(|| t(info, Some(ns), Some(name), None))
        }
        ["namespaces", ns, plural, name, sub] => {
            let info = find(plural)?;
            info.namespaced.then(|| t(info, Some(ns), Some(name), Some(sub)))
        }
        [plural] => Some(t(find(plural)?, None, None, None)),
        [plural, name] => {
            let info = find(plural)?;
            (!info.namespaced).then(|| t(info, None, Some(name), None))
        }
        [plural, name, sub] => {
            let info = find(plural)?;
            (!info.namespaced).then(|| t(info, None, Some(name), Some(sub)))
        }
        _ => None,
    }
}

/// Serves one request.
pub(crate) async fn handle(
    axum::extract::State(sh): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = Query::parse(uri.query());
    sh.log(format!(
        "{method} {}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or(&path)
    ));
    let kinds = sh.kinds();
    let target = match route(&kinds, &path) {
        Ok(Target::Resource { info, .. }) if sh.config.unserved_groups.iter().any(|g| g == info.group) => {
            return ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
            .into_response();
        }
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let result = match (target, &method) {
        (Target::Version, _) => Ok(ok(
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-drift-sandbox",
            "gitCommit": "0000000", "gitTreeState": "clean", "buildDate": "2026-11-26T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
        )),
        (Target::Api, _) => Ok(ok(&json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": sh.addr.to_string()}]}))),
        (Target::Apis, _) => Ok(ok(&api_group_list(&kinds))),
        (Target::CoreResources, _) => Ok(ok(&resource_list(&kinds, "", "v1"))),
        (Target::GroupResources(g, v), _) => {
            if kinds.iter().any(|k| k.group == g && k.version == v) {
                Ok(ok(&resource_list(&kinds, &g, &v)))
            } else {
                Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ))
            }
        }
        (Target::Group(g), _) => match api_group(&kinds, &g) {
            Some(v) => Ok(ok(&v)),
            None => Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        (Target::OpenApiRoot, _) => Ok(ok(&super::openapi::root(&kinds))),
        (Target::OpenApiDoc(p), _) => match super::openapi::group_version(&kinds, &p) {
            Some(doc) => Ok(ok(&doc)),
            None => Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        (Target::OpenApiV2, _) => Ok(super::openapi::v2(&headers)),
        (Target::OpenApi, _) => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
        (
            Target::Resource {
                info,
                namespace,
                name,
                sub,
            },
            m,
        ) => resource(&sh, info, namespace, name, sub, m, &query, &headers, &body).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

#[allow(clippy::too_many_arguments)] // one request's parts
async fn resource(
    sh: &Arc<Shared>,
    info: &'static KindInfo,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    method: &Method,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let sub = sub.as_deref();
    if let Some(s) = sub {
        let allowed = (s == "status" && info.has_status) || (s == "scale" && info.has_scale);
        if !allowed {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    }
    let manager = query
        .get("fieldManager")
        .map(str::to_string)
        .unwrap_or_else(|| default_manager(headers));
    // An older version served beside the stored one: converted in and out.
    let conv = super::convert::converted(info);
    let info = super::convert::storage(info);
    let out = |v: Value| {
        if conv {
            super::convert::response_to_version(&v)
        } else {
            v
        }
    };
    let ok = |v: &Value| ok(&out(v.clone()));
    let json_response = |code: StatusCode, v: &Value| json_response(code, &out(v.clone()));
    match (method.clone(), name) {
        (Method::GET, None) if query.flag("watch") => Ok(watch(sh, info, namespace, query, conv)),
        (Method::GET, None) => list(sh, info, namespace.as_deref(), query).map(|v| ok(&v)),
        (Method::GET, Some(name)) => {
            let obj = get(&sh.store, info, namespace.as_deref(), &name)?;
            if sub == Some("scale") {
                Ok(ok(&to_scale(&obj)))
            } else {
                Ok(ok(&obj))
            }
        }
        (Method::POST, None) => {
            let mut body = parse_body(headers, body)?;
            if conv {
                body = super::convert::to_storage(body, None);
            }
            let obj = create(sh, info, namespace.as_deref(), body, &manager, query.dry_run())?;
            Ok(json_response(StatusCode::CREATED, &obj))
        }
        (Method::PUT, Some(name)) => {
            let mut body = parse_body(headers, body)?;
            if conv {
                let current = get(&sh.store, info, namespace.as_deref(), &name).ok();
                body = super::convert::to_storage(body, current.as_ref());
            }
            update(
                sh,
                info,
                namespace.as_deref(),
                &name,
                sub,
                body,
                &manager,
                query.dry_run(),
            )
            .map(|v| ok(&v))
        }
        (Method::PATCH, Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if ct.starts_with("application/apply-patch")
                && query.get("fieldManager").is_none_or(str::is_empty)
            {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            // Custom resources have no strategic-merge schema: the API server refuses such patches.
            if ct.starts_with("application/strategic-merge-patch")
                && drift_core::kinds::lookup(info.group, info.kind).is_none()
            {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            let force = query.flag("force");
            patch(
                sh,
                info,
                namespace.as_deref(),
                &name,
                sub,
                &ct,
                body,
                &manager,
                force,
                query.dry_run(),
                conv,
            )
            .map(|(v, created)| {
                json_response(
                    if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                    &v,
                )
            })
        }
        (Method::DELETE, Some(name)) => {
            delete(sh, info, namespace.as_deref(), &name, query.dry_run()).map(|v| ok(&v))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
        )),
    }
}

fn default_manager(headers: &HeaderMap) -> String {
    // The API server derives the manager from the user agent's first word: `kubectl/v1.32.4 ...` → `kubectl`.
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    ua.split(['/', ' '])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if super::protobuf::is_protobuf(ct) {
        return super::protobuf::decode(body)
            .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid protobuf body: {e}")));
    }
    if ct.contains("yaml") {
        let text = std::str::from_utf8(body).map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?;
        serde_saphyr::from_str(text).map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid JSON body: {e}")))
    }
}

// ------------------------------------------------------------------------------------------------
// discovery

fn groups(kinds: &[&'static KindInfo]) -> Vec<(&'static str, &'static str)> {
    let mut g: Vec<(&'static str, &'static str)> = kinds
        .iter()
        .filter(|k| !k.group.is_empty())
        .map(|k| (k.group, k.version))
        .collect();
    g.sort_unstable();
    g.dedup();
    g
}

/// A group's versions, the preferred (stored) one first: the version drift-core's table holds for
/// the group, else the first served.
fn versions_of(kinds: &[&'static KindInfo], name: &str) -> Vec<&'static str> {
    let mut vs: Vec<&'static str> = groups(kinds)
        .into_iter()
        .filter(|(g, _)| *g == name)
        .map(|(_, v)| v)
        .collect();
    if let Some(pref) = drift_core::kinds::KNOWN_KINDS
        .iter()
        .find(|k| k.group == name)
        .map(|k| k.version)
        && let Some(i) = vs.iter().position(|v| *v == pref)
    {
        let p = vs.remove(i);
        vs.insert(0, p);
    }
    vs
}

fn group_json(kinds: &[&'static KindInfo], name: &str) -> Option<Value> {
    let vs = versions_of(kinds, name);
    let gv = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    let preferred = gv(vs.first()?);
    Some(
        json!({"name": name, "versions": vs.iter().map(|v| gv(v)).collect::<Vec<_>>(), "preferredVersion": preferred}),
    )
}

fn api_group(kinds: &[&'static KindInfo], name: &str) -> Option<Value> {
    let mut g = group_json(kinds, name)?;
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn api_group_list(kinds: &[&'static KindInfo]) -> Value {
    let mut names: Vec<&str> = groups(kinds).into_iter().map(|(g, _)| g).collect();
    names.dedup();
    let groups: Vec<Value> = names.into_iter().filter_map(|n| group_json(kinds, n)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(kinds: &[&'static KindInfo], group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for k in kinds.iter().filter(|k| k.group == group && k.version == version) {
        let mut entry = json!({"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": k.short_names,
            "storageVersionHash": format!("{:x}", k.kind.len() * 7919)});
        if drift_core::kinds::in_category_all(k.group, k.plural) {
            entry["categories"] = json!(["all"]);
        }
        resources.push(entry);
        if k.has_status {
            resources.push(
                json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                "kind": k.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if k.has_scale {
            resources.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": k.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

// ------------------------------------------------------------------------------------------------
// reads

fn api_version(info: &KindInfo) -> String {
    if info.group.is_empty() {
        info.version.to_string()
    } else {
        format!("{}/{}", info.group, info.version)
    }
}

fn obj_key(info: &KindInfo, namespace: Option<&str>, name: &str) -> ObjKey {
    ObjKey {
        group: info.group.to_string(),
        plural: info.plural.to_string(),
        namespace: if info.namespaced {
            namespace.unwrap_or("").to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

fn get(store: &Store, info: &KindInfo, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
    let g = store.lock();
    g.objects
        .get(&obj_key(info, namespace, name))
        .map(|o| (**o).clone())
        .ok_or_else(|| ApiError::not_found(info, name))
}

struct Filter {
    group: String,
    plural: String,
    namespace: Option<String>,
    labels: Option<LabelSelector>,
    /// Field, value, and whether the term is `!=`.
    fields: Vec<(String, String, bool)>,
}

impl Filter {
    fn new(info: &KindInfo, namespace: Option<String>, q: &Query) -> Result<Self, ApiError> {
        let labels = match q.get("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(LabelSelector::parse(s).map_err(|e| ApiError::new(400, "BadRequest", e))?),
            None => None,
        };
        let mut fields = Vec::new();
        for term in q
            .get("fieldSelector")
            .unwrap_or("")
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (k, v, negated) = match term.split_once("!=") {
                Some((k, v)) => (k, v, true),
                None => term
                    .split_once("==")
                    .or_else(|| term.split_once('='))
                    .map(|(k, v)| (k, v, false))
                    .ok_or_else(|| {
                        ApiError::new(400, "BadRequest", format!("invalid field selector term {term}"))
                    })?,
            };
            // As the API server: every kind has metadata.name and metadata.namespace; Secrets also
            // `type`; core Events the fields of pkg/registry/core/event/strategy.go ToSelectableFields.
            let core_events = info.group.is_empty() && info.plural == "events";
            let supported = matches!(k, "metadata.name" | "metadata.namespace")
                || (k == "type" && info.group.is_empty() && info.plural == "secrets")
                || (core_events
                    && matches!(
                        k,
                        "involvedObject.kind"
                            | "involvedObject.namespace"
                            | "involvedObject.name"
                            | "involvedObject.uid"
                            | "involvedObject.apiVersion"
                            | "involvedObject.resourceVersion"
                            | "involvedObject.fieldPath"
                            | "reason"
                            | "reportingComponent"
                            | "source"
                            | "type"
                    ));
            if !supported {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("field label not supported: {k}"),
                ));
            }
            fields.push((k.to_string(), v.to_string(), negated));
        }
        Ok(Filter {
            group: info.group.into(),
            plural: info.plural.into(),
            namespace,
            labels,
            fields,
        })
    }

    /// Whether a key is in this watch's resource and namespace, selectors aside.
    fn covers(&self, key: &ObjKey) -> bool {
        key.group == self.group
            && key.plural == self.plural
            && self.namespace.as_ref().is_none_or(|ns| &key.namespace == ns)
    }

    fn matches(&self, key: &ObjKey, obj: &Value) -> bool {
        if !self.covers(key) {
            return false;
        }
        if let Some(sel) = &self.labels {
            let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
            if !sel.matches(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str)) {
                return false;
            }
        }
        self.fields.iter().all(|(k, v, negated)| {
            let equal = match k.as_str() {
                "metadata.name" => &key.name == v,
                "metadata.namespace" => &key.namespace == v,
                "type" if self.plural == "secrets" => {
                    obj.get("type").and_then(Value::as_str).unwrap_or("Opaque") == v
                }
                // Event `source` is source.component; absent fields select as "".
                "source" => {
                    obj.pointer("/source/component")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        == v
                }
                path => {
                    let pointer = format!("/{}", path.replace('.', "/"));
                    obj.pointer(&pointer).and_then(Value::as_str).unwrap_or("") == v
                }
            };
            equal != *negated
        })
    }
}

fn list(sh: &Shared, info: &'static KindInfo, namespace: Option<&str>, q: &Query) -> Result<Value, ApiError> {
    let filter = Filter::new(info, namespace.map(str::to_string), q)?;
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let after: Option<ObjKey> = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(decode_continue(token)?),
        None => None,
    };
    let g = sh.store.lock();
    let mut items = Vec::new();
    let mut remaining = 0usize;
    let mut last: Option<ObjKey> = None;
    for (k, o) in g.objects.iter() {
        if after.as_ref().is_some_and(|a| k <= a) || !filter.matches(k, o) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            remaining += 1;
            continue;
        }
        items.push((**o).clone());
        last = Some(k.clone());
    }
    let mut meta = json!({"resourceVersion": g.rv.to_string()});
    if remaining > 0
        && let Some(l) = last
    {
        meta["continue"] = Value::String(encode_continue(&l));
        meta["remainingItemCount"] = Value::from(remaining);
    }
    Ok(
        json!({"kind": format!("{}List", info.kind), "apiVersion": api_version(info), "metadata": meta, "items": items}),
    )
}

fn encode_continue(k: &ObjKey) -> String {
    let v = json!([k.group, k.plural, k.namespace, k.name]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn decode_continue(token: &str) -> Result<ObjKey, ApiError> {
    let bad = || ApiError::new(400, "BadRequest", "invalid continue token");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    match v.as_slice() {
        [g, p, n, name] => Ok(ObjKey {
            group: g.clone(),
            plural: p.clone(),
            namespace: n.clone(),
            name: name.clone(),
        }),
        _ => Err(bad()),
    }
}

// ------------------------------------------------------------------------------------------------
// writes

pub(crate) fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0);
    drift_core::clock::rfc3339_seconds(ms)
}

fn check_type(info: &KindInfo, obj: &mut Value) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "the request body must be an object",
        ));
    };
    let av = api_version(info);
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if k != info.kind => {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!("the body is a {k}, the URL names {}", info.plural),
            ));
        }
        _ => {}
    }
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != av => {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!("apiVersion {v} is not served; use {av}"),
            ));
        }
        _ => {}
    }
    m.insert("kind".into(), Value::String(info.kind.into()));
    m.insert("apiVersion".into(), Value::String(av));
    if !m.get("metadata").is_some_and(Value::is_object) {
        m.insert("metadata".into(), json!({}));
    }
    Ok(())
}

/// What the API server does to every written object: Secret folding, defaults, allocations, canonical
/// quantities, template timestamps.
fn normalize(info: &KindInfo, obj: &mut Value, current: Option<&Value>, g: &mut Inner) {
    if info.kind == "Secret"
        && let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
    {
        let data = obj.as_object_mut().and_then(|m| {
            if !m.get("data").is_some_and(Value::is_object) {
                m.insert("data".into(), json!({}));
            }
            m.get_mut("data").and_then(Value::as_object_mut)
        });
        if let Some(data) = data {
            for (k, v) in sd {
                let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                data.insert(
                    k,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
    drift_core::fill_server_defaults(obj);
    if let Some(schema) = g.custom.schema(info.group, info.version, info.kind) {
        super::crd::apply_defaults(schema, obj);
    }
    if info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition" {
        let keep = current.and_then(|c| c.pointer("/status/conditions/0/lastTransitionTime").cloned());
        let now = keep
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(now_rfc3339);
        super::crd::crd_status(obj, &now);
    }
    if info.kind == "Service" {
        allocate_service(obj, current, g);
    }
    canonicalize_quantities(obj);
    if let Some(t) = obj
        .pointer_mut("/spec/template/metadata")
        .and_then(Value::as_object_mut)
    {
        t.entry("creationTimestamp").or_insert(Value::Null);
    }
    if info.kind == "Namespace" {
        obj["status"] = json!({"phase": "Active"});
    }
}

fn allocate_service(obj: &mut Value, current: Option<&Value>, g: &mut Inner) {
    let kind = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let prev = |p: &str| current.and_then(|c| c.pointer(p)).cloned();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if kind != "ExternalName" {
        if !spec.contains_key("clusterIP") {
            let ip = prev("/spec/clusterIP").unwrap_or_else(|| Value::String(Store::allocate_ip(g)));
            spec.insert("clusterIP".into(), ip);
        }
        if !spec.contains_key("clusterIPs") {
            let ip = spec.get("clusterIP").cloned().unwrap_or(Value::Null);
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        spec.entry("ipFamilyPolicy")
            .or_insert_with(|| json!("SingleStack"));
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        let old_ports: Vec<Value> = current
            .and_then(|c| c.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p.get("nodePort").is_none() {
                    let reuse = old_ports
                        .iter()
                        .find(|o| o.get("port") == p.get("port"))
                        .and_then(|o| o.get("nodePort"))
                        .cloned();
                    p["nodePort"] = reuse.unwrap_or_else(|| Value::from(Store::allocate_node_port(g)));
                }
            }
        }
    }
}

fn canonicalize_quantities(obj: &mut Value) {
    fn fix_resources(r: &mut Value) {
        for section in ["requests", "limits"] {
            if let Some(m) = r.get_mut(section).and_then(Value::as_object_mut) {
                for v in m.values_mut() {
                    if let Some(q) = drift_core::Quantity::from_json(v) {
                        *v = Value::String(q.to_string());
                    }
                }
            }
        }
    }
    fn pod(spec: &mut Value) {
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(r) = c.get_mut("resources") {
                        fix_resources(r);
                    }
                }
            }
        }
    }
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod(spec);
    }
    if obj.get("kind").and_then(Value::as_str) == Some("Pod")
        && let Some(spec) = obj.get_mut("spec")
    {
        pod(spec);
    }
    if let Some(vcts) = obj
        .pointer_mut("/spec/volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for v in vcts {
            if let Some(r) = v.pointer_mut("/spec/resources") {
                fix_resources(r);
            }
        }
    }
}

/// Everything but metadata and status: a change there bumps `metadata.generation`.
/// Whether two objects agree on everything but `metadata` and `status` (a spec change bumps
/// `generation`).
fn same_content(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    let content = |k: &&String| !matches!(k.as_str(), "metadata" | "status");
    a.keys().filter(content).count() == b.keys().filter(content).count()
        && a.iter()
            .filter(|(k, _)| content(k))
            .all(|(k, v)| b.get(k) == Some(v))
}

fn ensure_namespace(g: &Inner, info: &KindInfo, namespace: Option<&str>) -> Result<(), ApiError> {
    if !info.namespaced {
        return Ok(());
    }
    let ns = namespace.unwrap_or("");
    let key = ObjKey {
        group: String::new(),
        plural: "namespaces".into(),
        namespace: String::new(),
        name: ns.to_string(),
    };
    if g.objects.contains_key(&key) {
        Ok(())
    } else {
        Err(ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("namespaces \"{ns}\" not found"),
            details: Some(json!({"name": ns, "kind": "namespaces"})),
        })
    }
}

fn create(
    sh: &Shared,
    info: &'static KindInfo,
    namespace: Option<&str>,
    mut obj: Value,
    manager: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    check_type(info, &mut obj)?;
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::new(400, "BadRequest", "metadata must be an object"))?;
    let name = match meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) => format!(
                "{prefix}{:05x}",
                std::process::id() ^ u32::try_from(sh.store.lock().rv & 0xfffff).unwrap_or(0)
            ),
            None => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        info.kind
                    ),
                ));
            }
        },
    };
    meta.insert("name".into(), Value::String(name.clone()));
    if info.namespaced {
        let url_ns = namespace.unwrap_or("default");
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if n != url_ns => {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), Value::String(url_ns.to_string()));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let key = obj_key(info, namespace.or(Some("default")), &name);
    let mut g = sh.store.lock();
    ensure_namespace(&g, info, namespace.or(Some("default")))?;
    if g.objects.contains_key(&key) {
        return Err(ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!(
                "{}.{} \"{name}\" already exists",
                info.plural,
                group_or_core(info.group)
            ),
            details: Some(json!({"name": name, "group": info.group, "kind": info.plural})),
        }
        .trim_core());
    }
    let time = now_rfc3339();
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    {
        let uid = Store::new_uid(&mut g);
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::new(400, "BadRequest", "metadata"))?;
        for k in [
            "resourceVersion",
            "managedFields",
            "generation",
            "deletionTimestamp",
            "selfLink",
        ] {
            meta.remove(k);
        }
        meta.insert("uid".into(), Value::String(uid));
        meta.insert("creationTimestamp".into(), Value::String(time.clone()));
        if info.has_generation {
            meta.insert("generation".into(), Value::from(1));
        }
    }
    normalize(info, &mut obj, None, &mut g);
    fields::record(
        None,
        &mut obj,
        manager,
        Operation::Create,
        &api_version(info),
        None,
        &time,
    );
    if dry_run {
        return Ok(obj);
    }
    let stored = sh.store.commit(&mut g, key.clone(), EventType::Added, obj);
    if sh.config.simulate_controllers {
        simulate_status(sh, &mut g, info, &key, &stored);
    }
    Ok((*stored).clone())
}

/// The bits of a workload's status a controller would write after a spec change.
fn simulate_status(sh: &Shared, g: &mut Inner, info: &KindInfo, key: &ObjKey, obj: &Value) {
    if !matches!(info.kind, "Deployment" | "StatefulSet" | "ReplicaSet") {
        return;
    }
    let generation = obj
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(Value::from(1));
    let replicas = obj.pointer("/spec/replicas").cloned().unwrap_or(Value::from(1));
    let status = json!({"observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
        "availableReplicas": replicas, "updatedReplicas": replicas});
    if obj.get("status") == Some(&status) {
        return;
    }
    let mut next = obj.clone();
    next["status"] = status;
    sh.store.commit(g, key.clone(), EventType::Modified, next);
}

/// Fields the API server refuses to change after creation (the `ValidateUpdate` functions of
/// `pkg/apis/*/validation`): a 422 `Invalid` naming the field, with `details.causes`, as a cluster
/// answers — a patch can never fix such a drift.
fn immutable_violation(info: &KindInfo, current: &Value, next: &Value) -> Option<ApiError> {
    let paths: &[&str] = match (info.group, info.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => &["/spec/selector"],
        ("apps", "StatefulSet") => &[
            "/spec/selector",
            "/spec/serviceName",
            "/spec/volumeClaimTemplates",
            "/spec/podManagementPolicy",
        ],
        ("batch", "Job") => &["/spec/selector", "/spec/template", "/spec/completionMode"],
        ("", "Service") => &["/spec/clusterIP"],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => &["/roleRef"],
        ("", "ConfigMap" | "Secret") if current.get("immutable") == Some(&Value::Bool(true)) => {
            &["/data", "/binaryData", "/immutable"]
        }
        _ => &[],
    };
    let changed: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| {
            let (a, b) = (current.pointer(p), next.pointer(p));
            // clusterIP: "" or absent in an update keeps the allocated address.
            !(*p == "/spec/clusterIP" && b.is_none_or(|v| v.as_str() == Some(""))) && a != b
        })
        .collect();
    if changed.is_empty() {
        return None;
    }
    let name = current
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let causes: Vec<Value> = changed
        .iter()
        .map(|p| {
            let field = p.trim_start_matches('/').replace('/', ".");
            json!({"reason": "FieldValueInvalid", "message": format!("Invalid value: {}: field is immutable", next.pointer(p).map_or("null".to_string(), Value::to_string)), "field": field})
        })
        .collect();
    let fields: Vec<String> = changed
        .iter()
        .map(|p| {
            format!(
                "{}: Invalid value: field is immutable",
                p.trim_start_matches('/').replace('/', ".")
            )
        })
        .collect();
    Some(
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "{}.{} \"{name}\" is invalid: {}",
                info.kind,
                group_or_core(info.group),
                fields.join(", ")
            ),
            details: Some(json!({"name": name, "group": info.group, "kind": info.kind, "causes": causes})),
        }
        .trim_core(),
    )
}

/// Finishes an update of `current` into `next` (already patched or replaced), and stores it.
#[allow(clippy::too_many_arguments)] // one write's parts
fn finish_update(
    sh: &Shared,
    g: &mut Inner,
    info: &'static KindInfo,
    key: ObjKey,
    current: &Value,
    mut next: Value,
    sub: Option<&str>,
    manager: &str,
    op: Operation<'_>,
    dry_run: bool,
) -> Result<Value, ApiError> {
    check_type(info, &mut next)?;
    // Identity and system fields come from the stored object.
    for k in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "managedFields",
    ] {
        match current.pointer(&format!("/metadata/{k}")) {
            Some(v) => next["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = next["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    match sub {
        Some("status") => {
            // Only status changes through the status subresource.
            let status = next.get("status").cloned();
            let mut kept = current.clone();
            match status {
                Some(s) => kept["status"] = s,
                None => {
                    if let Some(m) = kept.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            next = kept;
        }
        _ => {
            // The main resource never changes status.
            match current.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(m) = next.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
    }
    normalize(info, &mut next, Some(current), g);
    if let Some(e) = immutable_violation(info, current, &next) {
        return Err(e);
    }
    if info.has_generation && !same_content(&next, current) {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            + 1;
        next["metadata"]["generation"] = Value::from(generation);
    }
    let time = now_rfc3339();
    let sub_for_fields = sub.filter(|s| *s == "scale" || *s == "status");
    fields::record(
        Some(current),
        &mut next,
        manager,
        op,
        &api_version(info),
        sub_for_fields,
        &time,
    );
    if dry_run {
        next["metadata"]["resourceVersion"] = current
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null);
        return Ok(next);
    }
    if next == *current {
        return Ok(next); // nothing changed: no new resourceVersion, no event (as the API server does)
    }
    // Being deleted, and the last finalizer is gone: the object goes now.
    if next.pointer("/metadata/deletionTimestamp").is_some()
        && next
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        let gone = sh.store.commit(g, key.clone(), EventType::Deleted, next);
        return Ok((*gone).clone());
    }
    let stored = sh.store.commit(g, key.clone(), EventType::Modified, next);
    if sh.config.simulate_controllers && !same_content(&stored, current) {
        simulate_status(sh, g, info, &key, &stored);
        if let Some(latest) = g.objects.get(&key).cloned() {
            return Ok((*latest).clone());
        }
    }
    Ok((*stored).clone())
}

/// An update made in process (no HTTP), through the same path as a PUT.
pub(crate) fn create_direct(
    sh: &Shared,
    info: &'static KindInfo,
    namespace: Option<&str>,
    obj: Value,
    manager: &str,
) -> Result<Value, ApiError> {
    create(sh, info, namespace, obj, manager, false)
}

pub(crate) fn modify_direct(
    sh: &Shared,
    info: &'static KindInfo,
    namespace: Option<&str>,
    name: &str,
    manager: &str,
    change: impl FnOnce(&mut Value),
) -> Result<Value, ApiError> {
    let key = obj_key(info, namespace, name);
    let mut g = sh.store.lock();
    let current = g
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info, name))?;
    let mut next = (*current).clone();
    change(&mut next);
    finish_update(
        sh,
        &mut g,
        info,
        key,
        &current,
        next,
        None,
        manager,
        Operation::Update,
        false,
    )
}

#[allow(clippy::too_many_arguments)] // one request's parts
fn update(
    sh: &Shared,
    info: &'static KindInfo,
    namespace: Option<&str>,
    name: &str,
    sub: Option<&str>,
    mut body: Value,
    manager: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let key = obj_key(info, namespace, name);
    let mut g = sh.store.lock();
    let current = g
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info, name))?;
    if let Some(n) = body.pointer("/metadata/name").and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::new(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL",
        ));
    }
    if let Some(rv) = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        && Some(rv)
            != current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(conflict(info, name));
    }
    if sub == Some("scale") {
        let replicas = body.pointer("/spec/replicas").cloned().unwrap_or(Value::Null);
        let mut next = (*current).clone();
        next["spec"]["replicas"] = replicas;
        let obj = finish_update(
            sh,
            &mut g,
            info,
            key,
            &current,
            next,
            sub,
            manager,
            Operation::Update,
            dry_run,
        )?;
        return Ok(to_scale(&obj));
    }
    if let Some(m) = body.as_object_mut() {
        m.entry("metadata").or_insert_with(|| json!({}));
    }
    finish_update(
        sh,
        &mut g,
        info,
        key,
        &current,
        body,
        sub,
        manager,
        Operation::Update,
        dry_run,
    )
}

fn conflict(info: &KindInfo, name: &str) -> ApiError {
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            info.plural,
            group_or_core(info.group)
        ),
        details: Some(json!({"name": name, "group": info.group, "kind": info.plural})),
    }
    .trim_core()
}

fn to_scale(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(Value::from(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(Value::from(0)), "selector": selector}})
}

#[allow(clippy::too_many_arguments)] // one request's parts
fn patch(
    sh: &Shared,
    info: &'static KindInfo,
    namespace: Option<&str>,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &Bytes,
    manager: &str,
    force: bool,
    dry_run: bool,
    conv: bool,
) -> Result<(Value, bool), ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if ct == "application/apply-patch+yaml" {
        let text = std::str::from_utf8(body).map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?;
        let applied: Value =
            serde_saphyr::from_str(text).map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?;
        return server_side_apply(sh, info, namespace, name, applied, manager, force, dry_run);
    }
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid patch body: {e}")))?;
    let key = obj_key(info, namespace, name);
    let mut g = sh.store.lock();
    let current = g
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info, name))?;
    let base = if sub == Some("scale") {
        to_scale(&current)
    } else if conv {
        // A patch written against the older version applies to the object in that version.
        super::convert::to_version(&current)
    } else {
        (*current).clone()
    };
    let mut patched = base.clone();
    match ct {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid JSON patch: {e}")))?;
            // As handlers/patch.go: NewGenericServerResponse(422, ...), the patch error as the cause.
            drift_core::patch::patch_in_place(&mut patched, &ops).map_err(|e| ApiError {
                code: 422,
                reason: "Invalid",
                message: "the server rejected our request due to an error in our request".into(),
                details: Some(
                    json!({"causes": [{"reason": "UnexpectedServerResponse", "message": e.to_string()}]}),
                ),
            })?;
        }
        "application/merge-patch+json" => json_patch::merge(&mut patched, &patch),
        "application/strategic-merge-patch+json" => {
            smp::apply(&mut patched, &patch).map_err(|e| ApiError::new(400, "BadRequest", e))?;
        }
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                ),
            ));
        }
    }
    if let Some(rv) = patch_rv(&patched, &base)
        && Some(rv.as_str())
            != current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(conflict(info, name));
    }
    let next = if sub == Some("scale") {
        let mut n = (*current).clone();
        n["spec"]["replicas"] = patched.pointer("/spec/replicas").cloned().unwrap_or(Value::Null);
        n
    } else if conv {
        super::convert::to_storage(patched, Some(&current))
    } else {
        patched
    };
    let obj = finish_update(
        sh,
        &mut g,
        info,
        key,
        &current,
        next,
        sub,
        manager,
        Operation::Update,
        dry_run,
    )?;
    Ok((if sub == Some("scale") { to_scale(&obj) } else { obj }, false))
}

/// A patch that sets `metadata.resourceVersion` asks for optimistic concurrency.
fn patch_rv(patched: &Value, base: &Value) -> Option<String> {
    let p = patched
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)?;
    let b = base.pointer("/metadata/resourceVersion").and_then(Value::as_str);
    (Some(p) != b).then(|| p.to_string())
}

#[allow(clippy::too_many_arguments)] // one request's parts
fn server_side_apply(
    sh: &Shared,
    info: &'static KindInfo,
    namespace: Option<&str>,
    name: &str,
    mut applied: Value,
    manager: &str,
    force: bool,
    dry_run: bool,
) -> Result<(Value, bool), ApiError> {
    check_type(info, &mut applied)?;
    let applied_paths: BTreeSet<fields::FieldPath> = fields::flatten(&applied).into_keys().collect();
    let key = obj_key(info, namespace, name);
    let current = sh.store.lock().objects.get(&key).cloned();
    let Some(current) = current else {
        let mut obj = applied.clone();
        obj["metadata"]["name"] = Value::String(name.to_string());
        let created = create(sh, info, namespace, obj, manager, dry_run)?;
        // The creator of an apply owns what it applied (an Apply entry), not everything.
        let mut g = sh.store.lock();
        if dry_run {
            return Ok((created, true));
        }
        let Some(stored) = g.objects.get(&key).cloned() else {
            return Ok((created, true));
        };
        let mut fixed = (*stored).clone();
        if let Some(m) = fixed["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        fields::record(
            None,
            &mut fixed,
            manager,
            Operation::Apply(&applied_paths),
            &api_version(info),
            None,
            &now_rfc3339(),
        );
        let out = sh.store.commit(&mut g, key, EventType::Modified, fixed);
        return Ok(((*out).clone(), true));
    };
    if !force {
        let conflicts = fields::conflicts(&current, &applied, manager);
        if !conflicts.is_empty() {
            let lines: Vec<String> = conflicts
                .iter()
                .map(|(m, p)| format!("conflict with \"{m}\": {}", fields::render(p)))
                .collect();
            // As the API server: one cause per conflicting field, naming its manager.
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|(m, p)| {
                    json!({"reason": "FieldManagerConflict",
                        "message": format!("conflict with \"{m}\" using {}", api_version(info)),
                        "field": fields::render(p)})
                })
                .collect();
            return Err(ApiError {
                code: 409,
                reason: "Conflict",
                message: format!(
                    "Apply failed with {} conflict{}: {}",
                    lines.len(),
                    if lines.len() == 1 { "" } else { "s" },
                    lines.join("; ")
                ),
                details: Some(
                    json!({"name": name, "group": info.group, "kind": info.plural, "causes": causes}),
                ),
            });
        }
    }
    // Merge the applied configuration in; fields this manager applied before and dropped now go away.
    let mut next = (*current).clone();
    smp::apply(&mut next, &applied).map_err(|e| ApiError::new(400, "BadRequest", e))?;
    let previous: BTreeSet<fields::FieldPath> = current
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| {
            e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
        })
        .filter_map(|e| e.get("fieldsV1"))
        .flat_map(fields::from_fields_v1)
        .collect();
    for dropped in previous.difference(&applied_paths) {
        remove_path(&mut next, dropped);
    }
    let mut g = sh.store.lock();
    let obj = finish_update(
        sh,
        &mut g,
        info,
        key,
        &current,
        next,
        None,
        manager,
        Operation::Apply(&applied_paths),
        dry_run,
    )?;
    Ok((obj, false))
}

/// Removes the field a FieldsV1 path names (maps only; list elements stay).
fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(last) = last.strip_prefix("f:") else {
        return;
    };
    let mut v = obj;
    for p in parents {
        let Some(f) = p.strip_prefix("f:") else { return };
        match v.get_mut(f) {
            Some(n) => v = n,
            None => return,
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove(last);
    }
}

fn delete(
    sh: &Shared,
    info: &'static KindInfo,
    namespace: Option<&str>,
    name: &str,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let key = obj_key(info, namespace, name);
    let mut g = sh.store.lock();
    let current = g
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info, name))?;
    // Finalizers hold the object: it is marked (deletionTimestamp) and stays until the last one is
    // removed; the answer is the object, as the API server gives it.
    let has_finalizers = current
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if dry_run || current.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok((*current).clone());
        }
        let mut marked = (*current).clone();
        marked["metadata"]["deletionTimestamp"] = Value::String(now_rfc3339());
        marked["metadata"]["deletionGracePeriodSeconds"] = Value::from(0);
        let out = sh.store.commit(&mut g, key, EventType::Modified, marked);
        return Ok((*out).clone());
    }
    // Otherwise the answer is a Status naming what was deleted (the registry's
    // ReturnDeletedObject is off for these kinds).
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": info.group, "kind": info.plural,
                    "uid": current.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)}});
    if dry_run {
        return Ok(status);
    }
    if info.kind == "Namespace" {
        // Cascade: everything in the namespace goes with it.
        let inside: Vec<ObjKey> = g
            .objects
            .keys()
            .filter(|k| k.namespace == name)
            .cloned()
            .collect();
        for k in inside {
            if let Some(o) = g.objects.get(&k).cloned() {
                sh.store.commit(&mut g, k, EventType::Deleted, (*o).clone());
            }
        }
    }
    sh.store
        .commit(&mut g, key, EventType::Deleted, (*current).clone());
    Ok(status)
}

// ------------------------------------------------------------------------------------------------
// watch

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut s = serde_json::to_string(&json!({"type": kind, "object": object})).unwrap_or_default();
    s.push('\n');
    Bytes::from(s)
}

fn gone(message: &str) -> Bytes {
    event_line(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Expired", "code": 410}),
    )
}

/// The watch event a change becomes for a client whose view is `visible`: entering the selection is
/// ADDED, leaving it DELETED, a change within it MODIFIED, anything outside it nothing.
fn selector_transition(
    filter: &Filter,
    visible: &mut std::collections::HashSet<ObjKey>,
    e: &Event,
) -> Option<&'static str> {
    // Other resources' changes pass through the same channel: never this watch's business.
    if !filter.covers(&e.key) {
        return None;
    }
    let matches = filter.matches(&e.key, &e.object);
    match e.kind {
        EventType::Deleted => (visible.remove(&e.key) || matches).then_some("DELETED"),
        EventType::Added | EventType::Modified if matches => {
            if visible.insert(e.key.clone()) {
                Some("ADDED")
            } else {
                Some("MODIFIED")
            }
        }
        _ => visible.remove(&e.key).then_some("DELETED"),
    }
}

fn watch(
    sh: &Arc<Shared>,
    info: &'static KindInfo,
    namespace: Option<String>,
    q: &Query,
    conv: bool,
) -> Response {
    let event_line = move |kind: &str, object: &Value| {
        if conv {
            event_line(kind, &super::convert::response_to_version(object))
        } else {
            event_line(kind, object)
        }
    };
    let filter = match Filter::new(info, namespace, q) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let from: Option<u64> = q
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && *r != "0")
        .and_then(|r| r.parse().ok());
    let (tx, rx) = mpsc::channel::<Bytes>(4096);
    // Under the store lock: take the starting events and subscribe, so nothing falls between them.
    // What this watch has shown and not yet taken back: with a selector, an object that stops
    // matching is a DELETED event and one that starts matching an ADDED one, as the API server's
    // watch cache sends them.
    let mut visible: std::collections::HashSet<ObjKey> = std::collections::HashSet::new();
    let (initial, mut live, start_rv) = {
        let g = sh.store.lock();
        let live = sh.store.subscribe();
        let initial: Result<Vec<Bytes>, Bytes> = match from {
            None => Ok(g
                .objects
                .iter()
                .filter(|(k, o)| filter.matches(k, o))
                .map(|(k, o)| {
                    visible.insert(k.clone());
                    event_line("ADDED", o)
                })
                .collect()),
            Some(rv) => match Store::events_since(&g, rv) {
                None => Err(gone(&format!(
                    "too old resource version: {rv} ({})",
                    g.compacted_rv + 1
                ))),
                Some(evs) => {
                    // Resuming: what matched before the replayed events is taken to be what the
                    // client holds (the objects matching now that the replay does not touch).
                    // Objects the replay first modifies or deletes existed then, and are taken to
                    // have been shown (a DELETED for one the client never had is harmless).
                    let mut touched: std::collections::HashSet<&ObjKey> = std::collections::HashSet::new();
                    for e in evs.iter().filter(|e| filter.covers(&e.key)) {
                        if touched.insert(&e.key) && e.kind != EventType::Added {
                            visible.insert(e.key.clone());
                        }
                    }
                    visible.extend(
                        g.objects
                            .iter()
                            .filter(|(k, o)| !touched.contains(k) && filter.matches(k, o))
                            .map(|(k, _)| k.clone()),
                    );
                    Ok(evs
                        .iter()
                        .filter_map(|e| {
                            selector_transition(&filter, &mut visible, e).map(|t| event_line(t, &e.object))
                        })
                        .collect())
                }
            },
        };
        (initial, live, g.rv)
    };
    let mut epoch = sh.store.epoch();
    let interval = sh.config.bookmark_interval;
    let kind = info.kind;
    let av = api_version(info);
    tokio::spawn(async move {
        let initial = match initial {
            Ok(lines) => lines,
            Err(gone_line) => {
                let _ = tx.send(gone_line).await;
                return;
            }
        };
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let mut last_rv = start_rv;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            let sleep_until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(e) => {
                        let e: Arc<Event> = e;
                        if e.rv <= last_rv { continue; }
                        last_rv = e.rv;
                        if let Some(t) = selector_transition(&filter, &mut visible, &e)
                            && tx.send(event_line(t, &e.object)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(gone("watcher fell behind; re-list")).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if bookmarks => {
                    let b = json!({"kind": kind, "apiVersion": av, "metadata": {"resourceVersion": last_rv.to_string()}});
                    if tx.send(event_line("BOOKMARK", &b)).await.is_err() { return; }
                }
                _ = epoch.changed() => return,
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let kinds: Vec<&'static KindInfo> = drift_core::kinds::KNOWN_KINDS.iter().collect();
        let route = |p: &str| route(&kinds, p);
        assert!(matches!(
            route("/api/v1/namespaces/default/configmaps"),
            Ok(Target::Resource { name: None, .. })
        ));
        assert!(matches!(
            route("/apis/apps/v1/namespaces/x/deployments/web/scale"),
            Ok(Target::Resource { sub: Some(_), .. })
        ));
        assert!(
            matches!(route("/api/v1/namespaces/x"), Ok(Target::Resource { info, name: Some(_), .. }) if info.kind == "Namespace")
        );
        assert!(
            matches!(route("/api/v1/namespaces"), Ok(Target::Resource { info, name: None, .. }) if info.kind == "Namespace")
        );
        assert!(matches!(
            route("/apis/rbac.authorization.k8s.io/v1/clusterroles/admin"),
            Ok(Target::Resource { .. })
        ));
        assert!(route("/apis/apps/v1beta1/deployments").is_err());
        assert!(route("/api/v1/nonsense").is_err());
    }

    #[test]
    fn continue_tokens_round_trip() {
        let k = ObjKey {
            group: "apps".into(),
            plural: "deployments".into(),
            namespace: "x".into(),
            name: "y".into(),
        };
        assert_eq!(decode_continue(&encode_continue(&k)).unwrap(), k);
        assert!(decode_continue("!!").is_err());
    }
}
