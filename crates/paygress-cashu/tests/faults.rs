//! Faults between the service's wallet and a real mint, through the fault proxy: lost
//! and cut swap answers, restarts between the swap and its resolution, tokens spent by
//! their sender, locked or malformed tokens, and input fees.

mod common;

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

async fn setup() -> (TestMint, MintProxy) {
    let mint = TestMint::start().await.expect("mint");
    let proxy = MintProxy::start(&mint).await.expect("proxy");
    (mint, proxy)
}

async fn token(proxy: &MintProxy, amount: u64, format: TokenFormat) -> CashuToken {
    Buyer::new(&proxy.url(), Unit::Sat)
        .await
        .expect("buyer")
        .mint_token(amount, format)
        .await
        .expect("token")
}

fn swaps(mint: &TestMint) -> usize {
    mint.requests()
        .all()
        .iter()
        .filter(|r| *r == "POST /v1/swap")
        .count()
}

/// The mint applies the swap, the answer is lost: `redeem` says ambiguous, `resolve`
/// credits exactly what the wallet received, once.
async fn lost_answer_is_resolved(fault: SwapFault) {
    let (mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    assert!(v.warm_up().await.is_empty());
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    mint.requests().clear();
    proxy.fail_next_swap(fault);
    let err = v.redeem(&t, &attempt).await.expect_err("answer lost");
    assert!(
        matches!(err, PaymentError::Ambiguous(_)),
        "{fault:?}: {err:?}"
    );
    assert_eq!(swaps(&mint), 1, "the swap reached the mint");
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);

    let got = v
        .resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(got.amount, Amount::sat(100));
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 100);
    // Resolving again reports the same receipt and does not credit it twice.
    let again = v
        .resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(again.amount, Amount::sat(100));
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 100);
    assert_eq!(
        swaps(&mint),
        1,
        "resolution never swaps an applied attempt again"
    );
    // The credited proofs are real: the whole balance leaves as a token worth 100.
    let out = v
        .issue(&proxy.url(), Amount::sat(100))
        .await
        .expect("issue");
    let payee = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    assert_eq!(payee.redeem(&out).await.expect("redeem"), 100);
}

#[tokio::test]
async fn lost_swap_answer_502() {
    lost_answer_is_resolved(SwapFault::LoseAnswer).await;
}

#[tokio::test]
async fn cut_swap_connection() {
    lost_answer_is_resolved(SwapFault::DropConnection).await;
}

#[tokio::test]
async fn delayed_swap_answer_is_a_normal_redeem() {
    let (_mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let t = token(&proxy, 21, TokenFormat::V4).await;
    proxy.fail_next_swap(SwapFault::Delay(std::time::Duration::from_millis(300)));
    let attempt = v.prepare(&t).await.expect("prepare");
    let got = v.redeem(&t, &attempt).await.expect("redeem");
    assert_eq!(got.amount, Amount::sat(21));
    assert_eq!(proxy.stats().delayed, 1);
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 21);
}

#[tokio::test]
async fn lost_answer_resolved_after_restart() {
    let (mint, proxy) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("cashu.db"), [proxy.url().to_string()]).expect("config");
    let t = token(&proxy, 64, TokenFormat::V3).await;
    let journaled = {
        let v = CashuVerifier::open(&config).await.expect("open");
        let attempt = v.prepare(&t).await.expect("prepare");
        let journaled = serde_json::to_string(&attempt).expect("serialize");
        proxy.fail_next_swap(SwapFault::LoseAnswer);
        let err = v.redeem(&t, &attempt).await.expect_err("lost");
        assert!(matches!(err, PaymentError::Ambiguous(_)), "{err:?}");
        journaled
    };
    // A new process: same store and seed, the attempt read back from the journal.
    let v = CashuVerifier::open(&config).await.expect("reopen");
    v.warm_up().await;
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);
    let attempt: RedeemAttempt = serde_json::from_str(&journaled).expect("deserialize");
    let got = v
        .resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(got.amount, Amount::sat(64));
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 64);
    v.resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 64);
    assert_eq!(swaps(&mint), 1);
}

#[tokio::test]
async fn resolve_after_restart_of_an_attempt_never_sent() {
    // Crash between journaling the attempt and the swap: resolve completes it.
    let (mint, proxy) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("cashu.db"), [proxy.url().to_string()]).expect("config");
    let t = token(&proxy, 33, TokenFormat::V4).await;
    let journaled = {
        let v = CashuVerifier::open(&config).await.expect("open");
        serde_json::to_string(&v.prepare(&t).await.expect("prepare")).expect("serialize")
    };
    let v = CashuVerifier::open(&config).await.expect("reopen");
    let attempt: RedeemAttempt = serde_json::from_str(&journaled).expect("deserialize");
    let got = v
        .resolve(&t, &attempt)
        .await
        .expect("resolve")
        .expect("received");
    assert_eq!(got.amount, Amount::sat(33));
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 33);
    assert_eq!(swaps(&mint), 1);
}

#[tokio::test]
async fn token_spent_by_its_sender_resolves_to_nothing() {
    let (_mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let t = token(&proxy, 50, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    // The sender spends it himself first (another wallet receives it).
    let thief = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    assert_eq!(thief.redeem(&t).await.expect("sender spends it"), 50);
    assert_eq!(v.resolve(&t, &attempt).await.expect("resolve"), None);
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);
    // And a redeem of it says spent, nothing credited.
    let err = v.redeem(&t, &attempt).await.expect_err("spent");
    assert!(matches!(err, PaymentError::AlreadySpent), "{err:?}");
    assert_eq!(v.resolve(&t, &attempt).await.expect("resolve"), None);
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);
}

#[tokio::test]
async fn locked_and_duplicated_tokens_are_refused_offline() {
    let (mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let buyer = Buyer::new(&proxy.url(), Unit::Sat).await.expect("buyer");
    buyer.fund(100).await.expect("fund");
    let key = SecretKey::generate().public_key();
    let prepared = buyer
        .wallet()
        .prepare_send(
            10.into(),
            SendOptions {
                conditions: Some(SpendingConditions::new_p2pk(key, None)),
                ..Default::default()
            },
        )
        .await
        .expect("prepare p2pk send");
    let locked = CashuToken::new(prepared.confirm(None).await.expect("send").to_string());

    let plain = buyer.send(8, TokenFormat::V3).await.expect("send");
    let Token::TokenV3(mut v3) = Token::from_str(plain.expose()).expect("decode") else {
        panic!("V3 expected")
    };
    let first = v3.token[0].proofs[0].clone();
    v3.token[0].proofs.push(first);
    let doubled = CashuToken::new(Token::TokenV3(v3).to_string());

    mint.requests().clear();
    assert!(matches!(v.inspect(&locked), Err(PaymentError::Locked(_))));
    assert!(matches!(
        v.prepare(&locked).await,
        Err(PaymentError::Locked(_))
    ));
    assert!(matches!(
        v.inspect(&doubled),
        Err(PaymentError::DuplicateProofs)
    ));
    assert!(matches!(
        v.prepare(&doubled).await,
        Err(PaymentError::DuplicateProofs)
    ));
    assert_eq!(
        mint.requests().all(),
        Vec::<String>::new(),
        "no mint request"
    );
    // The locked proofs are still the buyer's to spend: nothing was redeemed.
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 0);
    assert!(
        v.check(&plain).await.expect("check").spendable,
        "the doubled token's proofs are untouched"
    );
}

fn spawn(token: CashuToken, minutes: u64) -> Request {
    Request::Spawn(SpawnRequest {
        cashu_token: token,
        ssh_username: None,
        pod_image: None,
        duration_minutes: Some(minutes),
        tier: None,
        ssh_public_key: None,
        password_login: None,
    })
}

#[tokio::test]
async fn input_fee_is_known_after_warm_up_and_charged_to_the_buyer() {
    // One sat per proof.
    let mint = TestMint::start_with(TestMintOptions {
        input_fee_ppk: 1000,
        ..Default::default()
    })
    .await
    .expect("mint");
    let proxy = MintProxy::start(&mint).await.expect("proxy");
    let (v, _dir) = verifier(&[proxy.url()]).await;
    assert!(v.warm_up().await.is_empty());
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let proofs = Token::from_str(t.expose())
        .expect("decode")
        .token_secrets()
        .len() as u64;
    let info = v.inspect(&t).expect("inspect");
    assert_eq!(
        info.fee,
        Amount::sat(proofs),
        "fee known offline after warm-up"
    );

    let backend = Arc::new(MemoryBackend::new());
    // 60 sat per hour: 30 minutes cost 30 sat.
    let service = Paygress::builder(
        ServiceConfig::default(),
        Arc::new(v.clone()),
        backend.clone(),
    )
    .build();
    let alice = Requester::new("test", "alice");

    // Price + fee exceeds the token: refused untouched, and the answer names the fee.
    let short = token(&proxy, 31, TokenFormat::V4).await; // at least 5 proofs: fee >= 5
    let reply = service
        .handle(
            &RequestKey::new("test", "short"),
            &alice,
            spawn(short.clone(), 30),
        )
        .await;
    assert_eq!(
        reply.error_code(),
        Some(ErrorCode::InsufficientPayment),
        "{reply:?}"
    );
    let Reply::Error(e) = &reply else { panic!() };
    assert!(e.message.contains("fee"), "{}", e.message);
    assert!(v.check(&short).await.expect("check").spendable);

    // Enough for price + fee: the lease costs 30, the mint keeps its fee, the change is
    // the rest, and the wallet holds exactly the price.
    let reply = service
        .handle(&RequestKey::new("test", "ok"), &alice, spawn(t, 30))
        .await;
    let Reply::AccessDetails(access) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(access.duration_seconds, 30 * 60);
    let change = access.change_token.clone().expect("change");
    let change_value = Token::from_str(change.expose())
        .expect("decode")
        .value()
        .expect("value")
        .to_u64();
    assert!(proofs < 70);
    // Token = price + the redeem's fee + change + the fee for making the change (the
    // change is net of it, and the reply says how much).
    let issue_fee = 100 - proofs - 30 - change_value;
    assert!(issue_fee < 10, "issue fee {issue_fee}");
    if issue_fee > 0 {
        assert!(
            access
                .instructions
                .iter()
                .any(|i| i.contains(&format!("fee of {issue_fee} sat"))),
            "{:?}",
            access.instructions
        );
    }
    // The wallet holds exactly the price.
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 30);
}

/// Issuing change swaps the service's own proofs, and the mint takes its input fee
/// for that swap: the change is made net of it, so the operator keeps the price.
#[tokio::test]
async fn issuing_change_does_not_cost_the_operator() {
    let mint = TestMint::start_with(TestMintOptions {
        input_fee_ppk: 1000,
        ..Default::default()
    })
    .await
    .expect("mint");
    let proxy = MintProxy::start(&mint).await.expect("proxy");
    let (v, _dir) = verifier(&[proxy.url()]).await;
    v.warm_up().await;
    let service = Paygress::builder(
        ServiceConfig::default(),
        Arc::new(v.clone()),
        Arc::new(MemoryBackend::new()),
    )
    .build();
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let reply = service
        .handle(
            &RequestKey::new("test", "1"),
            &Requester::new("test", "alice"),
            spawn(t, 30),
        )
        .await;
    let Reply::AccessDetails(access) = reply else {
        panic!("expected access, got {reply:?}");
    };
    // The operator keeps exactly the price; the change is net of the mint's fee for
    // making it, and the reply says so.
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 30);
    let change = access.change_token.expect("change");
    let worth = v.inspect(&change).expect("inspect").amount;
    assert!(worth.value < 70, "change worth {worth}");
    assert!(
        access.instructions.iter().any(|i| i.contains("fee")),
        "{:?}",
        access.instructions
    );
}

/// Resolving an attempt again after the wallet has spent what it received (a crash
/// between the resolution and the journal line that records it, while other requests
/// kept paying change) must not put the spent proofs back into the wallet: they would
/// go out in the next buyer's change or refund, which then does not redeem.
#[tokio::test]
async fn resolving_again_after_the_wallet_spent_the_proofs_adds_nothing() {
    let (_mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    proxy.fail_next_swap(SwapFault::LoseAnswer);
    v.redeem(&t, &attempt).await.expect_err("answer lost");
    let got = v.resolve(&t, &attempt).await.expect("resolve");
    assert_eq!(got.map(|r| r.amount), Some(Amount::sat(100)));
    // The wallet pays out 99 (a swap consumes the received proofs) and the payee
    // redeems it.
    let out = v.issue(&proxy.url(), Amount::sat(99)).await.expect("issue");
    let payee = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    assert_eq!(payee.redeem(&out).await.expect("redeem"), 99);
    let left = balance(&v, &proxy.url(), Unit::Sat).await;
    assert!(left <= 1, "left {left}");

    // The attempt is resolved again: it still reports what was received...
    let again = v.resolve(&t, &attempt).await.expect("resolve");
    assert_eq!(again.map(|r| r.amount), Some(Amount::sat(100)));
    // ...but the wallet holds no more than before, and what it holds is real.
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, left);
    if left > 0 {
        let rest = v
            .issue(&proxy.url(), Amount::sat(left))
            .await
            .expect("issue");
        assert_eq!(payee.redeem(&rest).await.expect("the rest is real"), left);
    }
}

/// A change token whose swap answer was lost: cdk's recovery puts the swap's inputs back
/// as unspent although the mint spent them. They must never go out again in a token
/// (the buyer would get a token that does not redeem), and the swap's outputs are the
/// operator's: recovered from the mint.
#[tokio::test]
async fn an_issue_whose_swap_answer_was_lost_never_hands_out_spent_proofs() {
    issue_with_a_lost_swap_answer_loses_nothing(SwapFault::LoseAnswer).await;
}

/// The same with the connection cut mid-answer (cdk's swap saga then finds its reserved
/// proofs under the send's operation, not its own, and leaves them reserved).
#[tokio::test]
async fn an_issue_whose_swap_connection_was_cut_loses_nothing() {
    issue_with_a_lost_swap_answer_loses_nothing(SwapFault::DropConnection).await;
}

async fn issue_with_a_lost_swap_answer_loses_nothing(fault: SwapFault) {
    let (_mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    v.redeem(&t, &attempt).await.expect("redeem");
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 100);

    proxy.fail_next_swap(fault);
    v.issue(&proxy.url(), Amount::sat(99))
        .await
        .expect_err("the swap's answer is lost");
    // Recovery runs (at the next start, or before the next send).
    assert!(v.warm_up().await.is_empty());

    // Whatever the wallet says it holds, it can hand out, and the payee redeems it.
    let payee = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    let mut paid_out = 0;
    for _ in 0..2 {
        let held = balance(&v, &proxy.url(), Unit::Sat).await;
        if held == 0 {
            break;
        }
        let out = v
            .issue(&proxy.url(), Amount::sat(held))
            .await
            .expect("issue");
        paid_out += payee
            .redeem(&out)
            .await
            .expect("a token the service hands out redeems");
    }
    // Nothing was lost to the lost answer: the swap's outputs came back from the mint.
    assert_eq!(paid_out, 100);
}

/// Issue ids make change and refunds happen at most once: asking again under the same
/// id (after a crash or a lost answer) returns the token already made.
#[tokio::test]
async fn an_issue_asked_twice_makes_one_token() {
    let (_mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    v.redeem(&t, &attempt).await.expect("redeem");
    let id = IssueId::generate();
    let first = v
        .issue_once(&id, &proxy.url(), Amount::sat(40))
        .await
        .expect("issue");
    let again = v
        .issue_once(&id, &proxy.url(), Amount::sat(40))
        .await
        .expect("issue again");
    assert_eq!(first.expose(), again.expose());
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 60);
    let payee = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    assert_eq!(payee.redeem(&first).await.expect("redeem"), 40);
}

/// The swap of an issue loses its answer: asking again under the same id, after
/// recovery, yields one token that redeems, and the operator pays it once.
#[tokio::test]
async fn an_issue_whose_answer_was_lost_is_paid_once() {
    let (_mint, proxy) = setup().await;
    let (v, _dir) = verifier(&[proxy.url()]).await;
    let t = token(&proxy, 100, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    v.redeem(&t, &attempt).await.expect("redeem");
    let id = IssueId::generate();
    proxy.fail_next_swap(SwapFault::LoseAnswer);
    v.issue_once(&id, &proxy.url(), Amount::sat(41))
        .await
        .expect_err("answer lost");
    let token = v
        .issue_once(&id, &proxy.url(), Amount::sat(41))
        .await
        .expect("issue after recovery");
    let payee = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    assert_eq!(payee.redeem(&token).await.expect("redeem"), 41);
    let held = balance(&v, &proxy.url(), Unit::Sat).await;
    assert_eq!(held, 59, "the operator paid the change once");
    let rest = v
        .issue(&proxy.url(), Amount::sat(held))
        .await
        .expect("rest");
    assert_eq!(payee.redeem(&rest).await.expect("the rest is real"), 59);
}

/// Proofs left reserved by an operation that no longer exists (what a chaos run found
/// after cdk's recovery of a send whose swap connection was cut) are released by the
/// next recovery: the balance comes back, and what it holds is real.
#[tokio::test]
async fn proofs_reserved_by_a_vanished_operation_are_released() {
    let (_mint, proxy) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        CashuConfig::new(dir.path().join("cashu.db"), [proxy.url().to_string()]).expect("config");
    let v = CashuVerifier::open(&config).await.expect("open");
    let t = token(&proxy, 53, TokenFormat::V4).await;
    let attempt = v.prepare(&t).await.expect("prepare");
    v.redeem(&t, &attempt).await.expect("redeem");
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 53);
    // Reserve every proof under an operation no saga knows, as the crash left them.
    {
        use paygress_cashu::cdk::nuts::State;
        let db = cdk_sqlite::WalletSqliteDatabase::new(dir.path().join("cashu.db"))
            .await
            .expect("db");
        use paygress_cashu::cdk::cdk_database::WalletDatabase;
        let proofs = db
            .get_proofs(None, None, Some(vec![State::Unspent]), None)
            .await
            .expect("proofs");
        let ys: Vec<_> = proofs.iter().map(|p| p.y).collect();
        let dead = uuid::Uuid::from_u128(0x5ead);
        db.reserve_proofs(ys, &dead).await.expect("reserve");
    }
    let v = CashuVerifier::open(&config).await.expect("reopen");
    assert_eq!(
        balance(&v, &proxy.url(), Unit::Sat).await,
        0,
        "stuck before recovery"
    );
    assert!(v.warm_up().await.is_empty());
    assert_eq!(balance(&v, &proxy.url(), Unit::Sat).await, 53);
    let out = v.issue(&proxy.url(), Amount::sat(53)).await.expect("issue");
    let payee = Buyer::new(&proxy.url(), Unit::Sat).await.expect("wallet");
    assert_eq!(payee.redeem(&out).await.expect("real"), 53);
}
