//! Samples the service's state into the gauges of [`crate::observe`]: live leases by
//! tier, value owed to payers, unfinished journal entries.

use std::collections::BTreeMap;

use crate::observe::{JOURNAL_UNFINISHED, LEASES_ACTIVE, OWED_MSAT};
use crate::ports::Stage;

use super::Paygress;

impl Paygress {
    /// Sets the state gauges from the backend's leases and the journal. The binary calls
    /// it before each scrape; a port that fails leaves its gauges as they were.
    pub async fn sample_metrics(&self) {
        if let Ok(leases) = self.backend.list().await {
            let now = self.clock.now();
            let mut by_tier: BTreeMap<String, u64> = self
                .config
                .tiers
                .iter()
                .map(|t| (t.id.clone(), 0))
                .collect();
            for lease in leases.iter().filter(|l| l.state_at(now).is_live()) {
                *by_tier.entry(lease.tier.clone()).or_default() += 1;
            }
            for (tier, n) in by_tier {
                metrics::gauge!(LEASES_ACTIVE, "tier" => tier).set(n as f64);
            }
        }
        if let Ok(open) = self.journal.unfinished().await {
            let owed: u64 = open
                .iter()
                .filter_map(|(_, e)| match &e.stage {
                    Stage::Owed { amount, .. } => Some(amount.to_msat()),
                    _ => None,
                })
                .sum();
            metrics::gauge!(OWED_MSAT).set(owed as f64);
            metrics::gauge!(JOURNAL_UNFINISHED).set(open.len() as f64);
        }
    }
}
