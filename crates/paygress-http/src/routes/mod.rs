//! The endpoint handlers.
//!
//! - `leases`: buying, extending, releasing and listing leases;
//! - `payments`: checking a token without redeeming it;
//! - `service`: offer, health, the OpenAPI document, unknown paths;
//! - `run`: running a paid request and turning its reply into a response;
//! - `token`: the token from the `X-Cashu` header or the body;
//! - `extract`: the JSON body extractor;
//! - `responses`: answers many endpoints document alike.

use std::sync::Arc;

use axum::extract::State;

use crate::server::AppState;

mod extract;
pub(crate) mod leases;
pub(crate) mod payments;
mod responses;
mod run;
pub(crate) mod service;
mod token;

pub(crate) use extract::JsonBody;
pub(crate) use leases::{get_pod, list_pods, release_pod, spawn_pod, top_up_pod};
pub(crate) use payments::{auth, auth_post};
pub(crate) use service::{healthz, not_found, offer, openapi_json};
pub use token::{MAX_TOKEN_CHARS, TOKEN_PATTERN};

/// The NUT-24 header: a payment request in a `402`, a token in a retry.
pub const X_CASHU: &str = "x-cashu";

type Shared = State<Arc<AppState>>;
