//! The terminal outcome every inbound message reaches exactly once, and the reasons for silence.

use std::fmt;

use serde::Serialize;

/// Why a message is deliberately left unanswered. The first five are the shared silence gates
/// (in evaluation order); `in_flight` and `superseded` are the sweep's own; `no_reply` is the
/// responder choosing silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceReason {
    OptedOut,
    Operator,
    Escalated,
    Answered,
    WindowClosed,
    InFlight,
    Superseded,
    NoReply,
    /// Written in a group chat whose gateway does not answer in groups (`answer_groups = false`).
    Group,
}

impl SilenceReason {
    pub const ALL: [SilenceReason; 9] = [
        Self::OptedOut,
        Self::Operator,
        Self::Escalated,
        Self::Answered,
        Self::WindowClosed,
        Self::InFlight,
        Self::Superseded,
        Self::NoReply,
        Self::Group,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedOut => "opted_out",
            Self::Operator => "operator",
            Self::Escalated => "escalated",
            Self::Answered => "answered",
            Self::WindowClosed => "window_closed",
            Self::InFlight => "in_flight",
            Self::Superseded => "superseded",
            Self::NoReply => "no_reply",
            Self::Group => "group",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

impl fmt::Display for SilenceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's outcome as stored: `None` in the store means pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Replied,
    Silent(SilenceReason),
    /// Dead-lettered with an error code (e.g. `cloud_api_131026`, `ambiguous_send`).
    Dead(String),
}

impl Outcome {
    /// The `outcome` column / API field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Replied => "replied",
            Self::Silent(_) => "silent",
            Self::Dead(_) => "dead",
        }
    }

    /// The `reason` column / API field.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Replied => None,
            Self::Silent(reason) => Some(reason.as_str()),
            Self::Dead(error) => Some(error),
        }
    }

    /// Rebuilds an outcome from its two stored columns; `None` for pending or unreadable rows.
    pub fn from_columns(kind: Option<&str>, reason: Option<&str>) -> Option<Self> {
        match kind? {
            "replied" => Some(Self::Replied),
            "silent" => reason.and_then(SilenceReason::parse).map(Self::Silent),
            "dead" => Some(Self::Dead(reason.unwrap_or("unknown").to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "{}:{reason}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_their_columns() {
        let all = SilenceReason::ALL
            .map(Outcome::Silent)
            .into_iter()
            .chain([Outcome::Replied, Outcome::Dead("cloud_api_131026".into())]);
        for outcome in all {
            assert_eq!(
                Outcome::from_columns(Some(outcome.kind()), outcome.reason()),
                Some(outcome)
            );
        }
        assert_eq!(Outcome::from_columns(None, None), None);
        assert_eq!(
            Outcome::Silent(SilenceReason::OptedOut).to_string(),
            "silent:opted_out"
        );
    }
}
