//! `paygress-chaos`: the fault-injection run (`cargo xtask chaos`). See
//! `paygress_testkit::chaos`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use paygress_testkit::chaos::{ChaosOptions, run};

/// Kills and restarts `paygress` under paid load with a faulty mint; checks the books.
#[derive(Debug, Parser)]
#[command(name = "paygress-chaos")]
struct Args {
    /// Paid requests to send.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `paygress` binary built with `--features failpoints` [default: next to this
    /// program].
    #[arg(long)]
    paygress: Option<PathBuf>,
    /// Probability per request of a SIGKILL at a random instant.
    #[arg(long, default_value_t = 0.08)]
    kill_probability: f64,
    /// Probability of each failpoint firing when passed.
    #[arg(long, default_value_t = 0.03)]
    failpoint_probability: f64,
    /// Probability per swap of each proxy fault (lose, cut, delay).
    #[arg(long, default_value_t = 0.04)]
    swap_fault_probability: f64,
    /// Probability per lease that its owner releases it at once (refund of the rest).
    #[arg(long, default_value_t = 0.3)]
    release_probability: f64,
    /// First SSH port of the local backend (1000 ports are used).
    #[arg(long, default_value_t = 31000)]
    port_base: u16,
    /// Print every request's outcome.
    #[arg(long)]
    verbose: bool,
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let paygress = match args.paygress {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("paygress"),
    };
    let mut opts = ChaosOptions::new(args.requests, args.seed, paygress);
    opts.kill_probability = args.kill_probability;
    opts.failpoint_probability = args.failpoint_probability;
    opts.swap_fault_probability = args.swap_fault_probability;
    opts.release_probability = args.release_probability;
    opts.port_base = args.port_base;
    opts.verbose = args.verbose;
    let report = run(&opts).await?;
    println!("{}", report.table());
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
