//! The russh handler of a connection: login, channels, exec, shell, PTY.

use super::*;

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if !self.lease.password_login {
            // The buyer gave a key and did not ask for password logins too.
            return Ok(Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
                partial_success: false,
            });
        }
        if !self.lease.accepts_user(user) {
            return Ok(Auth::reject());
        }
        // PBKDF2 on a blocking thread, a few at a time, never on the async runtime.
        let hash = self.lease.password.clone();
        let candidate = password.to_owned();
        let matched = match HASHING.acquire().await {
            Ok(_permit) => tokio::task::spawn_blocking(move || hash.verify(&candidate))
                .await
                .unwrap_or(false),
            Err(_) => false,
        };
        Ok(self.accept_login(matched))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.lease.accepts_user(user) && self.lease.key_matches(offer.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let matched = self.lease.accepts_user(user) && self.lease.key_matches(key.public_key);
        Ok(self.accept_login(matched))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.lease.is_open() && self.channels.len() < self.channels_cap {
            // Input arrives through `data` below; the read half is not used.
            let (_read, write) = channel.split();
            self.channels.insert(
                write.id(),
                Chan {
                    output: Arc::new(write),
                    pty: None,
                    env: Vec::new(),
                    input: None,
                    pid: None,
                    eof: false,
                },
            );
            reply.accept().await;
        } else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(chan) = self.channels.get_mut(&channel)
            && !chan.eof
            && let Some(tx) = &chan.input
        {
            chan.eof = true;
            let _ = tx.send(Input::Eof);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(chan) = self.channels.remove(&channel)
            && let Some(pid) = chan.pid.filter(|p| self.lease.tracked(*p))
        {
            kill_all(&[pid].into());
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.clone()) else {
            return Ok(());
        };
        // Backpressure: until the commands have taken earlier input, wait here, which
        // stops this connection from being read (see `Flow`).
        let Some(credit) = self.flow.credit(data.len()).await else {
            tracing::info!(lease = %self.lease.id, "client floods input while not accepting output: disconnecting");
            return Err(russh::Error::Disconnect);
        };
        let _ = tx.send(Input::Data(data.to_vec(), credit));
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(chan) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let owner = self.lease.owner.or(self.lease.sandbox.owner());
        let opened = pty_process::open().and_then(|(pty, pts)| {
            pty.resize(size(col_width, row_height))?;
            if let Some((uid, gid)) = owner {
                // The terminal belongs to whoever runs in it.
                std::os::unix::fs::fchown(&pts, Some(uid), Some(gid))
                    .map_err(pty_process::Error::Io)?;
            }
            Ok((pty, pts))
        });
        match opened {
            Ok(p) => {
                chan.pty = Some(p);
                chan.env.retain(|(k, _)| k != "TERM");
                chan.env
                    .push(("TERM".into(), term.chars().take(64).collect()));
                session.channel_success(channel)?;
            }
            Err(e) => {
                tracing::warn!(lease = %self.lease.id, error = %e, "could not allocate a PTY");
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = name == "TERM" || name == "LANG" || name.starts_with("LC_");
        match self.channels.get_mut(&channel) {
            Some(chan) if allowed && value.len() <= 256 && chan.env.len() < 32 => {
                chan.env.retain(|(k, _)| k != name);
                chan.env.push((name.to_owned(), value.to_owned()));
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, None, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Some(command), session).await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.lease.sandbox.sftp_command()) {
            ("sftp", Some(cmd)) => self.start(channel, Some(cmd), session).await,
            _ => {
                session.channel_failure(channel)?;
                Ok(())
            }
        }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(chan) = self.channels.get(&channel) {
            let sz = size(col_width, row_height);
            if let Some((pty, _)) = &chan.pty {
                let _ = pty.resize(sz);
            } else if let Some(tx) = &chan.input
                && let Some(credit) = self.flow.try_credit(0)
            {
                // Dropped when the input allowance is used up anyway.
                let _ = tx.send(Input::Resize(sz, credit));
            }
        }
        Ok(())
    }
}

/// A terminal size from the client's; 0 (unknown, e.g. `ssh -tt` without a local
/// terminal) means the classic 80x24.
pub(super) fn size(cols: u32, rows: u32) -> pty_process::Size {
    let clamp = |v: u32, default: u16| match v {
        0 => default,
        v => u16::try_from(v.min(1000)).unwrap_or(default),
    };
    pty_process::Size::new(clamp(rows, 24), clamp(cols, 80))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_terminal_size_is_80x24() {
        let dbg = |s: pty_process::Size| format!("{s:?}");
        assert_eq!(dbg(size(0, 0)), dbg(pty_process::Size::new(24, 80)));
        assert_eq!(dbg(size(132, 50)), dbg(pty_process::Size::new(50, 132)));
        assert_eq!(dbg(size(100_000, 3)), dbg(pty_process::Size::new(3, 1000)));
    }
}
