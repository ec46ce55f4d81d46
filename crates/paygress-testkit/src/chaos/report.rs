//! [`Report`]: what a chaos run counted, and its table.

use std::fmt::Write as _;

/// The outcome of a run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Requests sent.
    pub requests: usize,
    /// HTTP sends, retries included.
    pub sends: u64,
    /// SIGKILLs sent by the driver.
    pub kills: u64,
    /// Aborts at failpoints (from the service's log).
    pub failpoint_aborts: u64,
    /// Service starts.
    pub starts: u64,
    /// Swap answers the proxy lost (502).
    pub swaps_lost: u64,
    /// Swap connections the proxy cut.
    pub swaps_cut: u64,
    /// Swap answers the proxy delayed.
    pub swaps_delayed: u64,
    /// Moments the mint was unreachable.
    pub mint_down: u64,
    /// Leases granted.
    pub leases: u64,
    /// Refund tokens returned.
    pub refunds: u64,
    /// Change tokens returned.
    pub changes: u64,
    /// Leases released early by their owner.
    pub releases: u64,
    /// Sum the release refunds redeemed for.
    pub released_sats: u64,
    /// Requests refused with the token untouched (still the buyer's).
    pub untouched: u64,
    /// Sum of the tokens' values.
    pub paid_sats: u64,
    /// Sum charged for leases.
    pub charged_sats: u64,
    /// Sum returned (change, refunds, untouched tokens), as redeemed at the mint.
    pub returned_sats: u64,
    /// Sats that went missing (buyer side).
    pub lost_sats: u64,
    /// Sats handed out beyond what was paid (operator side).
    pub over_returned_sats: u64,
    /// Requests that got more than one lease.
    pub double_provisions: u64,
    /// Leases the service listed that no request paid for.
    pub unpaid_leases: u64,
    /// Leases still reachable after their expiry.
    pub alive_after_expiry: u64,
    /// What the service's wallet holds at the end.
    pub wallet_sats: u64,
    /// Panics in the service's log.
    pub panics: u64,
    /// Every problem found, one line each.
    pub problems: Vec<String>,
    /// Where the service wallet disagrees with the leases sold (the operator's books).
    pub operator_problems: Vec<String>,
}

impl Report {
    /// Whether the run found no loss and no inconsistency.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.operator_problems.is_empty()
    }

    /// Whether every buyer got exactly their money's worth (lease time, change, refund)
    /// and no lease ran unpaid or twice; the operator's books are [`Report::ok`]'s other
    /// half.
    pub fn buyers_whole(&self) -> bool {
        self.problems.is_empty()
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let rows: Vec<(&str, String)> = vec![
            ("requests", self.requests.to_string()),
            ("HTTP sends (with resends)", self.sends.to_string()),
            ("service starts", self.starts.to_string()),
            ("SIGKILLs at random instants", self.kills.to_string()),
            ("aborts at failpoints", self.failpoint_aborts.to_string()),
            ("swap answers lost (502)", self.swaps_lost.to_string()),
            ("swap connections cut", self.swaps_cut.to_string()),
            ("swap answers delayed", self.swaps_delayed.to_string()),
            ("mint unreachable episodes", self.mint_down.to_string()),
            ("leases", self.leases.to_string()),
            ("change tokens", self.changes.to_string()),
            ("refund tokens", self.refunds.to_string()),
            ("leases released early", self.releases.to_string()),
            ("sats refunded for releases", self.released_sats.to_string()),
            ("refused, token untouched", self.untouched.to_string()),
            ("sats paid", self.paid_sats.to_string()),
            ("sats charged for leases", self.charged_sats.to_string()),
            ("sats returned (redeemed)", self.returned_sats.to_string()),
            ("service wallet balance", self.wallet_sats.to_string()),
            ("sats lost", self.lost_sats.to_string()),
            ("sats over-returned", self.over_returned_sats.to_string()),
            ("double provisions", self.double_provisions.to_string()),
            ("leases without payment", self.unpaid_leases.to_string()),
            (
                "leases alive after expiry",
                self.alive_after_expiry.to_string(),
            ),
            ("panics", self.panics.to_string()),
        ];
        let mut out = String::new();
        let _ = writeln!(out, "| {:<30} | {:>10} |", "chaos run", "");
        let _ = writeln!(out, "|{:-<32}|{:->12}|", "", "");
        for (k, v) in rows {
            let _ = writeln!(out, "| {k:<30} | {v:>10} |");
        }
        if self.ok() {
            let _ = writeln!(out, "\nno loss, no inconsistency");
        } else {
            let all: Vec<&String> = self
                .problems
                .iter()
                .chain(&self.operator_problems)
                .collect();
            let _ = writeln!(out, "\n{} problem(s):", all.len());
            for p in all {
                let _ = writeln!(out, "- {p}");
            }
        }
        out
    }
}
