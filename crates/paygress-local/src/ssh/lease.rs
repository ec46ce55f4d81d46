//! [`LeaseShared`]: what every connection of one lease shares (expiry, sessions,
//! processes, terminals), and who is pushed out when too many wait to log in.

use super::*;

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
    /// The lease's network namespace (isolated mode).
    pub netns: Option<String>,
    pub(super) expires_at: Mutex<Timestamp>,
    pub(super) closed: AtomicBool,
    pub(super) shutdown: watch::Sender<bool>,
    /// Top-level processes (bwrap or shell) of every running command.
    pub(super) roots: Mutex<HashSet<u32>>,
    /// Connections that have not logged in yet, oldest first.
    pub(super) pending: Mutex<Vec<Pending>>,
    /// Connections logged in now.
    pub(super) sessions: Mutex<usize>,
    pub(super) next_conn: AtomicU64,
    /// Output of every channel running on a terminal, for expiry warnings.
    pub(super) terminals: Mutex<Vec<Weak<ChannelWriteHalf<Msg>>>>,
}

/// The network a peer is counted in: its IPv4 address, or its IPv6 /64 (one host
/// usually has a whole /64).
pub(super) fn source_key(ip: IpAddr) -> IpAddr {
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
pub(super) fn victim(ips: &[IpAddr]) -> Option<usize> {
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
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) ip: IpAddr,
    pub(super) outcome: oneshot::Sender<Outcome>,
}

/// How the pre-authentication phase of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
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
        netns: Option<String>,
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
            netns,
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
    pub(super) fn add_terminal(&self, output: &Output) {
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
    pub(super) fn register(&self, ip: IpAddr, cap: usize) -> (u64, oneshot::Receiver<Outcome>) {
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
    pub(super) fn unregister(&self, id: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.retain(|p| p.id != id);
        }
    }

    /// Turns connection `id` into a logged-in session, unless it was pushed out or
    /// the lease has `cap` sessions already.
    pub(super) fn admit(&self, id: u64, cap: usize) -> bool {
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

    pub(super) fn session_ended(&self) {
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

    pub(super) fn track(&self, pid: u32) {
        if let Ok(mut r) = self.roots.lock() {
            r.insert(pid);
        }
    }

    pub(super) fn untrack(&self, pid: u32) {
        if let Ok(mut r) = self.roots.lock() {
            r.remove(&pid);
        }
    }

    pub(super) fn tracked(&self, pid: u32) -> bool {
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

    pub(super) fn accepts_user(&self, user: &str) -> bool {
        user == self.username && self.is_open()
    }

    pub(super) fn key_matches(&self, key: &PublicKey) -> bool {
        self.public_key
            .as_ref()
            .is_some_and(|k| k.key_data() == key.key_data())
    }
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
}
