//! [`LocalBackend`]: the [`PodBackend`] that runs leases on this machine. `lease`: ports,
//! uids, launching, persisting, expiry and the grace period; `home`: homes and their
//! filesystems; `timers`: expiry warnings and expiry.

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

mod home;
mod lease;
mod timers;

use self::home::*;
use self::timers::*;

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
        self.shared.sandbox.net_down(self.shared.netns.as_deref());
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(leases) = self.leases.try_lock() {
            for live in leases.values() {
                live.stop();
            }
        }
        self.sandbox.close_networks();
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
                let netns = inner.sandbox.net_up().await?;
                let live = match inner.mount_home(&id).await {
                    Ok(()) => inner.launch(lease, listener, netns.clone()),
                    Err(e) => Err(e),
                };
                let live = live.inspect_err(|_| inner.sandbox.net_down(netns.as_deref()))?;
                tracing::info!(lease = %id, port, "resumed lease");
                leases.insert(id, live);
            }
            inner.persist(&leases).await?;
            inner.remove_orphan_homes(&leases).await;
        }
        inner.sandbox.prepare_networks(inner.config.spare_networks);
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
        let password_login = spec.password_login || spec.ssh_public_key.is_none();
        let password = if password_login {
            // PBKDF2 is CPU work: off the async workers, and before the lease table is
            // locked so concurrent creates do not queue behind it.
            let password = spec.password.clone();
            tokio::task::spawn_blocking(move || PasswordHash::new(&password))
                .await
                .map_err(|e| BackendError::Unavailable(Box::new(e)))??
        } else {
            // Never checked: the password does not log in.
            PasswordHash::disabled()
        };
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
            password_login,
            tier: spec.tier.clone(),
            uid,
        };
        let netns = inner.sandbox.net_up().await?;
        if let Err(e) = inner.mount_home(&spec.id).await {
            inner.sandbox.net_down(netns.as_deref());
            remove_home(inner.home_of(&spec.id)).await;
            return Err(e.into());
        }
        let live = match inner.launch(stored, listener, netns.clone()) {
            Ok(live) => live,
            Err(e) => {
                inner.sandbox.net_down(netns.as_deref());
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
