//! Tokens that must be refused: foreign mints, prefix tricks, junk, wrong units.

mod common;

use std::net::TcpListener as StdListener;
use std::str::FromStr;

use common::{balance, verifier, verifier_for};
use paygress_cashu::cdk::mint_url::MintUrl as CdkMintUrl;
use paygress_cashu::cdk::nuts::{CurrencyUnit, Id, Proof, PublicKey, Token};
use paygress_cashu::cdk::secret::Secret;
use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_cashu::{CashuVerifier, MAX_TOKEN_LEN};
use paygress_core::money::{MintUrl, Unit};
use paygress_core::ports::{PaymentError, PaymentVerifier};
use paygress_core::secret::CashuToken;
use tokio::io::AsyncWriteExt;

/// A structurally valid token (never minted) claiming `mint`, in `unit`.
fn synthetic(mint: &str, amounts: &[u64], unit: CurrencyUnit, v3: bool) -> CashuToken {
    let id = Id::from_str("009a1f293253e41e").expect("id");
    let c =
        PublicKey::from_hex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
            .expect("point");
    let proofs = amounts
        .iter()
        .map(|a| Proof::new((*a).into(), id, Secret::generate(), c))
        .collect();
    let token = Token::new(CdkMintUrl::from_str(mint).expect("url"), proofs, None, unit);
    CashuToken::new(if v3 {
        token.to_v3_string()
    } else {
        token.to_string()
    })
}

/// Every entry point must refuse `token` with an error matching `want`.
async fn refused_everywhere(
    v: &CashuVerifier,
    token: &CashuToken,
    want: fn(&PaymentError) -> bool,
) {
    let e = v.inspect(token).expect_err("inspect accepted it");
    assert!(want(&e), "inspect: {e:?}");
    let e = v.receive(token).await.expect_err("redeem accepted it");
    assert!(want(&e), "redeem: {e:?}");
    let e = v.check(token).await.expect_err("check accepted it");
    assert!(want(&e), "check: {e:?}");
}

fn not_accepted(e: &PaymentError) -> bool {
    matches!(e, PaymentError::MintNotAccepted(_))
}

fn invalid(e: &PaymentError) -> bool {
    matches!(e, PaymentError::InvalidToken(_))
}

/// Whether anything connected to `listener` (non-blocking, so not a timing question:
/// a finished loopback connect is already in the accept queue).
fn was_contacted(listener: &StdListener) -> bool {
    listener.set_nonblocking(true).expect("nonblocking");
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

#[tokio::test]
async fn token_of_a_real_non_whitelisted_mint_never_reaches_it() {
    let ours = TestMint::start().await.expect("mint");
    let theirs = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&ours).await;
    for format in [TokenFormat::V3, TokenFormat::V4] {
        let token = theirs.mint_token(10, format).await.expect("token");
        theirs.requests().clear();
        ours.requests().clear();
        refused_everywhere(&v, &token, not_accepted).await;
        assert!(
            theirs.requests().all().is_empty(),
            "{:?}",
            theirs.requests().all()
        );
        assert!(
            ours.requests().all().is_empty(),
            "{:?}",
            ours.requests().all()
        );
        // Handed back untouched: the payer can still spend it.
        assert_eq!(
            theirs.redeem_as_buyer(&token).await.expect("still good"),
            10
        );
    }
    assert_eq!(balance(&v, &ours.url(), Unit::Sat).await, 0);
}

#[tokio::test]
async fn port_prefix_trick_is_rejected_without_contact() {
    // A listener standing in for the attacker's mint; whitelist a proper prefix of it.
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let evil = format!("http://127.0.0.1:{port}");
    let prefix = format!("http://127.0.0.1:{}", &port[..port.len() - 1]);
    let (v, _dir) = verifier(&[MintUrl::new(prefix.clone())]).await;
    assert_eq!(v.mints(), &[MintUrl::new(prefix)]);

    for v3 in [true, false] {
        let token = synthetic(&evil, &[8], CurrencyUnit::Sat, v3);
        refused_everywhere(&v, &token, not_accepted).await;
        // Path and trailing-slash variants of a non-whitelisted mint too.
        let token = synthetic(&format!("{evil}/"), &[8], CurrencyUnit::Sat, v3);
        refused_everywhere(&v, &token, not_accepted).await;
    }
    let err = v
        .issue(
            &MintUrl::new(evil.clone()),
            paygress_core::money::Amount::sat(1),
        )
        .await;
    assert!(matches!(err, Err(PaymentError::Issue(_))), "{err:?}");
    assert!(
        !was_contacted(&listener),
        "the non-whitelisted mint was contacted"
    );

    // Control: the detector does see a verifier that does contact this address.
    let (trusting, _dir2) = verifier(&[MintUrl::new(evil.clone())]).await;
    let token = synthetic(&evil, &[8], CurrencyUnit::Sat, true);
    let redeem = tokio::spawn(async move { trusting.receive(&token).await });
    listener.set_nonblocking(false).expect("blocking");
    let accepted = tokio::task::spawn_blocking(move || listener.accept().map(|(s, _)| drop(s)))
        .await
        .expect("join");
    assert!(accepted.is_ok());
    let err = redeem.await.expect("join").expect_err("no mint there");
    assert!(matches!(err, PaymentError::MintUnavailable(_)), "{err:?}");
}

#[tokio::test]
async fn host_suffix_trick_is_rejected() {
    let (v, _dir) = verifier(&[MintUrl::new("https://mint.example")]).await;
    for v3 in [true, false] {
        let token = synthetic("https://mint.example.evil", &[8], CurrencyUnit::Sat, v3);
        refused_everywhere(&v, &token, not_accepted).await;
        let token = synthetic("https://mint.example:8443", &[8], CurrencyUnit::Sat, v3);
        refused_everywhere(&v, &token, not_accepted).await;
    }
    // The same mint written differently is the same mint (offline check only).
    let token = synthetic("HTTPS://Mint.Example:443/", &[8], CurrencyUnit::Sat, true);
    assert_eq!(
        v.inspect(&token).expect("same mint").mint,
        MintUrl::new("https://mint.example")
    );
}

#[tokio::test]
async fn junk_tokens_get_clear_errors() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    let url = mint.url();
    let mut junk: Vec<CashuToken> = vec![
        CashuToken::new(""),
        CashuToken::new("hello"),
        CashuToken::new("cashuA"),
        CashuToken::new("cashuB"),
        CashuToken::new("cashuA!!!not base64!!!"),
        CashuToken::new("cashuB%%%%"),
        // base64 of "{not json"
        CashuToken::new("cashuAe25vdCBqc29u"),
        // valid base64url, not CBOR
        CashuToken::new("cashuB_____________w"),
        CashuToken::new(format!("cashuB{}", "A".repeat(100 * 1024))),
        CashuToken::new(format!("cashuA{}", "eyJ0b2tlbiI6".repeat(9000))),
        CashuToken::new("x".repeat(100 * 1024)),
    ];
    // 100 KB of pseudo-random bytes, base64url-ish alphabet.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let random: String = (0..100 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            alphabet[(state % 64) as usize] as char
        })
        .collect();
    junk.push(CashuToken::new(format!("cashuB{random}")));
    assert!(junk.iter().any(|t| t.len() > MAX_TOKEN_LEN));

    // Zero amount and no proofs.
    junk.push(synthetic(url.as_str(), &[0], CurrencyUnit::Sat, true));
    junk.push(synthetic(url.as_str(), &[0, 0], CurrencyUnit::Sat, false));
    junk.push(synthetic(url.as_str(), &[], CurrencyUnit::Sat, false));

    mint.requests().clear();
    for token in &junk {
        refused_everywhere(&v, token, invalid).await;
    }
    assert!(
        mint.requests().all().is_empty(),
        "{:?}",
        mint.requests().all()
    );
}

#[tokio::test]
async fn wrong_unit_is_refused_offline() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    for unit in [
        CurrencyUnit::Usd,
        CurrencyUnit::Eur,
        CurrencyUnit::Custom("btc".into()),
    ] {
        for v3 in [true, false] {
            let token = synthetic(mint.url().as_str(), &[4], unit.clone(), v3);
            refused_everywhere(&v, &token, |e| {
                matches!(e, PaymentError::UnsupportedUnit(_))
            })
            .await;
        }
    }
    assert!(mint.requests().all().is_empty());
}

#[tokio::test]
async fn forged_proofs_at_the_right_mint_are_invalid() {
    let mint = TestMint::start().await.expect("mint");
    let (v, _dir) = verifier_for(&mint).await;
    // Unknown keyset id at a real mint: not decodable against its keysets.
    let token = synthetic(mint.url().as_str(), &[8], CurrencyUnit::Sat, true);
    let e = v.receive(&token).await.expect_err("forged");
    assert!(matches!(e, PaymentError::UnknownKeyset(_)), "{e:?}");
    assert_eq!(balance(&v, &mint.url(), Unit::Sat).await, 0);
}

/// A "mint" that answers every request with 200 and a body that is not JSON.
async fn garbage_mint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
                let body = "<html>definitely not a mint</html>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn garbage_answers_are_mint_unavailable() {
    let url = garbage_mint().await;
    let (v, _dir) = verifier(&[MintUrl::new(url.clone())]).await;
    let token = synthetic(&url, &[8], CurrencyUnit::Sat, false);
    let e = v.receive(&token).await.expect_err("garbage");
    assert!(matches!(e, PaymentError::MintUnavailable(_)), "{e:?}");
    let e = v.check(&token).await.expect_err("garbage");
    assert!(matches!(e, PaymentError::MintUnavailable(_)), "{e:?}");
}

#[tokio::test]
async fn refused_port_is_mint_unavailable() {
    // Bind then drop: nothing listens on the port any more.
    let port = StdListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("a")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (v, _dir) = verifier(&[MintUrl::new(url.clone())]).await;
    let token = synthetic(&url, &[8], CurrencyUnit::Sat, true);
    let e = v.receive(&token).await.expect_err("down");
    assert!(matches!(e, PaymentError::MintUnavailable(_)), "{e:?}");
}
