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
