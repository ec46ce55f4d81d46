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

// ------------------------------------------------------------------ fake API server

/// The body of the fake server's answers: a whole JSON document, or a stream of watch
/// events (one JSON object per line) that stays open.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: Vec<u8>) -> FakeBody {
    Full::new(Bytes::from(bytes)).boxed_unsync()
}

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

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone)]
pub struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// The rights of the service account: the Role (in [`NS`]) and ClusterRole rules bound
/// to it in `deploy/k8s/10-rbac.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Rbac {
    namespaced: Vec<Rule>,
    cluster: Vec<Rule>,
}

impl Rbac {
    /// Reads the Role and ClusterRole bound to `paygress-sidecar` from the manifest.
    pub fn from_manifest() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/k8s/10-rbac.yaml");
        let text = std::fs::read_to_string(path).expect("deploy/k8s/10-rbac.yaml");
        let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
            .collect();
        let bound = |kind: &str, name: &str| {
            docs.iter().any(|d| {
                (d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
                    && d["roleRef"]["kind"] == kind
                    && d["roleRef"]["name"] == name
                    && d["subjects"].as_array().is_some_and(|subjects| {
                        subjects.iter().any(|s| {
                            s["kind"] == "ServiceAccount" && s["name"] == "paygress-sidecar"
                        })
                    })
            })
        };
        let rules = |doc: &Value| -> Vec<Rule> {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s.as_str().expect("string").to_owned())
                    .collect()
            };
            doc["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| Rule {
                    groups: strings(&r["apiGroups"]),
                    resources: strings(&r["resources"]),
                    verbs: strings(&r["verbs"]),
                })
                .collect()
        };
        let mut rbac = Rbac::default();
        for doc in &docs {
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            match doc["kind"].as_str() {
                Some("Role") if doc["metadata"]["namespace"] == NS && bound("Role", name) => {
                    rbac.namespaced.extend(rules(doc));
                }
                Some("ClusterRole") if bound("ClusterRole", name) => {
                    rbac.cluster.extend(rules(doc));
                }
                _ => {}
            }
        }
        rbac
    }

    fn allows(&self, namespaced: bool, group: &str, resource: &str, verb: &str) -> bool {
        let matches = |r: &Rule| {
            r.groups.iter().any(|g| g == group || g == "*")
                && r.resources.iter().any(|x| x == resource || x == "*")
                && r.verbs.iter().any(|v| v == verb || v == "*")
        };
        self.cluster.iter().any(matches) || (namespaced && self.namespaced.iter().any(matches))
    }
}

/// A watch the client holds open.
struct Watch {
    resource: String,
    labels: String,
    name: Option<String>,
    tx: futures::channel::mpsc::UnboundedSender<Bytes>,
}

/// What the fake server holds.
pub struct FakeState {
    /// Objects by (resource, name): resource is `jobs`, `pods`, `services`, `secrets`,
    /// `nodes` (cluster-scoped).
    pub objects: BTreeMap<(String, String), Value>,
    /// Every request served, in order.
    pub log: Vec<Seen>,
    /// Pending faults.
    pub faults: Vec<Fault>,
    /// The cluster's clock (shared with the service in tests).
    pub clock: ManualClock,
    /// Seconds from a pod's creation to its readiness; `None`: never ready.
    pub ready_after: Option<i64>,
    /// The address the cloud gives LoadBalancer Services; `None`: never provisioned.
    pub load_balancer_ip: Option<String>,
    /// The service account's rights; `None`: everything allowed.
    pub rbac: Option<Rbac>,
    /// Requests the RBAC refused, as `verb group/resource`.
    pub forbidden: Vec<String>,
    watches: Vec<Watch>,
    history: Vec<(u64, String, Value)>,
    next_uid: u64,
    next_node_port: u16,
    next_rv: u64,
}

/// Handle on a running fake API server.
#[derive(Clone)]
pub struct Fake {
    /// Its state.
    pub state: Arc<Mutex<FakeState>>,
}

const TIME: &str = "%Y-%m-%dT%H:%M:%SZ";

fn time(t: Timestamp) -> String {
    t.strftime(TIME).to_string()
}

fn parse_time(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

/// The start of the fake cluster's clock.
pub fn epoch() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("timestamp")
}

impl Fake {
    /// Starts a fake API server for namespace [`NS`] (clock at [`epoch`], pods ready as
    /// soon as they exist, one node with an InternalIP, no RBAC) and returns a client.
    pub fn start() -> (Client, Fake) {
        Self::start_with(ManualClock::new(epoch()))
    }

    /// Like [`Fake::start`] with the cluster's clock `clock`.
    pub fn start_with(clock: ManualClock) -> (Client, Fake) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<FakeBody>>();
        let client = Client::new(service, NS);
        let state = Arc::new(Mutex::new(FakeState {
            objects: BTreeMap::new(),
            log: Vec::new(),
            faults: Vec::new(),
            clock,
            ready_after: Some(0),
            load_balancer_ip: None,
            rbac: None,
            forbidden: Vec::new(),
            watches: Vec::new(),
            history: Vec::new(),
            next_uid: 0,
            next_node_port: 30_000,
            next_rv: 100,
        }));
        let fake = Fake {
            state: state.clone(),
        };
        fake.add_node("kind-worker", &[("InternalIP", "172.18.0.3")]);
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let seen = decode(req).await;
                let (code, body) = state.lock().expect("lock").serve(seen);
                let response = Response::builder()
                    .status(StatusCode::from_u16(code).expect("status"))
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .expect("response");
                send.send_response(response);
            }
        });
        (client, fake)
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().expect("lock"))
    }

    /// Enforces the Role and ClusterRole of `deploy/k8s/10-rbac.yaml`.
    pub fn enforce_rbac(&self) {
        self.with(|st| st.rbac = Some(Rbac::from_manifest()));
    }

    /// Requests refused by the RBAC so far.
    pub fn forbidden(&self) -> Vec<String> {
        self.with(|st| st.forbidden.clone())
    }

    /// Pods become ready `seconds` after they are created (`None`: never).
    pub fn ready_after(&self, seconds: Option<i64>) {
        self.with(|st| st.ready_after = seconds);
    }

    /// LoadBalancer Services get `ip` (`None`: never).
    pub fn load_balancer_ip(&self, ip: Option<&str>) {
        self.with(|st| {
            st.load_balancer_ip = ip.map(str::to_owned);
            st.reconcile();
        });
    }

    /// Adds (or replaces) node `name` with `addresses` (type, address).
    pub fn add_node(&self, name: &str, addresses: &[(&str, &str)]) {
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|(t, a)| json!({ "type": t, "address": a }))
            .collect();
        self.with(|st| {
            let node = json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": { "name": name, "uid": format!("node-{name}") },
                "status": { "addresses": addresses },
            });
            st.put("nodes", node);
        });
    }

    /// Removes every node.
    pub fn remove_nodes(&self) {
        self.with(|st| {
            for name in st.names("nodes") {
                st.remove("nodes", &name);
            }
        });
    }

    /// The cluster's clock.
    pub fn clock(&self) -> ManualClock {
        self.with(|st| st.clock.clone())
    }

    /// Moves the cluster's clock `seconds` on, one second at a time, running the
    /// controllers at every step.
    pub fn advance(&self, seconds: i64) {
        for _ in 0..seconds {
            self.with(|st| {
                st.clock.advance(1);
                st.reconcile();
            });
        }
    }

    /// Evicts the lease's running pod as a node drain does: `DisruptionTarget`, then
    /// the pod fails.
    pub fn evict(&self, pod: &str) {
        self.with(|st| {
            let key = ("pods".to_owned(), pod.to_owned());
            let mut p = st.objects.get(&key).cloned().expect("pod");
            let now = time(st.clock.now());
            p["status"]["phase"] = json!("Failed");
            p["status"]["reason"] = json!("Evicted");
            p["status"]["conditions"] = json!([
                { "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "lastTransitionTime": now },
                { "type": "Ready", "status": "False", "lastTransitionTime": now },
            ]);
            st.put("pods", p);
            st.reconcile();
        });
    }

    /// Makes the pod fail on its own (the tenant's process or the image died).
    pub fn crash(&self, pod: &str) {
        self.with(|st| {
            let key = ("pods".to_owned(), pod.to_owned());
            let mut p = st.objects.get(&key).cloned().expect("pod");
            p["status"]["phase"] = json!("Failed");
            p["status"]["conditions"] = json!([{ "type": "Ready", "status": "False" }]);
            st.put("pods", p);
            st.reconcile();
        });
    }

    /// Injects a fault.
    pub fn fail(&self, method: Method, suffix: &str, code: u16, reason: &str) {
        self.with(|st| {
            st.faults.push(Fault {
                method,
                suffix: suffix.to_owned(),
                code,
                reason: reason.to_owned(),
            });
        });
    }

    /// The stored object, if any.
    pub fn object(&self, resource: &str, name: &str) -> Option<Value> {
        self.with(|st| {
            st.objects
                .get(&(resource.to_owned(), name.to_owned()))
                .cloned()
        })
    }

    /// Names of stored objects of `resource`.
    pub fn names(&self, resource: &str) -> Vec<String> {
        self.with(|st| st.names(resource))
    }

    /// The request log.
    pub fn log(&self) -> Vec<Seen> {
        self.with(|st| st.log.clone())
    }

    /// Stores an object as if another client had created it.
    pub fn insert(&self, resource: &str, object: Value) {
        self.with(|st| {
            st.put(resource, object);
        });
    }

    /// Deletes an object as `kubectl delete` (or any client) would, with `policy`
    /// (`Orphan`, `Background`), and runs the controllers.
    pub fn delete(&self, resource: &str, name: &str, policy: &str) {
        self.with(|st| {
            st.delete(resource, name, &json!({ "propagationPolicy": policy }));
            st.reconcile();
        });
    }
}

fn kind_of(resource: &str) -> &'static str {
    match resource {
        "jobs" => "Job",
        "pods" => "Pod",
        "services" => "Service",
        "secrets" => "Secret",
        "nodes" => "Node",
        _ => "Unknown",
    }
}

fn group_of(resource: &str) -> &'static str {
    if resource == "jobs" { "batch" } else { "" }
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

fn condition_true(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

fn invalid(kind: &str, name: &str, message: &str) -> (u16, Value) {
    (
        422,
        status_failure(
            422,
            "Invalid",
            &format!("{kind} \"{name}\" is invalid: {message}"),
            kind,
            name,
        ),
    )
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The Pod template rules the API server applies to what this crate sends.
fn validate_pod_spec(spec: &Value, field: &str) -> Option<String> {
    let containers = spec["containers"].as_array()?;
    if containers.is_empty() {
        return Some(format!("{field}.containers: Required value"));
    }
    for (i, c) in containers.iter().enumerate() {
        for (j, e) in c["env"].as_array().into_iter().flatten().enumerate() {
            let name = e["name"].as_str().unwrap_or_default();
            if !valid_env_name(name) {
                return Some(format!(
                    "{field}.containers[{i}].env[{j}].name: Invalid value: {name:?}"
                ));
            }
            if e.get("value").is_some() && e.get("valueFrom").is_some() {
                return Some(format!(
                    "{field}.containers[{i}].env[{j}].valueFrom: Invalid value: may not be specified when `value` is not empty"
                ));
            }
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            let port = p["containerPort"].as_i64().unwrap_or(0);
            if !(1..=65_535).contains(&port) {
                return Some(format!(
                    "{field}.containers[{i}].ports.containerPort: Invalid value: {port}"
                ));
            }
        }
        let requests = &c["resources"]["requests"];
        let limits = &c["resources"]["limits"];
        if let Some(reqs) = requests.as_object() {
            for (k, v) in reqs {
                if let Some(l) = limits.get(k)
                    && l != v
                    && !k.starts_with("cpu")
                {
                    return Some(format!(
                        "{field}.containers[{i}].resources.requests: Invalid value: {v}: must be less than or equal to {k} limit"
                    ));
                }
            }
        }
    }
    None
}

impl FakeState {
    fn names(&self, resource: &str) -> Vec<String> {
        self.objects
            .keys()
            .filter(|(r, _)| r == resource)
            .map(|(_, n)| n.clone())
            .collect()
    }

    fn bump(&mut self) -> String {
        self.next_rv += 1;
        self.next_rv.to_string()
    }

    /// Stores `object` with a new resourceVersion and tells the watches.
    fn put(&mut self, resource: &str, mut object: Value) -> Value {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let rv = self.bump();
        object["metadata"]["resourceVersion"] = json!(rv);
        let key = (resource.to_owned(), name);
        let kind = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key, object.clone());
        self.notify(resource, kind, &object);
        object
    }

    /// Removes an object and tells the watches.
    fn remove(&mut self, resource: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .remove(&(resource.to_owned(), name.to_owned()))?;
        object["metadata"]["resourceVersion"] = json!(self.bump());
        self.notify(resource, "DELETED", &object);
        Some(object)
    }

    fn notify(&mut self, resource: &str, kind: &str, object: &Value) {
        let event = json!({ "type": kind, "object": object });
        self.history
            .push((self.next_rv, resource.to_owned(), event.clone()));
        let mut line = serde_json::to_vec(&event).expect("json");
        line.push(b'\n');
        let line = Bytes::from(line);
        self.watches.retain(|w| {
            if w.resource == resource
                && matches_selector(object, &w.labels)
                && w.name
                    .as_deref()
                    .is_none_or(|n| object["metadata"]["name"] == n)
            {
                w.tx.unbounded_send(line.clone()).is_ok()
            } else {
                !w.tx.is_closed()
            }
        });
    }

    /// Maps a request to its RBAC attributes: (namespaced, group, resource, verb).
    fn authorize(&mut self, seen: &Seen, resource: &str, name: Option<&str>) -> bool {
        let Some(rbac) = &self.rbac else {
            return true;
        };
        let verb = match (&seen.method, name) {
            (&Method::GET, Some(_)) => "get",
            (&Method::GET, None) if seen.query.contains_key("watch") => "watch",
            (&Method::GET, None) => "list",
            (&Method::POST, _) => "create",
            (&Method::PATCH, _) => "patch",
            (&Method::PUT, _) => "update",
            (&Method::DELETE, Some(_)) => "delete",
            (&Method::DELETE, None) => "deletecollection",
            _ => "unknown",
        };
        let group = group_of(resource);
        let namespaced = resource != "nodes";
        if rbac.allows(namespaced, group, resource, verb) {
            true
        } else {
            self.forbidden.push(format!("{verb} {group}/{resource}"));
            false
        }
    }

    fn serve(&mut self, seen: Seen) -> (u16, FakeBody) {
        self.log.push(seen.clone());
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.method == seen.method && seen.path.ends_with(&f.suffix))
        {
            let f = self.faults.remove(i);
            let body = status_failure(f.code, &f.reason, "injected fault", "", "");
            return (f.code, full(serde_json::to_vec(&body).expect("json")));
        }
        let prefix_batch = format!("/apis/batch/v1/namespaces/{NS}/");
        let prefix_core = format!("/api/v1/namespaces/{NS}/");
        let rest = seen
            .path
            .strip_prefix(&prefix_batch)
            .or_else(|| seen.path.strip_prefix(&prefix_core))
            .or_else(|| seen.path.strip_prefix("/api/v1/"))
            .unwrap_or_else(|| panic!("unexpected path {}", seen.path));
        let (resource, name) = match rest.split_once('/') {
            Some((r, n)) => (r.to_owned(), Some(n.to_owned())),
            None => (rest.to_owned(), None),
        };
        if !self.authorize(&seen, &resource, name.as_deref()) {
            let message = format!(
                "{resource} is forbidden: User \"system:serviceaccount:ingress-system:paygress-sidecar\" cannot {} resource \"{resource}\" in API group \"{}\"",
                seen.method,
                group_of(&resource)
            );
            let body = status_failure(403, "Forbidden", &message, &resource, "");
            return (403, full(serde_json::to_vec(&body).expect("json")));
        }
        if seen.method == Method::GET && name.is_none() && seen.query.contains_key("watch") {
            return (200, self.watch(&resource, &seen));
        }
        let (code, body) = match (seen.method.clone(), name) {
            (Method::POST, None) => self.create(&resource, seen.body),
            (Method::GET, None) => self.list(&resource, &seen),
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
        };
        if code < 300 && seen.method != Method::GET {
            self.reconcile();
        }
        (code, full(serde_json::to_vec(&body).expect("json")))
    }

    fn field_name(seen: &Seen) -> Option<String> {
        seen.query.get("fieldSelector").map(|f| {
            f.strip_prefix("metadata.name=")
                .unwrap_or_else(|| panic!("unsupported field selector {f}"))
                .to_owned()
        })
    }

    fn list(&self, resource: &str, seen: &Seen) -> (u16, Value) {
        let selector = seen.query.get("labelSelector").cloned().unwrap_or_default();
        let name = Self::field_name(seen);
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((r, n), o)| {
                *r == resource
                    && matches_selector(o, &selector)
                    && name.as_ref().is_none_or(|want| want == n)
            })
            .map(|(_, o)| o.clone())
            .collect();
        (
            200,
            json!({
                "kind": format!("{}List", kind_of(resource)),
                "apiVersion": if resource == "jobs" { "batch/v1" } else { "v1" },
                "metadata": { "resourceVersion": self.next_rv.to_string() },
                "items": items,
            }),
        )
    }

    /// A watch from `resourceVersion`: the events since then, then live ones.
    fn watch(&mut self, resource: &str, seen: &Seen) -> FakeBody {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
        let labels = seen.query.get("labelSelector").cloned().unwrap_or_default();
        let name = Self::field_name(seen);
        let since: u64 = seen
            .query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        for (rv, r, event) in &self.history {
            if *rv > since
                && r == resource
                && matches_selector(&event["object"], &labels)
                && name
                    .as_deref()
                    .is_none_or(|n| event["object"]["metadata"]["name"] == n)
            {
                let mut line = serde_json::to_vec(event).expect("json");
                line.push(b'\n');
                tx.unbounded_send(Bytes::from(line)).expect("open");
            }
        }
        self.watches.push(Watch {
            resource: resource.to_owned(),
            labels,
            name,
            tx,
        });
        StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b)))).boxed_unsync()
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

    fn validate(&self, resource: &str, name: &str, object: &Value) -> Option<(u16, Value)> {
        let kind = kind_of(resource);
        let msg = match resource {
            "jobs" => {
                let spec = &object["spec"];
                if spec["activeDeadlineSeconds"].as_i64().unwrap_or(1) <= 0 {
                    Some("spec.activeDeadlineSeconds: must be greater than 0".to_owned())
                } else if spec["backoffLimit"].as_i64().unwrap_or(0) < 0 {
                    Some("spec.backoffLimit: must be greater than or equal to 0".to_owned())
                } else if spec.get("podFailurePolicy").is_some()
                    && spec["template"]["spec"]["restartPolicy"] != "Never"
                {
                    Some(
                        "spec.podFailurePolicy: Invalid value: only \"Never\" is supported when podFailurePolicy is specified"
                            .to_owned(),
                    )
                } else {
                    validate_pod_spec(&spec["template"]["spec"], "spec.template.spec")
                }
            }
            "services" => {
                let t = object["spec"]["type"].as_str().unwrap_or("ClusterIP");
                if !["ClusterIP", "NodePort", "LoadBalancer"].contains(&t) {
                    Some(format!("spec.type: Unsupported value: {t:?}"))
                } else {
                    object["spec"]["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| !(1..=65_535).contains(&p["port"].as_i64().unwrap_or(0)))
                        .map(|p| format!("spec.ports.port: Invalid value: {}", p["port"]))
                }
            }
            "secrets" => object["stringData"]
                .as_object()
                .into_iter()
                .flatten()
                .find(|(k, _)| !valid_env_name(k))
                .map(|(k, _)| format!("data[{k}]: Invalid value: {k:?}")),
            _ => None,
        }?;
        Some(invalid(kind, name, &msg))
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
        if let Some(err) = self.validate(resource, &name, &object) {
            return err;
        }
        self.next_uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012}", self.next_uid);
        let now = self.clock.now();
        let meta = object["metadata"].as_object_mut().expect("metadata");
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(time(now)));
        if resource == "services" {
            let port = self.next_node_port;
            self.next_node_port += 1;
            object["spec"]["clusterIP"] = json!("10.96.0.10");
            object["spec"]["ports"][0]["nodePort"] = json!(port);
        }
        if resource == "jobs" {
            let selector = json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } });
            object["spec"]["selector"] = selector;
            object["status"] = json!({});
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
        (201, self.put(resource, object))
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
                return invalid(
                    "Pod",
                    name,
                    &format!(
                        "spec.activeDeadlineSeconds: Invalid value: {}: must be less than or equal to previous value",
                        new.unwrap_or(0)
                    ),
                );
            }
        }
        if resource == "jobs" && next["spec"]["template"] != current["spec"]["template"] {
            return invalid(
                "Job",
                name,
                "spec.template: Invalid value: field is immutable",
            );
        }
        if let Some(err) = self.validate(resource, name, &next) {
            return err;
        }
        (200, self.put(resource, next))
    }

    fn delete(&mut self, resource: &str, name: &str, body: &Value) -> (u16, Value) {
        let Some(object) = self.remove(resource, name) else {
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
        if policy == "Orphan" {
            // The garbage collector removes the ownerReferences to the deleted owner.
            let owned: Vec<(String, String)> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (r, n) in owned {
                let mut o = self.objects[&(r.clone(), n)].clone();
                let refs: Vec<Value> = o["metadata"]["ownerReferences"]
                    .as_array()
                    .expect("refs")
                    .iter()
                    .filter(|x| x["uid"] != uid.as_str())
                    .cloned()
                    .collect();
                o["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("ownerReferences");
                if !refs.is_empty() {
                    o["metadata"]["ownerReferences"] = json!(refs);
                }
                self.put(&r, o);
            }
        } else {
            self.collect_garbage();
        }
        (200, status_success(kind_of(resource), name, &uid))
    }

    /// The garbage collector: removes every object whose owners no longer exist.
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
            for (r, n) in orphaned {
                self.remove(&r, &n);
            }
        }
    }

    fn pods_of(&self, job_uid: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, _), o)| {
                r == "pods"
                    && o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| refs.iter().any(|x| x["uid"] == job_uid))
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The controllers, run after every write and every clock tick: the Job controller
    /// (pods, startTime, deadlines, pod failure policy, conditions, TTL), the kubelet
    /// (readiness after `ready_after`) and the cloud (LoadBalancer addresses).
    pub fn reconcile(&mut self) {
        let now = self.clock.now();
        let jobs: Vec<Value> = self
            .objects
            .iter()
            .filter(|((r, _), _)| r == "jobs")
            .map(|(_, o)| o.clone())
            .collect();
        for job in jobs {
            self.sync_job(job, now);
        }
        self.kubelet(now);
        if let Some(ip) = self.load_balancer_ip.clone() {
            let pending: Vec<Value> = self
                .objects
                .iter()
                .filter(|((r, _), o)| {
                    r == "services"
                        && o["spec"]["type"] == "LoadBalancer"
                        && o["status"]["loadBalancer"]["ingress"].is_null()
                })
                .map(|(_, o)| o.clone())
                .collect();
            for mut svc in pending {
                svc["status"] = json!({ "loadBalancer": { "ingress": [{ "ip": ip }] } });
                self.put("services", svc);
            }
        }
    }

    fn sync_job(&mut self, mut job: Value, now: Timestamp) {
        let name = job["metadata"]["name"].as_str().expect("name").to_owned();
        let uid = job["metadata"]["uid"].as_str().expect("uid").to_owned();
        let pods = self.pods_of(&uid);
        let finished = condition_true(&job, "Failed") || condition_true(&job, "Complete");
        if finished {
            for p in pods {
                self.remove("pods", p["metadata"]["name"].as_str().expect("name"));
            }
            let ended = job["status"]["conditions"]
                .as_array()
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c["type"] == "Failed" || c["type"] == "Complete")
                })
                .and_then(|c| parse_time(&c["lastTransitionTime"]));
            let ttl = job["spec"]["ttlSecondsAfterFinished"].as_i64();
            if let (Some(ended), Some(ttl)) = (ended, ttl)
                && now >= ended + jiff::SignedDuration::from_secs(ttl)
            {
                self.remove("jobs", &name);
                self.collect_garbage();
            }
            return;
        }
        let before = job.clone();
        if job["spec"]["suspend"] == true {
            // Suspended: no pods, and the clock restarts on resume.
            for p in &pods {
                self.remove("pods", p["metadata"]["name"].as_str().expect("name"));
            }
            if let Some(status) = job["status"].as_object_mut() {
                status.remove("startTime");
                status.insert("active".into(), json!(0));
            }
        } else {
            if job["status"]["startTime"].is_null() {
                job["status"]["startTime"] = json!(time(now));
            }
            let start = parse_time(&job["status"]["startTime"]).expect("startTime");
            let deadline = job["spec"]["activeDeadlineSeconds"].as_i64();
            // The pod failure policy: a disrupted pod is ignored (replaced), any other
            // failure fails the Job (backoffLimit 0).
            let mut live = Vec::new();
            let mut failure = None;
            for p in pods {
                if p["status"]["phase"] == "Failed" {
                    let ignored = job["spec"]["podFailurePolicy"]["rules"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|rule| {
                            rule["action"] == "Ignore"
                                && rule["onPodConditions"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .any(|pc| condition_true(&p, pc["type"].as_str().unwrap_or("")))
                        });
                    self.remove("pods", p["metadata"]["name"].as_str().expect("name"));
                    if !ignored {
                        failure = Some(if job["spec"]["podFailurePolicy"].is_null() {
                            "BackoffLimitExceeded"
                        } else {
                            "PodFailed"
                        });
                    }
                } else {
                    live.push(p);
                }
            }
            let expired =
                deadline.is_some_and(|d| now >= start + jiff::SignedDuration::from_secs(d));
            if let Some(reason) = failure.or(expired.then_some("DeadlineExceeded")) {
                for p in live {
                    self.remove("pods", p["metadata"]["name"].as_str().expect("name"));
                }
                let t = time(now);
                job["status"]["active"] = json!(0);
                job["status"]["failed"] = json!(1);
                job["status"]["conditions"] = json!([
                    { "type": "FailureTarget", "status": "True", "reason": reason, "lastTransitionTime": t },
                    { "type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": t },
                ]);
            } else if live.is_empty() {
                self.next_uid += 1;
                let pod_name = format!("{name}-{:05}", self.next_uid);
                let pod = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod_name,
                        "namespace": NS,
                        "labels": job["spec"]["template"]["metadata"]["labels"],
                        "ownerReferences": [{
                            "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                            "controller": true, "blockOwnerDeletion": true,
                        }],
                        "uid": format!("pod-{}", self.next_uid),
                        "creationTimestamp": time(now),
                    },
                    "spec": job["spec"]["template"]["spec"],
                    "status": { "phase": "Pending" },
                });
                let mut pod = pod;
                pod["spec"]["nodeName"] = json!("kind-worker");
                self.put("pods", pod);
                job["status"]["active"] = json!(1);
            } else {
                job["status"]["active"] = json!(live.len());
            }
        }
        if job != before {
            self.put("jobs", job);
        }
    }

    fn kubelet(&mut self, now: Timestamp) {
        let Some(delay) = self.ready_after else {
            return;
        };
        let starting: Vec<Value> = self
            .objects
            .iter()
            .filter(|((r, _), o)| r == "pods" && o["status"]["phase"] == "Pending")
            .map(|(_, o)| o.clone())
            .collect();
        for mut pod in starting {
            let created = parse_time(&pod["metadata"]["creationTimestamp"]).expect("created");
            if now >= created + jiff::SignedDuration::from_secs(delay) {
                pod["status"] = json!({
                    "phase": "Running",
                    "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": time(now) }],
                });
                self.put("pods", pod);
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
