//! The OpenAPI v3 documents kubectl reads before `apply`: the root lists one document per group
//! version, and each document's `PATCH` operations name their kind (`x-kubernetes-group-version-kind`)
//! and declare the `fieldValidation` query parameter, so kubectl leaves validation to the server and
//! computes apply patches from its built-in types. No schemas are published.
//!
//! Older kubectl (before v3 support, e.g. Debian's 1.20) reads `/openapi/v2` instead, as protobuf
//! (gnostic's `openapi_v2.Document`); the sandbox answers with an empty document (no definitions), which
//! such a kubectl takes as "no schema for this kind": it skips client-side validation and uses its
//! built-in types for strategic merge patches, as it does for custom resources.

use drift_core::kinds::KindInfo;
use serde_json::{Map, Value, json};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub(crate) fn root(kinds: &[&'static KindInfo]) -> Value {
    let mut paths = Map::new();
    for k in kinds {
        let p = gv_path(k.group, k.version);
        paths
            .entry(p.clone())
            .or_insert_with(|| json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=drift-sandbox-1")}));
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/<group-version path>`, or `None` for an unknown group version.
pub(crate) fn group_version(kinds: &[&'static KindInfo], path: &str) -> Option<Value> {
    let kinds: Vec<_> = kinds
        .iter()
        .filter(|k| gv_path(k.group, k.version) == path)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for k in kinds {
        let base = if k.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}/{{name}}", k.plural)
        } else {
            format!("/{path}/{}/{{name}}", k.plural)
        };
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}
        ]);
        let body = json!({"content": {
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}}
        }});
        paths.insert(
            base,
            json!({
                "get": {"operationId": format!("read{}", k.kind), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk,
                        "responses": {"200": {"description": "OK"}}},
                "put": {"operationId": format!("replace{}", k.kind), "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk,
                        "parameters": params, "responses": {"200": {"description": "OK"}}},
                "patch": {"operationId": format!("patch{}", k.kind), "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                          "parameters": params, "requestBody": body, "responses": {"200": {"description": "OK"}}},
                "delete": {"operationId": format!("delete{}", k.kind), "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk,
                           "responses": {"200": {"description": "OK"}}}
            }),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (drift-detector sandbox)", "version": "v1.33.0"},
                "paths": paths, "components": {"schemas": {}}}),
    )
}

/// `GET /openapi/v2`: an empty Swagger 2.0 document, as protobuf when asked for (what kubectl asks
/// for), JSON otherwise.
pub(crate) fn v2(headers: &axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    const TITLE: &str = "drift-detector sandbox";
    const VERSION: &str = "v1.33.0";
    let wants_protobuf = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("protobuf"));
    if !wants_protobuf {
        let doc = json!({"swagger": "2.0", "info": {"title": TITLE, "version": VERSION}, "paths": {}, "definitions": {}});
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            doc.to_string(),
        )
            .into_response();
    }
    // Protobuf by hand: Document { swagger = 1: "2.0", info = 2: Info { title = 1, version = 2 } }.
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push(number << 3 | 2); // length-delimited
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, TITLE.as_bytes());
    field(&mut info, 2, VERSION.as_bytes());
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        doc,
    )
        .into_response()
}
