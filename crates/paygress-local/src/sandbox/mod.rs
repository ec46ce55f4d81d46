//! How a lease's commands are started (bubblewrap or directly) and how every process
//! of a lease is found and killed. `launch`: the command line of one command;
//! `processes`: finding and killing a lease's processes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use paygress_core::pricing::Tier;

use crate::config::{NetworkMode, SandboxMode};
use crate::error::LocalError;
use crate::net::Net;

mod launch;
mod processes;
mod spawner;
#[cfg(test)]
mod tests;

pub(crate) use self::launch::identity_files;
pub(crate) use self::processes::{kill_all, lease_processes};

/// Resource limits applied to every command of a lease (by bash's `ulimit` builtin, or
/// `prlimit` with another shell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS`: address space in bytes (the tier's memory).
    pub address_space_bytes: u64,
    /// `RLIMIT_NPROC`: processes of the sandbox user (not enforced for root).
    pub processes: u32,
    /// `RLIMIT_NOFILE`: open files per process.
    pub open_files: u32,
}

impl Limits {
    /// The limits for `tier`: address space = the tier's memory, 256 processes per
    /// CPU core (at least 64), 4096 open files.
    pub fn for_tier(tier: &Tier) -> Self {
        let cores = u64::from(tier.cpu_millicores.div_ceil(1000).max(1));
        Self {
            address_space_bytes: u64::from(tier.memory_mib.max(64)) * 1024 * 1024,
            processes: u32::try_from((cores * 256).max(64)).unwrap_or(u32::MAX),
            open_files: 4096,
        }
    }
}

/// A program to start, with its arguments, environment and working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// The network namespace (`/run/netns/<name>`) the program must start in; see
    /// [`Launch::start`].
    pub netns: Option<PathBuf>,
}

impl Launch {
    /// Runs `spawn`, which starts this launch's program: on the thread that joined
    /// [`netns`](Self::netns) first when there is one (see [`spawner`]), else here.
    pub(crate) async fn start<T, F>(&self, spawn: F) -> std::io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        match &self.netns {
            Some(netns) => spawner::in_netns(netns, spawn).await,
            None => spawn(),
        }
    }
}

/// What one command of a lease needs.
pub(crate) struct LaunchSpec<'a> {
    pub lease: &'a str,
    pub username: &'a str,
    /// The lease's home on the host.
    pub home: &'a Path,
    pub limits: Limits,
    /// `None` for an interactive login shell.
    pub command: Option<&'a str>,
    /// Whether the command runs on a PTY.
    pub pty: bool,
    /// Extra environment accepted from the client (`TERM`, `LANG`, `LC_*`).
    pub client_env: &'a [(String, String)],
    /// The lease's own uid/gid, when Paygress runs as root (else the default drop
    /// target, `nobody`).
    pub owner: Option<(u32, u32)>,
    /// `passwd` and `group` files naming the lease's own uid, bound over the
    /// sandbox's (so `id`, `scp` and shell prompts know the user).
    pub identity: Option<(&'a Path, &'a Path)>,
    /// The lease's network namespace (isolated mode): from [`Sandbox::net_up`]. Without
    /// one, an isolated-mode command gets no network at all (loopback only).
    pub netns: Option<&'a str>,
}

/// Sizes applied to every sandboxed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizes {
    /// Size of the private `/tmp` tmpfs.
    pub tmp_bytes: u64,
    /// `RLIMIT_FSIZE`: the largest file a command may write.
    pub max_file_bytes: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            tmp_bytes: 256 * 1024 * 1024,
            max_file_bytes: 4096 * 1024 * 1024,
        }
    }
}

/// The tools found on this host for the chosen mode.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    mode: SandboxMode,
    bwrap: Option<PathBuf>,
    prlimit: Option<PathBuf>,
    shell: PathBuf,
    /// When Paygress runs as root: `setpriv` and the uid/gid (nobody) that sandboxed
    /// commands switch to once bubblewrap has set up their mounts.
    drop_to: Option<(PathBuf, u32, u32)>,
    /// OpenSSH's `sftp-server`, when installed (under `/usr`, so visible in the sandbox).
    sftp_server: Option<PathBuf>,
    /// The network lease commands see.
    net: Net,
    sizes: Sizes,
}

/// Where distributions install OpenSSH's `sftp-server`.
const SFTP_SERVERS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
];

/// The lease name of the start-up probe.
const PROBE: &str = "probe";

/// `nobody` / `nogroup` on Debian and most distributions.
const NOBODY: u32 = 65534;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Whether `shell` is bash (by name: `/bin/bash`, `/usr/bin/bash`).
fn is_bash(shell: &Path) -> bool {
    shell.file_name().is_some_and(|n| n == "bash")
}

/// Finds `name` in `PATH` (or the usual system directories).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| PATH.into());
    std::env::split_paths(&path)
        .chain(std::env::split_paths(PATH))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Sandbox {
    /// Looks up `bwrap` (when requested), `prlimit` and a shell, and for bubblewrap
    /// checks that a sandbox can actually be created here.
    pub(crate) async fn detect(
        mode: SandboxMode,
        network: NetworkMode,
        state_dir: &Path,
        sizes: Sizes,
    ) -> Result<Self, LocalError> {
        Self::detect_with(mode, network, state_dir, sizes, which).await
    }

    /// [`detect`](Self::detect) with a custom program lookup.
    pub(crate) async fn detect_with(
        mode: SandboxMode,
        network: NetworkMode,
        state_dir: &Path,
        sizes: Sizes,
        which: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<Self, LocalError> {
        let bwrap = match mode {
            SandboxMode::Bubblewrap => Some(which("bwrap").ok_or(LocalError::BwrapMissing)?),
            SandboxMode::Unsandboxed => None,
        };
        let shell = ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("/bin/sh"));
        // bash sets the rlimits itself (`ulimit`); another shell needs `prlimit`.
        let prlimit = if is_bash(&shell) {
            None
        } else {
            let prlimit = which("prlimit");
            if prlimit.is_none() {
                tracing::warn!(
                    "`prlimit` (util-linux) not found: lease commands run without rlimits"
                );
            }
            prlimit
        };
        let drop_to = if mode == SandboxMode::Bubblewrap && rustix::process::geteuid().is_root() {
            let setpriv = which("setpriv").ok_or_else(|| {
                LocalError::Config(
                    "Paygress runs as root: sandboxed commands must drop to `nobody`, which needs `setpriv` (util-linux); install it or run Paygress as an unprivileged user".into(),
                )
            })?;
            Some((setpriv, NOBODY, NOBODY))
        } else {
            None
        };
        let sftp_server = SFTP_SERVERS.iter().map(PathBuf::from).find(|p| p.is_file());
        let net = match mode {
            SandboxMode::Bubblewrap => Net::detect(network, state_dir, &which)?,
            SandboxMode::Unsandboxed => {
                if network != NetworkMode::Host {
                    tracing::warn!(
                        "LOCAL_NETWORK={network} is ignored: unsandboxed commands share the host's network"
                    );
                }
                Net::Host
            }
        };
        let mut sandbox = Self {
            mode,
            bwrap,
            prlimit,
            shell,
            drop_to,
            sftp_server,
            net,
            sizes,
        };
        if mode == SandboxMode::Bubblewrap {
            if let Net::Pasta(p) = &sandbox.net {
                p.remove_stale().await;
                let ns = p.probe_name();
                let probed = match p.create(&ns).await {
                    Ok(()) => {
                        let r = sandbox.probe(Some(&ns)).await;
                        p.destroy(&ns);
                        r
                    }
                    Err(e) => Err(e),
                };
                match probed {
                    Ok(()) => return Ok(sandbox),
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            "isolated lease networking (pasta) does not work on this host: leases get NO network (loopback only) instead"
                        );
                        sandbox.net = Net::Loopback;
                    }
                }
            }
            sandbox.probe(None).await?;
        }
        Ok(sandbox)
    }

    /// A network namespace for a new lease, if the mode has one per lease: its name,
    /// for [`LaunchSpec::netns`] and [`net_down`](Self::net_down).
    pub(crate) async fn net_up(&self) -> Result<Option<String>, LocalError> {
        match &self.net {
            Net::Pasta(p) => p.take().await.map(Some),
            Net::Host | Net::Loopback => Ok(None),
        }
    }

    /// Deletes a lease's network namespace, if any. Synchronous (for `Drop`).
    pub(crate) fn net_down(&self, netns: Option<&str>) {
        if let (Net::Pasta(p), Some(name)) = (&self.net, netns) {
            p.destroy(name);
        }
    }

    /// Keeps `spares` network namespaces set up ahead of time (isolated mode only).
    pub(crate) fn prepare_networks(&self, spares: usize) {
        if let Net::Pasta(p) = &self.net {
            p.prepare(spares);
        }
    }

    /// Deletes the spare network namespaces and sets up no more. Synchronous (for
    /// `Drop`).
    pub(crate) fn close_networks(&self) {
        if let Net::Pasta(p) = &self.net {
            p.close();
        }
    }

    /// The network mode actually in use (isolated may have fallen back to none).
    pub(crate) fn network(&self) -> NetworkMode {
        match self.net {
            Net::Host => NetworkMode::Host,
            Net::Loopback => NetworkMode::None,
            Net::Pasta(_) => NetworkMode::Isolated,
        }
    }

    /// Runs `true` in a sandbox like a lease's, so a host where bubblewrap cannot work
    /// (no user namespaces, seccomp) fails at start, not at the first login.
    async fn probe(&self, netns: Option<&str>) -> Result<(), LocalError> {
        let home = std::env::temp_dir();
        let launch = self.launch(&LaunchSpec {
            lease: PROBE,
            username: "probe",
            home: &home,
            limits: Limits::for_tier(&Tier::standard()),
            command: Some("true"),
            pty: false,
            client_env: &[],
            owner: None,
            identity: None,
            netns,
        });
        let mut cmd = tokio::process::Command::new(&launch.program);
        cmd.args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let out = async {
            launch
                .start(move || cmd.spawn())
                .await?
                .wait_with_output()
                .await
        }
        .await
        .map_err(|e| LocalError::io("running", &launch.program, e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(LocalError::SandboxUnavailable(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Whether lease commands get their rlimits from the shell's own `ulimit` (bash)
    /// rather than from `prlimit`.
    fn bash_limits(&self) -> bool {
        is_bash(&self.shell)
    }

    /// The login shell of lease users.
    pub(crate) fn shell(&self) -> String {
        self.shell.to_string_lossy().into_owned()
    }

    /// The mode in use.
    pub(crate) fn mode(&self) -> SandboxMode {
        self.mode
    }

    /// The command that serves the `sftp` subsystem, if `sftp-server` is installed.
    pub(crate) fn sftp_command(&self) -> Option<String> {
        self.sftp_server
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// The uid/gid lease commands run as by default, when different from Paygress'
    /// own (their home and terminal must belong to it). `Some` exactly when
    /// Paygress runs as root with bubblewrap; leases then get their own uid.
    pub(crate) fn owner(&self) -> Option<(u32, u32)> {
        self.drop_to.as_ref().map(|(_, u, g)| (*u, *g))
    }
}
