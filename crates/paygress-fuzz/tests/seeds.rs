//! Writes the seed corpus: valid inputs that reach deep code (a token the verifier
//! accepts, a request the service delivers, a gift wrap that unwraps). Run once, then
//! minimise with `cargo fuzz cmin`:
//! `cargo test -p paygress-fuzz --test seeds -- --ignored`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::str::FromStr;

use paygress_cashu::cdk::Amount;
use paygress_cashu::cdk::mint_url::MintUrl;
use paygress_cashu::cdk::nuts::{CurrencyUnit, Id, Proof, PublicKey, Token, TokenV3};
use paygress_cashu::cdk::secret::Secret;
use paygress_fuzz::nostr::{BUYER, EPHEMERAL, SERVICE};
use paygress_nostr::nostr_sdk::nips::nip44;
use paygress_nostr::nostr_sdk::{EventBuilder, JsonUtil, Keys, Kind, Tag, TagKind, Timestamp};
use paygress_nostr::wire::{self, Scheme};

fn write(target: &str, name: &str, data: impl AsRef<[u8]>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

fn with_mode(mode: u8, text: &str) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(text.as_bytes());
    v
}

const REQUESTS: &[(&str, &str)] = &[
    ("spawn-min", r#"{"cashu_token":"cashuBtoken"}"#),
    (
        "spawn-full",
        r#"{"cashu_token":"cashuBtoken","ssh_username":"alice","pod_image":"linuxserver/openssh-server:latest","duration_minutes":120,"tier":"standard","ssh_public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@host"}"#,
    ),
    (
        "topup",
        r#"{"pod_name":"ssh-pod-abc12345","cashu_token":"cashuAtoken"}"#,
    ),
    ("status", r#"{"pod_name":"ssh-pod-abc12345"}"#),
    (
        "unknown-field",
        r#"{"cashu_token":"t","durationminutes":3}"#,
    ),
    (
        "escapes",
        "{\"cashu_token\":\"\\u00e9\\ud83d\\ude00\",\"duration_minutes\":18446744073709551615}",
    ),
];

#[test]
#[ignore = "writes the seed corpus"]
fn write_seeds() {
    // names
    for (i, name) in [
        "ssh-pod-abc12345",
        "ssh-pod-ABC12345",
        "alice",
        "_svc",
        "bob-2",
        "root",
        "élise",
        &"a".repeat(33),
        &"é".repeat(100),
    ]
    .iter()
    .enumerate()
    {
        write("names", &i.to_string(), name);
    }

    // request JSON
    for (name, json) in REQUESTS {
        write("request_json", name, json);
    }

    // Nostr direct requests: plaintext to encrypt (modes 1, 2 for each kind), raw
    // ciphertexts and signed events (modes 0, 3).
    let service = &*SERVICE;
    let buyer = &*BUYER;
    for (name, json) in REQUESTS.iter().take(4) {
        let kind: u8 = match *name {
            "topup" => 1,
            "status" => 2,
            _ => 0,
        };
        write(
            "nostr_direct",
            &format!("{name}-nip44"),
            with_mode(kind * 4 + 1, json),
        );
        write(
            "nostr_direct",
            &format!("{name}-nip04"),
            with_mode(kind * 4 + 2, json),
        );
        for scheme in [Scheme::Nip44, Scheme::Nip04] {
            let c = wire::encrypt(scheme, buyer.secret_key(), &service.public_key(), json).unwrap();
            write(
                "nostr_direct",
                &format!("{name}-{scheme:?}-raw"),
                with_mode(kind * 4, &c),
            );
            let event = EventBuilder::new(Kind::Custom([1000, 1002, 1003][usize::from(kind)]), c)
                .tag(Tag::public_key(service.public_key()))
                .sign_with_keys(buyer)
                .unwrap();
            write(
                "nostr_direct",
                &format!("{name}-{scheme:?}-event"),
                with_mode(kind * 4 + 3, &event.as_json()),
            );
        }
    }

    // Gift wraps: rumor JSON (mode 2), seal JSON (mode 1), raw wrap content (mode 0).
    for (name, json) in REQUESTS.iter().take(4) {
        let mut rumor = EventBuilder::new(Kind::PrivateDirectMessage, *json)
            .tag(Tag::public_key(service.public_key()))
            .build(buyer.public_key());
        let mut hinted = EventBuilder::new(Kind::PrivateDirectMessage, *json)
            .tag(Tag::public_key(service.public_key()))
            .tag(Tag::custom(TagKind::k(), ["1000"]))
            .build(buyer.public_key());
        rumor.ensure_id();
        hinted.ensure_id();
        write(
            "nostr_gift_wrap",
            &format!("{name}-rumor"),
            with_mode(2, &rumor.as_json()),
        );
        write(
            "nostr_gift_wrap",
            &format!("{name}-rumor-k"),
            with_mode(2, &hinted.as_json()),
        );
        let seal = seal(buyer, &rumor.as_json());
        write(
            "nostr_gift_wrap",
            &format!("{name}-seal"),
            with_mode(1, &seal),
        );
        let wrap = nip44::encrypt(
            EPHEMERAL.secret_key(),
            &service.public_key(),
            &seal,
            nip44::Version::V2,
        )
        .unwrap();
        write(
            "nostr_gift_wrap",
            &format!("{name}-wrap"),
            with_mode(0, &wrap),
        );
    }

    // Cashu tokens: the NUT-00 test vectors (other mints), and tokens of the accepted
    // mint in both encodings.
    let vectors = include_str!("data/cashu_nut00_vectors.txt");
    for (i, t) in vectors.lines().enumerate() {
        write("cashu_token", &format!("nut00-{i}"), t);
    }
    let mint = MintUrl::from_str(paygress_fuzz::cashu::MINT).unwrap();
    let c =
        PublicKey::from_hex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
            .unwrap();
    let id = Id::from_str("009a1f293253e41e").unwrap();
    let proofs = |amounts: &[u64]| {
        amounts
            .iter()
            .map(|&a| Proof::new(Amount::from(a), id, Secret::generate(), c))
            .collect::<Vec<_>>()
    };
    for (name, amounts, unit) in [
        ("sat", &[1u64, 8][..], CurrencyUnit::Sat),
        ("msat", &[1024], CurrencyUnit::Msat),
        ("usd", &[2], CurrencyUnit::Usd),
        ("zero", &[0], CurrencyUnit::Sat),
    ] {
        let v4 = Token::new(
            mint.clone(),
            proofs(amounts),
            Some("memo".into()),
            unit.clone(),
        );
        write("cashu_token", &format!("v4-{name}"), v4.to_string());
        let v3 = TokenV3::new(mint.clone(), proofs(amounts), None, Some(unit)).unwrap();
        write("cashu_token", &format!("v3-{name}"), v3.to_string());
    }

    // HTTP requests (the in-memory tokens are cashuBtestfakecashu_1..4).
    for (name, req) in [
        ("healthz", "GET /healthz"),
        ("offer", "GET /offer"),
        ("openapi", "GET /openapi.json"),
        ("pods", "GET /pods\nx-cashu: cashuBtestfakecashu_2"),
        ("pod", "GET /pods/ssh-pod-abc12345"),
        ("auth", "GET /auth?token=cashuBtestfakecashu_2"),
        (
            "spawn-402",
            "POST /spawn-pod\ncontent-type: application/json\n\n{\"ssh_username\":\"alice\"}",
        ),
        (
            "spawn-body",
            "POST /spawn-pod\ncontent-type: application/json\n\n{\"cashu_token\":\"cashuBtestfakecashu_3\",\"ssh_username\":\"alice\",\"duration_minutes\":60}",
        ),
        (
            "spawn-header",
            "POST /spawn-pod\nx-cashu: cashuBtestfakecashu_4\nidempotency-key: k1\n\n{}",
        ),
        (
            "spawn-short",
            "POST /spawn-pod\nx-cashu: cashuBtestfakecashu_1\n\n",
        ),
        ("spawn-bad-json", "POST /spawn-pod\n\n{\"cashu_token\":"),
        (
            "topup",
            "POST /top-up-pod\nx-cashu: cashuBtestfakecashu_3\n\n{\"pod_name\":\"ssh-pod-abc12345\"}",
        ),
        (
            "topup-402",
            "POST /top-up-pod\n\n{\"pod_name\":\"ssh-pod-abc12345\"}",
        ),
        ("not-found", "DELETE /nothing"),
    ] {
        write("http_request", name, req);
    }
}

/// A seal (kind 13) of `rumor` from `author` to the service, as JSON.
fn seal(author: &Keys, rumor: &str) -> String {
    let sealed = nip44::encrypt(
        author.secret_key(),
        &SERVICE.public_key(),
        rumor,
        nip44::Version::V2,
    )
    .unwrap();
    EventBuilder::new(Kind::Seal, sealed)
        .custom_created_at(Timestamp::now())
        .sign_with_keys(author)
        .unwrap()
        .as_json()
}
