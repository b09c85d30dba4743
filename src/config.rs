//! Typed settings: built-in defaults ← `replyd.toml` (optional) ← `REPLYD_*` environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::AmbiguousResolution;
use crate::domain::keywords::Keywords;
use crate::secret::{DatabaseUrl, Secret};
use crate::worker::responder::ResponderConfig;

mod gateways;

pub use gateways::{GatewayConfig, GatewayKind, WASENDER_BASE_URL};

pub const DEFAULT_CONFIG_FILE: &str = "replyd.toml";
pub const DEFAULT_DATA_DIR: &str = "./replyd-data";

/// The embedded store inside a data directory, when `database_url` is not set.
pub fn default_database_url(data_dir: &Path) -> DatabaseUrl {
    DatabaseUrl::from(format!("sqlite://{}", data_dir.join("replyd.db").display()))
}

/// The spool inside a data directory, when `spool_dir` is not set.
pub fn default_spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where replyd keeps its state: the database and the spool unless they are set
    /// explicitly, and the generated `secrets.toml` (see `crate::secrets_file`).
    pub data_dir: PathBuf,
    /// `sqlite://path` (embedded default). Shown with its password hidden.
    pub database_url: DatabaseUrl,
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
    /// One WASender gateway without a file (`REPLYD_WASENDER_SECRET`, `…_SESSION_ID`,
    /// `…_API_KEY`): its webhook secret (`X-Webhook-Signature`). Unset, with no `[[gateways]]`:
    /// the endpoint is off (404).
    pub wasender_secret: Secret,
    /// The session id of that gateway: its events are attributed to it, its replies go out
    /// through it. Required with `wasender_secret`.
    pub wasender_session_id: Option<String>,
    /// The session's API key for sends. Unset: that gateway's replies are recorded, not sent.
    pub wasender_api_key: Secret,
    /// Base URL of that gateway's API (sends go to `{base}/api/send-message`).
    pub wasender_base_url: String,
    /// Mark each inbound message read, with the typing indicator, before asking the responder
    /// (Cloud API; per number `read_receipts` in `[[numbers]]` overrides it).
    pub read_receipts: bool,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_grace: Duration,
    /// Largest webhook body accepted (Meta sends up to 3 MB); larger ones get 413.
    pub max_body_bytes: usize,
    /// A connection must deliver a request's headers within this long (also how long an idle
    /// keep-alive connection stays open); then it is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request's body must be received completely within this long of its headers (408).
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Open connections at most; beyond it new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Requests handled at once at most; beyond it 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// On shutdown: stop accepting, let in-flight requests finish for up to this long, then
    /// close the connections still open.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
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
    /// Run the reply workers in this process (`false` for an ingest-only process).
    pub worker_enabled: bool,
    /// Reply jobs processed at once (different conversations; one conversation is always in order).
    pub worker_concurrency: usize,
    /// How long a leased job is a worker's before it returns to the queue (a killed worker's jobs come back).
    #[serde(with = "humantime_serde")]
    pub job_lease: Duration,
    /// Attempts per reply, the first included, before the message is dead-lettered.
    pub max_attempts: u32,
    /// Attempts for failures the API itself cannot explain (codes 1 and 131000): fewer, then the DLQ.
    pub max_attempts_unexplained: u32,
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Sends per second per business number (Meta's default throughput is 80/s).
    pub send_rate_per_second: u32,
    /// Per recipient: at most `pair_burst` replies at once, then one per `pair_interval`
    /// (Meta's pair rate limit is about one message per 6 s to the same user).
    #[serde(with = "humantime_serde")]
    pub pair_interval: Duration,
    pub pair_burst: u32,
    /// Cloud API request timeout; a send that times out is ambiguous, never blindly resent.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// How long an ambiguous send (timed out, or cut off between claim and send) waits for a
    /// status webhook before the evidence decides it (`ambiguous_resolution`).
    #[serde(with = "humantime_serde")]
    pub ambiguous_quiet_period: Duration,
    /// `evidence`: an ambiguous send no status confirmed, while later sends of the same number
    /// were confirmed, did not go out and is sent once more; with no status traffic at all it is
    /// the dead letter `ambiguous_send`. `operator`: always that dead letter.
    pub ambiguous_resolution: AmbiguousResolution,
    /// How often a number paused by a halt-class error is probed.
    #[serde(with = "humantime_serde")]
    pub halt_probe_interval: Duration,
    /// Messages that opt out, opt in or escalate by themselves (`[keywords]`).
    pub keywords: Keywords,
    /// A status webhook for an outbound message replyd did not send (a human answering from
    /// another tool) puts the conversation in operator mode.
    pub human_reply_takeover: bool,
    /// A conversation taken over by an operator goes back to the bot after this long without
    /// operator activity (takeover, or a human reply from another tool).
    #[serde(with = "humantime_serde")]
    pub operator_idle_release: Duration,
    /// The responder of numbers not listed in `numbers`.
    pub responder: ResponderConfig,
    /// Business numbers with their own token, responder or rate.
    pub numbers: Vec<NumberConfig>,
    /// WASender gateway sessions (`[[gateways]]`), each with its secret, API key and responder.
    pub gateways: Vec<GatewayConfig>,
    /// How long message bodies, raw payloads, statuses, sweep history and settled dead letters
    /// are kept (`30d`, `24h`). Message ids and outcomes stay (dedup: at least 7 days).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often `serve` prunes what is past `retention`.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// `pretty` (human-readable lines) or `json` (one JSON object per line).
    pub log_format: crate::logging::LogFormat,
}

/// Settings of one business number (`[[numbers]]` in replyd.toml).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NumberConfig {
    pub phone_number_id: String,
    #[serde(default)]
    pub access_token: Option<Secret>,
    #[serde(default)]
    pub responder: Option<ResponderConfig>,
    #[serde(default)]
    pub send_rate_per_second: Option<u32>,
    /// Overrides the top-level `read_receipts` for this number.
    #[serde(default)]
    pub read_receipts: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            database_url: default_database_url(Path::new(DEFAULT_DATA_DIR)),
            redis_url: None,
            app_secret: Secret::default(),
            verify_token: Secret::default(),
            access_token: Secret::default(),
            graph_base_url: "https://graph.facebook.com/v25.0".into(),
            admin_token: Secret::default(),
            wasender_secret: Secret::default(),
            wasender_session_id: None,
            wasender_api_key: Secret::default(),
            wasender_base_url: WASENDER_BASE_URL.into(),
            read_receipts: true,
            sweep_interval: Duration::from_secs(5 * 60),
            sweep_grace: Duration::from_secs(2 * 60),
            max_body_bytes: 4 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_in_flight: 512,
            shutdown_deadline: Duration::from_secs(30),
            spool_dir: default_spool_dir(Path::new(DEFAULT_DATA_DIR)),
            spool_replay_interval: Duration::from_secs(10),
            store_busy_timeout: Duration::from_secs(2),
            ingest_timeout: Duration::from_secs(3),
            group_commit_max: 256,
            worker_enabled: true,
            worker_concurrency: 32,
            job_lease: Duration::from_secs(60),
            max_attempts: 7,
            max_attempts_unexplained: 4,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(5 * 60),
            send_rate_per_second: 80,
            pair_interval: Duration::from_secs(6),
            pair_burst: 10,
            send_timeout: Duration::from_secs(10),
            ambiguous_quiet_period: Duration::from_secs(60),
            ambiguous_resolution: AmbiguousResolution::Evidence,
            halt_probe_interval: Duration::from_secs(60),
            keywords: Keywords::default(),
            human_reply_takeover: true,
            operator_idle_release: Duration::from_secs(24 * 60 * 60),
            responder: ResponderConfig::default(),
            numbers: Vec::new(),
            gateways: Vec::new(),
            retention: Duration::from_secs(30 * 24 * 60 * 60),
            prune_interval: Duration::from_secs(60 * 60),
            log_format: crate::logging::LogFormat::Pretty,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then `path` (or `./replyd.toml` when present), then `REPLYD_*` variables.
    /// The database and the spool follow `data_dir` unless they are set themselves.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut given = Figment::new();
        match path {
            Some(path) => given = given.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                given = given.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        // Environment values are taken as the raw strings they are (a token like `0123` or
        // `[x]` must not be parsed as a number or a list); `extract_lossy` turns them into
        // numbers or booleans only where a field asks for one.
        let given = given.merge(Serialized::defaults(env_overrides()));
        let mut config: Self = Figment::from(Serialized::defaults(Config::default()))
            .merge(given.clone())
            .extract_lossy()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        if !given.contains("database_url") {
            config.database_url = default_database_url(&config.data_dir);
        }
        if !given.contains("spool_dir") {
            config.spool_dir = default_spool_dir(&config.data_dir);
        }
        config.gateway_sessions()?;
        crate::retention::RetentionSettings::from_config(&config)?;
        Ok(config)
    }

    /// Whether a Cloud API number marks messages read before answering.
    pub fn read_receipts_for(&self, phone_number_id: &str) -> bool {
        self.number(phone_number_id)
            .and_then(|n| n.read_receipts)
            .unwrap_or(self.read_receipts)
    }

    /// The settings of a business number (its own, or the defaults).
    pub fn number(&self, phone_number_id: &str) -> Option<&NumberConfig> {
        self.numbers
            .iter()
            .find(|n| n.phone_number_id == phone_number_id)
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
            jail.set_env("REPLYD_HEADER_READ_TIMEOUT", "250ms");
            jail.set_env("REPLYD_MAX_IN_FLIGHT", "7");
            let c = Config::load(Some(Path::new("custom.toml"))).expect("loads");
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.sweep_interval, Duration::from_secs(90));
            assert_eq!(c.sweep_grace, Duration::from_secs(3600));
            assert_eq!(c.app_secret.expose(), "0123", "secrets stay strings");
            assert_eq!(c.max_body_bytes, 1000);
            assert_eq!(c.header_read_timeout, Duration::from_millis(250));
            assert_eq!(c.max_in_flight, 7);
            assert_eq!(c.body_read_timeout, Duration::from_secs(30));
            assert_eq!(c.max_connections, 1024);
            assert_eq!(c.shutdown_deadline, Duration::from_secs(30));
            assert!(c.sandbox());
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn business_numbers_with_their_own_token_and_responder() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "numbers.toml",
                r#"
                [[numbers]]
                phone_number_id = "111"
                access_token = "tok-111"
                send_rate_per_second = 20
                responder = { kind = "http", url = "http://127.0.0.1:9/bot", secret = "s" }

                [[numbers]]
                phone_number_id = "222"
                "#,
            )?;
            let c = Config::load(Some(Path::new("numbers.toml"))).expect("loads");
            assert_eq!(c.numbers.len(), 2);
            let first = c.number("111").unwrap();
            assert_eq!(first.access_token.as_ref().unwrap().expose(), "tok-111");
            assert_eq!(first.send_rate_per_second, Some(20));
            assert!(matches!(
                first.responder,
                Some(ResponderConfig::Http { .. })
            ));
            assert!(!c.sandbox());
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn ambiguous_sends_are_settled_by_evidence_unless_told_otherwise() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None).expect("loads");
            assert_eq!(c.ambiguous_resolution, AmbiguousResolution::Evidence);
            assert_eq!(c.ambiguous_quiet_period, Duration::from_secs(60));
            jail.set_env("REPLYD_AMBIGUOUS_RESOLUTION", "operator");
            jail.set_env("REPLYD_AMBIGUOUS_QUIET_PERIOD", "90s");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.ambiguous_resolution, AmbiguousResolution::Operator);
            assert_eq!(c.ambiguous_quiet_period, Duration::from_secs(90));
            jail.set_env("REPLYD_AMBIGUOUS_RESOLUTION", "guess");
            assert!(Config::load(None).is_err(), "an unknown setting is refused");
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn the_database_and_the_spool_follow_the_data_dir_unless_set() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None).expect("loads");
            assert_eq!(c.data_dir, Path::new("./replyd-data"));
            assert_eq!(c.database_url.expose(), "sqlite://./replyd-data/replyd.db");
            assert_eq!(c.spool_dir, Path::new("./replyd-data/spool"));
            jail.set_env("REPLYD_DATA_DIR", "/var/lib/replyd");
            let c = Config::load(None).expect("loads");
            assert_eq!(
                c.database_url.expose(),
                "sqlite:///var/lib/replyd/replyd.db"
            );
            assert_eq!(c.spool_dir, Path::new("/var/lib/replyd/spool"));
            jail.create_file("own.toml", "spool_dir = \"/srv/spool\"")?;
            jail.set_env("REPLYD_DATABASE_URL", "sqlite:///srv/db/replyd.db");
            let c = Config::load(Some(Path::new("own.toml"))).expect("loads");
            assert_eq!(c.database_url.expose(), "sqlite:///srv/db/replyd.db");
            assert_eq!(c.spool_dir, Path::new("/srv/spool"));
            assert_eq!(c.data_dir, Path::new("/var/lib/replyd"));
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
