//! Test helpers: a kube `Client` over a `tower_test` mock, scripted request checks, and
//! a small stateful fake API server that enforces the API rules the backend relies on.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
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

// ------------------------------------------------------------------ fake API server

/// A fault to inject: the first request matching `method` and a path ending in `suffix`
/// is answered with `status`/`reason` instead of being served.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Method to match.
    pub method: Method,
    /// Path suffix to match (e.g. `/services`).
    pub suffix: String,
    /// Status code to answer.
    pub code: u16,
    /// Status reason.
    pub reason: String,
}

/// What the fake server holds.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Objects by (resource, name): resource is `jobs`, `pods`, `services`, `secrets`.
    pub objects: BTreeMap<(String, String), Value>,
    /// Every request served, in order.
    pub log: Vec<Seen>,
    /// Pending faults.
    pub faults: Vec<Fault>,
    next_uid: u64,
    next_node_port: u16,
    next_rv: u64,
}

/// Handle on a running fake API server.
#[derive(Debug, Clone)]
pub struct Fake {
    /// Its state.
    pub state: Arc<Mutex<FakeState>>,
}

impl Fake {
    /// Starts a fake API server for namespace [`NS`] and returns a client to it.
    pub fn start() -> (Client, Fake) {
        let (client, mut handle) = mock_client();
        let state = Arc::new(Mutex::new(FakeState {
            next_node_port: 30_000,
            ..FakeState::default()
        }));
        let fake = Fake {
            state: state.clone(),
        };
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let seen = decode(req).await;
                let (code, body) = state.lock().expect("lock").serve(seen);
                respond(send, code, &body);
            }
        });
        (client, fake)
    }

    /// Injects a fault.
    pub fn fail(&self, method: Method, suffix: &str, code: u16, reason: &str) {
        self.state.lock().expect("lock").faults.push(Fault {
            method,
            suffix: suffix.to_owned(),
            code,
            reason: reason.to_owned(),
        });
    }

    /// The stored object, if any.
    pub fn object(&self, resource: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .expect("lock")
            .objects
            .get(&(resource.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Names of stored objects of `resource`.
    pub fn names(&self, resource: &str) -> Vec<String> {
        self.state
            .lock()
            .expect("lock")
            .objects
            .keys()
            .filter(|(r, _)| r == resource)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The request log.
    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").log.clone()
    }

    /// Stores an object as if another client had created it.
    pub fn insert(&self, resource: &str, object: Value) {
        let mut st = self.state.lock().expect("lock");
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        st.objects.insert((resource.to_owned(), name), object);
    }
}

fn kind_of(resource: &str) -> &'static str {
    match resource {
        "jobs" => "Job",
        "pods" => "Pod",
        "services" => "Service",
        "secrets" => "Secret",
        _ => "Unknown",
    }
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().expect("object");
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').expect("equality selector");
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

impl FakeState {
    fn serve(&mut self, seen: Seen) -> (u16, Value) {
        self.log.push(seen.clone());
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.method == seen.method && seen.path.ends_with(&f.suffix))
        {
            let f = self.faults.remove(i);
            return (
                f.code,
                status_failure(f.code, &f.reason, "injected fault", "", ""),
            );
        }
        let prefix_batch = format!("/apis/batch/v1/namespaces/{NS}/");
        let prefix_core = format!("/api/v1/namespaces/{NS}/");
        let rest = seen
            .path
            .strip_prefix(&prefix_batch)
            .or_else(|| seen.path.strip_prefix(&prefix_core))
            .unwrap_or_else(|| panic!("unexpected path {}", seen.path));
        let (resource, name) = match rest.split_once('/') {
            Some((r, n)) => (r.to_owned(), Some(n.to_owned())),
            None => (rest.to_owned(), None),
        };
        match (seen.method.clone(), name) {
            (Method::POST, None) => self.create(&resource, seen.body),
            (Method::GET, None) => {
                let selector = seen.query.get("labelSelector").cloned().unwrap_or_default();
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|((r, _), o)| *r == resource && matches_selector(o, &selector))
                    .map(|(_, o)| o.clone())
                    .collect();
                (
                    200,
                    json!({
                        "kind": format!("{}List", kind_of(&resource)),
                        "apiVersion": if resource == "jobs" { "batch/v1" } else { "v1" },
                        "metadata": { "resourceVersion": self.next_rv.to_string() },
                        "items": items,
                    }),
                )
            }
            (Method::GET, Some(name)) => {
                match self.objects.get(&(resource.clone(), name.clone())) {
                    Some(o) => (200, o.clone()),
                    None => self.not_found(&resource, &name),
                }
            }
            (Method::PATCH, Some(name)) => {
                assert_eq!(
                    seen.content_type.as_deref(),
                    Some("application/merge-patch+json"),
                    "only merge patches are served"
                );
                self.patch(&resource, &name, &seen.body)
            }
            (Method::DELETE, Some(name)) => self.delete(&resource, &name, &seen.body),
            (m, n) => panic!("unexpected {m} {resource}/{n:?}"),
        }
    }

    fn not_found(&self, resource: &str, name: &str) -> (u16, Value) {
        let group = if resource == "jobs" { ".batch" } else { "" };
        (
            404,
            status_failure(
                404,
                "NotFound",
                &format!("{resource}{group} \"{name}\" not found"),
                resource,
                name,
            ),
        )
    }

    fn bump(&mut self) -> String {
        self.next_rv += 1;
        self.next_rv.to_string()
    }

    fn create(&mut self, resource: &str, mut object: Value) -> (u16, Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let key = (resource.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            let group = if resource == "jobs" { ".batch" } else { "" };
            return (
                409,
                status_failure(
                    409,
                    "AlreadyExists",
                    &format!("{resource}{group} \"{name}\" already exists"),
                    resource,
                    &name,
                ),
            );
        }
        if resource == "jobs"
            && object["spec"]["activeDeadlineSeconds"]
                .as_i64()
                .unwrap_or(1)
                <= 0
        {
            return (
                422,
                status_failure(
                    422,
                    "Invalid",
                    "spec.activeDeadlineSeconds: must be greater than 0",
                    "Job",
                    &name,
                ),
            );
        }
        self.next_uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012}", self.next_uid);
        let now = jiff::Timestamp::now();
        let rv = self.bump();
        let meta = object["metadata"].as_object_mut().expect("metadata");
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv));
        meta.insert(
            "creationTimestamp".into(),
            json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        if resource == "services" {
            let port = self.next_node_port;
            self.next_node_port += 1;
            object["spec"]["clusterIP"] = json!("10.96.0.10");
            object["spec"]["ports"][0]["nodePort"] = json!(port);
        }
        if resource == "secrets" {
            // The API stores stringData as base64 data and never returns stringData.
            if let Some(sd) = object.as_object_mut().expect("object").remove("stringData") {
                let data: serde_json::Map<String, Value> = sd
                    .as_object()
                    .expect("stringData")
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            json!(b64(v.as_str().expect("string").as_bytes())),
                        )
                    })
                    .collect();
                object["data"] = Value::Object(data);
            }
        }
        let response = object.clone();
        if resource == "jobs" {
            // The Job controller starts the Job: status.startTime, and one pod.
            object["status"] = json!({
                "startTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "active": 1,
            });
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": format!("{name}-abcde"),
                    "namespace": NS,
                    "labels": object["spec"]["template"]["metadata"]["labels"],
                    "ownerReferences": [{
                        "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                        "controller": true, "blockOwnerDeletion": true,
                    }],
                    "uid": format!("pod-{uid}"),
                },
                "spec": object["spec"]["template"]["spec"],
            });
            self.objects
                .insert(("pods".into(), format!("{name}-abcde")), pod);
        }
        self.objects.insert(key, object);
        (201, response)
    }

    fn patch(&mut self, resource: &str, name: &str, patch: &Value) -> (u16, Value) {
        let key = (resource.to_owned(), name.to_owned());
        let Some(current) = self.objects.get(&key).cloned() else {
            return self.not_found(resource, name);
        };
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            let group = if resource == "jobs" { ".batch" } else { "" };
            return (
                409,
                status_failure(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {resource}{group} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                    resource,
                    name,
                ),
            );
        }
        let mut next = current.clone();
        merge(&mut next, patch);
        if resource == "pods" {
            // The real API's rule: a Pod's activeDeadlineSeconds may only be lowered.
            let old = current["spec"]["activeDeadlineSeconds"].as_i64();
            let new = next["spec"]["activeDeadlineSeconds"].as_i64();
            let raised = match (old, new) {
                (Some(o), Some(n)) => n > o,
                (None, Some(_)) => false,
                (Some(_), None) => true,
                (None, None) => false,
            };
            if raised {
                return (
                    422,
                    status_failure(
                        422,
                        "Invalid",
                        &format!(
                            "Pod \"{name}\" is invalid: spec.activeDeadlineSeconds: Invalid value: {}: must be less than or equal to previous value",
                            new.unwrap_or(0)
                        ),
                        "Pod",
                        name,
                    ),
                );
            }
        }
        if resource == "jobs" && next["spec"]["activeDeadlineSeconds"].as_i64().unwrap_or(1) <= 0 {
            return (
                422,
                status_failure(
                    422,
                    "Invalid",
                    "spec.activeDeadlineSeconds: must be greater than 0",
                    "Job",
                    name,
                ),
            );
        }
        next["metadata"]["resourceVersion"] = json!(self.bump());
        self.objects.insert(key, next.clone());
        (200, next)
    }

    fn delete(&mut self, resource: &str, name: &str, body: &Value) -> (u16, Value) {
        let key = (resource.to_owned(), name.to_owned());
        let Some(object) = self.objects.remove(&key) else {
            return self.not_found(resource, name);
        };
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        // Jobs orphan their dependents unless asked otherwise (the API's legacy default).
        let policy = body["propagationPolicy"]
            .as_str()
            .unwrap_or(if resource == "jobs" {
                "Orphan"
            } else {
                "Background"
            });
        if policy != "Orphan" {
            self.collect_garbage();
        }
        (200, status_success(resource, name, &uid))
    }

    /// The garbage collector: removes every object whose owner uid no longer exists.
    pub fn collect_garbage(&mut self) {
        loop {
            let uids: std::collections::HashSet<String> = self
                .objects
                .values()
                .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
                .collect();
            let orphaned: Vec<(String, String)> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| {
                            !refs.is_empty()
                                && refs
                                    .iter()
                                    .all(|r| !uids.contains(r["uid"].as_str().unwrap_or("")))
                        })
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphaned.is_empty() {
                return;
            }
            for k in orphaned {
                self.objects.remove(&k);
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
