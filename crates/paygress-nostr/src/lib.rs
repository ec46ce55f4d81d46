#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod config;
mod dedup;
pub mod directory;
pub mod error;
pub mod limits;
pub mod market;
pub mod notify;
pub mod offer;
pub mod resolve;
#[cfg(feature = "test-relay")]
pub mod testkit;
pub mod transport;
pub mod wire;

pub use client::{BuyerClient, DiscoveredOffer, SendOptions, fetch_offers, fetch_offers_at};
pub use config::NostrConfig;
pub use error::NostrError;
pub use limits::{NostrLimits, RateLimit};
/// Re-export of the nostr-sdk version this crate is built on.
pub use nostr_sdk;
pub use notify::NostrNotifier;
pub use resolve::{ServiceRef, reach, resolve_service};
pub use transport::{NostrTransport, TransportStats};
pub use wire::{NostrOffer, Scheme};
