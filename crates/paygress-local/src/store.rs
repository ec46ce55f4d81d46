//! Durable state: the lease file (public records plus salted password hashes) and the
//! SSH host key. Files are written atomically (temporary file, fsync, rename) with mode
//! 0600.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::num::NonZeroU32;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use paygress_core::lease::LeaseRecord;
use paygress_core::pricing::Tier;
use paygress_core::secret::Password;
use ring::rand::{SecureRandom, SystemRandom};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use serde::{Deserialize, Serialize};

use crate::error::LocalError;

const PBKDF2_ITERATIONS: u32 = 10_000;

/// A PBKDF2-HMAC-SHA256 hash of a lease password with a random salt.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PasswordHash {
    iterations: u32,
    salt: String,
    hash: String,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh 16-byte salt.
    pub(crate) fn new(password: &Password) -> Result<Self, LocalError> {
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| LocalError::Random)?;
        let iterations = PBKDF2_ITERATIONS;
        let hash = derive(iterations, &salt, password.expose().as_bytes());
        Ok(Self {
            iterations,
            salt: hex(&salt),
            hash: hex(&hash),
        })
    }

    /// A hash no password matches, for a lease whose password does not log in (no
    /// PBKDF2 work for a password that is never checked). Readable by older versions.
    pub(crate) fn disabled() -> Self {
        Self {
            iterations: 0,
            salt: String::new(),
            hash: String::new(),
        }
    }

    /// Whether `candidate` is the password (constant time in the hash comparison).
    pub(crate) fn verify(&self, candidate: &str) -> bool {
        let (Some(salt), Some(expected), Some(iterations)) = (
            unhex(&self.salt),
            unhex(&self.hash),
            NonZeroU32::new(self.iterations),
        ) else {
            return false;
        };
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            candidate.as_bytes(),
            &expected,
        )
        .is_ok()
    }
}

fn derive(iterations: u32, salt: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        secret,
        &mut out,
    );
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn yes() -> bool {
    true
}

/// One lease as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredLease {
    /// The public record (port, expiry, …).
    pub record: LeaseRecord,
    /// The login password, hashed.
    pub password: PasswordHash,
    /// An OpenSSH public key line also accepted for login.
    pub ssh_public_key: Option<String>,
    /// Whether the password logs in (leases stored before this field: yes).
    #[serde(default = "yes")]
    pub password_login: bool,
    /// The tier (for rlimits).
    pub tier: Tier,
    /// The uid (and gid) the lease's commands run as, when Paygress runs as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseFile {
    version: u32,
    leases: Vec<StoredLease>,
}

/// `<state_dir>/leases.json`.
pub(crate) fn leases_path(state_dir: &Path) -> PathBuf {
    state_dir.join("leases.json")
}

/// Reads the lease file; a missing file is an empty store.
pub(crate) fn load_leases(path: &Path) -> Result<Vec<StoredLease>, LocalError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LocalError::io("reading", path, e)),
    };
    let file: LeaseFile = serde_json::from_slice(&bytes).map_err(|e| LocalError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(file.leases)
}

/// Replaces the lease file atomically.
pub(crate) fn save_leases(path: &Path, leases: &[StoredLease]) -> Result<(), LocalError> {
    let file = LeaseFile {
        version: 1,
        leases: leases.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| LocalError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &json)
}

/// Writes `bytes` to `path` via a temporary file in the same directory (mode 0600),
/// fsyncs it, renames it over `path` and fsyncs the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    write_via_rename(path, bytes, true)
}

/// Replaces `path` with `bytes` (mode 0600) through a temporary file and a rename, so
/// readers never see a partial file; not synced to disk: for files that are written
/// again at every start.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    write_via_rename(path, bytes, false)
}

/// The temporary file, rename and (when `durable`) fsyncs behind both writers above.
fn write_via_rename(path: &Path, bytes: &[u8], durable: bool) -> Result<(), LocalError> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| LocalError::io("creating", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
        .map_err(|e| LocalError::io("writing", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| LocalError::io("renaming onto", path, e))?;
    if durable
        && let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Loads `<state_dir>/host_key` (OpenSSH format), creating an Ed25519 key on first use.
pub(crate) fn load_or_create_host_key(state_dir: &Path) -> Result<PrivateKey, LocalError> {
    let path = state_dir.join("host_key");
    let err = |reason: String| LocalError::HostKey {
        path: path.clone(),
        reason,
    };
    match fs::read_to_string(&path) {
        Ok(pem) => PrivateKey::from_openssh(pem).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            SystemRandom::new()
                .fill(&mut seed)
                .map_err(|_| LocalError::Random)?;
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            let pem = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| err(e.to_string()))?;
            write_atomic(&path, pem.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(LocalError::io("reading", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn password_hash_verifies_only_the_password() {
        let pw = Password::new("correct horse");
        let h = PasswordHash::new(&pw).unwrap();
        assert!(h.verify("correct horse"));
        assert!(!h.verify("correct horsf"));
        assert!(!h.verify(""));
        let h2 = PasswordHash::new(&pw).unwrap();
        assert_ne!(h.salt, h2.salt, "salts are random");
        assert_ne!(h.hash, h2.hash);
        let json = serde_json::to_string(&h).unwrap();
        assert!(!json.contains("correct"));
        assert!(!format!("{h:?}").contains(&h.hash));
        let off = PasswordHash::disabled();
        assert!(!off.verify("correct horse"));
        assert!(
            !off.verify(""),
            "a disabled hash matches nothing, not even empty"
        );
        let back: PasswordHash =
            serde_json::from_str(&serde_json::to_string(&off).unwrap()).unwrap();
        assert!(!back.verify(""));
    }

    #[test]
    fn atomic_write_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leases.json");
        save_leases(&p, &[]).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(load_leases(&p).unwrap().is_empty());
        assert!(
            load_leases(&dir.path().join("missing.json"))
                .unwrap()
                .is_empty()
        );
        fs::write(&p, b"{not json").unwrap();
        assert!(matches!(load_leases(&p), Err(LocalError::Corrupt { .. })));
    }

    #[test]
    fn host_key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_host_key(dir.path()).unwrap();
        let b = load_or_create_host_key(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let mode = fs::metadata(dir.path().join("host_key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
