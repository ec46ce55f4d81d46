//! An in-process Nostr relay on 127.0.0.1 for tests and the demo (feature `test-relay`).
//!
//! Connections are accepted here with `TCP_NODELAY` set (nostr-relay-builder's own
//! listener leaves Nagle on, costing ~44 ms per round trip on loopback), upgraded to
//! WebSocket, and handed to [`LocalRelay::take_connection`]. Rate limits are relaxed.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use nostr_sdk::RelayUrl;
use nostr_sdk::hashes::{Hash, HashEngine, sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::error::NostrError;

/// A running relay; shut down on [`TestRelay::shutdown`] or drop.
#[derive(Debug)]
pub struct TestRelay {
    relay: LocalRelay,
    addr: SocketAddr,
    url: RelayUrl,
    accept: JoinHandle<()>,
    open: Arc<AtomicUsize>,
}

impl TestRelay {
    /// Starts a relay on a free port of 127.0.0.1.
    pub async fn start() -> Result<Self, NostrError> {
        Self::start_on(0).await
    }

    /// Starts a relay on `port` of 127.0.0.1 (0: any free port).
    pub async fn start_on(port: u16) -> Result<Self, NostrError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|source| NostrError::Io {
                path: format!("127.0.0.1:{port}"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| NostrError::Io {
            path: "listener".into(),
            source,
        })?;
        let builder = RelayBuilder::default().rate_limit(RateLimit {
            max_reqs: 10_000,
            notes_per_minute: 1_000_000,
        });
        let relay = LocalRelay::new(builder);
        let url = RelayUrl::parse(&format!("ws://{addr}")).map_err(|e| NostrError::RelayUrl {
            url: addr.to_string(),
            reason: e.to_string(),
        })?;
        let open = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(listener, relay.clone(), open.clone()));
        Ok(Self {
            relay,
            addr,
            url,
            accept,
            open,
        })
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> RelayUrl {
        self.url.clone()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many clients are connected now (a connection counts until its client closes
    /// it or the relay shuts down).
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until [`connections`](Self::connections) is `n`, polling; `false` if it is
    /// not within `within`.
    pub async fn wait_for_connections(&self, n: usize, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.connections() != n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        self.accept.abort();
        self.relay.shutdown();
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(listener: TcpListener, relay: LocalRelay, open: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let (relay, open) = (relay.clone(), open.clone());
        tokio::spawn(async move {
            open.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = serve(stream, peer, relay).await {
                debug!(error = %e, %peer, "test relay connection ended");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, relay: LocalRelay) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let key = read_upgrade_request(&mut stream).await?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    stream
        .write_all(response.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    relay
        .take_connection(stream, peer)
        .await
        .map_err(|e| e.to_string())
}

/// Reads the HTTP upgrade request (the client sends nothing more before the 101) and
/// returns its `Sec-WebSocket-Key`.
async fn read_upgrade_request(stream: &mut TcpStream) -> Result<String, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Err("upgrade request too large".into());
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed during handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim().to_owned())
        .ok_or_else(|| "not a WebSocket upgrade".to_owned())
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
fn accept_key(key: &str) -> String {
    let mut engine = sha1::Hash::engine();
    engine.input(key.as_bytes());
    engine.input(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(sha1::Hash::from_engine(engine).as_byte_array())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }
}
