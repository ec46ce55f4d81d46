//! The wallet store and seed survive a restart.

use std::os::unix::fs::PermissionsExt;

use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_cashu::{CashuConfig, CashuError, CashuVerifier};
use paygress_core::money::{Amount, Unit};

#[tokio::test]
async fn balance_and_seed_survive_reopen() {
    let mint = TestMint::start().await.expect("mint");
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("a/b/cashu.db"), [mint.url().as_str()]).expect("config");

    let v = CashuVerifier::open(&config).await.expect("open");
    v.receive(&mint.mint_token(40, TokenFormat::V4).await.expect("t"))
        .await
        .expect("redeem");
    let seed = std::fs::read_to_string(config.seed_path()).expect("seed written");
    let mode = std::fs::metadata(config.seed_path())
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(v);

    let v = CashuVerifier::open(&config).await.expect("reopen");
    assert_eq!(
        std::fs::read_to_string(config.seed_path()).expect("seed"),
        seed
    );
    let balances = v.balances().await.expect("balances");
    let sat = balances
        .iter()
        .find(|b| b.mint == mint.url() && b.amount.unit == Unit::Sat)
        .expect("listed");
    assert_eq!(sat.amount, Amount::sat(40));
    // The operator exports part of it; a fresh wallet can spend the export.
    let token = v.send(Amount::sat(15), None).await.expect("send");
    assert_eq!(mint.redeem_as_buyer(&token).await.expect("redeem"), 15);
    let err = v.send(Amount::sat(1000), None).await.expect_err("too much");
    assert!(matches!(err, CashuError::InsufficientFunds(_)), "{err:?}");
}

#[tokio::test]
async fn corrupt_seed_blocks_startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("cashu.db"), ["http://127.0.0.1:1"]).expect("config");
    std::fs::write(config.seed_path(), "zz").expect("write");
    let err = CashuVerifier::open(&config)
        .await
        .expect_err("corrupt seed");
    assert!(matches!(err, CashuError::CorruptSeed(_)), "{err:?}");
    assert_eq!(
        std::fs::read_to_string(config.seed_path()).expect("kept"),
        "zz"
    );
}
