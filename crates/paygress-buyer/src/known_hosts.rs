//! The buyer's own `known_hosts` file: the host keys a spawn reply names, written before
//! the first login so that `ssh` verifies the lease instead of trusting on first use.

use std::path::PathBuf;

use paygress_core::HostKey;
use russh::keys::{HashAlg, PublicKey};

use crate::{BuyerError, BuyerHome};

/// How `known_hosts` names `host` on `port` (`host` on 22, else `[host]:port`).
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks that every host key parses and that its fingerprint is the key's own
/// (`SHA256:…`); returns the keys' `type base64` parts.
pub fn verify_host_keys(keys: &[HostKey]) -> Result<Vec<String>, BuyerError> {
    keys.iter()
        .map(|k| {
            let key = PublicKey::from_openssh(k.public_key.trim()).map_err(|_| {
                BuyerError::InvalidArgument(format!(
                    "the service sent a host key that does not parse: {:?}",
                    k.public_key
                ))
            })?;
            let actual = key.fingerprint(HashAlg::Sha256).to_string();
            if actual != k.fingerprint {
                return Err(BuyerError::InvalidArgument(format!(
                    "the service's host key has fingerprint {actual}, not the {} it claims",
                    k.fingerprint
                )));
            }
            let mut bare = key;
            bare.set_comment("");
            bare.to_openssh()
                .map_err(|_| BuyerError::InvalidArgument("a host key does not encode".to_owned()))
        })
        .collect()
}

impl BuyerHome {
    /// `known_hosts` in the buyer's directory (passed to ssh with
    /// `-o UserKnownHostsFile=`).
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// Records `keys` as the host keys of `host` on `port` in
    /// [`known_hosts_file`](Self::known_hosts_file) (mode 0600), replacing what it said
    /// about that host and port before (a port is reused by later leases); returns the
    /// file. Refuses keys whose fingerprint is not their own, and host names that would
    /// not make one `known_hosts` field.
    pub fn trust_host_keys(
        &self,
        host: &str,
        port: u16,
        keys: &[HostKey],
    ) -> Result<PathBuf, BuyerError> {
        if host.is_empty()
            || host.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, ',' | '#' | '*' | '?' | '!' | '[' | ']')
            })
        {
            return Err(BuyerError::InvalidArgument(format!(
                "host {host:?} cannot be written to known_hosts"
            )));
        }
        let lines = verify_host_keys(keys)?;
        let pattern = host_pattern(host, port);
        let path = self.known_hosts_file();
        let old = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(BuyerError::Io {
                    action: "reading",
                    path,
                    source,
                });
            }
        };
        let mut text: String = old
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(pattern.as_str()))
            .map(|l| format!("{l}\n"))
            .collect();
        for line in lines {
            text.push_str(&format!("{pattern} {line}\n"));
        }
        crate::home::write_private(&path, &text)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    fn host_key() -> HostKey {
        let fingerprint = PublicKey::from_openssh(KEY)
            .unwrap()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        HostKey {
            public_key: format!("{KEY} paygress"),
            fingerprint,
        }
    }

    #[test]
    fn entries_replace_the_same_host_and_port_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = BuyerHome::new(dir.path());
        let path = home
            .trust_host_keys("127.0.0.1", 2300, &[host_key()])
            .unwrap();
        home.trust_host_keys("127.0.0.1", 2301, &[host_key()])
            .unwrap();
        home.trust_host_keys("127.0.0.1", 2300, &[host_key()])
            .unwrap();
        home.trust_host_keys("example.org", 22, &[host_key()])
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("[127.0.0.1]:2301 {KEY}\n[127.0.0.1]:2300 {KEY}\nexample.org {KEY}\n")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_key_that_does_not_match_its_fingerprint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = BuyerHome::new(dir.path());
        let mut k = host_key();
        k.fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
        assert!(home.trust_host_keys("127.0.0.1", 2300, &[k]).is_err());
        let mut k = host_key();
        k.public_key = "ssh-ed25519 notbase64".into();
        assert!(home.trust_host_keys("127.0.0.1", 2300, &[k]).is_err());
        assert!(
            home.trust_host_keys("evil host\n[x]:1", 2300, &[host_key()])
                .is_err()
        );
        assert!(!home.known_hosts_file().exists());
    }
}
