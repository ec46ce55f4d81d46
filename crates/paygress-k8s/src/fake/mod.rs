//! A small stateful fake Kubernetes API server: objects, watches, RBAC, validation, and
//! the Job controller, kubelet and garbage collector it needs to behave like a cluster
//! for what [`K8sBackend`](crate::K8sBackend) relies on. For tests ([`Fake::start`]: an
//! in-process client on a manual clock) and benchmarks ([`Fake::serve`]: a 127.0.0.1
//! port, real time, an optional latency per call).
//!
//! REST handling is in `api`, controllers in `controllers`, the API's rules in `rules`,
//! the wire in `wire`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use jiff::Timestamp;
use kube::Client;
use paygress_core::Clock;
use paygress_core::memory::ManualClock;
use serde_json::{Value, json};

mod api;
mod controllers;
mod rules;
mod store;
mod wire;

pub use rules::{Rbac, Rule};
use rules::{
    b64, condition_true, group_of, invalid, kind_of, matches_labels, matches_selector, merge,
    parse_time, time, valid_env_name, validate_pod_spec,
};
pub use wire::{Seen, Served, decode, status_failure, status_success};

/// The namespace the fake serves (namespaced paths elsewhere panic).
pub const NS: &str = "user-workloads";

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

/// A watch the client holds open.
struct Watch {
    resource: String,
    labels: String,
    name: Option<String>,
    tx: futures::channel::mpsc::UnboundedSender<Bytes>,
}

/// How many watch events the fake keeps for watches that resume from a
/// resourceVersion; an older one gets `410 Gone` (`Expired`) and lists again, as with
/// the real API server's watch cache. Events are kept as the bytes sent, not as objects:
/// thousands of leases written again and again stay a bounded amount of memory.
pub const HISTORY: usize = 1000;

/// One watch event as sent, with what a watch filters it by.
struct Event {
    rv: u64,
    resource: String,
    name: String,
    labels: Value,
    line: Bytes,
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
    /// The last [`HISTORY`] watch events, for watches resumed from a resourceVersion.
    history: std::collections::VecDeque<Event>,
    /// Resources whose watch requests are refused (answered 500), see
    /// [`Fake::refuse_watches`].
    refused_watches: BTreeSet<String>,
    /// How many requests [`log`](Self::log) keeps (the latest); `None`: all.
    log_limit: Option<usize>,
    /// Every request served, counted by method, resource and shape (see
    /// [`Fake::tally`]).
    tally: BTreeMap<String, u64>,
    /// Extra time between serving a request (its watch events sent) and its reply: see
    /// [`Fake::delay_replies`].
    reply_delay: Duration,
    /// Objects by uid.
    uids: HashMap<String, (String, String)>,
    /// Objects by the uid of each of their owners (the garbage collector's index).
    owned: HashMap<String, BTreeSet<(String, String)>>,
    /// Names of objects by (resource, `key=value` of one of their labels): a list or
    /// watch with a label selector reads the objects it names, never every object of
    /// the resource (see `FakeState::selected`).
    labeled: HashMap<(String, String), BTreeSet<String>>,
    next_uid: u64,
    next_node_port: u16,
    next_rv: u64,
    /// Jobs to sync at the next reconcile (written, or one of their pods written).
    dirty: BTreeSet<String>,
    /// Secrets a pending pod waits for (its environment reads them), by name: the Jobs
    /// whose pods the kubelet tries again once the Secret is written.
    waiting: HashMap<String, BTreeSet<String>>,
    /// When the controllers last ran over every object; `None`: never, or a setting
    /// changed since.
    synced_at: Option<Timestamp>,
}

/// How many requests a served fake ([`Fake::serve`]) keeps in its log.
pub const SERVED_LOG: usize = 1000;

/// Handle on a running fake API server.
#[derive(Clone)]
pub struct Fake {
    /// Its state.
    pub state: Arc<Mutex<FakeState>>,
    latency: Duration,
    calls: Arc<AtomicU64>,
}

/// The start of the fake cluster's clock.
pub fn epoch() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("timestamp")
}

impl Fake {
    /// Starts a fake API server for namespace [`NS`] (clock at [`epoch`], pods ready as
    /// soon as they exist, one node with an InternalIP, no RBAC) and returns a client
    /// that reaches it in-process.
    pub fn start() -> (Client, Fake) {
        Self::start_with(ManualClock::new(epoch()))
    }

    /// Like [`Fake::start`] with the cluster's clock `clock`.
    pub fn start_with(clock: ManualClock) -> (Client, Fake) {
        let fake = Self::new(clock, Duration::ZERO);
        (fake.tower_client(), fake)
    }

    /// Like [`Fake::start`], answering every API call after `latency` of tokio's clock:
    /// under a paused clock (`#[tokio::test(start_paused = true)]`), the time an
    /// operation takes is its number of round trips one after another, times `latency`.
    pub fn start_with_latency(latency: Duration) -> (Client, Fake) {
        let fake = Self::new(ManualClock::new(epoch()), latency);
        (fake.tower_client(), fake)
    }

    /// Serves a fake cluster on a free 127.0.0.1 port, answering every API call after
    /// `latency`. Its clock starts now and follows real time (one step a second, the
    /// controllers running at each), so pods are Ready as soon as they exist (see
    /// [`Fake::ready_after`]) and Jobs end at their deadlines. Stops when dropped.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn serve(latency: Duration) -> std::io::Result<Served> {
        let clock = ManualClock::new(Timestamp::now());
        let fake = Self::new(clock, latency);
        // A benchmark sends tens of thousands of requests: keep the latest only.
        fake.with(|st| st.log_limit = Some(SERVED_LOG));
        let ticker = fake.clone();
        let served = Served::start(fake, async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                ticker.advance(1);
            }
        })
        .await?;
        Ok(served)
    }

    fn new(clock: ManualClock, latency: Duration) -> Fake {
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
            history: std::collections::VecDeque::new(),
            refused_watches: BTreeSet::new(),
            log_limit: None,
            tally: BTreeMap::new(),
            reply_delay: Duration::ZERO,
            uids: HashMap::new(),
            owned: HashMap::new(),
            labeled: HashMap::new(),
            next_uid: 0,
            next_node_port: 30_000,
            next_rv: 100,
            dirty: BTreeSet::new(),
            waiting: HashMap::new(),
            synced_at: None,
        }));
        let fake = Fake {
            state,
            latency,
            calls: Arc::new(AtomicU64::new(0)),
        };
        fake.add_node("kind-worker", &[("InternalIP", "172.18.0.3")]);
        fake
    }

    /// API calls answered so far (watches included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
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

    /// Replies to requests served from now on leave `delay` (tokio's clock) after the
    /// request was served, while the watch events it caused go out at once: the watch
    /// reports a write before its writer hears back, as it can with a real API server.
    pub fn delay_replies(&self, delay: Duration) {
        self.with(|st| st.reply_delay = delay);
    }

    /// Pods become ready `seconds` after they are created (`None`: never).
    pub fn ready_after(&self, seconds: Option<i64>) {
        self.with(|st| {
            st.ready_after = seconds;
            st.synced_at = None;
        });
    }

    /// LoadBalancer Services get `ip` (`None`: never).
    pub fn load_balancer_ip(&self, ip: Option<&str>) {
        self.with(|st| {
            st.load_balancer_ip = ip.map(str::to_owned);
            st.synced_at = None;
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

    /// While `refuse` holds, every watch of `resource` (e.g. `jobs`) is answered `500`
    /// (an API server that cannot serve them); `true` also ends the watches of it open
    /// now, as a restarting API server does.
    pub fn refuse_watches(&self, resource: &str, refuse: bool) {
        self.with(|st| {
            if refuse {
                st.refused_watches.insert(resource.to_owned());
                st.watches.retain(|w| w.resource != resource);
            } else {
                st.refused_watches.remove(resource);
            }
        });
    }

    /// Watches open now.
    pub fn open_watches(&self) -> usize {
        self.with(|st| st.watches.iter().filter(|w| !w.tx.is_closed()).count())
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

    /// Every request served so far, counted by method, resource and shape:
    /// `GET jobs list`, `GET pods watch`, `GET jobs` (one by name), `PATCH secrets`.
    /// Unlike [`log`](Self::log), never trimmed: what a whole scenario cost the API.
    pub fn tally(&self) -> BTreeMap<String, u64> {
        self.with(|st| st.tally.clone())
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
