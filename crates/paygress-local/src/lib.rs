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

/// The leases the local backend persisted under `data_dir` (public records only), read
/// without starting the backend: for operator tools while the service runs.
pub fn stored_leases(
    data_dir: &std::path::Path,
) -> Result<Vec<paygress_core::LeaseRecord>, LocalError> {
    let state_dir = data_dir.join("local");
    Ok(store::load_leases(&store::leases_path(&state_dir))?
        .into_iter()
        .map(|l| l.record)
        .collect())
}
