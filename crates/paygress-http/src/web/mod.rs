//! The buyer's web page: the offer, paying it (a NUT-18 payment request with an HTTP
//! POST transport to this service, or a pasted token), the lease with a live countdown,
//! change and refund tokens, top-ups, and a terminal in the browser.
//!
//! Every asset ships inside the binary; the page makes no third-party request. A lease's
//! page is reachable only with its secret, which travels in the URL fragment
//! (`/lease#<secret>`): browsers never send a fragment to the server, so it stays out of
//! access logs, proxies and `Referer` headers. The page's script sends it in request
//! bodies (and as the terminal's first message).
//!
//! Leases bought here are remembered in memory (see [`store`]): after a restart the
//! lease keeps running and its SSH login keeps working, but its page is gone.

mod api;
mod nut18;
mod page;
mod store;
mod terminal;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use paygress_core::{DynPaymentVerifier, Paygress};

use crate::error::HttpError;

pub use store::MAX_LEASES_REMEMBERED;
pub use terminal::fingerprint as host_key_fingerprint;

/// Settings of the web page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// Base URL buyers reach the service at (e.g. `https://pay.example.com`), used as the
    /// target of NUT-18 payment requests. When absent it is taken from each page
    /// request's `Host` (and `X-Forwarded-Proto`/`X-Forwarded-Host`) headers.
    pub public_url: Option<String>,
    /// The service's Nostr public key (`npub…`), shown on the offer.
    pub npub: Option<String>,
    /// The SSH host key's fingerprint (`SHA256:…`), shown on the offer and required of
    /// the lease's SSH server by the browser terminal.
    pub host_key_fingerprint: Option<String>,
}

/// `WEB_UI`: whether the web page is served (`on` by default; `off`, `false` or `0`
/// disables it).
pub fn web_ui_enabled(lookup: impl Fn(&str) -> Option<String>) -> Result<bool, HttpError> {
    match lookup("WEB_UI").map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(true),
        Some(v) => match v.as_str() {
            "" | "on" | "true" | "1" | "yes" => Ok(true),
            "off" | "false" | "0" | "no" => Ok(false),
            _ => Err(HttpError::Config {
                name: "WEB_UI",
                value: v,
            }),
        },
    }
}

impl WebConfig {
    /// Reads `WEB_PUBLIC_URL` through `lookup`; the rest is the binary's to fill in.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, HttpError> {
        let public_url = match lookup("WEB_PUBLIC_URL") {
            Some(v) if !v.trim().is_empty() => {
                let v = v.trim().trim_end_matches('/').to_owned();
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(HttpError::Config {
                        name: "WEB_PUBLIC_URL",
                        value: v,
                    });
                }
                Some(v)
            }
            _ => None,
        };
        Ok(Self {
            public_url,
            ..Self::default()
        })
    }
}

/// Shared state of the web handlers.
pub(crate) struct WebState {
    pub(crate) paygress: Arc<Paygress>,
    pub(crate) payments: DynPaymentVerifier,
    pub(crate) config: WebConfig,
    pub(crate) store: store::Store,
}

/// The web page of one [`Paygress`] service. Mount it with
/// [`HttpApi::with_web`](crate::HttpApi::with_web).
#[derive(Clone)]
pub struct WebUi {
    state: Arc<WebState>,
}

impl std::fmt::Debug for WebUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebUi")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl WebUi {
    /// The page over `paygress`; `payments` must be the verifier the service was built
    /// with (it encodes the payment requests).
    pub fn new(paygress: Arc<Paygress>, payments: DynPaymentVerifier, config: WebConfig) -> Self {
        Self {
            state: Arc::new(WebState {
                paygress,
                payments,
                config,
                store: store::Store::default(),
            }),
        }
    }

    /// The page's routes: `/`, `/lease`, `/web/assets/*`, `/web/api/*` and the NUT-18
    /// payment target `/web/pay/{id}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(page::offer_page))
            .route("/lease", get(page::lease_page))
            .route("/web/assets/{name}", get(page::asset))
            .route("/web/api/orders", post(api::create_order))
            .route("/web/api/lease", post(api::lease_view))
            .route("/web/api/pay", post(api::pay_with_token))
            .route("/web/api/top-up", post(api::top_up))
            .route("/web/api/terminal", get(terminal::terminal))
            .route("/web/pay/{id}", post(api::pay_nut18))
            .with_state(self.state.clone())
    }
}
