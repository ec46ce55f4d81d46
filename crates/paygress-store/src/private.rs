//! Private storage at rest: the data directory holds the operator's money (the Cashu
//! wallet database), keys and the journal, so it and the files in it must be readable
//! by the service's user only.
//!
//! [`create_private_dir`] makes directories 0700; [`check_private`] inspects existing
//! paths at start and refuses (or, when the operator says so, warns) when one is open
//! to group or others, naming the `chmod` that fixes it.

use std::fmt;
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Environment variable that turns the refusal of shared data into a warning.
pub const ENV_ALLOW_SHARED_DATA: &str = "PAYGRESS_ALLOW_SHARED_DATA";

/// Permission bits that give group or others any access.
const SHARED_BITS: u32 = 0o077;

/// Creates `dir` and any missing parents with mode 0700 (existing directories are left
/// as they are; [`check_private`] reports them).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// An existing path that group or others can access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPath {
    /// The file or directory.
    pub path: PathBuf,
    /// Its permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Whether it is a directory.
    pub is_dir: bool,
}

impl SharedPath {
    /// The command that makes it private: `chmod 700` for a directory, `chmod 600` for a
    /// file.
    pub fn fix_command(&self) -> String {
        let mode = if self.is_dir { "700" } else { "600" };
        format!("chmod {mode} {}", shell_quote(&self.path))
    }
}

impl fmt::Display for SharedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} is mode {:04o} (fix: {})",
            if self.is_dir { "directory" } else { "file" },
            self.path.display(),
            self.mode,
            self.fix_command()
        )
    }
}

/// Why the data could not be used.
#[derive(Debug, Error)]
pub enum PrivacyError {
    /// Existing data is readable or writable by group or others.
    #[error(
        "{} (the data directory holds the wallet's ecash and the service's keys: anyone who can read it can spend them; set {ENV_ALLOW_SHARED_DATA}=1 to start anyway)",
        list(.0)
    )]
    Shared(Vec<SharedPath>),
    /// A path could not be inspected.
    #[error("inspecting {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn list(shared: &[SharedPath]) -> String {
    shared
        .iter()
        .map(SharedPath::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The paths among `paths` that exist and give group or others any access. Missing
/// paths are skipped (the service creates them private). Symbolic links are followed.
pub fn find_shared<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<SharedPath>, PrivacyError> {
    let mut out = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(PrivacyError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & SHARED_BITS != 0 && !out.iter().any(|s: &SharedPath| s.path == path) {
            out.push(SharedPath {
                path: path.to_owned(),
                mode,
                is_dir: meta.is_dir(),
            });
        }
    }
    Ok(out)
}

/// Checks at start that the existing `paths` (the data directory, the wallet database and
/// its companions) are private. When one is not: an error naming the `chmod` commands,
/// or, with `allow_shared` ([`ENV_ALLOW_SHARED_DATA`]), a warning in the log and the
/// shared paths returned.
pub fn check_private<P: AsRef<Path>>(
    paths: &[P],
    allow_shared: bool,
) -> Result<Vec<SharedPath>, PrivacyError> {
    let shared = find_shared(paths)?;
    if shared.is_empty() {
        return Ok(shared);
    }
    if !allow_shared {
        return Err(PrivacyError::Shared(shared));
    }
    for s in &shared {
        tracing::warn!(
            path = %s.path.display(),
            mode = format!("{:04o}", s.mode),
            fix = %s.fix_command(),
            "data is readable or writable by group or others; starting anyway because {ENV_ALLOW_SHARED_DATA} is set"
        );
    }
    Ok(shared)
}

/// Quotes `path` for a POSIX shell when it contains anything but safe characters.
fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn creates_directories_0700_with_parents() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b");
        create_private_dir(&dir).expect("create");
        for d in [root.path().join("a"), dir.clone()] {
            let mode = fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        create_private_dir(&dir).expect("existing is fine");
    }

    #[test]
    fn a_0644_wallet_is_refused_with_the_fix_and_allowed_on_request() {
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("data dir");
        create_private_dir(&data).expect("create");
        let db = data.join("cashu.db");
        fs::write(&db, b"").expect("write");
        chmod(&db, 0o600);
        let paths = [data.clone(), db.clone(), data.join("cashu.db-wal")];
        assert_eq!(check_private(&paths, false).expect("private"), vec![]);

        chmod(&db, 0o644);
        let err = check_private(&paths, false).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("chmod 600 '{}'", db.display())),
            "{text}"
        );
        assert!(text.contains("0644"), "{text}");
        assert!(text.contains(ENV_ALLOW_SHARED_DATA), "{text}");

        let shared = check_private(&paths, true).expect("allowed");
        assert_eq!(
            shared,
            vec![SharedPath {
                path: db.clone(),
                mode: 0o644,
                is_dir: false
            }]
        );
    }

    #[test]
    fn a_group_readable_directory_is_refused_with_chmod_700() {
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("data");
        create_private_dir(&data).expect("create");
        chmod(&data, 0o750);
        let err = check_private(&[&data], false).expect_err("refused");
        assert!(
            err.to_string()
                .contains(&format!("chmod 700 {}", data.display())),
            "{err}"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(Path::new("/app/data")), "/app/data");
        assert_eq!(shell_quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }
}
