//! The silence gates: one pure decision, used by the live reply path and by the reconcile sweep.
//!
//! Evaluated in order; the first gate that holds decides `silent:<reason>`:
//! opted_out → operator → escalated → answered → window_closed → group, then (sweep only)
//! in_flight → superseded. Opt-out and takeover are evaluated again inside the transaction that
//! claims the reply, so an operator action landing between decision and send still wins.

use std::collections::HashSet;
use std::sync::Arc;

use super::ids::Provider;
use super::outcome::SilenceReason;

/// The customer-service window: free-form replies are allowed this long after the user's last message.
pub const WINDOW_SECS: i64 = 24 * 60 * 60;

/// Who is in charge of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationMode {
    Bot,
    Operator,
    Escalated,
}

impl ConversationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bot => "bot",
            Self::Operator => "operator",
            Self::Escalated => "escalated",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "bot" => Some(Self::Bot),
            "operator" => Some(Self::Operator),
            "escalated" => Some(Self::Escalated),
            _ => None,
        }
    }
}

/// The reply ledger row of an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerState {
    /// Claimed before the send; the send is in flight.
    Claimed,
    /// The send's fate is unknown (timeout, crash): never blindly resent.
    Ambiguous,
    Sent,
    Delivered,
    Read,
    Played,
    /// Meta reported the sent message failed (final).
    Failed,
    /// The API refused the send: nothing went out, the message may be claimed again.
    Unsent,
}

impl LedgerState {
    pub const ALL: [LedgerState; 8] = [
        Self::Claimed,
        Self::Ambiguous,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Played,
        Self::Failed,
        Self::Unsent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Ambiguous => "ambiguous",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
            Self::Unsent => "unsent",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Does this row stand for a reply (made, or possibly made)? Only `unsent` does not.
    pub fn answers(self) -> bool {
        self != Self::Unsent
    }
}

/// What the gates look at, read from the store in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSnapshot {
    pub opted_out: bool,
    pub mode: ConversationMode,
    pub ledger: Option<LedgerState>,
    /// Payload timestamp (unix s) of the contact's newest inbound message: the window anchor.
    pub last_inbound_ts: i64,
    /// The message was written in a group chat and its gateway does not answer in groups.
    pub unanswered_group: bool,
}

/// Which channels answer in group chats (a gateway's `answer_groups`); none by default. Turns a
/// message's group into the `unanswered_group` gate input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPolicy {
    answering: Arc<HashSet<(Provider, String)>>,
}

impl GroupPolicy {
    pub fn answering(channels: impl IntoIterator<Item = (Provider, String)>) -> Self {
        Self {
            answering: Arc::new(channels.into_iter().collect()),
        }
    }

    /// Whether a message of this channel, written in a group (`in_group`), stays unanswered.
    pub fn unanswered(&self, provider: Provider, channel_id: &str, in_group: bool) -> bool {
        in_group && !self.answering.contains(&(provider, channel_id.to_owned()))
    }
}

/// Facts only the sweep knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepFacts {
    /// A job for the message is queued or leased, or it arrived within the grace period.
    pub in_flight: bool,
    /// A newer message of the same conversation already has a reply.
    pub superseded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    Silent(SilenceReason),
}

/// When the window of a contact whose last message is `last_inbound_ts` closes (unix ms).
pub fn window_closes_at_ms(last_inbound_ts: i64) -> i64 {
    last_inbound_ts
        .saturating_add(WINDOW_SECS)
        .saturating_mul(1000)
}

/// The shared gates, in their order.
pub fn evaluate(s: &GateSnapshot, now_ms: i64) -> Verdict {
    let reason = if s.opted_out {
        SilenceReason::OptedOut
    } else if s.mode == ConversationMode::Operator {
        SilenceReason::Operator
    } else if s.mode == ConversationMode::Escalated {
        SilenceReason::Escalated
    } else if s.ledger.is_some_and(LedgerState::answers) {
        SilenceReason::Answered
    } else if now_ms >= window_closes_at_ms(s.last_inbound_ts) {
        SilenceReason::WindowClosed
    } else if s.unanswered_group {
        SilenceReason::Group
    } else {
        return Verdict::Proceed;
    };
    Verdict::Silent(reason)
}

/// The shared gates, then the sweep's own.
pub fn evaluate_for_sweep(s: &GateSnapshot, facts: SweepFacts, now_ms: i64) -> Verdict {
    match evaluate(s, now_ms) {
        Verdict::Proceed if facts.in_flight => Verdict::Silent(SilenceReason::InFlight),
        Verdict::Proceed if facts.superseded => Verdict::Silent(SilenceReason::Superseded),
        verdict => verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn open() -> GateSnapshot {
        GateSnapshot {
            opted_out: false,
            mode: ConversationMode::Bot,
            ledger: None,
            last_inbound_ts: NOW_MS / 1000 - 60,
            unanswered_group: false,
        }
    }

    #[test]
    fn each_gate_in_order() {
        assert_eq!(evaluate(&open(), NOW_MS), Verdict::Proceed);
        let all_closed = GateSnapshot {
            opted_out: true,
            mode: ConversationMode::Operator,
            ledger: Some(LedgerState::Sent),
            last_inbound_ts: 0,
            unanswered_group: true,
        };
        assert_eq!(
            evaluate(&all_closed, NOW_MS),
            Verdict::Silent(SilenceReason::OptedOut)
        );
        let s = GateSnapshot {
            opted_out: false,
            ..all_closed
        };
        assert_eq!(
            evaluate(&s, NOW_MS),
            Verdict::Silent(SilenceReason::Operator)
        );
        let s = GateSnapshot {
            mode: ConversationMode::Escalated,
            ..s
        };
        assert_eq!(
            evaluate(&s, NOW_MS),
            Verdict::Silent(SilenceReason::Escalated)
        );
        let s = GateSnapshot {
            mode: ConversationMode::Bot,
            ..s
        };
        assert_eq!(
            evaluate(&s, NOW_MS),
            Verdict::Silent(SilenceReason::Answered)
        );
        let s = GateSnapshot {
            ledger: Some(LedgerState::Unsent),
            ..s
        };
        assert_eq!(
            evaluate(&s, NOW_MS),
            Verdict::Silent(SilenceReason::WindowClosed)
        );
        let s = GateSnapshot {
            last_inbound_ts: NOW_MS / 1000,
            ..s
        };
        assert_eq!(evaluate(&s, NOW_MS), Verdict::Silent(SilenceReason::Group));
        let s = GateSnapshot {
            unanswered_group: false,
            ..s
        };
        assert_eq!(evaluate(&s, NOW_MS), Verdict::Proceed);
    }

    #[test]
    fn window_closes_exactly_24_hours_after_the_last_message() {
        let s = GateSnapshot {
            last_inbound_ts: 1_000,
            ..open()
        };
        let closes = window_closes_at_ms(1_000);
        assert_eq!(evaluate(&s, closes - 1), Verdict::Proceed);
        assert_eq!(
            evaluate(&s, closes),
            Verdict::Silent(SilenceReason::WindowClosed)
        );
    }

    #[test]
    fn sweep_gates_come_after_the_shared_ones() {
        let facts = SweepFacts {
            in_flight: true,
            superseded: true,
        };
        assert_eq!(
            evaluate_for_sweep(&open(), facts, NOW_MS),
            Verdict::Silent(SilenceReason::InFlight)
        );
        let facts = SweepFacts {
            in_flight: false,
            superseded: true,
        };
        assert_eq!(
            evaluate_for_sweep(&open(), facts, NOW_MS),
            Verdict::Silent(SilenceReason::Superseded)
        );
        let opted = GateSnapshot {
            opted_out: true,
            ..open()
        };
        assert_eq!(
            evaluate_for_sweep(&opted, facts, NOW_MS),
            Verdict::Silent(SilenceReason::OptedOut)
        );
        assert_eq!(
            evaluate_for_sweep(&open(), SweepFacts::default(), NOW_MS),
            Verdict::Proceed
        );
    }

    fn any_snapshot() -> impl Strategy<Value = GateSnapshot> {
        (
            any::<bool>(),
            prop::sample::select(vec![
                ConversationMode::Bot,
                ConversationMode::Operator,
                ConversationMode::Escalated,
            ]),
            prop::option::of(prop::sample::select(LedgerState::ALL.to_vec())),
            0i64..4_000_000_000,
            any::<bool>(),
        )
            .prop_map(
                |(opted_out, mode, ledger, last_inbound_ts, unanswered_group)| GateSnapshot {
                    opted_out,
                    mode,
                    ledger,
                    last_inbound_ts,
                    unanswered_group,
                },
            )
    }

    proptest! {
        #[test]
        fn opted_out_or_operator_held_conversations_never_pass(
            s in any_snapshot(), now in 0i64..4_000_000_000_000, facts in any::<(bool, bool)>()
        ) {
            let facts = SweepFacts { in_flight: facts.0, superseded: facts.1 };
            let held = s.opted_out || s.mode != ConversationMode::Bot;
            if held {
                prop_assert_ne!(evaluate(&s, now), Verdict::Proceed);
                prop_assert_ne!(evaluate_for_sweep(&s, facts, now), Verdict::Proceed);
            }
            if s.unanswered_group {
                prop_assert_ne!(evaluate(&s, now), Verdict::Proceed, "a group its gateway does not answer is never answered");
            }
            if s.ledger.is_some_and(LedgerState::answers) {
                prop_assert_ne!(evaluate(&s, now), Verdict::Proceed, "a message with a reply is never answered again");
            }
            // The sweep is never more permissive than the live path.
            if evaluate_for_sweep(&s, facts, now) == Verdict::Proceed {
                prop_assert_eq!(evaluate(&s, now), Verdict::Proceed);
            }
        }

        #[test]
        fn whatever_order_operator_actions_arrive_in_the_last_one_decides(
            actions in prop::collection::vec(0u8..6, 0..20)
        ) {
            // Apply a random sequence of consent and takeover actions to a snapshot.
            let mut s = open();
            for a in &actions {
                match a {
                    0 => s.opted_out = true,
                    1 => s.opted_out = false,
                    2 => s.mode = ConversationMode::Operator,
                    3 => s.mode = ConversationMode::Escalated,
                    _ => s.mode = ConversationMode::Bot,
                }
            }
            let verdict = evaluate(&s, NOW_MS);
            prop_assert_eq!(verdict == Verdict::Proceed, !s.opted_out && s.mode == ConversationMode::Bot);
        }
    }
}
