//! The Nostr wire: decrypt-then-parse of direct requests and NIP-17 gift wraps, with fixed
//! keys, following the steps of `paygress_nostr::NostrTransport`.

use std::sync::LazyLock;

use paygress_nostr::nostr_sdk::nips::nip44;
use paygress_nostr::nostr_sdk::nips::nip59::UnwrappedGift;
use paygress_nostr::nostr_sdk::{
    Event, EventBuilder, EventId, JsonUtil, Keys, Kind, SecretKey, Tag,
};
use paygress_nostr::wire::{self, MAX_CONTENT_BYTES, RequestKind, Scheme};

use crate::block_on;
use crate::request::round_trip;

fn keys(byte: u8) -> Keys {
    Keys::new(SecretKey::from_slice(&[byte; 32]).expect("a valid secret key"))
}

/// The service's keys (what requests are encrypted to).
pub static SERVICE: LazyLock<Keys> = LazyLock::new(|| keys(1));
/// The buyer's keys.
pub static BUYER: LazyLock<Keys> = LazyLock::new(|| keys(2));
/// The gift wrap's one-time keys.
pub static EPHEMERAL: LazyLock<Keys> = LazyLock::new(|| keys(3));

const KINDS: [RequestKind; 3] = [RequestKind::Spawn, RequestKind::TopUp, RequestKind::Status];

/// Splits the first byte off as a selector; the rest must be text.
fn selector(data: &[u8]) -> Option<(u8, &str)> {
    let (&mode, rest) = data.split_first()?;
    Some((mode, std::str::from_utf8(rest).ok()?))
}

/// A kind 1000/1002/1003 request. The first byte chooses the kind (`/ 4 % 3`) and what
/// the rest is (`% 4`): 0 the event content as sent (raw ciphertext), 1 the plaintext
/// encrypted with NIP-44 by the buyer, 2 the same with NIP-04, 3 a whole event as JSON.
pub fn nostr_direct(data: &[u8]) -> bool {
    let Some((mode, text)) = selector(data) else {
        return false;
    };
    let kind = KINDS[usize::from(mode / 4) % 3];
    let service = &*SERVICE;
    let buyer = &*BUYER;
    let (content, author, plaintext) = match mode % 4 {
        0 => (text.to_owned(), buyer.public_key(), None),
        1 | 2 => {
            let scheme = if mode % 4 == 1 {
                Scheme::Nip44
            } else {
                Scheme::Nip04
            };
            // NIP-44 refuses empty and over-long plaintexts: nothing to deliver then.
            let Ok(c) = wire::encrypt(scheme, buyer.secret_key(), &service.public_key(), text)
            else {
                return false;
            };
            (c, buyer.public_key(), Some((scheme, text)))
        }
        _ => {
            let Ok(event) = Event::from_json(text) else {
                return false;
            };
            if event.verify().is_err() || RequestKind::from_kind(event.kind).is_none() {
                return false;
            }
            (event.content, event.pubkey, None)
        }
    };
    if content.len() > MAX_CONTENT_BYTES {
        return false;
    }
    let Ok((scheme, plain)) = wire::decrypt(service.secret_key(), &author, &content) else {
        assert!(
            plaintext.is_none(),
            "the service cannot decrypt what the buyer encrypted"
        );
        return false;
    };
    if let Some((sent_scheme, sent)) = plaintext {
        assert_eq!(scheme, sent_scheme);
        assert_eq!(plain, sent);
    }
    match wire::parse_request(kind, &plain) {
        Ok(request) => {
            round_trip(&request);
            true
        }
        Err(_) => false,
    }
}

/// A NIP-17 gift wrap (kind 1059) to the service. The first byte chooses what the rest
/// is (`% 3`): 0 the wrap's content as sent, 1 the seal's JSON (encrypted into a wrap),
/// 2 the rumor's JSON (sealed by the buyer, then wrapped).
pub fn nostr_gift_wrap(data: &[u8]) -> bool {
    let Some((mode, text)) = selector(data) else {
        return false;
    };
    let service = &*SERVICE;
    let buyer = &*BUYER;
    let ephemeral = &*EPHEMERAL;
    let to_service = |from: &Keys, plain: &str| {
        nip44::encrypt(
            from.secret_key(),
            &service.public_key(),
            plain,
            nip44::Version::V2,
        )
        .ok()
    };
    let wrap_content = match mode % 3 {
        0 => Some(text.to_owned()),
        1 => to_service(ephemeral, text),
        _ => to_service(buyer, text).and_then(|sealed| {
            let seal = EventBuilder::new(Kind::Seal, sealed)
                .sign_with_keys(buyer)
                .ok()?;
            to_service(ephemeral, &seal.as_json())
        }),
    };
    let Some(wrap_content) = wrap_content else {
        return false;
    };
    if wrap_content.len() > MAX_CONTENT_BYTES {
        return false;
    }
    let Ok(wrap) = EventBuilder::new(Kind::GiftWrap, wrap_content)
        .tag(Tag::public_key(service.public_key()))
        .sign_with_keys(ephemeral)
    else {
        return false;
    };
    let Ok(UnwrappedGift { sender, rumor }) =
        block_on(UnwrappedGift::from_gift_wrap(service, &wrap))
    else {
        return false;
    };
    if mode % 3 == 2 {
        assert_eq!(sender, buyer.public_key(), "the seal signer is the buyer");
    }
    if rumor.pubkey != sender || rumor.kind != Kind::PrivateDirectMessage {
        return false;
    }
    // The request key is the rumor's id as computed, never as claimed.
    let _key = EventId::new(
        &rumor.pubkey,
        &rumor.created_at,
        &rumor.kind,
        &rumor.tags,
        &rumor.content,
    );
    match wire::parse_rumor_request(&rumor) {
        Ok(request) => {
            round_trip(&request);
            true
        }
        Err(_) => false,
    }
}
