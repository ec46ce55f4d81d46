//! Service tests: spawn requests refused before payment, and what a request carries
//! to the backend (username, image, tier, keys).

use super::*;

// ---------------------------------------------------------------- spawn: refused before payment

/// A service whose verifier, backend and journal fail the test if the payment is
/// touched or a pod is created.
fn untouchable(face: Option<Amount>) -> Paygress {
    let mut ports = Ports::new().never_redeems().never_issues();
    match face {
        Some(face) => ports = ports.token_worth(face),
        None => {
            ports.verifier.expect_inspect().never();
        }
    }
    ports
        .verifier
        .expect_accepted_mints()
        .returning(|| vec![mint()]);
    ports
        .verifier
        .expect_accepted_units()
        .returning(|| vec![Unit::Sat]);
    ports.verifier.expect_locking_key().returning(|| None);
    let mut backend = mock_backend();
    backend.expect_name().return_const("mock");
    backend.expect_create().never();
    backend.expect_extend().never();
    backend.expect_delete().never();
    ports.backend = Some(backend);
    let mut journal = MockJournal::new();
    journal.expect_get().returning(|_| Ok(None));
    journal.expect_put().never();
    ports.journal = Some(journal);
    ports.build().0
}

#[tokio::test]
async fn insufficient_token_for_the_duration_is_refused_without_redeeming() {
    let service = untouchable(Some(Amount::sat(59)));
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
    assert!(err.refund_token.is_none());
    assert!(err.message.contains("not redeemed"), "{}", err.message);
}

#[tokio::test]
async fn one_msat_cannot_buy_an_hour() {
    let service = untouchable(Some(Amount::msat(1)));
    let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
}

#[tokio::test]
async fn token_below_the_minimum_lease_without_duration_is_refused_without_redeeming() {
    // 999 msat buys 59.94 s at 60 sat/hour; the minimum lease is 60 s.
    let service = untouchable(Some(Amount::msat(999)));
    let err = expect_error(spawn(&service, "1", spawn_req(None)).await);
    assert_eq!(err.code, ErrorCode::InsufficientPayment);
    assert!(err.refund_token.is_none());
}

#[tokio::test]
async fn duration_out_of_range_is_refused_before_the_token_is_read() {
    for minutes in [0, MAX_SECONDS / 60 + 1, u64::MAX / 60 + 1, u64::MAX] {
        let service = untouchable(None);
        let err = expect_error(spawn(&service, "1", spawn_req(Some(minutes))).await);
        assert_eq!(err.code, ErrorCode::DurationOutOfRange, "{minutes} minutes");
    }
}

#[tokio::test]
async fn duration_at_the_bounds_is_accepted() {
    for (minutes, face) in [(1, 1), (MAX_SECONDS / 60, 1440)] {
        let (service, _, _, _) = Ports::new()
            .token_worth(Amount::sat(face))
            .redeems(Amount::sat(face))
            .never_issues()
            .build();
        let access = expect_access(spawn(&service, "1", spawn_req(Some(minutes))).await);
        assert_eq!(access.duration_seconds, minutes * 60);
    }
}

#[tokio::test]
async fn bad_and_reserved_usernames_are_refused_before_the_token_is_read() {
    for name in [
        "",
        "root",
        "Root",
        "abc",
        "1abc",
        "-x",
        "a b",
        "a;rm -rf /",
        "../etc",
        "ali.ce",
        "élise",
        "x\n",
    ] {
        let service = untouchable(None);
        let mut req = spawn_req(Some(60));
        req.ssh_username = Some(name.to_owned());
        let err = expect_error(spawn(&service, "1", req).await);
        assert_eq!(err.code, ErrorCode::InvalidUsername, "{name:?}");
    }
    let long = "a".repeat(33);
    let service = untouchable(None);
    let mut req = spawn_req(Some(60));
    req.ssh_username = Some(long);
    assert_eq!(
        expect_error(spawn(&service, "1", req).await).code,
        ErrorCode::InvalidUsername
    );
}

#[tokio::test]
async fn missing_username_defaults_to_user() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    let mut req = spawn_req(Some(60));
    req.ssh_username = None;
    let access = expect_access(spawn(&service, "1", req).await);
    assert_eq!(access.ssh_username, "user");
    assert_eq!(
        backend
            .spec(&access.pod_name)
            .expect("lease")
            .username
            .as_str(),
        "user"
    );
}

#[tokio::test]
async fn image_not_on_the_allow_list_is_refused_before_the_token_is_read() {
    for image in [
        "evil/miner:latest",
        "ubuntu:24.04 ",
        "",
        "linuxserver/openssh-server",
    ] {
        let service = untouchable(None);
        let mut req = spawn_req(Some(60));
        req.pod_image = Some(image.to_owned());
        let err = expect_error(spawn(&service, "1", req).await);
        assert_eq!(err.code, ErrorCode::ImageNotAllowed, "{image:?}");
        assert!(err.message.contains("ubuntu:24.04"), "{}", err.message);
    }
}

#[tokio::test]
async fn default_and_allowed_images_are_used() {
    for (asked, used) in [
        (None, "linuxserver/openssh-server:latest"),
        (
            Some("linuxserver/openssh-server:latest"),
            "linuxserver/openssh-server:latest",
        ),
        (Some("ubuntu:24.04"), "ubuntu:24.04"),
    ] {
        let (service, backend, _, _) = Ports::new()
            .token_worth(Amount::sat(60))
            .redeems(Amount::sat(60))
            .build();
        let mut req = spawn_req(Some(60));
        req.pod_image = asked.map(str::to_owned);
        let access = expect_access(spawn(&service, "1", req).await);
        assert_eq!(backend.spec(&access.pod_name).expect("lease").image, used);
    }
}

#[tokio::test]
async fn unknown_tier_is_refused_before_the_token_is_read() {
    let service = untouchable(None);
    let mut req = spawn_req(Some(60));
    req.tier = Some("huge".to_owned());
    let err = expect_error(spawn(&service, "1", req).await);
    assert_eq!(err.code, ErrorCode::UnknownTier);
    assert!(err.message.contains("standard, big"), "{}", err.message);
}

#[tokio::test]
async fn bad_ssh_public_keys_are_refused_before_the_token_is_read() {
    for key_line in [
        "",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 AAAA",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI$(rm -rf)",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG\nssh-rsa AAAAB3NzaC1yc2EAAAADAQAB",
        "command=\"sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG",
    ] {
        let service = untouchable(None);
        let mut req = spawn_req(Some(60));
        req.ssh_public_key = Some(key_line.to_owned());
        let err = expect_error(spawn(&service, "1", req).await);
        assert_eq!(err.code, ErrorCode::InvalidPublicKey, "{key_line:?}");
    }
}

#[tokio::test]
async fn a_valid_ssh_public_key_reaches_the_backend() {
    let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ alice@laptop";
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    let mut req = spawn_req(Some(60));
    req.ssh_public_key = Some(format!("  {line}\n"));
    let access = expect_access(spawn(&service, "1", req).await);
    assert_eq!(
        backend
            .spec(&access.pod_name)
            .expect("lease")
            .ssh_public_key
            .as_deref(),
        Some(line)
    );
}

#[tokio::test]
async fn a_key_turns_password_login_off_unless_both_are_asked_for() {
    let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ alice@laptop";
    for (key, asked, expected) in [
        (None, None, true),
        (None, Some(true), true),
        (Some(line), None, false),
        (Some(line), Some(false), false),
        (Some(line), Some(true), true),
    ] {
        let (service, backend, _, _) = Ports::new()
            .token_worth(Amount::sat(60))
            .redeems(Amount::sat(60))
            .build();
        let mut req = spawn_req(Some(60));
        req.ssh_public_key = key.map(str::to_owned);
        req.password_login = asked;
        let access = expect_access(spawn(&service, "1", req).await);
        let spec = backend.spec(&access.pod_name).expect("lease");
        assert_eq!(spec.password_login, expected, "{key:?} {asked:?}");
        assert_eq!(access.password_login, expected, "{key:?} {asked:?}");
        let command = &access.instructions[0];
        assert_eq!(
            command.contains("PreferredAuthentications=password"),
            expected,
            "{command}"
        );
    }
}

#[tokio::test]
async fn password_login_off_without_a_key_is_refused_before_the_token_is_read() {
    let service = untouchable(None);
    let mut req = spawn_req(Some(60));
    req.password_login = Some(false);
    let err = expect_error(spawn(&service, "1", req).await);
    assert_eq!(err.code, ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn the_backends_host_keys_are_in_the_reply() {
    let (service, backend, _, _) = Ports::new()
        .token_worth(Amount::sat(60))
        .redeems(Amount::sat(60))
        .build();
    let key = crate::protocol::HostKey {
        public_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ"
                .into(),
        fingerprint: "SHA256:abc".into(),
    };
    backend.set_host_keys(vec![key.clone()]);
    let access = expect_access(spawn(&service, "1", spawn_req(Some(60))).await);
    assert_eq!(access.host_keys, vec![key]);
    assert!(
        access
            .instructions
            .iter()
            .any(|l| l == "Host key: SHA256:abc"),
        "{:?}",
        access.instructions
    );
}

#[tokio::test]
async fn offline_token_errors_are_refused_without_redeeming() {
    let cases: Vec<(fn() -> PaymentError, ErrorCode)> = vec![
        (
            || PaymentError::MintNotAccepted(MintUrl::new("https://evil.example")),
            ErrorCode::MintNotAccepted,
        ),
        (
            || PaymentError::UnsupportedUnit("usd".into()),
            ErrorCode::UnsupportedUnit,
        ),
        (
            || PaymentError::InvalidToken("garbage".into()),
            ErrorCode::InvalidToken,
        ),
        (|| PaymentError::AlreadySpent, ErrorCode::TokenAlreadySpent),
    ];
    for (error, code) in cases {
        let mut ports = Ports::new().never_redeems().never_issues();
        ports
            .verifier
            .expect_inspect()
            .times(1)
            .returning(move |_| Err(error()));
        let mut journal = MockJournal::new();
        journal.expect_get().returning(|_| Ok(None));
        journal.expect_put().never();
        ports.journal = Some(journal);
        let (service, backend, _, _) = ports.build();
        let err = expect_error(spawn(&service, "1", spawn_req(Some(60))).await);
        assert_eq!(err.code, code);
        assert!(err.refund_token.is_none());
        assert!(backend.is_empty());
    }
}

#[tokio::test]
async fn zero_value_token_is_refused_without_redeeming() {
    let service = untouchable(Some(Amount::sat(0)));
    assert_eq!(
        expect_error(spawn(&service, "1", spawn_req(None)).await).code,
        ErrorCode::InvalidToken
    );
}
