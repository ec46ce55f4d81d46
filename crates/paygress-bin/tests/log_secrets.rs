//! No secret reaches a log line: the real `paygress serve` binary (Nostr and HTTP, local
//! backend) runs at `RUST_LOG=trace` against an in-process relay and mint while a buyer
//! pays, gets change, logs in with its password, tops up, asks for its status and is
//! refunded; then every line the service logged is searched for the tokens paid, the
//! service's nsec, the passwords and every token handed back.
#![cfg(feature = "dev")]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::str::FromStr;

use paygress_cashu::cdk::nuts::Token;
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_core::{CashuToken, Reply, Request, SpawnRequest, StatusRequest, TopUpRequest};
use paygress_nostr::nostr_sdk::{Keys, ToBech32};
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::{BuyerClient, Scheme, SendOptions};
use paygress_testkit::demo::ssh_run;
use serde_json::Value;

/// Three lease ports: the fourth spawn finds none free (refused, or refunded).
const PORTS: &str = "2460-2462";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn spawn_request(token: &CashuToken, user: &str) -> SpawnRequest {
    SpawnRequest::new(token.clone())
        .with_ssh_username(user)
        .with_duration_minutes(2)
}

/// Collects the secrets of a reply: password, change and refund tokens.
fn reply_secrets(reply: &Reply, secrets: &mut Vec<(String, String)>) {
    if let Reply::AccessDetails(a) = reply {
        secrets.push(("password".into(), a.ssh_password.expose().to_owned()));
    }
    if let Some(t) = reply.returned_token() {
        secrets.push(("returned token".into(), t.expose().to_owned()));
    }
}

/// Collects the secrets of an HTTP answer body, whatever its shape.
fn json_secrets(v: &Value, secrets: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if let (true, Some(s)) = (
                    matches!(
                        k.as_str(),
                        "ssh_password" | "change_token" | "refund_token" | "cashu_token"
                    ),
                    v.as_str(),
                ) {
                    let what = if k == "ssh_password" { "password" } else { k };
                    secrets.push((what.to_owned(), s.to_owned()));
                }
                json_secrets(v, secrets);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| json_secrets(v, secrets)),
        _ => {}
    }
}

async fn token(mint: &TestMint, sat: u64, format: TokenFormat) -> CashuToken {
    mint.mint_token(sat, format).await.expect("mint a token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_token_nsec_password_or_refund() {
    let relay = TestRelay::start().await.expect("relay");
    let mint = TestMint::start().await.expect("mint");
    let data = tempfile::tempdir().expect("tempdir");
    let keys = Keys::generate();
    let nsec = keys.secret_key().to_bech32().expect("nsec");
    let http_port = free_port();
    let log_path = data.path().join("service.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");

    let mut service = tokio::process::Command::new(env!("CARGO_BIN_EXE_paygress"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "trace")
        .env("RUN_MODE", "both")
        .env("BIND_ADDR", format!("127.0.0.1:{http_port}"))
        .env("POD_BACKEND", "local")
        .env("PAYGRESS_DATA_DIR", data.path().join("state"))
        .env("WHITELISTED_MINTS", mint.url().to_string())
        .env("NOSTR_RELAYS", relay.url().to_string())
        .env("NOSTR_PRIVATE_KEY", &nsec)
        .env("SSH_HOST", "127.0.0.1")
        .env("LOCAL_PORT_RANGE", PORTS)
        .env("LOCAL_SANDBOX", "unsandboxed")
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .expect("paygress serve starts");

    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service never became healthy; log:\n{}",
            tail(&log_path)
        );
        assert!(
            service.try_wait().expect("wait").is_none(),
            "the service exited; log:\n{}",
            tail(&log_path)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut secrets: Vec<(String, String)> = vec![
        ("nsec".into(), nsec.clone()),
        ("secret key hex".into(), keys.secret_key().to_secret_hex()),
    ];
    let buyer = BuyerClient::connect(Keys::generate(), &[relay.url()], keys.public_key())
        .await
        .expect("buyer connects")
        .with_timeout(Duration::from_secs(30));
    let work = tempfile::tempdir().expect("tempdir");

    // Nostr (NIP-44): pay 5 sat for 2 minutes (2 sat): change; log in with the password.
    let paid = token(&mint, 5, TokenFormat::V4).await;
    secrets.push(("paid token".into(), paid.expose().to_owned()));
    let reply = buyer
        .spawn(spawn_request(&paid, "alice"))
        .await
        .expect("reply");
    reply_secrets(&reply, &mut secrets);
    let Reply::AccessDetails(access) = reply else {
        panic!("expected access details, got {reply:?}")
    };
    assert!(access.change_token.is_some(), "change expected");
    let out = ssh_run(&access, "echo in-lease", work.path())
        .await
        .expect("ssh login with the reply's password");
    assert_eq!(out.trim(), "in-lease");

    // Top-up (NIP-04, a cashuA token) and status (NIP-17).
    let paid = token(&mint, 3, TokenFormat::V3).await;
    secrets.push(("paid token".into(), paid.expose().to_owned()));
    let top_up = Request::TopUp(TopUpRequest {
        pod_name: access.pod_name.to_string(),
        cashu_token: paid,
    });
    let nip04 = SendOptions {
        scheme: Scheme::Nip04,
        ..SendOptions::default()
    };
    let reply = buyer.request(&top_up, nip04).await.expect("reply");
    assert!(matches!(reply, Reply::TopUp(_)), "{reply:?}");
    reply_secrets(&reply, &mut secrets);
    let status = Request::Status(StatusRequest {
        pod_name: access.pod_name.to_string(),
    });
    let nip17 = SendOptions {
        scheme: Scheme::Nip17,
        ..SendOptions::default()
    };
    let reply = buyer.request(&status, nip17).await.expect("reply");
    assert!(matches!(reply, Reply::Status(_)), "{reply:?}");

    // A second lease over NIP-17: its password travels in a gift wrap.
    let paid = token(&mint, 3, TokenFormat::V4).await;
    secrets.push(("paid token".into(), paid.expose().to_owned()));
    let spawn = Request::Spawn(spawn_request(&paid, "dave"));
    let reply = buyer.request(&spawn, nip17).await.expect("reply");
    assert!(matches!(reply, Reply::AccessDetails(_)), "{reply:?}");
    reply_secrets(&reply, &mut secrets);

    // HTTP: spawn with the token in X-Cashu (the last port), /auth with the
    // token in the query, a top-up in the body.
    let paid = token(&mint, 4, TokenFormat::V4).await;
    secrets.push(("paid token".into(), paid.expose().to_owned()));
    let r = http
        .post(format!("{base}/spawn-pod"))
        .header("X-Cashu", paid.expose())
        .header("Idempotency-Key", "log-secrets-spawn-0001")
        .json(&serde_json::json!({"ssh_username": "bob", "duration_minutes": 2}))
        .send()
        .await
        .expect("POST /spawn-pod");
    let status_code = r.status();
    let body: Value = r.json().await.expect("JSON");
    assert!(status_code.is_success(), "{status_code}: {body}");
    json_secrets(&body, &mut secrets);
    let pod = body["pod_name"].as_str().expect("pod_name").to_owned();
    let r = http
        .post(format!("{base}/auth"))
        .header("X-Cashu", paid.expose())
        .send()
        .await
        .expect("POST /auth");
    assert!(r.status().as_u16() < 500, "POST /auth: {}", r.status());
    let r = http
        .get(format!("{base}/auth"))
        .query(&[("token", paid.expose())])
        .send()
        .await
        .expect("GET /auth");
    let _ = r.text().await;
    let paid = token(&mint, 2, TokenFormat::V4).await;
    secrets.push(("paid token".into(), paid.expose().to_owned()));
    let r = http
        .post(format!("{base}/top-up-pod"))
        .json(&serde_json::json!({"pod_name": pod, "cashu_token": paid.expose()}))
        .send()
        .await
        .expect("POST /top-up-pod");
    let body: Value = r.json().await.expect("JSON");
    json_secrets(&body, &mut secrets);

    // A fourth lease: no port is free. Refused (untouched, or redeemed and refunded).
    let paid = token(&mint, 4, TokenFormat::V4).await;
    secrets.push(("paid token".into(), paid.expose().to_owned()));
    let reply = buyer
        .spawn(spawn_request(&paid, "carol"))
        .await
        .expect("reply");
    assert!(reply.error_code().is_some(), "{reply:?}");
    reply_secrets(&reply, &mut secrets);

    buyer.shutdown().await;
    // Let the service log what follows the replies (journal, maintenance), then stop it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    service.start_kill().expect("kill");
    let _ = service.wait().await;

    let raw = std::fs::read_to_string(&log_path).expect("log");
    let log = strip_ansi(&raw);
    // A token's proofs are its money: their secrets count as the token.
    let proofs: Vec<(String, String)> = secrets
        .iter()
        .flat_map(|(what, secret)| {
            proof_secrets(secret)
                .into_iter()
                .map(move |p| (format!("{what} (a proof secret)"), p))
        })
        .collect();
    assert!(!proofs.is_empty(), "tokens decode to proofs");
    secrets.extend(proofs);
    let lines = log.lines().count();
    assert!(
        lines > 100 && log.contains("TRACE"),
        "the service did not log at trace ({lines} lines)"
    );
    assert!(
        secrets.iter().filter(|(k, _)| k == "password").count() == 3,
        "the three leases' passwords are checked: {:?}",
        secrets.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 12, "{what} is too short to search for");
        // The whole secret, and for tokens a prefix long enough to be one (a log line
        // that cuts a token short still leaks its proofs).
        let needles = [secret.as_str(), &secret[..secret.len().min(48)]];
        for (n, line) in log.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle)) {
                leaks.push(format!("line {}: {what}: {}", n + 1, redact(line, secret)));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in the trace log ({} lines):\n{}",
        lines,
        leaks.join("\n")
    );
}

/// The secrets of a token's proofs (none for anything else).
fn proof_secrets(token: &str) -> Vec<String> {
    match Token::from_str(token) {
        Ok(Token::TokenV4(t)) => t
            .token
            .iter()
            .flat_map(|k| k.proofs.iter().map(|p| p.secret.to_string()))
            .collect(),
        Ok(Token::TokenV3(t)) => t
            .token
            .iter()
            .flat_map(|m| m.proofs.iter().map(|p| p.secret.to_string()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The text without ANSI colour sequences (`ESC [ … letter`), so that a colour change
/// cannot split a secret.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A log line with the secret replaced, for the failure message.
fn redact(line: &str, secret: &str) -> String {
    let prefix = &secret[..secret.len().min(48)];
    line.replace(secret, "<SECRET>")
        .replace(prefix, "<SECRET-PREFIX>")
        .chars()
        .take(400)
        .collect()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
