//! Picking a provider from the market when the buyer names none.

use std::time::Duration;

use paygress_core::{CashuToken, MintUrl};
use paygress_nostr::ServiceRef;
use paygress_nostr::market::{self, Listing, SurveyOptions};
use paygress_nostr::nostr_sdk::RelayUrl;

use crate::BuyerError;

/// What the buyer asks of a provider.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// The tier (`None`: each provider's default tier).
    pub tier: Option<String>,
    /// The most to pay per hour, in msat.
    pub max_msat_per_hour: Option<u64>,
    /// Mints the buyer holds tokens of (the provider must accept one).
    pub mints: Vec<MintUrl>,
}

/// The provider chosen, and what its offer says the buyer will need.
#[derive(Debug, Clone)]
pub struct Picked {
    /// Where to send the request.
    pub service: ServiceRef,
    /// The offer's SSH host-key fingerprint, to check the reply's host key against.
    pub host_key_fingerprint: Option<String>,
    /// The offer's key for locked payments (NUT-11), when it accepts them.
    pub locking_key: Option<String>,
    /// The listing it was chosen from (name, price, latency).
    pub listing: Listing,
}

/// The mint of `token`, read offline (no request to the mint).
pub fn token_mint(token: &CashuToken) -> Result<MintUrl, BuyerError> {
    use std::str::FromStr;
    let decoded = paygress_cashu::cdk::nuts::Token::from_str(token.expose().trim())
        .map_err(|_| BuyerError::InvalidArgument("cannot decode the token".to_owned()))?;
    let mint = decoded
        .mint_url()
        .map_err(|_| BuyerError::InvalidArgument("the token names no single mint".to_owned()))?;
    paygress_cashu::normalize_mint_url(&mint.to_string())
        .map_err(|e| BuyerError::InvalidArgument(format!("the token's mint: {e}")))
}

/// Surveys the market on `relays` (each provider is sent a status request) and picks
/// the cheapest live provider for `wanted.tier` within `wanted.max_msat_per_hour` that
/// accepts one of `wanted.mints`. Nothing is paid: on failure the buyer's token was not
/// sent.
pub async fn pick_provider(
    relays: &[RelayUrl],
    wanted: &Wanted,
    timeout: Duration,
) -> Result<Picked, BuyerError> {
    let opts = SurveyOptions {
        timeout,
        ..SurveyOptions::default()
    };
    let listings = market::survey(relays, &opts).await?;
    let tier = wanted.tier.as_deref();
    let Some(chosen) = market::cheapest(&listings, tier, wanted.max_msat_per_hour, &wanted.mints)
    else {
        let answered = listings
            .iter()
            .filter(|l| l.reachability.latency().is_some())
            .count();
        return Err(BuyerError::NoProvider {
            tier: tier.unwrap_or("(default)").to_owned(),
            max_sat_per_hour: wanted.max_msat_per_hour.map(|m| m / 1000),
            mints: wanted.mints.iter().map(|m| m.as_str().to_owned()).collect(),
            found: listings.len(),
            answered,
        });
    };
    Ok(Picked {
        service: ServiceRef {
            public_key: chosen.offer.service,
            relays: chosen.relays.clone(),
        },
        host_key_fingerprint: chosen.offer.offer.host_key_fingerprint.clone(),
        locking_key: chosen.offer.offer.offer.locking_key.clone(),
        listing: chosen.clone(),
    })
}
