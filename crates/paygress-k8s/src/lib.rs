#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod error;
#[cfg(feature = "fake-api")]
pub mod fake;
pub mod objects;

pub use backend::{EXTEND_ATTEMPTS, K8sBackend, MAX_IN_FLIGHT, client};
pub use config::{
    DEFAULT_EPHEMERAL_STORAGE_MIB, DEFAULT_IMAGE, DEFAULT_NAMESPACE, DEFAULT_READY_TIMEOUT,
    DEFAULT_SSH_PORT, DEFAULT_TTL_AFTER_FINISHED, EphemeralStorage, K8sConfig, ServiceType,
};
pub use error::K8sError;
