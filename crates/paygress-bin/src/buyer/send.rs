//! Sending a request the way `--service`/`--http` say, with a spinner while waiting.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use paygress_buyer::{Progress, Route, Waits};
use paygress_core::{ErrorCode, Reply, Request};
use paygress_nostr::client::awaits_follow_up;
use paygress_nostr::nostr_sdk::RelayUrl;
use paygress_nostr::{Scheme, ServiceRef, resolve_service};

use super::{IdentityArgs, ServiceArgs};

/// A spinner on stderr (hidden with `--json`).
pub(super) fn spinner(msg: String, quiet: bool) -> ProgressBar {
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
pub(super) async fn send(id: &IdentityArgs, to: &ServiceArgs, request: Request) -> Result<Reply> {
    send_to(id, to, request, None).await
}

/// The waits `--timeout` and `--follow-up-timeout` ask for.
pub(super) fn waits(to: &ServiceArgs) -> Waits {
    Waits {
        reply: Duration::from_secs(to.timeout),
        follow_up: Duration::from_secs(to.follow_up_timeout),
    }
}

/// Where requests go: `picked`, else `--service` (resolved), else `--http`. A release
/// over HTTP carries the key its lease was bought with (`release_of`).
pub(super) async fn route(
    id: &IdentityArgs,
    to: &ServiceArgs,
    release_of: Option<&str>,
    picked: Option<ServiceRef>,
) -> Result<Route> {
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
    Ok(match (service, &to.http) {
        (None, Some(base)) => Route::Http {
            base: base.clone(),
            lease_key: match release_of {
                Some(pod) => Some(lease_key(id, pod)?),
                None => None,
            },
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
    })
}

/// The owner key an HTTP release must carry: the `Idempotency-Key` its lease was bought
/// with (it proves ownership).
fn lease_key(id: &IdentityArgs, pod: &str) -> Result<String> {
    let home = id.home()?;
    match home.lease_key(pod)? {
        Some(key) => Ok(key),
        None => bail!(
            "no key for lease {pod} in {}: over HTTP only the machine that bought a lease can release it",
            home.dir().join("leases").display()
        ),
    }
}

/// Sends `request` to `picked` (else `--service`, else `--http`) and returns the reply.
pub(super) async fn send_to(
    id: &IdentityArgs,
    to: &ServiceArgs,
    request: Request,
    picked: Option<ServiceRef>,
) -> Result<Reply> {
    let release_of = match &request {
        Request::Release(r) => Some(r.pod_name.as_str()),
        _ => None,
    };
    let route = route(id, to, release_of, picked).await?;
    let mut pb: Option<ProgressBar> = None;
    let spawn = matches!(request, Request::Spawn(_));
    let sent = paygress_buyer::send(&route, request, waits(to), |p| match p {
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

fn any_relays(list: &[String]) -> Result<Vec<RelayUrl>> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| RelayUrl::parse(s.trim()).with_context(|| format!("invalid relay URL {s:?}")))
        .collect()
}
