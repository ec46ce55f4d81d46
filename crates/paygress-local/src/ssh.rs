//! One lease's SSH endpoint: the russh handler (auth, exec, shell with PTY) and the
//! accept loop.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use paygress_core::names::LeaseId;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::sandbox::{LaunchSpec, Limits, Sandbox, kill_all};
use crate::store::PasswordHash;

/// The russh server configuration shared by every lease.
pub(crate) fn server_config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

/// What every connection of one lease shares.
pub(crate) struct LeaseShared {
    pub id: LeaseId,
    pub username: String,
    pub password: PasswordHash,
    pub public_key: Option<PublicKey>,
    pub limits: Limits,
    pub home: PathBuf,
    pub sandbox: Arc<Sandbox>,
    expires_at: Mutex<Timestamp>,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// Top-level processes (bwrap or shell) of every running command.
    roots: Mutex<HashSet<u32>>,
}

impl LeaseShared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: LeaseId,
        username: String,
        password: PasswordHash,
        public_key: Option<PublicKey>,
        limits: Limits,
        home: PathBuf,
        sandbox: Arc<Sandbox>,
        expires_at: Timestamp,
    ) -> Self {
        Self {
            id,
            username,
            password,
            public_key,
            limits,
            home,
            sandbox,
            expires_at: Mutex::new(expires_at),
            closed: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            roots: Mutex::new(HashSet::new()),
        }
    }

    /// Moves the expiry (logins are refused from that second on).
    pub(crate) fn set_expiry(&self, at: Timestamp) {
        if let Ok(mut e) = self.expires_at.lock() {
            *e = at;
        }
    }

    /// Whether logins and new commands are allowed now.
    pub(crate) fn is_open(&self) -> bool {
        let live = self
            .expires_at
            .lock()
            .map(|e| Timestamp::now() < *e)
            .unwrap_or(false);
        live && !self.closed.load(Ordering::SeqCst)
    }

    fn track(&self, pid: u32) {
        if let Ok(mut r) = self.roots.lock() {
            r.insert(pid);
        }
    }

    fn untrack(&self, pid: u32) {
        if let Ok(mut r) = self.roots.lock() {
            r.remove(&pid);
        }
    }

    fn tracked(&self, pid: u32) -> bool {
        self.roots.lock().map(|r| r.contains(&pid)).unwrap_or(false)
    }

    /// Every process of the lease still alive.
    pub(crate) fn processes(&self) -> HashSet<u32> {
        let roots = self.roots.lock().map(|r| r.clone()).unwrap_or_default();
        crate::sandbox::lease_processes(&roots)
    }

    /// Refuses further logins, disconnects every session and SIGKILLs every process.
    /// Synchronous, so it can run from `Drop`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.shutdown.send_replace(true);
        let roots = self.roots.lock().map(|r| r.clone()).unwrap_or_default();
        let n = kill_all(&roots);
        if n > 0 {
            tracing::debug!(lease = %self.id, processes = n, "killed lease processes");
        }
    }

    fn accepts_user(&self, user: &str) -> bool {
        user == self.username && self.is_open()
    }

    fn key_matches(&self, key: &PublicKey) -> bool {
        self.public_key
            .as_ref()
            .is_some_and(|k| k.key_data() == key.key_data())
    }
}

/// Accepts connections for one lease until the task is aborted.
pub(crate) async fn serve(
    listener: TcpListener,
    lease: Arc<LeaseShared>,
    config: Arc<russh::server::Config>,
) {
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
        let lease = lease.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            let handler = Conn::new(lease.clone());
            let mut shutdown = lease.shutdown.subscribe();
            let session = match russh::server::run_stream(config, socket, handler).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(lease = %lease.id, %peer, error = %e, "ssh handshake failed");
                    return;
                }
            };
            let handle = session.handle();
            let closed = async move { shutdown.wait_for(|closed| *closed).await.is_ok() };
            tokio::select! {
                r = session => {
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
        });
    }
}

enum Input {
    Data(Vec<u8>),
    Eof,
    Resize(pty_process::Size),
}

#[derive(Default)]
struct Chan {
    /// A PTY requested but not yet used by a command.
    pty: Option<(pty_process::Pty, pty_process::Pts)>,
    env: Vec<(String, String)>,
    input: Option<mpsc::UnboundedSender<Input>>,
    pid: Option<u32>,
}

/// One SSH connection.
struct Conn {
    lease: Arc<LeaseShared>,
    channels: HashMap<ChannelId, Chan>,
}

impl Conn {
    fn new(lease: Arc<LeaseShared>) -> Self {
        Self {
            lease,
            channels: HashMap::new(),
        }
    }

    async fn start(
        &mut self,
        channel: ChannelId,
        command: Option<String>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if !self.lease.is_open() {
            session.channel_failure(channel)?;
            return Ok(());
        }
        let Some(chan) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        if chan.input.is_some() {
            // One command per channel.
            session.channel_failure(channel)?;
            return Ok(());
        }
        let pty = chan.pty.take();
        let launch = self.lease.sandbox.launch(&LaunchSpec {
            lease: self.lease.id.as_str(),
            username: &self.lease.username,
            home: &self.lease.home,
            limits: self.lease.limits,
            command: command.as_deref(),
            pty: pty.is_some(),
            client_env: &chan.env,
        });
        let handle = session.handle();
        let (tx, rx) = mpsc::unbounded_channel();
        let spawned = match pty {
            Some((pty, pts)) => pty_process::Command::new(&launch.program)
                .args(&launch.args)
                .env_clear()
                .envs(launch.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&launch.cwd)
                .kill_on_drop(true)
                .spawn(pts)
                .map_err(|e| e.to_string())
                .map(|child| run_pty(child, pty, rx, handle, channel, self.lease.clone())),
            None => {
                let mut cmd = tokio::process::Command::new(&launch.program);
                cmd.args(&launch.args)
                    .env_clear()
                    .envs(launch.env.iter().map(|(k, v)| (k, v)))
                    .current_dir(&launch.cwd)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .process_group(0)
                    .kill_on_drop(true);
                cmd.spawn()
                    .map_err(|e| e.to_string())
                    .map(|child| run_pipes(child, rx, handle, channel, self.lease.clone()))
            }
        };
        match spawned {
            Ok(pid) => {
                chan.input = Some(tx);
                chan.pid = pid;
                session.channel_success(channel)?;
            }
            Err(e) => {
                tracing::warn!(lease = %self.lease.id, error = %e, "could not start command");
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }
}

fn exit_code(status: std::io::Result<ExitStatus>) -> u32 {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => u32::try_from(c).unwrap_or(255),
            (None, Some(sig)) => 128 + u32::try_from(sig).unwrap_or(0),
            (None, None) => 255,
        },
        Err(_) => 255,
    }
}

async fn finish(handle: &russh::server::Handle, channel: ChannelId, code: u32) {
    let _ = handle.exit_status_request(channel, code).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

/// Pumps a PTY command; returns its pid.
fn run_pty(
    mut child: tokio::process::Child,
    pty: pty_process::Pty,
    mut input: mpsc::UnboundedReceiver<Input>,
    handle: russh::server::Handle,
    channel: ChannelId,
    lease: Arc<LeaseShared>,
) -> Option<u32> {
    let pid = child.id();
    if let Some(pid) = pid {
        lease.track(pid);
    }
    let (mut reader, mut writer) = pty.into_split();
    tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            match msg {
                Input::Data(d) => {
                    if writer.write_all(&d).await.is_err() {
                        break;
                    }
                }
                Input::Resize(size) => {
                    let _ = writer.resize(size);
                }
                Input::Eof => {}
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // EIO once the child side of the PTY is closed.
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if handle.data(channel, buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
        let code = exit_code(child.wait().await);
        if let Some(pid) = pid {
            lease.untrack(pid);
        }
        finish(&handle, channel, code).await;
    });
    pid
}

async fn pump<R: AsyncRead + Unpin>(
    mut r: R,
    handle: russh::server::Handle,
    channel: ChannelId,
    ext: Option<u32>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = buf[..n].to_vec();
                let sent = match ext {
                    Some(code) => handle.extended_data(channel, code, data).await,
                    None => handle.data(channel, data).await,
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

/// Pumps a command on pipes (stdout as data, stderr as extended data 1); returns its pid.
fn run_pipes(
    mut child: tokio::process::Child,
    mut input: mpsc::UnboundedReceiver<Input>,
    handle: russh::server::Handle,
    channel: ChannelId,
    lease: Arc<LeaseShared>,
) -> Option<u32> {
    let pid = child.id();
    if let Some(pid) = pid {
        lease.track(pid);
    }
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            match msg {
                Input::Data(d) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(&d).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Input::Eof => stdin = None,
                Input::Resize(_) => {}
            }
        }
    });
    tokio::spawn(async move {
        let out = async {
            if let Some(o) = stdout {
                pump(o, handle.clone(), channel, None).await;
            }
        };
        let err = async {
            if let Some(e) = stderr {
                pump(e, handle.clone(), channel, Some(1)).await;
            }
        };
        let (status, (), ()) = tokio::join!(child.wait(), out, err);
        if let Some(pid) = pid {
            lease.untrack(pid);
        }
        finish(&handle, channel, exit_code(status)).await;
    });
    pid
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The connection is gone: nothing can read this session's output any more.
        let roots: HashSet<u32> = self
            .channels
            .values()
            .filter_map(|c| c.pid)
            .filter(|p| self.lease.tracked(*p))
            .collect();
        if !roots.is_empty() {
            kill_all(&roots);
        }
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.lease.accepts_user(user) && self.lease.password.verify(password) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.lease.accepts_user(user) && self.lease.key_matches(offer.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.lease.accepts_user(user) && self.lease.key_matches(key.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.lease.is_open() {
            self.channels.insert(channel.id(), Chan::default());
            reply.accept().await;
        } else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.as_ref()) {
            let _ = tx.send(Input::Eof);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(chan) = self.channels.remove(&channel)
            && let Some(pid) = chan.pid.filter(|p| self.lease.tracked(*p))
        {
            kill_all(&[pid].into());
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.as_ref()) {
            let _ = tx.send(Input::Data(data.to_vec()));
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(chan) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let owner = self.lease.sandbox.owner();
        let opened = pty_process::open().and_then(|(pty, pts)| {
            pty.resize(size(col_width, row_height))?;
            if let Some((uid, gid)) = owner {
                // The terminal belongs to whoever runs in it.
                std::os::unix::fs::fchown(&pts, Some(uid), Some(gid))
                    .map_err(pty_process::Error::Io)?;
            }
            Ok((pty, pts))
        });
        match opened {
            Ok(p) => {
                chan.pty = Some(p);
                chan.env.retain(|(k, _)| k != "TERM");
                chan.env
                    .push(("TERM".into(), term.chars().take(64).collect()));
                session.channel_success(channel)?;
            }
            Err(e) => {
                tracing::warn!(lease = %self.lease.id, error = %e, "could not allocate a PTY");
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = name == "TERM" || name == "LANG" || name.starts_with("LC_");
        match self.channels.get_mut(&channel) {
            Some(chan) if allowed && value.len() <= 256 && chan.env.len() < 32 => {
                chan.env.retain(|(k, _)| k != name);
                chan.env.push((name.to_owned(), value.to_owned()));
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, None, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Some(command), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.lease.sandbox.sftp_command()) {
            ("sftp", Some(cmd)) => self.start(channel, Some(cmd), session).await,
            _ => {
                session.channel_failure(channel)?;
                Ok(())
            }
        }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(chan) = self.channels.get(&channel) {
            let sz = size(col_width, row_height);
            if let Some((pty, _)) = &chan.pty {
                let _ = pty.resize(sz);
            } else if let Some(tx) = &chan.input {
                let _ = tx.send(Input::Resize(sz));
            }
        }
        Ok(())
    }
}

/// A terminal size from the client's; 0 (unknown, e.g. `ssh -tt` without a local
/// terminal) means the classic 80x24.
fn size(cols: u32, rows: u32) -> pty_process::Size {
    let clamp = |v: u32, default: u16| match v {
        0 => default,
        v => u16::try_from(v.min(1000)).unwrap_or(default),
    };
    pty_process::Size::new(clamp(rows, 24), clamp(cols, 80))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_terminal_size_is_80x24() {
        let dbg = |s: pty_process::Size| format!("{s:?}");
        assert_eq!(dbg(size(0, 0)), dbg(pty_process::Size::new(24, 80)));
        assert_eq!(dbg(size(132, 50)), dbg(pty_process::Size::new(50, 132)));
        assert_eq!(dbg(size(100_000, 3)), dbg(pty_process::Size::new(3, 1000)));
    }
}
