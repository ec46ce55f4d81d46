//! The host's own IPv4 addresses and subnets, which a lease's namespace must not reach.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;

/// Every IPv4 address of the host (as /32) and every subnet it is on, except loopback.
pub(super) fn host_ipv4_cidrs(ip: &Path) -> Vec<String> {
    let out = std::process::Command::new(ip)
        .args(["-4", "-o", "addr", "show"])
        .stdin(Stdio::null())
        .output();
    let Ok(out) = out else {
        return Vec::new();
    };
    parse_ipv4_cidrs(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `ip -4 -o addr show` output into `addr/32` and `network/len` entries.
pub(super) fn parse_ipv4_cidrs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w != "inet" {
                continue;
            }
            let Some((addr, len)) = words.next().and_then(|c| c.split_once('/')) else {
                break;
            };
            let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
                break;
            };
            if addr.is_loopback() || len > 32 {
                break;
            }
            out.push(format!("{addr}/32"));
            if len < 32 {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                let net = Ipv4Addr::from(u32::from(addr) & mask);
                out.push(format!("{net}/{len}"));
            }
            break;
        }
    }
    out
}
