//! The syntax of tiers (`id:cpu_millicores:memory_mib[:sats_per_hour]`) and port
//! ranges (`first-last`).

use anyhow::{Context, Result, bail, ensure};
use paygress_core::{Rate, Tier};

/// Parses `id:cpu_millicores:memory_mib[:sats_per_hour]`.
pub fn parse_tier(spec: &str) -> Result<Tier> {
    let parts: Vec<&str> = spec.trim().split(':').collect();
    let (id, cpu, mem, rate) = match parts.as_slice() {
        [id, cpu, mem] => (*id, *cpu, *mem, None),
        [id, cpu, mem, rate] => (*id, *cpu, *mem, Some(*rate)),
        _ => bail!("tier {spec:?}: expected id:cpu_millicores:memory_mib[:sats_per_hour]"),
    };
    ensure!(
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "tier {spec:?}: id must be lowercase letters, digits or '-'"
    );
    let rate = match rate {
        Some(r) => Some(
            Rate::from_sats_per_hour(r.parse().with_context(|| format!("tier {spec:?}: rate"))?)
                .with_context(|| format!("tier {spec:?}: rate must be greater than 0"))?,
        ),
        None => None,
    };
    Ok(Tier {
        id: id.to_owned(),
        cpu_millicores: cpu
            .trim_end_matches('m')
            .parse()
            .with_context(|| format!("tier {spec:?}: cpu millicores"))?,
        memory_mib: mem
            .trim_end_matches("Mi")
            .parse()
            .with_context(|| format!("tier {spec:?}: memory MiB"))?,
        rate,
    })
}

/// Parses `first-last`.
pub fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("port range {s:?}: expected first-last"))?;
    let (a, b): (u16, u16) = (
        a.trim().parse().context("port range start")?,
        b.trim().parse().context("port range end")?,
    );
    ensure!(a > 0 && a <= b, "port range {s:?} is empty");
    Ok(a..=b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse() {
        let t = parse_tier("pro:2000m:4096Mi:240").unwrap();
        assert_eq!(t.id, "pro");
        assert_eq!(t.cpu_millicores, 2000);
        assert_eq!(t.memory_mib, 4096);
        assert_eq!(t.rate, Rate::from_sats_per_hour(240));
        assert_eq!(parse_tier("basic:500:512").unwrap().rate, None);
        for bad in ["x", "Pro:1:1", "a:b:c", "a:1:1:0", "a:1:1:1:1"] {
            assert!(parse_tier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("2300-2399").unwrap(), 2300..=2399);
        assert!(parse_port_range("2399-2300").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("abc").is_err());
    }
}
