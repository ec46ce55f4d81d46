//! The buyer's directory: identity and saved tokens, private to the user.

use std::path::{Path, PathBuf};

use paygress_core::{CashuToken, Reply};
use paygress_nostr::nostr_sdk::{Keys, ToBech32};

use crate::{BuyerError, parse_secret};

/// Which token a reply returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The unspent rest of a payment that bought something.
    Change,
    /// A payment returned with an error.
    Refund,
    /// A payment locked to a service (NUT-11), kept in case it must be reclaimed with
    /// the refund key after its locktime.
    Locked,
    /// A prepaid top-up, waiting to be paid by `paygress topup --auto` (deleted once
    /// the service took it).
    TopUp,
}

impl TokenKind {
    /// The kind of token `reply` returns (refund for an error reply or a release, else
    /// change).
    pub fn of(reply: &Reply) -> Self {
        if matches!(reply, Reply::Error(_) | Reply::Released(_)) {
            Self::Refund
        } else {
            Self::Change
        }
    }

    /// `change`, `refund`, `locked` or `topup`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Change => "change",
            Self::Refund => "refund",
            Self::Locked => "locked",
            Self::TopUp => "topup",
        }
    }
}

/// The buyer's directory: `identity.nsec` and `tokens/`.
#[derive(Debug, Clone)]
pub struct BuyerHome {
    dir: PathBuf,
}

impl BuyerHome {
    /// The directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$XDG_CONFIG_HOME/paygress`, else `~/.config/paygress`.
    pub fn default_dir() -> Result<PathBuf, BuyerError> {
        if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(x).join("paygress"));
        }
        let home = std::env::var_os("HOME").ok_or(BuyerError::NoHome)?;
        Ok(PathBuf::from(home).join(".config").join("paygress"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The identity file.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("identity.nsec")
    }

    /// The stored identity.
    pub fn keys(&self) -> Result<Keys, BuyerError> {
        let path = self.identity_file();
        let text = std::fs::read_to_string(&path).map_err(|_| BuyerError::NoIdentity { path })?;
        parse_secret(text.trim())
    }

    /// Creates a new identity (mode 0600); refuses to replace one unless `force`.
    pub fn create_identity(&self, force: bool) -> Result<Keys, BuyerError> {
        let path = self.identity_file();
        if path.exists() && !force {
            return Err(BuyerError::IdentityExists { path });
        }
        let keys = Keys::generate();
        let nsec = keys
            .secret_key()
            .to_bech32()
            .map_err(|_| BuyerError::InvalidKey {
                what: "the new key does not encode as nsec",
            })?;
        write_private(&path, &format!("{nsec}\n"))?;
        Ok(keys)
    }

    /// Saves a change or refund token under `tokens/` (mode 0600, the directory 0700);
    /// returns where.
    pub fn save_token(&self, kind: TokenKind, token: &CashuToken) -> Result<PathBuf, BuyerError> {
        let what = kind.as_str();
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
        let dir = self.dir.join("tokens");
        let mut path = dir.join(format!("{stamp}-{what}.cashu"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = dir.join(format!("{stamp}-{what}-{n}.cashu"));
        }
        write_private(&path, &format!("{}\n", token.expose()))?;
        // The tokens directory is Paygress's own: private even if an older version made it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| BuyerError::Io {
                    action: "making private",
                    path: dir.clone(),
                    source,
                },
            )?;
        }
        Ok(path)
    }
}

impl BuyerHome {
    fn lease_key_file(&self, pod: &str) -> Result<PathBuf, BuyerError> {
        let id: paygress_core::LeaseId = pod.parse().map_err(|e: paygress_core::NameError| {
            BuyerError::InvalidArgument(format!("{pod:?} is not a lease name: {e}"))
        })?;
        Ok(self.dir.join("leases").join(format!("{id}.http-key")))
    }

    /// Keeps the `Idempotency-Key` of the HTTP request that bought lease `pod` (mode
    /// 0600): over HTTP it is what proves ownership, e.g. to release the lease.
    pub fn save_lease_key(&self, pod: &str, key: &str) -> Result<PathBuf, BuyerError> {
        let path = self.lease_key_file(pod)?;
        write_private(&path, &format!("{key}\n"))?;
        Ok(path)
    }

    /// The key [`save_lease_key`](Self::save_lease_key) kept for `pod`, if any.
    pub fn lease_key(&self, pod: &str) -> Result<Option<String>, BuyerError> {
        let path = self.lease_key_file(pod)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BuyerError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }
}

/// Writes `contents` to `path` with mode 0600 (also when it existed), creating parent
/// directories with mode 0700.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), BuyerError> {
    use std::io::Write;
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| BuyerError::Io {
            action,
            path,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        paygress_store::private::create_private_dir(dir).map_err(io("creating", dir))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io("writing", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io("writing", path))?;
    }
    f.write_all(contents.as_bytes())
        .map_err(io("writing", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn identity_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let home = BuyerHome::new(dir.path().join("buyer"));
        assert!(matches!(home.keys(), Err(BuyerError::NoIdentity { .. })));
        let k1 = home.create_identity(false).unwrap();
        assert_eq!(home.keys().unwrap().public_key(), k1.public_key());
        assert!(matches!(
            home.create_identity(false),
            Err(BuyerError::IdentityExists { .. })
        ));
        assert_eq!(mode(&home.identity_file()), 0o600);
        assert_eq!(mode(home.dir()), 0o700);
        let k2 = home.create_identity(true).unwrap();
        assert_ne!(k1.public_key(), k2.public_key());
    }

    #[test]
    fn tokens_are_saved_private_under_distinct_names() {
        let dir = tempfile::tempdir().unwrap();
        let home = BuyerHome::new(dir.path());
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::set_permissions(
            dir.path().join("tokens"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let t = CashuToken::new("cashuBchange");
        let a = home.save_token(TokenKind::Change, &t).unwrap();
        let b = home.save_token(TokenKind::Refund, &t).unwrap();
        let c = home.save_token(TokenKind::Refund, &t).unwrap();
        assert_ne!(b, c);
        assert!(a.to_str().unwrap().ends_with("-change.cashu"));
        assert!(b.to_str().unwrap().contains("-refund"));
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "cashuBchange\n");
        assert_eq!(mode(&a), 0o600);
        assert_eq!(mode(&dir.path().join("tokens")), 0o700);
    }
}
