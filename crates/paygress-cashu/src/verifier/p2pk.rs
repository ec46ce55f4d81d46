//! Tokens locked to the service's key (NUT-11 P2PK).

use cdk::nuts::Proofs;
use paygress_core::ports::PaymentError;

use super::parse::Parsed;
use super::{CashuVerifier, MIN_LOCK_SECONDS};
use crate::error::CashuError;

impl CashuVerifier {
    /// Accepts tokens locked (NUT-11 P2PK, one signature, `SIG_INPUTS`) to the public
    /// key of `secret` (32 bytes, e.g. the service's Nostr key), signing them on redeem.
    /// Returns that public key (compressed, hex): what buyers lock to. Set once; a later
    /// call keeps the first key.
    pub fn accept_locked_to(&self, secret: &[u8; 32]) -> Result<String, CashuError> {
        let key = cdk::nuts::SecretKey::from_slice(secret)
            .map_err(|e| CashuError::Config(format!("P2PK key: {e}")))?;
        let key = self.inner.p2pk.get_or_init(|| key);
        Ok(key.public_key().to_hex())
    }

    /// The public key locked tokens must name (compressed, hex), when accepted.
    pub fn locking_key(&self) -> Option<String> {
        self.inner.p2pk.get().map(|k| k.public_key().to_hex())
    }

    /// Signs every proof locked to the service's key (a witness per proof).
    pub(super) fn sign_locked(&self, p: &Parsed, proofs: &mut Proofs) -> Result<(), PaymentError> {
        if !p.locked {
            return Ok(());
        }
        let key = self
            .inner
            .p2pk
            .get()
            .ok_or_else(|| PaymentError::Locked("P2PK, NUT-11".into()))?;
        for proof in proofs.iter_mut() {
            if cdk::nuts::SpendingConditions::try_from(&proof.secret).is_ok() {
                proof
                    .sign_p2pk(key.clone())
                    .map_err(|e| PaymentError::Other(Box::new(e)))?;
            }
        }
        Ok(())
    }

    /// Refuses a locked token whose locktime is too close (checked before redeeming,
    /// not when resolving an attempt already made).
    pub(super) fn check_locktime(p: &Parsed) -> Result<(), PaymentError> {
        let now = cdk::util::unix_time();
        match p.locktime {
            Some(t) if t < now.saturating_add(MIN_LOCK_SECONDS) => {
                Err(PaymentError::Locked(format!(
                    "P2PK locktime {t} is less than {MIN_LOCK_SECONDS} s away; lock for longer"
                )))
            }
            _ => Ok(()),
        }
    }
}
