//! The wallet's backup: its seed as BIP-39 words, and restore (NUT-09 `restore` of
//! NUT-13 deterministic outputs) into a fresh data directory.
//!
//! Every proof the service wallet holds was signed for outputs derived from the seed
//! (the redeem path reserves NUT-13 counters; cdk's sends and melts derive theirs), so
//! the seed alone is enough to find them again at each mint.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use paygress_core::money::{Amount, MintUrl, Unit};

use crate::config::decode_seed;
use crate::error::CashuError;
use crate::verifier::CashuVerifier;

/// What the seed file holds, for the operator to write down.
#[derive(Clone, PartialEq, Eq)]
pub enum SeedBackup {
    /// 24 BIP-39 words (wallets created by this version).
    Words(String),
    /// The raw 64-byte seed as hex (wallets created before seed words).
    Hex(String),
}

impl std::fmt::Debug for SeedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedBackup(<redacted>)")
    }
}

impl SeedBackup {
    /// The words or hex, exactly as `paygress wallet restore` takes them back.
    pub fn expose(&self) -> &str {
        match self {
            SeedBackup::Words(s) | SeedBackup::Hex(s) => s,
        }
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CashuError + 'a {
    move |source| CashuError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the seed file at `path` for a backup.
pub fn read_seed_backup(path: &Path) -> Result<SeedBackup, CashuError> {
    let text = fs::read_to_string(path).map_err(io("read seed file", path))?;
    let text = text.trim().to_owned();
    decode_seed(&text).ok_or_else(|| CashuError::CorruptSeed(path.into()))?;
    if text.contains(' ') {
        Ok(SeedBackup::Words(text))
    } else {
        Ok(SeedBackup::Hex(text))
    }
}

/// Writes a seed backed up with [`read_seed_backup`] to `path` (mode 0600). Refuses to
/// replace an existing seed file or to write anything that is not a seed.
pub fn write_seed_backup(path: &Path, backup: &str) -> Result<(), CashuError> {
    let text = backup.split_whitespace().collect::<Vec<_>>().join(" ");
    if decode_seed(&text).is_none() {
        return Err(CashuError::Config(
            "not a seed: expected 24 BIP-39 words or 128 hex characters".into(),
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create directory", dir))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create seed file (it must not exist yet)", path))?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("write seed file", path))
}

use std::os::unix::fs::DirBuilderExt;

/// What a restore found at one mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredAt {
    /// The mint.
    pub mint: MintUrl,
    /// Unspent value found and stored in the wallet.
    pub unspent: Amount,
    /// Value found already spent (refunds and change paid out, withdrawals).
    pub spent: Amount,
}

impl CashuVerifier {
    /// Asks every accepted mint which outputs of this wallet's seed it signed (NUT-09)
    /// and stores the unspent proofs. Run on a fresh data directory whose seed file was
    /// written by [`write_seed_backup`].
    pub async fn restore(&self) -> Result<Vec<RestoredAt>, CashuError> {
        let mut out = Vec::new();
        for mint in self.mints().to_vec() {
            for unit in [Unit::Sat, Unit::Msat] {
                let wallet = self.wallet(&mint, unit)?;
                match wallet.restore().await {
                    Ok(r) => out.push(RestoredAt {
                        mint: mint.clone(),
                        unspent: Amount::new(r.unspent.to_u64(), unit),
                        spent: Amount::new(r.spent.to_u64(), unit),
                    }),
                    // A mint without a keyset in this unit has nothing to restore.
                    Err(
                        cdk::Error::UnsupportedUnit
                        | cdk::Error::NoActiveKeyset
                        | cdk::Error::UnknownKeySet,
                    ) if unit == Unit::Msat => {}
                    Err(e) => return Err(CashuError::Wallet(e)),
                }
            }
        }
        Ok(out)
    }
}
