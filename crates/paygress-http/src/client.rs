//! A buyer's client for the HTTP API (feature `client`): sends core's [`Request`]s to the
//! paths in [`crate::paths`] and reads the answers through the same bodies the server
//! writes ([`crate::wire`]), returning core's [`Reply`].
//!
//! ```rust,ignore
//! let client = paygress_http::client::HttpClient::new("http://127.0.0.1:8080", timeout)?;
//! let reply = client.send(&Request::Status(StatusRequest { pod_name })).await?;
//! ```

use std::time::Duration;

use paygress_core::{AccessDetails, ErrorReply, ReleaseResult, Reply, Request, TopUpResult};
use serde::de::DeserializeOwned;

use crate::paths;
use crate::wire::{InvalidBody, PodInfo};

/// Attempts of one paid request (the first and the retries).
pub const ATTEMPTS: u32 = 3;

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    /// No answer (connection refused, timeout, answer cut).
    #[error("no answer from {base}: {source}")]
    NoAnswer {
        /// The service's base URL.
        base: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The answer's body is not what the API answers with this status.
    #[error("{base} answered {status} with an unexpected body: {reason}")]
    UnexpectedBody {
        /// The service's base URL.
        base: String,
        /// The answer's status.
        status: u16,
        /// What is wrong with it.
        reason: String,
    },
}

/// A client of one service's HTTP API.
#[derive(Debug, Clone)]
pub struct HttpClient {
    base: String,
    http: reqwest::Client,
}

impl HttpClient {
    /// A client of the service at `base` (e.g. `http://127.0.0.1:8080`), each attempt
    /// bounded by `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(ClientError::Build)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `request` and returns the service's reply (error replies included).
    ///
    /// A paid request carries a fresh random `Idempotency-Key`; when its answer is lost
    /// (no connection, timeout, or the service's own `503`) it is sent again with the
    /// same key, up to [`ATTEMPTS`] times: the service answers it once.
    pub async fn send(&self, request: &Request) -> Result<Reply, ClientError> {
        self.send_keyed(request, &idempotency_key(), None).await
    }

    /// [`send`](Self::send) with `key` as the `Idempotency-Key`, and for a release the
    /// lease's owner key in `X-Lease-Key`. The key of a spawn names its lease's owner:
    /// keep it to release the lease later.
    pub async fn send_keyed(
        &self,
        request: &Request,
        key: &str,
        lease_key: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let mut attempt = 1;
        let resp = loop {
            let sent = match request {
                Request::Spawn(r) => {
                    self.http
                        .post(self.url(paths::SPAWN_POD))
                        .header(crate::IDEMPOTENCY_KEY, key)
                        .json(r)
                        .send()
                        .await
                }
                Request::TopUp(r) => {
                    self.http
                        .post(self.url(paths::TOP_UP_POD))
                        .header(crate::IDEMPOTENCY_KEY, key)
                        .json(r)
                        .send()
                        .await
                }
                Request::Status(r) => {
                    self.http
                        .get(self.url(&paths::pod(&r.pod_name)))
                        .send()
                        .await
                }
                Request::Release(r) => {
                    let mut post = self
                        .http
                        .post(self.url(&paths::release(&r.pod_name)))
                        .header(crate::IDEMPOTENCY_KEY, key);
                    if let Some(owner) = lease_key {
                        post = post.header(crate::LEASE_KEY, owner);
                    }
                    post.send().await
                }
            };
            let retry = match &sent {
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
                Ok(r) => r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            };
            if !retry || attempt >= ATTEMPTS || matches!(request, Request::Status(_)) {
                break sent;
            }
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            attempt += 1;
        }
        .map_err(|source| ClientError::NoAnswer {
            base: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|source| ClientError::NoAnswer {
            base: self.base.clone(),
            source,
        })?;
        let unexpected = |reason: String| ClientError::UnexpectedBody {
            base: self.base.clone(),
            status: status.as_u16(),
            reason,
        };
        if !status.is_success() {
            let error: ErrorReply = decode(&body).map_err(unexpected)?;
            return Ok(Reply::Error(error));
        }
        let reply = match request {
            Request::Spawn(_) => decode::<AccessDetails>(&body).map(Reply::AccessDetails),
            Request::TopUp(_) => decode::<TopUpResult>(&body).map(Reply::TopUp),
            Request::Status(_) => decode::<PodInfo>(&body)
                .and_then(|b| b.try_into().map_err(|e: InvalidBody| e.to_string()))
                .map(Reply::Status),
            Request::Release(_) => decode::<ReleaseResult>(&body).map(Reply::Released),
        };
        reply.map_err(unexpected)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// A fresh random `Idempotency-Key` (64 hex digits from a CSPRNG seeded by the OS). The service only
/// repeats a paid request's answer (login details, change) to a request carrying the same
/// key, so it is kept for this request's own retries and never reused.
pub fn idempotency_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
