//! The HTTP API over real HTTP on 127.0.0.1, with core's in-memory backend and a
//! verifier over core's in-memory ledger.

#![allow(clippy::unwrap_used)]

mod auth;
#[path = "../common/mod.rs"]
mod common;
mod idempotency;
mod inputs;
mod leases;
mod limits;
mod nut24;
mod service;

use std::sync::Arc;

use common::{Harness, OTHER_MINT, Options, json, mint};
use paygress_core::memory::FailOn;
use paygress_core::{Amount, MintUrl, Unit};
use paygress_http::HttpConfig;
use paygress_http::wire::ComponentHealth;
use serde_json::json;

fn x_cashu(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("x-cashu")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Spawns a 30-minute lease paid with exactly 30 sat; returns its access details.
async fn spawn(h: &Harness) -> serde_json::Value {
    let token = h.token(30);
    let (status, body) = json(
        h.post_json("/spawn-pod", &json!({"cashu_token": token.expose(), "duration_minutes": 30, "ssh_username": "alice"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

const KEY: &str = "3f2b8c1e-7d4a-4e9b-a2c5-0b1d2e3f4a5b";

/// Whether a response body (as text) holds any of `secrets`.
fn leaks(body: &serde_json::Value, secrets: &[&str]) -> bool {
    let text = body.to_string();
    secrets.iter().any(|s| text.contains(s))
}

/// A backend whose `create` waits until the test opens the gate.
struct GatedBackend {
    inner: paygress_core::memory::MemoryBackend,
    gate: Arc<tokio::sync::Semaphore>,
}

impl GatedBackend {
    /// A gated backend with its gate closed; also the memory backend it wraps and the
    /// gate (add a permit to let one `create` through).
    fn closed() -> (
        Arc<Self>,
        paygress_core::memory::MemoryBackend,
        Arc<tokio::sync::Semaphore>,
    ) {
        let inner = paygress_core::memory::MemoryBackend::new();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let backend = Arc::new(Self {
            inner: inner.clone(),
            gate: gate.clone(),
        });
        (backend, inner, gate)
    }
}

#[async_trait::async_trait]
impl paygress_core::PodBackend for GatedBackend {
    fn name(&self) -> &'static str {
        "gated"
    }
    async fn create(
        &self,
        spec: &paygress_core::LeaseSpec,
    ) -> Result<paygress_core::Provisioned, paygress_core::BackendError> {
        let _permit = self.gate.acquire().await.unwrap();
        self.inner.create(spec).await
    }
    async fn extend(
        &self,
        id: &paygress_core::LeaseId,
        e: &paygress_core::Extension,
    ) -> Result<(), paygress_core::BackendError> {
        self.inner.extend(id, e).await
    }
    async fn delete(&self, id: &paygress_core::LeaseId) -> Result<(), paygress_core::BackendError> {
        self.inner.delete(id).await
    }
    async fn get(
        &self,
        id: &paygress_core::LeaseId,
    ) -> Result<Option<paygress_core::LeaseRecord>, paygress_core::BackendError> {
        self.inner.get(id).await
    }
    async fn list(&self) -> Result<Vec<paygress_core::LeaseRecord>, paygress_core::BackendError> {
        self.inner.list().await
    }
}
