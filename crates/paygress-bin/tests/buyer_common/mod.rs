//! What the buyer CLI tests share: the dev stack's options, the real `paygress` binary
//! run with a buyer directory of its own, and reading its JSON.
#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

use paygress_core::{CashuToken, ServiceConfig};
use paygress_testkit::dev::DevOptions;
use serde_json::Value;

/// A dev stack on `ports` (a range of the local backend's SSH ports).
pub fn args(ports: &str) -> DevOptions {
    DevOptions {
        data_dir: None,
        http_port: 0,
        port_range: ports.to_owned(),
        unsandboxed: false,
    }
}

/// The service's terms: the defaults, reachable on 127.0.0.1.
pub fn terms() -> ServiceConfig {
    ServiceConfig::default()
        .with_name("cli-test")
        .with_ssh_host("127.0.0.1")
}

/// `paygress ARGS` with `config_dir` as the buyer's directory and home.
pub fn command(config_dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_paygress"));
    c.args(args)
        .env("PAYGRESS_CONFIG_DIR", config_dir)
        // No ~/.ssh/id_ed25519.pub of whoever runs the tests is sent by default.
        .env("HOME", config_dir)
        .env_remove("PAYGRESS_NSEC")
        .env("RUST_LOG", "warn");
    c
}

/// Runs `paygress ARGS` to its end.
pub async fn paygress(config_dir: &Path, args: &[&str]) -> Output {
    command(config_dir, args)
        .output()
        .await
        .expect("runs paygress")
}

/// Stdout as one JSON document.
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Stdout as one JSON document per line.
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "line is not JSON ({e}): {l}\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect()
}

/// Writes `token` to `dir/name`; returns the path.
pub async fn write_token(dir: &Path, name: &str, token: &CashuToken) -> String {
    let path = dir.join(name);
    std::fs::write(&path, token.expose()).expect("write token");
    path.display().to_string()
}
