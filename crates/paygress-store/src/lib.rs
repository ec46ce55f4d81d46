#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use jiff::Timestamp;
use paygress_core::{Entry, Journal, JournalError, RequestKey, Stage};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::warn;

pub mod private;

/// Why the journal could not be opened.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("journal file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: RequestKey,
    #[serde(flatten)]
    entry: Entry,
}

struct Inner {
    path: PathBuf,
    file: File,
    entries: HashMap<RequestKey, Entry>,
    lines: usize,
}

/// A [`Journal`] in an append-only JSON-lines file.
#[derive(Clone)]
pub struct FileJournal {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("FileJournal")
            .field("path", &inner.path)
            .field("entries", &inner.entries.len())
            .finish()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Compact when the file has this many times more lines than live entries.
const COMPACT_FACTOR: usize = 4;
/// ... and at least this many lines.
const COMPACT_MIN_LINES: usize = 1024;

impl FileJournal {
    /// Opens (or creates, with mode 0600) the journal at `path` and replays it. A torn
    /// last line (crash mid-write) is ignored; any other undecodable line is an error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private::create_private_dir(dir).map_err(io)?;
        }
        let mut entries = HashMap::new();
        let mut lines = 0;
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(io)?);
            let all: Vec<String> = reader.lines().collect::<Result<_, _>>().map_err(io)?;
            let count = all.len();
            for (i, text) in all.into_iter().enumerate() {
                if text.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Line>(&text) {
                    Ok(line) => {
                        entries.insert(line.key, line.entry);
                        lines += 1;
                    }
                    Err(e) if i + 1 == count => {
                        warn!(path = %path.display(), error = %e, "ignoring a torn last journal line");
                    }
                    Err(e) => {
                        return Err(io(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("line {}: {e}", i + 1),
                        )));
                    }
                }
            }
        }
        let file = open_append(&path).map_err(io)?;
        let mut inner = Inner {
            path,
            file,
            entries,
            lines,
        };
        // Rewrite at open so a torn tail never precedes new lines.
        compact(&mut inner).map_err(|e| StoreError::Io {
            path: inner.path.clone(),
            source: e,
        })?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// How many requests the journal knows.
    pub fn len(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    /// Whether the journal is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Rewrites the file with one line per live entry, atomically (write, fsync, rename).
fn compact(inner: &mut Inner) -> std::io::Result<()> {
    let tmp = inner.path.with_extension("compacting");
    {
        let mut opts = OpenOptions::new();
        opts.create(true).write(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut out = std::io::BufWriter::new(opts.open(&tmp)?);
        for (key, entry) in &inner.entries {
            serde_json::to_writer(
                &mut out,
                &Line {
                    key: key.clone(),
                    entry: entry.clone(),
                },
            )?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    fs::rename(&tmp, &inner.path)?;
    if let Some(dir) = inner.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename durable.
        File::open(dir)?.sync_all()?;
    }
    inner.file = open_append(&inner.path)?;
    inner.lines = inner.entries.len();
    Ok(())
}

fn append(inner: &mut Inner, key: &RequestKey, entry: &Entry) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(&Line {
        key: key.clone(),
        entry: entry.clone(),
    })?;
    bytes.push(b'\n');
    inner.file.write_all(&bytes)?;
    inner.file.sync_data()?;
    inner.entries.insert(key.clone(), entry.clone());
    inner.lines += 1;
    if inner.lines >= COMPACT_MIN_LINES && inner.lines > COMPACT_FACTOR * inner.entries.len() {
        compact(inner)?;
    }
    Ok(())
}

#[async_trait]
impl Journal for FileJournal {
    async fn get(&self, key: &RequestKey) -> Result<Option<Entry>, JournalError> {
        Ok(lock(&self.inner).entries.get(key).cloned())
    }

    async fn put(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        let inner = self.inner.clone();
        let key = key.clone();
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || append(&mut lock(&inner), &key, &entry))
            .await
            .map_err(|e| JournalError::Io(Box::new(e)))?
            .map_err(|e| JournalError::Io(Box::new(e)))
    }

    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError> {
        Ok(lock(&self.inner)
            .entries
            .iter()
            .filter(|(_, e)| !matches!(e.stage, Stage::Done { .. }))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect())
    }

    async fn prune(&self, before: Timestamp) -> Result<usize, JournalError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = lock(&inner);
            let len = inner.entries.len();
            inner
                .entries
                .retain(|_, e| !(matches!(e.stage, Stage::Done { .. }) && e.updated_at < before));
            let pruned = len - inner.entries.len();
            if pruned > 0 {
                compact(&mut inner)?;
            }
            Ok(pruned)
        })
        .await
        .map_err(|e| JournalError::Io(Box::new(e)))?
        .map_err(|e: std::io::Error| JournalError::Io(Box::new(e)))
    }
}
