//! `paygress offers`: the services' offers found on relays.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use paygress_buyer::parse_relays;
use paygress_nostr::market::{self, Listing, Reachability, SortBy, SurveyOptions};
use paygress_nostr::nostr_sdk::{Timestamp, ToBech32};
use paygress_nostr::offer::{prices, sat_string};
use serde_json::json;

use super::send::spinner;

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

pub(super) fn npub(pk: &paygress_nostr::nostr_sdk::PublicKey) -> String {
    pk.to_bech32().unwrap_or_else(|_| pk.to_hex())
}
