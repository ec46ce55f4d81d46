//! The offer: what the service sells and on which terms.

use serde::{Deserialize, Serialize};

use crate::money::{MintUrl, Unit};
use crate::pricing::{DurationLimits, Rate, Tier};

/// A tier as advertised.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = TierOfferBody))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierOffer {
    /// Id to request.
    pub id: String,
    /// CPU millicores.
    pub cpu_millicores: u32,
    /// Memory MiB.
    pub memory_mib: u32,
    /// Price in msat per hour.
    pub rate_msat_per_hour: u64,
}

impl TierOffer {
    /// Advertises `tier` with `base` as the fallback rate.
    pub fn new(tier: &Tier, base: Rate) -> Self {
        Self {
            id: tier.id.clone(),
            cpu_millicores: tier.cpu_millicores,
            memory_mib: tier.memory_mib,
            rate_msat_per_hour: tier.rate.unwrap_or(base).msat_per_hour(),
        }
    }
}

/// What the service sells and on which terms; transports publish it (Nostr kind
/// 38383, `GET /offer`) and may add their own fields around it.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = OfferBody))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Operator-chosen service name.
    pub name: String,
    /// Paygress version.
    pub version: String,
    /// Base rate in sat per hour (the seed's `PAYMENT_RATE_SATS_PER_HOUR`).
    pub rate_sats_per_hour: u64,
    /// Base rate in msat per hour (exact).
    pub rate_msat_per_hour: u64,
    /// Tiers with their rates.
    pub tiers: Vec<TierOffer>,
    /// Shortest lease, minutes (rounded up).
    pub min_duration_minutes: u64,
    /// Longest lease, minutes (rounded down).
    pub max_duration_minutes: u64,
    /// Accepted mints.
    #[cfg_attr(feature = "schema", schema(value_type = Vec<String>))]
    pub mints: Vec<MintUrl>,
    /// Accepted units (`sat`, `msat`).
    #[cfg_attr(feature = "schema", schema(value_type = Vec<String>))]
    pub units: Vec<Unit>,
    /// Host buyers connect to.
    pub ssh_host: String,
    /// Which backend runs leases (`kubernetes`, `local`, …).
    pub backend: String,
    /// Images a buyer may ask for (the default first).
    pub images: Vec<String>,
    /// The public key (compressed secp256k1, hex) a payment may be locked to (NUT-11
    /// P2PK, one signature, with a locktime and the buyer's refund key); absent when the
    /// service refuses locked tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locking_key: Option<String>,
}

impl Offer {
    /// The limits, in seconds, as the offer states them.
    pub fn limits(&self) -> DurationLimits {
        DurationLimits {
            min_seconds: self.min_duration_minutes * 60,
            max_seconds: self.max_duration_minutes * 60,
        }
    }
}
