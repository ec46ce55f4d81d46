//! Test helpers: a kube `Client` over a `tower_test` mock, scripted request checks, and
//! small fixtures on the fake cluster (`paygress_k8s::fake`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use paygress_core::Clock;
use serde_json::Value;
use tower_test::mock::{self, Handle, SendResponse};

pub mod lease;

/// The mock's handle: the test side of the API server.
pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A client whose every request goes to the returned handle.
pub fn mock_client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, NS), handle)
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

/// Asserts the client sends nothing more (its side of the mock is dropped).
pub async fn expect_no_more(mut handle: ApiHandle) {
    if let Some((req, _)) = handle.next_request().await {
        let seen = decode(req).await;
        panic!("unexpected request {} {}", seen.method, seen.path);
    }
}

/// Whether `seen` is the watch of one lease's pods a create opens beside its Job.
pub fn is_pod_watch(seen: &Seen) -> bool {
    seen.method == Method::GET
        && seen.path.ends_with("/pods")
        && seen.query.get("watch").map(String::as_str) == Some("true")
}

/// The next request other than a create's pod watch (left unanswered), checked like
/// [`expect`].
pub async fn expect_beside_watch(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
) -> (Seen, SendResponse<Response<Body>>) {
    loop {
        let (req, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("expected {method} {path}, but the client is gone"));
        let seen = decode(req).await;
        if is_pod_watch(&seen) {
            continue;
        }
        assert_eq!(seen.method, method, "method of {}", seen.path);
        assert_eq!(seen.path, path, "path");
        return (seen, send);
    }
}

/// Asserts the client sends nothing more than a create's pod watch.
pub async fn expect_no_more_than_watch(mut handle: ApiHandle) {
    while let Some((req, _)) = handle.next_request().await {
        let seen = decode(req).await;
        assert!(
            is_pod_watch(&seen),
            "unexpected request {} {}",
            seen.method,
            seen.path
        );
    }
}

pub use paygress_k8s::fake::*;

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

/// The resources a lease is made of.
pub const ALL: [&str; 4] = ["jobs", "pods", "secrets", "services"];

/// Asserts no lease object is left.
pub fn assert_empty(fake: &Fake) {
    for resource in ALL {
        assert!(
            fake.names(resource).is_empty(),
            "{resource} left: {:?}",
            fake.names(resource)
        );
    }
}

/// Waits until the lease's pod exists; panics (with the task's outcome) if the task
/// creating it ended first.
pub async fn wait_for_pod<T: std::fmt::Debug>(fake: &Fake, task: &tokio::task::JoinHandle<T>) {
    while fake.names("pods").is_empty() {
        assert!(
            !task.is_finished(),
            "the create ended before its pod existed"
        );
        tokio::task::yield_now().await;
    }
}

/// The name of the lease's pod, if it has one.
pub fn pod_of(fake: &Fake, lease: &str) -> Option<String> {
    fake.names("pods")
        .into_iter()
        .find(|p| p.starts_with(lease))
}
