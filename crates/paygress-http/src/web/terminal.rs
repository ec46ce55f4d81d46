//! The browser terminal: a websocket the service bridges to the lease's SSH server,
//! logging in with the lease's own credentials.
//!
//! Protocol: the page's first message is text, `{"secret", "cols", "rows"}`; then binary
//! messages are keystrokes and text messages `{"resize": [cols, rows]}`. The service
//! sends the shell's output as binary messages and status lines as text.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use russh::keys::{HashAlg, PublicKey};
use russh::{ChannelMsg, client};
use serde::Deserialize;
use tracing::{debug, warn};

use super::WebState;

/// How long the page has to send its first message.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting and logging in to the lease may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
struct Hello {
    secret: String,
    #[serde(default = "default_cols")]
    cols: u32,
    #[serde(default = "default_rows")]
    rows: u32,
}

fn default_cols() -> u32 {
    80
}
fn default_rows() -> u32 {
    24
}

#[derive(Debug, Deserialize)]
struct Resize {
    resize: (u32, u32),
}

/// `GET /web/api/terminal` (websocket).
pub(crate) async fn terminal(State(state): State<Arc<WebState>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            if let Err(message) = session(state, socket).await {
                debug!(%message, "terminal closed");
            }
        })
}

/// Where and as whom to log in.
struct Login {
    host: String,
    port: u16,
    user: String,
    password: String,
}

async fn session(state: Arc<WebState>, mut socket: WebSocket) -> Result<(), String> {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Hello>(t.as_str())
            .map_err(|_| "the first message must be {secret, cols, rows}".to_owned()),
        _ => Err("no hello".to_owned()),
    };
    let hello = match hello {
        Ok(h) => h,
        Err(e) => return say(&mut socket, &e).await,
    };
    let login = match login_of(&state, &hello.secret) {
        Ok(l) => l,
        Err(e) => return say(&mut socket, &e).await,
    };
    let _ = socket
        .send(Message::Text("Connecting to your lease…".into()))
        .await;
    let checker = HostKey {
        fingerprint: state.config.host_key_fingerprint.clone(),
    };
    let connect = async {
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            ..client::Config::default()
        });
        let mut handle = client::connect(config, (login.host.as_str(), login.port), checker)
            .await
            .map_err(|e| format!("cannot reach the lease's SSH server: {e}"))?;
        let auth = handle
            .authenticate_password(login.user.clone(), login.password.clone())
            .await
            .map_err(|e| format!("login failed: {e}"))?;
        if !auth.success() {
            return Err("the lease refused its password".to_owned());
        }
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| format!("no session: {e}"))?;
        channel
            .request_pty(
                false,
                "xterm-256color",
                hello.cols.clamp(10, 500),
                hello.rows.clamp(5, 200),
                0,
                0,
                &[],
            )
            .await
            .map_err(|e| format!("no terminal: {e}"))?;
        channel
            .request_shell(false)
            .await
            .map_err(|e| format!("no shell: {e}"))?;
        Ok::<_, String>((handle, channel))
    };
    let (handle, channel) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return say(&mut socket, &e).await,
        Err(_) => return say(&mut socket, "connecting to the lease timed out").await,
    };
    let _ = socket.send(Message::Text("Connected.".into())).await;

    let (mut read, write) = channel.split();
    let (mut tx, mut rx) = socket.split();
    let to_browser = async {
        while let Some(msg) = read.wait().await {
            let open = match msg {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => {
                    tx.send(Message::Binary(data.to_vec().into())).await.is_ok()
                }
                ChannelMsg::Eof | ChannelMsg::Close => false,
                _ => true,
            };
            if !open {
                break;
            }
        }
        let _ = tx.send(Message::Text("The shell ended.".into())).await;
        let _ = tx.close().await;
    };
    let to_lease = async {
        while let Some(Ok(msg)) = rx.next().await {
            let open = match msg {
                Message::Binary(b) => write.data_bytes(b).await.is_ok(),
                Message::Text(t) => {
                    if let Ok(Resize { resize: (c, r) }) = serde_json::from_str(t.as_str()) {
                        let _ = write
                            .window_change(c.clamp(10, 500), r.clamp(5, 200), 0, 0)
                            .await;
                    }
                    true
                }
                Message::Close(_) => false,
                _ => true,
            };
            if !open {
                break;
            }
        }
        let _ = write.eof().await;
    };
    tokio::select! {
        () = to_browser => {}
        () = to_lease => {}
    }
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    Ok(())
}

/// Sends `message` as a status line and closes.
async fn say(socket: &mut WebSocket, message: &str) -> Result<(), String> {
    let _ = socket.send(Message::Text(message.to_owned().into())).await;
    let _ = socket.send(Message::Close(None)).await;
    Err(message.to_owned())
}

fn login_of(state: &WebState, secret: &str) -> Result<Login, String> {
    let entry = state
        .store
        .get(secret.trim())
        .ok_or_else(|| "no lease has this link".to_owned())?;
    let data = entry.data();
    let access = data
        .access
        .as_ref()
        .ok_or_else(|| "this lease is not paid yet".to_owned())?;
    if data
        .expires_at
        .is_none_or(|exp| exp <= state.paygress.now())
    {
        return Err("this lease has expired".to_owned());
    }
    Ok(Login {
        host: access.ssh_host.clone(),
        port: access.node_port.unwrap_or(access.ssh_port),
        user: access.ssh_username.clone(),
        password: access.ssh_password.expose().to_owned(),
    })
}

/// Accepts the lease's host key: the configured one when the operator gave its
/// fingerprint, else any (the service connects to its own backend's leases).
struct HostKey {
    fingerprint: Option<String>,
}

impl client::Handler for HostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let Some(expected) = &self.fingerprint else {
            return Ok(true);
        };
        let ok = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                fingerprint(key) == *expected
            }
            _ => false,
        };
        if !ok {
            warn!("lease SSH server presented an unexpected host key; terminal refused");
        }
        Ok(ok)
    }
}

/// `SHA256:…`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}
