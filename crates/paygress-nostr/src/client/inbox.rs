//! Filing the replies that arrive by the request they answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use nostr_sdk::nips::nip59::UnwrappedGift;
use nostr_sdk::{Event, EventId, Keys, Kind, PublicKey, RelayPoolNotification};
use paygress_core::{ErrorCode, Reply};
use tokio::sync::{Notify, broadcast};

use super::lock;
use crate::wire::{self, KIND_REPLY};

/// Replies received so far, by the id their `e` tag answers.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub(super) replies: Mutex<HashMap<EventId, Result<Reply, String>>>,
    pub(super) arrived: Notify,
}

/// Replies kept for requests nobody waits for (yet); older ones are dropped first.
const INBOX_CAPACITY: usize = 1024;

/// What core writes in a lease's instructions when its change could not be issued yet.
const CHANGE_PENDING: &str = "could not be issued yet";

/// Whether `reply` announces a later reply to the same request: `payment_pending` (the
/// mint's answer to the payment was lost and is being checked), `refund_pending` (a
/// refund is owed), or access details whose change could not be issued yet. The service
/// sends the final reply (with the refund or change token) as a new reply to the same
/// request once it has settled it.
pub fn awaits_follow_up(reply: &Reply) -> bool {
    match reply {
        Reply::Error(e) => matches!(e.code, ErrorCode::PaymentPending | ErrorCode::RefundPending),
        Reply::AccessDetails(a) => {
            a.change_token.is_none() && a.instructions.iter().any(|l| l.contains(CHANGE_PENDING))
        }
        Reply::Released(r) => r.refund_token.is_none() && r.message.contains(CHANGE_PENDING),
        Reply::TopUp(_) | Reply::Status(_) => false,
    }
}

/// Files `reply` for request `key`, unless a final reply is already waiting there and
/// this one only announces it (an announcement replayed or delivered late).
fn file_reply(
    replies: &mut HashMap<EventId, Result<Reply, String>>,
    key: EventId,
    reply: Result<Reply, String>,
) {
    let has_final = matches!(replies.get(&key), Some(Ok(old)) if !awaits_follow_up(old));
    let announces = matches!(&reply, Ok(new) if awaits_follow_up(new));
    if has_final && announces {
        return;
    }
    if !replies.contains_key(&key)
        && replies.len() >= INBOX_CAPACITY
        && let Some(old) = replies.keys().next().copied()
    {
        replies.remove(&old);
    }
    replies.insert(key, reply);
}

/// Files every reply from `service` by the request it answers.
pub(super) async fn listen(
    mut rx: broadcast::Receiver<RelayPoolNotification>,
    keys: Keys,
    service: PublicKey,
    inbox: Arc<Inbox>,
) {
    loop {
        match rx.recv().await {
            Ok(RelayPoolNotification::Event { event, .. }) => {
                if let Some((key, reply)) = read_reply(&keys, service, &event).await {
                    file_reply(&mut lock(&inbox.replies), key, reply);
                    inbox.arrived.notify_waiters();
                }
            }
            Ok(RelayPoolNotification::Shutdown) | Err(broadcast::error::RecvError::Closed) => {
                break;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
        }
    }
}

/// The request id `event` answers and its reply, if it is a reply from `service`.
async fn read_reply(
    keys: &Keys,
    service: PublicKey,
    event: &Event,
) -> Option<(EventId, Result<Reply, String>)> {
    let parse = |json: &str| serde_json::from_str::<Reply>(json).map_err(|e| e.to_string());
    if event.kind == Kind::GiftWrap {
        let UnwrappedGift { sender, rumor } =
            UnwrappedGift::from_gift_wrap(keys, event).await.ok()?;
        if sender != service || rumor.pubkey != sender {
            return None;
        }
        let key = *rumor.tags.event_ids().next()?;
        return Some((key, parse(&rumor.content)));
    }
    if event.kind != Kind::Custom(KIND_REPLY) || event.pubkey != service {
        return None;
    }
    let key = *event.tags.event_ids().next()?;
    let reply = wire::decrypt(keys.secret_key(), &service, &event.content)
        .map_err(|e| e.to_string())
        .and_then(|(_, json)| parse(&json));
    Some((key, reply))
}

#[cfg(test)]
mod tests {
    use paygress_core::{CashuToken, ErrorReply};

    use super::*;

    fn error(code: ErrorCode, refund: Option<&str>) -> Reply {
        Reply::Error(ErrorReply {
            code,
            message: "m".into(),
            refund_token: refund.map(CashuToken::new),
        })
    }

    #[test]
    fn pending_codes_announce_a_follow_up_and_final_replies_do_not() {
        assert!(awaits_follow_up(&error(ErrorCode::RefundPending, None)));
        assert!(awaits_follow_up(&error(ErrorCode::PaymentPending, None)));
        assert!(!awaits_follow_up(&error(
            ErrorCode::ProvisioningFailed,
            Some("cashuBx")
        )));
        assert!(!awaits_follow_up(&error(
            ErrorCode::TokenAlreadySpent,
            None
        )));
    }

    #[test]
    fn a_late_announcement_never_hides_the_final_reply() {
        let key = EventId::from_byte_array([1; 32]);
        let pending = error(ErrorCode::RefundPending, None);
        let done = error(ErrorCode::ProvisioningFailed, Some("cashuBx"));
        let mut replies = HashMap::new();
        file_reply(&mut replies, key, Ok(done.clone()));
        file_reply(&mut replies, key, Ok(pending.clone()));
        assert_eq!(replies.get(&key), Some(&Ok(done.clone())));
        // In order, the final reply replaces the announcement.
        let mut replies = HashMap::new();
        file_reply(&mut replies, key, Ok(pending));
        file_reply(&mut replies, key, Ok(done.clone()));
        assert_eq!(replies.get(&key), Some(&Ok(done)));
    }
}
