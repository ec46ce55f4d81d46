//! `WITHDRAW_TO` + `WITHDRAW_ABOVE_SATS`: the sweep pays a mint's balance above the
//! threshold, less the mint's Lightning fee reserve, to a Lightning address served on
//! 127.0.0.1, and leaves a balance at or below the threshold alone.
#![cfg(feature = "dev")]

use axum::extract::Query;
use axum::routing::get;
use paygress_bin::withdraw::{SweepConfig, sweep_once};
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::Unit;

#[derive(serde::Deserialize)]
struct AmountQuery {
    amount: u64,
}

async fn sat_balance(v: &CashuVerifier) -> u64 {
    v.balances()
        .await
        .expect("balances")
        .into_iter()
        .filter(|b| b.amount.unit == Unit::Sat)
        .map(|b| b.amount.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_pays_the_balance_above_the_threshold_to_the_address() {
    let mint = TestMint::start().await.expect("mint");
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("cashu.db"), [mint.url().as_str()]).expect("config");
    let wallet = CashuVerifier::open(&config).await.expect("open");
    wallet
        .receive(&mint.mint_token(100, TokenFormat::V4).await.expect("token"))
        .await
        .expect("redeem");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let callback = format!("http://{host}/cb");
    let app = axum::Router::new()
        .route(
            "/.well-known/lnurlp/op",
            get(move || {
                let callback = callback.clone();
                async move {
                    axum::Json(serde_json::json!({
                        "tag": "payRequest", "callback": callback,
                        "minSendable": 1000, "maxSendable": 10_000_000, "metadata": "[]"
                    }))
                }
            }),
        )
        .route(
            "/cb",
            get(|Query(q): Query<AmountQuery>| async move {
                let pr = paygress_cashu::testkit::fake_invoice(q.amount);
                axum::Json(serde_json::json!({ "pr": pr }))
            }),
        );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let above = SweepConfig {
        to: format!("op@{host}"),
        above_sats: 150,
    };
    assert!(
        sweep_once(&wallet, &above).await.is_empty(),
        "100 sat is not above 150"
    );
    assert_eq!(sat_balance(&wallet).await, 100);

    // The test mint reserves as Lightning fee the whole amount (at least 1 sat), so the
    // most 100 sat can pay is 50 (+ 50 reserved): check that against the mint's quotes,
    // then that the sweep finds exactly that amount.
    let fits = |sat: u64| {
        let wallet = &wallet;
        async move {
            wallet
                .withdraw_quote(&paygress_cashu::testkit::fake_invoice(sat * 1000), None)
                .await
        }
    };
    assert!(fits(50).await.is_ok(), "50 sat + reserve fits 100");
    assert!(
        matches!(
            fits(51).await,
            Err(paygress_cashu::CashuError::InsufficientFunds(_))
        ),
        "51 sat + reserve does not fit 100"
    );

    let sweep = SweepConfig {
        to: format!("op@{host}"),
        above_sats: 50,
    };
    let sent = sweep_once(&wallet, &sweep).await;
    assert_eq!(sent.len(), 1, "one mint swept: {sent:?}");
    let (_, amount) = &sent[0];
    assert_eq!(
        *amount, 50,
        "the most the balance pays with the mint's fee reserve"
    );
    let history = wallet.history().await.expect("history");
    let withdrawn = history
        .iter()
        .find(|e| e.movement == paygress_cashu::Movement::Withdrawn)
        .unwrap_or_else(|| panic!("a withdrawal in the history: {history:?}"));
    assert_eq!(withdrawn.amount.value, 50, "{withdrawn:?}");
    let left = sat_balance(&wallet).await;
    assert_eq!(
        left,
        100 - 50 - withdrawn.fee.value,
        "the balance drops by amount + fee paid (the unused reserve comes back)"
    );
    assert!(withdrawn.fee.value <= 50, "{withdrawn:?}");
    server.abort();
}
