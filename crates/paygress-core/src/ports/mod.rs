//! The ports: what core needs from the outside world. Each adapter crate implements one.
//!
//! All ports are object safe, `Send + Sync`, and used as `Arc<dyn …>`.
//!
//! One module per port: `payments`, `pods`, `transports`, `journal`; the clock is here.
//! Everything is re-exported from `ports`.

mod journal;
mod payments;
mod pods;
mod transports;

use std::error::Error as StdError;
use std::sync::Arc;

use jiff::Timestamp;

pub use self::journal::*;
pub use self::payments::*;
pub use self::pods::*;
pub use self::transports::*;

/// A boxed error from an adapter's own technology.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

// ---------------------------------------------------------------- time

/// The current time. A port so tests can move time by hand.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A shared clock.
pub type DynClock = Arc<dyn Clock>;
