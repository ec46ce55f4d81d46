//! Faults between the service's wallet and a real mint, through the fault proxy: lost
//! and cut swap answers, restarts between the swap and its resolution, tokens spent by
//! their sender, locked or malformed tokens, and input fees.

#[path = "../common/mod.rs"]
mod common;
mod fees;
mod issue;
mod redeem;

use std::str::FromStr;
use std::sync::Arc;

use common::{balance, verifier};
use paygress_cashu::cdk::nuts::{SecretKey, SpendingConditions, Token};
use paygress_cashu::cdk::wallet::SendOptions;
use paygress_cashu::testkit::{
    Buyer, MintProxy, SwapFault, TestMint, TestMintOptions, TokenFormat,
};
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::memory::MemoryBackend;
use paygress_core::ports::{IssueId, PaymentError, PaymentVerifier, RedeemAttempt, RequestKey};
use paygress_core::protocol::{ErrorCode, Reply, Request, SpawnRequest};
use paygress_core::{Amount, CashuToken, Paygress, Requester, ServiceConfig, Unit};

pub(crate) async fn setup() -> (TestMint, MintProxy) {
    let mint = TestMint::start().await.expect("mint");
    let proxy = MintProxy::start(&mint).await.expect("proxy");
    (mint, proxy)
}

pub(crate) async fn token(proxy: &MintProxy, amount: u64, format: TokenFormat) -> CashuToken {
    Buyer::new(&proxy.url(), Unit::Sat)
        .await
        .expect("buyer")
        .mint_token(amount, format)
        .await
        .expect("token")
}

pub(crate) fn swaps(mint: &TestMint) -> usize {
    mint.requests()
        .all()
        .iter()
        .filter(|r| *r == "POST /v1/swap")
        .count()
}
