//! Doctor's checks of this machine: the configuration, the data directory and its secrets, the
//! store, the spool. None creates what it checks; a directory that does not exist yet is
//! judged by whether it could be created.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;

use super::{Check, Subject};
use crate::config::Config;
use crate::domain::GroupPolicy;
use crate::http::serve::ServeSettings;
use crate::ingest::Spool;
use crate::ingest::spool::ownership;
use crate::secrets_file::{self, SecretName};
use crate::store::{Store, StoreOptions};
use crate::worker::sender::Sender;
use crate::worker::{Responders, WorkerSettings};

/// How long the store may take to answer before it counts as unreachable.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `serve` validates at start, without starting.
pub(super) fn configuration(config: &Config) -> Check {
    let validated = (|| -> anyhow::Result<()> {
        config.gateway_sessions()?;
        Responders::from_config(config)?;
        WorkerSettings::from_config(config)?;
        Sender::from_config(config)?;
        ServeSettings::from_config(config)?;
        Ok(())
    })();
    match validated {
        Ok(()) => Check::pass(
            Subject::Configuration,
            format!(
                "valid: {} business number(s), {} gateway session(s), store {}, listen {}",
                config.numbers.len(),
                config.gateway_sessions().map_or(0, |g| g.len()),
                config.database_url,
                config.listen
            ),
        ),
        Err(e) => Check::fail(
            Subject::Configuration,
            format!("{e:#}"),
            "correct the setting named above in replyd.toml (or --config) or its REPLYD_* variable",
        ),
    }
}

pub(super) fn data_directory(config: &Config) -> Check {
    let dir = &config.data_dir;
    match writable_or_creatable(dir) {
        Ok(state) => Check::pass(Subject::DataDirectory, state.describe(dir)),
        Err(why) => Check::fail(
            Subject::DataDirectory,
            why,
            format!(
                "make {} a directory the user running replyd can write (mkdir -p, chown), or \
                 point REPLYD_DATA_DIR elsewhere",
                dir.display()
            ),
        ),
    }
}

/// The secrets file, then each secret as `serve` would resolve it (without generating).
pub(super) fn secrets(config: &Config) -> Vec<Check> {
    let configured = |name: SecretName| !secret_of(config, name).is_empty();
    let path = secrets_file::path_in(&config.data_dir);
    let (file_check, stored) = if SecretName::ALL.into_iter().all(configured) {
        let check = Check::pass(Subject::SecretsFile, "not used: every secret is configured");
        (check, None)
    } else {
        match secrets_file::read(&config.data_dir) {
            Ok(Some(stored)) => {
                let detail = format!("{} (private, complete)", path.display());
                (Check::pass(Subject::SecretsFile, detail), Some(stored))
            }
            Ok(None) => {
                let detail = format!(
                    "{} not generated yet: `replyd serve` creates it at its first start",
                    path.display()
                );
                (Check::pass(Subject::SecretsFile, detail), None)
            }
            Err(e) => return vec![Check::fail(Subject::SecretsFile, e.problem(), e.fix())],
        }
    };
    let mut checks = vec![file_check];
    for name in SecretName::ALL {
        let subject = match name {
            SecretName::AppSecret => Subject::AppSecret,
            SecretName::VerifyToken => Subject::VerifyToken,
            SecretName::AdminToken => Subject::AdminToken,
        };
        let check = if configured(name) {
            Check::pass(subject, format!("configured ({})", name.env()))
        } else if stored.is_none() {
            Check::warn(
                subject,
                "unset",
                format!(
                    "`replyd serve` generates it into {} at its first start, or set {}",
                    path.display(),
                    name.env()
                ),
            )
        } else if name == SecretName::AppSecret {
            Check::warn(
                subject,
                "generated locally (secrets.toml): it signs `replyd simulate` traffic, but Meta \
                 signs its webhooks with your app's secret",
                "to receive Meta's webhooks, set REPLYD_APP_SECRET to your Meta app's secret \
                 (App settings → Basic)",
            )
        } else {
            Check::pass(subject, "from secrets.toml")
        };
        checks.push(check);
    }
    checks
}

fn secret_of(config: &Config, name: SecretName) -> &str {
    match name {
        SecretName::AppSecret => config.app_secret.expose(),
        SecretName::VerifyToken => config.verify_token.expose(),
        SecretName::AdminToken => config.admin_token.expose(),
    }
}

/// Reachable, migrated, writable. A SQLite file that does not exist is reported, not created.
pub(super) async fn store(config: &Config) -> Check {
    let url = &config.database_url;
    let unreachable = |why: String| {
        Check::fail(
            Subject::Store,
            format!("cannot reach {url}: {why}"),
            "point REPLYD_DATABASE_URL (or REPLYD_DATA_DIR) at a database replyd can open, and \
             make sure it is running",
        )
    };
    if url.expose().starts_with("sqlite:") {
        let file = match SqliteConnectOptions::from_str(url.expose()) {
            Ok(options) => options.get_filename().to_owned(),
            Err(e) => return unreachable(e.to_string()),
        };
        if file != Path::new(":memory:") {
            match fs::metadata(&file) {
                Ok(meta) if meta.is_file() => {}
                Ok(_) => return unreachable(format!("{} is not a file", file.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Check::fail(
                        Subject::Store,
                        format!("no database at {} yet", file.display()),
                        "run `replyd migrate` (or `replyd serve`, which migrates at start)",
                    );
                }
                Err(e) => return unreachable(e.to_string()),
            }
        }
    }
    let options = StoreOptions {
        busy_timeout: config.store_busy_timeout,
        human_reply_takeover: config.human_reply_takeover,
        group_policy: GroupPolicy::default(),
        session_probe_interval: config.halt_probe_interval,
    };
    let checked = tokio::time::timeout(STORE_TIMEOUT, async {
        let store = Store::connect(url, &options).await.map_err(|e| (true, e))?;
        let pending = store.pending_migrations().await.map_err(|e| (true, e))?;
        if !pending.is_empty() {
            return Ok(Some(pending));
        }
        store.probe_writes().await.map_err(|e| (false, e))?;
        Ok(None)
    })
    .await;
    match checked {
        Err(_) => unreachable(format!("no answer within {}s", STORE_TIMEOUT.as_secs())),
        Ok(Err((true, e))) => unreachable(e.to_string()),
        Ok(Err((false, e))) => Check::fail(
            Subject::Store,
            format!("{url} answers but a write failed: {e}"),
            "free disk space, make the database file and its directory writable by the user \
             running replyd, or stop the process holding it locked",
        ),
        Ok(Ok(Some(pending))) => Check::fail(
            Subject::Store,
            format!(
                "{url}: {} migration(s) not applied (versions {pending:?})",
                pending.len()
            ),
            "run `replyd migrate` (or `replyd serve`, which migrates at start)",
        ),
        Ok(Ok(None)) => Check::pass(
            Subject::Store,
            format!("{url}: reachable, migrated, writable"),
        ),
    }
}

pub(super) fn spool(config: &Config) -> Check {
    let dir = &config.spool_dir;
    let state = match writable_or_creatable(dir) {
        Ok(state) => state,
        Err(why) => {
            return Check::fail(
                Subject::Spool,
                why,
                format!(
                    "make {} a directory the user running replyd can write, or set \
                     REPLYD_SPOOL_DIR elsewhere",
                    dir.display()
                ),
            );
        }
    };
    let mut detail = state.describe(dir);
    if let DirState::Writable = state {
        let backlog = Spool::unowned(dir).pending_bytes();
        match ownership::current_owner(dir) {
            Ok(Some(holder)) => detail.push_str(&format!("; owned by a running replyd ({holder})")),
            Ok(None) => detail.push_str("; no running server owns it"),
            Err(e) => detail.push_str(&format!("; its owner is unknown ({e})")),
        }
        if backlog > 0 {
            detail.push_str(&format!("; {backlog} byte(s) waiting to be replayed"));
        }
    }
    Check::pass(Subject::Spool, detail)
}

/// How a directory replyd needs stands.
enum DirState {
    Writable,
    /// Does not exist; `under`, its nearest existing ancestor, is a writable directory.
    Creatable {
        under: PathBuf,
    },
}

impl DirState {
    fn describe(&self, dir: &Path) -> String {
        match self {
            Self::Writable => format!("{} (writable)", dir.display()),
            Self::Creatable { under } => format!(
                "{} does not exist yet; it can be created (under {}, writable)",
                dir.display(),
                under.display()
            ),
        }
    }
}

/// Writable if it exists, creatable if not: proven by writing a probe file, not by reading
/// permission bits (which do not stop root, and ignore read-only mounts).
fn writable_or_creatable(dir: &Path) -> Result<DirState, String> {
    let probe =
        |at: &Path| probe_write(at).map_err(|e| format!("{} is not writable: {e}", at.display()));
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => probe(dir).map(|()| DirState::Writable),
        Ok(_) => Err(format!("{} is not a directory", dir.display())),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
            let under = absolute
                .ancestors()
                .skip(1)
                .find(|a| a.exists())
                .unwrap_or(Path::new("/"))
                .to_owned();
            if !under.is_dir() {
                return Err(format!(
                    "{} cannot be created: {} is not a directory",
                    dir.display(),
                    under.display()
                ));
            }
            probe(&under).map(|()| DirState::Creatable { under })
        }
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

fn probe_write(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!(".replyd-doctor-{}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(b"probe").and_then(|()| f.sync_all()));
    let removed = fs::remove_file(&path);
    written?;
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_judged_by_writing_not_by_permission_bits() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            writable_or_creatable(tmp.path()),
            Ok(DirState::Writable)
        ));
        let later = tmp.path().join("a/b");
        match writable_or_creatable(&later) {
            Ok(DirState::Creatable { under }) => assert_eq!(under, tmp.path()),
            _ => panic!("a missing directory under a writable one can be created"),
        }
        assert!(!later.exists(), "nothing was created");
        // Even root cannot create a directory under a regular file.
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        let err = writable_or_creatable(&file.join("data")).err().unwrap();
        assert!(err.contains("is not a directory"), "{err}");
        let err = writable_or_creatable(&file).err().unwrap();
        assert!(err.contains("is not a directory"), "{err}");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no probe left"
        );
    }
}
