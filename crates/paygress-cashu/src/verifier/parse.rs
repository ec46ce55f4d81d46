//! Decoding a token offline: everything checked before a mint is asked.

use std::str::FromStr;

use cdk::nuts::Token;
use paygress_core::money::{Amount, MintUrl, Unit};
use paygress_core::ports::PaymentError;
use paygress_core::secret::CashuToken;

use super::{CashuVerifier, MAX_PROOFS, MAX_TOKEN_LEN};
use crate::url::normalize_mint_url;

/// A token decoded and accepted offline.
pub(super) struct Parsed {
    pub(super) token: Token,
    pub(super) mint: MintUrl,
    pub(super) amount: Amount,
    /// Whether proofs are locked to the service's key (NUT-11): signed before the swap.
    pub(super) locked: bool,
    /// The earliest locktime of those proofs (unix seconds), after which their refund
    /// keys can spend them too.
    pub(super) locktime: Option<u64>,
}

impl CashuVerifier {
    pub(super) fn parse(&self, token: &CashuToken) -> Result<Parsed, PaymentError> {
        let text = token.expose().trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(PaymentError::InvalidToken(format!(
                "token is {} bytes, more than {MAX_TOKEN_LEN}",
                text.len()
            )));
        }
        let decoded = Token::from_str(text)
            .map_err(|e| PaymentError::InvalidToken(format!("cannot decode token: {e}")))?;
        let raw_mint = decoded
            .mint_url()
            .map_err(|e| PaymentError::InvalidToken(format!("token names no single mint: {e}")))?;
        let mint = normalize_mint_url(&raw_mint.to_string())
            .map_err(|_| PaymentError::MintNotAccepted(MintUrl::new(raw_mint.to_string())))?;
        if !self.inner.mints.contains(&mint) {
            return Err(PaymentError::MintNotAccepted(mint));
        }
        let cdk_unit = decoded.unit().unwrap_or_default();
        let unit = Unit::parse(&cdk_unit.to_string())
            .ok_or_else(|| PaymentError::UnsupportedUnit(cdk_unit.to_string()))?;
        let secrets = decoded.token_secrets();
        if secrets.len() > MAX_PROOFS {
            return Err(PaymentError::TooManyProofs {
                count: secrets.len(),
                max: MAX_PROOFS,
            });
        }
        let mut seen = std::collections::HashSet::with_capacity(secrets.len());
        if !secrets.iter().all(|s| seen.insert(s.as_bytes())) {
            return Err(PaymentError::DuplicateProofs);
        }
        // After the duplicate check: cdk's `value` refuses repeated proofs with an
        // untyped error.
        let value = decoded
            .value()
            .map_err(|e| PaymentError::InvalidToken(format!("bad amounts: {e}")))?;
        if value == cdk::Amount::ZERO {
            return Err(PaymentError::InvalidToken("token is worth nothing".into()));
        }
        let conditions = decoded
            .spending_conditions()
            .map_err(|e| PaymentError::InvalidToken(format!("bad spending condition: {e}")))?;
        let mut locktime: Option<u64> = None;
        for c in &conditions {
            match c {
                cdk::nuts::SpendingConditions::P2PKConditions { data, conditions } => {
                    // Signatures are BIP-340 (x-only keys): a lock to `02‖x` or `03‖x`
                    // of the service's key is the same lock.
                    let ours = self
                        .inner
                        .p2pk
                        .get()
                        .map(|k| k.public_key().x_only_public_key());
                    if ours != Some(data.x_only_public_key()) {
                        return Err(PaymentError::Locked(
                            "P2PK, NUT-11, to a key that is not this service's".into(),
                        ));
                    }
                    if let Some(c) = conditions {
                        if c.sig_flag == cdk::nuts::SigFlag::SigAll {
                            return Err(PaymentError::Locked("P2PK with SIG_ALL".into()));
                        }
                        if c.num_sigs.unwrap_or(1) > 1 {
                            return Err(PaymentError::Locked(
                                "P2PK needing more than one signature".into(),
                            ));
                        }
                        if let Some(t) = c.locktime {
                            locktime = Some(locktime.map_or(t, |l| l.min(t)));
                        }
                    }
                }
                cdk::nuts::SpendingConditions::HTLCConditions { .. } => {
                    return Err(PaymentError::Locked("HTLC, NUT-14".to_owned()));
                }
            }
        }
        Ok(Parsed {
            token: decoded,
            mint,
            amount: Amount::new(value.to_u64(), unit),
            locked: !conditions.is_empty(),
            locktime,
        })
    }
}
