//! A running HTTP API on 127.0.0.1 over core's in-memory ports.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use paygress_core::memory::{ManualClock, MemoryBackend, MemoryVerifier};
use paygress_core::{
    Amount, CashuToken, DynPodBackend, MintUrl, Paygress, PaymentError, PaymentVerifier,
    RedeemAttempt, Redeemed, ServiceConfig, TokenCheck, TokenInfo, Unit,
};
use paygress_http::{HttpApi, HttpConfig, TransportProbe};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod real_mint;

pub const MINT: &str = "http://mint.test";
pub const OTHER_MINT: &str = "http://other.test";

/// MemoryVerifier plus what it lacks: NUT-18 payment requests (a readable stand-in
/// encoding: `creqAtest:<value>:<unit>:<description>`) and a unit whitelist.
#[derive(Clone)]
pub struct TestVerifier {
    pub inner: MemoryVerifier,
    pub units: Vec<Unit>,
}

/// Test tokens travel as `cashuBtest<core token with ':' as '_'>`, so that they pass the
/// API's token format (`cashuA`/`cashuB` prefix, base64url characters).
const WRAP: &str = "cashuBtest";

pub fn wrap(token: &CashuToken) -> CashuToken {
    CashuToken::new(format!("{WRAP}{}", token.expose().replace(':', "_")))
}

fn unwrap_token(token: &CashuToken) -> CashuToken {
    match token.expose().strip_prefix(WRAP) {
        Some(rest) => CashuToken::new(rest.replace('_', ":")),
        None => token.clone(),
    }
}

impl TestVerifier {
    /// A fresh token worth `amount` at `mint`, in the API's format.
    pub fn mint_token(&self, mint: &MintUrl, amount: Amount) -> CashuToken {
        wrap(&self.inner.mint_token(mint, amount))
    }

    /// Whether `token` is still unspent.
    pub fn is_unspent(&self, token: &CashuToken) -> bool {
        self.inner.is_unspent(&unwrap_token(token))
    }

    /// Spends `token` as a wallet would; its value if it was unspent.
    pub fn spend(&self, token: &CashuToken) -> Option<Amount> {
        self.inner.spend(&unwrap_token(token))
    }

    fn check_unit(&self, info: &TokenInfo) -> Result<(), PaymentError> {
        if self.units.contains(&info.amount.unit) {
            Ok(())
        } else {
            Err(PaymentError::UnsupportedUnit(info.amount.unit.to_string()))
        }
    }
}

#[async_trait]
impl PaymentVerifier for TestVerifier {
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError> {
        let info = self.inner.inspect(&unwrap_token(token))?;
        self.check_unit(&info)?;
        Ok(info)
    }

    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError> {
        self.inspect(token)?;
        self.inner.prepare(&unwrap_token(token)).await
    }

    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError> {
        self.inner.redeem(&unwrap_token(token), attempt).await
    }

    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError> {
        self.inner.resolve(&unwrap_token(token), attempt).await
    }

    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError> {
        self.inspect(token)?;
        self.inner.check(&unwrap_token(token)).await
    }

    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError> {
        self.inner.issue(mint, amount).await.map(|t| wrap(&t))
    }

    fn accepted_mints(&self) -> Vec<MintUrl> {
        self.inner.accepted_mints()
    }

    fn payment_request(&self, amount: Amount, description: &str) -> Result<String, PaymentError> {
        Ok(format!(
            "creqAtest:{}:{}:{description}",
            amount.value, amount.unit
        ))
    }

    fn accepted_units(&self) -> Vec<Unit> {
        self.units.clone()
    }
}

/// How to start a [`Harness`].
#[derive(Default)]
pub struct Options {
    pub config: HttpConfig,
    pub probe: Option<TransportProbe>,
    pub backend: Option<DynPodBackend>,
    pub service: ServiceConfig,
}

pub struct Harness {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub verifier: TestVerifier,
    pub backend: MemoryBackend,
    pub clock: ManualClock,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), paygress_http::HttpError>>>,
}

pub fn mint() -> MintUrl {
    MintUrl::new(MINT)
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let Options {
            config,
            probe,
            backend: backend_override,
            service,
        } = options;
        let verifier = TestVerifier {
            inner: MemoryVerifier::new(vec![mint()]),
            units: vec![Unit::Sat],
        };
        let backend = MemoryBackend::new();
        let clock = ManualClock::new(jiff::Timestamp::now());
        let paygress = Arc::new(
            Paygress::builder(
                service,
                Arc::new(verifier.clone()),
                backend_override.unwrap_or_else(|| Arc::new(backend.clone())),
            )
            .clock(Arc::new(clock.clone()))
            .build(),
        );
        let mut api = HttpApi::new(paygress, Arc::new(verifier.clone()), config);
        if let Some(probe) = probe {
            api = api.with_transport_probe(probe);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(api.serve(listener, async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            addr,
            client: reqwest::Client::new(),
            verifier,
            backend,
            clock,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, sat: u64) -> CashuToken {
        self.verifier.mint_token(&mint(), Amount::sat(sat))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_paid(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: &CashuToken,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("X-Cashu", token.expose())
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Like [`Harness::post_paid`], naming the request with `Idempotency-Key: key`.
    pub async fn post_paid_keyed(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: &CashuToken,
        key: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("X-Cashu", token.expose())
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Stops the server gracefully and returns what `serve` returned.
    pub async fn shutdown(&mut self) -> Result<(), paygress_http::HttpError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

/// Status and JSON body of a response.
pub async fn json(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    assert!(
        ct.starts_with("application/json"),
        "{status} not JSON ({ct}): {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}
