//! The `paygress` command.

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use paygress_bin::buyer::{
    self, IdentityArgs, OffersArgs, ReleaseArgs, RequestArgs, StatusArgs, TopUpArgs, WatchArgs,
};
use paygress_bin::config::{LogFormat, ServeArgs};
use paygress_bin::config_file::{apply_config_file, config_file_arg};
use paygress_bin::wallet::WalletArgs;

/// Sell compute for ecash: Cashu-paid SSH leases over Nostr or HTTP.
#[derive(Debug, Parser)]
#[command(name = "paygress", version, about)]
struct Cli {
    /// What to run; without a subcommand, `serve` with the environment's configuration.
    #[command(subcommand)]
    command: Option<Command>,
    /// The buyer's identity (for buyer commands).
    #[command(flatten)]
    identity: IdentityArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the service (the default).
    Serve(Box<ServeArgs>),
    /// Runs a complete local stack: in-process relay and mint, local backend.
    #[cfg(feature = "dev")]
    Dev(paygress_bin::dev::DevArgs),
    /// The operator's wallet: balance and export of income.
    Wallet(WalletArgs),
    /// Operator: lists live leases with owner, tier, expiry and paid sats.
    Leases(paygress_bin::leases::LeasesArgs),
    /// Buyer: creates your identity (stored with mode 0600).
    Keygen {
        /// Replace an existing identity.
        #[arg(long)]
        force: bool,
    },
    /// Buyer: shows your identity.
    Whoami,
    /// Buyer: lists services' offers found on relays.
    Offers(OffersArgs),
    /// Buyer: pays for a lease and prints how to log in.
    Request(Box<RequestArgs>),
    /// Buyer: pays to extend a lease (`--auto`: before each expiry, up to a budget).
    Topup(Box<TopUpArgs>),
    /// Buyer: shows a lease's expiry and state (owner only).
    Status(Box<StatusArgs>),
    /// Buyer: counts a lease's time down live until it ends (owner only).
    Watch(Box<WatchArgs>),
    /// Buyer: ends a lease now and saves the refund of its unused time (owner only).
    Release(Box<ReleaseArgs>),
}

/// Parses only the serve configuration (for `paygress` with no subcommand).
#[derive(Debug, Parser)]
#[command(name = "paygress")]
struct ServeOnly {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> Result<()> {
    // Everything Paygress writes (wallet, keys, journal, saved tokens) is for this user
    // only: files 0600 and directories 0700 unless a caller asks otherwise.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let config_file = config_file_arg(&argv);
    let mut command = Cli::command();
    if let Some(path) = &config_file {
        command = apply_config_file(command, path)?;
    }
    let cli = Cli::from_arg_matches(&command.get_matches_from(&argv)).unwrap_or_else(|e| e.exit());
    let command = match cli.command {
        Some(command) => command,
        // No subcommand: `serve` with the environment's (and config file's) settings.
        None => {
            let mut command = ServeOnly::command();
            if let Some(path) = &config_file {
                command = apply_config_file(command, path)?;
            }
            let matches = command.get_matches_from(["paygress"]);
            let args = ServeOnly::from_arg_matches(&matches)
                .unwrap_or_else(|e| e.exit())
                .serve;
            Command::Serve(Box::new(args))
        }
    };
    let log_format = match &command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    paygress_bin::logging::init(default_log_filter(&command), log_format)?;
    #[cfg(feature = "failpoints")]
    paygress_bin::failpoints::install_from_env()?;
    match command {
        Command::Serve(args) => paygress_bin::serve::run(*args).await,
        #[cfg(feature = "dev")]
        Command::Dev(args) => paygress_bin::dev::run(args).await,
        Command::Wallet(args) => paygress_bin::wallet::run(args).await,
        Command::Leases(args) => paygress_bin::leases::run(args).await,
        Command::Keygen { force } => buyer::keygen(&cli.identity, force),
        Command::Whoami => buyer::whoami(&cli.identity),
        Command::Offers(args) => buyer::offers(args).await,
        Command::Request(args) => buyer::request(&cli.identity, *args).await,
        Command::Topup(args) => buyer::top_up(&cli.identity, *args).await,
        Command::Status(args) => buyer::status(&cli.identity, *args).await,
        Command::Watch(args) => buyer::watch(&cli.identity, *args).await,
        Command::Release(args) => buyer::release(&cli.identity, *args).await,
    }
}

/// The log filter when `RUST_LOG` is unset: the service logs at info (third-party
/// chatter at warn); buyer commands and the demo talk on stdout and log only problems.
fn default_log_filter(command: &Command) -> &'static str {
    use paygress_bin::logging::{QUIET_FILTER, SERVICE_FILTER};
    match command {
        Command::Serve(_) | Command::Wallet(_) | Command::Leases(_) => SERVICE_FILTER,
        #[cfg(feature = "dev")]
        Command::Dev(args) if !args.demo => SERVICE_FILTER,
        _ => QUIET_FILTER,
    }
}
