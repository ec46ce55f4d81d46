//! Shared by the operator tests: the real `paygress serve` binary on the local backend
//! against an in-process mint, its log, and reading the Prometheus text format.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_core::CashuToken;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A token of `sat` from the test mint.
pub async fn token(mint: &TestMint, sat: u64, format: TokenFormat) -> CashuToken {
    mint.mint_token(sat, format).await.expect("mint a token")
}

/// The value of the sample `name` whose labels include every one of `labels`
/// (`name` alone matches an unlabelled sample too).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A running `paygress serve`.
pub struct Service {
    pub child: tokio::process::Child,
    pub http_port: u16,
    pub data: tempfile::TempDir,
    pub log_path: PathBuf,
}

impl Service {
    /// Starts `paygress serve` (local backend, unsandboxed, ports `ports`) with `env`
    /// on top, and waits until `/healthz` answers.
    pub async fn start(mint: &TestMint, env: &[(&str, &str)], ports: &str) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        Self::start_in(mint, env, ports, data).await
    }

    /// Like [`Service::start`] with the data directory `data` (kept across restarts).
    pub async fn start_in(
        mint: &TestMint,
        env: &[(&str, &str)],
        ports: &str,
        data: tempfile::TempDir,
    ) -> Self {
        let http_port = free_port();
        let log_path = data.path().join(format!("service-{http_port}.log"));
        let log_file = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_paygress"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUN_MODE", "http")
            .env("BIND_ADDR", format!("127.0.0.1:{http_port}"))
            .env("POD_BACKEND", "local")
            .env("PAYGRESS_DATA_DIR", data.path().join("state"))
            .env("WHITELISTED_MINTS", mint.url().to_string())
            .env("NOSTR_RELAYS", "")
            .env("SSH_HOST", "127.0.0.1")
            .env("LOCAL_PORT_RANGE", ports)
            .env("LOCAL_SANDBOX", "unsandboxed")
            .env("HTTP_RATE_LIMIT_PER_MINUTE", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("paygress serve starts");
        let mut service = Self {
            child,
            http_port,
            data,
            log_path,
        };
        service.wait_healthy().await;
        service
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.data.path().join("state")
    }

    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.base())).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service never became healthy; log:\n{}",
                tail(&self.log_path)
            );
            assert!(
                self.child.try_wait().expect("wait").is_none(),
                "the service exited; log:\n{}",
                tail(&self.log_path)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("exits within a minute of SIGTERM")
            .expect("wait")
    }

    /// Stops the service (SIGTERM) and returns its log.
    pub async fn stop(mut self) -> String {
        self.terminate().await;
        std::fs::read_to_string(&self.log_path).expect("log")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// The last 60 lines of a file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
