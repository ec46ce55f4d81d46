//! A small stateful fake API server: objects, watches, RBAC, validation, and the Job
//! controller, kubelet and garbage collector it needs to behave like a cluster for
//! what the backend relies on. REST handling is in `api`, controllers in `controllers`.

use super::*;

mod api;
mod controllers;

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
