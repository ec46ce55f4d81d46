//! Lease homes: where they live, their size-limited filesystems, their removal; the
//! state directory's lock.

use super::*;

impl Inner {
    /// Removes home directories that belong to no live lease (left by a crash between
    /// creating a home and persisting its lease, or by a failed removal).
    pub(super) async fn remove_orphan_homes(&self, leases: &BTreeMap<LeaseId, Live>) {
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
    pub(super) async fn mount_home(&self, id: &LeaseId) -> Result<(), LocalError> {
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
    pub(super) fn identity_dir(&self, id: &LeaseId) -> PathBuf {
        self.state_dir.join("etc").join(id.as_str())
    }

    pub(super) fn home_of(&self, id: &LeaseId) -> PathBuf {
        self.state_dir.join("homes").join(id.as_str())
    }
}

/// Takes an exclusive, non-blocking `flock` on `<state_dir>/lock`.
pub(super) fn lock_state_dir(state_dir: &Path) -> Result<std::fs::File, LocalError> {
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
pub(super) fn is_mountpoint(path: &Path) -> bool {
    let (Ok(a), Some(Ok(b))) = (rustix::fs::stat(path), path.parent().map(rustix::fs::stat)) else {
        return false;
    };
    a.st_dev != b.st_dev
}

/// `<state>/images/<lease>.img` of the home `<state>/homes/<lease>`.
pub(super) fn image_of(home: &Path) -> Option<PathBuf> {
    let name = home.file_name()?;
    let state = home.parent()?.parent()?;
    let mut file = name.to_owned();
    file.push(".img");
    Some(state.join("images").join(file))
}

/// Runs a setup command, failing with its stderr.
pub(super) async fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), LocalError> {
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

pub(super) async fn remove_home(home: PathBuf) {
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

pub(super) fn remove_dir_retrying(path: &Path) -> std::io::Result<()> {
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
