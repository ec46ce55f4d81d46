//! Launch lines and process killing.

use std::collections::HashSet;

use super::launch::bash_ulimit;
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
fn bash_sets_the_limits_itself_before_the_command() {
    let sb = Sandbox {
        mode: SandboxMode::Bubblewrap,
        bwrap: Some("/usr/bin/bwrap".into()),
        prlimit: None,
        shell: "/bin/bash".into(),
        drop_to: Some(("/usr/bin/setpriv".into(), NOBODY, NOBODY)),
        sftp_server: None,
        net: Net::Host,
        sizes: Sizes::default(),
    };
    let ulimit = "ulimit -S -H -v 1048576 -u 256 -n 4096 -f 4194304 || exit 126";
    let args = |l: &Launch| -> Vec<String> {
        l.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    let l = sb.launch(&spec(Path::new("/h"), Some("echo hi"), false));
    let a = args(&l);
    // setpriv first (the limits are set unprivileged, so they stay), then bash.
    let n = a.len();
    assert_eq!(a[n - 5..n - 3], ["--inh-caps=-all", "--"]);
    assert_eq!(
        a[n - 3..],
        ["/bin/bash", "-c", &format!("{ulimit}\necho hi")]
    );
    assert!(!a.iter().any(|x| x.contains("prlimit")), "{a:?}");
    // An interactive login: a login bash, exec'd once the limits are set.
    let l = sb.launch(&spec(Path::new("/h"), None, true));
    let a = args(&l);
    assert_eq!(
        a[a.len() - 3..],
        [
            "/bin/bash",
            "-c",
            &format!("{ulimit}\nexec -a -bash '/bin/bash'")
        ]
    );
    // Unsandboxed: no file size limit, as with prlimit.
    let sb = Sandbox {
        mode: SandboxMode::Unsandboxed,
        bwrap: None,
        drop_to: None,
        ..sb
    };
    let l = sb.launch(&spec(Path::new("/h"), Some("id"), false));
    assert_eq!(l.program, PathBuf::from("/bin/bash"));
    assert_eq!(
        args(&l),
        [
            "-c",
            "ulimit -S -H -v 1048576 -u 256 -n 4096 || exit 126\nid"
        ]
    );
}

#[tokio::test]
async fn the_bash_ulimit_line_sets_soft_and_hard_limits() {
    if !Path::new("/bin/bash").is_file() {
        return;
    }
    let limits = Limits {
        address_space_bytes: 512 * 1024 * 1024,
        processes: 77,
        open_files: 99,
    };
    let line = bash_ulimit(&limits, Some(3 * 1024 * 1024 + 5));
    let out = tokio::process::Command::new("/bin/bash")
        .arg("-c")
        .arg(format!(
            "{line}\nfor r in v u n f; do ulimit -S$r; ulimit -H$r; done; cat /proc/self/limits"
        ))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..8],
        ["524288", "524288", "77", "77", "99", "99", "3072", "3072"]
    );
    // What a child of the shell sees, in bytes (the file size rounded down to KiB).
    for (name, value) in [
        ("Max address space", "536870912"),
        ("Max processes", "77"),
        ("Max open files", "99"),
        ("Max file size", "3145728"),
    ] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {text}"));
        let cols: Vec<&str> = row[name.len()..].split_whitespace().collect();
        assert_eq!(cols[..2], [value, value], "{row}");
    }
    // A limit it cannot set stops the shell before the command.
    let out = tokio::process::Command::new("/bin/bash")
        .arg("-c")
        .arg(format!(
            "{}\necho ran",
            bash_ulimit(&limits, None).replace("-u 77", "-u not-a-number")
        ))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
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
