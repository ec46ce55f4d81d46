//! [`CashuVerifier`]: core's `PaymentVerifier` on cdk wallets.
//!
//! - `wallets`: opening the store, one cdk wallet per (mint, unit), start-up recovery;
//! - `parse`: decoding a token offline and the checks made before any mint is asked;
//! - `p2pk`: tokens locked to the service's key (NUT-11);
//! - `keysets`: the keysets cache, fees and full proofs;
//! - `receive`: crediting what the mint signed, and redeeming in one call;
//! - `payment`: the `PaymentVerifier` port (prepare, redeem, resolve, check, issue);
//! - `issue`: sending tokens out of the wallet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cdk::cdk_database::WalletDatabase;
use cdk::nuts::KeySetInfo;
use cdk::wallet::{MintConnector, Wallet};
use paygress_core::money::{Amount, MintUrl, Unit};
use paygress_core::secret::CashuToken;

mod issue;
mod keysets;
mod p2pk;
mod parse;
mod payment;
mod receive;
mod wallets;

/// Largest encoded token accepted (bytes). Anything longer is rejected before decoding.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Most proofs redeemed from one token. A wallet pays any amount with a few dozen.
pub const MAX_PROOFS: usize = 256;

type Db = Arc<dyn WalletDatabase<cdk::cdk_database::Error> + Send + Sync>;

/// The balance of the service's wallet at one mint in one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// The mint.
    pub mint: MintUrl,
    /// What the wallet holds there (unspent proofs).
    pub amount: Amount,
}

/// A locked token is accepted only when its locktime is at least this far away (the
/// buyer's refund key may spend it from then on, racing the service's redeem).
pub const MIN_LOCK_SECONDS: u64 = 120;

/// Redeems and issues Cashu tokens with one cdk [`Wallet`] per (mint, unit), all sharing
/// one SQLite store and one persistent seed.
///
/// Wallets are built lazily without network access, with cdk's client-side rate limit
/// off and mint metadata (info, keysets, keys) cached without expiry: in steady state a
/// redeem is one request (`POST /v1/swap`); keysets are refetched only when a token names
/// a keyset the cache does not know.
#[derive(Clone)]
pub struct CashuVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    seed: [u8; 64],
    mints: Vec<MintUrl>,
    wallets: Mutex<HashMap<(MintUrl, Unit), Slot>>,
    /// Keysets seen per mint, for offline fee estimates in `inspect`.
    keysets: Mutex<HashMap<MintUrl, Vec<KeySetInfo>>>,
    /// The key tokens may be locked to (NUT-11 P2PK), when the service accepts them.
    p2pk: std::sync::OnceLock<cdk::nuts::SecretKey>,
}

/// One wallet and the lock that serialises its sends (cdk's proof selection is not safe
/// against concurrent sends from one store: both may pick the same proofs).
#[derive(Clone)]
struct Slot {
    wallet: Wallet,
    client: Arc<dyn MintConnector + Send + Sync>,
    send_lock: Arc<tokio::sync::Mutex<()>>,
    /// Set when a send failed without a definite answer (the mint unreachable mid-swap):
    /// cdk keeps its proofs reserved until its saga is recovered, so the next send
    /// recovers first instead of finding the funds locked until a restart.
    needs_recovery: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for CashuVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CashuVerifier")
            .field("mints", &self.inner.mints)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A short, non-reversible tag of a token for logs.
fn token_tag(token: &CashuToken) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    token.expose().hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}
