//! `paygress dev`: the whole stack on one machine with no configuration (see
//! [`paygress_testkit::dev::DevStack`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use paygress_testkit::dev::{DevOptions, DevStack};

/// Options of `paygress dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// After starting, play a buyer end to end (pay, log in, top up) and exit.
    #[arg(long)]
    pub demo: bool,
    /// State directory [default: a fresh temporary directory, removed at exit].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub http_port: u16,
    /// SSH ports for leases.
    #[arg(long, default_value = "2300-2399")]
    pub port_range: String,
    /// Run lease shells without bubblewrap even if it is installed.
    #[arg(long)]
    pub unsandboxed: bool,
}

impl DevArgs {
    /// The dev stack's options.
    pub fn options(&self) -> DevOptions {
        DevOptions {
            data_dir: self.data_dir.clone(),
            http_port: self.http_port,
            port_range: self.port_range.clone(),
            unsandboxed: self.unsandboxed,
        }
    }
}

/// Runs `paygress dev`.
pub async fn run(args: DevArgs) -> Result<()> {
    let stack = DevStack::start(&args.options()).await?;
    stack.print_banner();
    if args.demo {
        let result = paygress_testkit::demo::run(&stack).await;
        stack.shutdown().await;
        return result;
    }
    let token = stack.mint_buyer_token(1000).await?;
    stack.print_buyer_commands(&token);
    crate::serve::shutdown_signal().await;
    stack.shutdown().await;
    Ok(())
}
