//! Every process of a lease, found through `/proc`, and killing them.

use std::collections::HashSet;

/// `(pid, ppid, pgid, sid)` of every process in `/proc`.
fn process_table() -> Vec<(u32, u32, u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // "pid (comm) state ppid pgrp session …"; comm may contain anything but ends
        // at the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut f = rest.split_whitespace();
        if matches!(f.next()?, "Z" | "X") {
            return None; // dead, waiting to be reaped
        }
        let ppid = f.next()?.parse().ok()?;
        let pgid = f.next()?.parse().ok()?;
        let sid = f.next()?.parse().ok()?;
        Some((pid, ppid, pgid, sid))
    })
    .collect()
}

/// Every live process started by `roots`: the roots, their descendants, and any
/// process in a process group or session a root leads.
pub(crate) fn lease_processes(roots: &HashSet<u32>) -> HashSet<u32> {
    let table = process_table();
    let mut found: HashSet<u32> = table
        .iter()
        .filter(|(pid, _, pgid, sid)| {
            roots.contains(pid) || roots.contains(pgid) || roots.contains(sid)
        })
        .map(|(pid, ..)| *pid)
        .collect();
    loop {
        let before = found.len();
        for (pid, ppid, ..) in &table {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// SIGKILLs every process of `roots` (see [`lease_processes`]) and returns how many
/// were signalled.
pub(crate) fn kill_all(roots: &HashSet<u32>) -> usize {
    let own = std::process::id();
    let victims: Vec<u32> = lease_processes(roots)
        .into_iter()
        .filter(|p| *p != own)
        .collect();
    for pid in &victims {
        if let Some(p) = i32::try_from(*pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
    victims.len()
}
