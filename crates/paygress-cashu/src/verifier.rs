//! [`CashuVerifier`]: core's `PaymentVerifier` on cdk wallets.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use cdk::Error as CdkError;
use cdk::cdk_database::WalletDatabase;
use cdk::nuts::{CurrencyUnit, KeySetInfo, PaymentRequest, Proofs, State, Token};
use cdk::wallet::types::KeysetLoadPolicy;
use cdk::wallet::{HttpClient, MintConnector, SendOptions, Wallet, WalletBuilder};
use cdk_sqlite::WalletSqliteDatabase;
use paygress_core::money::{Amount, MintUrl, Unit};
use paygress_core::ports::{
    IssueId, PaymentError, PaymentVerifier, RedeemAttempt, Redeemed, TokenCheck, TokenInfo,
};
use paygress_core::secret::CashuToken;
use tracing::instrument;

use crate::config::{CashuConfig, load_or_create_seed, prepare_db_file};
use crate::error::CashuError;
use crate::redeem::{self, Receipt, SwapFailure};
use crate::url::normalize_mint_url;

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

/// A token decoded and accepted offline.
struct Parsed {
    token: Token,
    mint: MintUrl,
    amount: Amount,
    /// Whether proofs are locked to the service's key (NUT-11): signed before the swap.
    locked: bool,
    /// The earliest locktime of those proofs (unix seconds), after which their refund
    /// keys can spend them too.
    locktime: Option<u64>,
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

fn cdk_unit(unit: Unit) -> CurrencyUnit {
    match unit {
        Unit::Sat => CurrencyUnit::Sat,
        Unit::Msat => CurrencyUnit::Msat,
    }
}

fn cdk_mint_url(mint: &MintUrl) -> Result<cdk::mint_url::MintUrl, CdkError> {
    Ok(cdk::mint_url::MintUrl::from_str(mint.as_str())?)
}

/// Maps a cdk error from a redeem or check to core's error. Anything that is not a clear
/// verdict on the token itself is `MintUnavailable`: the payer keeps the token.
fn map_redeem_error(e: CdkError) -> PaymentError {
    use CdkError as E;
    match e {
        E::TokenAlreadySpent | E::TokenPending => PaymentError::AlreadySpent,
        E::UnsupportedUnit | E::UnitMismatch | E::MultipleUnits => {
            PaymentError::UnsupportedUnit(e.to_string())
        }
        E::TransactionUnbalanced(..)
        | E::DuplicateInputs
        | E::SignatureMissingOrInvalid
        | E::KeysetUnknown(_)
        | E::UnknownKeySet
        | E::ExpiredKeyset
        | E::CouldNotVerifyDleq
        | E::AmountOverflow
        | E::DHKE(_)
        | E::Secret(_)
        | E::ProofContentTooLarge { .. }
        | E::MaxInputsExceeded { .. }
        | E::InvalidSpendConditions(_)
        | E::LocktimeNotProvided => PaymentError::InvalidToken(e.to_string()),
        other => PaymentError::MintUnavailable(Box::new(other)),
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

impl CashuVerifier {
    /// Opens (or creates) the wallet store and seed described by `config`. No network
    /// access: wallets contact their mint on first use.
    pub async fn open(config: &CashuConfig) -> Result<Self, CashuError> {
        prepare_db_file(&config.db_path)?;
        let seed = load_or_create_seed(&config.seed_path())?;
        let db = WalletSqliteDatabase::new(config.db_path.clone())
            .await
            .map_err(CashuError::Database)?;
        Ok(Self::with_database(
            Arc::new(db),
            seed,
            config.mints.clone(),
        ))
    }

    /// A verifier on an existing cdk wallet database (e.g. an in-memory one in tests).
    /// `mints` must already be normalised ([`normalize_mint_url`]).
    pub fn with_database(db: Db, seed: [u8; 64], mints: Vec<MintUrl>) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                seed,
                mints,
                wallets: Mutex::new(HashMap::new()),
                keysets: Mutex::new(HashMap::new()),
                p2pk: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The cdk wallet for `mint` (which must be accepted) in `unit`, built on first use.
    pub fn wallet(&self, mint: &MintUrl, unit: Unit) -> Result<Wallet, CashuError> {
        Ok(self.slot(mint, unit)?.wallet)
    }

    /// The lock that serialises sends (and withdrawals) from `mint`'s `unit` wallet.
    pub(crate) fn send_lock(
        &self,
        mint: &MintUrl,
        unit: Unit,
    ) -> Result<Arc<tokio::sync::Mutex<()>>, CashuError> {
        Ok(self.slot(mint, unit)?.send_lock)
    }

    fn slot(&self, mint: &MintUrl, unit: Unit) -> Result<Slot, CashuError> {
        if !self.inner.mints.contains(mint) {
            return Err(CashuError::MintNotAccepted(mint.to_string()));
        }
        let mut wallets = lock(&self.inner.wallets);
        if let Some(slot) = wallets.get(&(mint.clone(), unit)) {
            return Ok(slot.clone());
        }
        let mint_url = cdk_mint_url(mint).map_err(CashuError::Wallet)?;
        let client: Arc<dyn MintConnector + Send + Sync> =
            Arc::new(HttpClient::new(mint_url.clone(), None));
        let wallet = WalletBuilder::new()
            .mint_url(mint_url)
            .unit(cdk_unit(unit))
            .localstore(self.inner.db.clone())
            .seed(self.inner.seed)
            .without_rate_limiting()
            .set_metadata_cache_ttl(None)
            .build()
            .map_err(CashuError::Wallet)?;
        let slot = Slot {
            wallet,
            client,
            send_lock: Arc::default(),
            needs_recovery: Arc::default(),
        };
        wallets.insert((mint.clone(), unit), slot.clone());
        Ok(slot)
    }

    /// Call at startup (after [`CashuVerifier::open`]): for every accepted mint and unit,
    /// finishes or rolls back wallet operations a crash interrupted (cdk's saga
    /// recovery), then fetches mint info and keysets so that the first payment costs one
    /// round trip. Returns the failures (e.g. a mint that is down, or one without an
    /// `msat` keyset); none is fatal, a later payment retries.
    pub async fn warm_up(&self) -> Vec<(MintUrl, Unit, CashuError)> {
        let mut failed = Vec::new();
        for mint in &self.inner.mints {
            for unit in [Unit::Sat, Unit::Msat] {
                let res = match self.wallet(mint, unit) {
                    Ok(w) => async {
                        w.load_mint_info().await?;
                        // Keysets (with their input fees) cached, so that `inspect`
                        // knows the fee of the first token offline. A unit the mint
                        // does not issue has none: not a failure.
                        if let Ok(keysets) =
                            w.keysets(KeysetLoadPolicy::CacheThenNetwork).await
                        {
                            self.remember_keysets(&w, &keysets);
                        }
                        let slot = self.slot(mint, unit).map_err(|e| CdkError::Custom(e.to_string()))?;
                        let _no_send_in_flight = slot.send_lock.lock().await;
                        let report =
                            crate::send::recover(&w, slot.client.as_ref(), &self.inner.seed)
                                .await?;
                        if !report.is_empty() {
                            tracing::info!(%mint, %unit, ?report, "recovered interrupted wallet operations");
                        }
                        slot.needs_recovery.store(false, Ordering::SeqCst);
                        Ok::<_, CdkError>(())
                    }
                    .await
                    .map_err(CashuError::Wallet),
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    failed.push((mint.clone(), unit, e));
                }
            }
        }
        failed
    }

    /// Redeems `token` in one call (prepare, swap, and resolution of a lost answer), for
    /// callers without a journal of their own (tools, tests). The service journals each
    /// step instead, through [`PaymentVerifier`].
    pub async fn receive(&self, token: &CashuToken) -> Result<Redeemed, PaymentError> {
        let attempt = self.prepare(token).await?;
        match self.redeem(token, &attempt).await {
            Err(PaymentError::Ambiguous(_) | PaymentError::AlreadySpent) => {
                // A token the mint reports pending (another swap of it in flight)
                // settles within moments: ask a few times before giving up.
                let mut wait = std::time::Duration::from_millis(50);
                for _ in 0..5 {
                    match self.resolve(token, &attempt).await {
                        Err(PaymentError::Ambiguous(_)) => {
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                        other => return other?.ok_or(PaymentError::AlreadySpent),
                    }
                }
                self.resolve(token, &attempt)
                    .await?
                    .ok_or(PaymentError::AlreadySpent)
            }
            other => other,
        }
    }

    fn slot_for(&self, p: &Parsed) -> Result<Slot, PaymentError> {
        self.slot(&p.mint, p.amount.unit)
            .map_err(|e| PaymentError::Other(Box::new(e)))
    }

    /// Unblinds and stores what the mint signed for an attempt; the credited amount.
    async fn credit(
        &self,
        slot: &Slot,
        receipt: &Receipt,
        outputs: redeem::Outputs,
        signatures: Vec<cdk::nuts::BlindSignature>,
        restored: bool,
    ) -> Result<u64, PaymentError> {
        let keys = slot
            .wallet
            .keyset(receipt.keyset)
            .await
            .map_err(|e| PaymentError::Ambiguous(Box::new(e)))?
            .keys;
        let restored_from = restored.then_some(slot.client.as_ref());
        redeem::store_signed(
            &slot.wallet,
            receipt,
            outputs,
            signatures,
            &keys,
            restored_from,
        )
        .await
    }

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
    fn sign_locked(&self, p: &Parsed, proofs: &mut Proofs) -> Result<(), PaymentError> {
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
    fn check_locktime(p: &Parsed) -> Result<(), PaymentError> {
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

    /// The accepted mints, normalised.
    pub fn mints(&self) -> &[MintUrl] {
        &self.inner.mints
    }

    fn parse(&self, token: &CashuToken) -> Result<Parsed, PaymentError> {
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
            .map_err(|_| PaymentError::MintNotAccepted(raw_mint.to_string()))?;
        if !self.inner.mints.contains(&mint) {
            return Err(PaymentError::MintNotAccepted(mint.to_string()));
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

    /// The mint's input fee for `token` from the keysets seen so far (zero when its
    /// keysets are not known yet: the exact fee is what the swap takes).
    fn estimate_fee(&self, p: &Parsed) -> Amount {
        let keysets = lock(&self.inner.keysets);
        let Some(infos) = keysets.get(&p.mint) else {
            return Amount::new(0, p.amount.unit);
        };
        let ppk: u64 = match p.token.proofs(infos) {
            Ok(proofs) => proofs
                .iter()
                .map(|proof| {
                    infos
                        .iter()
                        .find(|k| k.id == proof.keyset_id)
                        .map_or(0, |k| k.input_fee_ppk)
                })
                .sum(),
            Err(_) => 0,
        };
        Amount::new(ppk.div_ceil(1000), p.amount.unit)
    }

    /// Resolves the token's proofs (full keyset ids) from the cached keysets, refreshing
    /// them from the mint only when the token names a keyset the cache lacks.
    async fn proofs(&self, wallet: &Wallet, token: &Token) -> Result<Proofs, PaymentError> {
        let resolve = |keysets: Vec<cdk::nuts::KeySet>| -> Option<Proofs> {
            let infos: Vec<KeySetInfo> = keysets
                .into_iter()
                .map(|k| KeySetInfo {
                    id: k.id,
                    unit: k.unit,
                    active: k.active.unwrap_or(false),
                    input_fee_ppk: k.input_fee_ppk,
                    final_expiry: k.final_expiry,
                })
                .collect();
            let proofs = token.proofs(&infos).ok()?;
            proofs
                .iter()
                .all(|p| infos.iter().any(|k| k.id == p.keyset_id))
                .then_some(proofs)
        };
        let cached = wallet
            .keysets(KeysetLoadPolicy::CacheThenNetwork)
            .await
            .map_err(map_redeem_error)?;
        self.remember_keysets(wallet, &cached);
        if let Some(p) = resolve(cached) {
            return Ok(p);
        }
        tracing::debug!("token names an unknown keyset; refreshing keysets");
        let fresh = wallet
            .keysets(KeysetLoadPolicy::Refresh)
            .await
            .map_err(map_redeem_error)?;
        self.remember_keysets(wallet, &fresh);
        resolve(fresh).ok_or_else(|| {
            let id = match token {
                Token::TokenV4(t) => t
                    .token
                    .iter()
                    .map(|k| k.keyset_id.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                Token::TokenV3(t) => t
                    .token
                    .iter()
                    .flat_map(|k| k.proofs.iter().map(|p| p.keyset_id.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            PaymentError::UnknownKeyset(id)
        })
    }

    fn remember_keysets(&self, wallet: &Wallet, keysets: &[cdk::nuts::KeySet]) {
        let Ok(mint) = normalize_mint_url(&wallet.mint_url.to_string()) else {
            return;
        };
        let mut cache = lock(&self.inner.keysets);
        let infos = cache.entry(mint).or_default();
        for k in keysets {
            if !infos.iter().any(|i| i.id == k.id) {
                infos.push(KeySetInfo {
                    id: k.id,
                    unit: k.unit.clone(),
                    active: k.active.unwrap_or(false),
                    input_fee_ppk: k.input_fee_ppk,
                    final_expiry: k.final_expiry,
                });
            }
        }
    }

    /// What the wallet holds, per accepted mint and unit (zero balances included).
    pub async fn balances(&self) -> Result<Vec<Balance>, CashuError> {
        let mut out = Vec::new();
        for mint in &self.inner.mints {
            for unit in [Unit::Sat, Unit::Msat] {
                let w = self.wallet(mint, unit)?;
                let value = w.total_balance().await.map_err(CashuError::Wallet)?;
                out.push(Balance {
                    mint: mint.clone(),
                    amount: Amount::new(value.to_u64(), unit),
                });
            }
        }
        Ok(out)
    }

    /// Exports a token worth exactly `amount` from the wallet, at `mint` or, if `None`,
    /// at the first accepted mint holding enough. The token leaves the wallet: whoever
    /// holds it owns the value.
    #[instrument(skip_all, fields(amount = %amount))]
    pub async fn send(
        &self,
        amount: Amount,
        mint: Option<&MintUrl>,
    ) -> Result<CashuToken, CashuError> {
        let mint = match mint {
            Some(m) => m.clone(),
            None => {
                let mut chosen = None;
                for b in self.balances().await? {
                    if b.amount.unit == amount.unit && b.amount.value >= amount.value {
                        chosen = Some(b.mint);
                        break;
                    }
                }
                chosen.ok_or(CashuError::InsufficientFunds(amount))?
            }
        };
        let slot = self.slot(&mint, amount.unit)?;
        let _one_send_at_a_time = slot.send_lock.lock().await;
        self.send_locked(&slot, &mint, amount, None).await
    }

    /// A send with the slot's send lock held; `issue` names it for [`issue_once`].
    ///
    /// [`issue_once`]: PaymentVerifier::issue_once
    async fn send_locked(
        &self,
        slot: &Slot,
        mint: &MintUrl,
        amount: Amount,
        issue: Option<&IssueId>,
    ) -> Result<CashuToken, CashuError> {
        // Sends are this wallet's only cdk sagas (redeems swap on their own), and they
        // run one at a time: recovering here interferes with nothing in flight.
        if slot.needs_recovery.load(Ordering::SeqCst) {
            let report = crate::send::recover(&slot.wallet, slot.client.as_ref(), &self.inner.seed)
                .await
                .map_err(CashuError::Wallet)?;
            tracing::info!(%mint, ?report, "recovered an interrupted send");
            if report.sagas.failed == 0 {
                slot.needs_recovery.store(false, Ordering::SeqCst);
            }
        }
        if let Some(id) = issue
            && let Some(token) = crate::send::issued(&slot.wallet, id.as_str())
                .await
                .map_err(CashuError::Wallet)?
        {
            tracing::info!(%mint, "handing out the token an interrupted issue created");
            return Ok(token);
        }
        // The wallet's swap to make the token costs the mint's input fee: the token is
        // worth `amount` minus that fee, so that the wallet pays out exactly `amount`.
        let mut value = amount.value;
        let prepared = loop {
            let prepared = slot
                .wallet
                .prepare_send(cdk::Amount::from(value), SendOptions::default())
                .await
                .map_err(CashuError::Wallet)?;
            let cost = value.saturating_add(u64::from(prepared.fee()));
            if cost <= amount.value {
                break prepared;
            }
            let _ = prepared.cancel().await;
            let over = cost - amount.value;
            value = match value.checked_sub(over).filter(|v| *v > 0) {
                Some(v) if v < value => v,
                _ => return Err(CashuError::InsufficientFunds(amount)),
            };
        };
        let operation = prepared.operation_id();
        let swaps = !prepared.proofs_to_swap().is_empty();
        let recorded = async {
            if let Some(id) = issue {
                crate::send::record_issue(&slot.wallet, id.as_str(), operation, None).await?;
            }
            if swaps {
                // Durable before the swap: recovery restores its outputs if the answer
                // is lost.
                crate::send::mark_open(&slot.wallet, &operation.to_string()).await?;
            }
            Ok::<_, CdkError>(())
        }
        .await;
        if let Err(e) = recorded {
            let _ = prepared.cancel().await;
            return Err(CashuError::Wallet(e));
        }
        match prepared.confirm(None).await {
            Ok(token) => {
                let token = CashuToken::new(token.to_string());
                if let Some(id) = issue
                    && let Err(e) = crate::send::record_issue(
                        &slot.wallet,
                        id.as_str(),
                        operation,
                        Some(&token),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not record an issued token; its saga keeps it");
                }
                if swaps
                    && let Err(e) =
                        crate::send::mark_closed(&slot.wallet, &operation.to_string()).await
                {
                    tracing::warn!(error = %e, "could not close an open-send record; recovery will");
                }
                Ok(token)
            }
            Err(e) => {
                // Even a definite refusal (inputs already spent) leaves cdk's view of
                // the inputs wrong: the next send recovers and checks them first.
                slot.needs_recovery.store(true, Ordering::SeqCst);
                Err(CashuError::Wallet(e))
            }
        }
    }
}

#[async_trait]
impl PaymentVerifier for CashuVerifier {
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError> {
        let p = self.parse(token)?;
        Self::check_locktime(&p)?;
        let fee = self.estimate_fee(&p);
        Ok(TokenInfo {
            mint: p.mint,
            amount: p.amount,
            fee,
        })
    }

    #[instrument(skip_all, fields(token = %token_tag(token)))]
    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError> {
        let p = self.parse(token)?;
        Self::check_locktime(&p)?;
        let slot = self.slot_for(&p)?;
        let proofs = self.proofs(&slot.wallet, &p.token).await?;
        let fee = slot
            .wallet
            .get_proofs_fee(&proofs)
            .await
            .map_err(map_redeem_error)?
            .total
            .to_u64();
        let net = p
            .amount
            .value
            .checked_sub(fee)
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                PaymentError::InvalidToken(format!("the mint's fee of {fee} takes the whole token"))
            })?;
        let keyset = slot
            .wallet
            .active_keyset()
            .await
            .map_err(map_redeem_error)?;
        let receipt = redeem::reserve(&slot.wallet, keyset.id, net)
            .await
            .map_err(|e| PaymentError::Other(Box::new(e)))?;
        Ok(RedeemAttempt {
            mint: p.mint,
            face: p.amount,
            fee: Amount::new(fee, p.amount.unit),
            receipt: receipt.encode(),
        })
    }

    #[instrument(skip_all, fields(token = %token_tag(token)))]
    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError> {
        let p = self.parse(token)?;
        let slot = self.slot_for(&p)?;
        let mut proofs = self.proofs(&slot.wallet, &p.token).await?;
        self.sign_locked(&p, &mut proofs)?;
        let receipt = Receipt::decode(&attempt.receipt)?;
        let outputs = receipt.outputs(&self.inner.seed)?;
        let signatures = match redeem::swap(slot.client.as_ref(), proofs, &outputs).await {
            Ok(sigs) => sigs,
            Err(SwapFailure::Spent(_)) => return Err(PaymentError::AlreadySpent),
            Err(SwapFailure::Refused(e)) => return Err(map_redeem_error(e)),
            Err(SwapFailure::Unknown(e)) => return Err(PaymentError::Ambiguous(Box::new(e))),
        };
        let credited = self
            .credit(&slot, &receipt, outputs, signatures, false)
            .await?;
        tracing::info!(mint = %p.mint, face = %p.amount, credited, "token redeemed");
        Ok(Redeemed {
            mint: p.mint,
            amount: Amount::new(credited, p.amount.unit),
        })
    }

    #[instrument(skip_all, fields(token = %token_tag(token)))]
    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError> {
        let p = self.parse(token)?;
        let slot = self.slot_for(&p)?;
        let mut proofs = self.proofs(&slot.wallet, &p.token).await?;
        self.sign_locked(&p, &mut proofs)?;
        let receipt = Receipt::decode(&attempt.receipt)?;
        let client = slot.client.as_ref();
        let unknown = |e: CdkError| PaymentError::MintUnavailable(Box::new(e));
        let received = |credited: u64| {
            tracing::info!(mint = %p.mint, credited, "lost redeem resolved: received");
            Some(Redeemed {
                mint: p.mint.clone(),
                amount: Amount::new(credited, p.amount.unit),
            })
        };
        // 1. Did the mint sign this attempt's outputs? Then that is what was received.
        let outputs = receipt.outputs(&self.inner.seed)?;
        let signed = redeem::restore(client, &outputs).await.map_err(unknown)?;
        if !signed.is_empty() {
            let credited = self.credit(&slot, &receipt, outputs, signed, true).await?;
            return Ok(received(credited));
        }
        // 2. Not signed. Inputs unspent: the swap never happened; do it now (same
        //    outputs, so a late original and this replay cannot both succeed).
        match redeem::input_state(client, &proofs)
            .await
            .map_err(unknown)?
        {
            Some(false) => {}
            Some(true) => {
                // Spent, and not by this attempt (unless it landed just now).
                let outputs = receipt.outputs(&self.inner.seed)?;
                let signed = redeem::restore(client, &outputs).await.map_err(unknown)?;
                if signed.is_empty() {
                    tracing::info!(mint = %p.mint, "token spent elsewhere: nothing received");
                    return Ok(None);
                }
                let credited = self.credit(&slot, &receipt, outputs, signed, true).await?;
                return Ok(received(credited));
            }
            None => {
                return Err(PaymentError::Ambiguous(
                    "the mint reports the token pending".into(),
                ));
            }
        }
        let outputs = receipt.outputs(&self.inner.seed)?;
        match redeem::swap(client, proofs, &outputs).await {
            Ok(signed) => {
                let credited = self.credit(&slot, &receipt, outputs, signed, false).await?;
                Ok(received(credited))
            }
            Err(SwapFailure::Spent(_)) => {
                let signed = redeem::restore(client, &outputs).await.map_err(unknown)?;
                if signed.is_empty() {
                    return Ok(None);
                }
                let credited = self.credit(&slot, &receipt, outputs, signed, true).await?;
                Ok(received(credited))
            }
            Err(SwapFailure::Refused(e)) => {
                tracing::info!(mint = %p.mint, error = %e, "the mint refuses the token: nothing received");
                Ok(None)
            }
            Err(SwapFailure::Unknown(e)) => Err(PaymentError::Ambiguous(Box::new(e))),
        }
    }

    #[instrument(skip_all, fields(token = %token_tag(token)))]
    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError> {
        let p = self.parse(token)?;
        let wallet = self
            .wallet(&p.mint, p.amount.unit)
            .map_err(|e| PaymentError::Other(Box::new(e)))?;
        let proofs = self.proofs(&wallet, &p.token).await?;
        let states = wallet
            .check_proofs_spent(proofs)
            .await
            .map_err(map_redeem_error)?;
        let spendable = !states.is_empty() && states.iter().all(|s| s.state == State::Unspent);
        Ok(TokenCheck {
            mint: p.mint,
            amount: p.amount,
            spendable,
        })
    }

    #[instrument(skip_all, fields(mint = %mint, amount = %amount))]
    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError> {
        if amount.is_zero() {
            return Err(PaymentError::Issue(
                "cannot issue a zero-value token".into(),
            ));
        }
        self.send(amount, Some(mint))
            .await
            .map_err(|e| PaymentError::Issue(Box::new(e)))
    }

    async fn issue_once(
        &self,
        id: &IssueId,
        mint: &MintUrl,
        amount: Amount,
    ) -> Result<CashuToken, PaymentError> {
        if amount.is_zero() {
            return Err(PaymentError::Issue(
                "cannot issue a zero-value token".into(),
            ));
        }
        let slot = self
            .slot(mint, amount.unit)
            .map_err(|e| PaymentError::Issue(Box::new(e)))?;
        let _one_send_at_a_time = slot.send_lock.lock().await;
        self.send_locked(&slot, mint, amount, Some(id))
            .await
            .map_err(|e| PaymentError::Issue(Box::new(e)))
    }

    fn locking_key(&self) -> Option<String> {
        CashuVerifier::locking_key(self)
    }

    fn accepted_mints(&self) -> Vec<MintUrl> {
        self.inner.mints.clone()
    }

    fn payment_request(&self, amount: Amount, description: &str) -> Result<String, PaymentError> {
        let mints = self
            .inner
            .mints
            .iter()
            .map(cdk_mint_url)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PaymentError::Other(Box::new(e)))?;
        let mut builder = PaymentRequest::builder()
            .amount(amount.value)
            .unit(cdk_unit(amount.unit))
            .single_use(true)
            .mints(mints);
        if !description.is_empty() {
            builder = builder.description(description);
        }
        Ok(builder.build().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdk_errors_map_to_payment_errors() {
        assert!(matches!(
            map_redeem_error(CdkError::TokenAlreadySpent),
            PaymentError::AlreadySpent
        ));
        assert!(matches!(
            map_redeem_error(CdkError::TokenPending),
            PaymentError::AlreadySpent
        ));
        assert!(matches!(
            map_redeem_error(CdkError::HttpError(None, "connection refused".into())),
            PaymentError::MintUnavailable(_)
        ));
        assert!(matches!(
            map_redeem_error(CdkError::HttpError(Some(502), "bad gateway".into())),
            PaymentError::MintUnavailable(_)
        ));
        assert!(matches!(
            map_redeem_error(CdkError::InvalidMintResponse("junk".into())),
            PaymentError::MintUnavailable(_)
        ));
        assert!(matches!(
            map_redeem_error(CdkError::TransactionUnbalanced(1, 2, 0)),
            PaymentError::InvalidToken(_)
        ));
        assert!(matches!(
            map_redeem_error(CdkError::UnitMismatch),
            PaymentError::UnsupportedUnit(_)
        ));
    }

    #[test]
    fn token_tag_is_short_and_hides_the_token() {
        let t = CashuToken::new("cashuBsecretsecretsecret");
        let tag = token_tag(&t);
        assert_eq!(tag.len(), 8);
        assert!(!tag.contains("secret"));
    }
}
