//! Test helpers: a kube `Client` over a `tower_test` mock, scripted request checks, and
//! a small stateful fake API server that enforces the API rules the backend relies on.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use paygress_core::Clock;
use paygress_core::memory::ManualClock;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

/// The namespace every test uses.
pub const NS: &str = "user-workloads";

/// The mock's handle: the test side of the API server.
pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose every request goes to the returned handle.
pub fn mock_client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, NS), handle)
}

/// One request as the API server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// URL path.
    pub path: String,
    /// Decoded query pairs.
    pub query: BTreeMap<String, String>,
    /// Content type.
    pub content_type: Option<String>,
    /// JSON body (`Null` when empty).
    pub body: Value,
}

async fn decode(req: Request<Body>) -> Seen {
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.expect("request body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("request body is JSON")
    };
    let query = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query,
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("ascii").to_owned()),
        body,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// Waits for the next request and checks its method, path and query.
pub async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
) -> (Seen, SendResponse<Response<Body>>) {
    let (req, send) = handle
        .next_request()
        .await
        .unwrap_or_else(|| panic!("expected {method} {path}, but the client is gone"));
    let seen = decode(req).await;
    assert_eq!(seen.method, method, "method of {}", seen.path);
    assert_eq!(seen.path, path, "path");
    let want: BTreeMap<String, String> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(seen.query, want, "query of {method} {path}");
    (seen, send)
}

/// Answers with `status` and a JSON body.
pub fn respond(send: SendResponse<Response<Body>>, status: u16, body: &Value) {
    let response = Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response");
    send.send_response(response);
}

/// A `metav1.Status` failure as the API server sends it.
pub fn status_failure(code: u16, reason: &str, message: &str, kind: &str, name: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": { "name": name, "kind": kind },
        "code": code,
    })
}

/// A `metav1.Status` success (what DELETE answers with).
pub fn status_success(kind: &str, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": name, "group": "batch", "kind": kind, "uid": uid },
    })
}

/// Asserts the client sends nothing more (its side of the mock is dropped).
pub async fn expect_no_more(mut handle: ApiHandle) {
    if let Some((req, _)) = handle.next_request().await {
        let seen = decode(req).await;
        panic!("unexpected request {} {}", seen.method, seen.path);
    }
}

mod fake;

pub use fake::*;

/// A backend on the fake server, reading the fake cluster's clock.
pub fn on_fake(
    client: Client,
    fake: &Fake,
    config: paygress_k8s::K8sConfig,
) -> paygress_k8s::K8sBackend {
    paygress_k8s::K8sBackend::new(client, config).with_clock(Arc::new(fake.clock()))
}

/// A lease spec of `minutes`, paid now on the fake cluster's clock.
pub fn spec_now(fake: &Fake, minutes: i64) -> paygress_core::LeaseSpec {
    let mut spec = paygress_core::contract::sample_spec(minutes);
    spec.created_at = fake.clock().now();
    spec.expires_at = spec.created_at + jiff::SignedDuration::from_mins(minutes);
    spec
}
