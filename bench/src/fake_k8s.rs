//! A fake Kubernetes API server on 127.0.0.1: stores what is POSTed, lists, gets and
//! deletes it, and answers every call after a fixed latency (the issue's "API server that
//! answers every call after 25 ms").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Namespace the backend uses in the bench.
pub const NAMESPACE: &str = "user-workloads";

#[derive(Default)]
struct Store {
    /// collection path → name → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    next_uid: u64,
}

struct Fake {
    latency: Duration,
    store: Mutex<Store>,
    calls: AtomicU64,
}

/// A running fake API server.
pub struct FakeApi {
    addr: SocketAddr,
    state: Arc<Fake>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeApi {
    /// Starts the server answering after `latency`.
    pub async fn start(latency: Duration) -> Result<Self> {
        let state = Arc::new(Fake {
            latency,
            store: Mutex::default(),
            calls: AtomicU64::new(0),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for it.
    pub fn client(&self) -> Result<kube::Client> {
        let mut config = kube::Config::new(self.url().parse().context("url")?);
        config.default_namespace = NAMESPACE.to_owned();
        Ok(kube::Client::try_from(config)?)
    }

    /// A kubeconfig file pointing at it (for the real binary).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NAMESPACE}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Calls answered so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::Relaxed)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: StatusCode, reason: &str) -> Response {
    (
        code,
        axum::Json(json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {},
            "status": if code.is_success() { "Success" } else { "Failure" },
            "reason": reason, "code": code.as_u16(), "message": reason,
        })),
    )
        .into_response()
}

async fn handle(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    fake.calls.fetch_add(1, Ordering::Relaxed);
    if !fake.latency.is_zero() {
        tokio::time::sleep(fake.latency).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let body: Bytes = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let mut store = fake.store.lock().unwrap_or_else(|p| p.into_inner());
    // A collection ends in a plural resource name (jobs, secrets, services, pods).
    let is_collection = path.ends_with("/jobs")
        || path.ends_with("/secrets")
        || path.ends_with("/services")
        || path.ends_with("/pods");
    let (collection, name) = if is_collection {
        (path.clone(), None)
    } else {
        match path.rsplit_once('/') {
            Some((c, n)) => (c.to_owned(), Some(n.to_owned())),
            None => return status(StatusCode::NOT_FOUND, "NotFound"),
        }
    };
    match (method, name) {
        (Method::POST, None) => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest");
            };
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let items = store.objects.entry(collection).or_default();
            if items.contains_key(&name) {
                return status(StatusCode::CONFLICT, "AlreadyExists");
            }
            let uid = store_uid(&mut store.next_uid);
            obj["metadata"]["uid"] = json!(uid);
            obj["metadata"]["resourceVersion"] = json!("1");
            obj["metadata"]["creationTimestamp"] = json!(
                jiff::Timestamp::now()
                    .round(jiff::Unit::Second)
                    .unwrap_or_else(|_| jiff::Timestamp::now())
                    .to_string()
            );
            let items = store.objects.entry(path).or_default();
            items.insert(name, obj.clone());
            (StatusCode::CREATED, axum::Json(obj)).into_response()
        }
        (Method::GET, None) => {
            let items: Vec<Value> = store
                .objects
                .get(&collection)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            axum::Json(json!({
                "apiVersion": "v1", "kind": "List",
                "metadata": {"resourceVersion": "1"}, "items": items,
            }))
            .into_response()
        }
        (Method::GET, Some(name)) => {
            match store.objects.get(&collection).and_then(|m| m.get(&name)) {
                Some(obj) => axum::Json(obj.clone()).into_response(),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            }
        }
        (Method::DELETE, Some(name)) => {
            let removed = store
                .objects
                .get_mut(&collection)
                .and_then(|m| m.remove(&name));
            if collection.ends_with("/jobs") {
                // Owner references: the lease's Secret and Service go with its Job.
                for (c, items) in store.objects.iter_mut() {
                    if c.ends_with("/secrets") || c.ends_with("/services") {
                        items.retain(|n, _| !n.starts_with(&name));
                    }
                }
            }
            match removed {
                Some(_) => status(StatusCode::OK, "Deleted"),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            }
        }
        (Method::PATCH, Some(name)) => {
            let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match store
                .objects
                .get_mut(&collection)
                .and_then(|m| m.get_mut(&name))
            {
                Some(obj) => {
                    merge(obj, &patch);
                    axum::Json(obj.clone()).into_response()
                }
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            }
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
    }
}

fn store_uid(next: &mut u64) -> String {
    *next += 1;
    format!("00000000-0000-4000-8000-{:012x}", *next)
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}
