//! The network a lease's commands see: the host's, a loopback-only namespace, or (the
//! default) a per-lease namespace with user-mode egress through `pasta` and no route
//! to the host, its subnets or any private / link-local range.
//!
//! The isolated mode works like this, per lease, as root:
//! 1. `ip netns add paygress-<dir hash>-<n>` (a counter: namespaces are not named after
//!    their lease, so one can be set up before its lease exists, see below);
//! 2. `prohibit` routes in it for the host's loopback, each host address and subnet, the
//!    private, shared, link-local (cloud metadata `169.254.169.254`), benchmark,
//!    multicast and reserved IPv4 ranges, so connecting there fails at once
//!    (`EACCES`) whatever pasta would do with the packet;
//! 3. `pasta --netns … --config-net -4 --no-map-gw -t none -u none -T none -U none`:
//!    a tap interface `169.254.1.2/29` with a default route via `169.254.1.1`, outbound
//!    TCP/UDP/ICMP re-originated from the host's sockets, no gateway-to-host-loopback
//!    mapping, no port forwarding in either direction, DNS queries to `169.254.1.3`
//!    forwarded to the host's resolver (the sandbox's `/etc/resolv.conf` points there);
//! 4. every command of the lease starts (bubblewrap) from a thread that joined the
//!    namespace first (`setns`), so it is in the namespace from its first instruction
//!    (`sandbox::spawner`).
//!
//! pasta quits by itself when the namespace is deleted (`ip netns del`) at the lease's
//! end. IPv6 is off in the namespace (pasta `-4`): egress is IPv4 only.
//!
//! Steps 1–3 cost tens of milliseconds (four programs, pasta's start-up), so a few
//! namespaces are set up ahead of time ([`Pasta::prepare`], `LocalConfig::spare_networks`)
//! and a new lease takes one ([`Pasta::take`]); the spare is replaced in the background.
//! A spare is set up exactly like a namespace made on demand and no command ever ran in
//! it; spares are deleted when the backend stops, and a crashed instance's at the next
//! start ([`Pasta::remove_stale`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::LocalError;

mod host;

use host::host_ipv4_cidrs;

/// The lease namespace's own address, gateway and DNS forwarder (link-local, so the
/// host's networks are never shadowed).
const NS_ADDR: &str = "169.254.1.2";
const NS_PREFIX_LEN: &str = "29";
const NS_GATEWAY: &str = "169.254.1.1";
const NS_DNS: &str = "169.254.1.3";

/// IPv4 ranges a lease never reaches (RFC 6890 special-purpose, non-global), plus the
/// parts of the namespace's own /29 that pasta would forward to the host's LAN.
const BLOCKED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",
    "169.254.1.0/32",
    "169.254.1.1/32",
    "169.254.1.4/30",
];

/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// How lease commands get their network, decided once at start.
#[derive(Debug, Clone)]
pub(crate) enum Net {
    /// The host's namespace (no isolation).
    Host,
    /// bubblewrap's `--unshare-net`: a namespace with only loopback.
    Loopback,
    /// A per-lease namespace connected through pasta.
    Pasta(Pasta),
}

/// The tools and settings of the isolated mode.
#[derive(Debug, Clone)]
pub(crate) struct Pasta {
    pasta: PathBuf,
    ip: PathBuf,
    /// `paygress-<hash of the state dir>-`: namespaces of this data directory.
    prefix: String,
    /// `<state dir>/resolv.conf`, bound over the sandbox's `/etc/resolv.conf`.
    resolv_conf: PathBuf,
    /// CIDRs given a `prohibit` route in every lease namespace.
    blocked: Vec<String>,
    /// Namespaces set up ahead of time.
    spares: Arc<Spares>,
}

/// Namespaces set up before a lease asks for one.
#[derive(Debug, Default)]
struct Spares {
    /// Suffix of the next namespace's name.
    next: AtomicU64,
    state: Mutex<SpareState>,
}

#[derive(Debug, Default)]
struct SpareState {
    /// Names of namespaces ready to be taken, oldest first.
    ready: Vec<String>,
    /// How many to keep ready.
    want: usize,
    /// Whether a task is setting one up now.
    filling: bool,
    /// The backend stopped: keep none, delete what is set up later.
    closed: bool,
}

impl Net {
    /// Decides the mechanism for `mode` (isolated falls back to loopback-only with a
    /// warning when Paygress is not root or `pasta`/`ip` are missing).
    pub(crate) fn detect(
        mode: crate::config::NetworkMode,
        state_dir: &Path,
        which: &impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<Self, LocalError> {
        use crate::config::NetworkMode;
        match mode {
            NetworkMode::Host => Ok(Self::Host),
            NetworkMode::None => Ok(Self::Loopback),
            NetworkMode::Isolated => {
                let tools = (which("pasta"), which("ip"));
                let (Some(pasta), Some(ip)) = tools else {
                    tracing::warn!(
                        "LOCAL_NETWORK=isolated needs `pasta` (Debian: passt) and `ip` (iproute2): leases get NO network (loopback only) instead"
                    );
                    return Ok(Self::Loopback);
                };
                if !rustix::process::geteuid().is_root() {
                    tracing::warn!(
                        "LOCAL_NETWORK=isolated needs Paygress to run as root (per-lease network namespaces): leases get NO network (loopback only) instead"
                    );
                    return Ok(Self::Loopback);
                }
                let resolv_conf = state_dir.join("resolv.conf");
                crate::store::write_atomic(
                    &resolv_conf,
                    format!("# Written by Paygress: pasta forwards DNS to the host's resolver.\nnameserver {NS_DNS}\n").as_bytes(),
                )?;
                // Readable by the lease users.
                std::fs::set_permissions(
                    &resolv_conf,
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                )
                .map_err(|e| LocalError::io("opening up", &resolv_conf, e))?;
                let mut blocked: Vec<String> = BLOCKED.iter().map(|s| (*s).to_owned()).collect();
                for c in host_ipv4_cidrs(&ip) {
                    if !blocked.contains(&c) {
                        blocked.push(c);
                    }
                }
                Ok(Self::Pasta(Pasta {
                    pasta,
                    ip,
                    prefix: format!(
                        "paygress-{:08x}-",
                        fnv1a(state_dir.as_os_str().as_encoded_bytes())
                    ),
                    resolv_conf,
                    blocked,
                    spares: Arc::default(),
                }))
            }
        }
    }
}

impl Pasta {
    /// A fresh namespace name of this data directory.
    fn fresh_name(&self) -> String {
        let n = self.spares.next.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", self.prefix)
    }

    /// `/run/netns/<name>`.
    pub(crate) fn ns_path(&self, name: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(name)
    }

    /// The resolver file bound over the sandbox's `/etc/resolv.conf`.
    pub(crate) fn resolv_conf(&self) -> &Path {
        &self.resolv_conf
    }

    /// A namespace for a new lease: a spare if one is ready, else one set up now.
    /// Either way a replacement spare is set up in the background. Returns its name.
    pub(crate) async fn take(&self) -> Result<String, LocalError> {
        let spare = self.spares.state.lock().ok().and_then(|mut s| {
            if s.ready.is_empty() {
                None
            } else {
                Some(s.ready.remove(0))
            }
        });
        let name = match spare {
            Some(name) if self.ns_path(&name).exists() => name,
            _ => {
                let name = self.fresh_name();
                self.create(&name).await?;
                name
            }
        };
        self.refill();
        Ok(name)
    }

    /// Keeps `want` namespaces set up ahead of time from now on (none once
    /// [`close`](Self::close)d).
    pub(crate) fn prepare(&self, want: usize) {
        if let Ok(mut s) = self.spares.state.lock() {
            s.want = want;
        }
        self.refill();
    }

    /// Starts setting up spares in the background, one after the other, until `want`
    /// are ready (unless that is running already). Stops at the first failure: the
    /// next [`take`](Self::take) sets one up itself and reports the error.
    fn refill(&self) {
        let start = self.spares.state.lock().is_ok_and(|mut s| {
            let start = !s.closed && !s.filling && s.ready.len() < s.want;
            s.filling |= start;
            start
        });
        if !start {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let name = this.fresh_name();
                // Deletes the namespace unless it joins the spares, also when this task
                // is dropped half-way (the runtime shutting down).
                let mut unclaimed = Unclaimed(&this, Some(name.clone()));
                let made = this.create(&name).await;
                let more = match this.spares.state.lock() {
                    Ok(mut s) => {
                        let keep = made.is_ok() && !s.closed;
                        if keep {
                            s.ready.push(name);
                            unclaimed.1 = None;
                        }
                        let more = keep && s.ready.len() < s.want;
                        s.filling = more;
                        more
                    }
                    Err(_) => false,
                };
                drop(unclaimed);
                if let Err(e) = made {
                    tracing::warn!(error = %e, "could not set up a spare lease network namespace");
                }
                if !more {
                    return;
                }
            }
        });
    }

    /// Deletes the spares and sets up no more. Synchronous, for `Drop`.
    pub(crate) fn close(&self) {
        let ready = match self.spares.state.lock() {
            Ok(mut s) => {
                s.closed = true;
                std::mem::take(&mut s.ready)
            }
            Err(_) => Vec::new(),
        };
        for name in ready {
            self.destroy(&name);
        }
    }

    /// Names of the spares ready now.
    #[cfg(test)]
    fn ready(&self) -> Vec<String> {
        self.spares
            .state
            .lock()
            .map(|s| s.ready.clone())
            .unwrap_or_default()
    }

    /// Creates (or re-creates) namespace `name`, its routes and its pasta.
    pub(crate) async fn create(&self, name: &str) -> Result<(), LocalError> {
        self.destroy_async(name).await;
        run(&self.ip, &["netns", "add", name], None).await?;
        let routes: String = self
            .blocked
            .iter()
            .map(|c| format!("route replace prohibit {c}\n"))
            .collect();
        let setup = async {
            run(&self.ip, &["-n", name, "link", "set", "lo", "up"], None).await?;
            run(&self.ip, &["-n", name, "-batch", "-"], Some(routes)).await?;
            // pasta daemonizes once the namespace is configured. It stays root (it must
            // keep joining a root-owned namespace), confined by its own seccomp filter
            // and capability drop.
            run(
                &self.pasta,
                &[
                    "--netns",
                    name,
                    "--runas",
                    "0:0",
                    "--config-net",
                    "-4",
                    "-q",
                    "--no-map-gw",
                    "-t",
                    "none",
                    "-u",
                    "none",
                    "-T",
                    "none",
                    "-U",
                    "none",
                    "-a",
                    NS_ADDR,
                    "-n",
                    NS_PREFIX_LEN,
                    "-g",
                    NS_GATEWAY,
                    "--dns-forward",
                    NS_DNS,
                ],
                None,
            )
            .await
        };
        if let Err(e) = setup.await {
            self.destroy_async(name).await;
            return Err(e);
        }
        Ok(())
    }

    async fn destroy_async(&self, name: &str) {
        if self.ns_path(name).exists() {
            let _ = run(&self.ip, &["netns", "del", name], None).await;
        }
    }

    /// Deletes namespace `name` (its pasta quits). Synchronous, for `Drop`.
    pub(crate) fn destroy(&self, name: &str) {
        if !self.ns_path(name).exists() {
            return;
        }
        let r = std::process::Command::new(&self.ip)
            .args(["netns", "del", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(r, Ok(s) if s.success()) {
            tracing::warn!(
                namespace = name,
                "could not delete a lease network namespace"
            );
        }
    }

    /// Deletes namespaces of this data directory left by a crashed Paygress.
    pub(crate) async fn remove_stale(&self) {
        let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&self.prefix) {
                tracing::info!(namespace = %name, "removing a stale lease network namespace");
                self.destroy_async(&name).await;
            }
        }
    }

    /// A configuration for launch-line tests (nothing is run).
    #[cfg(test)]
    pub(crate) fn for_tests(state_dir: &str) -> Self {
        Self {
            pasta: "/usr/bin/pasta".into(),
            ip: "/usr/sbin/ip".into(),
            prefix: "paygress-0000-".into(),
            resolv_conf: Path::new(state_dir).join("resolv.conf"),
            blocked: Vec::new(),
            spares: Arc::default(),
        }
    }

    /// The namespace the start-up probe runs in.
    pub(crate) fn probe_name(&self) -> String {
        format!("{}probe", self.prefix)
    }
}

/// A namespace being set up as a spare: deleted on drop unless claimed (`.1` taken).
struct Unclaimed<'a>(&'a Pasta, Option<String>);

impl Drop for Unclaimed<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.1.take() {
            self.0.destroy(&name);
        }
    }
}

/// Runs `program args`, feeding `stdin`; fails with its stderr unless it exits 0.
async fn run(program: &Path, args: &[&str], stdin: Option<String>) -> Result<(), LocalError> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| LocalError::io("running", program, e))?;
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes())
            .await
            .map_err(|e| LocalError::io("writing to", program, e))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| LocalError::io("running", program, e))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // pasta repeats every message with "Failed to send … to syslog" in containers.
        let msg: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("Failed to send"))
            .collect();
        Err(LocalError::Network(format!(
            "{} {}: {}: {}",
            program.display(),
            args.first().copied().unwrap_or_default(),
            out.status,
            msg.join("; ")
        )))
    }
}

/// 32-bit FNV-1a: a short, stable tag for the data directory in namespace names.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests;
