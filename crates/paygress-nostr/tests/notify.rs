//! Issue 11, case 5: money owed to a Nostr buyer (a refund or change the mint could not
//! issue at first, a payment whose mint answer was lost) reaches the buyer when
//! settlement issues it, as a new kind 1001 reply to the original request, without the
//! buyer resending anything. Real in-process relay, real core service on in-memory ports.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use paygress_core::memory::{MemoryBackend, MemoryVerifier};
use paygress_core::{
    Amount, BackendError, CashuToken, ErrorCode, Extension, LeaseId, LeaseRecord, LeaseSpec,
    MintUrl, Paygress, PodBackend, Provisioned, Reply, Request, ServiceConfig,
};
use paygress_nostr::client::awaits_follow_up;
use paygress_nostr::nostr_sdk::{Event, EventId, Keys, RelayUrl};
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::wire;
use paygress_nostr::{BuyerClient, NostrConfig, NostrTransport, Scheme, SendOptions};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A backend that takes the mint down when a pod is created (after the payment was
/// redeemed, before change or a refund is issued), and optionally fails the create.
struct MintGoesDownOnCreate {
    inner: MemoryBackend,
    verifier: MemoryVerifier,
    fail: bool,
}

#[async_trait]
impl PodBackend for MintGoesDownOnCreate {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        self.verifier.set_mint_down(true);
        if self.fail {
            return Err(BackendError::Unavailable("no capacity".into()));
        }
        self.inner.create(spec).await
    }

    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        self.inner.extend(id, extension).await
    }

    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        self.inner.delete(id).await
    }

    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        self.inner.get(id).await
    }

    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        self.inner.list().await
    }
}

struct Stack {
    _relay: TestRelay,
    url: RelayUrl,
    _dir: tempfile::TempDir,
    keys: Keys,
    mint: MintUrl,
    verifier: MemoryVerifier,
    service: Arc<Paygress>,
    transport: Arc<NostrTransport>,
}

impl Stack {
    async fn start(backend: Arc<dyn PodBackend>, verifier: MemoryVerifier, mint: MintUrl) -> Self {
        let relay = TestRelay::start().await.unwrap();
        let url = relay.url();
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::generate();
        let mut config = NostrConfig::new(keys.clone(), vec![url.clone()], dir.path());
        config.connect_timeout = Duration::from_secs(5);
        let transport = Arc::new(NostrTransport::start(config).await.unwrap());
        let service = Arc::new(
            Paygress::builder(
                ServiceConfig::default(),
                Arc::new(verifier.clone()),
                backend,
            )
            .notifier(Arc::new(transport.notifier()))
            .build(),
        );
        tokio::spawn(service.clone().serve(transport.clone()));
        Self {
            _relay: relay,
            url,
            _dir: dir,
            keys,
            mint,
            verifier,
            service,
            transport,
        }
    }

    async fn with_backend(fail: bool) -> Self {
        let mint = MintUrl::new("http://127.0.0.1:3338");
        let verifier = MemoryVerifier::new(vec![mint.clone()]);
        let backend = MintGoesDownOnCreate {
            inner: MemoryBackend::new(),
            verifier: verifier.clone(),
            fail,
        };
        Self::start(Arc::new(backend), verifier, mint).await
    }

    fn token(&self, sats: u64) -> CashuToken {
        self.verifier.mint_token(&self.mint, Amount::sat(sats))
    }

    async fn buyer(&self) -> BuyerClient {
        BuyerClient::connect(
            Keys::generate(),
            std::slice::from_ref(&self.url),
            self.keys.public_key(),
        )
        .await
        .unwrap()
    }

    /// Sends `request`, waits for its first reply (which must announce a follow-up),
    /// brings the mint back, settles, and returns (first reply, final reply, request id).
    async fn pay_then_settle(
        &self,
        buyer: &BuyerClient,
        request: Request,
        scheme: Scheme,
    ) -> (Reply, Reply, EventId) {
        let opts = SendOptions {
            scheme,
            p_tag: true,
        };
        let prepared = buyer.prepare(&request, opts).await.unwrap();
        let key = prepared.reply_key;
        buyer.publish(&prepared.event).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let waiter = {
            let buyer = buyer.clone();
            tokio::spawn(async move {
                buyer
                    .wait_final(key, TIMEOUT, TIMEOUT, move |r| {
                        let _ = tx.send(r.clone());
                    })
                    .await
            })
        };
        let first = rx
            .recv()
            .await
            .expect("a first reply announcing a follow-up");
        assert!(awaits_follow_up(&first), "{first:?}");
        // The request's answer is out (its lock is released before the reply is sent):
        // settlement closes it now that the mint is back.
        self.verifier.set_mint_down(false);
        assert_eq!(
            self.service.settle().await,
            1,
            "the open request is settled"
        );
        let last = waiter.await.unwrap().unwrap();
        assert!(
            !awaits_follow_up(&last),
            "no follow-up reply arrived: {last:?}"
        );
        (first, last, key)
    }

    /// Every kind 1001 event answering `id`, fetched by an independent client as
    /// `nak req -k 1001 -e <id>` would.
    async fn replies_to(&self, id: EventId) -> Vec<Event> {
        common::replies_on(std::slice::from_ref(&self.url), id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_the_mint_could_not_issue_is_delivered_by_settlement_as_a_new_reply() {
    let s = Stack::with_backend(true).await;
    let buyer_keys = Keys::generate();
    let buyer = BuyerClient::connect(
        buyer_keys.clone(),
        std::slice::from_ref(&s.url),
        s.keys.public_key(),
    )
    .await
    .unwrap();

    let (first, last, request_id) = s
        .pay_then_settle(&buyer, common::spawn_as(s.token(60), None), Scheme::Nip44)
        .await;
    assert_eq!(first.error_code(), Some(ErrorCode::RefundPending));
    assert!(first.returned_token().is_none());
    assert_eq!(last.error_code(), Some(ErrorCode::ProvisioningFailed));
    let refund = last.returned_token().expect("the refund");
    assert_eq!(s.verifier.spend(refund), Some(Amount::sat(60)));

    // On the relay: the first reply and a new one, both from the service to the buyer,
    // tagged with the original request; the new one is NIP-44 and carries the refund.
    let events = s.replies_to(request_id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let mut found = Vec::new();
    for e in &events {
        assert_eq!(e.pubkey, s.keys.public_key());
        assert!(e.verify().is_ok());
        assert_eq!(e.tags.event_ids().collect::<Vec<_>>(), vec![&request_id]);
        assert_eq!(
            e.tags.public_keys().collect::<Vec<_>>(),
            vec![&buyer_keys.public_key()]
        );
        let (scheme, json) =
            wire::decrypt(buyer_keys.secret_key(), &s.keys.public_key(), &e.content).unwrap();
        assert_eq!(scheme, Scheme::Nip44);
        found.push(serde_json::from_str::<Reply>(&json).unwrap());
    }
    assert!(found.contains(&first) && found.contains(&last), "{found:?}");
    // Settled for good: a second settlement delivers nothing more.
    assert_eq!(s.service.settle().await, 0);
    assert_eq!(s.replies_to(request_id).await.len(), 2);
    s.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_owed_to_a_nip17_buyer_follows_the_access_details() {
    let s = Stack::with_backend(false).await;
    let buyer = s.buyer().await;
    let (first, last, _) = s
        .pay_then_settle(&buyer, common::spawn_as(s.token(60), None), Scheme::Nip17)
        .await;
    let (Reply::AccessDetails(first), Reply::AccessDetails(last)) = (first, last) else {
        panic!("expected access details twice");
    };
    assert!(first.change_token.is_none());
    assert_eq!(
        (&last.pod_name, last.ssh_password.expose()),
        (&first.pod_name, first.ssh_password.expose()),
        "the same lease, completed with its change"
    );
    let change = last.change_token.as_ref().expect("the change");
    assert_eq!(s.verifier.spend(change), Some(Amount::sat(30)));
    s.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_whose_mint_answer_was_lost_is_resolved_and_refunded_to_the_buyer() {
    let mint = MintUrl::new("http://127.0.0.1:3338");
    let verifier = MemoryVerifier::new(vec![mint.clone()]);
    let s = Stack::start(Arc::new(MemoryBackend::new()), verifier, mint).await;
    s.verifier.lose_next_answer_and_go_down();
    let buyer = s.buyer().await;
    let (first, last, _) = s
        .pay_then_settle(&buyer, common::spawn_as(s.token(45), None), Scheme::Nip44)
        .await;
    assert_eq!(first.error_code(), Some(ErrorCode::PaymentPending));
    assert_eq!(last.error_code(), Some(ErrorCode::ProvisioningFailed));
    assert_eq!(
        s.verifier.spend(last.returned_token().expect("the refund")),
        Some(Amount::sat(45))
    );
    s.transport.shutdown().await;
}

/// The lease's owner receives the expiry notice from the relay: once per expiry, with
/// the expiry and a ready-to-paste `paygress topup` command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_receives_one_expiry_notice_per_expiry() {
    use paygress_core::{Paygress, ServiceConfig};
    use paygress_nostr::nostr_sdk::{Alphabet, Client, Filter, Kind, SingleLetterTag, ToBech32};
    use paygress_nostr::notify::{EXPIRY_NOTICE_TAG, read_expiry_notice};

    let h = common::Harness::start(1).await;
    let owner = paygress_nostr::nostr_sdk::Keys::generate();
    let buyer = h.buyer_as(owner.clone()).await;
    let reply = buyer
        .spawn(paygress_core::SpawnRequest::new(h.token(30)).with_duration_minutes(30))
        .await
        .unwrap();
    let paygress_core::Reply::AccessDetails(access) = reply else {
        panic!("expected access details, got {reply:?}")
    };
    // The same backend and journal seen by a service whose notices start an hour ahead.
    let journal = std::sync::Arc::new(paygress_core::memory::MemoryJournal::new());
    let notifying = Paygress::builder(
        ServiceConfig::default().with_expiry_notice(Some(std::time::Duration::from_secs(3600))),
        std::sync::Arc::new(h.verifier.clone()),
        std::sync::Arc::new(h.backend.clone()),
    )
    .journal(journal)
    .notifier(std::sync::Arc::new(h.transport.notifier()))
    .build();
    assert_eq!(notifying.notify_expiring().await, 1);
    assert_eq!(notifying.notify_expiring().await, 0, "once per expiry");

    let client = Client::default();
    for url in h.urls() {
        client.add_relay(url).await.unwrap();
    }
    client.connect().await;
    client.wait_for_connection(common::TIMEOUT).await;
    let filter = Filter::new()
        .kind(Kind::Custom(paygress_nostr::wire::KIND_REPLY))
        .author(h.keys.public_key())
        .pubkey(owner.public_key())
        .custom_tag(SingleLetterTag::lowercase(Alphabet::T), EXPIRY_NOTICE_TAG);
    let events = client.fetch_events(filter, common::TIMEOUT).await.unwrap();
    client.shutdown().await;
    let notices: Vec<_> = events
        .iter()
        .filter_map(|e| read_expiry_notice(&owner, &h.keys.public_key(), e))
        .collect();
    assert_eq!(notices.len(), 1, "{events:?}");
    let notice = &notices[0];
    assert_eq!(notice.pod_name, access.pod_name.to_string());
    assert_eq!(notice.expires_at, access.expires_at.to_string());
    let npub = h.keys.public_key().to_bech32().unwrap();
    assert!(
        notice.topup_command.starts_with(&format!(
            "paygress topup --service {npub} --relay {}",
            h.urls()[0]
        )),
        "{}",
        notice.topup_command
    );
    assert!(
        notice
            .topup_command
            .ends_with(&format!("--pod {} --token TOKEN", access.pod_name)),
        "{}",
        notice.topup_command
    );
    assert!(notice.message.contains(&notice.topup_command));
    // Nobody else can read it.
    let stranger = paygress_nostr::nostr_sdk::Keys::generate();
    assert!(
        events
            .iter()
            .all(|e| read_expiry_notice(&stranger, &h.keys.public_key(), e).is_none())
    );
}
