//! Issue 3 acceptance: the Nostr transport against real in-process relays, a real core
//! service (in-memory backend and wallet) and a buyer built on nostr-sdk.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod delivery;
mod relays;
mod release;
mod schemes;

use std::time::Duration;

use common::{Harness, TIMEOUT, replies_on, spawn_req};
use paygress_core::{ErrorCode, Reply, Request, StatusRequest, TopUpRequest};
use paygress_nostr::client::PreparedRequest;
use paygress_nostr::nostr_sdk::{EventBuilder, Keys, Kind, Tag};
use paygress_nostr::wire::{self, KIND_SPAWN, MAX_CONTENT_BYTES};
use paygress_nostr::{Scheme, SendOptions, fetch_offers};

fn access(reply: &Reply) -> &paygress_core::AccessDetails {
    match reply {
        Reply::AccessDetails(a) => a,
        other => panic!("expected access details, got {other:?}"),
    }
}
