//! What a lease tells its buyer from inside: the message of the day, the lease file
//! (`~/.paygress/lease.json`) and the expiry warnings written to open terminals.

use std::io::Write;
use std::path::Path;

use jiff::Timestamp;
use paygress_core::names::LeaseId;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use serde::Serialize;

/// The default top-up command shown inside a lease (`{pod}` is the lease name).
pub const DEFAULT_TOP_UP_COMMAND: &str = "paygress topup --pod {pod} --token <cashu token>";

/// The top-up command of lease `id` from a template (`{pod}` replaced).
pub(crate) fn top_up_command(template: &str, id: &LeaseId) -> String {
    template.replace("{pod}", id.as_str())
}

/// `2 h 5 min`, `10 min`, `45 s`: the time from `now` to `at` (zero once past), rounded
/// to the nearest minute from a minute on.
pub(crate) fn remaining(now: Timestamp, at: Timestamp) -> String {
    let secs = u64::try_from(at.duration_since(now).as_secs()).unwrap_or(0);
    if secs < 60 {
        return format!("{secs} s");
    }
    let minutes = (secs + 30) / 60;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// The message of the day, shown before an interactive shell (terminal line endings).
pub(crate) fn motd(id: &LeaseId, now: Timestamp, expires_at: Timestamp, top_up: &str) -> String {
    format!(
        "Paygress lease {id}\r\n\
         Paid until {expires_at} ({} left).\r\n\
         Top up: {top_up}\r\n\
         Lease details: ~/.paygress/lease.json\r\n\r\n",
        remaining(now, expires_at)
    )
}

/// The warning written to open terminals `before` the expiry.
pub(crate) fn warning(id: &LeaseId, now: Timestamp, expires_at: Timestamp, top_up: &str) -> String {
    format!(
        "\r\n\x07*** Paygress: lease {id} ends in {} (at {expires_at}); its processes will be stopped. Top up: {top_up} ***\r\n",
        remaining(now, expires_at)
    )
}

/// The content of `~/.paygress/lease.json`.
#[derive(Debug, Serialize)]
struct LeaseFile<'a> {
    pod_name: &'a str,
    username: &'a str,
    expires_at: Timestamp,
    top_up_command: &'a str,
}

/// Writes `<home>/.paygress/lease.json` (0644, owned by `owner` when given) without
/// following any link the lease's user may have planted: the directory and the file are
/// opened relative to the home with `O_NOFOLLOW`, the file is written under a fresh
/// temporary name (`O_EXCL`) and renamed into place.
pub(crate) fn write_lease_file(
    home: &Path,
    owner: Option<(u32, u32)>,
    id: &LeaseId,
    username: &str,
    expires_at: Timestamp,
    top_up: &str,
) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(&LeaseFile {
        pod_name: id.as_str(),
        username,
        expires_at,
        top_up_command: top_up,
    })
    .map_err(std::io::Error::other)?;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let home_fd = rustix::fs::open(home, dir_flags, Mode::empty())?;
    let chown = |fd: &rustix::fd::OwnedFd| -> std::io::Result<()> {
        if let Some((uid, gid)) = owner {
            rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        }
        Ok(())
    };
    let dir = match rustix::fs::openat(&home_fd, ".paygress", dir_flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => {
            rustix::fs::mkdirat(&home_fd, ".paygress", Mode::from_raw_mode(0o755))?;
            let fd = rustix::fs::openat(&home_fd, ".paygress", dir_flags, Mode::empty())?;
            chown(&fd)?;
            fd
        }
        Err(e) => return Err(e.into()),
    };
    let tmp = ".lease.json.paygress-tmp";
    match rustix::fs::unlinkat(&dir, tmp, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::openat(
        &dir,
        tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    chown(&fd)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&body)?;
    file.write_all(b"\n")?;
    drop(file);
    rustix::fs::renameat(&dir, tmp, &dir, "lease.json")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn remaining_time_reads_like_a_person_would_say_it() {
        let now = ts("2026-01-01T00:00:00Z");
        let at = |s: &str| ts(s);
        assert_eq!(remaining(now, at("2026-01-01T00:00:45Z")), "45 s");
        assert_eq!(remaining(now, at("2026-01-01T00:01:00Z")), "1 min");
        assert_eq!(remaining(now, at("2026-01-01T00:09:50Z")), "10 min");
        assert_eq!(remaining(now, at("2026-01-01T02:05:00Z")), "2 h 5 min");
        assert_eq!(remaining(now, at("2026-01-01T03:00:00Z")), "3 h");
        assert_eq!(remaining(at("2026-01-01T00:00:45Z"), now), "0 s");
    }

    #[test]
    fn the_lease_file_is_not_written_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let id: LeaseId = "ssh-pod-abcd1234".parse().unwrap();
        let at = ts("2026-01-01T00:00:00Z");

        write_lease_file(&home, None, &id, "alice", at, "topup").unwrap();
        let text = std::fs::read_to_string(home.join(".paygress/lease.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["pod_name"], "ssh-pod-abcd1234");
        assert_eq!(v["expires_at"], "2026-01-01T00:00:00Z");
        assert_eq!(v["top_up_command"], "topup");

        // A lease file replaced by a link to a file outside: the link is replaced, the
        // target untouched.
        let target = elsewhere.join("victim");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(home.join(".paygress/lease.json")).unwrap();
        std::os::unix::fs::symlink(&target, home.join(".paygress/lease.json")).unwrap();
        std::os::unix::fs::symlink(&target, home.join(".paygress/.lease.json.paygress-tmp"))
            .unwrap();
        write_lease_file(&home, None, &id, "alice", at, "topup").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(
            !std::fs::symlink_metadata(home.join(".paygress/lease.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        // The directory itself a link: refused, nothing written there.
        std::fs::remove_dir_all(home.join(".paygress")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.join(".paygress")).unwrap();
        assert!(write_lease_file(&home, None, &id, "alice", at, "topup").is_err());
        assert!(!elsewhere.join("lease.json").exists());
    }
}
