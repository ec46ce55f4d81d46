//! The service logs its npub and never its secret key.
//!
//! Alone in its own test binary: tracing caches per call site whether anyone listens,
//! process-wide, so a thread-local subscriber in a binary whose other tests already hit
//! the same log lines with no subscriber (as `cargo test` runs them, threads in one
//! process) would miss them.

#![allow(clippy::unwrap_used)]

/// Captured log output.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn logs_the_service_npub_and_never_the_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let relay = paygress_nostr::testkit::TestRelay::start().await.unwrap();
    let config =
        paygress_nostr::NostrConfig::from_values(None, relay.url().as_str(), dir.path()).unwrap();
    let npub = config.npub();
    let secret = config.keys.secret_key().to_secret_hex();
    let transport = paygress_nostr::NostrTransport::start(config).await.unwrap();
    transport.shutdown().await;
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains(&format!("Service public key: {npub}")),
        "{text}"
    );
    assert!(!text.contains(&secret));
}
