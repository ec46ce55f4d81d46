//! Shared helpers for the integration tests.
#![allow(dead_code)]

use paygress_cashu::testkit::TestMint;
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::money::{MintUrl, Unit};

/// A verifier with a fresh on-disk store accepting `mints`.
pub async fn verifier(mints: &[MintUrl]) -> (CashuVerifier, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = CashuConfig::new(
        dir.path().join("data/cashu.db"),
        mints.iter().map(|m| m.as_str().to_owned()),
    )
    .expect("config");
    let v = CashuVerifier::open(&config).await.expect("open verifier");
    (v, dir)
}

/// A verifier accepting just `mint`.
pub async fn verifier_for(mint: &TestMint) -> (CashuVerifier, tempfile::TempDir) {
    verifier(&[mint.url()]).await
}

/// The service's balance at `mint` in `unit`.
pub async fn balance(v: &CashuVerifier, mint: &MintUrl, unit: Unit) -> u64 {
    v.balances()
        .await
        .expect("balances")
        .into_iter()
        .find(|b| &b.mint == mint && b.amount.unit == unit)
        .map(|b| b.amount.value)
        .expect("mint listed")
}
