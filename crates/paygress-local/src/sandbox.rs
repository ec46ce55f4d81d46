//! How a lease's commands are started (bubblewrap or directly) and how every process
//! of a lease is found and killed.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use paygress_core::pricing::Tier;

use crate::config::{NetworkMode, SandboxMode};
use crate::error::LocalError;
use crate::net::Net;

/// Resource limits applied to every command of a lease (via `prlimit`).
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
        let prlimit = which("prlimit");
        if prlimit.is_none() {
            tracing::warn!("`prlimit` (util-linux) not found: lease commands run without rlimits");
        }
        let shell = ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("/bin/sh"));
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
                let probed = match p.create(PROBE).await {
                    Ok(()) => {
                        let r = sandbox.probe().await;
                        p.destroy(PROBE);
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
            sandbox.probe().await?;
        }
        Ok(sandbox)
    }

    /// Creates lease `lease`'s network namespace, if the mode has one per lease.
    pub(crate) async fn net_up(&self, lease: &str) -> Result<(), LocalError> {
        match &self.net {
            Net::Pasta(p) => p.create(lease).await,
            Net::Host | Net::Loopback => Ok(()),
        }
    }

    /// Deletes lease `lease`'s network namespace, if any. Synchronous (for `Drop`).
    pub(crate) fn net_down(&self, lease: &str) {
        if let Net::Pasta(p) = &self.net {
            p.destroy(lease);
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
    async fn probe(&self) -> Result<(), LocalError> {
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
        });
        let out = tokio::process::Command::new(&launch.program)
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
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

    /// How to start one command of a lease.
    pub(crate) fn launch(&self, spec: &LaunchSpec<'_>) -> Launch {
        let sandbox_home = PathBuf::from(format!("/home/{}", spec.username));
        let home = match self.mode {
            SandboxMode::Bubblewrap => sandbox_home.clone(),
            SandboxMode::Unsandboxed => spec.home.to_owned(),
        };
        let shell = self.shell.to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), home.to_string_lossy().into_owned()),
            ("USER".into(), spec.username.into()),
            ("LOGNAME".into(), spec.username.into()),
            ("SHELL".into(), shell.clone()),
            ("LANG".into(), "C.UTF-8".into()),
            ("PAYGRESS_LEASE".into(), spec.lease.into()),
        ];
        for (k, v) in spec.client_env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }

        // The command proper: [setpriv …] [prlimit …] shell -l | shell -c CMD
        let mut inner: Vec<OsString> = Vec::new();
        if let (SandboxMode::Bubblewrap, Some((setpriv, uid, gid))) = (self.mode, &self.drop_to) {
            let (uid, gid) = spec.owner.unwrap_or((*uid, *gid));
            inner.push(setpriv.into());
            inner.push(format!("--reuid={uid}").into());
            inner.push(format!("--regid={gid}").into());
            inner.push("--clear-groups".into());
            inner.push("--inh-caps=-all".into());
            inner.push("--".into());
        }
        if let Some(prlimit) = &self.prlimit {
            inner.push(prlimit.into());
            inner.push(format!("--as={}", spec.limits.address_space_bytes).into());
            inner.push(format!("--nproc={}", spec.limits.processes).into());
            inner.push(format!("--nofile={}", spec.limits.open_files).into());
            if self.mode == SandboxMode::Bubblewrap {
                inner.push(format!("--fsize={}", self.sizes.max_file_bytes).into());
            }
            inner.push("--".into());
        }
        inner.push(shell.into());
        match spec.command {
            Some(cmd) => {
                inner.push("-c".into());
                inner.push(cmd.into());
            }
            None => inner.push("-l".into()),
        }

        match (&self.mode, &self.bwrap) {
            (SandboxMode::Bubblewrap, Some(bwrap)) => {
                let mut args: Vec<OsString> = Vec::new();
                let mut push = |a: &[&str]| args.extend(a.iter().map(OsString::from));
                push(&[
                    "--die-with-parent",
                    "--unshare-pid",
                    "--unshare-ipc",
                    "--unshare-uts",
                ]);
                push(&["--hostname", spec.lease]);
                if !spec.pty {
                    // No controlling terminal to keep: detach from ours (TIOCSTI).
                    push(&["--new-session"]);
                }
                if self.drop_to.is_some() {
                    // Only for `setpriv` to switch to nobody; the switch clears them.
                    push(&["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]);
                }
                push(&["--ro-bind", "/usr", "/usr"]);
                for dir in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
                    let p = Path::new(dir);
                    if let Ok(target) = std::fs::read_link(p) {
                        let target = target.to_string_lossy().into_owned();
                        push(&["--symlink", &target, dir]);
                    } else if p.is_dir() {
                        push(&["--ro-bind", dir, dir]);
                    }
                }
                push(&["--ro-bind", "/etc", "/etc"]);
                push(&["--proc", "/proc", "--dev", "/dev"]);
                // Directories bubblewrap creates belong to root: open them up like a
                // normal system's.
                let tmp_size = self.sizes.tmp_bytes.to_string();
                push(&["--perms", "1777", "--size", &tmp_size, "--tmpfs", "/tmp"]);
                // Not a directory on bubblewrap's unbounded root tmpfs.
                push(&["--symlink", "/tmp", "/var/tmp"]);
                push(&["--perms", "0755", "--dir", "/run"]);
                push(&["--perms", "0755", "--dir", "/home"]);
                let sandbox_home = sandbox_home.to_string_lossy().into_owned();
                args.push("--bind".into());
                args.push(spec.home.into());
                args.push(sandbox_home.clone().into());
                args.push("--chdir".into());
                args.push(sandbox_home.into());
                if let Some((passwd, group)) = spec.identity {
                    for (src, dest) in [(passwd, "/etc/passwd"), (group, "/etc/group")] {
                        args.push("--ro-bind".into());
                        args.push(src.into());
                        args.push(dest.into());
                    }
                }
                match &self.net {
                    Net::Host => {}
                    Net::Loopback => args.push("--unshare-net".into()),
                    Net::Pasta(p) => {
                        // The host's resolver is not reachable: pasta forwards DNS.
                        let dest = std::fs::canonicalize("/etc/resolv.conf")
                            .unwrap_or_else(|_| PathBuf::from("/etc/resolv.conf"));
                        args.push("--ro-bind".into());
                        args.push(p.resolv_conf().into());
                        args.push(dest.into());
                    }
                }
                args.push("--".into());
                args.extend(inner);
                let program = match &self.net {
                    Net::Pasta(p) => {
                        // nsenter joins the lease's namespace and execs bubblewrap.
                        let mut outer: Vec<OsString> = vec![
                            {
                                let mut a = OsString::from("--net=");
                                a.push(p.ns_path(spec.lease));
                                a
                            },
                            "--".into(),
                            bwrap.into(),
                        ];
                        outer.append(&mut args);
                        args = outer;
                        p.nsenter().to_owned()
                    }
                    Net::Host | Net::Loopback => bwrap.clone(),
                };
                Launch {
                    program,
                    args,
                    env,
                    cwd: spec.home.to_owned(),
                }
            }
            _ => {
                let mut it = inner.into_iter();
                let program = it.next().map(PathBuf::from).unwrap_or_default();
                Launch {
                    program,
                    args: it.collect(),
                    env,
                    cwd: spec.home.to_owned(),
                }
            }
        }
    }
}

/// The host's `passwd` and `group` with `username` as `uid`/`gid` (replacing any
/// entry of that name), home `/home/<username>` and login shell `shell`.
pub(crate) fn identity_files(username: &str, uid: u32, gid: u32, shell: &str) -> (String, String) {
    let keep = |text: String| -> String {
        text.lines()
            .filter(|l| l.split(':').next() != Some(username))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let mut passwd = keep(std::fs::read_to_string("/etc/passwd").unwrap_or_default());
    passwd.push_str(&format!(
        "{username}:x:{uid}:{gid}:Paygress lease:/home/{username}:{shell}\n"
    ));
    let mut group = keep(std::fs::read_to_string("/etc/group").unwrap_or_default());
    group.push_str(&format!("{username}:x:{gid}:\n"));
    (passwd, group)
}

/// `(pid, ppid, pgid, sid)` of every process in `/proc`.
fn process_table() -> Vec<(u32, u32, u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // "pid (comm) state ppid pgrp session …"; comm may contain anything but ends
        // at the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut f = rest.split_whitespace();
        if matches!(f.next()?, "Z" | "X") {
            return None; // dead, waiting to be reaped
        }
        let ppid = f.next()?.parse().ok()?;
        let pgid = f.next()?.parse().ok()?;
        let sid = f.next()?.parse().ok()?;
        Some((pid, ppid, pgid, sid))
    })
    .collect()
}

/// Every live process started by `roots`: the roots, their descendants, and any
/// process in a process group or session a root leads.
pub(crate) fn lease_processes(roots: &HashSet<u32>) -> HashSet<u32> {
    let table = process_table();
    let mut found: HashSet<u32> = table
        .iter()
        .filter(|(pid, _, pgid, sid)| {
            roots.contains(pid) || roots.contains(pgid) || roots.contains(sid)
        })
        .map(|(pid, ..)| *pid)
        .collect();
    loop {
        let before = found.len();
        for (pid, ppid, ..) in &table {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// SIGKILLs every process of `roots` (see [`lease_processes`]) and returns how many
/// were signalled.
pub(crate) fn kill_all(roots: &HashSet<u32>) -> usize {
    let own = std::process::id();
    let victims: Vec<u32> = lease_processes(roots)
        .into_iter()
        .filter(|p| *p != own)
        .collect();
    for pid in &victims {
        if let Some(p) = i32::try_from(*pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
    victims.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(home: &'a Path, command: Option<&'a str>, pty: bool) -> LaunchSpec<'a> {
        LaunchSpec {
            lease: "ssh-pod-abcdefgh",
            username: "alice",
            home,
            limits: Limits::for_tier(&Tier::standard()),
            command,
            pty,
            client_env: &[],
            owner: None,
            identity: None,
        }
    }

    #[tokio::test]
    async fn missing_bwrap_is_an_install_hint() {
        let dir = tempfile::tempdir().unwrap();
        let err = Sandbox::detect_with(
            SandboxMode::Bubblewrap,
            NetworkMode::Isolated,
            dir.path(),
            Sizes::default(),
            |_| None,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, LocalError::BwrapMissing));
        assert!(err.to_string().contains("apt-get install bubblewrap"));
        // Unsandboxed needs no bwrap.
        let sb = Sandbox::detect_with(
            SandboxMode::Unsandboxed,
            NetworkMode::Isolated,
            dir.path(),
            Sizes::default(),
            |_| None,
        )
        .await
        .unwrap();
        assert_eq!(sb.mode(), SandboxMode::Unsandboxed);
    }

    #[test]
    fn limits_follow_the_tier() {
        let l = Limits::for_tier(&Tier::standard());
        assert_eq!(l.address_space_bytes, 1024 * 1024 * 1024);
        assert_eq!(l.processes, 256);
    }

    #[test]
    fn bubblewrap_launch_isolates() {
        let sb = Sandbox {
            mode: SandboxMode::Bubblewrap,
            bwrap: Some("/usr/bin/bwrap".into()),
            prlimit: Some("/usr/bin/prlimit".into()),
            shell: "/bin/sh".into(),
            drop_to: None,
            sftp_server: None,
            net: Net::Host,
            sizes: Sizes::default(),
        };
        let home = Path::new("/data/local/homes/ssh-pod-abcdefgh");
        let l = sb.launch(&spec(home, Some("echo hi"), false));
        let args: Vec<String> = l
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert_eq!(l.program, PathBuf::from("/usr/bin/bwrap"));
        for needle in [
            "--die-with-parent",
            "--unshare-pid",
            "--new-session",
            "--perms 1777 --size 268435456 --tmpfs /tmp",
            "--symlink /tmp /var/tmp",
            "--fsize=4294967296",
            "--ro-bind /etc /etc",
            "--ro-bind /usr /usr",
            "--bind /data/local/homes/ssh-pod-abcdefgh /home/alice",
            "--as=1073741824",
            "-- /bin/sh -c echo hi",
        ] {
            assert!(joined.contains(needle), "{needle:?} missing in {joined}");
        }
        assert!(l.env.contains(&("HOME".into(), "/home/alice".into())));
        assert!(l.env.contains(&("USER".into(), "alice".into())));
        let pty = sb.launch(&spec(home, None, true));
        let joined: Vec<String> = pty
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            !joined.iter().any(|a| a == "--new-session"),
            "a PTY keeps its controlling terminal"
        );
        assert_eq!(joined.last().map(String::as_str), Some("-l"));
    }

    #[test]
    fn as_root_commands_drop_to_nobody() {
        let sb = Sandbox {
            mode: SandboxMode::Bubblewrap,
            bwrap: Some("/usr/bin/bwrap".into()),
            prlimit: None,
            shell: "/bin/sh".into(),
            drop_to: Some(("/usr/bin/setpriv".into(), NOBODY, NOBODY)),
            sftp_server: None,
            net: Net::Host,
            sizes: Sizes::default(),
        };
        let l = sb.launch(&spec(Path::new("/h"), Some("id"), false));
        let joined = l
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined.contains("--cap-add CAP_SETUID --cap-add CAP_SETGID"),
            "{joined}"
        );
        assert!(
            joined.ends_with("-- /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- /bin/sh -c id"),
            "{joined}"
        );
        assert_eq!(sb.owner(), Some((NOBODY, NOBODY)));
        // A lease's own uid replaces nobody.
        let mut own = spec(Path::new("/h"), Some("id"), false);
        own.owner = Some((2_000_007, 2_000_007));
        let joined = sb
            .launch(&own)
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined.contains("setpriv --reuid=2000007 --regid=2000007"),
            "{joined}"
        );
    }

    #[test]
    fn unsandboxed_launch_runs_the_shell_directly() {
        let sb = Sandbox {
            mode: SandboxMode::Unsandboxed,
            bwrap: None,
            prlimit: None,
            shell: "/bin/sh".into(),
            drop_to: None,
            sftp_server: None,
            net: Net::Host,
            sizes: Sizes::default(),
        };
        let home = Path::new("/tmp/h");
        let l = sb.launch(&spec(home, Some("id"), false));
        assert_eq!(l.program, PathBuf::from("/bin/sh"));
        assert_eq!(l.args, vec![OsString::from("-c"), OsString::from("id")]);
        assert!(l.env.contains(&("HOME".into(), "/tmp/h".into())));
    }

    #[test]
    fn kill_all_kills_a_process_tree() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 1000 & sleep 1000 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let root = child.id();
        let roots: HashSet<u32> = [root].into();
        // The shell forks its two sleeps; wait until they exist.
        let mut seen = 0;
        for _ in 0..200 {
            seen = lease_processes(&roots).len();
            if seen >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(seen >= 3, "shell and two sleeps, saw {seen}");
        assert!(kill_all(&roots) >= 3);
        let _ = child.wait();
        for _ in 0..200 {
            if lease_processes(&roots).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(lease_processes(&roots).is_empty());
    }
}
