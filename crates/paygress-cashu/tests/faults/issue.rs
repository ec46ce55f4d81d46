//! Change and refunds under faults: made at most once, never from spent proofs.

use super::*;

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
