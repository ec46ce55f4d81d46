//! Configuration: identity, relays, data directory.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nostr_sdk::{Keys, RelayUrl, ToBech32};
use tracing::info;

use crate::error::NostrError;
use crate::limits::NostrLimits;

/// File in the data directory holding the generated service key (hex, mode 0600).
pub const KEY_FILE: &str = "nostr-service.key";
/// File in the data directory holding handled request ids.
pub const HANDLED_FILE: &str = "nostr-handled.txt";

/// Environment variable with the service key (`nsec1…` or 64 hex digits).
pub const ENV_PRIVATE_KEY: &str = "NOSTR_PRIVATE_KEY";
/// Environment variable with comma-separated relay URLs.
pub const ENV_RELAYS: &str = "NOSTR_RELAYS";
/// Environment variable with the data directory.
pub const ENV_DATA_DIR: &str = "PAYGRESS_DATA_DIR";
/// Environment variable with comma-separated index relays (relay lists and offers are
/// published there too; requests are not read there).
pub const ENV_INDEX_RELAYS: &str = "NOSTR_INDEX_RELAYS";
/// Environment variable with comma-separated NIP-17 inbox relays (default: `NOSTR_RELAYS`).
pub const ENV_INBOX_RELAYS: &str = "NOSTR_INBOX_RELAYS";
/// Environment variable: `1`/`true` also publishes the offer as the old kind 38383.
pub const ENV_LEGACY_OFFER: &str = "PAYGRESS_OFFER_LEGACY_KIND";
/// Environment variable with the offer's NIP-99 `location` (free text).
pub const ENV_OFFER_LOCATION: &str = "PAYGRESS_OFFER_LOCATION";

/// Everything [`crate::NostrTransport::start`] needs. `Debug` never shows the secret key.
#[derive(Clone)]
pub struct NostrConfig {
    /// The service identity: signs replies and offers, decrypts requests.
    pub keys: Keys,
    /// Relays to read requests from and publish replies and offers to.
    pub relays: Vec<RelayUrl>,
    /// Where the handled-request log (and a generated key) lives.
    pub data_dir: PathBuf,
    /// How often the offer is republished (default one hour).
    pub offer_interval: Duration,
    /// How far back requests are fetched at start (default one hour). Gift wraps are
    /// fetched two days further back (their timestamps are randomised); their rumors
    /// older than this window are ignored.
    pub backlog: Duration,
    /// How many handled request ids are remembered (default 50 000).
    pub dedup_capacity: usize,
    /// How long `start` waits for relays before going on without them (default 5 s).
    pub connect_timeout: Duration,
    /// `d` tag of the offer event; defaults to the offer's `name`.
    pub offer_identifier: Option<String>,
    /// Rate limits and the cap on requests in flight (see [`NostrLimits`]).
    pub limits: NostrLimits,
    /// NIP-40 lifetime of offer events (default three hours). Kept at least twice
    /// `offer_interval`, so a running service republishes long before its offer expires
    /// and a service that went away drops out of listings by itself.
    pub offer_ttl: Duration,
    /// Also publish the offer as kind 38383 (the seed's kind, which NIP-69 assigns to P2P
    /// trade orders) for old clients during a transition. Off by default.
    pub legacy_offer: bool,
    /// NIP-99 `location` of the offer (free text), when set.
    pub offer_location: Option<String>,
    /// A NUT-18 payment request put in the offer, when the operator provides one.
    pub offer_payment_request: Option<String>,
    /// The SSH host-key fingerprint put in the offer, when known.
    pub host_key_fingerprint: Option<String>,
    /// Relays where the relay lists and offers are published too (well-known indexers
    /// buyers look things up on); requests are not read there.
    pub index_relays: Vec<RelayUrl>,
    /// NIP-17 inbox relays published in kind 10050 (default: `relays`). Requests are
    /// read on `relays` only: list relays here that are also in `relays`.
    pub inbox_relays: Vec<RelayUrl>,
    /// How long looking up a buyer's relay lists may take (default 2 s).
    pub relay_lookup_timeout: Duration,
    /// How many buyers' relay lists are cached (default 10 000; entries live an hour).
    pub relay_cache_capacity: usize,
}

impl fmt::Debug for NostrConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NostrConfig")
            .field("public_key", &self.keys.public_key().to_hex())
            .field("relays", &self.relays)
            .field("data_dir", &self.data_dir)
            .field("offer_interval", &self.offer_interval)
            .field("backlog", &self.backlog)
            .field("dedup_capacity", &self.dedup_capacity)
            .field("connect_timeout", &self.connect_timeout)
            .field("offer_identifier", &self.offer_identifier)
            .field("limits", &self.limits)
            .field("offer_ttl", &self.offer_ttl)
            .field("legacy_offer", &self.legacy_offer)
            .field("offer_location", &self.offer_location)
            .field("index_relays", &self.index_relays)
            .field("inbox_relays", &self.inbox_relays)
            .finish_non_exhaustive()
    }
}

impl NostrConfig {
    /// A config with default timings.
    pub fn new(keys: Keys, relays: Vec<RelayUrl>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            keys,
            relays,
            data_dir: data_dir.into(),
            offer_interval: Duration::from_secs(3600),
            backlog: Duration::from_secs(3600),
            dedup_capacity: 50_000,
            connect_timeout: Duration::from_secs(5),
            offer_identifier: None,
            limits: NostrLimits::default(),
            offer_ttl: Duration::from_secs(3 * 3600),
            legacy_offer: false,
            offer_location: None,
            offer_payment_request: None,
            host_key_fingerprint: None,
            index_relays: Vec::new(),
            inbox_relays: Vec::new(),
            relay_lookup_timeout: Duration::from_secs(2),
            relay_cache_capacity: 10_000,
        }
    }

    /// Builds the config from the seed's raw values: `private_key` (`NOSTR_PRIVATE_KEY`,
    /// nsec or hex; when `None` or empty a key is loaded from or generated into
    /// `data_dir`), `relays` (`NOSTR_RELAYS`, comma-separated) and `data_dir`
    /// (`PAYGRESS_DATA_DIR`).
    pub fn from_values(
        private_key: Option<&str>,
        relays: &str,
        data_dir: impl Into<PathBuf>,
    ) -> Result<Self, NostrError> {
        let data_dir = data_dir.into();
        let keys = load_or_generate_keys(private_key, &data_dir)?;
        Ok(Self::new(keys, parse_relays(relays)?, data_dir))
    }

    /// Sets the discovery settings from `lookup` (the binary's settings, by variable
    /// name): `NOSTR_INDEX_RELAYS`, `NOSTR_INBOX_RELAYS` (comma-separated),
    /// `PAYGRESS_OFFER_LEGACY_KIND` (`1`/`true`) and `PAYGRESS_OFFER_LOCATION`; unset
    /// names leave the defaults.
    pub fn apply_discovery(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), NostrError> {
        let var = |name: &str| lookup(name).unwrap_or_default();
        self.index_relays = parse_relays(&var(ENV_INDEX_RELAYS))?;
        self.inbox_relays = parse_relays(&var(ENV_INBOX_RELAYS))?;
        self.legacy_offer = matches!(
            var(ENV_LEGACY_OFFER).trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes"
        );
        self.offer_location =
            Some(var(ENV_OFFER_LOCATION).trim().to_owned()).filter(|s| !s.is_empty());
        Ok(())
    }

    /// The NIP-17 inbox relays: `inbox_relays`, or `relays` when none are set.
    pub fn inbox(&self) -> Vec<RelayUrl> {
        if self.inbox_relays.is_empty() {
            self.relays.clone()
        } else {
            self.inbox_relays.clone()
        }
    }

    /// The service public key as `npub1…`.
    pub fn npub(&self) -> String {
        npub(&self.keys)
    }
}

/// `npub1…` of `keys`.
pub(crate) fn npub(keys: &Keys) -> String {
    keys.public_key()
        .to_bech32()
        .unwrap_or_else(|_| keys.public_key().to_hex())
}

/// Parses a comma-separated relay list; blanks are skipped.
pub fn parse_relays(list: &str) -> Result<Vec<RelayUrl>, NostrError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            RelayUrl::parse(s).map_err(|e| NostrError::RelayUrl {
                url: s.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The service keys: parsed from `secret` (nsec or hex) when given, else read from
/// `data_dir/nostr-service.key`, else generated and written there with mode 0600.
pub fn load_or_generate_keys(secret: Option<&str>, data_dir: &Path) -> Result<Keys, NostrError> {
    if let Some(secret) = secret.map(str::trim).filter(|s| !s.is_empty()) {
        return Keys::parse(secret).map_err(|_| {
            NostrError::Config(format!("{ENV_PRIVATE_KEY} is not an nsec or 64-hex key"))
        });
    }
    let path = data_dir.join(KEY_FILE);
    let io = |source| NostrError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return Keys::parse(text.trim()).map_err(|_| {
                NostrError::Config(format!("{} does not hold a valid key", path.display()))
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|source| NostrError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
    let keys = Keys::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    // create_new + mode: the file is never readable by others, even briefly.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    file.write_all(keys.secret_key().to_secret_hex().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    info!(path = %path.display(), "generated a new service key");
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_persisted_private_and_reused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("fresh");
        let a = load_or_generate_keys(None, &dir).unwrap();
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "a directory it creates is private");
        let b = load_or_generate_keys(Some(""), &dir).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }

    #[test]
    fn explicit_key_as_nsec_or_hex() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::generate();
        let hex = k.secret_key().to_secret_hex();
        let nsec = k.secret_key().to_bech32().unwrap();
        assert_eq!(
            load_or_generate_keys(Some(&hex), dir.path())
                .unwrap()
                .public_key(),
            k.public_key()
        );
        assert_eq!(
            load_or_generate_keys(Some(&nsec), dir.path())
                .unwrap()
                .public_key(),
            k.public_key()
        );
        let err = load_or_generate_keys(Some("nsec1garbage"), dir.path()).unwrap_err();
        assert!(!err.to_string().contains("garbage"));
        assert!(!dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn relay_list_parsing_and_debug_redaction() {
        let relays = parse_relays(" ws://127.0.0.1:1, ,wss://relay.example.com ").unwrap();
        assert_eq!(relays.len(), 2);
        assert!(parse_relays("not a url").is_err());
        let keys = Keys::generate();
        let secret = keys.secret_key().to_secret_hex();
        let cfg = NostrConfig::new(keys, relays, "/tmp/x");
        assert!(!format!("{cfg:?}").contains(&secret));
        assert!(cfg.npub().starts_with("npub1"));
    }
}
