//! Opening the SQLite pools, and keeping the single writer connection usable.
//!
//! A connection whose transaction ended badly is never reused. On some errors (`SQLITE_FULL`,
//! `SQLITE_IOERR`…) SQLite rolls the transaction back by itself; sqlx still counts it open, the
//! `ROLLBACK` of the dropped transaction then fails, and every later `BEGIN` on that connection is
//! refused ("attempted to call begin_with at non-zero transaction depth"). With one writer
//! connection that would wedge every write until a restart. So a connection that goes back to its
//! pool still inside a transaction is closed there, whoever used it, and the next acquire opens a
//! fresh one.
//!
//! The database file is created `0600` (SQLite gives its `-wal` and `-shm` files the database
//! file's mode) in a `0700` directory when replyd creates the directory.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::store::{StoreError, StoreOptions};

/// A cap on the database's size in pages (`PRAGMA max_page_count`), applied to every writer
/// connection, the ones opened later included: a write that needs a page past it fails with
/// `SQLITE_FULL`, exactly as on a full disk. `0` is no cap.
#[derive(Debug, Default)]
pub(super) struct PageLimit(AtomicU32);

impl PageLimit {
    fn get(&self) -> Option<u32> {
        Some(self.0.load(Ordering::SeqCst)).filter(|&n| n > 0)
    }
}

/// SQLite's own ceiling, what `max_page_count` is when nobody capped it.
const NO_PAGE_LIMIT: u32 = 0xFFFF_FFFE;

pub(super) struct Pools {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    pub page_limit: Arc<PageLimit>,
}

pub(super) async fn open(url: &str, options: &StoreOptions) -> Result<Pools, StoreError> {
    let connect = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true)
        // Statement journals of multi-row statements stay in memory, off the disk.
        .pragma("temp_store", "memory");
    let file = connect.get_filename();
    if file != Path::new(":memory:") && !file.as_os_str().is_empty() {
        create_private(file)?;
    }
    let acquire_timeout = options.busy_timeout.max(std::time::Duration::from_secs(1));
    let page_limit = Arc::new(PageLimit::default());
    let limit = page_limit.clone();
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _| {
            let limit = limit.get();
            Box::pin(async move {
                if let Some(pages) = limit {
                    set_max_page_count(conn, pages).await?;
                }
                Ok(())
            })
        })
        .after_release(|conn, _| Box::pin(reusable(conn)))
        .connect_with(connect.clone().pragma("cache_size", "-32768"))
        .await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(acquire_timeout)
        .after_release(|conn, _| Box::pin(reusable(conn)))
        .connect_with(connect)
        .await?;
    Ok(Pools {
        writer,
        reader,
        page_limit,
    })
}

/// Whether a connection coming back to its pool may be handed out again. The ping goes through
/// the connection's worker after whatever the last user queued (the rollback of a dropped
/// transaction), so the depth read after it is the settled one.
async fn reusable(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!(
            "a database connection was left inside a failed transaction; closing it, the next write opens a fresh one"
        );
        return Ok(false);
    }
    Ok(true)
}

async fn set_max_page_count(conn: &mut SqliteConnection, pages: u32) -> Result<(), sqlx::Error> {
    // A pragma takes no bound parameters; `pages` is an integer.
    sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Caps (or with `None` uncaps) the database size on the writer connection now and on every
/// one opened later. A cap below the current size holds the database at its current size.
pub(super) async fn limit_pages(
    writer: &SqlitePool,
    limit: &PageLimit,
    pages: Option<u32>,
) -> Result<(), StoreError> {
    limit.0.store(pages.unwrap_or(0), Ordering::SeqCst);
    let mut conn = writer.acquire().await?;
    set_max_page_count(&mut conn, pages.unwrap_or(NO_PAGE_LIMIT)).await?;
    Ok(())
}

/// Creates the database's directory (`0700`) and file (`0600`) when they do not exist yet; an
/// existing file keeps its mode, with a warning when others may read it.
fn create_private(file: &Path) -> io::Result<()> {
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(file)?.mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %file.display(),
                    mode = format!("{mode:o}"),
                    "the database file is readable by others; `chmod 600` it (and its -wal, -shm)"
                );
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
