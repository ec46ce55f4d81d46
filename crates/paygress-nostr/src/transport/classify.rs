//! The checks that decide what happens to one event, cheapest first.

use nostr_sdk::nips::nip59::UnwrappedGift;
use nostr_sdk::{Event, EventId, Kind, PublicKey, Timestamp};
use paygress_core::{ErrorCode, Request};
use tokio::sync::OwnedSemaphorePermit;

use super::{Shared, lock, rumor_id};
use crate::wire::{self, MAX_CONTENT_BYTES, RequestKind, Scheme};

/// What to do with one event.
pub(super) enum Verdict {
    Deliver {
        key: EventId,
        author: PublicKey,
        scheme: Scheme,
        request: Request,
        permit: OwnedSemaphorePermit,
    },
    Reject {
        key: EventId,
        author: PublicKey,
        scheme: Scheme,
        code: ErrorCode,
        message: String,
    },
    Duplicate,
    Ignore(&'static str),
    /// Dropped by a rate limit before decryption.
    Limited(&'static str),
}

impl Shared {
    /// Claims `key` for handling: `false` when it was handled before.
    fn claim(&self, key: EventId) -> bool {
        lock(&self.dedup).claim(key)
    }

    /// Cheap checks first (kind, addressing, age, dedup, signature, size, rate limits),
    /// decryption only then; see [`crate::limits`].
    pub(super) async fn classify(&self, event: &Event) -> Verdict {
        if event.kind == Kind::GiftWrap {
            return self.classify_gift_wrap(event).await;
        }
        let Some(kind) = RequestKind::from_kind(event.kind) else {
            return Verdict::Ignore("not a request kind");
        };
        let me = self.keys.public_key();
        // Untagged requests (the seed's nak commands) are tried; tagged ones must name us.
        let tagged = event.tags.public_keys().next().is_some();
        let addressed = event.tags.public_keys().any(|p| *p == me);
        if tagged && !addressed {
            return Verdict::Ignore("addressed to another service");
        }
        if event.created_at < Timestamp::now() - self.backlog {
            return Verdict::Ignore("stale request");
        }
        if lock(&self.dedup).contains(&event.id) || self.limiter.was_rejected(&event.id) {
            return Verdict::Duplicate;
        }
        if event.verify().is_err() {
            return Verdict::Ignore("bad id or signature");
        }
        let scheme = Scheme::of_direct_content(&event.content);
        let reject = |message: String| Verdict::Reject {
            key: event.id,
            author: event.pubkey,
            scheme,
            code: ErrorCode::InvalidRequest,
            message,
        };
        if event.content.len() > MAX_CONTENT_BYTES {
            if addressed {
                return reject(format!(
                    "request content is larger than {MAX_CONTENT_BYTES} bytes"
                ));
            }
            return Verdict::Ignore("oversized");
        }
        if !addressed && !self.limiter.untagged() {
            return Verdict::Limited("untagged budget spent");
        }
        if !self.limiter.sender(&event.pubkey) {
            return Verdict::Limited("sender over its rate limit");
        }
        let plain = match wire::decrypt(self.keys.secret_key(), &event.pubkey, &event.content) {
            Ok((_, plain)) => plain,
            Err(_) if addressed => {
                return reject("the content could not be decrypted with the service key (NIP-44 v2 or NIP-04 expected)".into());
            }
            Err(_) => return Verdict::Ignore("not encrypted to us"),
        };
        match wire::parse_request(kind, &plain) {
            Ok(request) => self.admit(event.id, event.pubkey, scheme, request),
            Err(e) => reject(format!("invalid request: {e}")),
        }
    }

    /// An authenticated, decrypted, well-formed request: within the global limit and
    /// the in-flight cap it enters the dedup window and is delivered.
    fn admit(&self, key: EventId, author: PublicKey, scheme: Scheme, request: Request) -> Verdict {
        let refuse = |code, message: &str| Verdict::Reject {
            key,
            author,
            scheme,
            code,
            message: message.to_owned(),
        };
        if !self.limiter.global() {
            return refuse(
                ErrorCode::RateLimited,
                "the service is receiving too many requests; your token was not redeemed: \
                 send the request again in a minute",
            );
        }
        let Some(permit) = self.limiter.in_flight() else {
            return refuse(
                ErrorCode::Unavailable,
                "the service is busy; your token was not redeemed: send the request again \
                 shortly",
            );
        };
        if !self.claim(key) {
            return Verdict::Duplicate;
        }
        Verdict::Deliver {
            key,
            author,
            scheme,
            request,
            permit,
        }
    }

    async fn classify_gift_wrap(&self, event: &Event) -> Verdict {
        if event.content.len() > MAX_CONTENT_BYTES {
            return Verdict::Ignore("oversized gift wrap");
        }
        let me = self.keys.public_key();
        if !event.tags.public_keys().any(|p| *p == me) {
            return Verdict::Ignore("gift wrap not addressed to us");
        }
        let Ok(UnwrappedGift { sender, rumor }) =
            UnwrappedGift::from_gift_wrap(&self.keys, event).await
        else {
            return Verdict::Ignore("gift wrap not for us");
        };
        // The seal's signature authenticates its signer; the rumor inside is unsigned,
        // so its author must be that signer and its id is computed here, never taken
        // from the `id` field its sender wrote (which could name another request).
        if rumor.pubkey != sender {
            return Verdict::Ignore("rumor author differs from seal signer");
        }
        let key = rumor_id(&rumor);
        if rumor.id.is_some_and(|stated| stated != key) {
            return Verdict::Ignore("rumor id does not match its content");
        }
        if rumor.kind != Kind::PrivateDirectMessage {
            return Verdict::Ignore("rumor is not a kind 14 message");
        }
        if rumor.created_at < Timestamp::now() - self.backlog {
            return Verdict::Ignore("stale rumor");
        }
        if lock(&self.dedup).contains(&key) || self.limiter.was_rejected(&key) {
            return Verdict::Duplicate;
        }
        if !self.limiter.sender(&sender) {
            return Verdict::Limited("sender over its rate limit");
        }
        match wire::parse_rumor_request(&rumor) {
            Ok(request) => self.admit(key, sender, Scheme::Nip17, request),
            Err(e) => Verdict::Reject {
                key,
                author: sender,
                scheme: Scheme::Nip17,
                code: ErrorCode::InvalidRequest,
                message: format!("invalid request: {e}"),
            },
        }
    }
}
