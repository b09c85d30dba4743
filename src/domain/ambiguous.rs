//! Ambiguous sends: the callback data that ties a status webhook to one send attempt, the
//! setting that says who settles a send whose fate is unknown, and how each one was settled.
//!
//! The Cloud API has no idempotency key, so a send that timed out (or a worker killed between
//! claim and send) may or may not have gone out. Meta posts a `sent` status for every message
//! that went out, echoing our `biz_opaque_callback_data`; naming the attempt in it
//! (`replyd:<ledger id>.<attempt>`) lets a status for an earlier attempt of a row that was sent
//! again be recognised as a double send instead of passing for the resend's own status.

use std::fmt;

use serde::{Deserialize, Serialize};

const PREFIX: &str = "replyd:";

/// Which send of which ledger row a status webhook is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRef {
    pub ledger_id: i64,
    /// `None` for callback data written before attempts were named (`replyd:<id>`): the row's
    /// current attempt.
    pub attempt: Option<u32>,
}

impl SendRef {
    /// The `biz_opaque_callback_data` of this send: `replyd:<ledger id>.<attempt>`.
    pub fn callback_data(self) -> String {
        match self.attempt {
            Some(attempt) => format!("{PREFIX}{}.{attempt}", self.ledger_id),
            None => format!("{PREFIX}{}", self.ledger_id),
        }
    }

    /// Reads callback data replyd wrote; `None` for anyone else's (or anything malformed).
    pub fn parse(callback: &str) -> Option<Self> {
        let rest = callback.strip_prefix(PREFIX)?;
        let (id, attempt) = match rest.split_once('.') {
            Some((id, attempt)) => (id, Some(digits(attempt)?.parse().ok()?)),
            None => (rest, None),
        };
        Some(Self {
            ledger_id: digits(id)?.parse().ok()?,
            attempt,
        })
    }
}

/// Only plain ASCII digits: `+7`, ` 7` or `7 ` are someone else's data, not ours.
fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// The setting `ambiguous_resolution`: what happens to an ambiguous send that no status
/// webhook confirmed within the quiet period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousResolution {
    /// Statuses for later sends of the same number arrived while none arrived for it: it did
    /// not go out, so it is sent once more. With no status traffic at all it is left to an
    /// operator as the dead letter `ambiguous_send`.
    #[default]
    Evidence,
    /// Always the dead letter `ambiguous_send`, for an operator to replay.
    Operator,
}

/// How an ambiguous send was settled (the ledger's `resolved_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolvedBy {
    /// A status webhook with its callback data: it went out (`replied`).
    Status,
    /// Statuses for later sends of the number, none for it: it did not go out; sent again.
    Evidence,
    /// No evidence either way (or the `operator` setting): the dead letter `ambiguous_send`.
    Operator,
}

impl ResolvedBy {
    pub const ALL: [ResolvedBy; 3] = [Self::Status, Self::Evidence, Self::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Evidence => "evidence",
            Self::Operator => "operator",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

impl fmt::Display for ResolvedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn attempts_are_named_and_the_old_form_still_reads() {
        let send = SendRef {
            ledger_id: 42,
            attempt: Some(3),
        };
        assert_eq!(send.callback_data(), "replyd:42.3");
        assert_eq!(SendRef::parse("replyd:42.3"), Some(send));
        assert_eq!(
            SendRef::parse("replyd:42"),
            Some(SendRef {
                ledger_id: 42,
                attempt: None
            })
        );
    }

    #[test]
    fn someone_elses_data_is_not_ours() {
        for other in [
            "",
            "replyd:",
            "replyd:x",
            "replyd:1.",
            "replyd:.1",
            "replyd:1.2.3",
            "replyd:+1",
            "replyd: 1",
            "replyd:1.-2",
            "ledger-7",
            "REPLYD:1",
            "replyd:99999999999999999999",
        ] {
            assert_eq!(SendRef::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn resolutions_round_trip() {
        for r in ResolvedBy::ALL {
            assert_eq!(ResolvedBy::parse(r.as_str()), Some(r));
        }
        assert_eq!(ResolvedBy::parse("guess"), None);
    }

    proptest! {
        #[test]
        fn callback_data_round_trips(ledger_id in 0..i64::MAX, attempt in proptest::option::of(any::<u32>())) {
            let send = SendRef { ledger_id, attempt };
            prop_assert_eq!(SendRef::parse(&send.callback_data()), Some(send));
        }

        #[test]
        fn parsing_never_panics(raw in ".*") {
            let _ = SendRef::parse(&raw);
        }
    }
}
