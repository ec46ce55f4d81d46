//! Starting a process inside a lease's network namespace without `nsenter`.
//!
//! On Linux a network namespace belongs to a thread, and a new process starts in the
//! namespace of the thread that forks it. One dedicated thread joins the lease's
//! namespace (`setns`) before every process it starts, so the process (bubblewrap and
//! everything below it) is in that namespace from its first instruction. No other
//! code runs on that thread, so the namespace switch never leaks into Paygress' own
//! sockets, and every job joins its own namespace first: a job whose `setns` fails
//! starts nothing (never a process in the host's or a previous lease's namespace).
//!
//! The thread lives as long as the process: bubblewrap's `--die-with-parent` kills a
//! sandbox when the *thread* that started it exits, so a short-lived thread per job
//! would kill its sandbox at once.

use std::io;
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, mpsc};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

type Job = Box<dyn FnOnce() + Send>;

/// A sender to the spawner thread's queue (the thread is started on first use).
fn queue() -> io::Result<mpsc::Sender<Job>> {
    static QUEUE: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);
    let mut queue = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(q) = queue.as_ref() {
        return Ok(q.clone());
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("paygress-netns".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                // A panicking job must not end the thread (and with it, through
                // `--die-with-parent`, every sandbox it started).
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
        })?;
    Ok(queue.insert(tx).clone())
}

/// Moves the calling thread into the network namespace bound at `netns`
/// (`/run/netns/<name>`).
fn join(netns: &Path) -> io::Result<()> {
    let file = std::fs::File::open(netns)?;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))?;
    Ok(())
}

/// Runs `spawn` (which starts a process) on the spawner thread after moving that
/// thread into the network namespace at `netns`, inside the caller's Tokio runtime
/// (for `tokio::process`). Fails without running `spawn` if the namespace cannot be
/// joined.
pub(crate) async fn in_netns<T, F>(netns: &Path, spawn: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    let netns: PathBuf = netns.to_owned();
    let job: Job = Box::new(move || {
        let result = join(&netns).and_then(|()| {
            let _runtime = handle.enter();
            spawn()
        });
        // If the caller is gone, the process is dropped here (and killed, if it was
        // started with `kill_on_drop`).
        let _ = tx.send(result);
    });
    queue()?
        .send(job)
        .map_err(|_| io::Error::other("the network namespace spawner thread is gone"))?;
    rx.await
        .map_err(|_| io::Error::other("the network namespace spawner dropped a job"))?
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_namespace_that_cannot_be_joined_starts_nothing() {
        for netns in ["/nonexistent/paygress-netns", "/dev/null"] {
            let ran = Arc::new(AtomicBool::new(false));
            let flag = ran.clone();
            let r = in_netns(Path::new(netns), move || {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
            assert!(r.is_err(), "{netns}");
            assert!(!ran.load(Ordering::SeqCst), "{netns}: the job ran");
        }
    }

    /// `net:[inode]` of a process's network namespace.
    async fn child_netns(netns: Option<&Path>) -> String {
        let mut cmd = tokio::process::Command::new("readlink");
        cmd.arg("/proc/self/ns/net")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = match netns {
            Some(ns) => in_netns(ns, move || cmd.spawn()).await.unwrap(),
            None => cmd.spawn().unwrap(),
        };
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A named namespace (`ip netns add`), deleted on drop.
    struct TestNs(String);

    impl TestNs {
        fn add(tag: &str) -> Self {
            let name = format!("paygress-spawner-test-{}-{tag}", std::process::id());
            let ok = std::process::Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip netns add {name}");
            Self(name)
        }

        fn path(&self) -> PathBuf {
            Path::new("/run/netns").join(&self.0)
        }

        fn id(&self) -> String {
            format!("net:[{}]", std::fs::metadata(self.path()).unwrap().ino())
        }
    }

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_start_in_the_namespace_of_their_job() {
        if !rustix::process::geteuid().is_root() {
            // Joining a namespace needs CAP_SYS_ADMIN (isolated mode runs as root).
            return;
        }
        let (a, b) = (TestNs::add("a"), TestNs::add("b"));
        let host = child_netns(None).await;
        assert_ne!(a.id(), host);
        assert_ne!(a.id(), b.id());
        // Each job joins its own namespace, whatever the previous one joined.
        for ns in [&a, &b, &a] {
            assert_eq!(child_netns(Some(&ns.path())).await, ns.id());
        }
        // A job that fails to join does not start in the namespace the thread was
        // left in.
        let r = in_netns(Path::new("/dev/null"), || Ok(())).await;
        assert!(r.is_err());
        // The caller's threads never moved.
        assert_eq!(child_netns(None).await, host);
        let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_eq!(own.to_string_lossy(), host);
    }
}
