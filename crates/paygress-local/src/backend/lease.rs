//! The backend's own work: ports, uids, capacity, starting a lease's SSH server,
//! persisting, expiry (with the grace period) and removal.

use super::*;

impl Inner {
    pub(super) fn used_ports(leases: &BTreeMap<LeaseId, Live>) -> Vec<u16> {
        leases
            .values()
            .filter_map(|l| l.stored.record.node_port)
            .collect()
    }

    pub(super) async fn bind(&self, port: u16) -> std::io::Result<TcpListener> {
        TcpListener::bind((self.config.bind_host.as_str(), port)).await
    }

    /// The lowest uid of the configured range no live lease uses.
    pub(super) fn allocate_uid(&self, leases: &BTreeMap<LeaseId, Live>) -> Result<u32, LocalError> {
        let used: Vec<u32> = leases.values().filter_map(|l| l.stored.uid).collect();
        self.config
            .uid_range
            .uids()
            .find(|u| !used.contains(u))
            .ok_or(LocalError::NoFreeUid(self.config.uid_range))
    }

    /// Free bytes (for unprivileged users) on the filesystem holding the data
    /// directory.
    pub(super) fn free_disk_bytes(&self) -> Result<u64, LocalError> {
        let st = rustix::fs::statvfs(&self.state_dir)
            .map_err(|e| LocalError::io("checking free space of", &self.state_dir, e.into()))?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Why a new lease cannot be created now, if it cannot.
    pub(super) fn capacity_problem(&self, leases: &BTreeMap<LeaseId, Live>) -> Option<LocalError> {
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
            return Some(LocalError::NoFreePort(self.config.port_range));
        }
        if self.sandbox.owner().is_some() && self.allocate_uid(leases).is_err() {
            return self.allocate_uid(leases).err();
        }
        None
    }

    /// A listener on the first free port of the range.
    pub(super) async fn allocate(
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
        Err(LocalError::NoFreePort(self.config.port_range))
    }

    /// A listener on the lease's old port, retried briefly (a previous instance may
    /// still be letting it go), else on a new one.
    pub(super) async fn resume_listener(
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

    /// Starts the listener and the expiry timer of `stored`, whose commands run in
    /// network namespace `netns` (from `net_up`).
    pub(super) fn launch(
        self: &Arc<Self>,
        stored: StoredLease,
        listener: TcpListener,
        netns: Option<String>,
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
                // Not synced: written again for every lease at every start.
                for (path, text) in [(&files.0, passwd), (&files.1, group)] {
                    store::replace_file(path, text.as_bytes())?;
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
            netns,
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
    pub(super) async fn revive(
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
        let netns = self.sandbox.net_up().await?;
        let started = match self.mount_home(id).await {
            Ok(()) => self.launch(stored, listener, netns.clone()),
            Err(e) => Err(e),
        };
        let live = match started {
            Ok(live) => live,
            Err(e) => {
                self.sandbox.net_down(netns.as_deref());
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
    pub(super) async fn persist(&self, leases: &BTreeMap<LeaseId, Live>) -> Result<(), LocalError> {
        let all: Vec<StoredLease> = leases.values().map(|l| l.stored.clone()).collect();
        let path = store::leases_path(&self.state_dir);
        let writing = path.clone();
        tokio::task::spawn_blocking(move || store::save_leases(&writing, &all))
            .await
            .map_err(|e| LocalError::io("writing", path, std::io::Error::other(e)))?
    }

    /// Stops a removed lease and deletes its home once its processes are gone.
    pub(super) async fn teardown(&self, live: Live) {
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
    pub(super) fn removal_at(&self, lease: &StoredLease) -> Timestamp {
        lease.record.grace_ends_at(self.config.grace)
    }

    /// At `id`'s expiry (an extension may have won the race): with a grace period, stops
    /// it and keeps its home until the period ends; after it (or without one), removes it.
    ///
    /// Boxed: its timer and this call each other's futures.
    pub(super) fn expire<'a>(
        self: &'a Arc<Self>,
        id: &'a LeaseId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.expire_now(id))
    }

    pub(super) async fn expire_now(self: &Arc<Self>, id: &LeaseId) {
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
