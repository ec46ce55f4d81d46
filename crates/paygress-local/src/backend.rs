//! [`LocalBackend`]: the [`PodBackend`] that runs leases on this machine.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use paygress_core::lease::{LeaseRecord, LeaseSpec, Provisioned};
use paygress_core::names::LeaseId;
use paygress_core::ports::{BackendError, Extension, PodBackend};
use paygress_core::protocol::HostKey;
use russh::keys::{HashAlg, PublicKey};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::config::{LocalConfig, SandboxMode};
use crate::error::LocalError;
use crate::sandbox::{Limits, Sandbox, Sizes};
use crate::ssh::{LeaseShared, ServeContext, serve, server_config};
use crate::store::{self, PasswordHash, StoredLease};

/// Runs each lease as an SSH server embedded in Paygress, on its own port, whose
/// commands run in a bubblewrap sandbox with a private home. Cheap to clone.
///
/// Dropping the last clone stops every listener and kills every lease process; the
/// leases stay persisted and resume on the next [`LocalBackend::start`].
#[derive(Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// Held (flock) for the backend's lifetime: one process per data directory.
    _lock: std::fs::File,
    config: LocalConfig,
    state_dir: PathBuf,
    sandbox: Arc<Sandbox>,
    ssh: Arc<ServeContext>,
    leases: Mutex<BTreeMap<LeaseId, Live>>,
}

/// A lease with its running parts.
struct Live {
    stored: StoredLease,
    shared: Arc<LeaseShared>,
    listener: JoinHandle<()>,
    timer: JoinHandle<()>,
    /// Writes the expiry warnings to the lease's terminals.
    warner: JoinHandle<()>,
    expiry: watch::Sender<Timestamp>,
    /// In its grace period: stopped (no listener, no processes), home kept, `timer`
    /// removes it when the grace period ends; an extension starts it again.
    suspended: bool,
}

impl Live {
    /// Refuses logins, disconnects, kills every process and stops the listener and
    /// timer. Synchronous (used from `Drop`); the home directory is left alone.
    fn stop(&self) {
        self.shared.close();
        self.listener.abort();
        self.timer.abort();
        self.warner.abort();
        self.shared.sandbox.net_down(self.stored.record.id.as_str());
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(leases) = self.leases.try_lock() {
            for live in leases.values() {
                live.stop();
            }
        }
    }
}

impl LocalBackend {
    /// Prepares `<data_dir>/local/` (host key, lease store, homes), checks the sandbox,
    /// resumes the persisted leases that are still live (listening on their ports
    /// again) and removes those that expired while Paygress was down.
    ///
    /// Fails with [`LocalError::BwrapMissing`] (an install hint) when bubblewrap was
    /// requested and `bwrap` is not installed.
    pub async fn start(config: LocalConfig) -> Result<Self, LocalError> {
        let state_dir = config.state_dir();
        for dir in [state_dir.clone(), state_dir.join("homes")] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| LocalError::io("creating", &dir, e))?;
        }
        let lock = lock_state_dir(&state_dir)?;
        let sizes = Sizes {
            tmp_bytes: config.tmp_size_mib.max(1).saturating_mul(1024 * 1024),
            max_file_bytes: config.max_file_mib.max(1).saturating_mul(1024 * 1024),
        };
        let sandbox =
            Arc::new(Sandbox::detect(config.sandbox, config.network, &state_dir, sizes).await?);
        if sandbox.mode() == SandboxMode::Unsandboxed {
            tracing::warn!(
                "local backend runs lease commands UNSANDBOXED: buyers get a shell as the Paygress user; development only"
            );
        }
        let host_key = store::load_or_create_host_key(&state_dir)?;
        let inner = Arc::new(Inner {
            _lock: lock,
            ssh: Arc::new(ServeContext {
                config: Arc::new(server_config(host_key)),
                limits: config.connections,
                total: Arc::new(tokio::sync::Semaphore::new(config.connections.total.max(1))),
            }),
            sandbox,
            state_dir: state_dir.clone(),
            config,
            leases: Mutex::new(BTreeMap::new()),
        });

        // Regenerated for every resumed lease.
        let _ = std::fs::remove_dir_all(state_dir.join("etc"));
        let stored = store::load_leases(&store::leases_path(&state_dir))?;
        let now = Timestamp::now();
        {
            let mut leases = inner.leases.lock().await;
            for mut lease in stored {
                let id = lease.record.id.clone();
                // A lease in its grace period is started as usual: its expiry timer stops
                // it at once (its logins are refused meanwhile), keeping its home.
                if inner.removal_at(&lease) <= now {
                    tracing::info!(lease = %id, "lease expired while Paygress was down: removing");
                    remove_home(inner.home_of(&id)).await;
                    continue;
                }
                let (listener, port) = inner.resume_listener(&lease, &leases).await?;
                if lease.record.node_port != Some(port) {
                    tracing::warn!(lease = %id, old = ?lease.record.node_port, new = port, "lease port was taken; moved");
                    lease.record.ssh_port = port;
                    lease.record.node_port = Some(port);
                }
                if inner.sandbox.owner().is_some() && lease.uid.is_none() {
                    lease.uid = Some(inner.allocate_uid(&leases)?);
                }
                inner.sandbox.net_up(id.as_str()).await?;
                inner.mount_home(&id).await?;
                let live = inner.launch(lease, listener)?;
                tracing::info!(lease = %id, port, "resumed lease");
                leases.insert(id, live);
            }
            inner.persist(&leases).await?;
            inner.remove_orphan_homes(&leases).await;
        }
        Ok(Self { inner })
    }

    /// Like [`start`](Self::start), but when bubblewrap is missing or cannot create a
    /// sandbox on this host, falls back to [`SandboxMode::Unsandboxed`] with a loud
    /// warning. For `paygress dev` only: `serve` must use [`start`](Self::start).
    pub async fn start_with_fallback(config: LocalConfig) -> Result<Self, LocalError> {
        match Self::start(config.clone()).await {
            Err(e @ (LocalError::BwrapMissing | LocalError::SandboxUnavailable(_)))
                if config.sandbox == SandboxMode::Bubblewrap =>
            {
                tracing::warn!(
                    reason = %e,
                    "!!! bubblewrap unavailable: falling back to UNSANDBOXED lease shells (development only) !!!"
                );
                Self::start(LocalConfig {
                    sandbox: SandboxMode::Unsandboxed,
                    ..config
                })
                .await
            }
            other => other,
        }
    }

    /// The sandbox mode actually in use.
    pub fn sandbox_mode(&self) -> SandboxMode {
        self.inner.sandbox.mode()
    }

    /// The network mode actually in use (`isolated` falls back to `none` where it
    /// cannot work; unsandboxed commands always use the host's).
    pub fn network_mode(&self) -> crate::config::NetworkMode {
        self.inner.sandbox.network()
    }

    /// The configuration in use.
    pub fn config(&self) -> &LocalConfig {
        &self.inner.config
    }

    /// The host key's public half (what clients see as the server key).
    pub fn host_public_key(&self) -> Option<PublicKey> {
        self.inner
            .ssh
            .config
            .keys
            .first()
            .map(|k| k.public_key().clone())
    }

    /// The SSH host key every lease presents, with its fingerprint: what buyers put in
    /// `known_hosts` (stable across leases and restarts).
    pub fn host_keys(&self) -> Vec<HostKey> {
        self.host_public_key()
            .into_iter()
            .filter_map(|k| {
                Some(HostKey {
                    public_key: k.to_openssh().ok()?,
                    fingerprint: k.fingerprint(HashAlg::Sha256).to_string(),
                })
            })
            .collect()
    }

    /// Pids of every live process of lease `id` (empty if none or unknown). For
    /// monitoring and tests.
    pub async fn processes(&self, id: &LeaseId) -> Vec<u32> {
        let leases = self.inner.leases.lock().await;
        leases
            .get(id)
            .map(|l| l.shared.processes().into_iter().collect())
            .unwrap_or_default()
    }

    /// Whether a new lease can be created now: enough free disk space where the data
    /// directory lives (`min_free_mib`), a free port and (as root) a free uid. Core's
    /// capacity check calls this before a token is redeemed; `create` checks the same.
    pub async fn has_capacity(&self) -> bool {
        let leases = self.inner.leases.lock().await;
        match self.inner.capacity_problem(&leases) {
            None => true,
            Some(problem) => {
                tracing::debug!(reason = %problem, "no capacity for a new lease");
                false
            }
        }
    }

    /// Free bytes on the filesystem holding the data directory.
    pub fn free_disk_bytes(&self) -> Result<u64, LocalError> {
        self.inner.free_disk_bytes()
    }

    /// The uid lease `id`'s commands run as (`None` unless Paygress runs as root).
    pub async fn lease_uid(&self, id: &LeaseId) -> Option<u32> {
        let leases = self.inner.leases.lock().await;
        leases.get(id).and_then(|l| l.shared.owner).map(|(u, _)| u)
    }

    /// The host directory that is lease `id`'s home.
    pub fn home_dir(&self, id: &LeaseId) -> PathBuf {
        self.inner.home_of(id)
    }
}

impl Inner {
    /// Removes home directories that belong to no live lease (left by a crash between
    /// creating a home and persisting its lease, or by a failed removal).
    async fn remove_orphan_homes(&self, leases: &BTreeMap<LeaseId, Live>) {
        let Ok(dir) = std::fs::read_dir(self.state_dir.join("homes")) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let known = name
                .to_str()
                .and_then(|n| n.parse::<LeaseId>().ok())
                .is_some_and(|id| leases.contains_key(&id));
            if !known {
                tracing::info!(home = %entry.path().display(), "removing orphaned lease home");
                remove_home(entry.path()).await;
            }
        }
    }

    /// With `home_size_mib` as root: makes the home its own size-limited filesystem
    /// (a sparse ext4 image, loop-mounted) unless it is one already.
    async fn mount_home(&self, id: &LeaseId) -> Result<(), LocalError> {
        let Some(mib) = self.config.home_size_mib else {
            return Ok(());
        };
        if self.sandbox.owner().is_none() {
            return Ok(());
        }
        let home = self.home_of(id);
        if is_mountpoint(&home) {
            return Ok(());
        }
        let image = image_of(&home).ok_or_else(|| LocalError::Config("bad home path".into()))?;
        if let Some(dir) = image.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| LocalError::io("creating", dir, e))?;
        }
        if !image.exists() {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&image)
                .map_err(|e| LocalError::io("creating", &image, e))?;
            file.set_len(mib.saturating_mul(1024 * 1024))
                .map_err(|e| LocalError::io("sizing", &image, e))?;
            drop(file);
            if let Err(e) = run_tool(
                "mkfs.ext4",
                &[
                    "-q".as_ref(),
                    "-F".as_ref(),
                    "-m".as_ref(),
                    "0".as_ref(),
                    image.as_os_str(),
                ],
            )
            .await
            {
                let _ = std::fs::remove_file(&image);
                return Err(e);
            }
        }
        std::fs::create_dir_all(&home).map_err(|e| LocalError::io("creating", &home, e))?;
        run_tool(
            "mount",
            &[
                "-o".as_ref(),
                "loop,nosuid,nodev".as_ref(),
                image.as_os_str(),
                home.as_os_str(),
            ],
        )
        .await?;
        let _ = std::fs::remove_dir(home.join("lost+found"));
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| LocalError::io("closing", &home, e))?;
        Ok(())
    }

    /// `<state>/etc/<lease>`: the lease's `passwd` and `group`.
    fn identity_dir(&self, id: &LeaseId) -> PathBuf {
        self.state_dir.join("etc").join(id.as_str())
    }

    fn home_of(&self, id: &LeaseId) -> PathBuf {
        self.state_dir.join("homes").join(id.as_str())
    }

    fn used_ports(leases: &BTreeMap<LeaseId, Live>) -> Vec<u16> {
        leases
            .values()
            .filter_map(|l| l.stored.record.node_port)
            .collect()
    }

    async fn bind(&self, port: u16) -> std::io::Result<TcpListener> {
        TcpListener::bind((self.config.bind_host.as_str(), port)).await
    }

    /// The lowest uid of the configured range no live lease uses.
    fn allocate_uid(&self, leases: &BTreeMap<LeaseId, Live>) -> Result<u32, LocalError> {
        let used: Vec<u32> = leases.values().filter_map(|l| l.stored.uid).collect();
        self.config
            .uid_range
            .uids()
            .find(|u| !used.contains(u))
            .ok_or_else(|| {
                LocalError::NoFreeUid(format!(
                    "{}-{}",
                    self.config.uid_range.start, self.config.uid_range.end
                ))
            })
    }

    /// Free bytes (for unprivileged users) on the filesystem holding the data
    /// directory.
    fn free_disk_bytes(&self) -> Result<u64, LocalError> {
        let st = rustix::fs::statvfs(&self.state_dir)
            .map_err(|e| LocalError::io("checking free space of", &self.state_dir, e.into()))?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Why a new lease cannot be created now, if it cannot.
    fn capacity_problem(&self, leases: &BTreeMap<LeaseId, Live>) -> Option<LocalError> {
        let min = self.config.min_free_mib.saturating_mul(1024 * 1024);
        match self.free_disk_bytes() {
            Ok(free) if free < min => {
                return Some(LocalError::LowDisk {
                    free_mib: free / (1024 * 1024),
                    min_mib: self.config.min_free_mib,
                });
            }
            Ok(_) => {}
            Err(e) => return Some(e),
        }
        let used = Self::used_ports(leases);
        if !self.config.port_range.ports().any(|p| !used.contains(&p)) {
            return Some(LocalError::NoFreePort(self.config.port_range.to_string()));
        }
        if self.sandbox.owner().is_some() && self.allocate_uid(leases).is_err() {
            return self.allocate_uid(leases).err();
        }
        None
    }

    /// A listener on the first free port of the range.
    async fn allocate(
        &self,
        leases: &BTreeMap<LeaseId, Live>,
    ) -> Result<(TcpListener, u16), LocalError> {
        let used = Self::used_ports(leases);
        for port in self.config.port_range.ports() {
            if used.contains(&port) {
                continue;
            }
            if let Ok(l) = self.bind(port).await {
                return Ok((l, port));
            }
        }
        Err(LocalError::NoFreePort(self.config.port_range.to_string()))
    }

    /// A listener on the lease's old port, retried briefly (a previous instance may
    /// still be letting it go), else on a new one.
    async fn resume_listener(
        &self,
        lease: &StoredLease,
        leases: &BTreeMap<LeaseId, Live>,
    ) -> Result<(TcpListener, u16), LocalError> {
        if let Some(port) = lease.record.node_port {
            for _ in 0..40 {
                match self.bind(port).await {
                    Ok(l) => return Ok((l, port)),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => break,
                }
            }
        }
        self.allocate(leases).await
    }

    /// Starts the listener and the expiry timer of `stored`.
    fn launch(
        self: &Arc<Self>,
        stored: StoredLease,
        listener: TcpListener,
    ) -> Result<Live, LocalError> {
        let id = stored.record.id.clone();
        let public_key = stored
            .ssh_public_key
            .as_deref()
            .and_then(|k| PublicKey::from_openssh(k.trim()).ok());
        let owner = self
            .sandbox
            .owner()
            .map(|default| stored.uid.map_or(default, |u| (u, u)));
        let identity = match owner {
            Some((uid, gid)) if stored.uid.is_some() => {
                let dir = self.identity_dir(&id);
                std::fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
                let (passwd, group) = crate::sandbox::identity_files(
                    stored.record.username.as_str(),
                    uid,
                    gid,
                    &self.sandbox.shell(),
                );
                let files = (dir.join("passwd"), dir.join("group"));
                for (path, text) in [(&files.0, passwd), (&files.1, group)] {
                    store::write_atomic(path, text.as_bytes())?;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                        .map_err(|e| LocalError::io("opening up", path, e))?;
                }
                Some(files)
            }
            _ => None,
        };
        let top_up = crate::notice::top_up_command(&self.config.top_up_command, &id);
        let shared = Arc::new(LeaseShared::new(
            id.clone(),
            stored.record.username.as_str().to_owned(),
            stored.password.clone(),
            public_key,
            stored.password_login,
            top_up,
            Limits::for_tier(&stored.tier),
            self.home_of(&id),
            self.sandbox.clone(),
            owner,
            identity,
            stored.record.expires_at,
        ));
        let home = self.home_of(&id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&home)
            .map_err(|e| LocalError::io("creating", &home, e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&home, Some(uid), Some(gid))
                .map_err(|e| LocalError::io("handing over", &home, e))?;
        }
        write_lease_file(&shared, stored.record.expires_at);
        let listener = tokio::spawn(serve(listener, shared.clone(), self.ssh.clone()));
        let (expiry, rx) = watch::channel(stored.record.expires_at);
        let warner = tokio::spawn(warning_timer(
            Arc::downgrade(&shared),
            self.config.expiry_warnings.clone(),
            expiry.subscribe(),
        ));
        let timer = tokio::spawn(expiry_timer(Arc::downgrade(self), id, rx));
        Ok(Live {
            stored,
            shared,
            listener,
            timer,
            warner,
            expiry,
            suspended: false,
        })
    }

    /// Starts the stopped lease `id` (in its grace period) again with `extension`: a
    /// listener (on its old port if it is free), its network and a fresh SSH server on
    /// the same home. Nothing changes if any step fails.
    async fn revive(
        self: &Arc<Self>,
        leases: &mut BTreeMap<LeaseId, Live>,
        id: &LeaseId,
        extension: &Extension,
    ) -> Result<(), LocalError> {
        let Some(old) = leases.get(id) else {
            return Err(LocalError::Config(format!("lease {id} is gone")));
        };
        let mut stored = old.stored.clone();
        stored.record.expires_at = extension.expires_at;
        stored.record.paid_msat = extension.paid_msat;
        let (listener, port) = self.resume_listener(&stored, leases).await?;
        stored.record.ssh_port = port;
        stored.record.node_port = Some(port);
        self.sandbox.net_up(id.as_str()).await?;
        let started = match self.mount_home(id).await {
            Ok(()) => self.launch(stored, listener),
            Err(e) => Err(e),
        };
        let live = match started {
            Ok(live) => live,
            Err(e) => {
                self.sandbox.net_down(id.as_str());
                return Err(e);
            }
        };
        let Some(old) = leases.insert(id.clone(), live) else {
            return Ok(());
        };
        if let Err(e) = self.persist(leases).await {
            if let Some(new) = leases.insert(id.clone(), old) {
                new.stop();
            }
            return Err(e);
        }
        // The old parts are stopped already; only its removal timer still runs.
        old.timer.abort();
        tracing::info!(lease = %id, port, "lease brought back from its grace period");
        Ok(())
    }

    /// Writes the lease file (fsync, rename) on a blocking thread; callers hold the
    /// lease lock, so writes stay in order.
    async fn persist(&self, leases: &BTreeMap<LeaseId, Live>) -> Result<(), LocalError> {
        let all: Vec<StoredLease> = leases.values().map(|l| l.stored.clone()).collect();
        let path = store::leases_path(&self.state_dir);
        let writing = path.clone();
        tokio::task::spawn_blocking(move || store::save_leases(&writing, &all))
            .await
            .map_err(|e| LocalError::io("writing", path, std::io::Error::other(e)))?
    }

    /// Stops a removed lease and deletes its home once its processes are gone.
    async fn teardown(&self, live: Live) {
        live.stop();
        // SIGKILL is asynchronous: wait (bounded) until the processes are gone before
        // removing the directory they may still hold open.
        for _ in 0..100 {
            if live.shared.processes().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        remove_home(self.home_of(&live.stored.record.id)).await;
        let _ = std::fs::remove_dir_all(self.identity_dir(&live.stored.record.id));
    }

    /// When `lease` is removed: its expiry plus the grace period.
    fn removal_at(&self, lease: &StoredLease) -> Timestamp {
        lease.record.grace_ends_at(self.config.grace)
    }

    /// At `id`'s expiry (an extension may have won the race): with a grace period, stops
    /// it and keeps its home until the period ends; after it (or without one), removes it.
    ///
    /// Boxed: its timer and this call each other's futures.
    fn expire<'a>(
        self: &'a Arc<Self>,
        id: &'a LeaseId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.expire_now(id))
    }

    async fn expire_now(self: &Arc<Self>, id: &LeaseId) {
        let mut leases = self.leases.lock().await;
        let now = Timestamp::now();
        let Some(live) = leases.get_mut(id) else {
            return;
        };
        if live.stored.record.expires_at > now {
            return;
        }
        let removal = self.removal_at(&live.stored);
        if now < removal {
            if !live.suspended {
                tracing::info!(lease = %id, until = %removal, "lease expired: stopped, its home kept for the grace period");
                live.stop();
                live.suspended = true;
                let (expiry, rx) = watch::channel(removal);
                live.expiry = expiry;
                live.timer = tokio::spawn(expiry_timer(Arc::downgrade(self), id.clone(), rx));
            }
            return;
        }
        if let Some(live) = leases.remove(id) {
            tracing::info!(lease = %id, "lease expired");
            if let Err(e) = self.persist(&leases).await {
                tracing::error!(lease = %id, error = %e, "could not persist lease removal");
            }
            drop(leases);
            self.teardown(live).await;
        }
    }
}

/// Takes an exclusive, non-blocking `flock` on `<state_dir>/lock`.
fn lock_state_dir(state_dir: &Path) -> Result<std::fs::File, LocalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| LocalError::io("opening", &path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(LocalError::Locked(state_dir.to_owned())),
        Err(e) => Err(LocalError::io("locking", &path, e.into())),
    }
}

/// Whether `path` is a mount point (another device than its parent).
fn is_mountpoint(path: &Path) -> bool {
    let (Ok(a), Some(Ok(b))) = (rustix::fs::stat(path), path.parent().map(rustix::fs::stat)) else {
        return false;
    };
    a.st_dev != b.st_dev
}

/// `<state>/images/<lease>.img` of the home `<state>/homes/<lease>`.
fn image_of(home: &Path) -> Option<PathBuf> {
    let name = home.file_name()?;
    let state = home.parent()?.parent()?;
    let mut file = name.to_owned();
    file.push(".img");
    Some(state.join("images").join(file))
}

/// Runs a setup command, failing with its stderr.
async fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), LocalError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| LocalError::io("running", program, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LocalError::Io {
            what: "running",
            path: program.into(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        })
    }
}

async fn remove_home(home: PathBuf) {
    if is_mountpoint(&home) {
        let _ = run_tool("umount", &["-l".as_ref(), home.as_os_str()]).await;
    }
    if let Some(image) = image_of(&home) {
        let _ = std::fs::remove_file(image);
    }
    let path = home.clone();
    let result = tokio::task::spawn_blocking(move || remove_dir_retrying(&path)).await;
    if let Ok(Err(e)) = result {
        tracing::warn!(home = %home.display(), error = %e, "could not remove lease home");
    }
}

fn remove_dir_retrying(path: &Path) -> std::io::Result<()> {
    let mut last = Ok(());
    for _ in 0..5 {
        last = match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other,
        };
        if last.is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

/// Writes the lease's `~/.paygress/lease.json`; a failure (the lease's user replaced the
/// directory with a link, a full disk) is logged, never fatal.
fn write_lease_file(shared: &LeaseShared, expires_at: Timestamp) {
    let owner = shared.owner.or(shared.sandbox.owner());
    if let Err(e) = crate::notice::write_lease_file(
        &shared.home,
        owner,
        &shared.id,
        &shared.username,
        expires_at,
        &shared.top_up,
    ) {
        tracing::warn!(lease = %shared.id, error = %e, "could not write the lease file");
    }
}

/// Writes a warning to the lease's open terminals `before` each expiry (following
/// extensions: a warning whose time has passed when the expiry is set is skipped, one
/// that an extension moved is written again at its new time).
async fn warning_timer(
    lease: Weak<LeaseShared>,
    mut before: Vec<Duration>,
    mut rx: watch::Receiver<Timestamp>,
) {
    before.sort_unstable_by(|a, b| b.cmp(a));
    // The last warning written: (expiry it was for, how long before).
    let mut sent: Option<(Timestamp, Duration)> = None;
    loop {
        let at = *rx.borrow_and_update();
        let now = Timestamp::now();
        let next = before.iter().copied().find_map(|b| {
            let when = at
                .checked_sub(jiff::SignedDuration::try_from(b).ok()?)
                .ok()?;
            (when > now && sent != Some((at, b))).then_some((when, b))
        });
        let Some((when, b)) = next else {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        // Re-checked at least every minute, so a wall-clock jump cannot delay it long.
        let wait = now.duration_until(when).unsigned_abs();
        let capped = wait > Duration::from_secs(60);
        tokio::select! {
            () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        if capped {
            continue;
        }
        let Some(lease) = lease.upgrade() else {
            return;
        };
        let text = crate::notice::warning(&lease.id, Timestamp::now(), at, &lease.top_up);
        let n = lease.write_to_terminals(&text);
        tracing::debug!(lease = %lease.id, terminals = n, before_secs = b.as_secs(), "expiry warning written");
        sent = Some((at, b));
    }
}

/// Sleeps until the lease's expiry (following extensions), then expires it.
async fn expiry_timer(inner: Weak<Inner>, id: LeaseId, mut rx: watch::Receiver<Timestamp>) {
    loop {
        let at = *rx.borrow_and_update();
        let now = Timestamp::now();
        if now >= at {
            break;
        }
        // Re-checked at least every minute, so a wall-clock jump cannot delay expiry.
        let wait = now
            .duration_until(at)
            .unsigned_abs()
            .min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        // A separate task: teardown aborts this timer task.
        tokio::spawn(async move { inner.expire(&id).await });
    }
}

#[async_trait]
impl PodBackend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn check_capacity(&self) -> Result<(), BackendError> {
        let leases = self.inner.leases.lock().await;
        match self.inner.capacity_problem(&leases) {
            None => Ok(()),
            Some(problem) => Err(BackendError::Unavailable(Box::new(problem))),
        }
    }

    #[tracing::instrument(skip_all, fields(lease = %spec.id))]
    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        let inner = &self.inner;
        // PBKDF2 is CPU work: off the async workers, and before the lease table is locked
        // so concurrent creates do not queue behind it.
        let password = spec.password.clone();
        let password = tokio::task::spawn_blocking(move || PasswordHash::new(&password))
            .await
            .map_err(|e| BackendError::Unavailable(Box::new(e)))??;
        let mut leases = inner.leases.lock().await;
        if leases.contains_key(&spec.id) {
            return Err(BackendError::AlreadyExists(spec.id.clone()));
        }
        if spec.expires_at <= Timestamp::now() {
            return Err(BackendError::Rejected(
                "the lease has already expired".into(),
            ));
        }
        if let Some(key) = &spec.ssh_public_key {
            PublicKey::from_openssh(key.trim())
                .map_err(|e| BackendError::Rejected(format!("invalid ssh public key: {e}")))?;
        }
        if let Some(problem) = inner.capacity_problem(&leases) {
            tracing::warn!(reason = %problem, "refusing a new lease");
            return Err(problem.into());
        }
        let uid = match inner.sandbox.owner() {
            Some(_) => Some(inner.allocate_uid(&leases)?),
            None => None,
        };
        let (listener, port) = inner.allocate(&leases).await?;
        let stored = StoredLease {
            record: LeaseRecord::new(spec, port, Some(port)),
            password,
            ssh_public_key: spec.ssh_public_key.clone(),
            password_login: spec.password_login || spec.ssh_public_key.is_none(),
            tier: spec.tier.clone(),
            uid,
        };
        inner.sandbox.net_up(spec.id.as_str()).await?;
        if let Err(e) = inner.mount_home(&spec.id).await {
            inner.sandbox.net_down(spec.id.as_str());
            remove_home(inner.home_of(&spec.id)).await;
            return Err(e.into());
        }
        let live = match inner.launch(stored, listener) {
            Ok(live) => live,
            Err(e) => {
                inner.sandbox.net_down(spec.id.as_str());
                return Err(e.into());
            }
        };
        leases.insert(spec.id.clone(), live);
        if let Err(e) = inner.persist(&leases).await {
            if let Some(live) = leases.remove(&spec.id) {
                drop(leases);
                inner.teardown(live).await;
            }
            return Err(e.into());
        }
        tracing::info!(port, "lease listening");
        Ok(Provisioned {
            ssh_port: port,
            node_port: Some(port),
            ssh_host: None,
            instructions: Vec::new(),
            expires_at: None,
            host_keys: self.host_keys(),
        })
    }

    #[tracing::instrument(skip_all, fields(lease = %id))]
    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        let mut leases = self.inner.leases.lock().await;
        let live = leases
            .get_mut(id)
            .ok_or_else(|| BackendError::NotFound(id.clone()))?;
        if live.suspended && extension.expires_at > Timestamp::now() {
            return Ok(self.inner.revive(&mut leases, id, extension).await?);
        }
        let previous = (live.stored.record.expires_at, live.stored.record.paid_msat);
        live.stored.record.expires_at = extension.expires_at;
        live.stored.record.paid_msat = extension.paid_msat;
        if let Err(e) = self.inner.persist(&leases).await {
            if let Some(live) = leases.get_mut(id) {
                (live.stored.record.expires_at, live.stored.record.paid_msat) = previous;
            }
            return Err(e.into());
        }
        if let Some(live) = leases.get(id) {
            live.shared.set_expiry(extension.expires_at);
            live.expiry.send_replace(extension.expires_at);
            write_lease_file(&live.shared, extension.expires_at);
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(lease = %id))]
    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        let mut leases = self.inner.leases.lock().await;
        let Some(live) = leases.remove(id) else {
            return Ok(());
        };
        let persisted = self.inner.persist(&leases).await;
        drop(leases);
        self.inner.teardown(live).await;
        persisted.map_err(Into::into)
    }

    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        let leases = self.inner.leases.lock().await;
        Ok(leases.get(id).map(|l| l.stored.record.clone()))
    }

    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        let leases = self.inner.leases.lock().await;
        Ok(leases.values().map(|l| l.stored.record.clone()).collect())
    }
}
