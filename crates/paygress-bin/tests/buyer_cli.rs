//! The buyer's commands, run as the real `paygress` binary against a dev stack in this
//! process: real relay, real mint, local backend.
#![cfg(feature = "dev")]

mod buyer_common;

use buyer_common::{args, json, paygress, terms, write_token};
use paygress_cashu::testkit::TokenFormat;
use paygress_core::CashuToken;
use paygress_testkit::dev::DevStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_offers_request_topup_status() {
    let stack = DevStack::start_with(&args("2440-2449"), terms())
        .await
        .expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    let relay = stack.relay_url().to_string();
    let service = stack.service_key.to_hex();

    let out = paygress(cfg, &["keygen"]).await;
    assert!(out.status.success(), "{out:?}");
    let who = paygress(cfg, &["whoami"]).await;
    let who_text = String::from_utf8_lossy(&who.stdout).to_string();
    assert!(who_text.contains("npub1"), "{who_text}");

    // The running service's offer is listed.
    let out = paygress(cfg, &["offers", "--relay", &relay, "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let offers = json(&out);
    let ours = offers
        .as_array()
        .expect("a list")
        .iter()
        .find(|o| o["service"] == service.as_str())
        .unwrap_or_else(|| panic!("service not listed: {offers}"));
    assert_eq!(ours["offer"]["rate_sats_per_hour"], 60);

    // request -> credentials, change saved to a file that redeems.
    let token = stack
        .mint
        .mint_token(10, TokenFormat::V4)
        .await
        .expect("mint");
    let token_file = write_token(cfg, "pay.cashu", &token).await;
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
            "--duration",
            "2m",
            "--user",
            "carol",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let access = json(&out);
    assert_eq!(access["type"], "access_details");
    assert_eq!(access["ssh_username"], "carol");
    assert!(
        access["ssh_password"]
            .as_str()
            .is_some_and(|p| p.len() >= 12)
    );
    let change_file = access["saved_token_file"].as_str().expect("change saved");
    let change = CashuToken::new(std::fs::read_to_string(change_file).expect("read").trim());
    assert_eq!(
        stack.mint.redeem_as_buyer(&change).await.expect("redeems"),
        8
    );
    let pod = access["pod_name"].as_str().expect("pod").to_owned();

    // topup -> new expiry, token from stdin-less file path.
    let token = stack
        .mint
        .mint_token(3, TokenFormat::V3)
        .await
        .expect("mint");
    let token_file = write_token(cfg, "topup.cashu", &token).await;
    let out = paygress(
        cfg,
        &[
            "topup",
            "--service",
            &service,
            "--relay",
            &relay,
            "--pod",
            &pod,
            "--token",
            &token_file,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let top = json(&out);
    assert_eq!(top["type"], "top_up");
    assert_eq!(top["added_seconds"], 180);
    let old: jiff::Timestamp = access["expires_at"].as_str().unwrap().parse().unwrap();
    let new: jiff::Timestamp = top["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(new.as_second() - old.as_second(), 180);

    // status, as the owner.
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
    assert_eq!(json(&out)["expires_at"], top["expires_at"]);

    // The same commands against the HTTP API.
    let http = stack.http_url.clone();
    let token = stack
        .mint
        .mint_token(4, TokenFormat::V4)
        .await
        .expect("mint");
    let token_file = write_token(cfg, "http.cashu", &token).await;
    let out = paygress(
        cfg,
        &[
            "request",
            "--http",
            &http,
            "--token",
            &token_file,
            "--duration",
            "3m",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let over_http = json(&out);
    assert_eq!(over_http["type"], "access_details");
    let change_file = over_http["saved_token_file"]
        .as_str()
        .expect("change saved");
    let change = CashuToken::new(std::fs::read_to_string(change_file).expect("read").trim());
    assert_eq!(
        stack.mint.redeem_as_buyer(&change).await.expect("redeems"),
        1
    );
    let http_pod = over_http["pod_name"].as_str().expect("pod").to_owned();
    let token = stack
        .mint
        .mint_token(2, TokenFormat::V4)
        .await
        .expect("mint");
    let token_file = write_token(cfg, "http-topup.cashu", &token).await;
    let out = paygress(
        cfg,
        &[
            "topup",
            "--http",
            &http,
            "--pod",
            &http_pod,
            "--token",
            &token_file,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out)["added_seconds"], 120);
    let out = paygress(
        cfg,
        &["status", "--http", &http, "--pod", &http_pod, "--json"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let status = json(&out);
    assert_eq!(status["type"], "status");
    assert_eq!(status["state"], "active");
    let out = paygress(
        cfg,
        &[
            "status",
            "--http",
            &http,
            "--pod",
            "ssh-pod-zzzzzzzz",
            "--json",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(json(&out)["code"], "pod_not_found");

    // Human output names the ssh command (with the buyer's known_hosts), the password
    // and the host key.
    let token = stack
        .mint
        .mint_token(5, TokenFormat::V4)
        .await
        .expect("mint");
    let token_file = write_token(cfg, "human.cashu", &token).await;
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
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ssh -o UserKnownHostsFile=")
            && text.contains(" -p ")
            && text.contains("password: ")
            && text.contains("host key: SHA256:"),
        "{text}"
    );

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_service_refuses_without_touching_the_token() {
    // One port: no room for a second lease, which is known before the token is redeemed.
    let stack = DevStack::start_with(&args("2450-2450"), terms())
        .await
        .expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    let relay = stack.relay_url().to_string();
    let service = stack.service_key.to_hex();
    assert!(paygress(cfg, &["keygen"]).await.status.success());

    let first = stack
        .mint
        .mint_token(5, TokenFormat::V4)
        .await
        .expect("mint");
    let f = write_token(cfg, "a.cashu", &first).await;
    let out = paygress(
        cfg,
        &[
            "request",
            "--service",
            &service,
            "--relay",
            &relay,
            "--token",
            &f,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");

    let second = stack
        .mint
        .mint_token(7, TokenFormat::V4)
        .await
        .expect("mint");
    let f = write_token(cfg, "b.cashu", &second).await;
    let out = paygress(
        cfg,
        &[
            "request",
            "--service",
            &service,
            "--relay",
            &relay,
            "--token",
            &f,
            "--json",
        ],
    )
    .await;
    assert!(!out.status.success(), "an error reply fails the command");
    let reply = json(&out);
    assert_eq!(reply["type"], "error");
    // Capacity is checked before the token is touched: refused, and still the buyer's.
    assert_eq!(reply["code"], "unavailable");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("not redeemed")),
        "{reply}"
    );
    assert_eq!(
        stack.mint.redeem_as_buyer(&second).await.expect("redeems"),
        7
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_relay_says_the_token_was_not_spent() {
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    assert!(paygress(cfg, &["keygen"]).await.status.success());
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = format!("ws://127.0.0.1:{port}");
    let service = paygress_nostr::nostr_sdk::Keys::generate()
        .public_key()
        .to_hex();
    let out = paygress(
        cfg,
        &[
            "request",
            "--service",
            &service,
            "--relay",
            &relay,
            "--token",
            "cashuBnotreallyatoken",
            "--timeout",
            "5",
        ],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&relay) && err.contains("not spent"), "{err}");
}
