#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod backend;
mod config;
mod error;
mod net;
mod notice;
mod sandbox;
mod ssh;
mod store;

pub use backend::LocalBackend;
pub use config::{ConnectionLimits, LocalConfig, NetworkMode, PortRange, SandboxMode, UidRange};
pub use error::LocalError;
pub use notice::DEFAULT_TOP_UP_COMMAND;
pub use sandbox::Limits;
