//! The local backend against the system OpenSSH client, in a bubblewrap sandbox.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use jiff::{SignedDuration, Timestamp};
use paygress_core::contract;
use paygress_core::ports::{Extension, PodBackend};
use paygress_local::{LocalBackend, LocalConfig, LocalError, PortRange, SandboxMode};

const BW: SandboxMode = SandboxMode::Bubblewrap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meets_the_backend_contract() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24100, BW).await;
    // One process per data directory.
    let mut second = LocalConfig::new(dir.path());
    second.port_range = PortRange::new(24100, 24109).unwrap();
    assert!(matches!(
        LocalBackend::start(second).await,
        Err(LocalError::Locked(_))
    ));
    contract::run_all(&b).await;
    assert!(
        b.list().await.unwrap().is_empty(),
        "contract cleans up after itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_returns_output_stderr_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24110, BW).await;
    let spec = spec_for(300);
    let p = b.create(&spec).await.unwrap();
    let port = p.node_port.unwrap();
    assert!((24110..=24119).contains(&port));
    let pw = spec.password.expose();

    let out = ssh(port, "alice", pw, &[], "echo hello").await;
    assert_eq!(out.stdout, "hello\n", "{out:?}");
    assert_eq!(out.code, Some(0));

    let out = ssh(port, "alice", pw, &[], "echo to-stderr >&2; exit 7").await;
    assert_eq!(out.code, Some(7), "{out:?}");
    assert!(out.stderr.contains("to-stderr"), "{out:?}");
    assert_eq!(out.stdout, "");

    let out = ssh_stdin(port, "alice", pw, &[], "tr a-z A-Z", "shout\n").await;
    assert_eq!(
        out.stdout, "SHOUT\n",
        "stdin is forwarded and EOF ends it: {out:?}"
    );

    // More output than one SSH window (2 MiB): flow control loses nothing.
    let out = ssh(port, "alice", pw, &[], "seq 1 500000").await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 500_000);
    assert_eq!(lines.last(), Some(&"500000"));
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| *l == (i + 1).to_string())
    );

    // Tier rlimits: address space = 1024 MiB (in KiB), processes, open files; the
    // file size (4096 MiB, in KiB). Hard limits too: the lease cannot raise them.
    let out = ssh(
        port,
        "alice",
        pw,
        &[],
        "echo $USER $HOME; pwd; ulimit -v; ulimit -u; ulimit -n; \
         ulimit -Hv; ulimit -Hu; ulimit -Hn; ulimit -Hf; \
         (ulimit -v unlimited) 2>/dev/null && echo raised-v; \
         (ulimit -n 100000) 2>/dev/null && echo raised-n",
    )
    .await;
    assert_eq!(
        out.stdout,
        "alice /home/alice\n/home/alice\n1048576\n256\n4096\n1048576\n256\n4096\n4194304\n",
        "{out:?}"
    );
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24120, BW).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();

    let out = ssh(port, "alice", "not-the-password", &[], "echo hello").await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains("hello"));

    let out = ssh(port, "bob", spec.password.expose(), &[], "echo hello").await;
    assert_ne!(out.code, Some(0), "other usernames are refused: {out:?}");
    assert!(!out.stdout.contains("hello"));

    // The right pair still works afterwards.
    let out = ssh(port, "alice", spec.password.expose(), &[], "echo hello").await;
    assert_eq!(out.stdout, "hello\n", "{out:?}");
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_exec_and_interactive_shell() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24130, BW).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose();

    // bubblewrap mounts its own devpts and binds the session's terminal at
    // /dev/console: check that it is a pseudo-terminal slave (major 136).
    let out = ssh(
        port,
        "alice",
        pw,
        &["-tt"],
        "tty; stat -L -c %t $(tty); test -t 0 && test -t 1 && echo both-tty; stty size",
    )
    .await;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert!(
        matches!(lines.first(), Some(t) if t.starts_with("/dev/pts/") || *t == "/dev/console"),
        "{out:?}"
    );
    assert_eq!(lines.get(1), Some(&"88"), "a PTY (major 0x88): {out:?}");
    assert_eq!(lines.get(2), Some(&"both-tty"), "{out:?}");
    assert_eq!(
        lines.get(3),
        Some(&"24 80"),
        "default size without a local terminal: {out:?}"
    );
    assert_eq!(out.code, Some(0));

    let out = ssh(port, "alice", pw, &["-tt"], "exit 3").await;
    assert_eq!(out.code, Some(3), "exit code over a PTY: {out:?}");

    // A login shell (no command) reading from the PTY.
    let out = ssh_stdin(
        port,
        "alice",
        pw,
        &["-tt"],
        "",
        "echo \"user=$USER\"; tty; echo \"limits=$(ulimit -Hv)/$(ulimit -n)\"; exit 0\n",
    )
    .await;
    assert!(out.stdout.contains("user=alice"), "{out:?}");
    // The tier's limits hold in an interactive login shell too.
    assert!(out.stdout.contains("limits=1048576/4096"), "{out:?}");
    assert!(
        out.stdout.contains("/dev/console") || out.stdout.contains("/dev/pts/"),
        "{out:?}"
    );
    assert!(out.stdout.contains("logout"), "a login shell: {out:?}");
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_hides_the_host_and_keeps_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24140, BW).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose();

    // A file in the host's /tmp is not visible, and one written in the sandbox's /tmp
    // does not appear on the host.
    let marker = format!("paygress-local-test-{}", unique_number());
    std::fs::write(std::env::temp_dir().join(&marker), b"host").unwrap();
    let cmd = format!(
        "test -e /tmp/{marker} && echo host-tmp-visible; echo sandbox > /tmp/{marker}-in; \
         ls -A /root 2>/dev/null | head -1; ls /home; echo x > /usr/paygress-test 2>/dev/null && echo usr-writable; \
         cat /etc/shadow >/dev/null 2>&1 && echo shadow-readable; \
         echo home-file > ~/notes.txt; echo pid1=$(cat /proc/1/comm); id -u"
    );
    let out = ssh(port, "alice", pw, &[], &cmd).await;
    let uid = if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
    {
        // Paygress as root: commands drop to the lease's own uid.
        let uid = b.lease_uid(&spec.id).await.expect("a lease uid as root");
        assert!((2_000_000..=2_000_999).contains(&uid));
        uid.to_string()
    } else {
        String::from_utf8_lossy(
            &std::process::Command::new("id")
                .arg("-u")
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_owned()
    };
    assert_eq!(out.stdout, format!("alice\npid1=bwrap\n{uid}\n"), "{out:?}");
    assert!(
        !std::env::temp_dir().join(format!("{marker}-in")).exists(),
        "private /tmp"
    );
    std::fs::remove_file(std::env::temp_dir().join(&marker)).unwrap();

    // The home persists between sessions and lives in the lease's directory.
    let out = ssh(port, "alice", pw, &[], "cat ~/notes.txt").await;
    assert_eq!(out.stdout, "home-file\n");
    assert_eq!(
        std::fs::read_to_string(b.home_dir(&spec.id).join("notes.txt")).unwrap(),
        "home-file\n"
    );
    b.delete(&spec.id).await.unwrap();
    assert!(!b.home_dir(&spec.id).exists(), "delete removes the home");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_login() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let other = dir.path().join("other");
    for k in [&key, &other] {
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(k)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let b = backend(dir.path(), 24150, BW).await;
    let mut spec = spec_for(300);
    spec.ssh_public_key = Some(std::fs::read_to_string(key.with_extension("pub")).unwrap());
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let run = |k: std::path::PathBuf| async move {
        tokio::process::Command::new("ssh")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args([
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "PreferredAuthentications=publickey", "-i"])
            .arg(k)
            .args(["-p", &port.to_string(), "alice@127.0.0.1", "echo key-ok"])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    };
    let ok = run(key.clone()).await;
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "key-ok\n", "{ok:?}");
    let refused = run(other.clone()).await;
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_refuses_logins_and_kills_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24160, BW).await;
    let spec = spec_for(6);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose().to_owned();

    // A long-running command, plus one started in the background of its shell.
    let n = unique_number().to_string();
    let m = (unique_number() + 1).to_string();
    let mut client = ssh_background(port, "alice", &pw, &format!("sleep {m} & sleep {n}"));
    assert!(
        eventually(Duration::from_secs(30), async || {
            !pids_with_cmdline(&["sleep", &n]).is_empty()
                && !pids_with_cmdline(&["sleep", &m]).is_empty()
        })
        .await,
        "the lease's sleeps started"
    );
    assert!(!b.processes(&spec.id).await.is_empty());

    // Wait for the paid second to pass (a liveness deadline, not a speed assertion).
    let expired = eventually(Duration::from_secs(60), async || {
        Timestamp::now() >= spec.expires_at && b.get(&spec.id).await.unwrap().is_none()
    })
    .await;
    assert!(expired, "the lease is removed after its expiry");
    assert!(
        eventually(Duration::from_secs(30), async || {
            pids_with_cmdline(&["sleep", &n]).is_empty()
                && pids_with_cmdline(&["sleep", &m]).is_empty()
        })
        .await,
        "no process of the lease is left"
    );
    // The client was disconnected.
    let status = tokio::time::timeout(Duration::from_secs(30), client.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    // New logins are refused (the listener is closed).
    let out = ssh(port, "alice", &pw, &[], "echo hello").await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains("hello"));
    let home = b.home_dir(&spec.id);
    assert!(
        eventually(Duration::from_secs(10), async || !home.exists()).await,
        "home removed: {:?}",
        std::fs::read_dir(&home).map(|d| d.map(|e| e.map(|e| e.path())).collect::<Vec<_>>())
    );
    // Persisted state forgets it.
    let stored = std::fs::read_to_string(dir.path().join("local/leases.json")).unwrap();
    assert!(!stored.contains(spec.id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_moves_the_expiry_and_delete_is_immediate() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24170, BW).await;
    let spec = spec_for(3);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose();
    let later = Timestamp::now()
        .checked_add(SignedDuration::from_mins(5))
        .unwrap();
    b.extend(
        &spec.id,
        &Extension {
            expires_at: later,
            paid_msat: spec.paid_msat + 1,
        },
    )
    .await
    .unwrap();
    // Past the original expiry, the lease is still there and logins work.
    let past = spec
        .expires_at
        .checked_add(SignedDuration::from_secs(1))
        .unwrap();
    tokio::time::sleep(Timestamp::now().duration_until(past).unsigned_abs()).await;
    assert!(Timestamp::now() > spec.expires_at);
    assert!(b.get(&spec.id).await.unwrap().is_some());
    let out = ssh(port, "alice", pw, &[], "echo still-here").await;
    assert_eq!(out.stdout, "still-here\n", "{out:?}");

    b.delete(&spec.id).await.unwrap();
    let out = ssh(port, "alice", pw, &[], "echo hello").await;
    assert_ne!(out.code, Some(0), "deleted lease refuses logins: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_live_leases_and_drops_expired_ones() {
    let dir = tempfile::tempdir().unwrap();
    let live = spec_for(300);
    let short = spec_for(3);
    let (port, short_home) = {
        let b = backend(dir.path(), 24180, BW).await;
        let port = b.create(&live).await.unwrap().node_port.unwrap();
        b.create(&short).await.unwrap();
        let out = ssh(
            port,
            "alice",
            live.password.expose(),
            &[],
            "echo before > ~/f; echo ok",
        )
        .await;
        assert_eq!(out.stdout, "ok\n", "{out:?}");
        let stored = std::fs::read_to_string(dir.path().join("local/leases.json")).unwrap();
        assert!(
            !stored.contains(live.password.expose()),
            "no plaintext password on disk"
        );
        (port, b.home_dir(&short.id))
        // `b` dropped: listeners stop, as if Paygress went down.
    };
    // Down until the short lease's time has passed.
    let past = short
        .expires_at
        .checked_add(SignedDuration::from_secs(1))
        .unwrap();
    tokio::time::sleep(Timestamp::now().duration_until(past).unsigned_abs()).await;

    // A home no lease owns (a crash between creating it and persisting the lease).
    let orphan = dir.path().join("local/homes/ssh-pod-orphan01");
    std::fs::create_dir_all(orphan.join("sub")).unwrap();

    let b = backend(dir.path(), 24180, BW).await;
    assert!(!orphan.exists(), "orphaned homes are removed at start");
    let record = b.get(&live.id).await.unwrap().expect("live lease resumed");
    assert_eq!(record.node_port, Some(port));
    assert!(
        b.get(&short.id).await.unwrap().is_none(),
        "expired while down"
    );
    assert!(!short_home.exists());
    let out = ssh(port, "alice", live.password.expose(), &[], "cat ~/f").await;
    assert_eq!(out.stdout, "before\n", "{out:?}");
    b.delete(&live.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_and_sftp_copy_files_into_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), 24190, BW).await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let local = dir.path().join("upload.txt");
    std::fs::write(&local, "payload\n").unwrap();
    // `-O`: the legacy protocol (`scp -t` over exec); without it: the sftp subsystem.
    for (flag, name) in [(Some("-O"), "legacy.txt"), (None, "sftp.txt")] {
        let mut c = tokio::process::Command::new("sshpass");
        c.args(["-p", spec.password.expose(), "scp", "-q"]);
        c.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ]);
        c.args(["-o", "LogLevel=ERROR", "-o", "PubkeyAuthentication=no"]);
        if let Some(f) = flag {
            c.arg(f);
        }
        c.args(["-P", &port.to_string()])
            .arg(&local)
            .arg(format!("alice@127.0.0.1:{name}"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = c.output().await.unwrap();
        assert!(out.status.success(), "scp {flag:?}: {out:?}");
        assert_eq!(
            std::fs::read_to_string(b.home_dir(&spec.id).join(name)).unwrap(),
            "payload\n"
        );
    }
    b.delete(&spec.id).await.unwrap();
}
