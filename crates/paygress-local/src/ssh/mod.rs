//! One lease's SSH endpoint: the russh handler (auth, exec, shell with PTY) and the
//! accept loop. `lease`: what a lease's connections share; `conn`: one connection and
//! its commands; `flow`: input flow control; `handler`: the russh handler.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jiff::Timestamp;
use paygress_core::names::LeaseId;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{
    Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, Disconnect, MethodKind, MethodSet,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::config::ConnectionLimits;
use crate::sandbox::{LaunchSpec, Limits, Sandbox, kill_all};
use crate::store::PasswordHash;

/// The russh server configuration shared by every lease.
pub(crate) fn server_config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        keys: vec![host_key],
        // Keepalive replies count as activity: only dead peers hit this.
        inactivity_timeout: Some(Duration::from_secs(15 * 60)),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

mod conn;
mod flow;
mod handler;
mod lease;

use self::conn::*;
use self::flow::*;
pub(crate) use self::lease::LeaseShared;
use self::lease::*;

/// What the SSH servers of every lease share.
pub(crate) struct ServeContext {
    pub config: Arc<russh::server::Config>,
    pub limits: ConnectionLimits,
    /// One permit per open connection, all leases together.
    pub total: Arc<Semaphore>,
}

/// Accepts connections for one lease until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, lease: Arc<LeaseShared>, ctx: Arc<ServeContext>) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(lease = %lease.id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !lease.is_open() {
            drop(socket);
            continue;
        }
        let Ok(permit) = ctx.total.clone().try_acquire_owned() else {
            tracing::debug!(lease = %lease.id, %peer, "connection limit reached: closing");
            drop(socket);
            continue;
        };
        tokio::spawn(connection(socket, peer, lease.clone(), ctx.clone(), permit));
    }
}

/// A connection's socket that acknowledges what it reads at once (`TCP_QUICKACK`,
/// re-armed after every read: Linux clears it by itself).
///
/// Clients that do not set `TCP_NODELAY` (OpenSSH for a command without a terminal,
/// `ssh host cmd`) hold back their next small packet until the previous one is
/// acknowledged (Nagle), and a delayed ACK waits up to 40 ms: without this, a login
/// stalls for that long at some steps of the handshake.
struct QuickAck(tokio::net::TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(read, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let _ = rustix::net::sockopt::set_tcp_quickack(&self.0, true);
        }
        read
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The socket back as a tokio stream, plus a duplicate descriptor to shut it down.
fn split_killer(
    socket: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std = socket.into_std()?;
    let killer = std.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std)?, killer))
}

/// Forgets a connection's registration when its task ends.
struct Registration<'a> {
    lease: &'a LeaseShared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.lease.unregister(self.id);
    }
}

/// Runs one connection: login within the deadline (or pushed out by newer ones),
/// then the session until it ends or the lease closes.
async fn connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    lease: Arc<LeaseShared>,
    ctx: Arc<ServeContext>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = socket.set_nodelay(true);
    // A second descriptor of the socket, to cut a connection that does not log in
    // (russh cannot send a disconnect in the middle of a key exchange).
    let (socket, killer) = match split_killer(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(lease = %lease.id, error = %e, "could not duplicate a socket");
            return;
        }
    };
    let (id, mut outcome) = lease.register(peer.ip(), ctx.limits.unauthenticated_per_lease);
    let _registration = Registration { lease: &lease, id };
    let handler = Conn::new(lease.clone(), id, &ctx.limits);
    let deadline = tokio::time::sleep(ctx.limits.auth_timeout);
    tokio::pin!(deadline);

    // Handshake (the client may never even send its version line).
    let session = tokio::select! {
        r = russh::server::run_stream(ctx.config.clone(), QuickAck(socket), handler) => match r {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(lease = %lease.id, %peer, error = %e, "ssh handshake failed");
                return;
            }
        },
        () = &mut deadline => {
            tracing::debug!(lease = %lease.id, %peer, "no ssh handshake before the login deadline");
            return;
        }
        _ = &mut outcome => {
            tracing::debug!(lease = %lease.id, %peer, "unauthenticated connection pushed out");
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);

    // Login.
    let authenticated = tokio::select! {
        r = &mut session => {
            if let Err(e) = r {
                tracing::debug!(lease = %lease.id, %peer, error = %e, "ssh session ended before login");
            }
            return;
        }
        () = &mut deadline => false,
        o = &mut outcome => o == Ok(Outcome::Authenticated),
    };
    if !authenticated {
        tracing::debug!(lease = %lease.id, %peer, "closing a connection that did not log in");
        let _ = killer.shutdown(std::net::Shutdown::Both);
        if tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .is_err()
        {
            tracing::warn!(lease = %lease.id, %peer, "an ssh session did not end after its socket was shut down");
        }
        return;
    }
    drop(killer);

    // Logged in.
    let mut shutdown = lease.shutdown.subscribe();
    let closed = async move { shutdown.wait_for(|closed| *closed).await.is_ok() };
    tokio::select! {
        r = &mut session => {
            if let Err(e) = r {
                tracing::debug!(lease = %lease.id, %peer, error = %e, "ssh session ended with an error");
            }
        }
        true = closed => {
            let _ = handle
                .disconnect(Disconnect::ByApplication, "lease expired".into(), String::new())
                .await;
        }
    }
    lease.session_ended();
}
