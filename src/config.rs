//! Typed settings: built-in defaults ← `replyd.toml` (optional) ← `REPLYD_*` environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

pub const DEFAULT_CONFIG_FILE: &str = "replyd.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// `sqlite://path` (embedded default).
    pub database_url: String,
    pub redis_url: Option<String>,
    /// Meta app secret: the key of `X-Hub-Signature-256`. Unset = every POST /webhook is refused.
    pub app_secret: Secret,
    /// Token Meta echoes in the GET verification handshake.
    pub verify_token: Secret,
    /// Cloud API access token. Unset = sandbox: replies are recorded, not sent.
    pub access_token: Secret,
    /// Graph API base including the version; sends go to `{base}/{phone_number_id}/messages`.
    pub graph_base_url: String,
    /// Bearer token of the admin API and console. Unset = admin API refuses every call.
    pub admin_token: Secret,
    /// Shared secret of the WASender-style gateway (`X-Webhook-Signature`). Unset = endpoint off.
    pub wasender_secret: Secret,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_grace: Duration,
    /// Largest webhook body accepted (Meta sends up to 3 MB); larger ones get 413.
    pub max_body_bytes: usize,
    /// Where authentic payloads go when the store cannot take them.
    pub spool_dir: PathBuf,
    /// How often the spool is replayed into the store when it holds anything.
    #[serde(with = "humantime_serde")]
    pub spool_replay_interval: Duration,
    /// How long a write waits on a locked database before giving up (then the payload is spooled).
    #[serde(with = "humantime_serde")]
    pub store_busy_timeout: Duration,
    /// How long a webhook waits for its commit before its payload is spooled instead.
    #[serde(with = "humantime_serde")]
    pub ingest_timeout: Duration,
    /// Most webhook deliveries written in one group-commit transaction.
    pub group_commit_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://./replyd-data/replyd.db".into(),
            redis_url: None,
            app_secret: Secret::default(),
            verify_token: Secret::default(),
            access_token: Secret::default(),
            graph_base_url: "https://graph.facebook.com/v25.0".into(),
            admin_token: Secret::default(),
            wasender_secret: Secret::default(),
            sweep_interval: Duration::from_secs(5 * 60),
            sweep_grace: Duration::from_secs(2 * 60),
            max_body_bytes: 4 * 1024 * 1024,
            spool_dir: PathBuf::from("./replyd-data/spool"),
            spool_replay_interval: Duration::from_secs(10),
            store_busy_timeout: Duration::from_secs(2),
            ingest_timeout: Duration::from_secs(3),
            group_commit_max: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Defaults, then `path` (or `./replyd.toml` when present), then `REPLYD_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        // Environment values are taken as the raw strings they are (a token like `0123` or
        // `[x]` must not be parsed as a number or a list); `extract_lossy` turns them into
        // numbers or booleans only where a field asks for one.
        figment
            .merge(Serialized::defaults(env_overrides()))
            .extract_lossy()
            .map_err(|e| ConfigError(Box::new(e)))
    }

    /// No access token: replies are recorded and shown, never sent.
    pub fn sandbox(&self) -> bool {
        self.access_token.expose().is_empty()
    }
}

/// `REPLYD_FOO_BAR=x` → `foo_bar = "x"`. `REPLYD_CONFIG` names the file, it is not a key.
fn env_overrides() -> BTreeMap<String, String> {
    std::env::vars()
        .filter_map(|(key, value)| {
            let key = key.strip_prefix("REPLYD_")?.to_ascii_lowercase();
            (key != "config").then_some((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn defaults_file_and_env_layer_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "listen = \"127.0.0.1:9000\"\nsweep_interval = \"90s\"\napp_secret = \"from-file\"",
            )?;
            jail.set_env("REPLYD_APP_SECRET", "0123");
            jail.set_env("REPLYD_MAX_BODY_BYTES", "1000");
            jail.set_env("REPLYD_SWEEP_GRACE", "1h");
            let c = Config::load(Some(Path::new("custom.toml"))).expect("loads");
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.sweep_interval, Duration::from_secs(90));
            assert_eq!(c.sweep_grace, Duration::from_secs(3600));
            assert_eq!(c.app_secret.expose(), "0123", "secrets stay strings");
            assert_eq!(c.max_body_bytes, 1000);
            assert!(c.sandbox());
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn unknown_keys_and_bad_durations_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "sweep_interval = \"soon\"")?;
            assert!(Config::load(Some(Path::new("bad.toml"))).is_err());
            jail.create_file("typo.toml", "lisen = \"x\"")?;
            assert!(Config::load(Some(Path::new("typo.toml"))).is_err());
            Ok(())
        });
    }
}
