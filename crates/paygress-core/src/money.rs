//! Amounts of ecash and their units.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The unit a Cashu keyset is denominated in. Paygress prices in millisatoshi, so it
/// accepts the two units it can convert exactly.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Satoshi (1000 msat).
    Sat,
    /// Millisatoshi.
    Msat,
}

impl Unit {
    /// How many msat one unit is worth.
    pub const fn msat_per_unit(self) -> u64 {
        match self {
            Unit::Sat => 1000,
            Unit::Msat => 1,
        }
    }

    /// Parses a Cashu unit name (`sat`, `msat`); `None` for any other unit.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sat" => Some(Unit::Sat),
            "msat" => Some(Unit::Msat),
            _ => None,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Sat => "sat",
            Unit::Msat => "msat",
        })
    }
}

/// A number of units.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Amount {
    /// How many units.
    pub value: u64,
    /// Which unit.
    pub unit: Unit,
}

impl Amount {
    /// An amount in `unit`.
    pub const fn new(value: u64, unit: Unit) -> Self {
        Self { value, unit }
    }

    /// An amount in sat.
    pub const fn sat(value: u64) -> Self {
        Self::new(value, Unit::Sat)
    }

    /// An amount in msat.
    pub const fn msat(value: u64) -> Self {
        Self::new(value, Unit::Msat)
    }

    /// The amount in msat, saturating at `u64::MAX`.
    pub fn to_msat(self) -> u64 {
        self.value.saturating_mul(self.unit.msat_per_unit())
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.value == 0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value, self.unit)
    }
}

/// A mint's URL, normalised so that equal mints compare equal (lower-case scheme and
/// host, default port removed, no trailing slash). Normalisation is the payment
/// adapter's job; core only compares and displays.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MintUrl(String);

impl MintUrl {
    /// Wraps an already-normalised URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MintUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msat_conversion() {
        assert_eq!(Amount::sat(3).to_msat(), 3000);
        assert_eq!(Amount::msat(3).to_msat(), 3);
        assert_eq!(Amount::sat(u64::MAX).to_msat(), u64::MAX);
    }

    #[test]
    fn unit_parse() {
        assert_eq!(Unit::parse("SAT"), Some(Unit::Sat));
        assert_eq!(Unit::parse("msat"), Some(Unit::Msat));
        assert_eq!(Unit::parse("usd"), None);
    }
}
