#![doc = include_str!("../README.md")]

mod error;
mod openapi;
mod routes;
mod server;
pub mod wire;

pub use error::{ApiError, HttpError, status_for};
pub use openapi::{ApiDoc, openapi_json_string};
pub use routes::{IDEMPOTENCY_KEY, X_CASHU};
pub use server::{HttpApi, HttpConfig, TransportProbe};
