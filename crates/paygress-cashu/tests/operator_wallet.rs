//! The operator's wallet against a real in-process mint (fake Lightning): withdraw to an
//! invoice and to a Lightning address served on 127.0.0.1, the history, and a backup
//! restored into a fresh data directory.

use axum::extract::{Query, State};
use axum::routing::get;
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_cashu::{
    CashuConfig, CashuVerifier, Movement, SeedBackup, read_seed_backup, write_seed_backup,
};
use paygress_core::money::{Amount, MintUrl, Unit};

async fn sat_balance(v: &CashuVerifier, mint: &MintUrl) -> u64 {
    v.balances()
        .await
        .expect("balances")
        .into_iter()
        .find(|b| &b.mint == mint && b.amount.unit == Unit::Sat)
        .map(|b| b.amount.value)
        .expect("listed")
}

/// A bolt11 invoice for `sat` that the test mint's fake Lightning backend pays.
fn invoice(sat: u64) -> String {
    cdk_fake_wallet::create_fake_invoice(sat * 1000, "operator income".into()).to_string()
}

async fn funded(mint: &TestMint, dir: &std::path::Path, sat: u64) -> (CashuVerifier, CashuConfig) {
    let config = CashuConfig::new(dir.join("cashu.db"), [mint.url().as_str()]).expect("config");
    let v = CashuVerifier::open(&config).await.expect("open");
    v.receive(&mint.mint_token(sat, TokenFormat::V4).await.expect("token"))
        .await
        .expect("redeem");
    (v, config)
}

#[tokio::test]
async fn withdraw_pays_an_invoice_and_the_balance_drops_by_amount_and_fee() {
    let mint = TestMint::start().await.expect("mint");
    let dir = tempfile::tempdir().expect("tempdir");
    let (v, _) = funded(&mint, dir.path(), 100).await;
    let before = sat_balance(&v, &mint.url()).await;
    assert_eq!(before, 100);

    let quote = v.withdraw_quote(&invoice(40), None).await.expect("quote");
    assert_eq!(quote.amount, Amount::sat(40));
    assert!(
        quote.fee_reserve.value >= 1,
        "the fake backend reserves a fee"
    );
    assert_eq!(quote.balance.value, 100);
    // Quoting paid nothing.
    assert_eq!(sat_balance(&v, &mint.url()).await, 100);

    let paid = v.withdraw(&quote).await.expect("withdraw");
    assert_eq!(paid.amount, Amount::sat(40));
    assert!(paid.fee_paid.value <= quote.fee_reserve.value);
    let after = sat_balance(&v, &mint.url()).await;
    assert_eq!(
        before - after,
        paid.amount.value + paid.fee_paid.value,
        "balance drops by amount + fee (fee {})",
        paid.fee_paid
    );

    // More than the wallet holds: refused at quote time, nothing paid.
    let err = v
        .withdraw_quote(&invoice(1000), None)
        .await
        .expect_err("too much");
    assert!(err.to_string().contains("insufficient"), "{err}");
    assert_eq!(sat_balance(&v, &mint.url()).await, after);

    let history = v.history().await.expect("history");
    let kinds: Vec<(Movement, u64)> = history
        .iter()
        .map(|e| (e.movement, e.amount.value))
        .collect();
    assert!(kinds.contains(&(Movement::Received, 100)), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .any(|(m, a)| *m == Movement::Withdrawn && *a >= 40),
        "{kinds:?}"
    );
}

#[derive(Clone)]
struct Lnurl {
    base: String,
}

#[derive(serde::Deserialize)]
struct AmountQuery {
    amount: u64,
}

#[tokio::test]
async fn withdraw_to_a_lightning_address_served_on_loopback() {
    let mint = TestMint::start().await.expect("mint");
    let dir = tempfile::tempdir().expect("tempdir");
    let (v, _) = funded(&mint, dir.path(), 60).await;

    // LUD-16 / LUD-06 on 127.0.0.1: the callback returns an invoice of the test mint.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route(
            "/.well-known/lnurlp/operator",
            get(|State(s): State<Lnurl>| async move {
                axum::Json(serde_json::json!({
                    "tag": "payRequest",
                    "callback": format!("{}/cb", s.base),
                    "minSendable": 1000,
                    "maxSendable": 1_000_000,
                    "metadata": "[[\"text/plain\",\"operator\"]]"
                }))
            }),
        )
        .route(
            "/cb",
            get(|Query(q): Query<AmountQuery>| async move {
                let pr = invoice(q.amount / 1000);
                axum::Json(serde_json::json!({ "pr": pr, "routes": [] }))
            }),
        )
        .with_state(Lnurl { base: base.clone() });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let address = format!("operator@{}", base.trim_start_matches("http://"));
    let pr = paygress_cashu::lnaddress::invoice_for(&address, 25_000)
        .await
        .expect("invoice from the address");
    let quote = v.withdraw_quote(&pr, None).await.expect("quote");
    assert_eq!(quote.amount, Amount::sat(25));
    let paid = v.withdraw(&quote).await.expect("withdraw");
    assert_eq!(
        sat_balance(&v, &mint.url()).await,
        60 - 25 - paid.fee_paid.value
    );
    // Outside the address's bounds: refused before any invoice is asked.
    let err = paygress_cashu::lnaddress::invoice_for(&address, 500)
        .await
        .expect_err("below minSendable");
    assert!(err.to_string().contains("outside"), "{err}");
    server.abort();
}

#[tokio::test]
async fn backup_words_restore_the_balance_into_a_fresh_data_dir() {
    let mint = TestMint::start().await.expect("mint");
    let old = tempfile::tempdir().expect("tempdir");
    let (v, config) = funded(&mint, old.path(), 50).await;
    v.receive(&mint.mint_token(7, TokenFormat::V3).await.expect("token"))
        .await
        .expect("redeem");
    // A refund paid out: its value is spent, the change stays.
    let refund = v.send(Amount::sat(12), None).await.expect("send");
    assert_eq!(mint.redeem_as_buyer(&refund).await.expect("buyer"), 12);
    let held = sat_balance(&v, &mint.url()).await;
    assert_eq!(held, 45);

    let backup = read_seed_backup(&config.seed_path()).expect("backup");
    let SeedBackup::Words(words) = &backup else {
        panic!("a new wallet's seed is words")
    };
    assert_eq!(words.split(' ').count(), 24);

    let fresh = tempfile::tempdir().expect("tempdir");
    let fresh_config =
        CashuConfig::new(fresh.path().join("cashu.db"), [mint.url().as_str()]).expect("config");
    write_seed_backup(&fresh_config.seed_path(), backup.expose()).expect("write seed");
    assert!(
        write_seed_backup(&fresh_config.seed_path(), backup.expose()).is_err(),
        "an existing seed is never replaced"
    );
    let restored = CashuVerifier::open(&fresh_config).await.expect("open");
    assert_eq!(sat_balance(&restored, &mint.url()).await, 0);
    let found = restored.restore().await.expect("restore");
    let sat = found
        .iter()
        .find(|r| r.unspent.unit == Unit::Sat)
        .expect("sat restored");
    assert_eq!(sat.unspent, Amount::sat(held));
    assert_eq!(sat_balance(&restored, &mint.url()).await, held);
    // The restored proofs are money: they pay out.
    let token = restored.send(Amount::sat(20), None).await.expect("send");
    assert_eq!(mint.redeem_as_buyer(&token).await.expect("buyer"), 20);
}

#[test]
fn a_wrong_backup_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seed");
    assert!(write_seed_backup(&path, "not seed words at all").is_err());
    assert!(!path.exists());
}
