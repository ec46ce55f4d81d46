//! How to log in to a new lease: the buyer's SSH key and the ready-to-paste command.

use std::path::{Path, PathBuf};

use paygress_core::AccessDetails;

use crate::BuyerHome;

/// What the printed ssh command needs besides the reply.
#[derive(Debug, Clone)]
pub struct LoginHints {
    /// The buyer's `known_hosts`, holding the lease's host keys.
    pub known_hosts: Option<PathBuf>,
    /// The private key next to the public key sent.
    pub identity: Option<PathBuf>,
    /// The ready-to-paste command.
    pub command: String,
    /// What the buyer should know (a host key not recorded, and why).
    pub warnings: Vec<String>,
}

/// `~/.ssh/id_ed25519.pub`, when it exists.
pub fn default_ssh_key() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let path = PathBuf::from(home).join(".ssh").join("id_ed25519.pub");
    path.is_file().then_some(path)
}

/// Writes the lease's host keys to the buyer's `known_hosts` (when the reply names
/// them, and they match the fingerprint the service's offer published, if known) and
/// builds the ssh command that uses it and the private key of `key_file` (the public
/// key sent).
pub fn login_hints(
    home: &BuyerHome,
    a: &AccessDetails,
    key_file: Option<&Path>,
    offered_fingerprint: Option<&str>,
) -> LoginHints {
    let port = a.node_port.unwrap_or(a.ssh_port);
    let mut known_hosts = None;
    let mut warnings = Vec::new();
    if !a.host_keys.is_empty() {
        let matches_offer =
            offered_fingerprint.is_none_or(|fp| a.host_keys.iter().any(|k| k.fingerprint == fp));
        if matches_offer {
            match home.trust_host_keys(&a.ssh_host, port, &a.host_keys) {
                Ok(path) => known_hosts = Some(path),
                Err(e) => warnings.push(format!("the lease's host key was not recorded: {e}")),
            }
        } else {
            warnings.push(format!(
                "the lease's host key is not the one the service's offer names ({}); it was not recorded: check it before you log in",
                offered_fingerprint.unwrap_or_default()
            ));
        }
    }
    let identity = key_file
        .and_then(|p| p.to_str())
        .and_then(|p| p.strip_suffix(".pub"))
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let mut command = String::from("ssh");
    if let Some(kh) = &known_hosts {
        command.push_str(&format!(" -o UserKnownHostsFile={}", shell_word(kh)));
    }
    if let Some(key) = &identity {
        command.push_str(&format!(" -i {}", shell_word(key)));
    }
    if a.password_login && identity.is_none() {
        command.push_str(" -o PreferredAuthentications=password -o PubkeyAuthentication=no");
    }
    command.push_str(&format!(" -p {port} {}@{}", a.ssh_username, a.ssh_host));
    LoginHints {
        known_hosts,
        identity,
        command,
        warnings,
    }
}

/// `path` quoted for a POSIX shell when it needs it.
pub fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word(Path::new("/a/b.c")), "/a/b.c");
        assert_eq!(shell_word(Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }
}
