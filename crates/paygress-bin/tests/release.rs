//! `paygress release`, run as the real binary against a dev stack in this process (real
//! relay, real mint, local backend), over Nostr and over HTTP: the refund token redeems
//! for the unused seconds, nobody but the owner can release, and a second release is a
//! clear error with no second token.
#![cfg(feature = "dev")]

use std::path::Path;
use std::process::Output;

use paygress_cashu::testkit::TokenFormat;
use paygress_core::{CashuToken, LeaseId, ServiceConfig};
use paygress_testkit::dev::{DevOptions, DevStack};
use serde_json::Value;

/// 60 sat an hour (one sat a minute), the default 5-minute minimum charge.
fn terms() -> ServiceConfig {
    ServiceConfig::default()
        .with_name("release-test")
        .with_ssh_host("127.0.0.1")
}

async fn paygress(config_dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_paygress"))
        .args(args)
        .env("PAYGRESS_CONFIG_DIR", config_dir)
        .env_remove("PAYGRESS_NSEC")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("runs paygress")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn saved_tokens(config_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(config_dir.join("tokens")) else {
        return vec![];
    };
    let mut names: Vec<String> = dir
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Buys a 30-minute lease with exactly 30 sat over `route` (`--service … --relay …` or
/// `--http …`); returns its name.
async fn buy(stack: &DevStack, cfg: &Path, route: &[&str]) -> String {
    let token = stack
        .mint
        .mint_token(30, TokenFormat::V4)
        .await
        .expect("mint");
    let token_file = cfg.join("pay.cashu");
    std::fs::write(&token_file, token.expose()).expect("write token");
    let token_file = token_file.display().to_string();
    let mut args = vec!["request"];
    args.extend_from_slice(route);
    args.extend_from_slice(&["--token", &token_file, "--duration", "30m", "--json"]);
    let out = paygress(cfg, &args).await;
    assert!(out.status.success(), "{out:?}");
    let access = json(&out);
    assert_eq!(access["type"], "access_details");
    assert!(
        access.get("saved_token_file").is_none(),
        "no change: {access}"
    );
    access["pod_name"].as_str().expect("pod").to_owned()
}

async fn release(cfg: &Path, route: &[&str], pod: &str) -> Output {
    let mut args = vec!["release"];
    args.extend_from_slice(route);
    args.extend_from_slice(&["--pod", pod, "--json"]);
    paygress(cfg, &args).await
}

/// Releases `pod` as its owner and checks the refund: 30 minutes bought, released within
/// the 5-minute minimum, so exactly 1500 unused seconds come back: 25 sat.
async fn release_and_redeem(stack: &DevStack, cfg: &Path, route: &[&str], pod: &str) {
    let before = saved_tokens(cfg).len();
    let out = release(cfg, route, pod).await;
    assert!(out.status.success(), "{out:?}");
    let released = json(&out);
    assert_eq!(released["type"], "released", "{released}");
    assert_eq!(released["pod_name"], pod);
    assert_eq!(released["refunded_seconds"], 1500, "{released}");
    assert_eq!(released["refund_amount"]["value"], 25, "{released}");
    // The lease is gone.
    let id: LeaseId = pod.parse().expect("lease id");
    assert!(
        stack
            .service
            .backend()
            .get(&id)
            .await
            .expect("get")
            .is_none(),
        "the lease still exists after its release"
    );
    // The refund was saved and redeems for what it says.
    let file = released["saved_token_file"].as_str().expect("refund saved");
    assert!(file.ends_with("-refund.cashu"), "{file}");
    assert_eq!(saved_tokens(cfg).len(), before + 1);
    let refund = CashuToken::new(std::fs::read_to_string(file).expect("read").trim());
    assert_eq!(
        stack.mint.redeem_as_buyer(&refund).await.expect("redeems"),
        25
    );

    // A second release: a clear error, no second token.
    let out = release(cfg, route, pod).await;
    assert!(!out.status.success(), "{out:?}");
    let again = json(&out);
    assert!(again.get("saved_token_file").is_none(), "{again}");
    assert_eq!(saved_tokens(cfg).len(), before + 1);
    assert_eq!(again["code"], "pod_not_found", "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_releases_over_nostr_and_gets_the_unused_time_back() {
    let stack = DevStack::start_with(
        &DevOptions {
            data_dir: None,
            http_port: 0,
            port_range: "2540-2544".to_owned(),
            unsandboxed: false,
        },
        terms(),
    )
    .await
    .expect("stack");
    let owner = tempfile::tempdir().expect("tempdir");
    let stranger = tempfile::tempdir().expect("tempdir");
    for cfg in [owner.path(), stranger.path()] {
        let out = paygress(cfg, &["keygen"]).await;
        assert!(out.status.success(), "{out:?}");
    }
    let relay = stack.relay_url().to_string();
    let service = stack.service_key.to_hex();
    let route = ["--service", service.as_str(), "--relay", relay.as_str()];

    let pod = buy(&stack, owner.path(), &route).await;

    // Someone else cannot release it.
    let out = release(stranger.path(), &route, &pod).await;
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(json(&out)["code"], "not_owner");
    assert!(saved_tokens(stranger.path()).is_empty());
    let id: LeaseId = pod.parse().expect("lease id");
    assert!(
        stack
            .service
            .backend()
            .get(&id)
            .await
            .expect("get")
            .is_some()
    );

    release_and_redeem(&stack, owner.path(), &route, &pod).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_releases_over_http_with_the_key_the_lease_was_bought_with() {
    let stack = DevStack::start_with(
        &DevOptions {
            data_dir: None,
            http_port: 0,
            port_range: "2545-2549".to_owned(),
            unsandboxed: false,
        },
        terms(),
    )
    .await
    .expect("stack");
    let owner = tempfile::tempdir().expect("tempdir");
    let stranger = tempfile::tempdir().expect("tempdir");
    let http = stack.http_url.clone();
    let route = ["--http", http.as_str()];

    let pod = buy(&stack, owner.path(), &route).await;

    // Another machine has no key for the lease: refused before anything is sent.
    let out = release(stranger.path(), &route, &pod).await;
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no key for lease"), "{err}");

    release_and_redeem(&stack, owner.path(), &route, &pod).await;
    stack.shutdown().await;
}
