//! One lease's SSH endpoint: the russh handler (auth, exec, shell with PTY) and the
//! accept loop.

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

/// What every connection of one lease shares.
pub(crate) struct LeaseShared {
    pub id: LeaseId,
    pub username: String,
    pub password: PasswordHash,
    pub public_key: Option<PublicKey>,
    /// Whether the password logs in (off when the buyer gave a key and did not ask for
    /// both).
    pub password_login: bool,
    /// The top-up command shown inside the lease.
    pub top_up: String,
    pub limits: Limits,
    pub home: PathBuf,
    pub sandbox: Arc<Sandbox>,
    /// The uid/gid this lease's commands run as, when Paygress runs as root.
    pub owner: Option<(u32, u32)>,
    /// `passwd` and `group` naming that uid.
    pub identity: Option<(PathBuf, PathBuf)>,
    expires_at: Mutex<Timestamp>,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
    /// Top-level processes (bwrap or shell) of every running command.
    roots: Mutex<HashSet<u32>>,
    /// Connections that have not logged in yet, oldest first.
    pending: Mutex<Vec<Pending>>,
    /// Connections logged in now.
    sessions: Mutex<usize>,
    next_conn: AtomicU64,
    /// Output of every channel running on a terminal, for expiry warnings.
    terminals: Mutex<Vec<Weak<ChannelWriteHalf<Msg>>>>,
}

/// The network a peer is counted in: its IPv4 address, or its IPv6 /64 (one host
/// usually has a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Which of the waiting connections (peer addresses, oldest first) to push out: the
/// oldest one of the source holding the most.
fn victim(ips: &[IpAddr]) -> Option<usize> {
    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
    for ip in ips {
        *counts.entry(source_key(*ip)).or_default() += 1;
    }
    let most = counts.values().copied().max()?;
    // Among equally busy sources, the one whose oldest connection is oldest.
    ips.iter()
        .position(|ip| counts.get(&source_key(*ip)) == Some(&most))
}

/// A connection waiting for its login; told how that ended through `outcome`.
struct Pending {
    id: u64,
    ip: IpAddr,
    outcome: oneshot::Sender<Outcome>,
}

/// How the pre-authentication phase of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Authenticated,
    /// Pushed out by newer connections (see [`ConnectionLimits::unauthenticated_per_lease`]).
    Evicted,
}

impl LeaseShared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: LeaseId,
        username: String,
        password: PasswordHash,
        public_key: Option<PublicKey>,
        password_login: bool,
        top_up: String,
        limits: Limits,
        home: PathBuf,
        sandbox: Arc<Sandbox>,
        owner: Option<(u32, u32)>,
        identity: Option<(PathBuf, PathBuf)>,
        expires_at: Timestamp,
    ) -> Self {
        Self {
            id,
            username,
            password,
            public_key,
            password_login,
            top_up,
            limits,
            home,
            sandbox,
            owner,
            identity,
            expires_at: Mutex::new(expires_at),
            closed: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            roots: Mutex::new(HashSet::new()),
            pending: Mutex::new(Vec::new()),
            sessions: Mutex::new(0),
            next_conn: AtomicU64::new(0),
            terminals: Mutex::new(Vec::new()),
        }
    }

    /// The current expiry.
    pub(crate) fn expires_at(&self) -> Timestamp {
        self.expires_at
            .lock()
            .map(|e| *e)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Remembers a channel that runs on a terminal (expiry warnings go there).
    fn add_terminal(&self, output: &Output) {
        if let Ok(mut t) = self.terminals.lock() {
            t.retain(|w| w.strong_count() > 0);
            t.push(Arc::downgrade(output));
        }
    }

    /// Writes `text` to every open terminal of the lease (like `wall`); returns how
    /// many it was sent to. A terminal whose client does not read is skipped after a
    /// few seconds.
    pub(crate) fn write_to_terminals(&self, text: &str) -> usize {
        let open: Vec<Output> = match self.terminals.lock() {
            Ok(mut t) => {
                t.retain(|w| w.strong_count() > 0);
                t.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => Vec::new(),
        };
        for output in &open {
            let (output, bytes) = (output.clone(), text.as_bytes().to_vec());
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), output.data_bytes(bytes)).await;
            });
        }
        open.len()
    }

    /// Registers a new unauthenticated connection from `ip`, pushing out the oldest
    /// one of the address with the most when `cap` is reached.
    fn register(&self, ip: IpAddr, cap: usize) -> (u64, oneshot::Receiver<Outcome>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            while pending.len() >= cap.max(1) {
                let ips: Vec<IpAddr> = pending.iter().map(|p| p.ip).collect();
                let Some(pos) = victim(&ips) else {
                    break;
                };
                let victim = pending.remove(pos);
                let _ = victim.outcome.send(Outcome::Evicted);
            }
            pending.push(Pending {
                id,
                ip,
                outcome: tx,
            });
        }
        (id, rx)
    }

    /// Forgets connection `id` if it is still waiting for its login.
    fn unregister(&self, id: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|p| p.id != id);
        }
    }

    /// Turns connection `id` into a logged-in session, unless it was pushed out or
    /// the lease has `cap` sessions already.
    fn admit(&self, id: u64, cap: usize) -> bool {
        let (Ok(mut pending), Ok(mut sessions)) = (self.pending.lock(), self.sessions.lock())
        else {
            return false;
        };
        if *sessions >= cap {
            return false;
        }
        let Some(pos) = pending.iter().position(|p| p.id == id) else {
            return false;
        };
        let p = pending.remove(pos);
        if p.outcome.send(Outcome::Authenticated).is_err() {
            return false;
        }
        *sessions += 1;
        true
    }

    fn session_ended(&self) {
        if let Ok(mut sessions) = self.sessions.lock() {
            *sessions = sessions.saturating_sub(1);
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
        r = russh::server::run_stream(ctx.config.clone(), socket, handler) => match r {
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

enum Input {
    /// Client bytes, holding their share of the connection's input allowance until
    /// written to the command.
    Data(Vec<u8>, Credit),
    Eof,
    Resize(pty_process::Size, Credit),
}

/// Every queued input message is charged at least this many bytes, so tiny packets
/// cannot queue millions of messages.
const MIN_CHARGE: usize = 256;

/// How often a blocked `data` call checks whether the connection's output is stuck.
const STALL_CHECK: Duration = Duration::from_millis(20);

/// Input accepted beyond the budget per connection (see [`Flow`]) before the
/// connection is closed.
const OVERFLOW_CAP: usize = 16 * 1024 * 1024;

/// Concurrent password hashes (PBKDF2) across all leases, on blocking threads.
static HASHING: Semaphore = Semaphore::const_new(2);

type Output = Arc<ChannelWriteHalf<Msg>>;

/// Input flow control of one connection.
///
/// russh replenishes the client's window as soon as it reads a data packet, so the
/// only brake on a client is to stop reading its connection: `data` waits until the
/// commands have taken earlier input (the budget). But window adjustments for the
/// commands' output arrive on that same connection: when output is waiting to be
/// sent while `data` waits, not reading would deadlock (`cat` with a big input). Then
/// input is still taken beyond the budget, one packet per [`STALL_CHECK`], up to
/// [`OVERFLOW_CAP`]; a client that gets there (floods input while not accepting
/// output) is disconnected.
struct Flow {
    budget: Arc<Semaphore>,
    budget_size: usize,
    overflow: AtomicUsize,
    /// Output sends in progress on this connection.
    sending: AtomicUsize,
}

/// What a queued input message holds of its connection's allowance; released when
/// the message is dropped (written to the command or discarded).
enum Credit {
    Budget(#[allow(dead_code)] OwnedSemaphorePermit),
    Overflow(Arc<Flow>, usize),
}

impl Drop for Credit {
    fn drop(&mut self) {
        if let Self::Overflow(flow, n) = self {
            flow.overflow.fetch_sub(*n, Ordering::SeqCst);
        }
    }
}

impl Flow {
    fn new(budget: usize) -> Arc<Self> {
        let budget = budget.clamp(64 * 1024, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            budget: Arc::new(Semaphore::new(budget)),
            budget_size: budget,
            overflow: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
        })
    }

    fn charge(&self, len: usize) -> (usize, u32) {
        let n = len.clamp(MIN_CHARGE, self.budget_size);
        (n, u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Credit for `len` bytes without waiting, if the budget has room.
    fn try_credit(&self, len: usize) -> Option<Credit> {
        let (_, permits) = self.charge(len);
        self.budget
            .clone()
            .try_acquire_many_owned(permits)
            .ok()
            .map(Credit::Budget)
    }

    /// Credit for `len` bytes: waits for the budget, or takes overflow while output
    /// is stuck; `None` when the overflow cap is reached.
    async fn credit(self: &Arc<Self>, len: usize) -> Option<Credit> {
        let (n, permits) = self.charge(len);
        loop {
            tokio::select! {
                p = self.budget.clone().acquire_many_owned(permits) => {
                    return p.ok().map(Credit::Budget);
                }
                () = tokio::time::sleep(STALL_CHECK) => {
                    if self.sending.load(Ordering::SeqCst) > 0 {
                        let before = self.overflow.fetch_add(n, Ordering::SeqCst);
                        if before + n > OVERFLOW_CAP {
                            self.overflow.fetch_sub(n, Ordering::SeqCst);
                            return None;
                        }
                        return Some(Credit::Overflow(self.clone(), n));
                    }
                }
            }
        }
    }
}

/// Counts an output send in progress (see [`Flow`]).
struct Sending<'a>(&'a Flow);

impl<'a> Sending<'a> {
    fn start(flow: &'a Flow) -> Self {
        flow.sending.fetch_add(1, Ordering::SeqCst);
        Self(flow)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Chan {
    /// Where the command's output goes; waits for the client's window.
    output: Output,
    /// A PTY requested but not yet used by a command.
    pty: Option<(pty_process::Pty, pty_process::Pts)>,
    env: Vec<(String, String)>,
    input: Option<mpsc::UnboundedSender<Input>>,
    pid: Option<u32>,
    eof: bool,
}

/// One SSH connection.
struct Conn {
    lease: Arc<LeaseShared>,
    /// This connection's registration with the lease.
    id: u64,
    sessions_cap: usize,
    channels_cap: usize,
    /// Client input buffered for commands, for the whole connection.
    flow: Arc<Flow>,
    channels: HashMap<ChannelId, Chan>,
}

impl Conn {
    fn new(lease: Arc<LeaseShared>, id: u64, limits: &ConnectionLimits) -> Self {
        Self {
            lease,
            id,
            sessions_cap: limits.sessions_per_lease,
            channels_cap: limits.channels_per_connection,
            flow: Flow::new(limits.input_buffer_bytes),
            channels: HashMap::new(),
        }
    }

    /// Logs the connection in if the credentials matched and the lease has room.
    fn accept_login(&self, matched: bool) -> Auth {
        if matched && self.lease.admit(self.id, self.sessions_cap) {
            Auth::Accept
        } else {
            if matched {
                tracing::info!(lease = %self.lease.id, "login refused: too many sessions or connection pushed out");
            }
            Auth::reject()
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
            owner: self.lease.owner,
            identity: self
                .lease
                .identity
                .as_ref()
                .map(|(p, g)| (p.as_path(), g.as_path())),
        });
        let output = chan.output.clone();
        if pty.is_some() {
            self.lease.add_terminal(&output);
        }
        // Like sshd: the message of the day before an interactive login shell.
        let motd = (pty.is_some() && command.is_none()).then(|| {
            crate::notice::motd(
                &self.lease.id,
                Timestamp::now(),
                self.lease.expires_at(),
                &self.lease.top_up,
            )
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let flow = self.flow.clone();
        let spawned = match pty {
            Some((pty, pts)) => pty_process::Command::new(&launch.program)
                .args(&launch.args)
                .env_clear()
                .envs(launch.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&launch.cwd)
                .kill_on_drop(true)
                .spawn(pts)
                .map_err(|e| e.to_string())
                .map(|child| run_pty(child, pty, rx, output, flow, self.lease.clone(), motd)),
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
                    .map(|child| run_pipes(child, rx, output, flow, self.lease.clone()))
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

async fn finish(output: &Output, code: u32) {
    let _ = output.exit_status(code).await;
    let _ = output.eof().await;
    let _ = output.close().await;
}

/// Pumps a PTY command; returns its pid.
fn run_pty(
    mut child: tokio::process::Child,
    pty: pty_process::Pty,
    mut input: mpsc::UnboundedReceiver<Input>,
    output: Output,
    flow: Arc<Flow>,
    lease: Arc<LeaseShared>,
    motd: Option<String>,
) -> Option<u32> {
    let pid = child.id();
    if let Some(pid) = pid {
        lease.track(pid);
    }
    let (mut reader, mut writer) = pty.into_split();
    tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            match msg {
                Input::Data(d, _permit) => {
                    if writer.write_all(&d).await.is_err() {
                        break;
                    }
                }
                Input::Resize(size, _credit) => {
                    let _ = writer.resize(size);
                }
                Input::Eof => {}
            }
        }
    });
    tokio::spawn(async move {
        if let Some(text) = motd {
            let _ = output.data_bytes(text.into_bytes()).await;
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // EIO once the child side of the PTY is closed.
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _sending = Sending::start(&flow);
                    if output.data_bytes(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
        let code = exit_code(child.wait().await);
        if let Some(pid) = pid {
            lease.untrack(pid);
        }
        finish(&output, code).await;
    });
    pid
}

/// Copies `r` to the channel, waiting for the client's window (so a client that does
/// not read stops the command instead of filling memory).
async fn pump<R: AsyncRead + Unpin>(mut r: R, output: &Output, flow: &Flow, ext: Option<u32>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = buf[..n].to_vec();
                let _sending = Sending::start(flow);
                let sent = match ext {
                    Some(code) => output.extended_data_bytes(code, data).await,
                    None => output.data_bytes(data).await,
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
    output: Output,
    flow: Arc<Flow>,
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
                Input::Data(d, _permit) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(&d).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Input::Eof => stdin = None,
                Input::Resize(..) => {}
            }
        }
    });
    tokio::spawn(async move {
        let out = async {
            if let Some(o) = stdout {
                pump(o, &output, &flow, None).await;
            }
        };
        let err = async {
            if let Some(e) = stderr {
                pump(e, &output, &flow, Some(1)).await;
            }
        };
        let (status, (), ()) = tokio::join!(child.wait(), out, err);
        if let Some(pid) = pid {
            lease.untrack(pid);
        }
        finish(&output, exit_code(status)).await;
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
        if !self.lease.password_login {
            // The buyer gave a key and did not ask for password logins too.
            return Ok(Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
                partial_success: false,
            });
        }
        if !self.lease.accepts_user(user) {
            return Ok(Auth::reject());
        }
        // PBKDF2 on a blocking thread, a few at a time, never on the async runtime.
        let hash = self.lease.password.clone();
        let candidate = password.to_owned();
        let matched = match HASHING.acquire().await {
            Ok(_permit) => tokio::task::spawn_blocking(move || hash.verify(&candidate))
                .await
                .unwrap_or(false),
            Err(_) => false,
        };
        Ok(self.accept_login(matched))
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
        let matched = self.lease.accepts_user(user) && self.lease.key_matches(key.public_key);
        Ok(self.accept_login(matched))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.lease.is_open() && self.channels.len() < self.channels_cap {
            // Input arrives through `data` below; the read half is not used.
            let (_read, write) = channel.split();
            self.channels.insert(
                write.id(),
                Chan {
                    output: Arc::new(write),
                    pty: None,
                    env: Vec::new(),
                    input: None,
                    pid: None,
                    eof: false,
                },
            );
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
        if let Some(chan) = self.channels.get_mut(&channel)
            && !chan.eof
            && let Some(tx) = &chan.input
        {
            chan.eof = true;
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
        let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.clone()) else {
            return Ok(());
        };
        // Backpressure: until the commands have taken earlier input, wait here, which
        // stops this connection from being read (see `Flow`).
        let Some(credit) = self.flow.credit(data.len()).await else {
            tracing::info!(lease = %self.lease.id, "client floods input while not accepting output: disconnecting");
            return Err(russh::Error::Disconnect);
        };
        let _ = tx.send(Input::Data(data.to_vec(), credit));
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
        let owner = self.lease.owner.or(self.lease.sandbox.owner());
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
            } else if let Some(tx) = &chan.input
                && let Some(credit) = self.flow.try_credit(0)
            {
                // Dropped when the input allowance is used up anyway.
                let _ = tx.send(Input::Resize(sz, credit));
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
    fn the_busiest_source_loses_its_oldest_waiting_connection() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let buyer = ip("198.51.100.7");
        let flood = ip("203.0.113.9");
        // The buyer came first, then the flood: the flood's oldest goes.
        assert_eq!(victim(&[buyer, flood, flood, flood]), Some(1));
        // One IPv6 /64 counts as one source.
        let v6 = |i: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i));
        assert_eq!(victim(&[v6(1), buyer, buyer, v6(2), v6(3)]), Some(0));
        // A tie goes to the oldest connection.
        assert_eq!(victim(&[buyer, flood]), Some(0));
        assert_eq!(victim(&[]), None);
        assert_eq!(
            source_key(ip("::ffff:192.0.2.1")),
            ip("192.0.2.1"),
            "IPv4-mapped addresses are IPv4"
        );
    }

    #[test]
    fn unknown_terminal_size_is_80x24() {
        let dbg = |s: pty_process::Size| format!("{s:?}");
        assert_eq!(dbg(size(0, 0)), dbg(pty_process::Size::new(24, 80)));
        assert_eq!(dbg(size(132, 50)), dbg(pty_process::Size::new(50, 132)));
        assert_eq!(dbg(size(100_000, 3)), dbg(pty_process::Size::new(3, 1000)));
    }
}
