//! Crash recovery, settlement and the journal.

use super::*;

/// Simulates a crash after the swap: prepares and applies an attempt at the "mint" and
/// returns it with what the wallet received.
async fn swapped(fx: &Fixture, token: &CashuToken) -> (RedeemAttempt, paygress_core::Redeemed) {
    let attempt = fx.wallet.inner.prepare(token).await.expect("prepare");
    let payment = fx
        .wallet
        .inner
        .redeem(token, &attempt)
        .await
        .expect("redeem");
    (attempt, payment)
}

fn entry(stage: Stage) -> Entry {
    Entry::new(buyer(), Timestamp::UNIX_EPOCH, stage)
}

/// A spawn paid and half-created, then a crash: the journal says `Paid`.
async fn crashed_mid_spawn(fx: &Fixture, token: &CashuToken) -> LeaseId {
    let (_, payment) = swapped(fx, token).await;
    let mut spec = sample_spec(60);
    spec.owner = buyer();
    fx.backend.create(&spec).await.expect("create");
    let paid = Stage::Paid {
        purpose: Purpose::Spawn,
        lease: spec.id.clone(),
        payment,
    };
    fx.journal
        .put(&key("1"), &entry(paid))
        .await
        .expect("journal");
    spec.id
}

#[tokio::test]
async fn a_retry_after_a_crash_mid_spawn_gets_a_fresh_lease_and_no_second_charge() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    let half = crashed_mid_spawn(&fx, &token).await;

    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_ne!(a.pod_name, half, "the half-created pod is replaced");
    assert!(fx.backend.spec(&half).is_none());
    assert_eq!(fx.backend.len(), 1);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
    assert_eq!(fx.wallet.redeems(), 0, "the token is never redeemed again");
    assert!(fx.journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn settle_after_a_crash_mid_spawn_deletes_the_pod_and_refunds() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    crashed_mid_spawn(&fx, &token).await;

    assert_eq!(fx.service.settle().await, 1);
    assert!(fx.backend.is_empty());
    // The buyer's retry gets the refund settlement issued.
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 100);
    assert_eq!(fx.wallet.balance(), 0);
}

fn redeeming(lease: &LeaseId, token: &CashuToken, attempt: RedeemAttempt) -> Entry {
    entry(Stage::Redeeming {
        purpose: Purpose::Spawn,
        lease: lease.clone(),
        token: token.clone(),
        attempt,
    })
}

/// A spawn paid and created, then a crash before the payment's own journal line was
/// durable (it is written without waiting for its `fsync`): the journal says
/// `Redeeming`, and a pod exists under the lease id it names.
async fn crashed_mid_spawn_with_the_payment_line_lost(fx: &Fixture, token: &CashuToken) -> LeaseId {
    let (attempt, _) = swapped(fx, token).await;
    let mut spec = sample_spec(60);
    spec.owner = buyer();
    fx.backend.create(&spec).await.expect("create");
    fx.journal
        .put(&key("1"), &redeeming(&spec.id, token, attempt))
        .await
        .expect("journal");
    spec.id
}

#[tokio::test]
async fn a_retry_after_a_crash_mid_spawn_that_lost_the_payment_line_gets_a_working_lease() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    let half = crashed_mid_spawn_with_the_payment_line_lost(&fx, &token).await;

    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_ne!(a.pod_name, half, "the half-created pod is replaced");
    assert!(
        fx.backend.spec(&half).is_none(),
        "nobody holds its password"
    );
    assert_eq!(fx.backend.len(), 1);
    let spec = fx.backend.spec(&a.pod_name).expect("the new lease");
    assert_eq!(
        spec.password.expose(),
        a.ssh_password.expose(),
        "the reply opens it"
    );
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
    assert!(fx.journal.unfinished().await.expect("journal").is_empty());
}

#[tokio::test]
async fn settle_after_a_crash_mid_spawn_that_lost_the_payment_line_deletes_the_pod_and_refunds() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    crashed_mid_spawn_with_the_payment_line_lost(&fx, &token).await;

    assert_eq!(fx.service.settle().await, 1);
    assert!(fx.backend.is_empty());
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 100);
    assert_eq!(fx.wallet.balance(), 0);
}

#[tokio::test]
async fn settle_after_a_crash_before_the_swap_leaves_the_token_to_the_buyer() {
    let fx = Fixture::new();
    let token = fx.wallet.token(60);
    let attempt = fx.wallet.inner.prepare(&token).await.expect("prepare");
    fx.journal
        .put(&key("1"), &redeeming(&LeaseId::generate(), &token, attempt))
        .await
        .expect("journal");
    assert_eq!(fx.service.settle().await, 1);
    assert!(fx.wallet.inner.is_unspent(&token));
    assert_eq!(fx.wallet.balance(), 0);
    // The buyer's retry of the same message now goes through.
    access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test]
async fn settle_after_a_crash_after_the_swap_refunds_what_the_wallet_received() {
    let fx = Fixture::new();
    fx.wallet.inner.set_fee_ppk(1000);
    let token = fx.wallet.token(60);
    let (attempt, _) = swapped(&fx, &token).await;
    fx.journal
        .put(&key("1"), &redeeming(&LeaseId::generate(), &token, attempt))
        .await
        .expect("journal");
    assert_eq!(fx.service.settle().await, 1);
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    // 60 sat face, 1 sat mint fee: 59 received, 59 returned.
    assert_eq!(fx.wallet.spend(e.refund_token.as_ref()), 59);
    assert_eq!(fx.wallet.balance(), 0);
}

#[tokio::test]
async fn a_forged_token_left_mid_swap_is_never_refunded_from_the_operators_wallet() {
    let fx = Fixture::new();
    // The operator holds other buyers' money.
    let income = fx.wallet.token(500);
    access(fx.handle("paid", spawn_req(&income, None)).await);
    let before = fx.wallet.balance();
    // The attacker spends a token himself, then sends it (claiming its value) and the
    // service crashes mid-swap.
    let forged = fx.wallet.token(1000);
    let attempt = fx.wallet.inner.prepare(&forged).await.expect("prepare");
    fx.wallet.inner.spend(&forged).expect("attacker spends it");
    fx.journal
        .put(
            &key("1"),
            &redeeming(&LeaseId::generate(), &forged, attempt),
        )
        .await
        .expect("journal");

    assert_eq!(fx.service.settle().await, 1);
    let e = error(fx.handle("1", spawn_req(&forged, Some(60))).await);
    assert_eq!(e.code, ErrorCode::TokenAlreadySpent);
    assert!(e.refund_token.is_none());
    assert_eq!(
        fx.wallet.balance(),
        before,
        "nothing left the operator's wallet"
    );
}

#[tokio::test]
async fn a_lost_mint_answer_ends_in_the_lease_for_the_retry_never_already_spent() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    fx.wallet.inner.lose_next_answer();
    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
}

#[tokio::test]
async fn a_lost_mint_answer_with_the_mint_then_down_stays_open_until_the_retry() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    // The swap is applied, its answer lost, and the mint goes down before it can be
    // resolved: the request stays open, never "already spent".
    fx.wallet.inner.lose_next_answer_and_go_down();
    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::PaymentPending, "{e:?}");
    assert!(fx.backend.is_empty());
    assert_eq!(
        fx.service.settle().await,
        0,
        "still unknown while the mint is down"
    );

    fx.wallet.inner.set_mint_down(false);
    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.wallet.balance(), 60);
    assert!(fx.journal.unfinished().await.expect("journal").is_empty());
}

/// A journal that reads fine but cannot write.
struct ReadOnlyJournal;

#[async_trait::async_trait]
impl Journal for ReadOnlyJournal {
    async fn get(&self, _: &RequestKey) -> Result<Option<Entry>, JournalError> {
        Ok(None)
    }
    async fn put(&self, _: &RequestKey, _: &Entry) -> Result<(), JournalError> {
        Err(JournalError::Io("read-only file system".into()))
    }
    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError> {
        Ok(vec![])
    }
    async fn prune(&self, _: Timestamp) -> Result<usize, JournalError> {
        Ok(0)
    }
}

#[tokio::test]
async fn without_a_journal_no_payment_is_taken() {
    let wallet = HookedVerifier::new();
    let backend = paygress_core::memory::MemoryBackend::new();
    let service = Paygress::builder(
        config(),
        Arc::new(wallet.clone()),
        Arc::new(backend.clone()),
    )
    .journal(Arc::new(ReadOnlyJournal))
    .build();
    let token = wallet.token(60);
    let e = error(
        service
            .handle(&key("1"), &buyer(), spawn_req(&token, Some(60)))
            .await,
    );
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(wallet.inner.is_unspent(&token));
    assert_eq!(wallet.redeems(), 0);
    assert!(backend.is_empty());
}

/// A journal whose `unfinished` snapshot is held back until told: settlement then acts
/// after the snapshot, as a slow one would while live requests complete.
#[derive(Clone)]
struct GatedJournal {
    inner: paygress_core::memory::MemoryJournal,
    snapshotted: Arc<Notify>,
    go: Arc<Notify>,
}

#[async_trait::async_trait]
impl Journal for GatedJournal {
    async fn get(&self, key: &RequestKey) -> Result<Option<Entry>, JournalError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        self.inner.put(key, entry).await
    }
    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError> {
        let snapshot = self.inner.unfinished().await;
        self.snapshotted.notify_one();
        self.go.notified().await;
        snapshot
    }
    async fn prune(&self, before: Timestamp) -> Result<usize, JournalError> {
        self.inner.prune(before).await
    }
}

#[tokio::test]
async fn settlement_never_acts_on_a_stale_snapshot_of_a_request_that_completed() {
    let wallet = HookedVerifier::new();
    let backend = paygress_core::memory::MemoryBackend::new();
    let journal = GatedJournal {
        inner: paygress_core::memory::MemoryJournal::new(),
        snapshotted: Arc::default(),
        go: Arc::default(),
    };
    let service = Arc::new(
        Paygress::builder(
            config(),
            Arc::new(wallet.clone()),
            Arc::new(backend.clone()),
        )
        .journal(Arc::new(journal.clone()))
        .clock(Arc::new(paygress_core::memory::ManualClock::new(start())))
        .build(),
    );
    // The request pauses inside its redeem (journal: Redeeming) until settlement has
    // taken its snapshot; then it completes while settlement still holds the snapshot.
    let in_redeem = Arc::new(Notify::new());
    let (signal, snapshotted) = (in_redeem.clone(), journal.snapshotted.clone());
    wallet.before_redeem(move |_| {
        let (signal, snapshotted) = (signal.clone(), snapshotted.clone());
        async move {
            signal.notify_one();
            snapshotted.notified().await;
        }
        .boxed()
    });
    let token = wallet.token(100);
    let live = {
        let service = service.clone();
        let token = token.clone();
        tokio::spawn(async move {
            service
                .handle(&key("1"), &buyer(), spawn_req(&token, Some(60)))
                .await
        })
    };
    in_redeem.notified().await;
    let settle = {
        let service = service.clone();
        tokio::spawn(async move { service.settle().await })
    };
    let a = access(live.await.expect("request"));
    journal.go.notify_one();
    assert_eq!(
        settle.await.expect("settle"),
        1,
        "the entry is found finished"
    );

    // The buyer keeps the lease and the change; nothing was refunded or deleted.
    assert!(backend.spec(&a.pod_name).is_some());
    assert_eq!(wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(wallet.balance(), 60);
    assert_eq!(
        service
            .handle(&key("1"), &buyer(), spawn_req(&token, Some(60)))
            .await,
        Reply::AccessDetails(a)
    );
}

#[tokio::test]
async fn a_request_resent_after_its_entry_was_pruned_is_never_charged_twice() {
    let fx = Fixture::new();
    let token = fx.wallet.token(100);
    let a = access(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(fx.wallet.spend(a.change_token.as_ref()), 40);
    assert_eq!(fx.journal.len(), 1);

    // Past the retention (7 days by default), settlement forgets the finished entry.
    fx.clock.advance(8 * 24 * 3600);
    fx.service.settle().await;
    assert!(fx.journal.is_empty(), "finished entries are pruned");

    let e = error(fx.handle("1", spawn_req(&token, Some(60))).await);
    assert_eq!(e.code, ErrorCode::TokenAlreadySpent);
    assert!(e.refund_token.is_none());
    assert_eq!(fx.wallet.balance(), 60, "charged once");
    assert_eq!(fx.backend.len(), 1, "provisioned once");
}
