//! One config path: every setting `paygress serve` reads is documented in
//! `deploy/paygress.env.example`, and the optional TOML file gives defaults that flags
//! and environment variables override.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::{Command, Output};

fn paygress(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paygress"));
    cmd.args(args);
    for name in [
        "RUN_MODE",
        "WHITELISTED_MINTS",
        "PAYMENT_RATE_SATS_PER_HOUR",
        "PAYGRESS_CONFIG",
    ] {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Names of the form `NAME=` (set or commented out) in the example env file.
fn example_names() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/paygress.env.example"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim();
            let (name, _) = l.split_once('=')?;
            (!name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
            .then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn env_example_names_every_variable_of_serve() {
    let out = paygress(&["serve", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let in_help: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect();
    assert!(in_help.len() > 30, "{in_help:?}");
    let mut documented = example_names();
    // Named in a comment (it comes from a Secret).
    documented.insert("NOSTR_PRIVATE_KEY".to_owned());
    let missing: Vec<_> = in_help.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "not in deploy/paygress.env.example: {missing:?}"
    );
    let unknown: Vec<_> = documented
        .iter()
        .filter(|n| !in_help.contains(*n) && *n != "RUST_LOG")
        .collect();
    assert!(
        unknown.is_empty(),
        "not settings of paygress serve: {unknown:?}"
    );
}

#[test]
fn config_file_gives_defaults_that_env_and_flags_override_and_the_key_stays_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paygress.toml");
    let key = "4242424242424242424242424242424242424242424242424242424242424242";
    std::fs::write(
        &file,
        format!(
            "run_mode = \"http\"\nwhitelisted_mints = [\"http://a.test\", \"http://b.test\"]\n\
             payment_rate_sats_per_hour = 90\nSSH_HOST = \"lease.example\"\nmax_leases = 7\n\
             NOSTR_PRIVATE_KEY = \"{key}\"\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = paygress(
        &[
            "serve",
            "--config",
            file,
            "--check-config",
            "--max-leases",
            "9",
        ],
        &[("PAYMENT_RATE_SATS_PER_HOUR", "120")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("run_mode: Http"), "{text}");
    assert!(
        text.contains("\"http://a.test\",") && text.contains("\"http://b.test\","),
        "{text}"
    );
    assert!(text.contains("ssh_host: \"lease.example\""), "{text}");
    // The environment overrides the file; a flag overrides both.
    assert!(text.contains("payment_rate_sats_per_hour: 120"), "{text}");
    assert!(
        text.contains("max_leases: Some(\n        9,\n    )"),
        "{text}"
    );
    assert!(!text.contains(key), "{text}");
    assert!(text.contains("<redacted>"), "{text}");

    // The same file through PAYGRESS_CONFIG.
    let out = paygress(&["serve", "--check-config"], &[("PAYGRESS_CONFIG", file)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("payment_rate_sats_per_hour: 90"),
        "{text}"
    );
}

#[test]
fn a_config_file_with_an_unknown_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paygress.toml");
    std::fs::write(
        &file,
        "whitelisted_mints = [\"http://a.test\"]\nrun_mod = \"http\"\n",
    )
    .unwrap();
    let out = paygress(
        &[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--check-config",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown setting \"run_mod\""), "{err}");
}

#[test]
fn operator_settings_are_serve_settings_from_the_file_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paygress.toml");
    std::fs::write(
        &file,
        "whitelisted_mints = [\"http://a.test\"]\nlog_format = \"json\"\n\
         METRICS_ADDR = \"127.0.0.1:9108\"\nshutdown_grace_secs = 45\n\
         WITHDRAW_TO = \"op@wallet.test\"\nwithdraw_above_sats = 20000\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = paygress(
        &["serve", "--config", file, "--check-config"],
        &[("SHUTDOWN_GRACE_SECS", "50")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "log_format: Json",
        "\"127.0.0.1:9108\"",
        // The environment overrides the file.
        "shutdown_grace_secs: 50",
        "\"op@wallet.test\"",
        "20000",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    // Empty values are unset (env files keep `NAME=` lines).
    let out = paygress(
        &["serve", "--check-config"],
        &[
            ("WHITELISTED_MINTS", "http://a.test"),
            ("METRICS_ADDR", ""),
            ("WITHDRAW_TO", ""),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Refused before anything starts.
    for (env, why) in [
        (("METRICS_ADDR", "nowhere"), "METRICS_ADDR"),
        (("WITHDRAW_TO", "op@wallet.test"), "WITHDRAW_ABOVE_SATS"),
        (("WITHDRAW_TO", "not-an-address"), "WITHDRAW_TO"),
        (("LOG_FORMAT", "xml"), "xml"),
        (("SHUTDOWN_GRACE_SECS", "soon"), "soon"),
    ] {
        let out = paygress(
            &["serve", "--check-config"],
            &[("WHITELISTED_MINTS", "http://a.test"), env],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} accepted");
        assert!(err.contains(why), "{env:?}: {err}");
    }
}
