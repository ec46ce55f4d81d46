#![doc = include_str!("../README.md")]

mod args;
pub mod auto_topup;
mod error;
mod home;
mod known_hosts;
mod lock;
mod login;
mod prepay;
mod provider;
mod send;
mod terms;
pub mod watch;

pub use args::{parse_duration_minutes, parse_relays, parse_secret, parse_service, read_token};
pub use error::BuyerError;
pub use home::{BuyerHome, TokenKind};
pub use known_hosts::{host_pattern, verify_host_keys};
pub use lock::{LockedPayment, lock_payment};
pub use login::{LoginHints, default_ssh_key, login_hints, shell_word};
pub use prepay::{Piece, Prepaid, prepay};
pub use provider::{Picked, Wanted, pick_provider, token_mint};
pub use send::{Progress, Route, Sent, Waits, send};
pub use terms::{fetch_offer, min_seconds, price_sat, tier_rate};
