//! Knowing when a lease's time runs out and paying for more without staying at the
//! keyboard: `paygress watch` and `paygress topup --auto`, the real binary against a dev
//! stack in this process (real relay, real mint, local backend).
#![cfg(feature = "dev")]

mod buyer_common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use buyer_common::{args, json, json_lines, paygress, write_token};
use paygress_cashu::testkit::TokenFormat;
use paygress_core::{DurationLimits, Rate, ServiceConfig};
use paygress_testkit::dev::DevStack;

/// One sat buys one second and any length of top-up is sold: a lease's whole life, and
/// two automatic top-ups, fit in a few seconds.
fn fast_terms(min_seconds: u64) -> ServiceConfig {
    ServiceConfig::default()
        .with_name("lease-time")
        .with_rate(Rate::from_sats_per_hour(3600).expect("non-zero"))
        .with_limits(DurationLimits {
            min_seconds,
            max_seconds: 3600,
        })
        .with_ssh_host("127.0.0.1")
}

fn timestamp(v: &serde_json::Value) -> jiff::Timestamp {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

/// Buys a lease of `sats` seconds over Nostr; returns its name and expiry.
async fn buy(stack: &DevStack, cfg: &std::path::Path, sats: u64) -> (String, jiff::Timestamp) {
    let token = stack
        .mint
        .mint_token(sats, TokenFormat::V4)
        .await
        .expect("mint");
    let token_file = write_token(cfg, "lease.cashu", &token).await;
    let (service, relay) = (stack.service_key.to_hex(), stack.relay_url().to_string());
    let out = paygress(
        cfg,
        &[
            "request",
            "--service",
            &service,
            "--relay",
            &relay,
            "--token",
            &token_file,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let access = json(&out);
    (
        access["pod_name"].as_str().expect("pod").to_owned(),
        timestamp(&access["expires_at"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_counts_down_and_exits_when_the_lease_ends() {
    let stack = DevStack::start_with(&args("2710-2714"), fast_terms(5))
        .await
        .expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    assert!(paygress(cfg, &["keygen"]).await.status.success());
    let (pod, expires_at) = buy(&stack, cfg, 8).await;

    let started = Instant::now();
    // For scripts over HTTP, and for people over Nostr, at once.
    let (service, relay) = (stack.service_key.to_hex(), stack.relay_url().to_string());
    let json_args = [
        "watch",
        "--http",
        &stack.http_url,
        "--pod",
        &pod,
        "--refresh",
        "2",
        "--json",
    ];
    let human_args = [
        "watch",
        "--service",
        &service,
        "--relay",
        &relay,
        "--pod",
        &pod,
        "--refresh",
        "3",
    ];
    let (out, human) = tokio::join!(paygress(cfg, &json_args), paygress(cfg, &human_args));
    let took = started.elapsed();
    assert!(human.status.success(), "{human:?}");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!("Lease {pod}: 0:00:0"))
            && text.contains(&format!("Lease {pod} has ended")),
        "{text}"
    );
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    let (last, refreshes) = lines.split_last().expect("lines");
    assert_eq!(last["type"], "ended", "{lines:?}");
    assert_eq!(last["pod_name"], pod.as_str());
    // A refresh every two seconds of an eight-second lease: the count went down.
    let active: Vec<u64> = refreshes
        .iter()
        .filter(|l| l["type"] == "status" && l["state"] == "active")
        .map(|l| l["remaining_seconds"].as_u64().expect("seconds"))
        .collect();
    assert!(active.len() >= 2, "{lines:?}");
    assert!(active.windows(2).all(|w| w[0] >= w[1]), "{active:?}");
    assert!(active.first() > active.last(), "{active:?}");
    assert!(
        refreshes
            .iter()
            .all(|l| timestamp(&l["expires_at"]) == expires_at)
    );
    // It exited at the end, not before and not long after.
    assert!(
        jiff::Timestamp::now() >= expires_at,
        "exited before the end"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");

    // A lease that is not there is an error from the start.
    let out = paygress(
        cfg,
        &[
            "watch",
            "--http",
            &stack.http_url,
            "--pod",
            "ssh-pod-zzzzzzzz",
        ],
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_top_up_keeps_a_short_lease_alive_past_two_expiries_within_the_budget() {
    // No shortest lease: a top-up may buy six seconds. Each is sent when six are left.
    let stack = DevStack::start_with(&args("2715-2719"), fast_terms(0))
        .await
        .expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    assert!(paygress(cfg, &["keygen"]).await.status.success());
    let (pod, first_expiry) = buy(&stack, cfg, 12).await;
    let (service, relay) = (stack.service_key.to_hex(), stack.relay_url().to_string());

    // 100 sat for a budget of 15: two top-ups of 6 s (6 sat each) fit, a third does not.
    let money = stack
        .mint
        .mint_token(100, TokenFormat::V4)
        .await
        .expect("mint");
    let money_file = write_token(cfg, "budget.cashu", &money).await;
    let out = paygress(
        cfg,
        &[
            "topup",
            "--auto",
            "--budget",
            "15",
            "--every-minutes",
            "0.1",
            "--before-minutes",
            "0.1",
            "--service",
            &service,
            "--relay",
            &relay,
            "--pod",
            &pod,
            "--token",
            &money_file,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    let prepaid = &lines[0];
    assert_eq!(prepaid["event"], "prepaid", "{lines:?}");
    assert_eq!(prepaid["top_ups"], 2);
    assert_eq!(prepaid["price_sat"], 6);
    let paid: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "paid").collect();
    assert_eq!(paid.len(), 2, "{lines:?}");
    let spent: u64 = paid
        .iter()
        .map(|p| p["amount_sat"].as_u64().expect("amount"))
        .sum();
    assert!(spent <= 15, "spent {spent}");
    assert_eq!(spent, 12);
    // The expiry moved twice, by what was paid each time.
    let second_expiry = timestamp(&paid[0]["expires_at"]);
    let third_expiry = timestamp(&paid[1]["expires_at"]);
    assert_eq!(second_expiry.as_second() - first_expiry.as_second(), 6);
    assert_eq!(third_expiry.as_second() - second_expiry.as_second(), 6);
    let stopped = lines.last().expect("a last line");
    assert_eq!(stopped["event"], "stopped");
    assert_eq!(stopped["spent_sat"], 12);
    assert!(
        stopped["unused_token_files"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    );

    // The rest of the money came back as a change token worth 100 - 12.
    let change = std::fs::read_to_string(prepaid["change_file"].as_str().expect("change"))
        .expect("change file");
    let change = paygress_cashu::cdk::nuts::Token::from_str(change.trim()).expect("token");
    assert_eq!(u64::from(change.value().expect("value")), 88);

    // Past its first two ends, the lease still runs.
    let wait = second_expiry.as_millisecond() - jiff::Timestamp::now().as_millisecond() + 1000;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    let out = paygress(
        cfg,
        &[
            "status",
            "--service",
            &service,
            "--relay",
            &relay,
            "--pod",
            &pod,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let status = json(&out);
    assert_eq!(status["state"], "active");
    assert_eq!(timestamp(&status["expires_at"]), third_expiry);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_top_up_stops_when_the_lease_is_gone_and_keeps_the_unpaid_tokens() {
    let stack = DevStack::start_with(&args("2720-2724"), fast_terms(0))
        .await
        .expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    assert!(paygress(cfg, &["keygen"]).await.status.success());
    // A lease that is long enough that no top-up is due before it is released.
    let (pod, _) = buy(&stack, cfg, 15).await;
    let (service, relay) = (stack.service_key.to_hex(), stack.relay_url().to_string());
    let money = stack
        .mint
        .mint_token(20, TokenFormat::V4)
        .await
        .expect("mint");
    let money_file = write_token(cfg, "budget.cashu", &money).await;
    let auto = buyer_common::command(
        cfg,
        &[
            "topup",
            "--auto",
            "--budget",
            "20",
            "--every-minutes",
            "0.1",
            "--before-minutes",
            "0.1",
            "--service",
            &service,
            "--relay",
            &relay,
            "--pod",
            &pod,
            "--token",
            &money_file,
            "--json",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("runs paygress");
    // Once the token is split (three top-ups of 6 sat), the lease goes away.
    let tokens = cfg.join("tokens");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&tokens).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains("-topup"))
        })
        .count()
    }) < 3
    {
        assert!(Instant::now() < deadline, "the token was never split");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = paygress(
        cfg,
        &[
            "release",
            "--service",
            &service,
            "--relay",
            &relay,
            "--pod",
            &pod,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");

    let out = auto.wait_with_output().await.expect("auto top-up ends");
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    assert!(lines.iter().all(|l| l["event"] != "paid"), "{lines:?}");
    let stopped = lines.last().expect("a last line");
    assert_eq!(stopped["event"], "stopped", "{lines:?}");
    assert_eq!(stopped["spent_sat"], 0);
    // The three top-ups not paid are still the buyer's money.
    let unused = stopped["unused_token_files"].as_array().expect("files");
    assert_eq!(unused.len(), 3, "{stopped}");
    for f in unused {
        let token = std::fs::read_to_string(f.as_str().expect("path")).expect("token");
        let token = paygress_core::CashuToken::new(token.trim());
        assert_eq!(
            stack.mint.redeem_as_buyer(&token).await.expect("redeems"),
            6
        );
    }
    stack.shutdown().await;
}
