//! `paygress leases`: the operator's list of leases with owner, tier, expiry and what
//! was paid, read from the local backend's data directory (safe while the service
//! runs) or from the Kubernetes API.
//!
//! Ending a lease early is not offered: core has no release path that refunds the
//! unused time, and deleting a lease behind the running service would take the buyer's
//! paid time without a refund.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use paygress_core::{LeaseRecord, PodBackend};

use crate::config::BackendKind;

/// Where the leases are.
#[derive(Debug, Clone, Args)]
pub struct LeasesArgs {
    /// Where leases run: kubernetes or local.
    #[arg(long, env = "POD_BACKEND", value_enum, default_value = "kubernetes")]
    pub pod_backend: BackendKind,
    /// State directory of the service (local backend).
    #[arg(long, env = "PAYGRESS_DATA_DIR", default_value = paygress_core::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Namespace of the leases (Kubernetes backend).
    #[arg(long, env = "POD_NAMESPACE", default_value = "user-workloads")]
    pub pod_namespace: String,
    /// Also list leases whose time is over but that are not removed yet.
    #[arg(long)]
    pub all: bool,
}

/// Runs `paygress leases`.
pub async fn run(args: LeasesArgs) -> Result<()> {
    let mut leases = match args.pod_backend {
        BackendKind::Local => paygress_local::stored_leases(&args.data_dir)
            .with_context(|| format!("reading the leases under {}", args.data_dir.display()))?,
        BackendKind::Kubernetes => {
            let mut config = paygress_k8s::K8sConfig::from_env().context("Kubernetes settings")?;
            config.namespace = args.pod_namespace.clone();
            paygress_k8s::K8sBackend::try_default(config)
                .await
                .context("no Kubernetes credentials (in-cluster or ~/.kube/config)")?
                .list()
                .await
                .context("listing leases")?
        }
    };
    let now = jiff::Timestamp::now();
    if !args.all {
        leases.retain(|l| l.state_at(now).is_live());
    }
    leases.sort_by_key(|l| l.expires_at);
    print!("{}", table(&leases, now));
    Ok(())
}

/// The listing as text, one lease per line.
pub fn table(leases: &[LeaseRecord], now: jiff::Timestamp) -> String {
    let mut out = format!(
        "{:<18} {:<10} {:<22} {:>10} {:>10} owner\n",
        "lease", "tier", "expires (UTC)", "left", "paid sat"
    );
    for l in leases {
        let left = l.remaining_seconds(now);
        out.push_str(&format!(
            "{:<18} {:<10} {:<22} {:>10} {:>10} {}\n",
            l.id.to_string(),
            l.tier,
            l.expires_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            format!("{}m{:02}s", left / 60, left % 60),
            l.paid_msat / 1000,
            l.owner.as_str()
        ));
    }
    out
}
