#![doc = include_str!("../README.md")]

mod config;
mod error;
mod node;

pub use config::{BackendConfig, HttpListen, NodeConfig, private_paths};
pub use error::NodeError;
pub use node::{DEFAULT_SHUTDOWN_GRACE, MAINTENANCE_INTERVAL, Node};
