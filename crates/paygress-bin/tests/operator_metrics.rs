//! The operator's view: the real `paygress serve` binary (local backend) against an
//! in-process mint (and relay), buyers pay, then `/metrics` is scraped and its counters
//! checked against what happened; the JSON log carries one line per request outcome,
//! with its key, and no colour codes.
#![cfg(feature = "dev")]

mod operator_common;

use std::time::Duration;

use operator_common::{Service, metric, token};
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_core::{Reply, SpawnRequest};
use paygress_nostr::BuyerClient;
use paygress_nostr::nostr_sdk::{Keys, ToBech32};
use paygress_nostr::testkit::TestRelay;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_http_flows_and_the_json_log_has_one_line_per_outcome() {
    let mint = TestMint::start().await.expect("mint");
    let service = Service::start(
        &mint,
        &[("RUN_MODE", "http"), ("LOG_FORMAT", "json")],
        "2470-2472",
    )
    .await;
    let http = reqwest::Client::new();
    let base = service.base();

    // Spawn: 4 sat for 2 minutes at 60 sat/h (2 sat): 2 sat change.
    let paid = token(&mint, 4, TokenFormat::V4).await;
    let r = http
        .post(format!("{base}/spawn-pod"))
        .header("X-Cashu", paid.expose())
        .header("Idempotency-Key", "metrics-spawn-00000001")
        .json(&serde_json::json!({"ssh_username": "alice", "duration_minutes": 2}))
        .send()
        .await
        .expect("POST /spawn-pod");
    let status = r.status();
    let body: Value = r.json().await.expect("JSON");
    assert!(status.is_success(), "{status}: {body}");
    let pod = body["pod_name"].as_str().expect("pod_name").to_owned();

    // Top-up: 2 sat, 2 more minutes, no change.
    let top = token(&mint, 2, TokenFormat::V4).await;
    let r = http
        .post(format!("{base}/top-up-pod"))
        .header("Idempotency-Key", "metrics-topup-00000001")
        .json(&serde_json::json!({"pod_name": pod, "cashu_token": top.expose()}))
        .send()
        .await
        .expect("POST /top-up-pod");
    let status = r.status();
    let body: Value = r.json().await.expect("JSON");
    assert!(status.is_success(), "{status}: {body}");

    // The spent spawn token again, under a new key: refused at the mint.
    let r = http
        .post(format!("{base}/top-up-pod"))
        .header("Idempotency-Key", "metrics-topup-00000002")
        .json(&serde_json::json!({"pod_name": pod, "cashu_token": paid.expose()}))
        .send()
        .await
        .expect("POST /top-up-pod");
    let status = r.status();
    let body: Value = r.json().await.expect("JSON");
    assert!(status.is_client_error(), "{status}: {body}");
    let refused_code = body["code"]
        .as_str()
        .or_else(|| body["error"]["code"].as_str())
        .unwrap_or_else(|| panic!("error code in {body}"))
        .to_owned();

    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    let m = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    assert_eq!(
        m(
            "paygress_requests_total",
            &[("kind", "spawn"), ("outcome", "ok")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        m(
            "paygress_requests_total",
            &[("kind", "top_up"), ("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m(
            "paygress_requests_total",
            &[("kind", "top_up"), ("outcome", &refused_code)]
        ),
        Some(1.0),
        "the refused top-up is counted under its code {refused_code}: {text}"
    );
    // 6 sat in (no mint fee at the test mint), 2 sat change back.
    let mint_url = mint.url().to_string();
    let mint_label = mint_url.trim_end_matches('/');
    let received: f64 = text
        .lines()
        .filter(|l| l.starts_with("paygress_received_msat_total{"))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(received, 6000.0, "{text}");
    assert!(
        text.contains(mint_label),
        "received is labelled by mint: {text}"
    );
    assert_eq!(
        m("paygress_paid_back_msat_total", &[("reason", "change")]),
        Some(2000.0)
    );
    assert_eq!(
        m("paygress_leases_active", &[("tier", "standard")]),
        Some(1.0)
    );
    assert_eq!(m("paygress_owed_msat", &[]), Some(0.0));
    assert!(m("paygress_journal_bytes", &[]).is_some_and(|b| b > 0.0));
    for phase in ["mint", "backend"] {
        assert_eq!(
            m(
                "paygress_request_phase_seconds_count",
                &[("kind", "spawn"), ("phase", phase)]
            ),
            Some(1.0),
            "{phase} time of the spawn: {text}"
        );
    }
    assert!(
        m(
            "paygress_port_call_seconds_count",
            &[("port", "backend"), ("op", "create")]
        ) == Some(1.0)
    );

    // The operator's CLI, against the running service's data directory.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_paygress"))
            .args(args)
            .env_clear()
            .env("PAYGRESS_DATA_DIR", service.state_dir())
            .env("WHITELISTED_MINTS", mint.url().to_string())
            .env("POD_BACKEND", "local")
            .output()
            .expect("paygress runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let leases = cli(&["leases"]);
    let line = leases
        .lines()
        .find(|l| l.starts_with(&pod))
        .unwrap_or_else(|| panic!("{pod} listed: {leases}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], "standard", "{line}");
    assert_eq!(cols[5], "4", "2 sat spawn + 2 sat top-up paid: {line}");
    assert!(cols[6].starts_with("http:"), "owner: {line}");
    let history = cli(&["wallet", "history"]);
    let received = history.lines().filter(|l| l.contains(" received ")).count();
    assert_eq!(received, 2, "two payments received: {history}");
    assert!(
        history.contains(" refunded "),
        "the change paid back: {history}"
    );

    let log = service.stop().await;
    assert!(!log.contains('\u{1b}'), "no ANSI escapes in a log file");
    let mut outcomes = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["fields"]["message"] == "request done" {
            outcomes.push((
                v["span"]["key"].as_str().unwrap_or_default().to_owned(),
                v["span"]["kind"].as_str().unwrap_or_default().to_owned(),
                v["fields"]["outcome"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    outcomes.sort();
    let mut expected = vec![
        ("spawn".to_owned(), "ok".to_owned()),
        ("top_up".to_owned(), "ok".to_owned()),
        ("top_up".to_owned(), refused_code.clone()),
    ];
    expected.sort();
    let mut got: Vec<(String, String)> = outcomes
        .iter()
        .map(|(_, k, o)| (k.clone(), o.clone()))
        .collect();
    got.sort();
    assert_eq!(got, expected, "one outcome line per request: {outcomes:?}");
    assert!(
        outcomes.iter().all(|(key, _, _)| key.starts_with("http:")),
        "each outcome line has its request key: {outcomes:?}"
    );
    for secret in [paid.expose(), top.expose()] {
        assert!(!log.contains(&secret[..48]), "a token reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nostr_only_mode_serves_metrics_on_metrics_addr() {
    let relay = TestRelay::start().await.expect("relay");
    let mint = TestMint::start().await.expect("mint");
    let keys = Keys::generate();
    let nsec = keys.secret_key().to_bech32().expect("nsec");
    let metrics_port = operator_common::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let relays = relay.url().to_string();
    let service = Service::start(
        &mint,
        &[
            ("RUN_MODE", "nostr"),
            ("METRICS_ADDR", &metrics_addr),
            ("NOSTR_RELAYS", &relays),
            ("NOSTR_PRIVATE_KEY", &nsec),
        ],
        "2473-2474",
    )
    .await;
    let buyer = BuyerClient::connect(Keys::generate(), &[relay.url()], keys.public_key())
        .await
        .expect("buyer connects")
        .with_timeout(Duration::from_secs(30));
    let paid = token(&mint, 2, TokenFormat::V4).await;
    let reply = buyer
        .spawn(
            SpawnRequest::new(paid)
                .with_ssh_username("bob")
                .with_duration_minutes(2),
        )
        .await
        .expect("reply");
    assert!(matches!(reply, Reply::AccessDetails(_)), "{reply:?}");
    buyer.shutdown().await;

    let http = reqwest::Client::new();
    // The API port has no /metrics when METRICS_ADDR is set.
    let r = http
        .get(format!("{}/metrics", service.base()))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 404);
    // Relay connections are sampled every few seconds.
    let mut text = String::new();
    for _ in 0..50 {
        text = http
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        // The reply's send time is recorded once the relay took the reply, which may
        // be just after the buyer read it.
        let reply_timed = metric(
            &text,
            "paygress_request_phase_seconds_count",
            &[("kind", "spawn"), ("phase", "reply")],
        ) == Some(1.0);
        if metric(&text, "paygress_relays_connected", &[]) == Some(1.0) && reply_timed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric(&text, "paygress_relays_connected", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "paygress_requests_total",
            &[("kind", "spawn"), ("outcome", "ok")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "paygress_request_phase_seconds_count",
            &[("kind", "spawn"), ("phase", "reply")]
        ),
        Some(1.0),
        "the Nostr reply's send time: {text}"
    );
    let log = service.stop().await;
    assert!(!log.contains('\u{1b}'), "no ANSI escapes in a log file");
    assert!(log.contains("request done"), "{log}");
}
