//! `paygress watch`: a live countdown of a lease's time.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use paygress_buyer::watch::{self, End, Event};
use paygress_core::{LeaseStatus, Reply};
use serde_json::json;

use super::send::{route, waits};
use super::{IdentityArgs, ServiceArgs};

/// `paygress watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Service and transport (`--json`: one line per answer of the service).
    #[command(flatten)]
    pub to: ServiceArgs,
    /// The lease.
    #[arg(long)]
    pub pod: String,
    /// Seconds between two questions to the service (the count goes on locally in
    /// between).
    #[arg(long, default_value_t = 30)]
    pub refresh: u64,
}

/// `h:mm:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn status_line(s: &LeaseStatus, remaining: Duration) -> String {
    format!(
        "Lease {}: {} left (paid until {})",
        s.pod_name,
        clock(remaining),
        s.expires_at
    )
}

/// `paygress watch`: counts the lease down until it ends; exits 0 then.
pub async fn watch(id: &IdentityArgs, args: WatchArgs) -> Result<()> {
    let route = route(id, &args.to, None, None).await?;
    let json = args.to.json;
    let live = !json && std::io::stdout().is_terminal();
    let mut last: Option<LeaseStatus> = None;
    let mut out = std::io::stdout();
    let end = watch::watch(
        &route,
        waits(&args.to),
        &args.pod,
        Duration::from_secs(args.refresh),
        |event| match event {
            Event::Refreshed(s) => {
                if json {
                    let line = serde_json::to_string(&Reply::Status(s.clone())).unwrap_or_default();
                    let _ = writeln!(out, "{line}");
                } else if !live {
                    let _ = writeln!(
                        out,
                        "{}",
                        status_line(s, Duration::from_secs(s.remaining_seconds))
                    );
                }
                let _ = out.flush();
                last = Some(s.clone());
            }
            Event::Tick { remaining } => {
                if let (true, Some(s)) = (live, &last) {
                    let _ = write!(out, "\r\x1b[K{}", status_line(s, remaining));
                    let _ = out.flush();
                }
            }
            Event::Unreachable(e) => {
                if live {
                    let _ = writeln!(out);
                }
                eprintln!("The service did not answer ({e}); counting on");
            }
            _ => {}
        },
    )
    .await;
    if live {
        let _ = writeln!(out);
    }
    let end = end?;
    let how = match end {
        End::Expired => "expired",
        _ => "gone",
    };
    if json {
        println!(
            "{}",
            json!({"type": "ended", "pod_name": args.pod, "how": how})
        );
    } else {
        println!(
            "Lease {} has ended ({})",
            args.pod,
            match end {
                End::Expired => "its time is over",
                _ => "the service no longer has it",
            }
        );
    }
    Ok(())
}
