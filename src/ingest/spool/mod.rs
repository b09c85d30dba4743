//! The local spool: where an authentic payload goes when the store cannot take it.
//!
//! An append-only file of checksummed records ([`record`]), each fsync'd before the sender is
//! answered. Replay claims the active file by renaming it (new payloads start a fresh file
//! meanwhile), re-ingests every record through the normal path — dedup makes a repeated replay
//! harmless — and deletes the file only once every record is in the store (or kept again).
//!
//! Invariants:
//! - One process owns the directory ([`ownership`]); only the owner appends, claims or deletes.
//!   Offline commands get an [`Spool::unowned`] handle that can only measure the backlog.
//! - An append never lands in a file that was renamed or removed: it checks that the path still
//!   names its open file before and after writing, and starts a fresh file when it does not.
//! - The directory is created `0700` and every file in it `0600`: spooled bodies are messages.

pub mod ownership;
pub mod record;

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::domain::Origin;
use ownership::Ownership;
pub use ownership::{LOCK_FILE, SpoolError};
pub use record::{RecordReader, SpoolContents, SpoolRecord, decode_all, encode};

pub const ACTIVE: &str = "active.spool";
const CLAIMED_SUFFIX: &str = ".replaying";
/// How often an append starts over when its file keeps being moved away under it.
const APPEND_ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// `None` for a handle that only measures the backlog (offline commands).
    ownership: Option<Ownership>,
    active: Mutex<Option<ActiveFile>>,
}

/// The open active file and the identity it had when opened, to notice a rename or removal.
#[derive(Debug)]
struct ActiveFile {
    file: File,
    dev: u64,
    ino: u64,
}

impl Spool {
    /// Creates the directory (`0700`) if needed and takes ownership of it; refuses with
    /// [`SpoolError::Owned`] while another process owns it.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let dir = dir.into();
        create_private_dir(&dir).map_err(|source| SpoolError::Io {
            dir: dir.clone(),
            source,
        })?;
        let ownership = Ownership::take(&dir)?;
        Ok(Self::with(dir, Some(ownership)))
    }

    /// A handle for a process that must not write the spool (another may own it): appends and
    /// replays are refused, the backlog can be measured.
    pub fn unowned(dir: impl Into<PathBuf>) -> Self {
        Self::with(dir.into(), None)
    }

    fn with(dir: PathBuf, ownership: Option<Ownership>) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                ownership,
                active: Mutex::new(None),
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn owned(&self) -> io::Result<()> {
        match self.inner.ownership {
            Some(_) => Ok(()),
            None => Err(io::Error::other(format!(
                "this process does not own the spool at {} (only `replyd serve` or `replyd spool \
                 replay` do); retry once the store is available",
                self.dir().display()
            ))),
        }
    }

    fn active_path(&self) -> PathBuf {
        self.dir().join(ACTIVE)
    }

    /// Appends one record and fsyncs it. Blocking: call from `spawn_blocking`.
    pub fn append(&self, origin: &Origin, body: &[u8]) -> io::Result<()> {
        self.owned()?;
        let record = encode(origin, body)?;
        let path = self.active_path();
        let mut active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..APPEND_ATTEMPTS {
            if let Some(open) = active.as_ref()
                && !open.is_at(&path)?
            {
                tracing::warn!(path = %path.display(), "spool: the active file was moved or removed by something else; starting a fresh one");
                *active = None;
            }
            let open = match active.as_mut() {
                Some(open) => open,
                None => active.insert(ActiveFile::open(&path)?),
            };
            if let Err(e) = open
                .file
                .write_all(&record)
                .and_then(|()| open.file.sync_data())
            {
                // Reopening cuts whatever part of the record was written.
                *active = None;
                return Err(e);
            }
            if open.is_at(&path)? {
                return Ok(());
            }
            // Moved while we wrote: the copy may be lost with that file, write it again (a
            // duplicate record is harmless, replay deduplicates).
            tracing::warn!(path = %path.display(), "spool: the active file was moved during an append; writing the record again");
            *active = None;
        }
        Err(io::Error::other(format!(
            "the active spool file {} keeps being moved or removed while appending; no other \
             process may touch the spool directory",
            path.display()
        )))
    }

    /// Renames the active file aside for replay and lists every file awaiting replay (including
    /// ones an interrupted replay left behind), oldest first.
    pub fn claim_for_replay(&self) -> io::Result<Vec<PathBuf>> {
        self.owned()?;
        {
            let mut active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
            let path = self.active_path();
            if path.exists() {
                *active = None;
                fs::rename(&path, self.claimed_name(""))?;
                sync_dir(self.dir())?;
            }
        }
        let mut claimed: Vec<PathBuf> = fs::read_dir(self.dir())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(CLAIMED_SUFFIX))
            .collect();
        claimed.sort();
        Ok(claimed)
    }

    fn claimed_name(&self, tag: &str) -> PathBuf {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.dir().join(format!("{stamp:032}{tag}{CLAIMED_SUFFIX}"))
    }

    /// Writes records that could not be settled this pass to a new file the next replay picks up.
    /// Only once it is durable may the file they came from be finished.
    pub fn retain(&self, records: &[SpoolRecord]) -> io::Result<PathBuf> {
        self.owned()?;
        let path = self.claimed_name("-retained");
        let mut file = create_private_file(&path)?;
        for r in records {
            file.write_all(&encode(&r.origin, &r.body)?)?;
        }
        file.sync_all()?;
        sync_dir(self.dir())?;
        Ok(path)
    }

    /// A replayed file whose every record is now in the store (or retained).
    pub fn finish(&self, path: &Path) -> io::Result<()> {
        self.owned()?;
        fs::remove_file(path)?;
        sync_dir(self.dir())
    }

    /// Bytes waiting to be replayed (active plus claimed files).
    pub fn pending_bytes(&self) -> u64 {
        fs::read_dir(self.dir())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name == ACTIVE || name.ends_with(CLAIMED_SUFFIX)
                    })
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl ActiveFile {
    /// Opens the active file for appending, first cutting off a torn tail a crash left behind
    /// so new records never follow garbage.
    fn open(path: &Path) -> io::Result<Self> {
        match RecordReader::open(path) {
            Ok(mut reader) => {
                while reader.next_record()?.is_some() {}
                let (valid_end, len) = (reader.valid_end(), fs::metadata(path)?.len());
                if valid_end < len {
                    tracing::warn!(path = %path.display(), torn_bytes = len - valid_end, "spool: cutting a torn tail");
                    OpenOptions::new()
                        .write(true)
                        .open(path)?
                        .set_len(valid_end)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let meta = file.metadata()?;
        if meta.mode() & 0o077 != 0 {
            // A file an older version created with the default mode.
            file.set_permissions(Permissions::from_mode(0o600))?;
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(Self {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Whether `path` still names this open file (not renamed away, not removed).
    fn is_at(&self, path: &Path) -> io::Result<bool> {
        match fs::metadata(path) {
            Ok(m) => Ok(m.dev() == self.dev && m.ino() == self.ino),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = fs::metadata(dir)?.mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "spool: the directory is open to other users; spooled payloads are messages, make it 0700"
        );
    }
    Ok(())
}

fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
