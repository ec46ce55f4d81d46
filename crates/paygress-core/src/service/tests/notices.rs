//! Service tests: expiry notices.

use async_trait::async_trait;

use super::*;
use crate::ports::{Notifier, TransportError};
use crate::protocol::ExpiryNotice;

/// Records every expiry notice.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<(Requester, ExpiryNotice)>>>);

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, _: &RequestKey, _: &Requester, _: &Reply) -> Result<(), TransportError> {
        Ok(())
    }

    async fn notify_expiry(
        &self,
        owner: &Requester,
        notice: &ExpiryNotice,
    ) -> Result<(), TransportError> {
        self.0
            .lock()
            .expect("lock")
            .push((owner.clone(), notice.clone()));
        Ok(())
    }
}

fn service_with(recorder: &Recorder) -> (Paygress, MemoryBackend, MemoryJournal, ManualClock) {
    let backend = MemoryBackend::new();
    let journal = MemoryJournal::new();
    let clock = ManualClock::new(start());
    let service = Paygress::builder(
        config(),
        Arc::new(MockPaymentVerifier::new()),
        Arc::new(backend.clone()),
    )
    .journal(Arc::new(journal.clone()))
    .clock(Arc::new(clock.clone()))
    .notifier(Arc::new(recorder.clone()))
    .build();
    (service, backend, journal, clock)
}

#[tokio::test]
async fn the_owner_is_told_once_per_expiry_ten_minutes_ahead() {
    let recorder = Recorder::default();
    let (service, backend, journal, clock) = service_with(&recorder);
    let lease = seed_lease(&backend, Tier::standard(), at(HOUR)).await;

    // More than ten minutes left: nothing yet.
    clock.set(at(HOUR - 601));
    assert_eq!(service.notify_expiring().await, 0);
    // Ten minutes left: one notice, to the owner.
    clock.set(at(HOUR - 600));
    assert_eq!(service.notify_expiring().await, 1);
    // Not again for the same expiry, also by a new service on the same journal (a
    // restart).
    clock.set(at(HOUR - 60));
    assert_eq!(service.notify_expiring().await, 0);
    let restarted = Paygress::builder(
        config(),
        Arc::new(MockPaymentVerifier::new()),
        Arc::new(backend.clone()),
    )
    .journal(Arc::new(journal.clone()))
    .clock(Arc::new(clock.clone()))
    .notifier(Arc::new(recorder.clone()))
    .build();
    assert_eq!(restarted.notify_expiring().await, 0);
    {
        let seen = recorder.0.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, buyer());
        assert_eq!(seen[0].1.pod_name, lease);
        assert_eq!(seen[0].1.expires_at, at(HOUR));
        assert_eq!(seen[0].1.remaining_seconds, 600);
    }

    // A top-up moves the expiry: its own notice when it comes near.
    backend
        .extend(
            &lease,
            &Extension {
                expires_at: at(2 * HOUR),
                paid_msat: 120_000,
            },
        )
        .await
        .expect("extend");
    assert_eq!(service.notify_expiring().await, 0);
    clock.set(at(2 * HOUR - 300));
    assert_eq!(service.notify_expiring().await, 1);
    // Expired leases get none.
    clock.set(at(2 * HOUR + 1));
    assert_eq!(service.notify_expiring().await, 0);
    assert_eq!(recorder.0.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn notices_can_be_turned_off() {
    let recorder = Recorder::default();
    let backend = MemoryBackend::new();
    let clock = ManualClock::new(start());
    let service = Paygress::builder(
        ServiceConfig {
            expiry_notice: None,
            ..config()
        },
        Arc::new(MockPaymentVerifier::new()),
        Arc::new(backend.clone()),
    )
    .clock(Arc::new(clock.clone()))
    .notifier(Arc::new(recorder.clone()))
    .build();
    seed_lease(&backend, Tier::standard(), at(60)).await;
    assert_eq!(service.notify_expiring().await, 0);
    assert!(recorder.0.lock().expect("lock").is_empty());
}
