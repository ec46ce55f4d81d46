//! Logging in to what the buyer CLI bought (the buyer's SSH key, the verified host key)
//! and payments locked to the service, with the real `paygress` binary against a dev
//! stack in this process.
#![cfg(feature = "dev")]

mod buyer_common;

use std::path::Path;

use buyer_common::{args, json, paygress, terms, write_token};
use paygress_cashu::testkit::TokenFormat;
use paygress_core::CashuToken;
use paygress_nostr::nostr_sdk::ToBech32;
use paygress_testkit::dev::DevStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_key_logs_in_alone_and_the_host_key_is_verified() {
    let stack = DevStack::start_with(&args("2580-2589"), terms())
        .await
        .expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    let relay = stack.relay_url().to_string();
    let service = stack.service_key.to_hex();
    assert!(paygress(cfg, &["keygen"]).await.status.success());
    // The buyer's usual key, picked up without a flag.
    std::fs::create_dir(cfg.join(".ssh")).expect("mkdir");
    let key = cfg.join(".ssh/id_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());

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
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let access = json(&out);
    assert_eq!(access["password_login"], false, "{access}");
    let fingerprint = access["host_keys"][0]["fingerprint"]
        .as_str()
        .expect("a host key in the reply")
        .to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{access}");
    let known_hosts = access["known_hosts_file"]
        .as_str()
        .expect("known_hosts written");
    assert_eq!(Path::new(known_hosts), cfg.join("known_hosts"));
    let port = access["node_port"].as_u64().expect("port").to_string();
    let command = access["ssh_command"].as_str().expect("an ssh command");
    assert!(
        command.contains(&format!("-o UserKnownHostsFile={known_hosts}")),
        "{command}"
    );

    // The printed command logs in with the key, the host verified strictly from the
    // written entry (no trust on first use: StrictHostKeyChecking=yes).
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "ssh");
    let login = tokio::process::Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR"])
        .args(&words[1..])
        .arg("echo verified-login; cat ~/.paygress/lease.json")
        .env("HOME", cfg)
        .output()
        .await
        .expect("ssh");
    let stdout = String::from_utf8_lossy(&login.stdout);
    assert!(stdout.starts_with("verified-login\n"), "{login:?}");
    let pod = access["pod_name"].as_str().expect("pod");
    assert!(
        stdout.contains(pod),
        "the lease file names the pod: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "paygress topup --service {}",
            stack.service_key.to_bech32().expect("npub")
        )),
        "the top-up command names the service: {stdout}"
    );

    // The password does not log in.
    let password = access["ssh_password"].as_str().expect("password");
    let refused = tokio::process::Command::new("sshpass")
        .args(["-p", password, "ssh"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={known_hosts}"))
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args(["-o", "NumberOfPasswordPrompts=1", "-p", &port])
        .arg(format!(
            "user@{}",
            access["ssh_host"].as_str().expect("host")
        ))
        .arg("echo password-login")
        .output()
        .await
        .expect("sshpass");
    assert!(!refused.status.success(), "{refused:?}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("password-login"));

    // The offer names the same host key.
    let out = paygress(cfg, &["offers", "--relay", &relay, "--no-check", "--json"]).await;
    let offers = json(&out);
    let ours = offers
        .as_array()
        .expect("a list")
        .iter()
        .find(|o| o["service"] == service.as_str())
        .unwrap_or_else(|| panic!("service not listed: {offers}"));
    assert_eq!(ours["offer"]["host_key_fingerprint"], fingerprint.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_locked_to_the_service_buys_a_lease_and_nobody_else_can_spend_it() {
    let stack = DevStack::start_with(&args("2590-2599"), terms())
        .await
        .expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    let relay = stack.relay_url().to_string();
    let service = stack.service_key.to_hex();
    assert!(paygress(cfg, &["keygen"]).await.status.success());

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
            "--lock",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let access = json(&out);
    assert_eq!(access["type"], "access_details", "{access}");
    assert_eq!(access["duration_seconds"], 120);
    // Change comes back as usual (10 sat paid, 2 minutes at 60 sat/hour cost 2).
    let change_file = access["saved_token_file"].as_str().expect("change saved");
    let change = CashuToken::new(std::fs::read_to_string(change_file).expect("read").trim());
    assert_eq!(
        stack.mint.redeem_as_buyer(&change).await.expect("redeems"),
        8
    );

    // The original token was swapped into the locked one; the locked one (kept under
    // tokens/) is spent by the service, and was never spendable by anyone else.
    assert!(stack.mint.redeem_as_buyer(&token).await.is_err());
    let locked_file = std::fs::read_dir(cfg.join("tokens"))
        .expect("tokens")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-locked.cashu"))
        .expect("a copy of the locked payment");
    let locked = CashuToken::new(std::fs::read_to_string(locked_file).expect("read").trim());
    assert!(stack.mint.redeem_as_buyer(&locked).await.is_err());

    // The offer says which key payments may be locked to.
    let out = paygress(cfg, &["offers", "--relay", &relay, "--no-check", "--json"]).await;
    let offers = json(&out);
    let ours = offers
        .as_array()
        .expect("a list")
        .iter()
        .find(|o| o["service"] == service.as_str())
        .unwrap_or_else(|| panic!("service not listed: {offers}"));
    let key = ours["offer"]["locking_key"]
        .as_str()
        .expect("a locking key");
    assert_eq!(&key[2..], service.as_str(), "the service's Nostr key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_locked_to_someone_else_is_refused_untouched() {
    use paygress_cashu::cdk::nuts::SecretKey;
    let stack = DevStack::start_with(&args("2600-2609"), terms())
        .await
        .expect("stack");
    let home = tempfile::tempdir().expect("tempdir");
    let cfg = home.path();
    let relay = stack.relay_url().to_string();
    let service = stack.service_key.to_hex();
    assert!(paygress(cfg, &["keygen"]).await.status.success());
    let plain = stack
        .mint
        .mint_token(10, TokenFormat::V4)
        .await
        .expect("mint");
    let stranger = SecretKey::generate().public_key().to_hex();
    let refund = SecretKey::generate().public_key().to_hex();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let locked = paygress_cashu::lock_token(&plain, &stranger, &refund, now + 3600)
        .await
        .expect("lock");
    let token_file = write_token(cfg, "pay.cashu", &locked.token).await;
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
            "--json",
        ],
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    let reply = json(&out);
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(
        reply.get("refund_token").is_none(),
        "nothing was redeemed: {reply}"
    );
}
