//! The checks at the end of a run: leases, money per request, expiry, and the
//! service's wallet.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use paygress_cashu::testkit::Buyer;
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::{Amount, CashuToken, MintUrl, Unit};
use serde_json::Value;

use super::outcome::{Outcome, token_value};
use super::report::Report;

/// Leases: one per request at most, every `listed` one paid for.
pub(super) fn check_leases(outcomes: &[Outcome], listed: &[Value], report: &mut Report) {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, out) in outcomes.iter().enumerate() {
        if out.pods.len() > 1 {
            report.double_provisions += 1;
            report
                .problems
                .push(format!("request {i} got {} leases", out.pods.len()));
        }
        for p in &out.pods {
            if let Some(j) = owner.insert(p, i) {
                report.double_provisions += 1;
                report
                    .problems
                    .push(format!("lease {p} granted to requests {j} and {i}"));
            }
        }
    }
    for l in listed {
        let name = l["pod_name"].as_str().unwrap_or_default();
        if !owner.contains_key(name) {
            report.unpaid_leases += 1;
            report
                .problems
                .push(format!("lease {name} is listed but no request got it"));
        }
    }
}

/// Money per request: returned tokens redeem for their value, refused `tokens` are
/// still spendable, and each request's value is accounted for. Returns the wallet the
/// tokens were redeemed into.
pub(super) async fn check_money(
    outcomes: &[Outcome],
    tokens: &[CashuToken],
    mint_url: &MintUrl,
    report: &mut Report,
) -> Result<Buyer> {
    let mut payee = Buyer::new(mint_url, Unit::Sat).await?;
    for (i, out) in outcomes.iter().enumerate() {
        if i % 25 == 24 {
            // A fresh wallet now and then: one wallet slows down as proofs pile up.
            payee = Buyer::new(mint_url, Unit::Sat).await?;
        }
        report.paid_sats += out.value;
        if !out.pods.is_empty() {
            report.leases += 1;
        }
        report.charged_sats += out.charged;
        let mut returned = 0;
        for (kind, t) in [("change", &out.change), ("refund", &out.refund)] {
            let Some(t) = t else { continue };
            if kind == "change" {
                report.changes += 1;
            } else {
                report.refunds += 1;
            }
            let face = token_value(t);
            match payee.redeem(t).await {
                Ok(got) => {
                    returned += got;
                    if got != face {
                        report
                            .problems
                            .push(format!("request {i}: {kind} of {face} redeemed for {got}"));
                    }
                }
                Err(e) => report
                    .problems
                    .push(format!("request {i}: {kind} token does not redeem: {e}")),
            }
        }
        if out.untouched && out.refund.is_none() {
            match payee.redeem(&tokens[i]).await {
                Ok(got) => {
                    report.untouched += 1;
                    returned += got;
                }
                Err(e) => report.problems.push(format!(
                    "request {i}: refused ({:?}) but its token is gone: {e}",
                    out.code
                )),
            }
        }
        check_release_refund(i, out, &payee, report).await;
        report.returned_sats += returned;
        let accounted = out.charged + returned;
        if accounted < out.value {
            report.lost_sats += out.value - accounted;
            report.problems.push(format!(
                "request {i}: paid {} but got {} of lease time and {} back ({:?})",
                out.value, out.charged, returned, out.code
            ));
        } else if accounted > out.value {
            report.over_returned_sats += accounted - out.value;
            report.problems.push(format!(
                "request {i}: paid {} but got {} of lease time and {} back",
                out.value, out.charged, returned
            ));
        }
    }
    Ok(payee)
}

/// A release's refund redeems for what its answer says, and is worth at most the
/// lease's time left when the release was sent.
async fn check_release_refund(i: usize, out: &Outcome, payee: &Buyer, report: &mut Report) {
    let Some(release) = &out.release else {
        return;
    };
    if release.released {
        report.releases += 1;
    }
    let Some(t) = &release.refund else {
        return;
    };
    let face = token_value(t);
    match payee.redeem(t).await {
        Ok(got) => {
            report.released_sats += got;
            if got != face || got != release.amount {
                report.problems.push(format!(
                    "request {i}: release refund of {} (token face {face}) redeemed for {got}",
                    release.amount
                ));
            }
            if got > release.bound() {
                report.operator_problems.push(format!(
                    "request {i}: release returned {got} but only {} s were left",
                    release.bound()
                ));
            }
        }
        Err(e) => report
            .problems
            .push(format!("request {i}: release refund does not redeem: {e}")),
    }
}

/// Expiry: after the last lease's end (and the backend's own timers), none is
/// reachable.
pub(super) async fn check_expiry(outcomes: &[Outcome], report: &mut Report) {
    let last = outcomes
        .iter()
        .flat_map(|o| o.expires.iter())
        .max()
        .copied();
    let Some(last) = last else {
        return;
    };
    let wait = (last.as_second() - jiff::Timestamp::now().as_second()).max(0) as u64 + 5;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let all_ports: HashSet<u16> = outcomes
        .iter()
        .flat_map(|o| o.ssh_ports.iter().copied())
        .collect();
    loop {
        let mut alive = 0;
        for p in &all_ports {
            if tokio::net::TcpStream::connect(("127.0.0.1", *p))
                .await
                .is_ok()
            {
                alive += 1;
            }
        }
        if alive == 0 || Instant::now() > deadline {
            report.alive_after_expiry = alive;
            if alive > 0 {
                report
                    .problems
                    .push(format!("{alive} lease port(s) still open after expiry"));
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Opens the stopped service's wallet, and moves its whole balance to `payee` (proving
/// it real); returns the balance.
pub(super) async fn wallet_balance(data_dir: &Path, mint: &str, payee: &Buyer) -> Result<u64> {
    let config = CashuConfig::new(data_dir.join("cashu.db"), [mint.to_owned()])?;
    let wallet = CashuVerifier::open(&config).await?;
    for (m, unit, e) in wallet.warm_up().await {
        if unit == Unit::Sat {
            bail!("wallet at {m}: {e}");
        }
    }
    let held: u64 = wallet
        .balances()
        .await?
        .iter()
        .filter(|b| b.amount.unit == Unit::Sat)
        .map(|b| b.amount.value)
        .sum();
    if held > 0 {
        let token = wallet.send(Amount::sat(held), None).await?;
        let got = payee.redeem(&token).await?;
        if got != held {
            bail!("the wallet's balance of {held} redeemed for {got}");
        }
    }
    Ok(held)
}
