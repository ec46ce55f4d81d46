#![doc = include_str!("../README.md")]

#[cfg(feature = "client")]
pub mod client;
mod error;
mod identity;
mod openapi;
pub mod paths;
mod routes;
mod server;
pub mod web;
pub mod wire;

pub use error::{ApiError, HttpError, status_for};
pub use identity::{
    IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_MIN, IDEMPOTENCY_KEY_PATTERN, LEASE_KEY,
};
pub use openapi::{ApiDoc, openapi_json_string};
pub use routes::{MAX_TOKEN_CHARS, TOKEN_PATTERN, X_CASHU};
pub use server::{
    DEFAULT_RATE_LIMIT_PER_MINUTE, HttpApi, HttpConfig, MetricsRender, TransportProbe,
};
pub use web::{WebConfig, WebUi};
