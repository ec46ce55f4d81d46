//! `cargo xtask startup-order`: writes `crates/paygress-bin/startup.order`, the functions
//! `paygress serve` runs while it starts, becomes healthy, idles and stops. The optimised
//! build links them side by side (`crates/paygress-bin/build.rs`), so an idle service
//! maps a few MiB of its code instead of most of it.
//!
//! How: the `dist` build with its symbols kept runs under valgrind's callgrind in the
//! bench's start-up scenario (`paygress serve`, HTTP mode, Kubernetes backend on the fake
//! API, the in-process mint; started three times, each stopped with SIGTERM after 3 s
//! idle, when callgrind writes its counts). Every function with a cost is listed.
//!
//! Needs valgrind (`apt-get install valgrind`). Rerun after a toolchain or dependency
//! update: the names carry the crates' hashes, and names that no longer exist are skipped
//! by the linker, so a stale file costs memory, never correctness.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::{cmd, have, root, target_dir};

/// Builds, profiles and writes the file; prints how many functions it lists.
pub fn run() -> Result<()> {
    if !have("valgrind") {
        bail!("valgrind is not installed (apt-get install valgrind)");
    }
    let target = target_dir()?;
    cmd(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "paygress-bench",
            "--bin",
            "paygress-bench",
        ],
    )?;
    // `cargo rustc` flags leave the crates' hashes (`-C metadata`) as they are in
    // `cargo build --profile dist`, so the names profiled are the names linked.
    cmd(
        "cargo",
        &[
            "rustc",
            "--profile",
            "dist",
            "-p",
            "paygress-bin",
            "--bin",
            "paygress",
            "--",
            "-C",
            "strip=none",
        ],
    )?;
    let work = target.join("startup-order");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    // A copy: the next `cargo build --profile dist` replaces target/dist/paygress.
    let binary = work.join("paygress");
    fs::copy(target.join("dist").join("paygress"), &binary)?;
    let wrapper = work.join("paygress-under-callgrind");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind --tool=callgrind --vgdb=no \
             --dump-instr=no --demangle=no --compress-strings=no --compress-pos=no \
             --log-file={dir}/log.%p --callgrind-out-file={dir}/callgrind.%p {bin} \"$@\"\n",
            dir = work.display(),
            bin = binary.display(),
        ),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
    }
    let bench = target.join("release").join("paygress-bench");
    let report = work.join("bench.md");
    cmd(
        bench.to_str().context("path")?,
        &[
            "run",
            "--quick",
            "--only",
            "none",
            "--paygress",
            wrapper.to_str().context("path")?,
            "--out",
            report.to_str().context("path")?,
        ],
    )?;
    let names = executed(&work, &binary)?;
    if names.len() < 100 {
        bail!(
            "only {} functions found in {}: did paygress start under valgrind (see its log.* files)?",
            names.len(),
            work.display()
        );
    }
    let out = root()?.join("crates/paygress-bin/startup.order");
    let mut text = names.join("\n");
    text.push('\n');
    fs::write(&out, text)?;
    eprintln!(
        "xtask: {} functions written to {}; `cargo build --profile dist` links with them",
        names.len(),
        out.display()
    );
    Ok(())
}

/// The functions of `binary` with a cost in any callgrind dump in `dir`, each once, in
/// the order they first appear (dumps by process, then by sequence number).
fn executed(dir: &Path, binary: &Path) -> Result<Vec<String>> {
    let mut dumps: Vec<(u64, u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.strip_prefix("callgrind.")?;
            let mut parts = name.split('.');
            let pid = parts.next()?.parse().ok()?;
            let seq = parts.next().map_or(Some(u64::MAX), |s| s.parse().ok())?;
            Some((pid, seq, path))
        })
        .collect();
    dumps.sort();
    // valgrind names the object by the path it was started from; other objects are
    // shared libraries (libc, the loader).
    let binary = binary.file_name().context("binary path")?;
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for (_, _, path) in dumps {
        let text = fs::read_to_string(&path)?;
        let mut ours = false;
        for line in text.lines() {
            if let Some(object) = line.strip_prefix("ob=") {
                ours = Path::new(object.trim()).file_name() == Some(binary);
            } else if let Some(function) = line.strip_prefix("fn=")
                && ours
                && let Some(name) = symbol(function)
                && seen.insert(name.to_owned())
            {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// The linker's name for a callgrind function name: without its recursion mark (`'2`);
/// `None` for what has no symbol (`0x…` addresses, `(below main)`).
fn symbol(function: &str) -> Option<&str> {
    let name = function.trim();
    let name = match name.rsplit_once('\'') {
        Some((base, depth)) if depth.chars().all(|c| c.is_ascii_digit()) => base,
        _ => name,
    };
    (!name.is_empty() && !name.starts_with("0x") && !name.starts_with('(')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_recursion_mark_and_addresses_are_skipped() {
        assert_eq!(symbol("sqlite3WhereSplit'2"), Some("sqlite3WhereSplit"));
        assert_eq!(
            symbol("_ZN4core3fmt5write17h0123456789abcdefE"),
            Some("_ZN4core3fmt5write17h0123456789abcdefE")
        );
        assert_eq!(symbol("0x0000000000652520"), None);
        assert_eq!(symbol("(below main)"), None);
    }

    #[test]
    fn functions_of_the_binary_in_first_run_order_across_dumps() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-order-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let bin = "/x/paygress";
        fs::write(
            dir.join("callgrind.7.2"),
            format!("ob={bin}\nfn=c\n1 1\nob=/lib/libc.so.6\nfn=memcpy\n1 1\nob={bin}\nfn=a\n"),
        )?;
        fs::write(
            dir.join("callgrind.7.1"),
            format!("ob={bin}\nfn=a\nfn=b'2\n"),
        )?;
        fs::write(dir.join("callgrind.9.1"), format!("ob={bin}\nfn=d\nfn=c\n"))?;
        fs::write(dir.join("log.7"), "not a dump")?;
        let names = executed(&dir, Path::new(bin));
        fs::remove_dir_all(&dir)?;
        assert_eq!(names?, ["a", "b", "c", "d"]);
        Ok(())
    }
}
