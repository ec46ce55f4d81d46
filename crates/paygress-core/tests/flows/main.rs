//! The service's money flows end to end over the in-memory ports: every redeemed sat
//! ends as lease time (in the service's wallet) or as a token the buyer can spend.
//! One module per flow: `spawn`, `top_up` (with expiry and status), `recovery`.

#[path = "../common/mod.rs"]
mod common;

mod recovery;
mod spawn;
mod top_up;

use std::sync::Arc;

use common::*;
use futures::FutureExt;
use jiff::Timestamp;
use paygress_core::contract::sample_spec;
use paygress_core::memory::FailOn;
use paygress_core::{
    Amount, CashuToken, Entry, ErrorCode, Journal, JournalError, LeaseId, LeaseState, Paygress,
    PaymentVerifier, PodBackend, Purpose, RedeemAttempt, Reply, Request, RequestKey, Stage,
    StatusRequest,
};
use tokio::sync::{Barrier, Notify};
