//! Printing a reply, for humans or as JSON, and saving the token it returns.

use anyhow::{Result, bail};
use paygress_buyer::{LoginHints, TokenKind};
use paygress_core::{ErrorCode, Reply};
use serde_json::json;

use super::IdentityArgs;

/// Prints a reply for humans or as JSON, saving any returned token. Fails on an error reply.
pub(super) fn report(id: &IdentityArgs, reply: &Reply, as_json: bool) -> Result<()> {
    report_with(id, reply, as_json, None)
}

/// [`report`], with how to log in to a new lease.
pub(super) fn report_with(
    id: &IdentityArgs,
    reply: &Reply,
    as_json: bool,
    login: Option<&LoginHints>,
) -> Result<()> {
    let saved = match reply.returned_token() {
        Some(t) => Some(id.home()?.save_token(TokenKind::of(reply), t)?),
        None => None,
    };
    if as_json {
        let mut v = serde_json::to_value(reply)?;
        if let Some(p) = &saved {
            v["saved_token_file"] = json!(p.display().to_string());
        }
        if let Some(login) = login {
            v["ssh_command"] = json!(login.command);
            if let Some(kh) = &login.known_hosts {
                v["known_hosts_file"] = json!(kh.display().to_string());
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match reply {
            Reply::AccessDetails(a) => {
                let port = a.node_port.unwrap_or(a.ssh_port);
                println!("Lease {} is ready until {}", a.pod_name, a.expires_at);
                println!();
                match login {
                    Some(l) => println!("  {}", l.command),
                    None => println!("  ssh -p {port} {}@{}", a.ssh_username, a.ssh_host),
                }
                if a.password_login {
                    println!("  password: {}", a.ssh_password.expose());
                } else if login.is_some_and(|l| l.identity.is_some()) {
                    println!("  login: your SSH key (password login is off)");
                } else {
                    println!("  login: the SSH key you sent (password login is off)");
                }
                match login.and_then(|l| l.known_hosts.as_ref()) {
                    Some(kh) => {
                        for k in &a.host_keys {
                            println!(
                                "  host key: {} (recorded in {})",
                                k.fingerprint,
                                kh.display()
                            );
                        }
                    }
                    None if a.host_keys.is_empty() => println!(
                        "  host key: not known in advance (the pod makes its own): ssh asks you to trust it on first login"
                    ),
                    None => {
                        for k in &a.host_keys {
                            println!("  host key: {}", k.fingerprint);
                        }
                    }
                }
                println!();
                for line in &a.instructions {
                    println!("  {line}");
                }
            }
            Reply::TopUp(t) => {
                println!(
                    "Lease {} extended by {} s; now paid until {}",
                    t.pod_name, t.added_seconds, t.expires_at
                );
            }
            Reply::Status(s) => {
                println!(
                    "Lease {}: {:?}, {} s left (until {}), tier {}{}",
                    s.pod_name,
                    s.state,
                    s.remaining_seconds,
                    s.expires_at,
                    s.tier,
                    s.node_port
                        .map(|p| format!(", port {p}"))
                        .unwrap_or_default()
                );
            }
            Reply::Released(r) => {
                println!("{}", r.message);
            }
            Reply::Error(e) => {
                eprintln!("The service refused: {} ({})", e.message, code_name(e.code));
            }
        }
        if let Some(p) = &saved {
            let what = match TokenKind::of(reply) {
                TokenKind::Refund => "Refund",
                TokenKind::Change => "Change",
                TokenKind::Locked => "Locked",
                TokenKind::TopUp => "Top-up",
            };
            eprintln!(
                "{what} token saved to {} (redeem it with your wallet)",
                p.display()
            );
        }
    }
    if let Reply::Error(e) = reply {
        bail!("request failed: {}", code_name(e.code));
    }
    Ok(())
}

pub(super) fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}
