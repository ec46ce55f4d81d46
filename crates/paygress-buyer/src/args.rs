//! Parsing what a buyer types: keys, durations, tokens, relays.

use std::io::Read;

use paygress_core::CashuToken;
use paygress_nostr::nostr_sdk::{FromBech32, Keys, PublicKey, RelayUrl, SecretKey};

use crate::BuyerError;

/// A secret key given as `nsec1…` or 64 hex digits.
pub fn parse_secret(s: &str) -> Result<Keys, BuyerError> {
    let s = s.trim();
    let secret = if s.starts_with("nsec1") {
        SecretKey::from_bech32(s).map_err(|_| BuyerError::InvalidKey {
            what: "invalid nsec",
        })?
    } else {
        SecretKey::from_hex(s).map_err(|_| BuyerError::InvalidKey {
            what: "invalid secret key (expected nsec1… or 64 hex)",
        })?
    };
    Ok(Keys::new(secret))
}

/// A service's public key given as `npub1…` or 64 hex digits.
pub fn parse_service(s: &str) -> Result<PublicKey, BuyerError> {
    let s = s.trim();
    if s.starts_with("npub1") {
        PublicKey::from_bech32(s).map_err(|_| BuyerError::InvalidKey {
            what: "invalid service npub",
        })
    } else {
        PublicKey::from_hex(s).map_err(|_| BuyerError::InvalidKey {
            what: "invalid service key (expected npub1… or 64 hex)",
        })
    }
}

/// Parses `90m`, `2h`, `1d`, `45` (minutes) into whole minutes.
pub fn parse_duration_minutes(s: &str) -> Result<u64, BuyerError> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'm')) => (&s[..i], 1),
        Some((i, 'h')) => (&s[..i], 60),
        Some((i, 'd')) => (&s[..i], 24 * 60),
        _ => (s, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| {
        BuyerError::InvalidArgument(format!("duration {s:?}: expected e.g. 90m, 2h, 1d"))
    })?;
    let minutes = n
        .checked_mul(mult)
        .ok_or_else(|| BuyerError::InvalidArgument(format!("duration {s:?} is too long")))?;
    if minutes == 0 {
        return Err(BuyerError::InvalidArgument(
            "duration must be at least one minute".to_owned(),
        ));
    }
    Ok(minutes)
}

/// Reads a token from an argument: the token itself, `-` for stdin, or a file path.
pub fn read_token(arg: &str) -> Result<CashuToken, BuyerError> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| BuyerError::Io {
                action: "reading the token from",
                path: "stdin".into(),
                source,
            })?;
        s
    } else if arg.starts_with("cashu") {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg).map_err(|_| {
            BuyerError::InvalidArgument(format!("{arg:?} is not a cashu token nor a readable file"))
        })?
    };
    let token = text.trim();
    if !token.starts_with("cashuA") && !token.starts_with("cashuB") {
        return Err(BuyerError::InvalidArgument(
            "not a Cashu token (expected cashuA… or cashuB…)".to_owned(),
        ));
    }
    Ok(CashuToken::new(token))
}

/// Relay URLs (blank entries skipped); at least one must be given.
pub fn parse_relays(list: &[String]) -> Result<Vec<RelayUrl>, BuyerError> {
    if list.is_empty() {
        return Err(BuyerError::InvalidArgument(
            "give at least one --relay".to_owned(),
        ));
    }
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            RelayUrl::parse(s.trim())
                .map_err(|_| BuyerError::InvalidArgument(format!("invalid relay URL {s:?}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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

    #[test]
    fn keys_parse_in_both_forms() {
        let keys = Keys::generate();
        let hex = keys.secret_key().to_secret_hex();
        assert_eq!(parse_secret(&hex).unwrap().public_key(), keys.public_key());
        assert!(parse_secret("nsec1nope").is_err());
        let pk = keys.public_key();
        assert_eq!(parse_service(&pk.to_hex()).unwrap(), pk);
        assert!(parse_service("npub1nope").is_err());
    }
}
