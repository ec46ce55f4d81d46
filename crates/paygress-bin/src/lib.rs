#![doc = include_str!("../README.md")]
//! Glue for the `paygress` command: argument parsing, wiring the configuration into
//! [`paygress_node::Node`], printing. No domain logic lives here.

pub mod buyer;
pub mod config;
pub mod config_file;
#[cfg(feature = "dev")]
pub mod dev;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod leases;
pub mod logging;
pub mod observe;
pub mod serve;
pub mod wallet;
pub mod withdraw;
