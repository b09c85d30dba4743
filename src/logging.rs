//! Log output: human-readable lines (`pretty`, the default) or one JSON object per line
//! (`json`, for log shippers), on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! A log line that cannot be written (a full disk, a closed pipe) is dropped, never a panic.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl LogFormat {
    /// The configured format (`log_format` in the file, `REPLYD_LOG_FORMAT`). When the
    /// configuration does not load, `pretty`: the command that loads it reports why.
    pub fn configured(config_file: Option<&Path>) -> Self {
        Config::load(config_file).map_or(Self::Pretty, |c| c.log_format)
    }
}

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // On a failed write the default reports the failure with `eprintln!`, which panics when
        // stderr itself cannot be written: the log line is lost, never the task that logged it.
        .log_internal_errors(false);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn log_format_and_retention_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            let c = Config::load(None).expect("loads");
            assert_eq!(c.log_format, LogFormat::Pretty);
            assert_eq!(c.retention, Duration::from_secs(30 * 24 * 3600));
            assert_eq!(c.prune_interval, Duration::from_secs(3600));
            jail.set_env("REPLYD_LOG_FORMAT", "json");
            jail.set_env("REPLYD_RETENTION", "24h");
            jail.set_env("REPLYD_PRUNE_INTERVAL", "15m");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.log_format, LogFormat::Json);
            assert_eq!(c.retention, Duration::from_secs(24 * 3600));
            assert_eq!(c.prune_interval, Duration::from_secs(15 * 60));
            assert_eq!(LogFormat::configured(None), LogFormat::Json);
            jail.set_env("REPLYD_LOG_FORMAT", "yaml");
            assert!(Config::load(None).is_err(), "an unknown format is refused");
            jail.set_env("REPLYD_LOG_FORMAT", "pretty");
            jail.set_env("REPLYD_RETENTION", "0s");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("retention must be longer than 0"), "{e}");
            Ok(())
        });
    }
}
