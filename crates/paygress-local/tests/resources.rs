//! Per-lease resources: own uid (as root), size-limited `/tmp` and files, and the
//! capacity check (disk space, ports).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use paygress_core::ports::{BackendError, PodBackend};
use paygress_local::{LocalBackend, LocalConfig, PortRange, SandboxMode, UidRange};

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

async fn backend_with(
    dir: &Path,
    start: u16,
    ports: u16,
    edit: impl FnOnce(&mut LocalConfig),
) -> LocalBackend {
    let mut config = LocalConfig::new(dir);
    config.port_range = PortRange::new(start, start + ports - 1).unwrap();
    config.sandbox = SandboxMode::Bubblewrap;
    edit(&mut config);
    LocalBackend::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lease_runs_as_its_own_uid() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(dir.path(), 24500, 10, |c| {
        c.uid_range = UidRange::new(3_100_000, 3_100_009).unwrap();
    })
    .await;
    let one = spec_for(300);
    let mut two = spec_for(300);
    two.id = "ssh-pod-second01".parse().unwrap();
    let p1 = b.create(&one).await.unwrap().node_port.unwrap();
    let p2 = b.create(&two).await.unwrap().node_port.unwrap();
    let id1 = ssh(
        p1,
        "alice",
        one.password.expose(),
        &[],
        "id -u; id -g; touch ~/mine; stat -c %u ~/mine; whoami",
    )
    .await;
    let id2 = ssh(p2, "alice", two.password.expose(), &[], "id -u").await;
    if is_root() {
        let u1 = b.lease_uid(&one.id).await.unwrap();
        let u2 = b.lease_uid(&two.id).await.unwrap();
        assert_ne!(u1, u2);
        assert!((3_100_000..=3_100_009).contains(&u1) && (3_100_000..=3_100_009).contains(&u2));
        assert_eq!(id1.stdout, format!("{u1}\n{u1}\n{u1}\nalice\n"), "{id1:?}");
        assert_eq!(id2.stdout, format!("{u2}\n"), "{id2:?}");
        assert_eq!(std::fs::metadata(b.home_dir(&one.id)).unwrap().uid(), u1);
        // The uid survives a restart (the home belongs to it).
        drop(b);
        let b = backend_with(dir.path(), 24500, 10, |c| {
            c.uid_range = UidRange::new(3_100_000, 3_100_009).unwrap();
        })
        .await;
        assert_eq!(b.lease_uid(&one.id).await, Some(u1));
        b.delete(&one.id).await.unwrap();
        b.delete(&two.id).await.unwrap();
    } else {
        assert_eq!(b.lease_uid(&one.id).await, None);
        assert_eq!(id1.stdout.lines().next(), id2.stdout.lines().next());
        b.delete(&one.id).await.unwrap();
        b.delete(&two.id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmp_and_file_sizes_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(dir.path(), 24510, 10, |c| {
        c.tmp_size_mib = 8;
        c.max_file_mib = 4;
    })
    .await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let pw = spec.password.expose();
    // /tmp (and /var/tmp, which points to it) hold at most 8 MiB in all.
    let out = ssh(
        port,
        "alice",
        pw,
        &[],
        "for i in 1 2 3; do head -c 3M /dev/zero > /tmp/f$i || echo tmp-full; done; \
         head -c 3M /dev/zero > /var/tmp/g 2>/dev/null || echo var-tmp-full; du -sk /tmp | cut -f1",
    )
    .await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"tmp-full"), "{out:?}");
    assert!(lines.contains(&"var-tmp-full"), "{out:?}");
    let kib: u64 = lines.last().unwrap().parse().unwrap();
    assert!(kib <= 8 * 1024, "{out:?}");
    // A file in the home cannot grow past 4 MiB.
    let out = ssh(
        port,
        "alice",
        pw,
        &[],
        "(head -c 6M /dev/zero > ~/big) 2>/dev/null; stat -c %s ~/big",
    )
    .await;
    assert_eq!(out.stdout, format!("{}\n", 4 * 1024 * 1024), "{out:?}");
    b.delete(&spec.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_or_no_port_means_no_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let free = {
        let b = backend_with(dir.path(), 24520, 1, |c| c.min_free_mib = 0).await;
        assert!(b.has_capacity().await);
        let spec = spec_for(300);
        b.create(&spec).await.unwrap();
        // The only port is taken: core's capacity check (before any redeem) says why.
        assert!(!b.has_capacity().await);
        let why = b.check_capacity().await.unwrap_err();
        assert!(matches!(why, BackendError::Unavailable(_)), "{why:?}");
        let mut other = spec_for(300);
        other.id = "ssh-pod-second01".parse().unwrap();
        assert!(matches!(
            b.create(&other).await,
            Err(BackendError::Unavailable(_))
        ));
        b.delete(&spec.id).await.unwrap();
        assert!(b.has_capacity().await);
        b.check_capacity().await.unwrap();
        b.free_disk_bytes().unwrap()
    };
    // Require more free space than the disk has: refused before anything is set up.
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(dir.path(), 24530, 10, |c| {
        c.min_free_mib = free / (1024 * 1024) + 1024;
    })
    .await;
    assert!(!b.has_capacity().await);
    let spec = spec_for(300);
    let err = b.create(&spec).await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    assert!(b.get(&spec.id).await.unwrap().is_none());
    assert!(!b.home_dir(&spec.id).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_size_limit_is_a_filesystem_of_its_own() {
    if !is_root() {
        eprintln!("LOCAL_HOME_SIZE_MIB needs root (loop mounts): nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = backend_with(dir.path(), 24540, 10, |c| {
        c.home_size_mib = Some(32);
        c.max_file_mib = 1024;
    })
    .await;
    let spec = spec_for(300);
    let port = b.create(&spec).await.unwrap().node_port.unwrap();
    let home = b.home_dir(&spec.id);
    let out = ssh(
        port,
        "alice",
        spec.password.expose(),
        &[],
        "head -c 64M /dev/zero > ~/big 2>/dev/null || echo home-full; echo kept > ~/small; cat ~/small",
    )
    .await;
    assert!(out.stdout.starts_with("home-full\n"), "{out:?}");
    let size = std::fs::metadata(home.join("big")).unwrap().len();
    assert!(size < 32 * 1024 * 1024, "{size}");
    // The data directory's filesystem did not take the write.
    let image = dir
        .path()
        .join(format!("local/images/{}.img", spec.id.as_str()));
    assert!(image.exists());
    b.delete(&spec.id).await.unwrap();
    assert!(!home.exists(), "home unmounted and removed");
    assert!(!image.exists(), "image removed");
}
