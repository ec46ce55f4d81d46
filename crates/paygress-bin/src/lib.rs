#![doc = include_str!("../README.md")]
//! Glue for the `paygress` command: configuration, wiring of the adapters, the dev
//! stack and its demo. No domain logic lives here.

pub mod buyer;
#[cfg(feature = "chaos")]
pub mod chaos;
pub mod config;
#[cfg(feature = "dev")]
pub mod demo;
#[cfg(feature = "dev")]
pub mod dev;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod leases;
pub mod logging;
pub mod observe;
pub mod serve;
pub mod shutdown;
pub mod wallet;
pub mod withdraw;
