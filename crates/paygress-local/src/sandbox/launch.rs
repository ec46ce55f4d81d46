//! The command line, environment and directory of one command of a lease.

use super::*;

impl Sandbox {
    /// How to start one command of a lease.
    pub(crate) fn launch(&self, spec: &LaunchSpec<'_>) -> Launch {
        let sandbox_home = PathBuf::from(format!("/home/{}", spec.username));
        let home = match self.mode {
            SandboxMode::Bubblewrap => sandbox_home.clone(),
            SandboxMode::Unsandboxed => spec.home.to_owned(),
        };
        let shell = self.shell.to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), home.to_string_lossy().into_owned()),
            ("USER".into(), spec.username.into()),
            ("LOGNAME".into(), spec.username.into()),
            ("SHELL".into(), shell.clone()),
            ("LANG".into(), "C.UTF-8".into()),
            ("PAYGRESS_LEASE".into(), spec.lease.into()),
        ];
        for (k, v) in spec.client_env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }

        // The command proper: [setpriv …] then the shell, which sets the rlimits with
        // its `ulimit` builtin (bash) before anything of the lease runs, or
        // [prlimit …] shell -l | shell -c CMD (another shell).
        let mut inner: Vec<OsString> = Vec::new();
        if let (SandboxMode::Bubblewrap, Some((setpriv, uid, gid))) = (self.mode, &self.drop_to) {
            let (uid, gid) = spec.owner.unwrap_or((*uid, *gid));
            inner.push(setpriv.into());
            inner.push(format!("--reuid={uid}").into());
            inner.push(format!("--regid={gid}").into());
            inner.push("--clear-groups".into());
            inner.push("--inh-caps=-all".into());
            inner.push("--".into());
        }
        let max_file_bytes =
            (self.mode == SandboxMode::Bubblewrap).then_some(self.sizes.max_file_bytes);
        if self.bash_limits() {
            // One process less than `prlimit`: the shell limits itself (soft and hard,
            // so nothing it starts can raise them again) and goes on only if it could.
            let ulimit = bash_ulimit(&spec.limits, max_file_bytes);
            let script = match spec.command {
                Some(cmd) => format!("{ulimit}\n{cmd}"),
                // `-bash` as argv[0]: a login shell, like sshd starts.
                None => format!("{ulimit}\nexec -a -bash '{shell}'"),
            };
            inner.push(shell.into());
            inner.push("-c".into());
            inner.push(script.into());
        } else {
            if let Some(prlimit) = &self.prlimit {
                inner.push(prlimit.into());
                inner.push(format!("--as={}", spec.limits.address_space_bytes).into());
                inner.push(format!("--nproc={}", spec.limits.processes).into());
                inner.push(format!("--nofile={}", spec.limits.open_files).into());
                if let Some(max) = max_file_bytes {
                    inner.push(format!("--fsize={max}").into());
                }
                inner.push("--".into());
            }
            inner.push(shell.into());
            match spec.command {
                Some(cmd) => {
                    inner.push("-c".into());
                    inner.push(cmd.into());
                }
                None => inner.push("-l".into()),
            }
        }

        match (&self.mode, &self.bwrap) {
            (SandboxMode::Bubblewrap, Some(bwrap)) => {
                let mut args: Vec<OsString> = Vec::new();
                let mut push = |a: &[&str]| args.extend(a.iter().map(OsString::from));
                push(&[
                    "--die-with-parent",
                    "--unshare-pid",
                    "--unshare-ipc",
                    "--unshare-uts",
                ]);
                push(&["--hostname", spec.lease]);
                if !spec.pty {
                    // No controlling terminal to keep: detach from ours (TIOCSTI).
                    push(&["--new-session"]);
                }
                if self.drop_to.is_some() {
                    // Only for `setpriv` to switch to nobody; the switch clears them.
                    push(&["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]);
                }
                push(&["--ro-bind", "/usr", "/usr"]);
                for dir in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
                    let p = Path::new(dir);
                    if let Ok(target) = std::fs::read_link(p) {
                        let target = target.to_string_lossy().into_owned();
                        push(&["--symlink", &target, dir]);
                    } else if p.is_dir() {
                        push(&["--ro-bind", dir, dir]);
                    }
                }
                push(&["--ro-bind", "/etc", "/etc"]);
                push(&["--proc", "/proc", "--dev", "/dev"]);
                // Directories bubblewrap creates belong to root: open them up like a
                // normal system's.
                let tmp_size = self.sizes.tmp_bytes.to_string();
                push(&["--perms", "1777", "--size", &tmp_size, "--tmpfs", "/tmp"]);
                // Not a directory on bubblewrap's unbounded root tmpfs.
                push(&["--symlink", "/tmp", "/var/tmp"]);
                push(&["--perms", "0755", "--dir", "/run"]);
                push(&["--perms", "0755", "--dir", "/home"]);
                let sandbox_home = sandbox_home.to_string_lossy().into_owned();
                args.push("--bind".into());
                args.push(spec.home.into());
                args.push(sandbox_home.clone().into());
                args.push("--chdir".into());
                args.push(sandbox_home.into());
                if let Some((passwd, group)) = spec.identity {
                    for (src, dest) in [(passwd, "/etc/passwd"), (group, "/etc/group")] {
                        args.push("--ro-bind".into());
                        args.push(src.into());
                        args.push(dest.into());
                    }
                }
                match (&self.net, spec.netns) {
                    (Net::Host, _) => {}
                    // Isolated without its namespace: no network rather than the host's.
                    (Net::Loopback, _) | (Net::Pasta(_), None) => {
                        args.push("--unshare-net".into());
                    }
                    (Net::Pasta(p), Some(_)) => {
                        // The host's resolver is not reachable: pasta forwards DNS.
                        let dest = std::fs::canonicalize("/etc/resolv.conf")
                            .unwrap_or_else(|_| PathBuf::from("/etc/resolv.conf"));
                        args.push("--ro-bind".into());
                        args.push(p.resolv_conf().into());
                        args.push(dest.into());
                    }
                }
                args.push("--".into());
                args.extend(inner);
                // The lease's namespace is joined by the thread that starts bubblewrap.
                let netns = match (&self.net, spec.netns) {
                    (Net::Pasta(p), Some(ns)) => Some(p.ns_path(ns)),
                    _ => None,
                };
                Launch {
                    program: bwrap.clone(),
                    args,
                    env,
                    cwd: spec.home.to_owned(),
                    netns,
                }
            }
            _ => {
                let mut it = inner.into_iter();
                let program = it.next().map(PathBuf::from).unwrap_or_default();
                Launch {
                    program,
                    args: it.collect(),
                    env,
                    cwd: spec.home.to_owned(),
                    netns: None,
                }
            }
        }
    }
}

/// The `ulimit` line that sets `limits` (and `max_file_bytes`, if any) as both soft and
/// hard limits in bash (whose `-v` and `-f` count KiB; rounded down), exiting 126 if it
/// cannot.
pub(crate) fn bash_ulimit(limits: &Limits, max_file_bytes: Option<u64>) -> String {
    let mut line = format!(
        "ulimit -S -H -v {} -u {} -n {}",
        limits.address_space_bytes / 1024,
        limits.processes,
        limits.open_files
    );
    if let Some(max) = max_file_bytes {
        line.push_str(&format!(" -f {}", max / 1024));
    }
    line.push_str(" || exit 126");
    line
}

/// The host's `passwd` and `group` with `username` as `uid`/`gid` (replacing any
/// entry of that name), home `/home/<username>` and login shell `shell`.
pub(crate) fn identity_files(username: &str, uid: u32, gid: u32, shell: &str) -> (String, String) {
    let keep = |text: String| -> String {
        text.lines()
            .filter(|l| l.split(':').next() != Some(username))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let mut passwd = keep(std::fs::read_to_string("/etc/passwd").unwrap_or_default());
    passwd.push_str(&format!(
        "{username}:x:{uid}:{gid}:Paygress lease:/home/{username}:{shell}\n"
    ));
    let mut group = keep(std::fs::read_to_string("/etc/group").unwrap_or_default());
    group.push_str(&format!("{username}:x:{gid}:\n"));
    (passwd, group)
}
