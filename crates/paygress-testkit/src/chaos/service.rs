//! The service process under test: started, killed and restarted on one data directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use super::{ChaosOptions, SATS_PER_HOUR};

/// The service process, restarted on the same data directory.
pub(super) struct Service {
    pub(super) exe: PathBuf,
    pub(super) data_dir: PathBuf,
    pub(super) log: PathBuf,
    pub(super) http: String,
    pub(super) bind: String,
    pub(super) mint: String,
    pub(super) ports: String,
    pub(super) failpoints: String,
    pub(super) seed: u64,
    pub(super) child: Option<Child>,
    pub(super) pid: Arc<AtomicU64>,
    pub(super) starts: u64,
}

impl Service {
    pub(super) async fn start(&mut self, with_failpoints: bool) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.starts += 1;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUN_MODE", "http")
            .env("BIND_ADDR", &self.bind)
            .env("POD_BACKEND", "local")
            .env("LOCAL_SANDBOX", "unsandboxed")
            .env("LOCAL_PORT_RANGE", &self.ports)
            .env("PAYGRESS_DATA_DIR", &self.data_dir)
            .env("WHITELISTED_MINTS", &self.mint)
            .env("PAYMENT_RATE_SATS_PER_HOUR", SATS_PER_HOUR.to_string())
            .env("MIN_POD_DURATION_MINUTES", "1")
            .env("MAX_POD_DURATION_MINUTES", "1")
            .env("SSH_HOST", "127.0.0.1")
            .env("HTTP_RATE_LIMIT_PER_MINUTE", "1000000")
            // Every second of a released lease's time left comes back.
            .env("RELEASE_MIN_CHARGE_MINUTES", "0")
            .env("RUST_LOG", "info,cdk=warn,russh=warn")
            .env(
                "PAYGRESS_FAILPOINTS_SEED",
                (self.seed + self.starts).to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if with_failpoints {
            cmd.env("PAYGRESS_FAILPOINTS", &self.failpoints);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        self.pid
            .store(u64::from(child.id().unwrap_or(0)), Ordering::SeqCst);
        self.child = Some(child);
        Ok(())
    }

    /// Starts the service if it is not running, and waits until it answers.
    pub(super) async fn ensure_up(
        &mut self,
        client: &reqwest::Client,
        with_failpoints: bool,
    ) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let running = match self.child.as_mut() {
                Some(c) => c.try_wait()?.is_none(),
                None => false,
            };
            if !running {
                self.child = None;
                self.start(with_failpoints).await?;
            }
            let health = client
                .get(format!("{}/healthz", self.http))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(health, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the service did not come up; see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
}

/// Sends SIGKILL to `pid` (the `kill` command: the workspace forbids `unsafe`).
pub(super) async fn sigkill(pid: u64) -> bool {
    if pid == 0 {
        return false;
    }
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Service {
    /// The service of a run: its data directory `data_dir`, its log in `work`, paying
    /// at `mint`, on a free 127.0.0.1 port, with every failpoint armed at
    /// `opts.failpoint_probability` (when started with failpoints).
    pub(super) fn new(
        opts: &ChaosOptions,
        work: &Path,
        data_dir: &Path,
        mint: &str,
    ) -> Result<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let ports = (opts.port_base, opts.port_base + 999);
        let failpoints = paygress_core::failpoint::POINTS
            .iter()
            .map(|p| format!("{p}:{}", opts.failpoint_probability))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self {
            exe: opts.paygress.clone(),
            data_dir: data_dir.to_path_buf(),
            log: work.join("service.log"),
            http: format!("http://127.0.0.1:{port}"),
            bind: format!("127.0.0.1:{port}"),
            mint: mint.to_owned(),
            ports: format!("{}-{}", ports.0, ports.1),
            failpoints,
            seed: opts.seed,
            child: None,
            pid: Arc::new(AtomicU64::new(0)),
            starts: 0,
        })
    }
}
