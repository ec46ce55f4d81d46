//! SIGTERM with paid requests in flight loses nothing: the real `paygress serve` (Nostr
//! and HTTP, local backend) gets spawn requests whose mint answers are held back by a
//! proxy; SIGTERM arrives while every one of them is at the mint. Each buyer still gets
//! its lease, the process exits cleanly, and the next start picks the leases up.
#![cfg(feature = "dev")]

mod operator_common;

use std::time::Duration;

use operator_common::{Service, metric};
use paygress_cashu::testkit::{Buyer, MintProxy, RandomFaults, TestMint, TokenFormat};
use paygress_core::{CashuToken, Reply, SpawnRequest, Unit};
use paygress_nostr::BuyerClient;
use paygress_nostr::nostr_sdk::{Keys, ToBech32};
use paygress_nostr::testkit::TestRelay;
use serde_json::Value;

fn spawn_request(token: CashuToken, user: &str) -> SpawnRequest {
    SpawnRequest::new(token)
        .with_ssh_username(user)
        .with_duration_minutes(30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_leases_survive_the_restart() {
    let relay = TestRelay::start().await.expect("relay");
    let mint = TestMint::start().await.expect("mint");
    let proxy = MintProxy::start(&mint).await.expect("proxy");
    let keys = Keys::generate();
    let nsec = keys.secret_key().to_bech32().expect("nsec");
    let relays = relay.url().to_string();
    let proxy_url = proxy.url().to_string();
    let env = [
        ("RUN_MODE", "both"),
        ("NOSTR_RELAYS", relays.as_str()),
        ("NOSTR_PRIVATE_KEY", nsec.as_str()),
        ("WHITELISTED_MINTS", proxy_url.as_str()),
    ];
    let ports = "2480-2489";
    let mut service = Service::start(&mint, &env, ports).await;
    let base = service.base();

    // 30 minutes at 60 sat/h: 30 sat each. Minted before the proxy starts holding swaps.
    let payer = Buyer::new(&proxy.url(), Unit::Sat).await.expect("payer");
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(payer.mint_token(30, TokenFormat::V4).await.expect("token"));
    }
    proxy.set_random(Some(RandomFaults {
        lose: 0.0,
        drop: 0.0,
        delay: 1.0,
        delay_for: Duration::from_secs(2),
        seed: 1,
    }));

    // Two buyers over Nostr, two over HTTP, all at once.
    let mut nostr = Vec::new();
    for (i, token) in tokens.drain(..2).enumerate() {
        let buyer = BuyerClient::connect(Keys::generate(), &[relay.url()], keys.public_key())
            .await
            .expect("buyer connects")
            .with_timeout(Duration::from_secs(30));
        nostr.push(tokio::spawn(async move {
            let reply = buyer
                .spawn(spawn_request(token, &format!("nostr{i}")))
                .await;
            buyer.shutdown().await;
            reply
        }));
    }
    let mut http = Vec::new();
    for (i, token) in tokens.drain(..).enumerate() {
        let url = format!("{base}/spawn-pod");
        http.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("X-Cashu", token.expose())
                .header("Idempotency-Key", format!("sigterm-spawn-000000{i}"))
                .json(&serde_json::json!({"ssh_username": format!("http{i}"), "duration_minutes": 30}))
                .send()
                .await
                .expect("POST /spawn-pod");
            (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
        }));
    }
    // Every swap has reached the mint and its answer is held: all four are in flight.
    for _ in 0..300 {
        if proxy.stats().delayed >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.stats().delayed, 4, "four swaps in flight");

    let status = service.terminate().await;
    assert!(status.success(), "clean exit after SIGTERM: {status}");

    for task in nostr {
        let reply = task
            .await
            .expect("task")
            .expect("a Nostr reply after SIGTERM");
        assert!(matches!(reply, Reply::AccessDetails(_)), "{reply:?}");
    }
    for task in http {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 201, "{body}");
        assert!(body["pod_name"].is_string(), "{body}");
    }
    let log = service.log();
    assert!(log.contains("shutting down"), "{log}");

    // The next start picks the four leases up; nothing is left open in the journal.
    proxy.set_random(None);
    let data = std::mem::replace(&mut service.data, tempfile::tempdir().expect("tempdir"));
    drop(service);
    let service = Service::start_in(&mint, &env, ports, data).await;
    let pods: Value = reqwest::get(format!("{}/pods", service.base()))
        .await
        .expect("GET /pods")
        .json()
        .await
        .expect("JSON");
    let listed = pods["pods"]
        .as_array()
        .or_else(|| pods.as_array())
        .unwrap_or_else(|| panic!("a list of pods: {pods}"))
        .len();
    assert_eq!(listed, 4, "{pods}");
    let text = reqwest::get(format!("{}/metrics", service.base()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(metric(&text, "paygress_journal_unfinished", &[]), Some(0.0));
    assert_eq!(
        metric(&text, "paygress_leases_active", &[("tier", "standard")]),
        Some(4.0),
        "{text}"
    );
    service.stop().await;
}
