//! The Nostr wire format: event kinds, encryption schemes, request parsing and the
//! offer's event content. Everything here is pure (no I/O) and shared by the service
//! side ([`crate::NostrTransport`]) and the buyer side ([`crate::client::BuyerClient`]).

use nostr_sdk::nips::{nip04, nip44};
use nostr_sdk::{Kind, PublicKey, SecretKey, TagKind, UnsignedEvent};
use paygress_core::{Offer, ReleaseRequest, Request, SpawnRequest, StatusRequest, TopUpRequest};
use serde::{Deserialize, Serialize};

use crate::error::NostrError;

/// Kind of a spawn request (content: encrypted [`SpawnRequest`] JSON).
pub const KIND_SPAWN: u16 = 1000;
/// Kind of every reply (content: encrypted `Reply` JSON, tags `e` = request, `p` = requester).
pub const KIND_REPLY: u16 = 1001;
/// Kind of a top-up request (content: encrypted [`TopUpRequest`] JSON).
pub const KIND_TOP_UP: u16 = 1002;
/// Kind of a status request (content: encrypted [`StatusRequest`] JSON). New in Paygress;
/// the seed had no status request.
pub const KIND_STATUS: u16 = 1003;
/// Kind of a release request (content: encrypted [`ReleaseRequest`] JSON): the owner
/// ends a lease early and gets the unused time back. New in Paygress. Over NIP-17 the
/// rumor must carry `["k", "1004"]` (its fields alone read as a status request).
pub const KIND_RELEASE: u16 = 1004;
/// Largest encrypted content accepted (64 KiB). Larger requests are never decrypted.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;

/// How a request's content was encrypted; the reply uses the same scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// NIP-44 v2 content on a kind 1000/1002/1003 event (the default).
    Nip44,
    /// NIP-04 content (`<base64>?iv=<base64>`), accepted for old clients.
    Nip04,
    /// NIP-17: a kind 1059 gift wrap around a kind 14 rumor carrying the request JSON;
    /// the reply is a gift wrap around a kind 14 rumor to the rumor's author.
    Nip17,
}

impl Scheme {
    /// All schemes the service accepts.
    pub const ALL: [Scheme; 3] = [Scheme::Nip44, Scheme::Nip04, Scheme::Nip17];

    /// The scheme of a direct (non gift-wrapped) event's content.
    pub fn of_direct_content(content: &str) -> Self {
        if content.contains("?iv=") {
            Scheme::Nip04
        } else {
            Scheme::Nip44
        }
    }
}

/// Which request a kind carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Kind 1000.
    Spawn,
    /// Kind 1002.
    TopUp,
    /// Kind 1003.
    Status,
    /// Kind 1004.
    Release,
}

impl RequestKind {
    /// The kind for a Nostr event kind number, if it is a request kind.
    pub fn from_kind(kind: Kind) -> Option<Self> {
        match kind.as_u16() {
            KIND_SPAWN => Some(RequestKind::Spawn),
            KIND_TOP_UP => Some(RequestKind::TopUp),
            KIND_STATUS => Some(RequestKind::Status),
            KIND_RELEASE => Some(RequestKind::Release),
            _ => None,
        }
    }

    /// The Nostr kind carrying this request.
    pub fn kind(self) -> Kind {
        Kind::Custom(match self {
            RequestKind::Spawn => KIND_SPAWN,
            RequestKind::TopUp => KIND_TOP_UP,
            RequestKind::Status => KIND_STATUS,
            RequestKind::Release => KIND_RELEASE,
        })
    }

    /// The kind of a core request.
    pub fn of(request: &Request) -> Self {
        match request {
            Request::Spawn(_) => RequestKind::Spawn,
            Request::TopUp(_) => RequestKind::TopUp,
            Request::Status(_) => RequestKind::Status,
            Request::Release(_) => RequestKind::Release,
        }
    }
}

/// Parses decrypted request JSON of a known kind. Unknown fields are an error.
pub fn parse_request(kind: RequestKind, json: &str) -> Result<Request, NostrError> {
    let bad = |e: serde_json::Error| NostrError::Malformed(e.to_string());
    Ok(match kind {
        RequestKind::Spawn => {
            Request::Spawn(serde_json::from_str::<SpawnRequest>(json).map_err(bad)?)
        }
        RequestKind::TopUp => {
            Request::TopUp(serde_json::from_str::<TopUpRequest>(json).map_err(bad)?)
        }
        RequestKind::Status => {
            Request::Status(serde_json::from_str::<StatusRequest>(json).map_err(bad)?)
        }
        RequestKind::Release => {
            Request::Release(serde_json::from_str::<ReleaseRequest>(json).map_err(bad)?)
        }
    })
}

/// Infers the request of a NIP-17 rumor from its fields: `cashu_token` and `pod_name`
/// mean top-up, `cashu_token` alone spawn, `pod_name` alone status. A rumor tag
/// `["k", "1000"|"1002"|"1003"|"1004"]` overrides the inference (a release needs it).
pub fn parse_untyped_request(
    json: &str,
    kind_hint: Option<RequestKind>,
) -> Result<Request, NostrError> {
    if let Some(kind) = kind_hint {
        return parse_request(kind, json);
    }
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| NostrError::Malformed(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| NostrError::Malformed("request must be a JSON object".into()))?;
    let kind = match (
        obj.contains_key("cashu_token"),
        obj.contains_key("pod_name"),
    ) {
        (true, true) => RequestKind::TopUp,
        (true, false) => RequestKind::Spawn,
        (false, true) => RequestKind::Status,
        (false, false) => {
            return Err(NostrError::Malformed(
                "request has neither cashu_token nor pod_name".into(),
            ));
        }
    };
    parse_request(kind, json)
}

/// The request a NIP-17 rumor carries: its content, with the kind its `["k", …]` tag
/// names (when it names one of ours) overriding the inference of
/// [`parse_untyped_request`].
pub fn parse_rumor_request(rumor: &UnsignedEvent) -> Result<Request, NostrError> {
    let hint = rumor
        .tags
        .find(TagKind::k())
        .and_then(|t| t.content())
        .and_then(|k| k.parse::<u16>().ok())
        .and_then(|k| RequestKind::from_kind(Kind::Custom(k)));
    parse_untyped_request(&rumor.content, hint)
}

/// Serializes a core request to its JSON content.
pub fn request_json(request: &Request) -> Result<String, NostrError> {
    let r = match request {
        Request::Spawn(r) => serde_json::to_string(r),
        Request::TopUp(r) => serde_json::to_string(r),
        Request::Status(r) => serde_json::to_string(r),
        Request::Release(r) => serde_json::to_string(r),
    };
    r.map_err(|e| NostrError::Malformed(e.to_string()))
}

/// Encrypts `plaintext` from `secret` to `peer` with a direct scheme (NIP-44 or NIP-04).
/// NIP-17 content is NIP-44 inside the seal, so it maps to NIP-44 here.
pub fn encrypt(
    scheme: Scheme,
    secret: &SecretKey,
    peer: &PublicKey,
    plaintext: &str,
) -> Result<String, NostrError> {
    match scheme {
        Scheme::Nip04 => {
            nip04::encrypt(secret, peer, plaintext).map_err(|e| NostrError::Crypto(e.to_string()))
        }
        Scheme::Nip44 | Scheme::Nip17 => {
            nip44::encrypt(secret, peer, plaintext, nip44::Version::V2)
                .map_err(|e| NostrError::Crypto(e.to_string()))
        }
    }
}

/// Decrypts a direct event's content with the scheme its shape shows.
pub fn decrypt(
    secret: &SecretKey,
    peer: &PublicKey,
    content: &str,
) -> Result<(Scheme, String), NostrError> {
    let scheme = Scheme::of_direct_content(content);
    let plain = match scheme {
        Scheme::Nip04 => nip04::decrypt(secret, peer, content).map_err(|e| e.to_string()),
        _ => nip44::decrypt(secret, peer, content).map_err(|e| e.to_string()),
    };
    plain.map(|p| (scheme, p)).map_err(NostrError::Crypto)
}

/// Which kinds carry which request, as advertised in the offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestKinds {
    /// Spawn request kind (1000).
    pub spawn: u16,
    /// Top-up request kind (1002).
    pub top_up: u16,
    /// Status request kind (1003).
    pub status: u16,
    /// Reply kind (1001).
    pub reply: u16,
    /// Release request kind (1004); absent from offers of earlier versions.
    #[serde(default = "kind_release")]
    pub release: u16,
}

fn kind_release() -> u16 {
    KIND_RELEASE
}

impl Default for RequestKinds {
    fn default() -> Self {
        Self {
            spawn: KIND_SPAWN,
            top_up: KIND_TOP_UP,
            status: KIND_STATUS,
            reply: KIND_REPLY,
            release: KIND_RELEASE,
        }
    }
}

/// The machine-readable offer (content of the kind 31990 and 38383 offer events, and
/// the `json` block of the kind 30402 listing): core's [`Offer`] fields plus how to
/// reach and pay the service over Nostr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NostrOffer {
    /// The service's terms.
    #[serde(flatten)]
    pub offer: Offer,
    /// Event kinds of requests and replies.
    pub request_kinds: RequestKinds,
    /// Accepted request encryptions.
    pub encryption: Vec<Scheme>,
    /// A NUT-18 payment request (`creqA…`) for the shortest lease at the default rate,
    /// when the operator provides one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_request: Option<String>,
    /// The SSH host-key fingerprint (`SHA256:…`) buyers should see on login, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    /// Where the machines are (free text, as the NIP-99 `location` tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl NostrOffer {
    /// Wraps `offer` with this transport's kinds and schemes.
    pub fn new(offer: Offer) -> Self {
        Self {
            offer,
            request_kinds: RequestKinds::default(),
            encryption: Scheme::ALL.to_vec(),
            payment_request: None,
            host_key_fingerprint: None,
            location: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr_sdk::Keys;

    #[test]
    fn schemes_round_trip() {
        let a = Keys::generate();
        let b = Keys::generate();
        for scheme in [Scheme::Nip44, Scheme::Nip04] {
            let c = encrypt(scheme, a.secret_key(), &b.public_key(), "{\"x\":1}").unwrap();
            let (found, plain) = decrypt(b.secret_key(), &a.public_key(), &c).unwrap();
            assert_eq!(found, scheme);
            assert_eq!(plain, "{\"x\":1}");
        }
    }

    #[test]
    fn wrong_key_does_not_decrypt() {
        let a = Keys::generate();
        let b = Keys::generate();
        let c = encrypt(Scheme::Nip44, a.secret_key(), &b.public_key(), "hello").unwrap();
        let other = Keys::generate();
        assert!(decrypt(other.secret_key(), &a.public_key(), &c).is_err());
        assert!(decrypt(b.secret_key(), &a.public_key(), "not base64 at all!").is_err());
    }

    #[test]
    fn untyped_requests_are_inferred() {
        let r = parse_untyped_request(r#"{"cashu_token":"t"}"#, None).unwrap();
        assert_eq!(r.kind(), "spawn");
        let r = parse_untyped_request(r#"{"cashu_token":"t","pod_name":"p"}"#, None).unwrap();
        assert_eq!(r.kind(), "top_up");
        let r = parse_untyped_request(r#"{"pod_name":"p"}"#, None).unwrap();
        assert_eq!(r.kind(), "status");
        assert!(parse_untyped_request(r#"{"foo":1}"#, None).is_err());
        assert!(parse_untyped_request(r#"[1]"#, None).is_err());
        let r = parse_untyped_request(r#"{"pod_name":"p"}"#, Some(RequestKind::Status)).unwrap();
        assert_eq!(r.kind(), "status");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(
            parse_request(
                RequestKind::Spawn,
                r#"{"cashu_token":"t","durationminutes":3}"#
            )
            .is_err()
        );
        assert!(parse_request(RequestKind::TopUp, r#"{"cashu_token":"t"}"#).is_err());
    }
}
