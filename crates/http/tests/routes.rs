//! The route table, the router and `openapi.json` must never drift apart: every documented
//! operation is in `ROUTES`, every entry of `ROUTES` is documented, and the router answers
//! each of them with a real handler rather than its fallback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

use common::Harness;

/// What the router's fallback answers for an unknown path.
const FALLBACK_BODY: &str = r#"{"Error":"no such endpoint"}"#;

fn openapi() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let text = std::fs::read_to_string(&path).expect("openapi.json is readable");
    serde_json::from_str(&text).expect("openapi.json is valid JSON")
}

/// Every (METHOD, path) operation the document describes.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("openapi.json has a paths object");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("each path item is an object").keys() {
            if method != "parameters" {
                operations.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[test]
fn openapi_documents_exactly_the_routes_in_the_route_table() {
    let routes: BTreeSet<(String, String)> =
        tern_http::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(routes.len(), tern_http::ROUTES.len(), "ROUTES lists a route twice");
    let documented = documented_operations(&openapi());
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "in ROUTES but not in openapi.json: {undocumented:?}\nin openapi.json but not in ROUTES: {unrouted:?}"
    );
}

/// Collects every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

#[test]
fn openapi_references_resolve_and_path_parameters_are_declared() {
    let doc = openapi();
    assert_eq!(doc["swagger"], "2.0");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty(), "the document uses definitions");
    for target in found {
        let pointer = target.strip_prefix('#').expect("only local references");
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let in_path: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .collect();
        for (method, operation) in item.as_object().expect("path item") {
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} lists its parameters"))
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(
                        p["required"], true,
                        "{method} {path}: path parameters are required"
                    );
                    p["name"].as_str().expect("parameter name")
                })
                .collect();
            assert_eq!(in_path, declared, "{method} {path}: path parameters");
            assert!(
                operation["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents its responses"
            );
            assert!(operation["operationId"].is_string(), "{method} {path} has an operationId");
        }
    }
}

impl Harness {
    /// Sends one request through a fresh router; returns the status and, unless the answer
    /// is a stream that never ends, the body.
    async fn call(&self, method: &str, uri: &str) -> (StatusCode, String) {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::empty())
            .expect("request");
        let response =
            tern_http::router(self.state.clone()).oneshot(request).await.expect("router answers");
        let status = response.status();
        let streaming = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            return (status, String::new());
        }
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// A concrete URI for a route pattern: `latest` for `{ID}`, part `1`, an inbox address, and
/// the query parameters that keep handlers from blocking or refusing the request outright.
fn concrete(path: &str) -> String {
    let uri = path
        .replace("{ID}", "latest")
        .replace("{PartID}", "1")
        .replace("{Address}", "nobody@example.com");
    match path {
        "/api/v1/search" => format!("{uri}?query=hello"),
        "/api/v1/wait" => format!("{uri}?timeout=10ms"),
        _ => uri,
    }
}

fn is_fallback(status: StatusCode, body: &str) -> bool {
    status == StatusCode::NOT_FOUND && body == FALLBACK_BODY
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_in_the_table_reaches_a_handler() {
    let harness = Harness::open();
    // The check itself must tell a fallback from a handler.
    let (status, body) = harness.call("GET", "/api/v1/no-such-thing").await;
    assert!(is_fallback(status, &body), "unknown path answered {status} {body}");
    let (status, _) = harness.call("POST", "/api/v1/messages").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "a wrong method is told apart");

    let mut failures = Vec::new();
    for (method, path) in tern_http::ROUTES {
        let uri = concrete(path);
        let (status, body) = harness.call(method, &uri).await;
        if is_fallback(status, &body) || status == StatusCode::METHOD_NOT_ALLOWED {
            failures.push(format!("{method} {path} ({uri}) -> {status} {body}"));
        }
    }
    assert!(failures.is_empty(), "routes the router does not serve:\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_serves_the_openapi_document_unchanged() {
    let harness = Harness::open();
    let (status, body) = harness.call("GET", "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let served: Value = serde_json::from_str(&body).expect("served document is JSON");
    assert_eq!(served, openapi());
}
