//! The operator's income: `paygress wallet withdraw | history | backup | restore`, and
//! the automatic sweep (`WITHDRAW_TO` + `WITHDRAW_ABOVE_SATS`) run by `paygress serve`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use paygress_cashu::{CashuConfig, CashuVerifier, SeedBackup, WithdrawQuote, normalize_mint_url};
use paygress_core::{MintUrl, Unit};
use tracing::{info, warn};

/// `paygress wallet withdraw`.
#[derive(Debug, Clone, Args)]
pub struct WithdrawArgs {
    /// A BOLT11 invoice to pay (its amount is what is withdrawn).
    #[arg(
        long,
        conflicts_with = "lightning_address",
        required_unless_present = "lightning_address"
    )]
    pub invoice: Option<String>,
    /// A Lightning address (user@host, LUD-16) to pay; needs --amount.
    #[arg(long, requires = "amount")]
    pub lightning_address: Option<String>,
    /// Sats to send to the Lightning address.
    #[arg(long)]
    pub amount: Option<u64>,
    /// The mint to pay from [default: the first whose balance covers amount + fee].
    #[arg(long)]
    pub mint: Option<String>,
    /// Pay without asking (the fee quote is still printed).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `paygress wallet restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The 24 seed words (or 128 hex characters) `paygress wallet backup` printed; read
    /// from stdin when absent.
    #[arg(long, hide_env_values = true)]
    pub words: Option<String>,
}

/// Runs `paygress wallet withdraw`.
pub async fn withdraw(wallet: &CashuVerifier, args: WithdrawArgs) -> Result<()> {
    let mint = args
        .mint
        .as_deref()
        .map(normalize_mint_url)
        .transpose()
        .context("--mint")?;
    let invoice = match (&args.invoice, &args.lightning_address, args.amount) {
        (Some(invoice), _, _) => invoice.clone(),
        (None, Some(address), Some(sat)) => {
            eprintln!("Asking {address} for an invoice of {sat} sat…");
            paygress_cashu::lnaddress::invoice_for(address, sat * 1000).await?
        }
        _ => bail!("give --invoice, or --lightning-address with --amount"),
    };
    let quote = wallet
        .withdraw_quote(&invoice, mint.as_ref())
        .await
        .context("asking the mint for a fee quote")?;
    print_quote(&quote);
    if !args.yes && !confirm()? {
        eprintln!("Not paid.");
        return Ok(());
    }
    let paid = wallet
        .withdraw(&quote)
        .await
        .context("paying the invoice")?;
    println!(
        "Paid {} from {} (Lightning fee {}).",
        paid.amount, paid.mint, paid.fee_paid
    );
    if let Some(p) = paid.preimage {
        println!("Preimage: {p}");
    }
    Ok(())
}

fn print_quote(q: &WithdrawQuote) {
    println!("Mint:         {}", q.mint);
    println!("Amount:       {}", q.amount);
    println!(
        "Fee reserve:  {} (at most; unused fee comes back)",
        q.fee_reserve
    );
    println!(
        "Most taken:   {} of {} held at this mint",
        q.max_cost(),
        q.balance
    );
}

fn confirm() -> Result<bool> {
    eprint!("Pay? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Runs `paygress wallet history`.
pub async fn history(wallet: &CashuVerifier) -> Result<()> {
    println!(
        "{:<20} {:<10} {:>12} {:>8} mint",
        "time (UTC)", "what", "amount", "fee"
    );
    for e in wallet.history().await? {
        let when = jiff::Timestamp::from_second(e.timestamp as i64)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        println!(
            "{:<20} {:<10} {:>12} {:>8} {}",
            when,
            e.movement.to_string(),
            e.amount.to_string(),
            e.fee.value,
            e.mint
        );
    }
    Ok(())
}

/// Runs `paygress wallet backup`: prints the seed and how to restore it.
pub fn backup(config: &CashuConfig) -> Result<()> {
    let backup = paygress_cashu::read_seed_backup(&config.seed_path())
        .with_context(|| format!("reading {}", config.seed_path().display()))?;
    match &backup {
        SeedBackup::Words(_) => {
            println!("Seed words (write them down; anyone with them holds the income):")
        }
        SeedBackup::Hex(_) => println!(
            "Seed (this wallet predates seed words: keep these 128 hex characters; anyone with them holds the income):"
        ),
    }
    println!();
    println!("    {}", backup.expose());
    println!();
    println!(
        "Restore: on a fresh data directory, with the same WHITELISTED_MINTS,\n\
         \n    paygress wallet --data-dir NEW_DIR restore   (paste the seed on stdin)\n\n\
         writes the seed file and asks each mint which outputs of this seed it signed\n\
         (Cashu NUT-09 restore of NUT-13 deterministic secrets); unspent proofs come back\n\
         into the wallet. Income at a mint no longer listed is found only when it is listed."
    );
    Ok(())
}

/// Runs `paygress wallet restore`: writes the seed into a data directory that has none,
/// then recovers the proofs from every accepted mint.
pub async fn restore(config: &CashuConfig, args: RestoreArgs) -> Result<()> {
    let words = match args.words {
        Some(w) => w,
        None => {
            eprintln!("Seed words (or hex), then Enter:");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    paygress_cashu::write_seed_backup(&config.seed_path(), &words)
        .context("writing the seed (restore only into a data directory without a wallet)")?;
    let wallet = CashuVerifier::open(config).await?;
    for r in wallet.restore().await.context("restoring from the mints")? {
        println!(
            "{}: {} restored ({} already spent)",
            r.mint, r.unspent, r.spent
        );
    }
    Ok(())
}

/// Where and when income is swept to Lightning automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// The Lightning address (`WITHDRAW_TO`).
    pub to: String,
    /// Sweep a mint's balance once it is above this (`WITHDRAW_ABOVE_SATS`).
    pub above_sats: u64,
}

/// How often balances are checked against `WITHDRAW_ABOVE_SATS`.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

impl SweepConfig {
    /// The sweep `WITHDRAW_TO` and `WITHDRAW_ABOVE_SATS` ask for; `None` when
    /// `WITHDRAW_TO` is unset or empty.
    pub fn from_args(args: &crate::config::ServeArgs) -> Result<Option<Self>> {
        let Some(to) = args
            .withdraw_to
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        paygress_cashu::lnaddress::lnurlp_url(to).context("WITHDRAW_TO")?;
        let Some(above_sats) = args.withdraw_above_sats else {
            bail!("WITHDRAW_TO needs WITHDRAW_ABOVE_SATS (the balance to sweep above)");
        };
        Ok(Some(Self {
            to: to.to_owned(),
            above_sats,
        }))
    }
}

/// Quotes asked per mint and sweep before giving up on fitting the fee reserve.
const SWEEP_QUOTE_ATTEMPTS: usize = 4;

/// Sweeps each mint whose `sat` balance is above the threshold: asks the address for
/// an invoice of the balance less a fee margin, and pays it when the amount plus the
/// mint's fee reserve fits the balance. A reserve larger than the margin (mints reserve
/// a share of the amount) scales the amount down to fit, and a new invoice is asked.
/// Returns what was sent per mint.
pub async fn sweep_once(wallet: &CashuVerifier, config: &SweepConfig) -> Vec<(MintUrl, u64)> {
    let mut sent = Vec::new();
    let Ok(balances) = wallet.balances().await else {
        return sent;
    };
    for b in balances.into_iter().filter(|b| b.amount.unit == Unit::Sat) {
        let balance = b.amount.value;
        if balance <= config.above_sats {
            continue;
        }
        // Lightning fee margin: 1% (at least 2 sat), refined by the mint's quotes.
        let mut amount = balance.saturating_sub((balance / 100).max(2));
        for _ in 0..SWEEP_QUOTE_ATTEMPTS {
            if amount == 0 {
                break;
            }
            let result = async {
                let invoice =
                    paygress_cashu::lnaddress::invoice_for(&config.to, amount * 1000).await?;
                wallet.withdraw_quote(&invoice, Some(&b.mint)).await
            }
            .await;
            match result {
                Ok(quote) => match wallet.withdraw(&quote).await {
                    Ok(paid) => {
                        info!(mint = %b.mint, amount = %paid.amount, fee = %paid.fee_paid, "swept income to WITHDRAW_TO");
                        sent.push((b.mint.clone(), paid.amount.value));
                    }
                    Err(e) => warn!(mint = %b.mint, error = %e, "sweep payment failed"),
                },
                Err(paygress_cashu::CashuError::InsufficientFunds(cost)) => {
                    // Amount plus reserve (`cost`) is over the balance: scale the amount
                    // by balance / cost, always down.
                    let scaled =
                        u128::from(amount) * u128::from(balance) / u128::from(cost.value.max(1));
                    amount = u64::try_from(scaled)
                        .unwrap_or(0)
                        .min(amount.saturating_sub(1));
                    continue;
                }
                Err(e) => warn!(mint = %b.mint, error = %e, "sweep quote failed"),
            }
            break;
        }
    }
    sent
}

/// Runs [`sweep_once`] every [`SWEEP_INTERVAL`] until the task is dropped.
pub async fn run_sweeper(wallet: Arc<CashuVerifier>, config: SweepConfig) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        sweep_once(&wallet, &config).await;
    }
}
