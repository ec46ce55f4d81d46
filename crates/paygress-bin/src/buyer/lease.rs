//! `paygress status` and `paygress release`: requests about a lease that carry no
//! payment.

use anyhow::Result;
use clap::Args;
use paygress_core::{ReleaseRequest, Request, StatusRequest};

use super::report::report;
use super::send::send;
use super::{IdentityArgs, ServiceArgs};

/// `paygress status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Service and transport.
    #[command(flatten)]
    pub to: ServiceArgs,
    /// The lease.
    #[arg(long)]
    pub pod: String,
}

/// `paygress release`.
#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// Service and transport.
    #[command(flatten)]
    pub to: ServiceArgs,
    /// The lease to end now; its unused time comes back as a token.
    #[arg(long)]
    pub pod: String,
}

/// `paygress status`.
pub async fn status(id: &IdentityArgs, args: StatusArgs) -> Result<()> {
    let request = Request::Status(StatusRequest { pod_name: args.pod });
    let reply = send(id, &args.to, request).await?;
    report(id, &reply, args.to.json)
}

/// `paygress release`.
pub async fn release(id: &IdentityArgs, args: ReleaseArgs) -> Result<()> {
    let request = Request::Release(ReleaseRequest { pod_name: args.pod });
    let reply = send(id, &args.to, request).await?;
    report(id, &reply, args.to.json)
}
