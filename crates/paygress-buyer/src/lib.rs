#![doc = include_str!("../README.md")]

mod args;
mod error;
mod home;
mod known_hosts;
mod send;

pub use args::{parse_duration_minutes, parse_relays, parse_secret, parse_service, read_token};
pub use error::BuyerError;
pub use home::{BuyerHome, TokenKind};
pub use known_hosts::{host_pattern, verify_host_keys};
pub use send::{Progress, Route, Sent, Waits, send};
