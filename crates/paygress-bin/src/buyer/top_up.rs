//! `paygress topup`: pay once to extend a lease, or (`--auto`) keep it alive by paying
//! before each expiry until a budget is spent.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use paygress_buyer::auto_topup::{self, Event, Stop};
use paygress_buyer::read_token;
use paygress_core::{Request, TopUpRequest};
use serde_json::json;

use super::report::{code_name, report};
use super::send::{route, send, waits};
use super::{IdentityArgs, ServiceArgs};

/// `paygress topup`.
#[derive(Debug, Clone, Args)]
pub struct TopUpArgs {
    /// Service and transport.
    #[command(flatten)]
    pub to: ServiceArgs,
    /// The lease (`ssh-pod-…`).
    #[arg(long)]
    pub pod: String,
    /// The payment: a token, a file holding one, or `-` for stdin. With --auto, the
    /// money for every top-up: it is split at its mint into top-up-sized tokens, saved
    /// under `tokens/` before any is sent, the rest saved as change.
    #[arg(long)]
    pub token: String,
    /// Stay running and top up shortly before each expiry until --budget is spent (or
    /// the token, or the lease, runs out).
    #[arg(long, requires = "budget")]
    pub auto: bool,
    /// With --auto: the most to spend in all, in sat (top-ups and the mint's fees for
    /// splitting the token).
    #[arg(long, requires = "auto")]
    pub budget: Option<u64>,
    /// With --auto: minutes each top-up buys (fractions allowed), at least the
    /// service's shortest lease [default: that minimum].
    #[arg(long, requires = "auto")]
    pub every_minutes: Option<f64>,
    /// With --auto: top up when the lease has this many minutes left (fractions
    /// allowed) [default: 2, or half of what a top-up buys if less].
    #[arg(long, requires = "auto")]
    pub before_minutes: Option<f64>,
}

/// `paygress topup`.
pub async fn top_up(id: &IdentityArgs, args: TopUpArgs) -> Result<()> {
    if args.auto {
        return auto(id, args).await;
    }
    let request = Request::TopUp(TopUpRequest {
        pod_name: args.pod,
        cashu_token: read_token(&args.token)?,
    });
    let reply = send(id, &args.to, request).await?;
    report(id, &reply, args.to.json)
}

fn minutes(flag: &str, m: Option<f64>) -> Result<Option<Duration>> {
    m.map(|m| {
        Duration::try_from_secs_f64(m * 60.0)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("{flag} must be a positive number of minutes"))
    })
    .transpose()
}

/// `paygress topup --auto`.
async fn auto(id: &IdentityArgs, args: TopUpArgs) -> Result<()> {
    let budget = args.budget.context("--auto needs --budget")?;
    let every = minutes("--every-minutes", args.every_minutes)?;
    let before = minutes("--before-minutes", args.before_minutes)?;
    let token = read_token(&args.token)?;
    let home = id.home()?;
    let route = route(id, &args.to, None, None).await?;
    let waits = waits(&args.to);
    let json = args.to.json;
    let settings = auto_topup::Settings {
        budget_sat: budget,
        every,
        before,
    };
    let auto_topup::Prepared {
        plan,
        prepaid,
        budget_bound,
    } = auto_topup::prepare(&home, &route, waits, &args.pod, &token, settings).await?;
    let pieces = prepaid.pieces.len();
    if json {
        println!(
            "{}",
            json!({
                "event": "prepaid",
                "pod_name": args.pod,
                "top_ups": pieces,
                "price_sat": plan.price_sat,
                "seconds_each": plan.seconds,
                "before_seconds": plan.before.as_secs_f64(),
                "fees_sat": prepaid.fees,
                "budget_sat": budget,
                "change_file": prepaid.change.as_ref().map(|p| p.display().to_string()),
            })
        );
    } else {
        eprintln!(
            "Prepaid {pieces} top-up(s) of {} sat, each buying {} s, sent when {} s are left (budget {budget} sat{}); saved under {}",
            plan.price_sat,
            plan.seconds,
            plan.before.as_secs(),
            if prepaid.fees > 0 {
                format!(", the mint took {} sat to split the token", prepaid.fees)
            } else {
                String::new()
            },
            home.dir().join("tokens").display()
        );
        if let Some(p) = &prepaid.change {
            eprintln!("The rest of the token was saved to {}", p.display());
        }
    }
    if pieces == 0 {
        bail!(
            "the token does not hold one top-up of {} sat",
            plan.price_sat
        );
    }
    let run = auto_topup::run(
        &home,
        &route,
        waits,
        &args.pod,
        plan,
        prepaid.pieces,
        |e| match e {
            Event::Paid {
                result,
                amount_sat,
                spent_sat,
                change,
            } => {
                if json {
                    println!(
                        "{}",
                        json!({
                            "event": "paid",
                            "pod_name": result.pod_name,
                            "amount_sat": amount_sat,
                            "spent_sat": spent_sat,
                            "added_seconds": result.added_seconds,
                            "expires_at": result.expires_at,
                            "change_file": change.map(|p| p.display().to_string()),
                        })
                    );
                } else {
                    println!(
                        "Paid {amount_sat} sat: lease {} now paid until {} (+{} s); {spent_sat} of {budget} sat spent",
                        result.pod_name, result.expires_at, result.added_seconds
                    );
                }
            }
            Event::Checked { status, due_in } if !json => eprintln!(
                "Lease {}: {} s left; next top-up in {} s",
                status.pod_name,
                status.remaining_seconds,
                due_in.as_secs()
            ),
            Event::Unreachable(e) => eprintln!("The service did not answer ({e}); trying again"),
            _ => {}
        },
    );
    let outcome = tokio::select! {
        outcome = run => outcome?,
        _ = tokio::signal::ctrl_c() => bail!(
            "interrupted: the top-ups not paid are still saved under {} (a top-up being sent may have been paid: run `paygress status`)",
            home.dir().join("tokens").display()
        ),
    };
    let left: Vec<String> = outcome
        .left
        .iter()
        .map(|p| p.file.display().to_string())
        .collect();
    let (why, ok) = match &outcome.stop {
        Stop::PiecesSpent if budget_bound => ("the budget is spent".to_owned(), true),
        Stop::PiecesSpent => ("the token is spent".to_owned(), true),
        Stop::LeaseGone => ("the lease has ended".to_owned(), true),
        Stop::Refused {
            code,
            message,
            refund,
        } => (
            format!(
                "the service refused ({}): {message}{}",
                code_name(*code),
                refund
                    .as_ref()
                    .map(|p| format!("; refund saved to {}", p.display()))
                    .unwrap_or_default()
            ),
            false,
        ),
        Stop::Unreachable { reason } => (
            format!("the service stopped answering ({reason}); nothing more was paid"),
            false,
        ),
        Stop::Unclear { reason, piece } => (
            format!(
                "a top-up got no clear answer ({reason}); its token {} may be spent: run `paygress status`",
                piece.display()
            ),
            false,
        ),
        _ => ("stopped".to_owned(), false),
    };
    if json {
        println!(
            "{}",
            json!({
                "event": "stopped",
                "pod_name": args.pod,
                "reason": why,
                "top_ups": outcome.top_ups,
                "spent_sat": outcome.spent_sat,
                "unused_token_files": left,
            })
        );
    } else {
        println!(
            "Stopped: {why}. {} top-up(s), {} sat paid.",
            outcome.top_ups, outcome.spent_sat
        );
        for f in &left {
            eprintln!("Unused top-up token (redeem it with your wallet): {f}");
        }
    }
    if !ok {
        bail!("automatic top-up stopped: {why}");
    }
    Ok(())
}
