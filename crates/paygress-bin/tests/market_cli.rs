//! `paygress offers` as a market and `paygress request` without `--service`, run as the
//! real binary against a dev stack in this process (real relay, mint, local backend).
#![cfg(feature = "dev")]

use std::path::Path;
use std::process::Output;

use paygress_cashu::testkit::TokenFormat;
use paygress_core::ServiceConfig;
use paygress_testkit::dev::{DevOptions, DevStack};
use serde_json::Value;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_show_reachability_and_request_picks_the_provider() {
    let args = DevOptions {
        data_dir: None,
        http_port: 0,
        port_range: "2480-2484".to_owned(),
        unsandboxed: false,
    };
    let terms = ServiceConfig::default()
        .with_name("market-test")
        .with_ssh_host("127.0.0.1");
    let stack = DevStack::start_with(&args, terms).await.expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    let relay = stack.relay_url().to_string();
    let service = stack.service_key.to_hex();
    assert!(paygress(cfg, &["keygen"]).await.status.success());

    let out = paygress(
        cfg,
        &["offers", "--relay", &relay, "--json", "--sort", "latency"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let offers = json(&out);
    let ours = offers
        .as_array()
        .expect("a list")
        .iter()
        .find(|o| o["service"] == service.as_str())
        .unwrap_or_else(|| panic!("service not listed: {offers}"));
    assert_eq!(ours["reachable"], true, "{ours}");
    assert!(ours["latency_ms"].is_u64());
    assert_eq!(ours["prices"][0]["sat_per_hour"], "60");
    assert_eq!(ours["kind"], 31990);
    let table = paygress(cfg, &["offers", "--relay", &relay]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("market-test") && text.contains(" ms"),
        "{text}"
    );

    let token = stack
        .mint
        .mint_token(10, TokenFormat::V4)
        .await
        .expect("mint");
    let file = cfg.join("pay.cashu");
    std::fs::write(&file, token.expose()).expect("write");
    let file = file.display().to_string();
    // Too cheap for anyone: nothing is sent.
    let out = paygress(
        cfg,
        &[
            "request",
            "--relay",
            &relay,
            "--token",
            &file,
            "--max-price",
            "59",
        ],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token was not sent"), "{err}");
    // Within budget: the provider is chosen and named.
    let out = paygress(
        cfg,
        &[
            "request",
            "--relay",
            &relay,
            "--token",
            &file,
            "--tier",
            "standard",
            "--max-price",
            "60",
            "--duration",
            "2m",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out)["type"], "access_details");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Chose market-test"), "{err}");
}
