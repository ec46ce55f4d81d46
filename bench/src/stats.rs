//! Percentiles of a sample of durations.

use std::time::Duration;

/// p50/p90/p99/max of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Sample size.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summarises `sample` (nearest-rank percentiles).
    pub fn of(sample: &[Duration]) -> Self {
        if sample.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = sample.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let rank = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            ms[rank - 1]
        };
        Self {
            n: ms.len(),
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: ms[ms.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let sum = Summary::of(&s);
        assert_eq!(
            (sum.p50, sum.p90, sum.p99, sum.max),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Summary::of(&[]).n, 0);
    }
}
