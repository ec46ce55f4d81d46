//! Validated names: lease ids and SSH usernames.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A name that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// Not a valid lease name.
    #[error(
        "invalid pod name {0:?}: expected \"ssh-pod-\" followed by 8 lowercase letters or digits"
    )]
    LeaseId(String),
    /// Not a safe POSIX login name.
    #[error(
        "invalid username {0:?}: use 1-32 characters, starting with a lowercase letter or '_', then lowercase letters, digits, '_' or '-'"
    )]
    Username(String),
    /// A name reserved for the system.
    #[error("username {0:?} is reserved")]
    ReservedUsername(String),
}

const LEASE_PREFIX: &str = "ssh-pod-";
const LEASE_SUFFIX_LEN: usize = 8;

/// A lease's name, `ssh-pod-` plus 8 lowercase alphanumerics. It is the `pod_name` in
/// replies and top-ups, and a valid DNS-1123 label for Kubernetes object names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LeaseId(String);

impl LeaseId {
    /// A fresh random lease id.
    pub fn generate() -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let suffix: String = (0..LEASE_SUFFIX_LEN)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        Self(format!("{LEASE_PREFIX}{suffix}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LeaseId {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.strip_prefix(LEASE_PREFIX).is_some_and(|rest| {
            rest.len() == LEASE_SUFFIX_LEN
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::LeaseId(truncate(s)))
        }
    }
}

impl TryFrom<String> for LeaseId {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LeaseId> for String {
    fn from(id: LeaseId) -> Self {
        id.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Login names that a buyer may not take: they belong to the system or would confuse
/// the operator's logs.
const RESERVED_USERNAMES: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "nobody",
    "sshd",
    "systemd-network",
    "messagebus",
    "admin",
    "abc",
    // Users and groups of the Alpine base of `linuxserver/openssh-server`: its init
    // halts (sshd never starts) when USER_NAME already exists as a user or group.
    "adm",
    "shutdown",
    "halt",
    "operator",
    "postmaster",
    "cron",
    "ftp",
    "at",
    "squid",
    "xfs",
    "cyrus",
    "vpopmail",
    "ntp",
    "smmsp",
    "guest",
    "tty",
    "disk",
    "mem",
    "kmem",
    "wheel",
    "floppy",
    "console",
    "audio",
    "cdrom",
    "dialout",
    "input",
    "tape",
    "video",
    "netdev",
    "readproc",
    "kvm",
    "shadow",
    "cdrw",
    "usb",
    "users",
    "nofiles",
    "locate",
    "abuild",
    "utmp",
    "ping",
    "nogroup",
];

/// A safe POSIX login name: `[a-z_][a-z0-9_-]{0,31}`, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Username {
    /// `user`, used when a request names none.
    fn default() -> Self {
        Self("user".to_owned())
    }
}

impl FromStr for Username {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 32
            && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(NameError::Username(truncate(s)));
        }
        if RESERVED_USERNAMES.contains(&s) {
            return Err(NameError::ReservedUsername(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for Username {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Username> for String {
    fn from(u: Username) -> Self {
        u.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keeps error messages short when a caller sends a huge name.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lease_ids_parse() {
        for _ in 0..100 {
            let id = LeaseId::generate();
            assert_eq!(id.as_str().parse::<LeaseId>().unwrap(), id);
        }
    }

    #[test]
    fn lease_id_rules() {
        assert!("ssh-pod-abc12345".parse::<LeaseId>().is_ok());
        for bad in [
            "",
            "ssh-pod-",
            "ssh-pod-abc1234",
            "ssh-pod-abc123456",
            "ssh-pod-ABC12345",
            "ssh-pod-abc1234;",
            "pod-abc12345",
            "../ssh-pod-abc12345",
        ] {
            assert!(bad.parse::<LeaseId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn username_rules() {
        for good in ["alice", "_svc", "a", "bob-2", "x_y", &"a".repeat(32)] {
            assert!(good.parse::<Username>().is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "Alice",
            "1abc",
            "-abc",
            "a b",
            "a;rm -rf",
            "alice$",
            "ali.ce",
            "élise",
            &"a".repeat(33),
        ] {
            assert!(
                matches!(bad.parse::<Username>(), Err(NameError::Username(_))),
                "{bad:?}"
            );
        }
        // Existing users and groups of the pod image: its init would never start sshd.
        for taken in ["root", "abc", "wheel", "users", "adm", "ping", "nogroup"] {
            assert!(
                matches!(
                    taken.parse::<Username>(),
                    Err(NameError::ReservedUsername(_))
                ),
                "{taken}"
            );
        }
    }

    #[test]
    fn deserialization_validates() {
        assert!(serde_json::from_str::<Username>("\"Root\"").is_err());
        assert!(serde_json::from_str::<LeaseId>("\"ssh-pod-zzzzzzzz\"").is_ok());
    }
}
