//! The service's offer (its prices and limits), read the way the request travels:
//! `GET /offer` over HTTP, the published offer event over Nostr.

use std::time::Duration;

use paygress_core::{Offer, Rate, Unit};
use paygress_nostr::market::{self, SurveyOptions};

use crate::{BuyerError, Route};

/// Reads the offer of the service `route` leads to. Over Nostr the offer is looked for
/// on the buyer's relays and the service's relay hints.
pub async fn fetch_offer(route: &Route, timeout: Duration) -> Result<Offer, BuyerError> {
    match route {
        Route::Http { base, .. } => {
            let url = format!(
                "{}{}",
                base.trim_end_matches('/'),
                paygress_http::paths::OFFER
            );
            let unreadable = |reason: String| BuyerError::NoOffer {
                service: base.clone(),
                reason,
            };
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| unreadable(e.to_string()))?;
            let resp = client
                .get(&url)
                .send()
                .await
                .map_err(|e| unreadable(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(unreadable(format!("GET {url} answered {}", resp.status())));
            }
            resp.json::<Offer>()
                .await
                .map_err(|e| unreadable(e.to_string()))
        }
        Route::Nostr {
            service, relays, ..
        } => {
            let mut urls = relays.clone();
            for r in &service.relays {
                if !urls.contains(r) {
                    urls.push(r.clone());
                }
            }
            let opts = SurveyOptions {
                timeout,
                probe: false,
                now: None,
            };
            let listings = market::survey(&urls, &opts).await?;
            listings
                .into_iter()
                .find(|l| l.offer.service == service.public_key)
                .map(|l| l.offer.offer.offer)
                .ok_or_else(|| BuyerError::NoOffer {
                    service: service.public_key.to_hex(),
                    reason: "no live offer of it on the relays given".to_owned(),
                })
        }
    }
}

/// The rate of `tier` in `offer` (its base rate when the tier is not listed).
pub fn tier_rate(offer: &Offer, tier: &str) -> Option<Rate> {
    let msat = offer
        .tiers
        .iter()
        .find(|t| t.id == tier)
        .map_or(offer.rate_msat_per_hour, |t| t.rate_msat_per_hour);
    Rate::from_msat_per_hour(msat)
}

/// The price in sat of `seconds` of `tier` at `offer`'s rate (rounded up, as the
/// service rounds).
pub fn price_sat(offer: &Offer, tier: &str, seconds: u64) -> Option<u64> {
    tier_rate(offer, tier).map(|r| r.price_in(seconds, Unit::Sat))
}

/// The shortest lease `offer` sells, in seconds (at least one).
pub fn min_seconds(offer: &Offer) -> u64 {
    offer.min_duration_minutes.saturating_mul(60).max(1)
}
