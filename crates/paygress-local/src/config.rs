//! Configuration of the local backend.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::LocalError;

/// How lease commands are isolated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Every command runs inside bubblewrap (`bwrap`): private home, read-only system
    /// directories, private `/tmp`, own PID namespace. The production mode.
    #[default]
    Bubblewrap,
    /// Commands run directly on the host as the Paygress user, in their own process
    /// group. For development only: a buyer can read whatever that user can.
    Unsandboxed,
}

impl FromStr for SandboxMode {
    type Err = LocalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bubblewrap" | "bwrap" => Ok(Self::Bubblewrap),
            "unsandboxed" | "none" => Ok(Self::Unsandboxed),
            other => Err(LocalError::Config(format!(
                "LOCAL_SANDBOX={other:?}: expected \"bubblewrap\" or \"unsandboxed\""
            ))),
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bubblewrap => "bubblewrap",
            Self::Unsandboxed => "unsandboxed",
        })
    }
}

/// What network a lease's commands see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Each lease gets its own network namespace with user-mode internet egress
    /// (`pasta`, from Debian's `passt`) and no route to the host's loopback, the host's
    /// own addresses and subnets, private and link-local ranges (cloud metadata
    /// `169.254.169.254`). Needs Paygress to run as root with `pasta` and `ip`
    /// installed; otherwise falls back to [`None`](Self::None) with a warning.
    #[default]
    Isolated,
    /// The host's network namespace, unfiltered: a lease reaches everything the host
    /// reaches, including services on its loopback. For trusted buyers only.
    Host,
    /// A private network namespace with only a loopback interface (no network at all).
    None,
}

impl FromStr for NetworkMode {
    type Err = LocalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "isolated" | "pasta" => Ok(Self::Isolated),
            "host" => Ok(Self::Host),
            "none" | "loopback" => Ok(Self::None),
            other => Err(LocalError::Config(format!(
                "LOCAL_NETWORK={other:?}: expected \"isolated\", \"host\" or \"none\""
            ))),
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Isolated => "isolated",
            Self::Host => "host",
            Self::None => "none",
        })
    }
}

/// An inclusive range of user ids, parsed from `"2000000-2000999"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    /// First uid.
    pub start: u32,
    /// Last uid (inclusive).
    pub end: u32,
}

impl UidRange {
    /// A range from `start` to `end` inclusive; never includes root.
    pub fn new(start: u32, end: u32) -> Result<Self, LocalError> {
        if start == 0 || end < start || end == u32::MAX {
            return Err(LocalError::Config(format!(
                "uid range {start}-{end}: expected 1 <= start <= end < 4294967295"
            )));
        }
        Ok(Self { start, end })
    }

    /// Every uid of the range, in order.
    pub fn uids(&self) -> impl Iterator<Item = u32> + use<> {
        self.start..=self.end
    }
}

impl Default for UidRange {
    /// `2000000-2000999`: far above login users, systemd's dynamic users and the
    /// usual `/etc/subuid` allocations.
    fn default() -> Self {
        Self {
            start: 2_000_000,
            end: 2_000_999,
        }
    }
}

impl FromStr for UidRange {
    type Err = LocalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            LocalError::Config(format!(
                "uid range {s:?}: expected e.g. \"2000000-2000999\""
            ))
        };
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let start = a.trim().parse::<u32>().map_err(|_| bad())?;
        let end = b.trim().parse::<u32>().map_err(|_| bad())?;
        Self::new(start, end)
    }
}

/// Limits on the SSH connections of the local backend's leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections to one lease that have not authenticated yet. A new connection
    /// beyond it pushes out the oldest unauthenticated one from the address holding
    /// the most (so a flood of idle connections cannot lock the buyer out).
    pub unauthenticated_per_lease: usize,
    /// Authenticated connections per lease; further logins are refused.
    pub sessions_per_lease: usize,
    /// Channels (sessions, commands) per connection.
    pub channels_per_connection: usize,
    /// Connections of all leases together; further ones are closed at once.
    pub total: usize,
    /// Time from accepting a connection to a successful login; then it is closed.
    pub auth_timeout: Duration,
    /// Client input (stdin) buffered per connection before the server stops reading
    /// from it (backpressure).
    pub input_buffer_bytes: usize,
}

impl Default for ConnectionLimits {
    /// 32 unauthenticated and 16 authenticated connections per lease, 10 channels per
    /// connection, 1024 connections in total, 30 s to log in, 1 MiB of buffered input.
    fn default() -> Self {
        Self {
            unauthenticated_per_lease: 32,
            sessions_per_lease: 16,
            channels_per_connection: 10,
            total: 1024,
            auth_timeout: Duration::from_secs(30),
            input_buffer_bytes: 1024 * 1024,
        }
    }
}

/// An inclusive range of TCP ports, parsed from `"2300-2399"` (or a single `"2300"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// A range from `start` to `end` inclusive.
    pub fn new(start: u16, end: u16) -> Result<Self, LocalError> {
        if start == 0 || end < start {
            return Err(LocalError::Config(format!(
                "port range {start}-{end}: expected 1 <= start <= end"
            )));
        }
        Ok(Self { start, end })
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    /// Every port of the range, in order.
    pub fn ports(&self) -> impl Iterator<Item = u16> + use<> {
        self.start..=self.end
    }
}

impl Default for PortRange {
    /// `2300-2399`.
    fn default() -> Self {
        Self {
            start: 2300,
            end: 2399,
        }
    }
}

impl FromStr for PortRange {
    type Err = LocalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LocalError::Config(format!("port range {s:?}: expected e.g. \"2300-2399\""));
        let (a, b) = match s.trim().split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let start = a.parse::<u16>().map_err(|_| bad())?;
        let end = b.parse::<u16>().map_err(|_| bad())?;
        Self::new(start, end)
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Everything [`LocalBackend::start`](crate::LocalBackend::start) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Paygress' data directory (`PAYGRESS_DATA_DIR`); the backend keeps its state in
    /// `<data_dir>/local/` (leases, host key, homes).
    pub data_dir: PathBuf,
    /// Ports lease SSH servers listen on (`LOCAL_PORT_RANGE`).
    pub port_range: PortRange,
    /// Address the SSH servers bind (`BIND_HOST`, default `127.0.0.1`).
    pub bind_host: String,
    /// Isolation of lease commands (`LOCAL_SANDBOX`, default bubblewrap).
    pub sandbox: SandboxMode,
    /// The network leases see (`LOCAL_NETWORK`, default isolated). Applies to the
    /// bubblewrap sandbox only: unsandboxed commands always share the host's network.
    pub network: NetworkMode,
    /// Connection limits of the SSH servers (not read from the environment).
    pub connections: ConnectionLimits,
    /// When Paygress runs as root: each lease's commands run as their own uid (and
    /// gid) from this range (`LOCAL_UID_RANGE`, default `2000000-2000999`), so the
    /// per-uid process limit and file ownership are per lease.
    pub uid_range: UidRange,
    /// Size of each command's private `/tmp` (a tmpfs, counted in memory) in MiB
    /// (`LOCAL_TMP_SIZE_MIB`, default 256).
    pub tmp_size_mib: u64,
    /// Largest file a lease command may write, in MiB (`RLIMIT_FSIZE`;
    /// `LOCAL_MAX_FILE_MIB`, default 4096).
    pub max_file_mib: u64,
    /// When set and Paygress runs as root: each home is its own ext4 image of this many
    /// MiB (sparse, loop-mounted), so a lease cannot fill the disk holding the
    /// journal and wallet (`LOCAL_HOME_SIZE_MIB`, default unset: homes share the data
    /// directory's filesystem). Needs `mkfs.ext4`, `mount` and loop devices.
    pub home_size_mib: Option<u64>,
    /// New leases are refused while the filesystem holding the data directory has
    /// less free space than this, in MiB (`LOCAL_MIN_FREE_MIB`, default 2048).
    pub min_free_mib: u64,
    /// The top-up command shown inside a lease (message of the day, lease file,
    /// warnings); `{pod}` stands for the lease name. Default
    /// [`DEFAULT_TOP_UP_COMMAND`](crate::DEFAULT_TOP_UP_COMMAND); the node names the
    /// service in it.
    pub top_up_command: String,
    /// How long before the expiry a warning is written to the lease's open terminals
    /// (default 10 minutes and 1 minute; not read from the environment).
    pub expiry_warnings: Vec<Duration>,
    /// How long a lease is kept stopped after its paid end (`GRACE_MINUTES`, default
    /// 0): at expiry its logins stop and its processes are killed but its home is kept;
    /// an extension within this time starts it again; after it the lease is removed.
    /// Zero: removed at expiry. The service's grace must be the same.
    pub grace: Duration,
    /// With `LOCAL_NETWORK=isolated`: how many lease network namespaces (each with its
    /// pasta process) are kept set up ahead of time, so a new lease does not wait for
    /// one (default 1; 0: each is set up when its lease is created; not read from the
    /// environment).
    pub spare_networks: usize,
}

impl LocalConfig {
    /// A configuration with the defaults: ports 2300-2399 on 127.0.0.1, bubblewrap.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port_range: PortRange::default(),
            bind_host: "127.0.0.1".to_owned(),
            sandbox: SandboxMode::Bubblewrap,
            network: NetworkMode::Isolated,
            connections: ConnectionLimits::default(),
            uid_range: UidRange::default(),
            tmp_size_mib: 256,
            max_file_mib: 4096,
            min_free_mib: 2048,
            home_size_mib: None,
            top_up_command: crate::DEFAULT_TOP_UP_COMMAND.to_owned(),
            expiry_warnings: vec![Duration::from_secs(600), Duration::from_secs(60)],
            grace: Duration::ZERO,
            spare_networks: 1,
        }
    }

    /// Reads the configuration by variable name through `get` (the binary passes the
    /// settings it read once; tests pass a map): `PAYGRESS_DATA_DIR` (default
    /// [`paygress_core::DEFAULT_DATA_DIR`]), `LOCAL_PORT_RANGE` (default `2300-2399`),
    /// `BIND_HOST` (default `127.0.0.1`), `LOCAL_SANDBOX` (`bubblewrap` | `unsandboxed`,
    /// default `bubblewrap`), `LOCAL_NETWORK` (`isolated` | `host` | `none`, default
    /// `isolated`), `LOCAL_UID_RANGE`, `LOCAL_TMP_SIZE_MIB`, `LOCAL_MAX_FILE_MIB`,
    /// `LOCAL_MIN_FREE_MIB`, `LOCAL_HOME_SIZE_MIB` and `GRACE_MINUTES` (default 0).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, LocalError> {
        let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut config = Self::new(
            nonempty("PAYGRESS_DATA_DIR")
                .unwrap_or_else(|| paygress_core::DEFAULT_DATA_DIR.to_owned()),
        );
        if let Some(r) = nonempty("LOCAL_PORT_RANGE") {
            config.port_range = r.parse()?;
        }
        if let Some(h) = nonempty("BIND_HOST") {
            config.bind_host = h.trim().to_owned();
        }
        if let Some(m) = nonempty("LOCAL_SANDBOX") {
            config.sandbox = m.parse()?;
        }
        if let Some(n) = nonempty("LOCAL_NETWORK") {
            config.network = n.parse()?;
        }
        if let Some(r) = nonempty("LOCAL_UID_RANGE") {
            config.uid_range = r.parse()?;
        }
        let mib = |k: &str| -> Result<Option<u64>, LocalError> {
            nonempty(k)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        LocalError::Config(format!("{k}={v:?}: expected a number of MiB"))
                    })
                })
                .transpose()
        };
        if let Some(v) = mib("LOCAL_TMP_SIZE_MIB")? {
            config.tmp_size_mib = v.max(1);
        }
        if let Some(v) = mib("LOCAL_MAX_FILE_MIB")? {
            config.max_file_mib = v.max(1);
        }
        if let Some(v) = mib("LOCAL_MIN_FREE_MIB")? {
            config.min_free_mib = v;
        }
        if let Some(v) = mib("LOCAL_HOME_SIZE_MIB")? {
            config.home_size_mib = Some(v.max(16));
        }
        if let Some(v) = nonempty("GRACE_MINUTES") {
            let minutes = v.trim().parse::<u64>().map_err(|_| {
                LocalError::Config(format!("GRACE_MINUTES={v:?}: expected a number of minutes"))
            })?;
            config.grace = Duration::from_secs(minutes.saturating_mul(60));
        }
        Ok(config)
    }

    /// `<data_dir>/local`.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("local")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_parses() {
        assert_eq!(
            "2300-2399".parse::<PortRange>().unwrap(),
            PortRange {
                start: 2300,
                end: 2399
            }
        );
        assert_eq!(
            " 22 ".parse::<PortRange>().unwrap(),
            PortRange { start: 22, end: 22 }
        );
        assert!("2399-2300".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("a-b".parse::<PortRange>().is_err());
        assert!("1-70000".parse::<PortRange>().is_err());
    }

    #[test]
    fn from_lookup_reads_every_variable() {
        let c = LocalConfig::from_lookup(|k| match k {
            "PAYGRESS_DATA_DIR" => Some("/var/lib/paygress".into()),
            "LOCAL_PORT_RANGE" => Some("4000-4010".into()),
            "BIND_HOST" => Some("0.0.0.0".into()),
            "LOCAL_SANDBOX" => Some("unsandboxed".into()),
            "LOCAL_NETWORK" => Some("host".into()),
            "LOCAL_UID_RANGE" => Some("5000-5009".into()),
            "LOCAL_TMP_SIZE_MIB" => Some("64".into()),
            "LOCAL_MAX_FILE_MIB" => Some("100".into()),
            "LOCAL_MIN_FREE_MIB" => Some("10".into()),
            "GRACE_MINUTES" => Some("15".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/paygress"));
        assert_eq!(
            c.port_range,
            PortRange {
                start: 4000,
                end: 4010
            }
        );
        assert_eq!(c.bind_host, "0.0.0.0");
        assert_eq!(c.sandbox, SandboxMode::Unsandboxed);
        assert_eq!(c.network, NetworkMode::Host);
        assert_eq!(c.uid_range, UidRange::new(5000, 5009).unwrap());
        assert_eq!(
            (c.tmp_size_mib, c.max_file_mib, c.min_free_mib),
            (64, 100, 10)
        );
        assert_eq!(c.grace, Duration::from_secs(15 * 60));
        assert!("0-10".parse::<UidRange>().is_err());
        assert!("10".parse::<UidRange>().is_err());
        assert_eq!(c.state_dir(), PathBuf::from("/var/lib/paygress/local"));
    }

    #[test]
    fn from_lookup_defaults() {
        let c = LocalConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c.port_range, PortRange::default());
        assert_eq!(c.bind_host, "127.0.0.1");
        assert_eq!(c.sandbox, SandboxMode::Bubblewrap);
        assert_eq!(c.network, NetworkMode::Isolated);
        assert_eq!(c.grace, Duration::ZERO);
        assert_eq!("none".parse::<NetworkMode>().unwrap(), NetworkMode::None);
        assert!("bridge".parse::<NetworkMode>().is_err());
        assert!(
            LocalConfig::from_lookup(|k| (k == "LOCAL_SANDBOX").then(|| "docker".into())).is_err()
        );
    }

    #[test]
    fn exhausted_ranges_name_the_range_they_searched() {
        let ports = PortRange::new(2300, 2301).unwrap();
        let uids = UidRange::new(5000, 5009).unwrap();
        let port_err = LocalError::NoFreePort(ports);
        assert!(matches!(port_err, LocalError::NoFreePort(r) if r == ports));
        assert_eq!(port_err.to_string(), "no free port in 2300-2301");
        assert_eq!(
            LocalError::NoFreeUid(uids).to_string(),
            "no free uid in 5000-5009"
        );
    }
}
