//! `paygress request`: pay for a lease (picking a provider, locking the payment when
//! asked) and print how to log in.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use paygress_buyer::{
    Picked, Wanted, default_ssh_key, login_hints, parse_duration_minutes, parse_relays, read_token,
    token_mint,
};
use paygress_core::{CashuToken, Reply, Request, SpawnRequest};
use paygress_nostr::ServiceRef;
use paygress_nostr::offer::sat_string;
use paygress_nostr::resolve_service;

use super::offers::npub;
use super::report::report_with;
use super::send::{send_to, spinner};
use super::{IdentityArgs, ServiceArgs};

/// `paygress request`.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// Service and transport.
    #[command(flatten)]
    pub to: ServiceArgs,
    /// The payment: a cashuA/cashuB token, a file holding one, or `-` for stdin.
    #[arg(long)]
    pub token: String,
    /// Time to buy (90m, 2h, 1d); without it the whole token buys time.
    #[arg(long)]
    pub duration: Option<String>,
    /// Login name in the pod.
    #[arg(long)]
    pub user: Option<String>,
    /// Resource tier.
    #[arg(long)]
    pub tier: Option<String>,
    /// Container image (must be on the service's allow-list).
    #[arg(long)]
    pub image: Option<String>,
    /// The SSH public key to log in with [default: ~/.ssh/id_ed25519.pub when it
    /// exists]. With a key, password login is off unless --password-login.
    #[arg(long, conflicts_with = "no_ssh_key")]
    pub ssh_key: Option<PathBuf>,
    /// Send no SSH key: log in with the password.
    #[arg(long)]
    pub no_ssh_key: bool,
    /// With a key, keep password login on too.
    #[arg(long)]
    pub password_login: bool,
    /// Lock the payment to the service's key (NUT-11 P2PK) before sending it, so that
    /// nobody who sees the message can spend it; refundable to your identity's key after
    /// --lock-minutes. Costs one swap at the mint (its fee, if any). Nostr only.
    #[arg(long, conflicts_with = "http")]
    pub lock: bool,
    /// How long the locked payment is the service's alone (then your key can take it
    /// back).
    #[arg(long, default_value_t = 60, requires = "lock")]
    pub lock_minutes: u64,
    /// Without --service: the most to pay per hour (sat) when picking a provider.
    #[arg(long)]
    pub max_price: Option<u64>,
    /// Without --service: mints the buyer holds tokens of (repeatable; default: the
    /// token's mint).
    #[arg(long = "mint", value_delimiter = ',')]
    pub mints: Vec<String>,
}

/// `paygress request`.
pub async fn request(id: &IdentityArgs, args: RequestArgs) -> Result<()> {
    let token = read_token(&args.token)?;
    let duration_minutes = args
        .duration
        .as_deref()
        .map(parse_duration_minutes)
        .transpose()?;
    let key_file = match (&args.ssh_key, args.no_ssh_key) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => None,
        (None, false) => default_ssh_key(),
    };
    let ssh_public_key = match &key_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    if let Some(p) = &key_file
        && !args.to.json
    {
        eprintln!(
            "Logging in with the SSH key {}{}",
            p.display(),
            if args.password_login {
                " (and the password)"
            } else {
                "; password login off (--password-login keeps it, --no-ssh-key sends no key)"
            }
        );
    }
    let (picked, offered_fingerprint, offered_lock) =
        if args.to.service.is_none() && args.to.http.is_none() {
            let p = pick(&args, &token).await?;
            (Some(p.service), p.host_key_fingerprint, p.locking_key)
        } else {
            (None, None, None)
        };
    let (token, picked) = if args.lock {
        lock(id, &args, token, picked, offered_lock).await?
    } else {
        (token, picked)
    };
    let mut spawn = SpawnRequest::new(token);
    spawn.ssh_username = args.user;
    spawn.pod_image = args.image;
    spawn.duration_minutes = duration_minutes;
    spawn.tier = args.tier;
    spawn.ssh_public_key = ssh_public_key;
    spawn.password_login = args.password_login.then_some(true);
    let request = Request::Spawn(spawn);
    let reply = send_to(id, &args.to, request, picked).await?;
    let login = match &reply {
        Reply::AccessDetails(a) => {
            let hints = login_hints(
                &id.home()?,
                a,
                key_file.as_deref(),
                offered_fingerprint.as_deref(),
            );
            for w in &hints.warnings {
                eprintln!("warning: {w}");
            }
            Some(hints)
        }
        _ => None,
    };
    report_with(id, &reply, args.to.json, login.as_ref())
}

/// `--lock`: locks `token` to the service (resolving `--service` when no provider was
/// picked) and says so on stderr.
async fn lock(
    id: &IdentityArgs,
    args: &RequestArgs,
    token: CashuToken,
    picked: Option<ServiceRef>,
    offered: Option<String>,
) -> Result<(CashuToken, Option<ServiceRef>)> {
    let service = match picked {
        Some(s) => s,
        None => {
            let name = args
                .to
                .service
                .as_deref()
                .context("--lock needs the service's key: give --service")?;
            resolve_service(name, Duration::from_secs(args.to.timeout)).await?
        }
    };
    let locked = paygress_buyer::lock_payment(
        &id.home()?,
        &id.keys()?,
        &token,
        &service,
        offered.as_deref(),
        args.lock_minutes,
    )
    .await?;
    if !args.to.json {
        eprintln!(
            "Payment locked to the service's key until {} (a copy: {}){}",
            jiff::Timestamp::from_second(i64::try_from(locked.locktime).unwrap_or(i64::MAX))
                .map(|t| t.to_string())
                .unwrap_or_default(),
            locked.saved.display(),
            if locked.fee > 0 {
                format!("; the mint took {} for the swap", locked.fee)
            } else {
                String::new()
            }
        );
    }
    Ok((locked.token, Some(service)))
}

/// Without `--service`: picks the cheapest live provider on `--relay` and says which on
/// stderr (even with `--json`: stdout stays the reply).
async fn pick(args: &RequestArgs, token: &CashuToken) -> Result<Picked> {
    let relay_urls = parse_relays(&args.to.relays)
        .context("without --service, give --relay to find providers on")?;
    let mints = if args.mints.is_empty() {
        vec![token_mint(token)?]
    } else {
        args.mints
            .iter()
            .map(|m| paygress_cashu::normalize_mint_url(m))
            .collect::<Result<_, _>>()?
    };
    let wanted = Wanted {
        tier: args.tier.clone(),
        max_msat_per_hour: args.max_price.map(|sat| sat.saturating_mul(1000)),
        mints,
    };
    let pb = spinner("Looking for providers".into(), args.to.json);
    let picked = paygress_buyer::pick_provider(
        &relay_urls,
        &wanted,
        Duration::from_secs(args.to.timeout.min(15)),
    )
    .await;
    pb.finish_and_clear();
    let picked = picked?;
    let tier = args.tier.as_deref();
    let chosen = &picked.listing;
    eprintln!(
        "Chose {} ({}): {} sat/hour{}, answered in {} ms",
        chosen.offer.offer.offer.name,
        npub(&chosen.offer.service),
        sat_string(chosen.price_msat_per_hour(tier).unwrap_or_default()),
        tier.map(|t| format!(" for tier {t}")).unwrap_or_default(),
        chosen.reachability.latency().map_or(0, |d| d.as_millis())
    );
    Ok(picked)
}
