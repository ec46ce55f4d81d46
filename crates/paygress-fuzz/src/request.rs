//! Request JSON as every transport parses it.

use paygress_core::{ReleaseRequest, Request, SpawnRequest, StatusRequest, TopUpRequest};
use paygress_http::wire::{SpawnPodBody, TopUpPodBody};
use paygress_nostr::wire::{self, RequestKind};

const KINDS: [RequestKind; 3] = [RequestKind::Spawn, RequestKind::TopUp, RequestKind::Status];

/// Parses the input as each request kind (Nostr kinds 1000/1002/1003), as an untyped
/// NIP-17 rumor, and as the HTTP bodies. A request that parses must serialize and parse
/// back to itself.
pub fn request_json(data: &[u8]) -> bool {
    let mut accepted = false;
    if let Ok(text) = std::str::from_utf8(data) {
        for kind in KINDS {
            if let Ok(request) = wire::parse_request(kind, text) {
                assert_eq!(RequestKind::of(&request), kind);
                round_trip(&request);
                accepted = true;
            }
        }
        if let Ok(request) = wire::parse_untyped_request(text, None) {
            round_trip(&request);
        }
    }
    // The HTTP API parses bytes (any content type).
    let _ = serde_json::from_slice::<SpawnPodBody>(data);
    let _ = serde_json::from_slice::<TopUpPodBody>(data);
    if let Ok(r) = serde_json::from_slice::<SpawnRequest>(data) {
        round_trip(&Request::Spawn(r));
    }
    if let Ok(r) = serde_json::from_slice::<TopUpRequest>(data) {
        round_trip(&Request::TopUp(r));
    }
    if let Ok(r) = serde_json::from_slice::<StatusRequest>(data) {
        round_trip(&Request::Status(r));
    }
    if let Ok(r) = serde_json::from_slice::<ReleaseRequest>(data) {
        round_trip(&Request::Release(r));
    }
    accepted
}

/// Serializes `request` the way the buyer side does and parses it back.
pub(crate) fn round_trip(request: &Request) {
    let json = wire::request_json(request).expect("a parsed request serializes");
    let back =
        wire::parse_request(RequestKind::of(request), &json).expect("a serialized request parses");
    assert_eq!(&back, request);
    // A release's fields read as a status request: an untyped rumor needs its `k` tag.
    let hint = matches!(request, Request::Release(_)).then_some(RequestKind::Release);
    let untyped = wire::parse_untyped_request(&json, hint).expect("inferred kind parses");
    assert_eq!(&untyped, request);
}
