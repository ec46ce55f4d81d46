//! The buyer's commands: `keygen`, `whoami`, `offers`, `request`, `topup` (also
//! `--auto`), `status`, `watch`, `release`. One command replaces the seed's nak + jq +
//! cashu ritual. Each command parses its flags, calls `paygress-buyer` and prints.

mod lease;
mod offers;
mod report;
mod request;
mod send;
mod top_up;
mod watch;

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use paygress_buyer::{BuyerHome, parse_secret};
use paygress_nostr::nostr_sdk::{Keys, ToBech32};

pub use lease::{ReleaseArgs, StatusArgs, release, status};
pub use offers::{OfferSort, OffersArgs, offers};
pub use request::{RequestArgs, request};
pub use top_up::{TopUpArgs, top_up};
pub use watch::{WatchArgs, watch};

/// Where the buyer's identity and saved tokens live. `Debug` is written by hand: it
/// never shows the key.
#[derive(Clone, Args)]
pub struct IdentityArgs {
    /// Use this key (nsec or hex) instead of the stored identity.
    #[arg(long, env = "PAYGRESS_NSEC", hide_env_values = true, global = true)]
    pub nsec: Option<String>,
    /// Directory for the identity and saved tokens
    /// [default: $XDG_CONFIG_HOME/paygress or ~/.config/paygress].
    #[arg(long, env = "PAYGRESS_CONFIG_DIR", global = true)]
    pub config_dir: Option<PathBuf>,
}

impl std::fmt::Debug for IdentityArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityArgs")
            .field("nsec", &self.nsec.as_ref().map(|_| "<redacted>"))
            .field("config_dir", &self.config_dir)
            .finish()
    }
}

impl IdentityArgs {
    /// The buyer's directory: `--config-dir`, else the default.
    pub fn home(&self) -> Result<BuyerHome> {
        Ok(BuyerHome::new(match &self.config_dir {
            Some(d) => d.clone(),
            None => BuyerHome::default_dir()?,
        }))
    }

    /// The buyer's keys: `--nsec`, else the stored identity.
    pub fn keys(&self) -> Result<Keys> {
        if let Some(s) = &self.nsec {
            return Ok(parse_secret(s)?);
        }
        Ok(self.home()?.keys()?)
    }
}

fn print_identity(keys: &Keys) -> Result<()> {
    let pk = keys.public_key();
    println!("npub: {}", pk.to_bech32()?);
    println!("hex:  {}", pk.to_hex());
    Ok(())
}

/// `paygress keygen`: creates the buyer identity.
pub fn keygen(id: &IdentityArgs, force: bool) -> Result<()> {
    let home = id.home()?;
    let keys = home.create_identity(force)?;
    eprintln!(
        "Saved a new identity to {} (mode 0600)",
        home.identity_file().display()
    );
    print_identity(&keys)
}

/// `paygress whoami`.
pub fn whoami(id: &IdentityArgs) -> Result<()> {
    print_identity(&id.keys()?)
}

/// How to reach the service.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// The service, for Nostr: npub, nprofile (with relay hints), hex key or NIP-05
    /// name (`name@domain`). `request` without it picks the cheapest live provider.
    #[arg(long)]
    pub service: Option<String>,
    /// Relays the buyer knows, repeatable or comma-separated: the service's relay lists
    /// are looked up there and the request goes to the relays they name.
    #[arg(long = "relay", value_delimiter = ',')]
    pub relays: Vec<String>,
    /// Talk to an HTTP-mode service at this base URL instead of Nostr.
    #[arg(long)]
    pub http: Option<String>,
    /// Send as a NIP-17 gift-wrapped private message.
    #[arg(long)]
    pub nip17: bool,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Seconds to keep waiting when the reply says a refund or change is owed, or that
    /// the payment is being checked with the mint: the service sends the token as a new
    /// reply once the mint answers (Nostr only).
    #[arg(long, default_value_t = 600)]
    pub follow_up_timeout: u64,
    /// Print the reply as JSON (for scripts).
    #[arg(long)]
    pub json: bool,
}
