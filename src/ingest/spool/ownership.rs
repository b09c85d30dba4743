//! One process owns a spool directory: an exclusive `flock` on `spool.lock` inside it, taken
//! when the spool is opened and held until the last handle is dropped (the kernel releases it
//! when the process dies, so a crash never leaves a stale lock).
//!
//! Why: appending and replaying both rename and delete files in the directory. Two processes
//! doing so at once lose records (one appends to a file the other has just claimed and deleted),
//! so a second process refuses to start rather than share. Each process on a host uses its own
//! `REPLYD_SPOOL_DIR`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

pub const LOCK_FILE: &str = "spool.lock";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the spool directory {} is owned by another running replyd process ({holder}); every \
         process on a host needs its own spool directory: give this one its own REPLYD_SPOOL_DIR, \
         or stop the other process first",
        dir.display()
    )]
    Owned { dir: PathBuf, holder: String },
    #[error("cannot open the spool directory {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub(super) struct Ownership {
    _lock: File,
}

impl Ownership {
    pub(super) fn take(dir: &Path) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            dir: dir.to_owned(),
            source,
        };
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                return Err(SpoolError::Owned {
                    dir: dir.to_owned(),
                    holder: holder(&mut lock),
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        // Who holds it, for the message a refused process prints.
        lock.set_len(0).map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _lock: lock })
    }
}

/// Who owns `dir` now: `Some("pid N")` while a process holds its lock, `None` when nobody does
/// (or it was never opened). Holds a shared lock for an instant to find out, so a process
/// starting at that very instant would be refused once; `replyd doctor` is its only user.
pub fn current_owner(dir: &Path) -> io::Result<Option<String>> {
    let mut lock = match File::open(dir.join(LOCK_FILE)) {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match flock(&lock, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(None),
        Err(Errno::WOULDBLOCK) => Ok(Some(holder(&mut lock))),
        Err(e) => Err(e.into()),
    }
}

fn holder(lock: &mut File) -> String {
    let mut text = String::new();
    match lock
        .read_to_string(&mut text)
        .map(|_| text.trim().parse::<u32>())
    {
        Ok(Ok(pid)) => format!("pid {pid}"),
        _ => "pid unknown".to_owned(),
    }
}
