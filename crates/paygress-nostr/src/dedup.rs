//! A bounded, persisted set of handled request ids, so that an event delivered by
//! several relays, or again after a restart, is handled once.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nostr_sdk::EventId;
use tracing::warn;

use crate::error::NostrError;

/// Remembers the last `capacity` ids. `claim` is in memory (first caller wins);
/// `persist` appends the id to a log file that is compacted when it doubles.
#[derive(Debug)]
pub(crate) struct Dedup {
    capacity: usize,
    order: VecDeque<EventId>,
    set: HashSet<EventId>,
    path: PathBuf,
    file: File,
    lines: usize,
}

impl Dedup {
    /// Loads the log at `path` (creating it) keeping the last `capacity` ids.
    pub(crate) fn open(path: &Path, capacity: usize) -> Result<Self, NostrError> {
        let io = |source| NostrError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let capacity = capacity.max(1);
        let mut dedup = Self {
            capacity,
            order: VecDeque::new(),
            set: HashSet::new(),
            path: path.to_owned(),
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?,
            lines: 0,
        };
        // A log an older version wrote with the default umask becomes private too.
        dedup
            .file
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        let reader = BufReader::new(File::open(path).map_err(io)?);
        for line in reader.lines() {
            let line = line.map_err(io)?;
            dedup.lines += 1;
            // A torn last line after a crash is skipped.
            if let Ok(id) = EventId::from_hex(line.trim()) {
                dedup.remember(id);
            }
        }
        Ok(dedup)
    }

    fn remember(&mut self, id: EventId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Whether `id` was handled (or is being handled).
    pub(crate) fn contains(&self, id: &EventId) -> bool {
        self.set.contains(id)
    }

    /// Marks `id` as taken in memory; `false` if it already was.
    pub(crate) fn claim(&mut self, id: EventId) -> bool {
        self.remember(id)
    }

    /// Records `id` durably (best effort: a failure is logged, the id stays claimed).
    pub(crate) fn persist(&mut self, id: &EventId) {
        if let Err(e) = writeln!(self.file, "{}", id.to_hex()).and_then(|()| self.file.sync_data())
        {
            warn!(error = %e, path = %self.path.display(), "could not record a handled request");
            return;
        }
        self.lines += 1;
        if self.lines > self.capacity.saturating_mul(2)
            && let Err(e) = self.compact()
        {
            warn!(error = %e, path = %self.path.display(), "could not compact the handled-request log");
        }
    }

    /// Rewrites the log with the ids still remembered.
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut text = String::with_capacity(self.order.len() * 65);
            for id in &self.order {
                text.push_str(&id.to_hex());
                text.push('\n');
            }
            out.write_all(text.as_bytes())?;
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = self.order.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EventId {
        EventId::from_byte_array([n; 32])
    }

    #[test]
    fn persisted_ids_survive_reopen_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handled.txt");
        let mut d = Dedup::open(&path, 3).unwrap();
        for n in 0..10 {
            assert!(d.claim(id(n)));
            assert!(!d.claim(id(n)));
            d.persist(&id(n));
        }
        drop(d);
        let d = Dedup::open(&path, 3).unwrap();
        assert!(d.contains(&id(9)) && d.contains(&id(7)));
        assert!(!d.contains(&id(6)));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 7, "log not compacted: {lines} lines");
    }

    #[test]
    fn an_existing_shared_log_becomes_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handled.txt");
        std::fs::write(&path, format!("{}\n", id(1).to_hex())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let d = Dedup::open(&path, 10).unwrap();
        assert!(d.contains(&id(1)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn log_and_its_directory_are_private_after_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh/handled.txt");
        let mut d = Dedup::open(&path, 2).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("fresh")), 0o700);
        for n in 0..6 {
            d.claim(id(n));
            d.persist(&id(n));
        }
        assert_eq!(mode(&path), 0o600, "the compacted log too");
    }

    #[test]
    fn torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handled.txt");
        std::fs::write(&path, format!("{}\nabc", id(1).to_hex())).unwrap();
        let d = Dedup::open(&path, 10).unwrap();
        assert!(d.contains(&id(1)));
    }
}
