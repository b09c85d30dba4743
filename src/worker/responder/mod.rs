//! Responders decide what to do about one inbound message: reply with a text, stay silent, or
//! hand the conversation to a person. They never send anything themselves; the reply pipeline
//! records the decision as the message's outcome and does the sending.
//!
//! Two responders are built in, chosen per business number in `replyd.toml`: [`rules`] (a TOML
//! file of keyword and pattern rules; the default, with [`rules::DEFAULT_RULES`]) and [`http`]
//! (ask the business's own bot over signed HTTP). A business embedding replyd as a library can
//! implement [`Responder`] itself.
//!
//! Invariant: a [`Decision::Reply`] text is never blank and at most [`MAX_REPLY_CHARS`]
//! characters (the Cloud API's limit for a text body), whichever responder made it; the built-in
//! ones check it with [`check_reply_text`].

pub mod http;
pub mod rules;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::domain::inbound::InboundMessage;
use crate::secret::Secret;

pub use http::{HttpResponder, HttpSetupProblem, sign};
pub use rules::{RuleProblem, RulesResponder};

/// The Cloud API refuses text bodies longer than this many characters.
pub const MAX_REPLY_CHARS: usize = 4096;

/// What the responder saw. Serialized as-is for the HTTP responder: field names are a contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponderInput {
    pub message_id: String,
    pub phone_number_id: String,
    pub wa_id: String,
    /// The message `type`: "text", "image", "interactive", "reaction"…
    pub kind: String,
    /// The words a responder can act on: text body, caption, button or list title…
    pub text: Option<String>,
    /// Unix seconds as stated by the payload.
    pub timestamp: i64,
    pub contact_name: Option<String>,
    /// Recent conversation before this message, oldest first; empty unless the responder asks
    /// for some (see [`ResponderConfig::history_len`]).
    pub history: Vec<HistoryItem>,
}

impl ResponderInput {
    pub fn from_message(
        message: &InboundMessage,
        contact_name: Option<String>,
        history: Vec<HistoryItem>,
    ) -> Self {
        Self {
            message_id: message.id.as_str().to_owned(),
            phone_number_id: message.phone_number_id.as_str().to_owned(),
            wa_id: message.from.as_str().to_owned(),
            kind: message.kind.as_str().to_owned(),
            text: message.text.clone(),
            timestamp: message.timestamp,
            contact_name,
            history,
        }
    }
}

/// One earlier message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub direction: Direction,
    pub text: Option<String>,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The contact wrote to the business.
    Inbound,
    /// The business (bot or operator) wrote to the contact.
    Outbound,
}

/// What to do about an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Reply(String),
    /// Deliberate silence: recorded as `silent:no_reply`.
    NoReply,
    /// Hand the conversation to a person; the bot stays silent until it is resolved.
    Escalate {
        reason: String,
    },
}

/// Why a responder could not decide. The pipeline retries the first kind like a send and
/// dead-letters the second.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// Timeouts, connection errors, 5xx, 429: worth asking again later.
    #[error("responder unavailable: {0}")]
    Retryable(String),
    /// 4xx, an unreadable answer, a reply text out of bounds: asking again would not help.
    #[error("responder refused: {0}")]
    Permanent(String),
}

/// Decides what to answer. Implement it to plug a business's own logic in Rust.
pub trait Responder: Send + Sync + std::fmt::Debug {
    fn decide<'a>(
        &'a self,
        input: &'a ResponderInput,
    ) -> BoxFuture<'a, Result<Decision, ResponderError>>;
}

/// Why a reply text cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyTextProblem {
    #[error("is empty")]
    Empty,
    #[error("is {chars} characters long; WhatsApp allows at most {MAX_REPLY_CHARS}")]
    TooLong { chars: usize },
}

/// Checks a reply text against the Cloud API's limits and returns it without surrounding
/// whitespace, the form that is sent.
pub fn check_reply_text(text: &str) -> Result<&str, ReplyTextProblem> {
    let text = text.trim();
    let chars = text.chars().count();
    match chars {
        0 => Err(ReplyTextProblem::Empty),
        1..=MAX_REPLY_CHARS => Ok(text),
        _ => Err(ReplyTextProblem::TooLong { chars }),
    }
}

/// Responder configuration of one business number in `replyd.toml`, tagged by `kind`:
/// `{ kind = "rules", file = "rules.toml" }` (no `file`: the built-in rules) or
/// `{ kind = "http", url = "https://bot.example/replyd", secret = "…", timeout = "5s", history = 10 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponderConfig {
    Rules {
        /// Relative paths are resolved against the working directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<PathBuf>,
    },
    Http {
        url: String,
        /// Key of `X-Replyd-Signature-256`, so the bot can tell replyd's calls from others.
        secret: Secret,
        /// How long one call may take before it is retried later.
        #[serde(with = "humantime_serde", default = "default_http_timeout")]
        timeout: Duration,
        /// How many earlier messages of the conversation to send along.
        #[serde(default = "default_http_history")]
        history: usize,
    },
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_http_history() -> usize {
    10
}

impl Default for ResponderConfig {
    fn default() -> Self {
        Self::Rules { file: None }
    }
}

impl ResponderConfig {
    /// How many history items this responder wants (0 for rules, which never look back).
    pub fn history_len(&self) -> usize {
        match self {
            Self::Rules { .. } => 0,
            Self::Http { history, .. } => *history,
        }
    }

    /// Builds the responder. A rules file is read and checked now, so a bad file stops
    /// start-up with an error naming the rule instead of dead-lettering messages later.
    pub fn build(&self) -> Result<Arc<dyn Responder>, ResponderBuildError> {
        Ok(match self {
            Self::Rules { file: None } => Arc::new(RulesResponder::builtin()),
            Self::Rules { file: Some(path) } => Arc::new(RulesResponder::from_file(path)?),
            Self::Http {
                url,
                secret,
                timeout,
                history: _,
            } => Arc::new(HttpResponder::new(url, secret.clone(), *timeout)?),
        })
    }
}

/// Why a configured responder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResponderBuildError {
    #[error("{0}")]
    Config(String),
    #[error("cannot read rules file {}: {source}", path.display())]
    ReadRules {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rules file {origin} is not valid: {source}")]
    ParseRules {
        origin: String,
        source: Box<figment::Error>,
    },
    /// `index` counts `[[rule]]` tables from 1, in file order.
    #[error("rules file {origin}, rule #{index}: {problem}")]
    InvalidRule {
        origin: String,
        index: usize,
        problem: RuleProblem,
    },
    #[error("rules file {origin}: `fallback` {problem}")]
    InvalidFallback {
        origin: String,
        problem: ReplyTextProblem,
    },
    #[error("http responder: {0}")]
    Http(#[from] HttpSetupProblem),
}

#[cfg(test)]
pub(crate) fn sample_input(kind: &str, text: Option<&str>) -> ResponderInput {
    ResponderInput {
        message_id: "wamid.TEST1".into(),
        phone_number_id: "106540352242922".into(),
        wa_id: "5215512345678".into(),
        kind: kind.into(),
        text: text.map(str::to_owned),
        timestamp: 1_700_000_000,
        contact_name: Some("Ana".into()),
        history: vec![HistoryItem {
            direction: Direction::Inbound,
            text: Some("earlier".into()),
            timestamp: 1_699_999_000,
        }],
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        responder: ResponderConfig,
    }

    fn parse(toml: &str) -> Result<ResponderConfig, Box<figment::Error>> {
        Figment::from(Toml::string(toml))
            .extract::<Holder>()
            .map(|h| h.responder)
            .map_err(Box::new)
    }

    #[test]
    fn config_parses_both_kinds_with_defaults() {
        assert_eq!(
            parse(r#"responder = { kind = "rules" }"#).unwrap(),
            ResponderConfig::default()
        );
        let http = parse(r#"responder = { kind = "http", url = "http://bot", secret = "s" }"#);
        let http = http.unwrap();
        assert_eq!(
            http,
            ResponderConfig::Http {
                url: "http://bot".into(),
                secret: Secret::new("s"),
                timeout: Duration::from_secs(5),
                history: 10,
            }
        );
        assert_eq!(http.history_len(), 10);
        assert_eq!(ResponderConfig::default().history_len(), 0);
        let tuned = r#"responder = { kind = "http", url = "http://bot", secret = "s", timeout = "1500ms", history = 3 }"#;
        let tuned = parse(tuned).unwrap();
        assert!(
            matches!(tuned, ResponderConfig::Http { timeout, history: 3, .. } if timeout == Duration::from_millis(1500))
        );
    }

    #[test]
    fn config_refuses_unknown_kinds_and_fields() {
        assert!(parse(r#"responder = { kind = "magic" }"#).is_err());
        assert!(parse(r#"responder = { kind = "rules", flie = "x.toml" }"#).is_err());
        assert!(parse(r#"responder = { kind = "http", url = "http://bot" }"#).is_err());
    }

    #[test]
    fn build_reads_the_rules_file_and_reports_bad_ones_with_the_rule_index() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[[rule]]\nkeywords = [\"ping\"]\nreply = \"pong\"\n").unwrap();
        let built = ResponderConfig::Rules { file: Some(good) }.build().unwrap();
        let decision = futures_util::FutureExt::now_or_never(
            built.decide(&sample_input("text", Some("Ping!"))),
        );
        assert_eq!(decision.unwrap().unwrap(), Decision::Reply("pong".into()));

        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[[rule]]\nkeywords = [\"a\"]\nreply = \"b\"\n[[rule]]\nreply = \"c\"\n",
        )
        .unwrap();
        let err = ResponderConfig::Rules { file: Some(bad) }
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            ResponderBuildError::InvalidRule { index: 2, .. }
        ));
        assert!(err.to_string().contains("bad.toml, rule #2"), "{err}");

        let missing = dir.path().join("missing.toml");
        let err = ResponderConfig::Rules {
            file: Some(missing),
        }
        .build()
        .unwrap_err();
        assert!(
            matches!(err, ResponderBuildError::ReadRules { .. }),
            "{err}"
        );
    }

    #[test]
    fn build_refuses_an_unusable_http_setup() {
        let http = |url: &str, secret: &str, timeout| ResponderConfig::Http {
            url: url.into(),
            secret: Secret::new(secret),
            timeout,
            history: 0,
        };
        let second = Duration::from_secs(1);
        assert!(http("http://127.0.0.1:9/bot", "s", second).build().is_ok());
        for bad in [
            http("not a url", "s", second),
            http("ftp://bot.example/", "s", second),
            http("http://bot.example/", "", second),
            http("http://bot.example/", "s", Duration::ZERO),
        ] {
            assert!(
                matches!(bad.build(), Err(ResponderBuildError::Http(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reply_text_limits_count_characters_not_bytes() {
        assert_eq!(check_reply_text("  hi \n"), Ok("hi"));
        assert_eq!(check_reply_text(" \n "), Err(ReplyTextProblem::Empty));
        let max = "é".repeat(MAX_REPLY_CHARS);
        assert_eq!(check_reply_text(&max), Ok(max.as_str()));
        let over = "é".repeat(MAX_REPLY_CHARS + 1);
        assert_eq!(
            check_reply_text(&over),
            Err(ReplyTextProblem::TooLong { chars: 4097 })
        );
    }

    #[test]
    fn input_serializes_with_snake_case_directions() {
        let json = serde_json::to_value(sample_input("text", Some("hola"))).unwrap();
        assert_eq!(json["history"][0]["direction"], "inbound");
        assert_eq!(json["kind"], "text");
        assert_eq!(json["text"], "hola");
    }
}
