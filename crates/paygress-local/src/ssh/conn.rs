//! One SSH connection ([`Conn`]) and the commands it runs (PTY or pipes).

use super::*;

pub(super) struct Chan {
    /// Where the command's output goes; waits for the client's window.
    pub(super) output: Output,
    /// A PTY requested but not yet used by a command.
    pub(super) pty: Option<(pty_process::Pty, pty_process::Pts)>,
    pub(super) env: Vec<(String, String)>,
    pub(super) input: Option<mpsc::UnboundedSender<Input>>,
    pub(super) pid: Option<u32>,
    pub(super) eof: bool,
}

/// One SSH connection.
pub(super) struct Conn {
    pub(super) lease: Arc<LeaseShared>,
    /// This connection's registration with the lease.
    pub(super) id: u64,
    pub(super) sessions_cap: usize,
    pub(super) channels_cap: usize,
    /// Client input buffered for commands, for the whole connection.
    pub(super) flow: Arc<Flow>,
    pub(super) channels: HashMap<ChannelId, Chan>,
}

impl Conn {
    pub(super) fn new(lease: Arc<LeaseShared>, id: u64, limits: &ConnectionLimits) -> Self {
        Self {
            lease,
            id,
            sessions_cap: limits.sessions_per_lease,
            channels_cap: limits.channels_per_connection,
            flow: Flow::new(limits.input_buffer_bytes),
            channels: HashMap::new(),
        }
    }

    /// Logs the connection in if the credentials matched and the lease has room.
    pub(super) fn accept_login(&self, matched: bool) -> Auth {
        if matched && self.lease.admit(self.id, self.sessions_cap) {
            Auth::Accept
        } else {
            if matched {
                tracing::info!(lease = %self.lease.id, "login refused: too many sessions or connection pushed out");
            }
            Auth::reject()
        }
    }

    pub(super) async fn start(
        &mut self,
        channel: ChannelId,
        command: Option<String>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if !self.lease.is_open() {
            session.channel_failure(channel)?;
            return Ok(());
        }
        let Some(chan) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        if chan.input.is_some() {
            // One command per channel.
            session.channel_failure(channel)?;
            return Ok(());
        }
        let pty = chan.pty.take();
        let launch = self.lease.sandbox.launch(&LaunchSpec {
            lease: self.lease.id.as_str(),
            username: &self.lease.username,
            home: &self.lease.home,
            limits: self.lease.limits,
            command: command.as_deref(),
            pty: pty.is_some(),
            client_env: &chan.env,
            owner: self.lease.owner,
            identity: self
                .lease
                .identity
                .as_ref()
                .map(|(p, g)| (p.as_path(), g.as_path())),
            netns: self.lease.netns.as_deref(),
        });
        let output = chan.output.clone();
        if pty.is_some() {
            self.lease.add_terminal(&output);
        }
        // Like sshd: the message of the day before an interactive login shell.
        let motd = (pty.is_some() && command.is_none()).then(|| {
            crate::notice::motd(
                &self.lease.id,
                Timestamp::now(),
                self.lease.expires_at(),
                &self.lease.top_up,
            )
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let flow = self.flow.clone();
        // Built and started on the thread `launch.start` picks (the lease's network
        // namespace's, in isolated mode).
        let program = launch.program.clone();
        let (args, env, cwd) = (launch.args.clone(), launch.env.clone(), launch.cwd.clone());
        let (pty, pts) = match pty {
            Some((pty, pts)) => (Some(pty), Some(pts)),
            None => (None, None),
        };
        let started = launch
            .start(move || match pts {
                Some(pts) => pty_process::Command::new(&program)
                    .args(&args)
                    .env_clear()
                    .envs(env)
                    .current_dir(&cwd)
                    .kill_on_drop(true)
                    .spawn(pts)
                    .map_err(std::io::Error::other),
                None => tokio::process::Command::new(&program)
                    .args(&args)
                    .env_clear()
                    .envs(env)
                    .current_dir(&cwd)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .process_group(0)
                    .kill_on_drop(true)
                    .spawn(),
            })
            .await;
        let lease = self.lease.clone();
        let spawned = started.map_err(|e| e.to_string()).map(|child| match pty {
            Some(pty) => run_pty(child, pty, rx, output, flow, lease, motd),
            None => run_pipes(child, rx, output, flow, lease),
        });
        match spawned {
            Ok(pid) => {
                chan.input = Some(tx);
                chan.pid = pid;
                session.channel_success(channel)?;
            }
            Err(e) => {
                tracing::warn!(lease = %self.lease.id, error = %e, "could not start command");
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }
}

pub(super) fn exit_code(status: std::io::Result<ExitStatus>) -> u32 {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => u32::try_from(c).unwrap_or(255),
            (None, Some(sig)) => 128 + u32::try_from(sig).unwrap_or(0),
            (None, None) => 255,
        },
        Err(_) => 255,
    }
}

pub(super) async fn finish(output: &Output, code: u32) {
    let _ = output.exit_status(code).await;
    let _ = output.eof().await;
    let _ = output.close().await;
}

/// Pumps a PTY command; returns its pid.
pub(super) fn run_pty(
    mut child: tokio::process::Child,
    pty: pty_process::Pty,
    mut input: mpsc::UnboundedReceiver<Input>,
    output: Output,
    flow: Arc<Flow>,
    lease: Arc<LeaseShared>,
    motd: Option<String>,
) -> Option<u32> {
    let pid = child.id();
    if let Some(pid) = pid {
        lease.track(pid);
    }
    let (mut reader, mut writer) = pty.into_split();
    tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            match msg {
                Input::Data(d, _permit) => {
                    if writer.write_all(&d).await.is_err() {
                        break;
                    }
                }
                Input::Resize(size, _credit) => {
                    let _ = writer.resize(size);
                }
                Input::Eof => {}
            }
        }
    });
    tokio::spawn(async move {
        if let Some(text) = motd {
            let _ = output.data_bytes(text.into_bytes()).await;
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // EIO once the child side of the PTY is closed.
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _sending = Sending::start(&flow);
                    if output.data_bytes(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
        let code = exit_code(child.wait().await);
        if let Some(pid) = pid {
            lease.untrack(pid);
        }
        finish(&output, code).await;
    });
    pid
}

/// Copies `r` to the channel, waiting for the client's window (so a client that does
/// not read stops the command instead of filling memory).
pub(super) async fn pump<R: AsyncRead + Unpin>(
    mut r: R,
    output: &Output,
    flow: &Flow,
    ext: Option<u32>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = buf[..n].to_vec();
                let _sending = Sending::start(flow);
                let sent = match ext {
                    Some(code) => output.extended_data_bytes(code, data).await,
                    None => output.data_bytes(data).await,
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

/// Pumps a command on pipes (stdout as data, stderr as extended data 1); returns its pid.
pub(super) fn run_pipes(
    mut child: tokio::process::Child,
    mut input: mpsc::UnboundedReceiver<Input>,
    output: Output,
    flow: Arc<Flow>,
    lease: Arc<LeaseShared>,
) -> Option<u32> {
    let pid = child.id();
    if let Some(pid) = pid {
        lease.track(pid);
    }
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            match msg {
                Input::Data(d, _permit) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(&d).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Input::Eof => stdin = None,
                Input::Resize(..) => {}
            }
        }
    });
    tokio::spawn(async move {
        let out = async {
            if let Some(o) = stdout {
                pump(o, &output, &flow, None).await;
            }
        };
        let err = async {
            if let Some(e) = stderr {
                pump(e, &output, &flow, Some(1)).await;
            }
        };
        let (status, (), ()) = tokio::join!(child.wait(), out, err);
        if let Some(pid) = pid {
            lease.untrack(pid);
        }
        finish(&output, exit_code(status)).await;
    });
    pid
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The connection is gone: nothing can read this session's output any more.
        let roots: HashSet<u32> = self
            .channels
            .values()
            .filter_map(|c| c.pid)
            .filter(|p| self.lease.tracked(*p))
            .collect();
        if !roots.is_empty() {
            kill_all(&roots);
        }
    }
}
