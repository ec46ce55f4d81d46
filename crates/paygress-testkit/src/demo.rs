//! `paygress dev --demo`: a scripted buyer, narrating each step.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use paygress_cashu::testkit::TokenFormat;
use paygress_core::{AccessDetails, Reply, SpawnRequest, TopUpRequest};
use paygress_nostr::BuyerClient;
use paygress_nostr::nostr_sdk::Keys;

use crate::dev::DevStack;

fn step(n: u32, text: &str) {
    println!();
    println!("== {n}. {text}");
}

/// A system `ssh` command logging in to a lease and running `command`; the password
/// prompt is answered through `SSH_ASKPASS` (no `sshpass` needed), by a helper script
/// written to `workdir`.
pub fn ssh_command(
    access: &AccessDetails,
    command: &str,
    workdir: &Path,
) -> Result<tokio::process::Command> {
    let askpass = workdir.join("askpass.sh");
    std::fs::write(
        &askpass,
        "#!/bin/sh\nprintf '%s\\n' \"$PAYGRESS_DEMO_PASSWORD\"\n",
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
    }
    let port = access.node_port.unwrap_or(access.ssh_port).to_string();
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "ConnectTimeout=10",
        "-p",
        &port,
        &format!("{}@{}", access.ssh_username, access.ssh_host),
        command,
    ])
    .env("SSH_ASKPASS", &askpass)
    .env("SSH_ASKPASS_REQUIRE", "force")
    .env("DISPLAY", "paygress-demo")
    .env("PAYGRESS_DEMO_PASSWORD", access.ssh_password.expose())
    .stdin(Stdio::null())
    .kill_on_drop(true);
    Ok(cmd)
}

/// Logs in with [`ssh_command`] and returns the command's stdout; fails if ssh does.
pub async fn ssh_run(access: &AccessDetails, command: &str, workdir: &Path) -> Result<String> {
    let output = ssh_command(access, command, workdir)?
        .output()
        .await
        .context("running the system ssh client (install openssh-client)")?;
    if !output.status.success() {
        bail!(
            "ssh exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Plays the buyer against a running dev stack.
pub async fn run(stack: &DevStack) -> Result<()> {
    step(
        1,
        "The buyer gets ecash: 100 sat minted from the test mint (fake Lightning)",
    );
    let token = stack
        .mint
        .mint_token(100, TokenFormat::V4)
        .await
        .context("minting a token")?;
    println!(
        "   token: cashuB… ({} bytes; bearer money, not shown)",
        token.len()
    );

    step(
        2,
        "The buyer sends an encrypted kind-1000 request over Nostr (NIP-44)",
    );
    let buyer = BuyerClient::connect(Keys::generate(), &[stack.relay_url()], stack.service_key)
        .await?
        .with_timeout(Duration::from_secs(30));
    println!("   buyer pubkey: {}", buyer.public_key().to_hex());
    println!(
        "   request: {{\"ssh_username\":\"alice\",\"duration_minutes\":30,\"cashu_token\":\"cashuB…\"}}"
    );
    let reply = buyer
        .spawn(
            SpawnRequest::new(token)
                .with_ssh_username("alice")
                .with_duration_minutes(30),
        )
        .await?;
    let access = match reply {
        Reply::AccessDetails(a) => a,
        Reply::Error(e) => bail!("the service refused: {:?}: {}", e.code, e.message),
        other => bail!("unexpected reply: {other:?}"),
    };

    step(
        3,
        "The service replied with a kind-1001 event; decrypted, it says:",
    );
    println!("   pod_name   : {}", access.pod_name);
    println!(
        "   ssh        : {}@{} port {}",
        access.ssh_username,
        access.ssh_host,
        access.node_port.unwrap_or(access.ssh_port)
    );
    println!("   password   : {}", access.ssh_password.expose());
    println!("   expires_at : {}", access.expires_at);
    if let Some(change) = &access.change_token {
        println!(
            "   change     : a token for the unspent part ({} bytes); 30 min at 60 sat/h cost 30 sat of 100",
            change.len()
        );
    }
    for line in &access.instructions {
        println!("   > {line}");
    }

    step(
        4,
        "The buyer logs in with the system ssh client and runs a command",
    );
    let workdir = tempfile::tempdir()?;
    let out = ssh_run(
        &access,
        "echo \"hello from $USER in $(pwd)\"; uname -sr",
        workdir.path(),
    )
    .await?;
    for line in out.lines() {
        println!("   | {line}");
    }

    step(
        5,
        "The buyer tops up with 20 sat (kind 1002): the expiry moves by 20 minutes",
    );
    let topup = stack.mint.mint_token(20, TokenFormat::V4).await?;
    let reply = buyer
        .top_up(TopUpRequest {
            pod_name: access.pod_name.to_string(),
            cashu_token: topup,
        })
        .await?;
    match reply {
        Reply::TopUp(t) => {
            println!("   old expiry : {}", access.expires_at);
            println!("   new expiry : {} (+{} s)", t.expires_at, t.added_seconds);
        }
        Reply::Error(e) => bail!("top-up refused: {:?}: {}", e.code, e.message),
        other => bail!("unexpected reply: {other:?}"),
    }

    step(6, "Done");
    println!("   The lease ends by itself at its expiry: logins are refused, its processes");
    println!("   are killed and its home directory is removed.");
    buyer.shutdown().await;
    Ok(())
}
