//! The buyer's commands: `keygen`, `whoami`, `offers`, `request`, `topup`, `status`.
//! One command replaces the seed's nak + jq + cashu ritual.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use paygress_core::{
    CashuToken, ErrorCode, Reply, Request, SpawnRequest, StatusRequest, TopUpRequest,
};
use paygress_nostr::client::awaits_follow_up;
use paygress_nostr::market::{self, Listing, Reachability, SortBy, SurveyOptions};
use paygress_nostr::nostr_sdk::{FromBech32, Keys, RelayUrl, SecretKey, Timestamp, ToBech32};
use paygress_nostr::offer::{prices, sat_string};
use paygress_nostr::{NostrError, Scheme, SendOptions, ServiceRef, reach, resolve_service};
use serde_json::json;

/// Where the buyer's identity and saved tokens live.
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// Use this key (nsec or hex) instead of the stored identity.
    #[arg(long, env = "PAYGRESS_NSEC", hide_env_values = true, global = true)]
    pub nsec: Option<String>,
    /// Directory for the identity and saved tokens
    /// [default: $XDG_CONFIG_HOME/paygress or ~/.config/paygress].
    #[arg(long, env = "PAYGRESS_CONFIG_DIR", global = true)]
    pub config_dir: Option<PathBuf>,
}

impl IdentityArgs {
    fn dir(&self) -> Result<PathBuf> {
        if let Some(d) = &self.config_dir {
            return Ok(d.clone());
        }
        if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(x).join("paygress"));
        }
        let home = std::env::var_os("HOME").context("HOME is not set; pass --config-dir")?;
        Ok(PathBuf::from(home).join(".config").join("paygress"))
    }

    fn identity_file(&self) -> Result<PathBuf> {
        Ok(self.dir()?.join("identity.nsec"))
    }

    /// The buyer's keys: `--nsec`, else the stored identity.
    pub fn keys(&self) -> Result<Keys> {
        if let Some(s) = &self.nsec {
            return parse_secret(s);
        }
        let path = self.identity_file()?;
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no buyer identity at {}: run `paygress keygen` first (or pass --nsec)",
                path.display()
            )
        })?;
        parse_secret(text.trim())
    }
}

fn parse_secret(s: &str) -> Result<Keys> {
    let s = s.trim();
    let secret = if s.starts_with("nsec1") {
        SecretKey::from_bech32(s).context("invalid nsec")?
    } else {
        SecretKey::from_hex(s).context("invalid secret key (expected nsec1… or 64 hex)")?
    };
    Ok(Keys::new(secret))
}

/// Writes `contents` to `path` with mode 0600 (also when it existed), creating parent
/// directories with mode 0700.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        paygress_store::private::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn print_identity(keys: &Keys) -> Result<()> {
    let pk = keys.public_key();
    println!("npub: {}", pk.to_bech32()?);
    println!("hex:  {}", pk.to_hex());
    Ok(())
}

/// `paygress keygen`: creates the buyer identity.
pub fn keygen(id: &IdentityArgs, force: bool) -> Result<()> {
    let path = id.identity_file()?;
    if path.exists() && !force {
        bail!(
            "an identity already exists at {} (use --force to replace it; its old key is lost)",
            path.display()
        );
    }
    let keys = Keys::generate();
    write_private(&path, &format!("{}\n", keys.secret_key().to_bech32()?))?;
    eprintln!("Saved a new identity to {} (mode 0600)", path.display());
    print_identity(&keys)
}

/// `paygress whoami`.
pub fn whoami(id: &IdentityArgs) -> Result<()> {
    print_identity(&id.keys()?)
}

/// Parses `90m`, `2h`, `1d`, `45` (minutes) into whole minutes.
pub fn parse_duration_minutes(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'm')) => (&s[..i], 1),
        Some((i, 'h')) => (&s[..i], 60),
        Some((i, 'd')) => (&s[..i], 24 * 60),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("duration {s:?}: expected e.g. 90m, 2h, 1d"))?;
    let minutes = n
        .checked_mul(mult)
        .with_context(|| format!("duration {s:?} is too long"))?;
    if minutes == 0 {
        bail!("duration must be at least one minute");
    }
    Ok(minutes)
}

/// Reads a token from the argument: the token itself, `-` for stdin, or a file path.
pub fn read_token(arg: &str) -> Result<CashuToken> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the token from stdin")?;
        s
    } else if arg.starts_with("cashu") {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg)
            .with_context(|| format!("{arg:?} is not a cashu token nor a readable file"))?
    };
    let token = text.trim();
    if !token.starts_with("cashuA") && !token.starts_with("cashuB") {
        bail!("not a Cashu token (expected cashuA… or cashuB…)");
    }
    Ok(CashuToken::new(token))
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
    /// An SSH public key file to authorise (e.g. ~/.ssh/id_ed25519.pub).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
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

fn relays(list: &[String]) -> Result<Vec<RelayUrl>> {
    if list.is_empty() {
        bail!("give at least one --relay");
    }
    any_relays(list)
}

fn any_relays(list: &[String]) -> Result<Vec<RelayUrl>> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| RelayUrl::parse(s.trim()).with_context(|| format!("invalid relay URL {s:?}")))
        .collect()
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

/// Sends `request` to `picked` (else `--service`, else `--http`) and returns the reply.
async fn send_to(
    id: &IdentityArgs,
    to: &ServiceArgs,
    request: Request,
    picked: Option<ServiceRef>,
) -> Result<Reply> {
    let timeout = Duration::from_secs(to.timeout);
    let pays = !matches!(request, Request::Status(_));
    if let (Some(base), None) = (&to.http, &picked) {
        let pb = spinner(format!("Waiting for {base}"), to.json);
        let reply = send_http(base, &request, timeout).await;
        pb.finish_and_clear();
        return reply;
    }
    let service = match picked {
        Some(s) => s,
        None => {
            let name = to
                .service
                .as_deref()
                .context("--service is required (npub, nprofile or NIP-05 name), or --http")?;
            resolve_service(name, timeout).await?
        }
    };
    let relay_urls = any_relays(&to.relays)?;
    let keys = id.keys()?;
    let scheme = if to.nip17 {
        Scheme::Nip17
    } else {
        Scheme::Nip44
    };
    let (client, route) = reach(keys, &relay_urls, &service, scheme, timeout)
        .await
        .with_context(|| format!("reaching the service through {}", to.relays.join(", ")))?;
    let client = client.with_timeout(timeout);
    let tried: Vec<String> = route.write.iter().map(ToString::to_string).collect();
    let tried = tried.join(", ");
    let opts = SendOptions {
        scheme,
        p_tag: true,
    };
    let prepared = client.prepare(&request, opts).await?;
    if let Err(e) = client.publish(&prepared.event).await {
        client.shutdown().await;
        let note = if pays {
            " Your token was not sent and is not spent."
        } else {
            ""
        };
        bail!("no relay accepted the request (tried {tried}): {e}.{note}");
    }
    let pb = spinner(
        format!(
            "Request {} sent; waiting for the reply",
            prepared.reply_key.to_hex()
        ),
        to.json,
    );
    let follow_up = Duration::from_secs(to.follow_up_timeout);
    let reply = client
        .wait_final(prepared.reply_key, timeout, follow_up, |r| {
            pb.set_message(follow_up_message(r, to.follow_up_timeout));
        })
        .await;
    pb.finish_and_clear();
    client.shutdown().await;
    match reply {
        Ok(r) => {
            if awaits_follow_up(&r) && !to.json {
                eprintln!(
                    "Gave up waiting after {}s; the service still owes this request (id {}) its token and will send it as a new reply.",
                    to.follow_up_timeout,
                    prepared.reply_key.to_hex()
                );
            }
            Ok(r)
        }
        Err(NostrError::Timeout(_)) => {
            let note = if pays {
                " The service may have redeemed the token: wait and run `paygress status`, or check the token with your wallet."
            } else {
                ""
            };
            bail!(
                "no reply within {}s from relays {tried} (request id {}).{note}",
                to.timeout,
                prepared.reply_key.to_hex()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Attempts of one paid HTTP request (the first and the retries).
const HTTP_ATTEMPTS: u32 = 3;

/// A fresh random `Idempotency-Key` (64 hex digits from the OS RNG). The service only
/// repeats a paid request's answer (login details, change) to a request carrying the same
/// key, so it is kept for this request's own retries and never reused.
fn idempotency_key() -> String {
    Keys::generate().secret_key().to_secret_hex()
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

async fn send_http(base: &str, request: &Request, timeout: Duration) -> Result<Reply> {
    let base = base.trim_end_matches('/');
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let key = idempotency_key();
    let mut attempt = 1;
    let resp = loop {
        let sent = match request {
            Request::Spawn(r) => {
                client
                    .post(format!("{base}/spawn-pod"))
                    .header("Idempotency-Key", &key)
                    .json(r)
                    .send()
                    .await
            }
            Request::TopUp(r) => {
                client
                    .post(format!("{base}/top-up-pod"))
                    .header("Idempotency-Key", &key)
                    .json(r)
                    .send()
                    .await
            }
            Request::Status(r) => {
                client
                    .get(format!("{base}/pods/{}", r.pod_name))
                    .send()
                    .await
            }
        };
        // A paid request whose answer was lost (no connection, timeout, or the service's
        // own 503 timeout) is sent again with the same key: the service answers it once.
        let retry = match &sent {
            Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            Ok(r) => r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
        };
        if !retry || attempt >= HTTP_ATTEMPTS || matches!(request, Request::Status(_)) {
            break sent;
        }
        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        attempt += 1;
    }
    .with_context(|| format!("no answer from {base}"))?;
    let status = resp.status();
    let mut body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("{base} answered {status} with a body that is not JSON"))?;
    // The HTTP API answers with the reply's fields but no `type`: errors carry `code`,
    // otherwise the request decides which reply it is.
    let kind = if body.get("code").is_some() {
        "error"
    } else {
        match request {
            Request::Spawn(_) => "access_details",
            Request::TopUp(_) => "top_up",
            Request::Status(_) => "status",
        }
    };
    if let Some(fields) = body.as_object_mut() {
        fields.insert("type".to_owned(), json!(kind));
    }
    serde_json::from_value(body)
        .with_context(|| format!("{base} answered {status} with an unexpected body"))
}

/// Saves a change or refund token to the config dir; returns where.
fn save_token(id: &IdentityArgs, what: &str, token: &CashuToken) -> Result<PathBuf> {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    let dir = id.dir()?.join("tokens");
    let mut path = dir.join(format!("{stamp}-{what}.cashu"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("{stamp}-{what}-{n}.cashu"));
    }
    write_private(&path, &format!("{}\n", token.expose()))?;
    // The tokens directory is Paygress's own: private even if an older version made it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    Ok(path)
}

/// Prints a reply for humans or as JSON, saving any returned token. Fails on an error reply.
fn report(id: &IdentityArgs, reply: &Reply, as_json: bool) -> Result<()> {
    let saved = match reply.returned_token() {
        Some(t) => {
            let what = if matches!(reply, Reply::Error(_)) {
                "refund"
            } else {
                "change"
            };
            Some(save_token(id, what, t)?)
        }
        None => None,
    };
    if as_json {
        let mut v = serde_json::to_value(reply)?;
        if let Some(p) = &saved {
            v["saved_token_file"] = json!(p.display().to_string());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match reply {
            Reply::AccessDetails(a) => {
                let port = a.node_port.unwrap_or(a.ssh_port);
                println!("Lease {} is ready until {}", a.pod_name, a.expires_at);
                println!();
                println!("  ssh -p {port} {}@{}", a.ssh_username, a.ssh_host);
                println!("  password: {}", a.ssh_password.expose());
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
            Reply::Error(e) => {
                eprintln!("The service refused: {} ({})", e.message, code_name(e.code));
            }
        }
        if let Some(p) = &saved {
            let what = if matches!(reply, Reply::Error(_)) {
                "Refund"
            } else {
                "Change"
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
    let ssh_public_key = match &args.ssh_key {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let picked = if args.to.service.is_none() && args.to.http.is_none() {
        Some(pick_provider(&args, &token).await?)
    } else {
        None
    };
    let request = Request::Spawn(SpawnRequest {
        cashu_token: token,
        ssh_username: args.user,
        pod_image: args.image,
        duration_minutes,
        tier: args.tier,
        ssh_public_key,
    });
    let reply = send_to(id, &args.to, request, picked).await?;
    report(id, &reply, args.to.json)
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
async fn pick_provider(args: &RequestArgs, token: &CashuToken) -> Result<ServiceRef> {
    let relay_urls =
        relays(&args.to.relays).context("without --service, give --relay to find providers on")?;
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
    Ok(ServiceRef {
        public_key: chosen.offer.service,
        relays: chosen.relays.clone(),
    })
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

/// `paygress offers`.
pub async fn offers(args: OffersArgs) -> Result<()> {
    let urls = relays(&args.relays)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_minutes("90m").unwrap(), 90);
        assert_eq!(parse_duration_minutes("2h").unwrap(), 120);
        assert_eq!(parse_duration_minutes("1d").unwrap(), 1440);
        assert_eq!(parse_duration_minutes("45").unwrap(), 45);
        for bad in ["", "0m", "m", "1.5h", "-1h", "1w", "99999999999999999999d"] {
            assert!(parse_duration_minutes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_argument_forms() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "  cashuBabc\n").unwrap();
        assert_eq!(
            read_token(file.to_str().unwrap()).unwrap().expose(),
            "cashuBabc"
        );
        assert_eq!(read_token("cashuAxyz").unwrap().expose(), "cashuAxyz");
        assert!(read_token("/nonexistent/file").is_err());
        std::fs::write(&file, "hello").unwrap();
        assert!(read_token(file.to_str().unwrap()).is_err());
    }

    /// Answers each HTTP request on `listener` with the next of `answers` (status, JSON)
    /// and returns the `Idempotency-Key` each request carried.
    async fn answer_http(
        listener: tokio::net::TcpListener,
        answers: Vec<(u16, &'static str)>,
    ) -> Vec<Option<String>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut keys = Vec::new();
        for (status, body) in answers {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        keys.push(text[..end].lines().find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("idempotency-key")
                                .then(|| value.trim().to_owned())
                        }));
                        break;
                    }
                }
                assert!(n > 0, "connection closed mid-request");
            }
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
        }
        keys
    }

    #[tokio::test]
    async fn http_requests_carry_a_fresh_idempotency_key_kept_across_retries() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(answer_http(
            listener,
            vec![
                (503, r#"{"code":"unavailable","message":"timed out"}"#),
                (409, r#"{"code":"token_already_spent","message":"spent"}"#),
                (409, r#"{"code":"token_already_spent","message":"spent"}"#),
            ],
        ));
        let spawn = Request::Spawn(SpawnRequest {
            cashu_token: CashuToken::new("cashuBabc"),
            ssh_username: None,
            pod_image: None,
            duration_minutes: Some(30),
            tier: None,
            ssh_public_key: None,
        });
        let timeout = Duration::from_secs(30);
        let first = send_http(&base, &spawn, timeout).await.unwrap();
        assert_eq!(first.error_code(), Some(ErrorCode::TokenAlreadySpent));
        let second = send_http(&base, &spawn, timeout).await.unwrap();
        assert_eq!(second.error_code(), Some(ErrorCode::TokenAlreadySpent));
        let keys: Vec<String> = server
            .await
            .unwrap()
            .into_iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0], keys[1], "a retry reuses its request's key");
        assert_ne!(keys[1], keys[2], "a new request gets a new key");
        assert!(
            keys.iter()
                .all(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn identity_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let id = IdentityArgs {
            nsec: None,
            config_dir: Some(dir.path().to_path_buf()),
        };
        assert!(id.keys().is_err(), "no identity yet");
        keygen(&id, false).unwrap();
        let k1 = id.keys().unwrap();
        assert!(keygen(&id, false).is_err(), "no silent overwrite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(id.identity_file().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let over = IdentityArgs {
            nsec: Some(k1.secret_key().to_secret_hex()),
            config_dir: None,
        };
        assert_eq!(over.keys().unwrap().public_key(), k1.public_key());
    }
}
