//! A real Cashu mint in-process, for tests and the dev demo (feature `test-mint`).
//!
//! [`TestMint::start`] runs cdk's mint with the fake Lightning backend
//! (`cdk-fake-wallet`, which pays every invoice by itself) behind cdk-axum's router on
//! `127.0.0.1` and a free port. [`Buyer`] is a fresh in-memory wallet that mints tokens
//! from it and redeems tokens (e.g. change) as a payer would.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paygress_cashu::CashuError> {
//! use paygress_cashu::testkit::{TestMint, TokenFormat};
//! let mint = TestMint::start().await?;
//! let token = mint.mint_token(100, TokenFormat::V4).await?; // 100 sat, cashuB
//! let value = mint.redeem_as_buyer(&token).await?; // 100
//! # let _ = value; Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use cdk::Error as CdkError;
use cdk::amount::SplitTarget;
use cdk::mint::{Mint, MintBuilder, MintMeltLimits};
use cdk::nuts::nut02::ShortKeysetId;
use cdk::nuts::{CurrencyUnit, KeySetInfo, PaymentMethod, Token, TokenV3};
use cdk::types::FeeReserve;
use cdk::wallet::types::KeysetLoadPolicy;
use cdk::wallet::{ReceiveOptions, SendOptions, Wallet};
use cdk_fake_wallet::FakeWallet;
use paygress_core::money::{MintUrl, Unit};
use paygress_core::secret::CashuToken;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::CashuError;

mod proxy;
pub use proxy::{MintProxy, ProxyStats, RandomFaults, SwapFault};

/// How a test mint is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestMintOptions {
    /// The one unit the mint issues (`sat` by default).
    pub unit: Unit,
    /// Input fee in parts per thousand per proof (0 by default).
    pub input_fee_ppk: u64,
    /// Keyset id version: `Some(true)` v2 (`01…`), `Some(false)` v1 (`00…`), `None` cdk's
    /// default.
    pub keyset_v2: Option<bool>,
}

impl Default for TestMintOptions {
    fn default() -> Self {
        Self {
            unit: Unit::Sat,
            input_fee_ppk: 0,
            keyset_v2: None,
        }
    }
}

/// Encoding of a minted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    /// `cashuA…` (V3, JSON).
    V3,
    /// `cashuB…` (V4, CBOR).
    V4,
}

/// Every HTTP request the mint served, as `"METHOD /path"`, in order.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<String>>>);

impl RequestLog {
    /// The requests so far.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn push(&self, entry: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    }
}

/// A cdk mint with a fake Lightning backend, served on `127.0.0.1`.
pub struct TestMint {
    mint: Arc<Mint>,
    router: Router,
    addr: SocketAddr,
    unit: Unit,
    log: RequestLog,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for TestMint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestMint")
            .field("addr", &self.addr)
            .field("unit", &self.unit)
            .field("running", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

fn wallet_err(e: CdkError) -> CashuError {
    CashuError::Wallet(e)
}

fn cdk_unit(unit: Unit) -> CurrencyUnit {
    match unit {
        Unit::Sat => CurrencyUnit::Sat,
        Unit::Msat => CurrencyUnit::Msat,
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, CashuError> {
    let io = |source| CashuError::Io {
        action: "bind test mint",
        path: addr.to_string().into(),
        source,
    };
    let socket = TcpSocket::new_v4().map_err(io)?;
    socket.set_reuseaddr(true).map_err(io)?;
    socket.bind(addr).map_err(io)?;
    socket.listen(1024).map_err(io)
}

impl TestMint {
    /// A `sat` mint without fees.
    pub async fn start() -> Result<Self, CashuError> {
        Self::start_with(TestMintOptions::default()).await
    }

    /// A mint set up by `options`.
    pub async fn start_with(options: TestMintOptions) -> Result<Self, CashuError> {
        let unit = cdk_unit(options.unit);
        let db = Arc::new(
            cdk_sqlite::mint::memory::empty()
                .await
                .map_err(CashuError::Database)?,
        );
        let mut builder = MintBuilder::new(db.clone()).with_keyset_v2(options.keyset_v2);
        let fee_reserve = FeeReserve {
            min_fee_reserve: 1.into(),
            percent_fee_reserve: 1.0,
        };
        let backend = FakeWallet::new(
            fee_reserve,
            HashMap::default(),
            HashSet::default(),
            0,
            unit.clone(),
        );
        builder
            .add_payment_processor(
                unit.clone(),
                PaymentMethod::BOLT11,
                MintMeltLimits::new(1, 100_000_000),
                Arc::new(backend),
            )
            .await
            .map_err(wallet_err)?;
        if options.input_fee_ppk > 0 {
            builder
                .set_unit_fee(&unit, options.input_fee_ppk)
                .map_err(wallet_err)?;
        }
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr().map_err(|source| CashuError::Io {
            action: "read address of",
            path: "test mint listener".into(),
            source,
        })?;
        let builder = builder
            .with_name("paygress test mint".to_string())
            .with_description("in-process test mint".to_string())
            .with_urls(vec![format!("http://{addr}")]);
        let seed: [u8; 64] = rand::random();
        let mint = Arc::new(
            builder
                .build_with_seed(db, &seed)
                .await
                .map_err(wallet_err)?,
        );
        mint.start().await.map_err(wallet_err)?;
        let log = RequestLog::default();
        let log2 = log.clone();
        let router = cdk_axum::create_mint_router(mint.clone(), vec!["bolt11".into()])
            .await
            .map_err(|e| CashuError::Config(format!("mint router: {e}")))?
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                let log = log2.clone();
                async move {
                    log.push(format!("{} {}", req.method(), req.uri().path()));
                    let res: Response = next.run(req).await;
                    res
                }
            }));
        let mut this = Self {
            mint,
            router,
            addr,
            unit: options.unit,
            log,
            server: None,
        };
        this.serve(listener);
        Ok(this)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let router = self.router.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        self.server = Some((tx, task));
    }

    /// The mint's URL (`http://127.0.0.1:PORT`), normalised.
    pub fn url(&self) -> MintUrl {
        MintUrl::new(format!("http://{}", self.addr))
    }

    /// The socket the mint listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The unit the mint issues.
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// The cdk mint itself (e.g. to rotate keysets).
    pub fn mint(&self) -> &Arc<Mint> {
        &self.mint
    }

    /// The requests the mint has served.
    pub fn requests(&self) -> &RequestLog {
        &self.log
    }

    /// Stops serving HTTP (connections are closed; the port is released). The mint's
    /// state is kept, so [`TestMint::restart`] brings the same mint back.
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.server.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
    }

    /// Serves again on the same port after [`TestMint::stop`].
    pub async fn restart(&mut self) -> Result<(), CashuError> {
        if self.server.is_some() {
            return Ok(());
        }
        let listener = bind(self.addr)?;
        self.serve(listener);
        Ok(())
    }

    /// A fresh buyer wallet at this mint.
    pub async fn buyer(&self) -> Result<Buyer, CashuError> {
        Buyer::new(&self.url(), self.unit).await
    }

    /// Mints a token worth `amount` (in the mint's unit) with a fresh wallet.
    pub async fn mint_token(
        &self,
        amount: u64,
        format: TokenFormat,
    ) -> Result<CashuToken, CashuError> {
        self.buyer().await?.mint_token(amount, format).await
    }

    /// Redeems `token` into a fresh wallet, returning the amount received (after fees).
    pub async fn redeem_as_buyer(&self, token: &CashuToken) -> Result<u64, CashuError> {
        self.buyer().await?.redeem(token).await
    }
}

impl Drop for TestMint {
    fn drop(&mut self) {
        if let Some((tx, task)) = self.server.take() {
            let _ = tx.send(());
            task.abort();
        }
    }
}

/// A payer's wallet: in-memory store, random seed, no rate limit.
#[derive(Debug, Clone)]
pub struct Buyer {
    wallet: Wallet,
}

impl Buyer {
    /// A fresh wallet at `mint` in `unit`.
    pub async fn new(mint: &MintUrl, unit: Unit) -> Result<Self, CashuError> {
        let url = cdk::mint_url::MintUrl::from_str(mint.as_str())
            .map_err(|e| wallet_err(CdkError::from(e)))?;
        let wallet = crate::ephemeral_wallet(url, cdk_unit(unit)).await?;
        Ok(Self { wallet })
    }

    /// The underlying cdk wallet.
    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// Pays a mint quote for `amount` (the fake backend settles it by itself) and mints
    /// proofs into this wallet.
    pub async fn fund(&self, amount: u64) -> Result<(), CashuError> {
        let quote = self
            .wallet
            .mint_quote(PaymentMethod::BOLT11, Some(amount.into()), None, None)
            .await
            .map_err(wallet_err)?;
        let mut last = None;
        for _ in 0..1000 {
            match self
                .wallet
                .mint(&quote.id, SplitTarget::default(), None)
                .await
            {
                Ok(_) => return Ok(()),
                Err(
                    e
                    @ (CdkError::UnpaidQuote | CdkError::PendingQuote | CdkError::AmountUndefined),
                ) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => return Err(wallet_err(e)),
            }
        }
        Err(wallet_err(last.unwrap_or(CdkError::UnpaidQuote)))
    }

    /// Mints `amount` and exports it as one token.
    pub async fn mint_token(
        &self,
        amount: u64,
        format: TokenFormat,
    ) -> Result<CashuToken, CashuError> {
        self.fund(amount).await?;
        self.send(amount, format).await
    }

    /// Exports `amount` from this wallet as a token.
    pub async fn send(&self, amount: u64, format: TokenFormat) -> Result<CashuToken, CashuError> {
        let prepared = self
            .wallet
            .prepare_send(amount.into(), SendOptions::default())
            .await
            .map_err(wallet_err)?;
        let token: Token = prepared.confirm(None).await.map_err(wallet_err)?;
        Ok(CashuToken::new(match format {
            TokenFormat::V3 => {
                // The sent proofs with full keyset ids (V4 shortens v2 ids).
                let keysets: Vec<KeySetInfo> = self
                    .wallet
                    .keysets(KeysetLoadPolicy::CacheThenNetwork)
                    .await
                    .map_err(wallet_err)?
                    .into_iter()
                    .map(|k| KeySetInfo {
                        id: k.id,
                        unit: k.unit,
                        active: k.active.unwrap_or(false),
                        input_fee_ppk: k.input_fee_ppk,
                        final_expiry: k.final_expiry,
                    })
                    .collect();
                let proofs = token.proofs(&keysets).map_err(|e| wallet_err(e.into()))?;
                let full_ids: Vec<ShortKeysetId> = proofs
                    .iter()
                    .map(|p| ShortKeysetId::from_bytes(&p.keyset_id.to_bytes()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| wallet_err(e.into()))?;
                let mut v3 = TokenV3::new(
                    token.mint_url().map_err(|e| wallet_err(e.into()))?,
                    proofs,
                    None,
                    token.unit(),
                )
                .map_err(|e| wallet_err(e.into()))?;
                // cdk writes short ids into V3 proofs; NUT-00 V3 carries full ids.
                let v3_proofs = v3.token.iter_mut().flat_map(|t| t.proofs.iter_mut());
                for (proof, id) in v3_proofs.zip(full_ids) {
                    proof.keyset_id = id;
                }
                Token::TokenV3(v3).to_string()
            }
            TokenFormat::V4 => token.to_string(),
        }))
    }

    /// Redeems `token` into this wallet; the amount received after fees.
    pub async fn redeem(&self, token: &CashuToken) -> Result<u64, CashuError> {
        let amount = self
            .wallet
            .receive(token.expose(), ReceiveOptions::default())
            .await
            .map_err(wallet_err)?;
        Ok(amount.to_u64())
    }

    /// Unspent balance of this wallet.
    pub async fn balance(&self) -> Result<u64, CashuError> {
        Ok(self
            .wallet
            .total_balance()
            .await
            .map_err(wallet_err)?
            .to_u64())
    }
}

/// A BOLT11 invoice for `amount_msat` that the test mint's fake Lightning backend pays
/// (for withdrawal and Lightning-address tests).
pub fn fake_invoice(amount_msat: u64) -> String {
    cdk_fake_wallet::create_fake_invoice(amount_msat, "paygress test payee".into()).to_string()
}
