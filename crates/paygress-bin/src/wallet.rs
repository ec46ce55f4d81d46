//! `paygress wallet`: the operator's access to income.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use paygress_cashu::{CashuConfig, CashuVerifier, normalize_mint_url};
use paygress_core::{Amount, Unit};

/// Where the service wallet lives (the same variables `serve` reads).
#[derive(Debug, Clone, Args)]
pub struct WalletArgs {
    /// State directory.
    #[arg(long, env = "PAYGRESS_DATA_DIR", default_value = paygress_core::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Wallet database [default: <data dir>/cashu.db].
    #[arg(long, env = "CASHU_DB_PATH")]
    pub cashu_db_path: Option<PathBuf>,
    /// Accepted mints, comma-separated.
    #[arg(
        long,
        env = "WHITELISTED_MINTS",
        value_delimiter = ',',
        required = true
    )]
    pub whitelisted_mints: Vec<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: WalletCommand,
}

/// Wallet subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum WalletCommand {
    /// Prints the balance per mint and unit.
    Balance,
    /// Exports a token worth exactly AMOUNT and prints it on stdout.
    Send {
        /// Amount, in UNIT.
        amount: u64,
        /// Unit: sat or msat.
        #[arg(long, default_value = "sat")]
        unit: String,
        /// Mint to send from [default: the first holding enough].
        #[arg(long)]
        mint: Option<String>,
    },
    /// Pays income to Lightning (NUT-05 melt), showing the mint's fee quote first.
    Withdraw(crate::withdraw::WithdrawArgs),
    /// Lists what the wallet received, refunded and withdrawn.
    History,
    /// Prints the seed words and how to restore the wallet from them.
    Backup,
    /// Restores a backed-up wallet into a data directory that has none.
    Restore(crate::withdraw::RestoreArgs),
}

/// Runs a wallet subcommand.
pub async fn run(args: WalletArgs) -> Result<()> {
    let db = args
        .cashu_db_path
        .clone()
        .unwrap_or_else(|| args.data_dir.join("cashu.db"));
    let config = CashuConfig::new(&db, &args.whitelisted_mints).context("WHITELISTED_MINTS")?;
    // Before opening: opening creates a seed, and restore must write it.
    if let WalletCommand::Restore(restore) = args.command {
        return crate::withdraw::restore(&config, restore).await;
    }
    let wallet = CashuVerifier::open(&config)
        .await
        .with_context(|| format!("opening the wallet at {}", db.display()))?;
    match args.command {
        WalletCommand::Balance => {
            let balances = wallet.balances().await?;
            println!("{:<48} {:>14} unit", "mint", "balance");
            for b in balances {
                println!("{:<48} {:>14} {}", b.mint, b.amount.value, b.amount.unit);
            }
        }
        WalletCommand::Send { amount, unit, mint } => {
            let unit = Unit::parse(&unit).context("unit must be sat or msat")?;
            let mint = mint
                .as_deref()
                .map(normalize_mint_url)
                .transpose()
                .context("--mint")?;
            let token = wallet
                .send(Amount::new(amount, unit), mint.as_ref())
                .await
                .context("creating the token")?;
            eprintln!("Token for {amount} {unit} (bearer money: keep it safe):");
            println!("{}", token.expose());
        }
        WalletCommand::Withdraw(w) => crate::withdraw::withdraw(&wallet, w).await?,
        WalletCommand::History => crate::withdraw::history(&wallet).await?,
        WalletCommand::Backup => crate::withdraw::backup(&config)?,
        WalletCommand::Restore(_) => unreachable!("handled above"),
    }
    Ok(())
}
