//! The failpoint hook of chaos builds (feature `failpoints`): aborts the process at
//! the service's named points with the probabilities in `PAYGRESS_FAILPOINTS`
//! (`after-swap-before-journal:0.1,during-refund:0.05`), drawn from
//! `PAYGRESS_FAILPOINTS_SEED` (random if unset). An abort is as abrupt as SIGKILL: no
//! destructor runs, nothing is flushed.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The variable naming the points and their probabilities.
pub const ENV: &str = "PAYGRESS_FAILPOINTS";
/// The variable seeding the draws.
pub const ENV_SEED: &str = "PAYGRESS_FAILPOINTS_SEED";

struct Plan {
    points: HashMap<String, f64>,
    rng: Mutex<StdRng>,
}

static PLAN: OnceLock<Plan> = OnceLock::new();

/// Parses `name:probability,...`; names must be core's failpoints.
pub fn parse(spec: &str) -> Result<HashMap<String, f64>> {
    let mut points = HashMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, p) = item
            .split_once(':')
            .with_context(|| format!("{ENV}: {item:?} is not name:probability"))?;
        if !paygress_core::failpoint::POINTS.contains(&name) {
            bail!(
                "{ENV}: unknown failpoint {name:?}; known: {}",
                paygress_core::failpoint::POINTS.join(", ")
            );
        }
        let p: f64 = p
            .parse()
            .with_context(|| format!("{ENV}: probability of {name}"))?;
        if !(0.0..=1.0).contains(&p) {
            bail!("{ENV}: probability of {name} must be within 0..1");
        }
        points.insert(name.to_owned(), p);
    }
    Ok(points)
}

fn hook(name: &'static str) {
    let Some(plan) = PLAN.get() else { return };
    let Some(&p) = plan.points.get(name) else {
        return;
    };
    let fire = plan
        .rng
        .lock()
        .map(|mut rng| rng.random::<f64>() < p)
        .unwrap_or(false);
    if fire {
        eprintln!("paygress: failpoint {name} fired; aborting");
        std::process::abort();
    }
}

/// Installs the hook from the environment; does nothing when `PAYGRESS_FAILPOINTS` is
/// unset or empty.
pub fn install_from_env() -> Result<()> {
    let spec = std::env::var(ENV).unwrap_or_default();
    let points = parse(&spec)?;
    if points.is_empty() {
        return Ok(());
    }
    let seed = match std::env::var(ENV_SEED) {
        Ok(s) => s.parse().context(ENV_SEED)?,
        Err(_) => rand::random(),
    };
    let _ = PLAN.set(Plan {
        points,
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
    });
    paygress_core::failpoint::install(hook);
    tracing::warn!(spec = %spec, "failpoints armed: this process will abort on purpose");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let p = parse("after-swap-before-journal:0.5, during-refund:1").expect("parse");
        assert_eq!(p.len(), 2);
        assert_eq!(p["during-refund"], 1.0);
        assert!(parse("nowhere:0.1").is_err());
        assert!(parse("during-refund:2").is_err());
        assert!(parse("during-refund").is_err());
        assert!(parse("").expect("empty").is_empty());
    }
}
