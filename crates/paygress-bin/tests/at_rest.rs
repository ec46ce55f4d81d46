//! The operator's money and keys at rest: everything Paygress writes under its data
//! directory (and the buyer's identity and saved tokens) is private to its user, and the
//! service refuses to start on shared data unless told otherwise.
//!
//! The test process keeps the usual umask (022), so the in-process dev stack shows that
//! the libraries create their files private themselves; the `paygress serve` runs show
//! the binary (its umask and its start-up check).
#![cfg(feature = "dev")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use paygress_core::ServiceConfig;
use paygress_testkit::dev::{DevOptions, DevStack};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every directory and file under `root` (itself included) with its mode, except what
/// buyers create inside their lease homes (theirs, not the service's).
fn walk(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = vec![(root.to_owned(), true, mode(root))];
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        if dir.parent().and_then(Path::file_name) == Some("homes".as_ref()) {
            continue;
        }
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            out.push((
                path.clone(),
                meta.is_dir(),
                meta.permissions().mode() & 0o777,
            ));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// Asserts directories 0700 and files 0600 under `root`; returns the names seen.
fn assert_private_tree(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for (path, is_dir, m) in walk(root) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{} is {m:o}", path.display());
        names.push(
            path.strip_prefix(root)
                .expect("under root")
                .display()
                .to_string(),
        );
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_dev_data_dir_and_buyer_dir_are_private_after_a_real_flow() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("state/paygress");
    let args = DevOptions {
        data_dir: Some(data.clone()),
        http_port: 0,
        port_range: "2470-2474".to_owned(),
        unsandboxed: true,
    };
    let terms = ServiceConfig::default()
        .with_name("at-rest")
        .with_ssh_host("127.0.0.1");
    let stack = DevStack::start_with(&args, terms).await.expect("stack");
    let token_file = stack.mint_buyer_token(10).await.expect("buyer token");

    // A buyer with a config directory that does not exist yet pays and gets change.
    let buyer = root.path().join("home/.config/paygress");
    let run = |args: Vec<String>| {
        let buyer = buyer.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_paygress"))
                .args(args)
                .env("PAYGRESS_CONFIG_DIR", &buyer)
                .env_remove("PAYGRESS_NSEC")
                .env("RUST_LOG", "warn")
                .output()
                .await
                .expect("runs paygress")
        }
    };
    let out = run(vec!["keygen".into()]).await;
    assert!(out.status.success(), "{out:?}");
    let out = run([
        "request",
        "--service",
        &stack.service_key.to_hex(),
        "--relay",
        &stack.relay_url().to_string(),
        "--token",
        token_file.to_str().expect("utf-8"),
        "--duration",
        "2m",
        "--json",
    ]
    .map(String::from)
    .to_vec())
    .await;
    assert!(out.status.success(), "{out:?}");
    let reply: Value = serde_json::from_slice(&out.stdout).expect("json");
    let change = PathBuf::from(reply["saved_token_file"].as_str().expect("change saved"));

    // The service side, while it runs (SQLite's -wal and -shm exist only then).
    let names = assert_private_tree(&data);
    for want in [
        "cashu.db",
        "cashu.db-wal",
        "cashu.db-shm",
        "cashu.db.seed",
        "journal.jsonl",
        "nostr-handled.txt",
        "buyer-token.cashu",
        "local",
        "local/homes",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert!(names.len() > 12, "the local backend's files too: {names:?}");
    // Directories created on the way to the data directory are private too.
    assert_eq!(mode(&root.path().join("state")), 0o700);

    // The buyer side: identity and change token 0600, their directories 0700.
    let names = assert_private_tree(&buyer);
    assert!(names.iter().any(|n| n == "identity.nsec"), "{names:?}");
    assert!(
        change.starts_with(buyer.join("tokens")),
        "{}",
        change.display()
    );
    assert_eq!(mode(&change), 0o600);
    assert_eq!(mode(&root.path().join("home/.config")), 0o700);

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_refuses_an_existing_shared_data_dir() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let args = DevOptions {
        data_dir: Some(data.clone()),
        http_port: 0,
        port_range: "2475-2475".to_owned(),
        unsandboxed: true,
    };
    let err = match DevStack::start(&args).await {
        Ok(_) => panic!("a 0755 data directory must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!("chmod 700 {}", data.display())),
        "{err}"
    );
    assert!(!data.join("cashu.db").exists(), "nothing opened");
}

/// `paygress serve` on the local backend and HTTP only, with `data` as data dir and a
/// mint that is not there (not fatal at start).
fn serve(data: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_paygress"));
    cmd.arg("serve")
        .env("PAYGRESS_DATA_DIR", data)
        .env_remove("CASHU_DB_PATH")
        .env_remove("PAYGRESS_ALLOW_SHARED_DATA")
        .env("WHITELISTED_MINTS", "http://127.0.0.1:1")
        .env("RUN_MODE", "http")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("POD_BACKEND", "local")
        .env("LOCAL_SANDBOX", "unsandboxed")
        .env("LOCAL_PORT_RANGE", "2476-2477")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `cmd` until its log says the HTTP API listens; returns the child (still
/// running) and the log so far.
async fn start_until_listening(
    mut cmd: tokio::process::Command,
) -> (tokio::process::Child, String) {
    let mut child = cmd.spawn().expect("spawn paygress serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    let started = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            log.push_str(&line);
            log.push('\n');
            if line.contains("HTTP API listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(started, Ok(true)),
        "paygress serve did not start: {log}"
    );
    (child, log)
}

async fn stop(mut child: tokio::process::Child) {
    child.start_kill().expect("kill");
    child.wait().await.expect("wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_creates_its_data_dir_private() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("fresh");
    let (child, _) = start_until_listening(serve(&data)).await;
    let names = assert_private_tree(&data);
    for want in [
        "cashu.db",
        "cashu.db-wal",
        "cashu.db-shm",
        "cashu.db.seed",
        "journal.jsonl",
        "local",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_0644_wallet_unless_allowed() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let db = data.join("cashu.db");
    std::fs::write(&db, b"").expect("write");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    // A refusal ends the process at once; a service that starts would run until killed
    // (kill_on_drop stops it when the timeout drops the future).
    let out = tokio::time::timeout(Duration::from_secs(120), serve(&data).output())
        .await
        .expect("paygress serve must refuse, not run")
        .expect("run");
    assert!(!out.status.success(), "refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("chmod 600 {}", db.display())),
        "{err}"
    );
    assert!(err.contains("0644"), "{err}");
    assert!(err.contains("PAYGRESS_ALLOW_SHARED_DATA=1"), "{err}");
    assert_eq!(
        std::fs::metadata(&db).expect("meta").len(),
        0,
        "the wallet was not opened"
    );
    assert!(!data.join("journal.jsonl").exists(), "nothing was started");

    // The operator who knows why: a warning, and the service runs.
    let mut cmd = serve(&data);
    cmd.env("PAYGRESS_ALLOW_SHARED_DATA", "1");
    let (child, log) = start_until_listening(cmd).await;
    assert!(
        log.contains("WARN") && log.contains("starting anyway") && log.contains("chmod 600"),
        "{log}"
    );
    assert!(data.join("journal.jsonl").exists(), "the service started");
    stop(child).await;

    // Fixed as told: starts without the override.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for companion in ["cashu.db-wal", "cashu.db-shm"] {
        let p = data.join(companion);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    let (child, log) = start_until_listening(serve(&data)).await;
    assert!(!log.contains("starting anyway"), "{log}");
    stop(child).await;
}
