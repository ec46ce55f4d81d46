//! Protocol details the OpenSSH client cannot drive without a terminal: window-change
//! requests, and the host key the server presents.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use paygress_core::ports::PodBackend;
use paygress_local::SandboxMode;
use russh::keys::PublicKey;
use russh::{ChannelMsg, client};

struct Client {
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key {
            *self.seen.lock().unwrap() = Some(key.clone());
        }
        Ok(true)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_change_resizes_the_pty_and_host_key_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24210, SandboxMode::Bubblewrap).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();

    let seen = Arc::new(Mutex::new(None));
    let config = Arc::new(client::Config::default());
    let mut session = client::connect(config, ("127.0.0.1", port), Client { seen: seen.clone() })
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        b.host_public_key(),
        "server presents the persisted host key"
    );
    let auth = session
        .authenticate_password("alice", spec.password.expose())
        .await
        .unwrap();
    assert!(auth.success());

    let mut channel = session.channel_open_session().await.unwrap();
    channel
        .request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    // The shell prints the size, waits for a line, prints it again.
    channel
        .exec(true, "stty size; read -r line; stty size")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut resized = false;
    let mut code = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                out.extend_from_slice(&data);
                if !resized && String::from_utf8_lossy(&out).contains("24 80") {
                    resized = true;
                    // Ordered on the channel: the resize is applied before the line.
                    channel.window_change(132, 50, 0, 0).await.unwrap();
                    channel.data_bytes(&b"go\n"[..]).await.unwrap();
                }
            }
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(resized, "{text:?}");
    assert!(text.contains("50 132"), "{text:?}");
    assert_eq!(code, Some(0));
    drop(session);

    // A restarted backend presents the same host key (no known_hosts warnings).
    let before = b.host_public_key();
    b.delete(&spec.id).await.unwrap();
    drop(b);
    let b = backend(dir.path(), 24210, SandboxMode::Bubblewrap).await;
    assert_eq!(b.host_public_key(), before);
}
