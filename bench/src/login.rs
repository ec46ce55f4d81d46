//! Payment to login (issue 18): a buyer publishes its encrypted spawn request over
//! Nostr to the service on the local backend and logs into the lease with the system
//! `ssh` client (key only). Measured from publishing the request to `ssh … true`
//! exiting 0, with the split at the reply.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use paygress_cashu::testkit::TestMint;
use paygress_core::protocol::{Request, SpawnRequest};
use paygress_core::{DynPodBackend, PodBackend, Reply};
use paygress_local::{LocalBackend, LocalConfig, PortRange, SandboxMode};
use paygress_nostr::nostr_sdk::Keys;
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::{BuyerClient, SendOptions};

use crate::stack::{Stack, tokens};
use crate::stats::Summary;
use crate::timed::Recorder;

/// SSH ports of the bench's leases (away from the dev stack's 2300-2399 and the local
/// backend tests' 24xxx-26xxx); taken ports are skipped.
const PORTS: (u16, u16) = (27300, 27399);

/// Service stages shown for this scenario, in order.
const STAGES: &[&str] = &["service", "mint", "backend", "journal", "reply"];

/// What the scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Login {
    /// Request published → `ssh … true` exited 0.
    pub total: Summary,
    /// Request published → reply received (includes the swap).
    pub to_reply: Summary,
    /// Reply received → `ssh … true` exited 0.
    pub to_login: Summary,
    /// The service's own stages: p50 of one call, calls per run.
    pub stages: Vec<(String, Summary, f64)>,
    /// The relay round trip floor.
    pub relay: Summary,
    /// The swap floor.
    pub swap: Summary,
    /// Sandbox and network mode the backend actually used.
    pub sandbox: String,
    /// Whether every login checked the host key from the reply.
    pub host_key_checked: bool,
    /// `ssh` attempts beyond the first, over all runs.
    pub retries: usize,
    /// The same `ssh … true` (client, options, key) into OpenSSH's own `sshd` on
    /// 127.0.0.1: what a login costs this client against a server that is not ours.
    /// `n` is 0 where `sshd` could not run (not installed, or not root).
    pub sshd: Summary,
}

impl Login {
    /// The goal's bound: relay round trip + swap + 20 ms (p50s); `None` when a floor
    /// was not measured.
    pub fn floor(&self) -> Option<f64> {
        (self.relay.n > 0 && self.swap.n > 0).then_some(self.relay.p50 + self.swap.p50 + 20.0)
    }

    /// The goal row of the report: target, measured, met (`None`: no floor).
    pub fn goal(&self) -> (String, String, Option<bool>) {
        let measured = format!("{:.1} ms", self.total.p50);
        match self.floor() {
            Some(f) => (
                format!("≤ relay round trip + swap + 20 ms = {f:.1} ms"),
                measured,
                Some(self.total.p50 <= f),
            ),
            None => (
                "≤ relay round trip + swap + 20 ms (a floor was not measured)".to_owned(),
                measured,
                None,
            ),
        }
    }

    /// The report's section.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "### Payment to login (Nostr, local backend)\n\n\
             One buyer, sequential runs (one unmeasured warm-up first): the buyer publishes its \
             spawn request (kind 1000, NIP-44, `p`-tagged, as `BuyerClient::spawn` sends it; \
             a fresh token; the public half of an ed25519 key from `ssh-keygen`), waits for the reply, then runs the system `ssh -i KEY -p PORT \
             user@127.0.0.1 true` (key only; host key {}). Sandbox: {}. Each lease is deleted \
             after its run, outside the timings. `ssh` retries: {}.\n",
            if self.host_key_checked {
                "checked against the reply's"
            } else {
                "not in the reply: not checked"
            },
            self.sandbox,
            self.retries
        );
        let _ = writeln!(
            o,
            "| stage | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|"
        );
        for (what, s) in [
            (
                "request published → reply received (includes the swap)",
                self.to_reply,
            ),
            ("reply received → `ssh … true` done", self.to_login),
            ("**payment to login** (published → login done)", self.total),
        ] {
            let _ = writeln!(
                o,
                "| {what} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
                s.n, s.p50, s.p90, s.p99, s.max
            );
        }
        let floor = match self.floor() {
            Some(f) => format!(
                "relay round trip {:.2} ms + swap {:.2} ms + 20 ms (p50s) = **{f:.1} ms**; \
                 p50 ÷ floor = {:.2}×",
                self.relay.p50,
                self.swap.p50,
                self.total.p50 / f
            ),
            None => "not known: the relay round trip or the swap was not measured".to_owned(),
        };
        let sshd = if self.sshd.n > 0 {
            format!(
                "\n\nFor the login part, a comparison rather than a floor: the same `ssh … \
                 true` (client, options, key) into OpenSSH's own `sshd` on 127.0.0.1 as root, \
                 no sandbox (`sshd` re-executes itself for each connection and runs the \
                 command through root's shell, which reads its rc files), n = {}: p50 {:.1} \
                 ms, p90 {:.1} ms, max {:.1} ms; into the lease it took {:.1} ms at p50 \
                 (after the reply)",
                self.sshd.n, self.sshd.p50, self.sshd.p90, self.sshd.max, self.to_login.p50
            )
        } else {
            "\n\nFor the login part: OpenSSH's `sshd` was not measured (not installed, or \
             not root)"
                .to_owned()
        };
        let _ = writeln!(
            o,
            "\nFloor: {floor}.{sshd}.\n\nThe service's own timings per run (p50 of one call, calls \
             per run): {}.\n",
            self.stages
                .iter()
                .map(|(n, s, per)| format!("`{n}` {:.2} ms ({per:.1})", s.p50))
                .collect::<Vec<_>>()
                .join(", ")
        );
        o
    }
}

/// Runs `n` measured payment-to-login runs (plus one warm-up) against `mint` and
/// `relay`; `relay_rt` and `swap` are the floors measured before.
pub async fn payment_to_login(
    mint: &TestMint,
    relay: &TestRelay,
    rec: &Recorder,
    n: usize,
    relay_rt: Summary,
    swap: Summary,
) -> Result<Login> {
    let dir = tempfile::tempdir()?;
    let mut config = LocalConfig::new(dir.path().join("data"));
    config.port_range = PortRange::new(PORTS.0, PORTS.1)?;
    config.sandbox = SandboxMode::Bubblewrap;
    // As `paygress dev` and the local tests: bubblewrap where it works, else unsandboxed.
    let local = Arc::new(LocalBackend::start_with_fallback(config).await?);
    let sandbox = match local.sandbox_mode() {
        SandboxMode::Bubblewrap => format!("bubblewrap, network {}", local.network_mode()),
        SandboxMode::Unsandboxed => "unsandboxed (bubblewrap unavailable here)".to_owned(),
    };
    let key = dir.path().join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "paygress-bench",
            "-f",
        ])
        .arg(&key)
        .output()
        .context("ssh-keygen")?;
    ensure!(out.status.success(), "ssh-keygen failed: {out:?}");
    let public_key = std::fs::read_to_string(key.with_extension("pub"))?
        .trim()
        .to_owned();

    let backend: DynPodBackend = local.clone();
    let stack = Stack::start(mint, backend, Some(relay), rec).await?;
    let service = stack.nostr_key.context("nostr not started")?;
    let buyer = BuyerClient::connect(Keys::generate(), &[relay.url()], service)
        .await?
        .with_timeout(Duration::from_secs(60));
    let toks = tokens(mint, n + 1, 2).await?;

    let mut result = Login {
        relay: relay_rt,
        swap,
        sandbox,
        host_key_checked: true,
        ..Login::default()
    };
    let (mut to_reply, mut to_login, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for (i, token) in toks.into_iter().enumerate() {
        if i == 1 {
            rec.take();
        }
        let request = Request::Spawn(
            SpawnRequest::new(token)
                .with_ssh_public_key(public_key.clone())
                .with_password_login(false),
        );
        let prepared = buyer.prepare(&request, SendOptions::default()).await?;
        let t0 = Instant::now();
        let reply = buyer.send_and_wait(&prepared).await?;
        let t1 = Instant::now();
        let access = match reply {
            Reply::AccessDetails(a) => a,
            other => bail!("spawn over Nostr answered {other:?}"),
        };
        ensure!(!access.password_login, "the lease accepts its password");
        let checked = !access.host_keys.is_empty();
        let port = access.node_port.unwrap_or(access.ssh_port);
        let host_keys: Vec<&str> = access
            .host_keys
            .iter()
            .map(|k| k.public_key.as_str())
            .collect();
        let retries = ssh_true(
            &format!("{}@{}", access.ssh_username, access.ssh_host),
            port,
            &host_keys,
            &key,
            &dir.path().join(format!("known_hosts{i}")),
        )
        .await
        .with_context(|| format!("logging into {}", access.pod_name))?;
        let t2 = Instant::now();
        local
            .delete(&access.pod_name)
            .await
            .context("deleting the lease")?;
        if i == 0 {
            continue;
        }
        result.host_key_checked &= checked;
        result.retries += retries;
        to_reply.push(t1 - t0);
        to_login.push(t2 - t1);
        total.push(t2 - t0);
        eprintln!(
            "bench:   run {i}: {:.1} ms ({:.1} + {:.1})",
            (t2 - t0).as_secs_f64() * 1e3,
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3
        );
    }
    let mut recorded = rec.take();
    result.stages = STAGES
        .iter()
        .filter_map(|name| {
            let v = recorded.remove(name)?;
            Some((name.to_string(), Summary::of(&v), v.len() as f64 / n as f64))
        })
        .collect();
    result.to_reply = Summary::of(&to_reply);
    result.to_login = Summary::of(&to_login);
    result.total = Summary::of(&total);
    buyer.shutdown().await;
    stack.shutdown().await;
    drop(stack);
    drop(local);
    result.sshd = match floor_sshd(dir.path(), &key, &public_key, n).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench: OpenSSH sshd floor not measured: {e:#}");
            Summary::default()
        }
    };
    Ok(result)
}

/// `n` logins (after one warm-up) with the same client, options and `key` into
/// OpenSSH's own `sshd`, started on a free port of 127.0.0.1 with a fresh host key
/// (checked strictly) and `public_key` authorised. An empty summary where `sshd` is not
/// installed or cannot run (it needs root for its privilege separation).
async fn floor_sshd(dir: &Path, key: &Path, public_key: &str, n: usize) -> Result<Summary> {
    let sshd = Path::new("/usr/sbin/sshd");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !sshd.exists() || !root {
        eprintln!("bench: OpenSSH sshd floor skipped: needs /usr/sbin/sshd and root");
        return Ok(Summary::default());
    }
    // Privilege separation's empty directory (the package's service creates it at boot).
    std::fs::create_dir_all("/run/sshd")?;
    let host_key = dir.join("sshd_host_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .output()
        .context("ssh-keygen")?;
    ensure!(out.status.success(), "ssh-keygen failed: {out:?}");
    let authorized = dir.join("sshd_authorized_keys");
    std::fs::write(&authorized, format!("{public_key}\n"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPidFile none\nPrintMotd no\nPrintLastLog no\nUseDNS no\n",
            host_key.display(),
            authorized.display()
        ),
    )?;
    let mut server = tokio::process::Command::new(sshd)
        .arg("-D")
        .arg("-f")
        .arg(&config)
        .args(["-E"])
        .arg(dir.join("sshd.log"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting sshd")?;
    let host_public = std::fs::read_to_string(host_key.with_extension("pub"))?;
    let host_public = host_public.trim();
    let user = "root@127.0.0.1";
    let known_hosts = dir.join("sshd_known_hosts");
    let mut sample = Vec::new();
    for i in 0..=n {
        let t = Instant::now();
        ssh_true(user, port, &[host_public], key, &known_hosts).await?;
        if i > 0 {
            sample.push(t.elapsed());
        }
    }
    server.kill().await?;
    Ok(Summary::of(&sample))
}

/// `ssh … true` as `user_at_host` on `port` with `key`, checking the host key when
/// `host_keys` names any (written to `known_hosts`); retried for up to 10 s. Returns the
/// attempts beyond the first.
async fn ssh_true(
    user_at_host: &str,
    port: u16,
    host_keys: &[&str],
    key: &Path,
    known_hosts: &Path,
) -> Result<usize> {
    let host = user_at_host
        .rsplit_once('@')
        .map_or(user_at_host, |(_, h)| h);
    let strict = if host_keys.is_empty() {
        "StrictHostKeyChecking=no"
    } else {
        let lines: String = host_keys
            .iter()
            .map(|k| format!("[{host}]:{port} {k}\n"))
            .collect();
        std::fs::write(known_hosts, lines)?;
        "StrictHostKeyChecking=yes"
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut retries = 0;
    loop {
        let out = tokio::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .args(["-o", strict, "-o"])
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "UpdateHostKeys=no",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "PreferredAuthentications=publickey",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=20",
                "-p",
            ])
            .arg(port.to_string())
            .arg(user_at_host)
            .arg("true")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running ssh")?;
        if out.status.success() {
            return Ok(retries);
        }
        if Instant::now() >= deadline {
            bail!(
                "ssh to {user_at_host} on port {port} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        retries += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
