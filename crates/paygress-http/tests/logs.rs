//! Tokens and passwords never reach a log line, even at TRACE.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Harness, json};
use serde_json::json;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_logs() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let h = Harness::start().await;
    let paid = h.token(100);
    let (status, access) = json(
        h.post_paid("/spawn-pod", &json!({"duration_minutes": 30}), &paid)
            .await,
    )
    .await;
    assert_eq!(status, 201);
    let password = access["ssh_password"].as_str().unwrap().to_owned();
    let change = access["change_token"].as_str().unwrap().to_owned();

    let checked = h.token(5);
    let (status, _) = json(
        h.get(&format!(
            "/auth?token={}",
            checked.expose().replace(':', "%3A")
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let small = h.token(1);
    let (status, _) = json(
        h.post_paid("/spawn-pod", &json!({"duration_minutes": 30}), &small)
            .await,
    )
    .await;
    assert_eq!(status, 400);

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/spawn-pod") && logs.contains("/auth"),
        "request logs missing:\n{logs}"
    );
    for secret in [
        paid.expose(),
        checked.expose(),
        small.expose(),
        &password,
        &change,
        "fakecashu",
    ] {
        assert!(!logs.contains(secret), "log leaks a secret:\n{logs}");
    }
}
