//! Configuration and the persistent wallet seed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use paygress_core::money::MintUrl;

use crate::error::CashuError;
use crate::url::normalize_mint_url;

/// Environment variable naming the wallet database file.
pub const ENV_DB_PATH: &str = "CASHU_DB_PATH";
/// Environment variable listing the accepted mints, comma-separated.
pub const ENV_WHITELISTED_MINTS: &str = "WHITELISTED_MINTS";
/// Database path used when `CASHU_DB_PATH` is not set (the seed's default).
pub const DEFAULT_DB_PATH: &str = "/app/data/cashu.db";

/// Settings of the service's Cashu wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashuConfig {
    /// The SQLite wallet database (`CASHU_DB_PATH`). Parent directories are created.
    /// The seed lives next to it, see [`CashuConfig::seed_path`].
    pub db_path: PathBuf,
    /// Accepted mints, normalised (`WHITELISTED_MINTS`). Never empty.
    pub mints: Vec<MintUrl>,
}

impl CashuConfig {
    /// A configuration from a database path and raw mint URLs (normalised and
    /// de-duplicated here).
    pub fn new<S: AsRef<str>>(
        db_path: impl Into<PathBuf>,
        mints: impl IntoIterator<Item = S>,
    ) -> Result<Self, CashuError> {
        let mut out: Vec<MintUrl> = Vec::new();
        for raw in mints {
            let raw = raw.as_ref();
            if raw.trim().is_empty() {
                continue;
            }
            let url = normalize_mint_url(raw)?;
            if !out.contains(&url) {
                out.push(url);
            }
        }
        if out.is_empty() {
            return Err(CashuError::Config("no whitelisted mint".into()));
        }
        Ok(Self {
            db_path: db_path.into(),
            mints: out,
        })
    }

    /// Where the wallet seed is kept: the database path with `.seed` appended.
    pub fn seed_path(&self) -> PathBuf {
        with_suffix(&self.db_path, ".seed")
    }

    /// Every file that holds the wallet's money or seed: the database, its SQLite `-wal`
    /// and `-shm` companions and the seed. All of them must be private to the service's
    /// user (0600; the directory this crate creates for them is 0700).
    pub fn private_paths(&self) -> Vec<PathBuf> {
        Self::private_paths_for(&self.db_path)
    }

    /// [`CashuConfig::private_paths`] of a wallet database at `db_path`.
    pub fn private_paths_for(db_path: &Path) -> Vec<PathBuf> {
        vec![
            db_path.to_owned(),
            with_suffix(db_path, "-wal"),
            with_suffix(db_path, "-shm"),
            with_suffix(db_path, ".seed"),
        ]
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.to_owned().into_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CashuError + 'a {
    move |source| CashuError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The wallet seed a seed file's text stands for: 128 hex characters (the raw seed), or
/// BIP-39 words (their seed, no passphrase).
pub(crate) fn decode_seed(text: &str) -> Option<[u8; 64]> {
    hex_decode_seed(text).or_else(|| {
        bip39::Mnemonic::parse_normalized(text.trim())
            .ok()
            .map(|m| m.to_seed(""))
    })
}

fn hex_decode_seed(text: &str) -> Option<[u8; 64]> {
    let text = text.trim();
    if text.len() != 128 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 64];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Creates the parent directory of `path` if needed, mode 0700 (with any missing
/// ancestors).
fn ensure_parent(path: &Path) -> Result<(), CashuError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io("create directory", parent))?;
    }
    Ok(())
}

/// Prepares the wallet database at `path` for SQLite: its directory (0700) and, when
/// the file does not exist yet, an empty file with mode 0600. SQLite gives the `-wal`
/// and `-shm` files it creates the database file's mode, so the whole wallet stays
/// private whatever the process umask. An existing file is left as it is.
pub(crate) fn prepare_db_file(path: &Path) -> Result<(), CashuError> {
    ensure_parent(path)?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("create wallet database", path)(e)),
    }
}

/// Loads the seed at `path`, or creates it (24 BIP-39 words from 256 random bits, mode
/// 0600; the wallet seed is the words' BIP-39 seed with no passphrase) if the file does
/// not exist. Files of earlier versions hold 64 random bytes as hex and keep working.
/// An existing file is never replaced.
pub fn load_or_create_seed(path: &Path) -> Result<[u8; 64], CashuError> {
    ensure_parent(path)?;
    match fs::read_to_string(path) {
        Ok(text) => {
            let seed = decode_seed(&text).ok_or_else(|| CashuError::CorruptSeed(path.into()))?;
            if let Ok(meta) = fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %path.display(), "wallet seed file is readable by others; chmod 600 it");
            }
            Ok(seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entropy: [u8; 32] = rand::random();
            let words = bip39::Mnemonic::from_entropy(&entropy)
                .map_err(|e| CashuError::Config(format!("seed words: {e}")))?;
            let seed = words.to_seed("");
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io("create seed file", path))?;
            file.write_all(format!("{words}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io("write seed file", path))?;
            tracing::info!(path = %path.display(), "created a new wallet seed");
            Ok(seed)
        }
        Err(e) => Err(io("read seed file", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_dedups_mints() {
        let c = CashuConfig::new(
            "/x/cashu.db",
            "https://Mint.Example/, https://mint.example,http://127.0.0.1:3338".split(','),
        )
        .expect("valid");
        assert_eq!(
            c.mints,
            vec![
                MintUrl::new("https://mint.example"),
                MintUrl::new("http://127.0.0.1:3338")
            ]
        );
        assert_eq!(c.seed_path(), PathBuf::from("/x/cashu.db.seed"));
        assert_eq!(
            c.private_paths(),
            [
                "/x/cashu.db",
                "/x/cashu.db-wal",
                "/x/cashu.db-shm",
                "/x/cashu.db.seed"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn empty_whitelist_is_an_error() {
        assert!(CashuConfig::new("/x", " , ".split(',')).is_err());
        assert!(CashuConfig::new("/x", ["not a url"]).is_err());
    }

    #[test]
    fn seed_is_created_once_with_0600_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deep/er/cashu.db.seed");
        let a = load_or_create_seed(&path).expect("create");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_seed(&path).expect("load");
        assert_eq!(a, b);
        assert_ne!(a, [0u8; 64]);
    }

    #[test]
    fn corrupt_seed_is_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.seed");
        fs::write(&path, "garbage").expect("write");
        assert!(matches!(
            load_or_create_seed(&path),
            Err(CashuError::CorruptSeed(_))
        ));
        assert_eq!(fs::read_to_string(&path).expect("read"), "garbage");
    }
}
