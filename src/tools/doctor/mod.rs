//! `replyd doctor`: checks what `serve` needs before it is needed — the configuration, the data
//! directory and its secrets, the store, the spool, each business number's token, each WASender
//! session, and the broker with its persistence — and returns a typed [`Report`].
//!
//! Invariants:
//! - Doctor changes nothing an operator would notice: it creates no directory, database or
//!   secrets file, and never migrates. It writes only what it must to prove a place writable
//!   (a probe file it removes; the store's one small readiness write) and reads the rest.
//! - Every [`Status::Fail`] carries the fix; warnings (`!`) are conditions that work but may
//!   surprise (the sandbox, a locally generated app secret, Redis without AOF) and do not fail
//!   the run.
//! - A check never prints a secret's value.

mod local;
mod redis;
mod remote;

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::config::Config;

/// What a check looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Configuration,
    DataDirectory,
    SecretsFile,
    AppSecret,
    VerifyToken,
    AdminToken,
    Store,
    Spool,
    /// The Cloud API as a whole (the sandbox, or the default token).
    CloudApi,
    /// One business number and its token.
    CloudNumber(String),
    /// One WASender gateway session.
    Gateway(String),
    Broker,
    BrokerPersistence,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configuration => f.write_str("configuration"),
            Self::DataDirectory => f.write_str("data directory"),
            Self::SecretsFile => f.write_str("secrets file"),
            Self::AppSecret => f.write_str("app secret"),
            Self::VerifyToken => f.write_str("verify token"),
            Self::AdminToken => f.write_str("admin token"),
            Self::Store => f.write_str("store"),
            Self::Spool => f.write_str("spool"),
            Self::CloudApi => f.write_str("cloud api"),
            Self::CloudNumber(id) => write!(f, "number {id}"),
            Self::Gateway(session) => write!(f, "gateway {session}"),
            Self::Broker => f.write_str("redis"),
            Self::BrokerPersistence => f.write_str("redis persistence"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Works, but may not be what is wanted; does not fail the run.
    Warn,
    Fail,
}

impl Status {
    fn mark(self) -> &'static str {
        match self {
            Self::Pass => "✓",
            Self::Warn => "!",
            Self::Fail => "✗",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub subject: Subject,
    pub status: Status,
    pub detail: String,
    /// What to do about it; always set on a failure.
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn pass(subject: Subject, detail: impl Into<String>) -> Self {
        Self {
            subject,
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub(crate) fn warn(
        subject: Subject,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            subject,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub(crate) fn fail(
        subject: Subject,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            subject,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed (warnings allowed).
    pub fn ok(&self) -> bool {
        self.failures() == 0
    }

    pub fn failures(&self) -> usize {
        self.count(Status::Fail)
    }

    fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The check of `subject`, if it ran.
    pub fn get(&self, subject: &Subject) -> Option<&Check> {
        self.checks.iter().find(|c| &c.subject == subject)
    }

    /// The checklist as printed: one line per check, its fix under it.
    pub fn render(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.subject.to_string().chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{} {:<width$}  {}\n",
                c.status.mark(),
                c.subject.to_string(),
                c.detail
            ));
            if let (Some(fix), false) = (&c.fix, c.status == Status::Pass) {
                out.push_str(&format!("  {:<width$}  fix: {fix}\n", ""));
            }
        }
        out.push_str(&format!(
            "{} passed, {} warning(s), {} failed\n",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.failures()
        ));
        out
    }
}

/// Loads the configuration as `serve` would (`path`, `./replyd.toml`, `REPLYD_*`), then runs
/// every check. A configuration that does not load is the one failed check.
pub async fn run_from(path: Option<&Path>) -> Report {
    match Config::load(path) {
        Ok(config) => run(&config).await,
        Err(e) => Report {
            checks: vec![Check::fail(
                Subject::Configuration,
                e.to_string(),
                "correct the setting named above in replyd.toml (or --config) or its REPLYD_* \
                 variable",
            )],
        },
    }
}

/// Every check against `config`.
pub async fn run(config: &Config) -> Report {
    let mut checks = vec![local::configuration(config)];
    checks.push(local::data_directory(config));
    checks.extend(local::secrets(config));
    checks.push(local::store(config).await);
    checks.push(local::spool(config));
    checks.extend(remote::cloud_api(config).await);
    checks.extend(remote::gateways(config).await);
    if let Some(url) = config.redis_url.as_deref().filter(|u| !u.is_empty()) {
        checks.extend(redis::broker(url).await);
    }
    Report { checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_fail_the_report_and_show_their_fix() {
        let mut report = Report {
            checks: vec![
                Check::pass(Subject::Store, "reachable"),
                Check::warn(Subject::CloudApi, "sandbox", "set a token"),
            ],
        };
        assert!(report.ok());
        report.checks.push(Check::fail(
            Subject::CloudNumber("111".into()),
            "token refused",
            "set a new token",
        ));
        assert!(!report.ok());
        let shown = report.render();
        assert!(shown.contains("✓ store"));
        assert!(shown.contains("! cloud api"));
        assert!(shown.contains("✗ number 111"));
        assert!(shown.contains("fix: set a new token"));
        assert!(shown.ends_with("1 passed, 1 warning(s), 1 failed\n"));
    }
}
