#![doc = include_str!("../README.md")]

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use jiff::Timestamp;
use paygress_core::{Entry, Journal, JournalError, RequestKey, Stage};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
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

/// What readers see: the entries whose lines are on disk. Only the writer thread
/// changes it, and only for the moment of an insert (never across a write or `fsync`).
struct Shared {
    path: PathBuf,
    entries: RwLock<Entries>,
    syncs: AtomicU64,
    /// Nanoseconds the writer spent appending and syncing.
    write_nanos: AtomicU64,
}

/// A line to append, answered once it is durable (unless nobody waits: `put_lazy`).
struct Put {
    key: RequestKey,
    entry: Entry,
    line: Vec<u8>,
    done: Option<oneshot::Sender<std::io::Result<()>>>,
}

/// A change for the writer thread, answered once it is durable.
enum Op {
    Put(Box<Put>),
    Prune {
        before: Timestamp,
        done: oneshot::Sender<std::io::Result<usize>>,
    },
}

/// A [`Journal`] in an append-only JSON-lines file.
///
/// Writes are group-committed: one writer thread appends every line queued while the
/// previous `fsync` ran and makes them durable with a single `fsync`, so concurrent
/// requests share it. A `put` returns only after its line is durable, a `put_lazy` once
/// its line is queued (written by the writer, made durable by the next `put`'s
/// `fsync`, never one of its own), and
/// lines reach the file in the order their `put`s were called. Reads are served from memory and
/// never wait behind a write.
#[derive(Clone)]
pub struct FileJournal {
    shared: Arc<Shared>,
    ops: mpsc::UnboundedSender<Op>,
}

impl std::fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJournal")
            .field("path", &self.shared.path)
            .field("entries", &self.len())
            .finish()
    }
}

/// Every request's latest entry, and which of them are unfinished (not `Done`): the
/// money flows ask for those on every top-up and release, and a week of finished
/// requests must not be scanned for them.
#[derive(Default)]
struct Entries {
    all: HashMap<RequestKey, Entry>,
    open: HashSet<RequestKey>,
}

impl Entries {
    fn insert(&mut self, key: RequestKey, entry: Entry) {
        if matches!(entry.stage, Stage::Done { .. }) {
            self.open.remove(&key);
        } else {
            self.open.insert(key.clone());
        }
        self.all.insert(key, entry);
    }

    fn remove(&mut self, key: &RequestKey) {
        self.open.remove(key);
        self.all.remove(key);
    }

    fn unfinished(&self) -> Vec<(RequestKey, Entry)> {
        self.open
            .iter()
            .filter_map(|k| self.all.get(k).map(|e| (k.clone(), e.clone())))
            .collect()
    }
}

impl std::ops::Deref for Entries {
    type Target = HashMap<RequestKey, Entry>;

    fn deref(&self) -> &Self::Target {
        &self.all
    }
}

fn read(shared: &Shared) -> RwLockReadGuard<'_, Entries> {
    shared.entries.read().unwrap_or_else(|p| p.into_inner())
}

fn write(shared: &Shared) -> RwLockWriteGuard<'_, Entries> {
    shared.entries.write().unwrap_or_else(|p| p.into_inner())
}

/// Compact when the file has this many times more lines than live entries.
const COMPACT_FACTOR: usize = 4;
/// ... and at least this many lines.
const COMPACT_MIN_LINES: usize = 1024;
/// Most changes written under one `fsync`.
const MAX_BATCH: usize = 1024;

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
        let mut entries = Entries::default();
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
        let shared = Arc::new(Shared {
            path: path.clone(),
            entries: RwLock::new(entries),
            syncs: AtomicU64::new(0),
            write_nanos: AtomicU64::new(0),
        });
        // Rewrite at open so a torn tail never precedes new lines.
        let file = compact(&shared).map_err(io)?;
        let lines = read(&shared).len();
        let (ops, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            shared: shared.clone(),
            file,
            lines,
        };
        std::thread::Builder::new()
            .name("paygress-journal".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(Self { shared, ops })
    }

    /// How many requests the journal knows.
    pub fn len(&self) -> usize {
        read(&self.shared).len()
    }

    /// Whether the journal is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times the journal has been `fsync`ed since it was opened (appends and
    /// compactions); concurrent `put`s share one.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Time the writer thread has spent appending lines and `fsync`ing them since the
    /// journal was opened: what the disk costs the `put`s, apart from the time a `put`
    /// waits for the writer's turn and for its own task to run again.
    pub fn write_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.shared.write_nanos.load(Ordering::Relaxed))
    }

    async fn submit<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<std::io::Result<T>>) -> Op,
    ) -> Result<T, JournalError> {
        let (done, answer) = oneshot::channel();
        self.ops.send(op(done)).map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|e| JournalError::Io(Box::new(e)))
    }
}

/// `entry` for `key` as one line of the file.
fn line(key: &RequestKey, entry: &Entry) -> Result<Vec<u8>, JournalError> {
    let mut line = serde_json::to_vec(&Line {
        key: key.clone(),
        entry: entry.clone(),
    })
    .map_err(|e| JournalError::Io(Box::new(e)))?;
    line.push(b'\n');
    Ok(line)
}

fn stopped() -> JournalError {
    JournalError::Io(Box::new(std::io::Error::other(
        "the journal writer stopped",
    )))
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

/// Rewrites the file with one line per live entry, atomically (write, fsync, rename),
/// and returns the new file opened for appending. Readers are not held up: the entries
/// are serialised under a read lock, the file written without one.
fn compact(shared: &Shared) -> std::io::Result<File> {
    let bytes = {
        let entries = read(shared);
        let mut out = Vec::with_capacity(entries.len() * 256);
        for (key, entry) in entries.iter() {
            serde_json::to_writer(
                &mut out,
                &Line {
                    key: key.clone(),
                    entry: entry.clone(),
                },
            )?;
            out.push(b'\n');
        }
        out
    };
    let path = &shared.path;
    let tmp = path.with_extension("compacting");
    {
        let mut opts = OpenOptions::new();
        opts.create(true).write(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut out = opts.open(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename durable.
        File::open(dir)?.sync_all()?;
    }
    shared.syncs.fetch_add(1, Ordering::Relaxed);
    open_append(path)
}

/// The one thread that writes the file.
struct Writer {
    shared: Arc<Shared>,
    file: File,
    /// Lines in the file (to decide when to compact).
    lines: usize,
}

impl Writer {
    /// Takes everything queued, writes it under one `fsync`, answers, repeats; ends when
    /// every [`FileJournal`] handle is gone.
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut batch = Vec::new();
        while let Some(op) = rx.blocking_recv() {
            batch.push(op);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.apply(&mut batch);
        }
    }

    /// Applies a batch in order: runs of puts share one append and one `fsync`; a prune
    /// comes after the puts queued before it.
    fn apply(&mut self, batch: &mut Vec<Op>) {
        let mut puts = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Put(put) => puts.push(*put),
                Op::Prune { before, done } => {
                    self.commit(std::mem::take(&mut puts));
                    let _ = done.send(self.prune(before));
                }
            }
        }
        self.commit(puts);
    }

    fn commit(&mut self, puts: Vec<Put>) {
        if puts.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(puts.iter().map(|p| p.line.len()).sum());
        for put in &puts {
            bytes.extend_from_slice(&put.line);
        }
        // Only lazy lines: written, not synced; the next waited put's `fsync` covers
        // them (it syncs the whole file), so they never cost one of their own.
        let sync = puts.iter().any(|p| p.done.is_some());
        match self.append(&bytes, sync) {
            Ok(()) => {
                self.lines += puts.len();
                {
                    let mut entries = write(&self.shared);
                    for put in &puts {
                        entries.insert(put.key.clone(), put.entry.clone());
                    }
                }
                for done in puts.into_iter().filter_map(|p| p.done) {
                    let _ = done.send(Ok(()));
                }
                if let Err(e) = self.maybe_compact() {
                    warn!(error = %e, "journal compaction failed; appending to the old file");
                }
            }
            Err(e) => {
                warn!(error = %e, "journal write failed");
                for done in puts.into_iter().filter_map(|p| p.done) {
                    let _ = done.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }

    /// Appends `bytes` and, with `sync`, makes them (and every line before) durable; on
    /// failure cuts the file back to where it was, so a half-written batch never sits
    /// before later lines.
    fn append(&mut self, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        let before = self.file.metadata()?.len();
        let started = std::time::Instant::now();
        let mut result = self.file.write_all(bytes);
        if sync && result.is_ok() {
            result = self.file.sync_data();
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.shared.write_nanos.fetch_add(nanos, Ordering::Relaxed);
        if result.is_err() {
            let _ = self.file.set_len(before);
        }
        result
    }

    fn maybe_compact(&mut self) -> std::io::Result<()> {
        let live = read(&self.shared).len();
        if self.lines >= COMPACT_MIN_LINES && self.lines > COMPACT_FACTOR * live {
            self.file = compact(&self.shared)?;
            self.lines = live;
        }
        Ok(())
    }

    fn prune(&mut self, before: Timestamp) -> std::io::Result<usize> {
        let stale: Vec<RequestKey> = read(&self.shared)
            .iter()
            .filter(|(_, e)| matches!(e.stage, Stage::Done { .. }) && e.updated_at < before)
            .map(|(k, _)| k.clone())
            .collect();
        if stale.is_empty() {
            return Ok(0);
        }
        // Readers may still see a pruned entry until the rewrite is durable; that is
        // harmless (it is finished and old), and a crash before the rename keeps it.
        {
            let mut entries = write(&self.shared);
            for key in &stale {
                entries.remove(key);
            }
        }
        self.file = compact(&self.shared)?;
        self.lines = read(&self.shared).len();
        Ok(stale.len())
    }
}

#[async_trait]
impl Journal for FileJournal {
    async fn get(&self, key: &RequestKey) -> Result<Option<Entry>, JournalError> {
        Ok(read(&self.shared).get(key).cloned())
    }

    async fn put(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        let line = line(key, entry)?;
        self.submit(|done| {
            Op::Put(Box::new(Put {
                key: key.clone(),
                entry: entry.clone(),
                line,
                done: Some(done),
            }))
        })
        .await
    }

    async fn put_lazy(&self, key: &RequestKey, entry: &Entry) -> Result<(), JournalError> {
        let line = line(key, entry)?;
        self.ops
            .send(Op::Put(Box::new(Put {
                key: key.clone(),
                entry: entry.clone(),
                line,
                done: None,
            })))
            .map_err(|_| stopped())
    }

    async fn unfinished(&self) -> Result<Vec<(RequestKey, Entry)>, JournalError> {
        Ok(read(&self.shared).unfinished())
    }

    async fn prune(&self, before: Timestamp) -> Result<usize, JournalError> {
        self.submit(|done| Op::Prune { before, done }).await
    }
}
