//! Whole HTTP requests through the API's router, in process, over core's in-memory ports.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use paygress_core::memory::{MemoryBackend, MemoryVerifier};
use paygress_core::{
    Amount, CashuToken, MintUrl, Paygress, PaymentError, PaymentVerifier, RedeemAttempt, Redeemed,
    ServiceConfig, TokenCheck, TokenInfo, Unit,
};
use paygress_http::{HttpApi, HttpConfig};
use tower::ServiceExt;

use crate::block_on;

/// The mint of the in-memory tokens.
const MINT: &str = "http://mint.test";

/// Tokens every fresh service knows, in order: `cashuBtestfakecashu_1` … `cashuBtestfakecashu_4`.
const TOKENS_SAT: [u64; 4] = [1, 100, 5_000, 1_000_000];

/// [`MemoryVerifier`] with NUT-18 payment requests, so `402` answers carry one.
/// Tokens travel as `cashuBtest<core token with ':' as '_'>` (`cashuBtestfakecashu_2`),
/// which passes the API's token format.
struct Verifier(MemoryVerifier);

fn unwrap(token: &CashuToken) -> CashuToken {
    match token.expose().strip_prefix("cashuBtest") {
        Some(rest) => CashuToken::new(rest.replace('_', ":")),
        None => token.clone(),
    }
}

#[async_trait]
impl PaymentVerifier for Verifier {
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError> {
        self.0.inspect(&unwrap(token))
    }
    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError> {
        self.0.prepare(&unwrap(token)).await
    }
    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError> {
        self.0.redeem(&unwrap(token), attempt).await
    }
    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError> {
        self.0.resolve(&unwrap(token), attempt).await
    }
    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError> {
        self.0.check(&unwrap(token)).await
    }
    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError> {
        self.0.issue(mint, amount).await
    }
    fn accepted_mints(&self) -> Vec<MintUrl> {
        self.0.accepted_mints()
    }
    fn payment_request(&self, amount: Amount, description: &str) -> Result<String, PaymentError> {
        Ok(format!(
            "creqAfuzz:{}:{}:{description}",
            amount.value, amount.unit
        ))
    }
    fn accepted_units(&self) -> Vec<Unit> {
        vec![Unit::Sat]
    }
}

/// A fresh API (no leases, the [`TOKENS_SAT`] tokens unspent) as a router.
fn api() -> axum::Router {
    let mint = MintUrl::new(MINT);
    let memory = MemoryVerifier::new(vec![mint.clone()]);
    for sat in TOKENS_SAT {
        memory.mint_token(&mint, Amount::sat(sat));
    }
    let verifier = Arc::new(Verifier(memory));
    let paygress = Arc::new(
        Paygress::builder(
            ServiceConfig::default(),
            verifier.clone(),
            Arc::new(MemoryBackend::new()),
        )
        .build(),
    );
    let config = HttpConfig {
        rate_limit_per_minute: Some(10_000),
        ..HttpConfig::default()
    };
    HttpApi::new(paygress, verifier, config).router()
}

/// Reads the input as a request in HTTP/1 text form: `METHOD TARGET`, header lines
/// `name: value`, an empty line, the body. `None` when hyper would not have built it.
fn parse(data: &[u8]) -> Option<Request<axum::body::Body>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let start = lines.next()?;
    let space = start.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&start[..space]).ok()?;
    let uri = Uri::try_from(&start[space + 1..]).ok()?;
    let mut request = Request::builder().method(method).uri(uri);
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        request = request.header(name, HeaderValue::from_bytes(value).ok()?);
    }
    let mut request = request.body(axum::body::Body::from(body.to_vec())).ok()?;
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    Some(request)
}

/// Sends the input (see [`parse`]) to a fresh API. No input may be answered with a 5xx
/// other than `503`, and every JSON answer must be JSON. Accepted: a `2xx` answer.
pub fn http_request(data: &[u8]) -> bool {
    let Some(request) = parse(data) else {
        return false;
    };
    let router = api();
    block_on(async move {
        let response = router
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        assert!(
            !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
            "answered {status}"
        );
        let json = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("the answer is readable");
        if json {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                "a JSON answer that is not JSON"
            );
        }
        status.is_success()
    })
}
