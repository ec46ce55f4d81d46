//! A service over real HTTP on 127.0.0.1 with a real in-process Cashu mint, the real
//! verifier and core's in-memory backend.

use std::sync::Arc;

use paygress_cashu::testkit::TestMint;
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::memory::MemoryBackend;
use paygress_core::{Paygress, ServiceConfig};
use paygress_http::{HttpApi, HttpConfig, WebConfig, WebUi};

/// The running service and what a test reaches it with.
pub struct Setup {
    pub mint: TestMint,
    pub backend: MemoryBackend,
    pub base: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Starts the service (with the buyer's web page when `web` is given).
pub async fn setup(web: Option<WebConfig>) -> Setup {
    let mint = TestMint::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = CashuConfig::new(dir.path().join("cashu.db"), [mint.url().as_str()]).unwrap();
    let verifier = Arc::new(CashuVerifier::open(&config).await.unwrap());
    let backend = MemoryBackend::new();
    let paygress = Arc::new(
        Paygress::builder(
            ServiceConfig::default(),
            verifier.clone(),
            Arc::new(backend.clone()),
        )
        .build(),
    );
    let mut api = HttpApi::new(paygress.clone(), verifier.clone(), HttpConfig::default());
    if let Some(config) = web {
        api = api.with_web(WebUi::new(paygress, verifier, config));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api.serve(listener, std::future::pending()));
    Setup {
        mint,
        backend,
        base,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}
