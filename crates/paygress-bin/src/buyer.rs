//! The buyer's commands: `keygen`, `whoami`, `offers`, `request`, `topup`, `status`.
//! One command replaces the seed's nak + jq + cashu ritual.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use paygress_buyer::{
    BuyerHome, Progress, Route, TokenKind, Waits, parse_duration_minutes, parse_relays,
    parse_secret, read_token,
};
use paygress_core::{
    CashuToken, ErrorCode, ReleaseRequest, Reply, Request, SpawnRequest, StatusRequest,
    TopUpRequest,
};
use paygress_nostr::client::awaits_follow_up;
use paygress_nostr::market::{self, Listing, Reachability, SortBy, SurveyOptions};
use paygress_nostr::nostr_sdk::{Keys, RelayUrl, Timestamp, ToBech32};
use paygress_nostr::offer::{prices, sat_string};
use paygress_nostr::{Scheme, ServiceRef, resolve_service};
use serde_json::json;

/// Where the buyer's identity and saved tokens live. `Debug` is written by hand: it
/// never shows the key.
#[derive(Clone, Args)]
pub struct IdentityArgs {
    /// Use this key (nsec or hex) instead of the stored identity.
    #[arg(long, env = "PAYGRESS_NSEC", hide_env_values = true, global = true)]
    pub nsec: Option<String>,
    /// Directory for the identity and saved tokens
    /// [default: $XDG_CONFIG_HOME/paygress or ~/.config/paygress].
    #[arg(long, env = "PAYGRESS_CONFIG_DIR", global = true)]
    pub config_dir: Option<PathBuf>,
}

impl std::fmt::Debug for IdentityArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityArgs")
            .field("nsec", &self.nsec.as_ref().map(|_| "<redacted>"))
            .field("config_dir", &self.config_dir)
            .finish()
    }
}

impl IdentityArgs {
    /// The buyer's directory: `--config-dir`, else the default.
    pub fn home(&self) -> Result<BuyerHome> {
        Ok(BuyerHome::new(match &self.config_dir {
            Some(d) => d.clone(),
            None => BuyerHome::default_dir()?,
        }))
    }

    /// The buyer's keys: `--nsec`, else the stored identity.
    pub fn keys(&self) -> Result<Keys> {
        if let Some(s) = &self.nsec {
            return Ok(parse_secret(s)?);
        }
        Ok(self.home()?.keys()?)
    }
}

fn print_identity(keys: &Keys) -> Result<()> {
    let pk = keys.public_key();
    println!("npub: {}", pk.to_bech32()?);
    println!("hex:  {}", pk.to_hex());
    Ok(())
}

/// `paygress keygen`: creates the buyer identity.
pub fn keygen(id: &IdentityArgs, force: bool) -> Result<()> {
    let home = id.home()?;
    let keys = home.create_identity(force)?;
    eprintln!(
        "Saved a new identity to {} (mode 0600)",
        home.identity_file().display()
    );
    print_identity(&keys)
}

/// `paygress whoami`.
pub fn whoami(id: &IdentityArgs) -> Result<()> {
    print_identity(&id.keys()?)
}

/// How to reach the service.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// The service, for Nostr: npub, nprofile (with relay hints), hex key or NIP-05
    /// name (`name@domain`). `request` without it picks the cheapest live provider.
    #[arg(long)]
    pub service: Option<String>,
    /// Relays the buyer knows, repeatable or comma-separated: the service's relay lists
    /// are looked up there and the request goes to the relays they name.
    #[arg(long = "relay", value_delimiter = ',')]
    pub relays: Vec<String>,
    /// Talk to an HTTP-mode service at this base URL instead of Nostr.
    #[arg(long)]
    pub http: Option<String>,
    /// Send as a NIP-17 gift-wrapped private message.
    #[arg(long)]
    pub nip17: bool,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Seconds to keep waiting when the reply says a refund or change is owed, or that
    /// the payment is being checked with the mint: the service sends the token as a new
    /// reply once the mint answers (Nostr only).
    #[arg(long, default_value_t = 600)]
    pub follow_up_timeout: u64,
    /// Print the reply as JSON (for scripts).
    #[arg(long)]
    pub json: bool,
}

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

/// `paygress topup`.
#[derive(Debug, Clone, Args)]
pub struct TopUpArgs {
    /// Service and transport.
    #[command(flatten)]
    pub to: ServiceArgs,
    /// The lease (`ssh-pod-…`).
    #[arg(long)]
    pub pod: String,
    /// The payment: a token, a file holding one, or `-` for stdin.
    #[arg(long)]
    pub token: String,
}

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

/// `paygress offers`.
#[derive(Debug, Clone, Args)]
pub struct OffersArgs {
    /// Relays, repeatable or comma-separated.
    #[arg(long = "relay", value_delimiter = ',', required = true)]
    pub relays: Vec<String>,
    /// Seconds to wait for relays and for answers to the reachability checks.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Order: `price` (of --tier, else each default tier) or `latency`.
    #[arg(long, value_enum, default_value_t = OfferSort::Price)]
    pub sort: OfferSort,
    /// Price this tier.
    #[arg(long)]
    pub tier: Option<String>,
    /// Skip the reachability check (a status request to each provider).
    #[arg(long)]
    pub no_check: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `paygress offers --sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OfferSort {
    /// Cheapest first.
    Price,
    /// Fastest answer first.
    Latency,
}

fn spinner(msg: String, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Sends `request` over the chosen transport and returns the reply.
async fn send(id: &IdentityArgs, to: &ServiceArgs, request: Request) -> Result<Reply> {
    send_to(id, to, request, None).await
}

/// The owner key an HTTP release must carry: the `Idempotency-Key` its lease was bought
/// with (it proves ownership); `None` for other requests.
fn lease_key(id: &IdentityArgs, request: &Request) -> Result<Option<String>> {
    let Request::Release(r) = request else {
        return Ok(None);
    };
    let home = id.home()?;
    match home.lease_key(&r.pod_name)? {
        Some(key) => Ok(Some(key)),
        None => bail!(
            "no key for lease {} in {}: over HTTP only the machine that bought a lease can release it",
            r.pod_name,
            home.dir().join("leases").display()
        ),
    }
}

/// Sends `request` to `picked` (else `--service`, else `--http`) and returns the reply.
async fn send_to(
    id: &IdentityArgs,
    to: &ServiceArgs,
    request: Request,
    picked: Option<ServiceRef>,
) -> Result<Reply> {
    let service = match (picked, &to.http) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => {
            let name = to
                .service
                .as_deref()
                .context("--service is required (npub, nprofile or NIP-05 name), or --http")?;
            Some(resolve_service(name, Duration::from_secs(to.timeout)).await?)
        }
    };
    let route = match (service, &to.http) {
        (None, Some(base)) => Route::Http {
            base: base.clone(),
            lease_key: lease_key(id, &request)?,
        },
        (service, _) => Route::Nostr {
            service: Box::new(service.context("--service is required")?),
            relays: any_relays(&to.relays)?,
            keys: id.keys()?,
            scheme: if to.nip17 {
                Scheme::Nip17
            } else {
                Scheme::Nip44
            },
        },
    };
    let waits = Waits {
        reply: Duration::from_secs(to.timeout),
        follow_up: Duration::from_secs(to.follow_up_timeout),
    };
    let mut pb: Option<ProgressBar> = None;
    let spawn = matches!(request, Request::Spawn(_));
    let sent = paygress_buyer::send(&route, request, waits, |p| match p {
        Progress::Waiting { base } => pb = Some(spinner(format!("Waiting for {base}"), to.json)),
        Progress::Sent { request_id } => {
            pb = Some(spinner(
                format!("Request {request_id} sent; waiting for the reply"),
                to.json,
            ))
        }
        Progress::FollowUp(r) => {
            if let Some(pb) = &pb {
                pb.set_message(follow_up_message(r, to.follow_up_timeout));
            }
        }
        _ => {}
    })
    .await;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let sent = sent?;
    if let (true, Some(key), Reply::AccessDetails(a)) = (spawn, &sent.http_key, &sent.reply) {
        id.home()?.save_lease_key(a.pod_name.as_str(), key)?;
    }
    if let Some(request_id) = &sent.request_id
        && awaits_follow_up(&sent.reply)
        && !to.json
    {
        eprintln!(
            "Gave up waiting after {}s; the service still owes this request (id {request_id}) its token and will send it as a new reply.",
            to.follow_up_timeout,
        );
    }
    Ok(sent.reply)
}

/// What the spinner says while a reply announces a follow-up.
fn follow_up_message(reply: &Reply, limit: u64) -> String {
    let what = match reply.error_code() {
        Some(ErrorCode::PaymentPending) => {
            "The mint's answer to your payment was lost; the service is checking it"
        }
        Some(_) => "A refund is owed to you but the mint is unreachable",
        None => "Your lease is ready; its change is owed but the mint is unreachable",
    };
    format!("{what}: waiting for the service to send it (up to {limit}s)")
}

/// Prints a reply for humans or as JSON, saving any returned token. Fails on an error reply.
fn report(id: &IdentityArgs, reply: &Reply, as_json: bool) -> Result<()> {
    report_with(id, reply, as_json, None)
}

/// [`report`], with how to log in to a new lease.
fn report_with(
    id: &IdentityArgs,
    reply: &Reply,
    as_json: bool,
    login: Option<&LoginHints>,
) -> Result<()> {
    let saved = match reply.returned_token() {
        Some(t) => Some(id.home()?.save_token(TokenKind::of(reply), t)?),
        None => None,
    };
    if as_json {
        let mut v = serde_json::to_value(reply)?;
        if let Some(p) = &saved {
            v["saved_token_file"] = json!(p.display().to_string());
        }
        if let Some(login) = login {
            v["ssh_command"] = json!(login.command);
            if let Some(kh) = &login.known_hosts {
                v["known_hosts_file"] = json!(kh.display().to_string());
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match reply {
            Reply::AccessDetails(a) => {
                let port = a.node_port.unwrap_or(a.ssh_port);
                println!("Lease {} is ready until {}", a.pod_name, a.expires_at);
                println!();
                match login {
                    Some(l) => println!("  {}", l.command),
                    None => println!("  ssh -p {port} {}@{}", a.ssh_username, a.ssh_host),
                }
                if a.password_login {
                    println!("  password: {}", a.ssh_password.expose());
                } else if login.is_some_and(|l| l.identity.is_some()) {
                    println!("  login: your SSH key (password login is off)");
                } else {
                    println!("  login: the SSH key you sent (password login is off)");
                }
                match login.and_then(|l| l.known_hosts.as_ref()) {
                    Some(kh) => {
                        for k in &a.host_keys {
                            println!(
                                "  host key: {} (recorded in {})",
                                k.fingerprint,
                                kh.display()
                            );
                        }
                    }
                    None if a.host_keys.is_empty() => println!(
                        "  host key: not known in advance (the pod makes its own): ssh asks you to trust it on first login"
                    ),
                    None => {
                        for k in &a.host_keys {
                            println!("  host key: {}", k.fingerprint);
                        }
                    }
                }
                println!();
                for line in &a.instructions {
                    println!("  {line}");
                }
            }
            Reply::TopUp(t) => {
                println!(
                    "Lease {} extended by {} s; now paid until {}",
                    t.pod_name, t.added_seconds, t.expires_at
                );
            }
            Reply::Status(s) => {
                println!(
                    "Lease {}: {:?}, {} s left (until {}), tier {}{}",
                    s.pod_name,
                    s.state,
                    s.remaining_seconds,
                    s.expires_at,
                    s.tier,
                    s.node_port
                        .map(|p| format!(", port {p}"))
                        .unwrap_or_default()
                );
            }
            Reply::Released(r) => {
                println!("{}", r.message);
            }
            Reply::Error(e) => {
                eprintln!("The service refused: {} ({})", e.message, code_name(e.code));
            }
        }
        if let Some(p) = &saved {
            let what = match TokenKind::of(reply) {
                TokenKind::Refund => "Refund",
                TokenKind::Change => "Change",
                TokenKind::Locked => "Locked",
            };
            eprintln!(
                "{what} token saved to {} (redeem it with your wallet)",
                p.display()
            );
        }
    }
    if let Reply::Error(e) = reply {
        bail!("request failed: {}", code_name(e.code));
    }
    Ok(())
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
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
            let (service, fingerprint, lock) = pick_provider(&args, &token).await?;
            (Some(service), fingerprint, lock)
        } else {
            (None, None, None)
        };
    let (token, picked) = if args.lock {
        lock_payment(id, &args, token, picked, offered_lock).await?
    } else {
        (token, picked)
    };
    let request = Request::Spawn(SpawnRequest {
        cashu_token: token,
        ssh_username: args.user,
        pod_image: args.image,
        duration_minutes,
        tier: args.tier,
        ssh_public_key,
        password_login: args.password_login.then_some(true),
    });
    let reply = send_to(id, &args.to, request, picked).await?;
    let login = match &reply {
        Reply::AccessDetails(a) => Some(login_hints(
            id,
            a,
            key_file.as_deref(),
            offered_fingerprint.as_deref(),
        )?),
        _ => None,
    };
    report_with(id, &reply, args.to.json, login.as_ref())
}

/// Locks `token` to the service (`--lock`): to the key its offer names, else to its
/// Nostr key (BIP-340 keys are x-only: `02‖x` is the same lock). Returns the locked
/// token, saved under `tokens/` first, and the resolved service.
async fn lock_payment(
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
    let to = offered.unwrap_or_else(|| format!("02{}", service.public_key.to_hex()));
    let refund = format!("02{}", id.keys()?.public_key().to_hex());
    let locktime = Timestamp::now()
        .as_secs()
        .saturating_add(args.lock_minutes.saturating_mul(60));
    let home = id.home()?;
    match paygress_cashu::lock_token(&token, &to, &refund, locktime).await {
        Ok(locked) => {
            let saved = home.save_token(TokenKind::Locked, &locked.token)?;
            if !args.to.json {
                eprintln!(
                    "Payment locked to the service's key until {} (a copy: {}){}",
                    jiff::Timestamp::from_second(i64::try_from(locktime).unwrap_or(i64::MAX))
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    saved.display(),
                    if locked.fee > 0 {
                        format!("; the mint took {} for the swap", locked.fee)
                    } else {
                        String::new()
                    }
                );
            }
            Ok((locked.token, Some(service)))
        }
        Err(e) => {
            if let Some(unlocked) = &e.unlocked {
                let saved = home.save_token(TokenKind::Change, unlocked)?;
                bail!(
                    "{e}; your money is back as an unlocked token in {} (nothing was sent)",
                    saved.display()
                );
            }
            bail!("{e}; your token was not spent and nothing was sent")
        }
    }
}

/// `~/.ssh/id_ed25519.pub`, when it exists.
fn default_ssh_key() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let path = PathBuf::from(home).join(".ssh").join("id_ed25519.pub");
    path.is_file().then_some(path)
}

/// What the printed ssh command needs besides the reply.
struct LoginHints {
    /// The buyer's `known_hosts`, holding the lease's host keys.
    known_hosts: Option<PathBuf>,
    /// The private key next to the public key sent.
    identity: Option<PathBuf>,
    /// The ready-to-paste command.
    command: String,
}

/// Writes the lease's host keys to the buyer's `known_hosts` (when the reply names
/// them, and they match the fingerprint the service's offer published, if known) and
/// builds the ssh command that uses it.
fn login_hints(
    id: &IdentityArgs,
    a: &paygress_core::AccessDetails,
    key_file: Option<&std::path::Path>,
    offered_fingerprint: Option<&str>,
) -> Result<LoginHints> {
    let port = a.node_port.unwrap_or(a.ssh_port);
    let mut known_hosts = None;
    if !a.host_keys.is_empty() {
        let matches_offer =
            offered_fingerprint.is_none_or(|fp| a.host_keys.iter().any(|k| k.fingerprint == fp));
        if matches_offer {
            match id.home()?.trust_host_keys(&a.ssh_host, port, &a.host_keys) {
                Ok(path) => known_hosts = Some(path),
                Err(e) => eprintln!("warning: the lease's host key was not recorded: {e}"),
            }
        } else {
            eprintln!(
                "warning: the lease's host key is not the one the service's offer names ({}); it was not recorded: check it before you log in",
                offered_fingerprint.unwrap_or_default()
            );
        }
    }
    let identity = key_file
        .and_then(|p| p.to_str())
        .and_then(|p| p.strip_suffix(".pub"))
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let mut command = String::from("ssh");
    if let Some(kh) = &known_hosts {
        command.push_str(&format!(" -o UserKnownHostsFile={}", shell_word(kh)));
    }
    if let Some(key) = &identity {
        command.push_str(&format!(" -i {}", shell_word(key)));
    }
    if a.password_login && identity.is_none() {
        command.push_str(" -o PreferredAuthentications=password -o PubkeyAuthentication=no");
    }
    command.push_str(&format!(" -p {port} {}@{}", a.ssh_username, a.ssh_host));
    Ok(LoginHints {
        known_hosts,
        identity,
        command,
    })
}

/// `path` quoted for a POSIX shell when it needs it.
fn shell_word(path: &std::path::Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn any_relays(list: &[String]) -> Result<Vec<RelayUrl>> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| RelayUrl::parse(s.trim()).with_context(|| format!("invalid relay URL {s:?}")))
        .collect()
}

/// The mint of `token`, read offline.
fn token_mint(token: &CashuToken) -> Result<paygress_core::MintUrl> {
    use std::str::FromStr;
    let decoded = paygress_cashu::cdk::nuts::Token::from_str(token.expose().trim())
        .context("cannot decode the token")?;
    let mint = decoded
        .mint_url()
        .context("the token names no single mint")?;
    Ok(paygress_cashu::normalize_mint_url(&mint.to_string())?)
}

/// Surveys the market on `--relay` and picks the cheapest live provider for `--tier`
/// within `--max-price` that accepts the buyer's mints; says which on stderr.
async fn pick_provider(
    args: &RequestArgs,
    token: &CashuToken,
) -> Result<(ServiceRef, Option<String>, Option<String>)> {
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
    let opts = SurveyOptions {
        timeout: Duration::from_secs(args.to.timeout.min(15)),
        ..SurveyOptions::default()
    };
    let pb = spinner("Looking for providers".into(), args.to.json);
    let listings = market::survey(&relay_urls, &opts).await;
    pb.finish_and_clear();
    let listings = listings?;
    let tier = args.tier.as_deref();
    let max = args.max_price.map(|sat| sat.saturating_mul(1000));
    let Some(chosen) = market::cheapest(&listings, tier, max, &mints) else {
        let live = listings
            .iter()
            .filter(|l| l.reachability.latency().is_some())
            .count();
        let mints: Vec<&str> = mints.iter().map(|m| m.as_str()).collect();
        bail!(
            "no live provider sells tier {} for at most {} sat/hour accepting {} ({} offers found, {live} answered). Your token was not sent.",
            tier.unwrap_or("(default)"),
            args.max_price
                .map_or_else(|| "any".to_owned(), |p| p.to_string()),
            mints.join(", "),
            listings.len()
        );
    };
    let price = chosen.price_msat_per_hour(tier).unwrap_or_default();
    // On stderr even with --json: stdout stays the reply.
    eprintln!(
        "Chose {} ({}): {} sat/hour{}, answered in {} ms",
        chosen.offer.offer.offer.name,
        npub(&chosen.offer.service),
        sat_string(price),
        tier.map(|t| format!(" for tier {t}")).unwrap_or_default(),
        chosen.reachability.latency().map_or(0, |d| d.as_millis())
    );
    Ok((
        ServiceRef {
            public_key: chosen.offer.service,
            relays: chosen.relays.clone(),
        },
        chosen.offer.offer.host_key_fingerprint.clone(),
        chosen.offer.offer.offer.locking_key.clone(),
    ))
}

fn npub(pk: &paygress_nostr::nostr_sdk::PublicKey) -> String {
    pk.to_bech32().unwrap_or_else(|_| pk.to_hex())
}

/// `paygress topup`.
pub async fn top_up(id: &IdentityArgs, args: TopUpArgs) -> Result<()> {
    let request = Request::TopUp(TopUpRequest {
        pod_name: args.pod,
        cashu_token: read_token(&args.token)?,
    });
    let reply = send(id, &args.to, request).await?;
    report(id, &reply, args.to.json)
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

/// `paygress offers`.
pub async fn offers(args: OffersArgs) -> Result<()> {
    let urls = parse_relays(&args.relays)?;
    let opts = SurveyOptions {
        timeout: Duration::from_secs(args.timeout),
        probe: !args.no_check,
        now: None,
    };
    let pb = spinner("Looking for providers".into(), args.json);
    let found = market::survey(&urls, &opts).await;
    pb.finish_and_clear();
    let mut found = found.with_context(|| format!("querying {}", args.relays.join(", ")))?;
    let by = match args.sort {
        OfferSort::Price => SortBy::Price,
        OfferSort::Latency => SortBy::Latency,
    };
    market::sort(&mut found, by, args.tier.as_deref());
    let now = Timestamp::now().as_secs();
    if args.json {
        let list: Vec<serde_json::Value> = found.iter().map(|l| listing_json(l, now)).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if found.is_empty() {
        println!("No Paygress offers on {}", args.relays.join(", "));
        return Ok(());
    }
    println!(
        "{:<63} {:<16} {:<28} {:>7} {:>10}  mints",
        "service (npub)", "name", "sat/hour per tier", "age", "reachable"
    );
    for l in &found {
        let offer = &l.offer.offer.offer;
        let tiers: Vec<String> = prices(&l.offer.offer)
            .into_iter()
            .map(|(tier, msat)| {
                format!(
                    "{}:{}",
                    tier.unwrap_or_else(|| "-".into()),
                    sat_string(msat)
                )
            })
            .collect();
        let mints: Vec<&str> = offer.mints.iter().map(|m| m.as_str()).collect();
        let reach = match l.reachability {
            Reachability::Answered { latency_ms } => format!("{latency_ms} ms"),
            Reachability::NoAnswer => "no answer".into(),
            Reachability::NotChecked => "-".into(),
        };
        println!(
            "{:<63} {:<16} {:<28} {:>7} {:>10}  {}",
            npub(&l.offer.service),
            offer.name,
            tiers.join(" "),
            age(now.saturating_sub(l.offer.published_at.as_secs())),
            reach,
            mints.join(",")
        );
    }
    Ok(())
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

fn listing_json(l: &Listing, now: u64) -> serde_json::Value {
    let o = &l.offer;
    let prices: Vec<serde_json::Value> = prices(&o.offer)
        .into_iter()
        .map(|(tier, msat)| json!({"tier": tier, "msat_per_hour": msat, "sat_per_hour": sat_string(msat)}))
        .collect();
    json!({
        "service": o.service.to_hex(),
        "npub": npub(&o.service),
        "name": o.offer.offer.name,
        "identifier": o.identifier,
        "kind": o.kind,
        "published_at": o.published_at.as_secs(),
        "age_seconds": now.saturating_sub(o.published_at.as_secs()),
        "expires_at": o.expires_at.map(|t| t.as_secs()),
        "prices": prices,
        "mints": o.offer.offer.mints,
        "relays": l.relays,
        "reachable": l.reachability.latency().is_some(),
        "latency_ms": l.reachability.latency().map(|d| d.as_millis() as u64),
        "offer": o.offer,
    })
}
