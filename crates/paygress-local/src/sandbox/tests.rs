//! Launch lines and process killing.

use std::collections::HashSet;

use super::*;

fn spec<'a>(home: &'a Path, command: Option<&'a str>, pty: bool) -> LaunchSpec<'a> {
    LaunchSpec {
        lease: "ssh-pod-abcdefgh",
        username: "alice",
        home,
        limits: Limits::for_tier(&Tier::standard()),
        command,
        pty,
        client_env: &[],
        owner: None,
        identity: None,
        netns: None,
    }
}

#[tokio::test]
async fn missing_bwrap_is_an_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let err = Sandbox::detect_with(
        SandboxMode::Bubblewrap,
        NetworkMode::Isolated,
        dir.path(),
        Sizes::default(),
        |_| None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LocalError::BwrapMissing));
    assert!(err.to_string().contains("apt-get install bubblewrap"));
    // Unsandboxed needs no bwrap.
    let sb = Sandbox::detect_with(
        SandboxMode::Unsandboxed,
        NetworkMode::Isolated,
        dir.path(),
        Sizes::default(),
        |_| None,
    )
    .await
    .unwrap();
    assert_eq!(sb.mode(), SandboxMode::Unsandboxed);
}

#[test]
fn limits_follow_the_tier() {
    let l = Limits::for_tier(&Tier::standard());
    assert_eq!(l.address_space_bytes, 1024 * 1024 * 1024);
    assert_eq!(l.processes, 256);
}

#[test]
fn bubblewrap_launch_isolates() {
    let sb = Sandbox {
        mode: SandboxMode::Bubblewrap,
        bwrap: Some("/usr/bin/bwrap".into()),
        prlimit: Some("/usr/bin/prlimit".into()),
        shell: "/bin/sh".into(),
        drop_to: None,
        sftp_server: None,
        net: Net::Host,
        sizes: Sizes::default(),
    };
    let home = Path::new("/data/local/homes/ssh-pod-abcdefgh");
    let l = sb.launch(&spec(home, Some("echo hi"), false));
    let args: Vec<String> = l
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let joined = args.join(" ");
    assert_eq!(l.program, PathBuf::from("/usr/bin/bwrap"));
    for needle in [
        "--die-with-parent",
        "--unshare-pid",
        "--new-session",
        "--perms 1777 --size 268435456 --tmpfs /tmp",
        "--symlink /tmp /var/tmp",
        "--fsize=4294967296",
        "--ro-bind /etc /etc",
        "--ro-bind /usr /usr",
        "--bind /data/local/homes/ssh-pod-abcdefgh /home/alice",
        "--as=1073741824",
        "-- /bin/sh -c echo hi",
    ] {
        assert!(joined.contains(needle), "{needle:?} missing in {joined}");
    }
    assert!(l.env.contains(&("HOME".into(), "/home/alice".into())));
    assert!(l.env.contains(&("USER".into(), "alice".into())));
    let pty = sb.launch(&spec(home, None, true));
    let joined: Vec<String> = pty
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(
        !joined.iter().any(|a| a == "--new-session"),
        "a PTY keeps its controlling terminal"
    );
    assert_eq!(joined.last().map(String::as_str), Some("-l"));
}

#[test]
fn as_root_commands_drop_to_nobody() {
    let sb = Sandbox {
        mode: SandboxMode::Bubblewrap,
        bwrap: Some("/usr/bin/bwrap".into()),
        prlimit: None,
        shell: "/bin/sh".into(),
        drop_to: Some(("/usr/bin/setpriv".into(), NOBODY, NOBODY)),
        sftp_server: None,
        net: Net::Host,
        sizes: Sizes::default(),
    };
    let l = sb.launch(&spec(Path::new("/h"), Some("id"), false));
    let joined = l
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        joined.contains("--cap-add CAP_SETUID --cap-add CAP_SETGID"),
        "{joined}"
    );
    assert!(
        joined.ends_with("-- /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- /bin/sh -c id"),
        "{joined}"
    );
    assert_eq!(sb.owner(), Some((NOBODY, NOBODY)));
    // A lease's own uid replaces nobody.
    let mut own = spec(Path::new("/h"), Some("id"), false);
    own.owner = Some((2_000_007, 2_000_007));
    let joined = sb
        .launch(&own)
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        joined.contains("setpriv --reuid=2000007 --regid=2000007"),
        "{joined}"
    );
}

#[test]
fn isolated_commands_enter_their_lease_namespace_or_get_no_network() {
    let sb = Sandbox {
        mode: SandboxMode::Bubblewrap,
        bwrap: Some("/usr/bin/bwrap".into()),
        prlimit: None,
        shell: "/bin/sh".into(),
        drop_to: None,
        sftp_server: None,
        net: Net::Pasta(crate::net::Pasta::for_tests("/state")),
        sizes: Sizes::default(),
    };
    let strings = |l: &Launch| -> Vec<String> {
        l.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    let mut own = spec(Path::new("/h"), Some("id"), false);
    own.netns = Some("paygress-0000-7");
    let l = sb.launch(&own);
    // bubblewrap itself, started by a thread in the lease's namespace.
    assert_eq!(l.program, PathBuf::from("/usr/bin/bwrap"));
    assert_eq!(
        l.netns.as_deref(),
        Some(Path::new("/run/netns/paygress-0000-7"))
    );
    let args = strings(&l);
    assert!(!args.iter().any(|a| a == "--unshare-net"), "{args:?}");
    // Without its namespace a command must not run in the host's: loopback only.
    let l = sb.launch(&spec(Path::new("/h"), Some("id"), false));
    assert_eq!(l.program, PathBuf::from("/usr/bin/bwrap"));
    assert_eq!(l.netns, None);
    assert!(strings(&l).iter().any(|a| a == "--unshare-net"));
}

#[test]
fn unsandboxed_launch_runs_the_shell_directly() {
    let sb = Sandbox {
        mode: SandboxMode::Unsandboxed,
        bwrap: None,
        prlimit: None,
        shell: "/bin/sh".into(),
        drop_to: None,
        sftp_server: None,
        net: Net::Host,
        sizes: Sizes::default(),
    };
    let home = Path::new("/tmp/h");
    let l = sb.launch(&spec(home, Some("id"), false));
    assert_eq!(l.program, PathBuf::from("/bin/sh"));
    assert_eq!(l.args, vec![OsString::from("-c"), OsString::from("id")]);
    assert!(l.env.contains(&("HOME".into(), "/tmp/h".into())));
}

#[test]
fn kill_all_kills_a_process_tree() {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 1000 & sleep 1000 & wait"])
        .process_group(0)
        .spawn()
        .unwrap();
    let root = child.id();
    let roots: HashSet<u32> = [root].into();
    // The shell forks its two sleeps; wait until they exist.
    let mut seen = 0;
    for _ in 0..200 {
        seen = lease_processes(&roots).len();
        if seen >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen >= 3, "shell and two sleeps, saw {seen}");
    assert!(kill_all(&roots) >= 3);
    let _ = child.wait();
    for _ in 0..200 {
        if lease_processes(&roots).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(lease_processes(&roots).is_empty());
}
