//! Prices and what a payment buys.
//!
//! All arithmetic is in millisatoshi and seconds with 128-bit intermediates. Time bought
//! is rounded down to the second and prices are rounded up to the msat, so the operator
//! never gains more than one msat or loses more than one second per purchase. Charges in
//! whole units (a `sat` token cannot pay 1.5 sat) are rounded up to the unit, and the
//! buyer receives the extra seconds that rounding paid for.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::money::{Amount, Unit};

const SECS_PER_HOUR: u128 = 3600;

/// A price per hour of lease time, in msat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate {
    msat_per_hour: u64,
}

impl Rate {
    /// A rate in msat per hour; `None` for zero (time would be free and unbounded).
    pub const fn from_msat_per_hour(msat_per_hour: u64) -> Option<Self> {
        if msat_per_hour == 0 {
            None
        } else {
            Some(Self { msat_per_hour })
        }
    }

    /// A rate in sat per hour (`PAYMENT_RATE_SATS_PER_HOUR`).
    pub const fn from_sats_per_hour(sats: u64) -> Option<Self> {
        Self::from_msat_per_hour(sats.saturating_mul(1000))
    }

    /// The rate in msat per hour.
    pub const fn msat_per_hour(self) -> u64 {
        self.msat_per_hour
    }

    /// The price of `seconds` of lease time in msat, rounded up.
    pub fn price_msat(self, seconds: u64) -> u64 {
        let num = seconds as u128 * self.msat_per_hour as u128;
        let price = num.div_ceil(SECS_PER_HOUR);
        u64::try_from(price).unwrap_or(u64::MAX)
    }

    /// The price of `seconds` in whole `unit`s, rounded up.
    pub fn price_in(self, seconds: u64, unit: Unit) -> u64 {
        self.price_msat(seconds).div_ceil(unit.msat_per_unit())
    }

    /// How many whole seconds `msat` buys, rounded down.
    pub fn seconds_for_msat(self, msat: u64) -> u64 {
        let secs = msat as u128 * SECS_PER_HOUR / self.msat_per_hour as u128;
        u64::try_from(secs).unwrap_or(u64::MAX)
    }
}

impl Default for Rate {
    /// 60 sat per hour: one sat buys one minute, as the seed's examples assume.
    fn default() -> Self {
        Self {
            msat_per_hour: 60_000,
        }
    }
}

/// A resource tier a buyer may choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Identifier buyers put in `tier`.
    pub id: String,
    /// CPU in millicores (requests and limits on Kubernetes).
    pub cpu_millicores: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// This tier's own rate; the service's base rate when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

impl Tier {
    /// The tier used when the operator configures none.
    pub fn standard() -> Self {
        Self {
            id: "standard".to_owned(),
            cpu_millicores: 1000,
            memory_mib: 1024,
            rate: None,
        }
    }
}

/// Shortest and longest lease a single payment may buy, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationLimits {
    /// Minimum seconds for a new lease.
    pub min_seconds: u64,
    /// Maximum seconds a lease may have left at any time (also caps top-ups).
    pub max_seconds: u64,
}

impl Default for DurationLimits {
    /// One minute to seven days.
    fn default() -> Self {
        Self {
            min_seconds: 60,
            max_seconds: 7 * 24 * 3600,
        }
    }
}

/// The outcome of pricing a payment: time granted, amount kept, amount to give back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purchase {
    /// Lease seconds granted.
    pub seconds: u64,
    /// Part of the payment the service keeps.
    pub charged: Amount,
    /// Part of the payment returned to the buyer as a change token (may be zero).
    pub change: Amount,
}

/// Why a payment cannot buy what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The requested duration is outside the operator's limits.
    #[error(
        "requested duration {requested_seconds}s is outside the allowed {min_seconds}s..={max_seconds}s"
    )]
    DurationOutOfRange {
        /// What was asked.
        requested_seconds: u64,
        /// Lower bound.
        min_seconds: u64,
        /// Upper bound.
        max_seconds: u64,
    },
    /// The payment is smaller than the price.
    #[error("payment of {paid} is less than the price of {required}")]
    Insufficient {
        /// What the buyer paid.
        paid: Amount,
        /// What it costs.
        required: Amount,
    },
    /// The lease already has the maximum time left; a top-up cannot add more.
    #[error("the lease already has the maximum of {max_seconds}s left")]
    AtMaximum {
        /// The cap.
        max_seconds: u64,
    },
}

/// Prices a new lease.
///
/// With `requested_seconds`, charges exactly that duration's price (rounded up to the
/// payment's unit) and returns the rest as change. Without, buys all the time the
/// payment covers, capped at the maximum; the part beyond the cap is change.
pub fn quote_spawn(
    rate: Rate,
    limits: DurationLimits,
    paid: Amount,
    requested_seconds: Option<u64>,
) -> Result<Purchase, PricingError> {
    match requested_seconds {
        Some(requested) => {
            check_requested(limits, requested)?;
            charge_for(rate, paid, requested, limits.max_seconds)
        }
        None => {
            let affordable = rate.seconds_for_msat(paid.to_msat());
            if affordable < limits.min_seconds {
                return Err(PricingError::Insufficient {
                    paid,
                    required: Amount::new(rate.price_in(limits.min_seconds, paid.unit), paid.unit),
                });
            }
            if affordable > limits.max_seconds {
                charge_for(rate, paid, limits.max_seconds, limits.max_seconds)
            } else {
                Ok(Purchase {
                    seconds: affordable,
                    charged: paid,
                    change: Amount::new(0, paid.unit),
                })
            }
        }
    }
}

/// Checks a requested duration against the limits before any payment is touched.
pub fn check_requested(limits: DurationLimits, requested: u64) -> Result<(), PricingError> {
    if requested < limits.min_seconds || requested > limits.max_seconds {
        return Err(PricingError::DurationOutOfRange {
            requested_seconds: requested,
            min_seconds: limits.min_seconds,
            max_seconds: limits.max_seconds,
        });
    }
    Ok(())
}

/// Prices a top-up of a lease that has `remaining_seconds` left: all the time the
/// payment covers, capped so the lease never has more than `limits.max_seconds` left.
pub fn quote_top_up(
    rate: Rate,
    limits: DurationLimits,
    paid: Amount,
    remaining_seconds: u64,
) -> Result<Purchase, PricingError> {
    let room = limits.max_seconds.saturating_sub(remaining_seconds);
    if room == 0 {
        return Err(PricingError::AtMaximum {
            max_seconds: limits.max_seconds,
        });
    }
    let affordable = rate.seconds_for_msat(paid.to_msat());
    if affordable == 0 {
        return Err(PricingError::Insufficient {
            paid,
            required: Amount::new(rate.price_in(1, paid.unit), paid.unit),
        });
    }
    if affordable > room {
        charge_for(rate, paid, room, room)
    } else {
        Ok(Purchase {
            seconds: affordable,
            charged: paid,
            change: Amount::new(0, paid.unit),
        })
    }
}

/// Charges the price of `seconds` from `paid`; the buyer gets every second the charged
/// amount covers (rounding to whole units pays for a little extra), up to `cap`.
fn charge_for(rate: Rate, paid: Amount, seconds: u64, cap: u64) -> Result<Purchase, PricingError> {
    let price = rate.price_in(seconds, paid.unit);
    if paid.value < price {
        return Err(PricingError::Insufficient {
            paid,
            required: Amount::new(price, paid.unit),
        });
    }
    let charged = Amount::new(price, paid.unit);
    let granted = rate
        .seconds_for_msat(charged.to_msat())
        .clamp(seconds, cap.max(seconds));
    Ok(Purchase {
        seconds: granted,
        charged,
        change: Amount::new(paid.value - price, paid.unit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(sats: u64) -> Rate {
        Rate::from_sats_per_hour(sats).unwrap()
    }

    const LIMITS: DurationLimits = DurationLimits {
        min_seconds: 60,
        max_seconds: 24 * 3600,
    };

    #[test]
    fn default_rate_is_one_sat_per_minute() {
        assert_eq!(Rate::default().seconds_for_msat(1000), 60);
        assert_eq!(Rate::default().price_in(60, Unit::Sat), 1);
    }

    #[test]
    fn one_sat_at_rate_100_buys_36_seconds_not_zero() {
        // The seed's original gave 0 minutes here.
        assert_eq!(rate(100).seconds_for_msat(1000), 36);
    }

    #[test]
    fn zero_rate_is_rejected() {
        assert!(Rate::from_sats_per_hour(0).is_none());
    }

    #[test]
    fn requested_duration_charges_exact_price_and_returns_change() {
        let p = quote_spawn(rate(60), LIMITS, Amount::sat(100), Some(3600)).unwrap();
        assert_eq!(p.seconds, 3600);
        assert_eq!(p.charged, Amount::sat(60));
        assert_eq!(p.change, Amount::sat(40));
    }

    #[test]
    fn requested_duration_rounds_up_to_unit_and_grants_the_extra_seconds() {
        // 90 s at 100 sat/h = 2.5 sat -> charged 3 sat, which buys 108 s.
        let p = quote_spawn(rate(100), LIMITS, Amount::sat(10), Some(90)).unwrap();
        assert_eq!(p.charged, Amount::sat(3));
        assert_eq!(p.change, Amount::sat(7));
        assert_eq!(p.seconds, 108);
    }

    #[test]
    fn msat_tokens_are_charged_to_the_msat() {
        let p = quote_spawn(rate(100), LIMITS, Amount::msat(10_000), Some(90)).unwrap();
        assert_eq!(p.charged, Amount::msat(2500));
        assert_eq!(p.change, Amount::msat(7500));
        assert_eq!(p.seconds, 90);
    }

    #[test]
    fn too_small_payment_for_requested_duration_is_insufficient() {
        let e = quote_spawn(rate(60), LIMITS, Amount::sat(59), Some(3600)).unwrap_err();
        assert_eq!(
            e,
            PricingError::Insufficient {
                paid: Amount::sat(59),
                required: Amount::sat(60)
            }
        );
    }

    #[test]
    fn one_msat_cannot_buy_any_duration() {
        let e = quote_spawn(rate(60), LIMITS, Amount::msat(1), Some(3600)).unwrap_err();
        assert!(matches!(e, PricingError::Insufficient { .. }));
        let e = quote_spawn(rate(60), LIMITS, Amount::msat(1), None).unwrap_err();
        assert!(matches!(e, PricingError::Insufficient { .. }));
    }

    #[test]
    fn duration_out_of_range() {
        assert!(matches!(
            quote_spawn(rate(60), LIMITS, Amount::sat(10_000), Some(59)),
            Err(PricingError::DurationOutOfRange { .. })
        ));
        assert!(matches!(
            quote_spawn(rate(60), LIMITS, Amount::sat(10_000), Some(24 * 3600 + 1)),
            Err(PricingError::DurationOutOfRange { .. })
        ));
    }

    #[test]
    fn without_duration_buys_all_the_time() {
        let p = quote_spawn(rate(60), LIMITS, Amount::sat(90), None).unwrap();
        assert_eq!(p.seconds, 90 * 60);
        assert_eq!(p.charged, Amount::sat(90));
        assert_eq!(p.change, Amount::sat(0));
    }

    #[test]
    fn without_duration_caps_at_max_and_returns_excess() {
        // 24 h at 60 sat/h = 1440 sat.
        let p = quote_spawn(rate(60), LIMITS, Amount::sat(2000), None).unwrap();
        assert_eq!(p.seconds, 24 * 3600);
        assert_eq!(p.charged, Amount::sat(1440));
        assert_eq!(p.change, Amount::sat(560));
    }

    #[test]
    fn without_duration_below_minimum_is_insufficient() {
        let e = quote_spawn(rate(3600), LIMITS, Amount::sat(59), None).unwrap_err();
        assert_eq!(
            e,
            PricingError::Insufficient {
                paid: Amount::sat(59),
                required: Amount::sat(60)
            }
        );
    }

    #[test]
    fn top_up_adds_all_affordable_time() {
        let p = quote_top_up(rate(60), LIMITS, Amount::sat(30), 600).unwrap();
        assert_eq!(p.seconds, 1800);
        assert_eq!(p.change, Amount::sat(0));
    }

    #[test]
    fn top_up_is_capped_by_max_remaining() {
        let p = quote_top_up(rate(60), LIMITS, Amount::sat(100), 24 * 3600 - 600).unwrap();
        assert_eq!(p.seconds, 600);
        assert_eq!(p.charged, Amount::sat(10));
        assert_eq!(p.change, Amount::sat(90));
    }

    #[test]
    fn top_up_at_maximum_or_worthless_is_an_error() {
        assert!(matches!(
            quote_top_up(rate(60), LIMITS, Amount::sat(1), 24 * 3600),
            Err(PricingError::AtMaximum { .. })
        ));
        assert!(matches!(
            quote_top_up(rate(60), LIMITS, Amount::msat(1), 0),
            Err(PricingError::Insufficient { .. })
        ));
    }

    #[test]
    fn huge_amounts_do_not_overflow() {
        let p = quote_spawn(rate(1), LIMITS, Amount::sat(u64::MAX), None).unwrap();
        assert_eq!(p.seconds, LIMITS.max_seconds);
        assert_eq!(p.charged, Amount::sat(24));
    }

    #[test]
    fn price_never_undercuts_time() {
        for sats in [1u64, 7, 60, 61, 99, 100, 101, 3599, 3600, 3601, 123_457] {
            let r = rate(sats);
            for secs in [1u64, 59, 60, 61, 3599, 3600, 86_399] {
                let price = r.price_msat(secs);
                assert!(r.seconds_for_msat(price) >= secs, "rate {sats} secs {secs}");
                assert!(r.seconds_for_msat(price.saturating_sub(1)) < secs || price == 0);
            }
        }
    }
}
