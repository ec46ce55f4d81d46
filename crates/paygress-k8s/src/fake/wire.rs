//! The fake server's wire side: requests as it sees them, `metav1.Status` bodies, and
//! the two ways to reach it (an in-process tower service, a 127.0.0.1 port).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{Fake, FakeBody, NS};

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

/// Reads a request's method, path, query, content type and JSON body.
///
/// # Panics
/// When the body cannot be read or is not JSON, or the query is not percent-encoded
/// UTF-8: the clients this fake serves never send such requests.
pub async fn decode<B>(req: Request<B>) -> Seen
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.expect("request body").to_bytes();
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

impl Fake {
    /// Serves one request: counts it, waits the configured latency, then answers.
    pub(super) async fn answer<B>(&self, req: Request<B>) -> Response<FakeBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let seen = decode(req).await;
        let ((code, body), delay) = self.with(|st| (st.serve(seen), st.reply_delay));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Response::builder()
            .status(StatusCode::from_u16(code).expect("status"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .expect("response")
    }

    /// A kube client whose requests this fake answers in-process (no socket).
    pub(super) fn tower_client(&self) -> kube::Client {
        let fake = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move { Ok::<_, std::convert::Infallible>(fake.answer(req).await) }
        });
        kube::Client::new(service, NS)
    }
}

/// A fake API server listening on a 127.0.0.1 port; stops when dropped.
pub struct Served {
    addr: SocketAddr,
    fake: Fake,
    connections: Arc<AtomicU64>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Served {
    /// Serves `fake` on a free 127.0.0.1 port, running `background` (its clock) beside.
    ///
    /// # Errors
    /// When no port can be bound.
    pub(super) async fn start(
        fake: Fake,
        background: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().fallback({
            let fake = fake.clone();
            move |req: axum::extract::Request| {
                let fake = fake.clone();
                async move { fake.answer(req).await.map(axum::body::Body::new) }
            }
        });
        // TCP_NODELAY, as the real API server (Go) sets it: without it, a watch event
        // written after the response's head waits for the client's delayed ACK (40 ms).
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = connections.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
            let _ = tcp.set_nodelay(true);
            accepted.fetch_add(1, Ordering::Relaxed);
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let tasks = [server, tokio::spawn(background)];
        Ok(Self {
            addr,
            fake,
            connections,
            tasks,
        })
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The fake cluster behind the port.
    pub fn fake(&self) -> &Fake {
        &self.fake
    }

    /// The server's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for it, over TCP, with [`NS`] as its default namespace: the one
    /// the service builds ([`crate::client`]).
    ///
    /// # Errors
    /// When kube cannot build a client for the URL.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        crate::client(self.config())
    }

    /// A kube configuration for it, with [`NS`] as its default namespace.
    pub fn config(&self) -> kube::Config {
        let url = self.url().parse().expect("a 127.0.0.1 URL is a valid URI");
        let mut config = kube::Config::new(url);
        config.default_namespace = NS.to_owned();
        config
    }

    /// A kubeconfig document pointing at it (for a separate process).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NS}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// API calls answered so far (watches included).
    pub fn calls(&self) -> u64 {
        self.fake.calls()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
