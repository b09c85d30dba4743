//! Operator commands of the `replyd` binary (`replyd conversation …`, `replyd contact …`): the
//! clap definitions, and one function per command group that acts on the store and returns what
//! to print. The same store operations back the admin API, so a CLI action and an API action
//! leave the same rows behind.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand};

use crate::clock::Clock;
use crate::domain::{
    ConversationKey, ConversationMode, IdError, OperatorNote, PhoneNumberId, Provider, WaId,
};
use crate::store::{ConversationSummary, ErasureCounts, Store, StoreError};

/// `replyd conversation …`
#[derive(Debug, Subcommand)]
pub enum ConversationCommand {
    /// List conversations, newest activity first.
    List {
        /// Only conversations in this mode: bot, operator or escalated.
        #[arg(long, value_parser = parse_mode)]
        mode: Option<ConversationMode>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// An operator takes the conversation over: the bot stays silent until it is released.
    Takeover {
        #[command(flatten)]
        target: Target,
        /// Who takes it over (shown in the console and the API).
        #[arg(long, default_value = "operator", value_parser = parse_note)]
        by: OperatorNote,
    },
    /// Hand the conversation back to the bot.
    Release {
        #[command(flatten)]
        target: Target,
    },
    /// Escalate the conversation: the bot stays silent until it is resolved.
    Escalate {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "escalated by an operator", value_parser = parse_note)]
        reason: OperatorNote,
    },
    /// Close an escalation: the bot answers again.
    Resolve {
        #[command(flatten)]
        target: Target,
    },
}

/// `replyd contact …`
#[derive(Debug, Subcommand)]
pub enum ContactCommand {
    /// The contact opts out: never replied to until they opt back in.
    OptOut(Target),
    /// The contact opts back in.
    OptIn(Target),
    /// Erase the contact's message bodies, name and payloads now (a data-subject request).
    /// Kept: message ids (dedup), outcomes and reasons, the opt-out flag.
    Erase(Target),
}

/// A conversation: the provider, the business number (or gateway session) and the user.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The business phone number id (for `--provider wasender`: the gateway session id).
    #[arg(value_parser = parse_phone_number_id)]
    pub phone_number_id: PhoneNumberId,
    /// The user's WhatsApp id.
    #[arg(value_parser = parse_wa_id)]
    pub wa_id: WaId,
    /// Which provider the conversation is on: cloud or wasender.
    #[arg(long, default_value = "cloud", value_parser = parse_provider)]
    pub provider: Provider,
}

impl Target {
    pub fn key(&self) -> ConversationKey {
        ConversationKey {
            provider: self.provider,
            phone_number_id: self.phone_number_id.clone(),
            wa_id: self.wa_id.clone(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.phone_number_id, self.wa_id)?;
        if self.provider != Provider::Cloud {
            write!(f, " ({})", self.provider)?;
        }
        Ok(())
    }
}

fn parse_provider(raw: &str) -> Result<Provider, String> {
    Provider::parse(raw).ok_or_else(|| "expected cloud or wasender".to_owned())
}

fn parse_mode(raw: &str) -> Result<ConversationMode, String> {
    ConversationMode::parse(raw).ok_or_else(|| "expected bot, operator or escalated".to_owned())
}

fn parse_note(raw: &str) -> Result<OperatorNote, IdError> {
    OperatorNote::parse(raw)
}

fn parse_phone_number_id(raw: &str) -> Result<PhoneNumberId, IdError> {
    PhoneNumberId::parse(raw)
}

fn parse_wa_id(raw: &str) -> Result<WaId, IdError> {
    WaId::parse(raw)
}

/// Runs one `replyd conversation …` command; returns the text to print.
pub async fn conversation(
    store: &Store,
    clock: &Clock,
    command: ConversationCommand,
) -> Result<String, StoreError> {
    let (target, mode, note) = match command {
        ConversationCommand::List { mode, limit } => {
            let items = store.conversations(mode, limit).await?;
            return Ok(conversations_table(&items));
        }
        ConversationCommand::Takeover { target, by } => {
            (target, ConversationMode::Operator, Some(by))
        }
        ConversationCommand::Escalate { target, reason } => {
            (target, ConversationMode::Escalated, Some(reason))
        }
        ConversationCommand::Release { target } | ConversationCommand::Resolve { target } => {
            (target, ConversationMode::Bot, None)
        }
    };
    store
        .set_conversation_mode(
            &target.key(),
            mode,
            note.as_ref().map(OperatorNote::as_str),
            clock.now_ms(),
        )
        .await?;
    Ok(format!(
        "conversation {target} is now in {} mode\n",
        mode.as_str()
    ))
}

/// Runs one `replyd contact …` command; returns the text to print.
pub async fn contact(
    store: &Store,
    clock: &Clock,
    command: ContactCommand,
) -> Result<String, StoreError> {
    let (target, opted_out) = match command {
        ContactCommand::OptOut(target) => (target, true),
        ContactCommand::OptIn(target) => (target, false),
        ContactCommand::Erase(target) => {
            let erased = store.erase_contact(&target.key(), clock.now_ms()).await?;
            return Ok(erasure_text(&target, &erased));
        }
    };
    store
        .set_opted_out(&target.key(), opted_out, clock.now_ms())
        .await?;
    let state = if opted_out { "opted out" } else { "opted in" };
    Ok(format!("contact {target} is {state}\n"))
}

/// What `replyd contact erase` prints.
pub fn erasure_text(target: &Target, e: &ErasureCounts) -> String {
    let mut out = format!(
        "contact {target} erased: {} message(s), {} reply text(s), {} status payload(s), \
         {} dead-letter payload(s), display name {}\n",
        e.messages,
        e.reply_texts,
        e.statuses,
        e.dead_letters,
        if e.display_name {
            "removed"
        } else {
            "none kept"
        },
    );
    if e.replies_in_flight > 0 {
        let _ = writeln!(
            out,
            "{} reply text(s) kept: their send is in progress; erase again once it settles",
            e.replies_in_flight
        );
    }
    out.push_str("kept: message ids (dedup), outcomes and reasons, the opt-out flag\n");
    out
}

/// The list as a table, one conversation per line, then the count.
pub fn conversations_table(items: &[ConversationSummary]) -> String {
    let width = |f: fn(&ConversationSummary) -> usize, header: &str| {
        items.iter().map(f).chain([header.len()]).max().unwrap_or(0)
    };
    let phone_w = width(|c| c.phone_number_id.chars().count(), "phone_number_id");
    let wa_w = width(|c| c.wa_id.chars().count(), "wa_id");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<phone_w$}  {:<wa_w$}  {:<20}  {:<9}  {:<9}  {:<20}  note",
        "phone_number_id", "wa_id", "name", "mode", "opted_out", "last_inbound"
    );
    for c in items {
        let name: String = c
            .display_name
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(20)
            .collect();
        let note = c
            .taken_by
            .as_deref()
            .or(c.escalation_reason.as_deref())
            .unwrap_or("-");
        let last = c.last_inbound_ts.map_or_else(|| "-".to_owned(), rfc3339);
        let _ = writeln!(
            out,
            "{:<phone_w$}  {:<wa_w$}  {name:<20}  {:<9}  {:<9}  {last:<20}  {note}",
            c.phone_number_id,
            c.wa_id,
            c.mode.as_str(),
            if c.opted_out { "yes" } else { "no" },
        );
    }
    let _ = writeln!(out, "{} conversation(s)", items.len());
    out
}

/// A payload timestamp (unix s) as UTC RFC 3339; negative ones are shown as they are.
fn rfc3339(unix_s: i64) -> String {
    match u64::try_from(unix_s) {
        Ok(s) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string(),
        Err(_) => unix_s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(wa_id: &str, mode: ConversationMode) -> ConversationSummary {
        ConversationSummary {
            provider: Provider::Cloud,
            phone_number_id: "106540352242922".into(),
            wa_id: wa_id.into(),
            display_name: Some("Ana Pérez, a name longer than twenty".into()),
            mode,
            taken_by: (mode == ConversationMode::Operator).then(|| "maria".into()),
            escalation_reason: None,
            opted_out: false,
            last_inbound_ts: Some(1_700_000_000),
            updated_at_ms: 0,
        }
    }

    #[test]
    fn the_table_has_a_header_a_line_per_conversation_and_a_count() {
        let table = conversations_table(&[
            summary("34600000001", ConversationMode::Operator),
            summary("34600000002", ConversationMode::Bot),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("phone_number_id"));
        assert!(lines[1].contains("34600000001") && lines[1].contains("operator"));
        assert!(lines[1].ends_with("maria") && lines[1].contains("2023-11-14T22:13:20Z"));
        assert!(lines[1].contains("Ana Pérez, a name lo ") && lines[2].ends_with('-'));
        assert_eq!(lines[3], "2 conversation(s)");
    }

    #[test]
    fn the_cli_parses_every_operator_command() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Top,
        }
        #[derive(Debug, Subcommand)]
        enum Top {
            #[command(subcommand)]
            Conversation(ConversationCommand),
            #[command(subcommand)]
            Contact(ContactCommand),
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["replyd"], args].concat());
        let Top::Conversation(ConversationCommand::Takeover { target, by }) =
            parse(&["conversation", "takeover", "1065", "3460", "--by", "maria"])
                .unwrap()
                .command
        else {
            panic!("takeover")
        };
        assert_eq!((target.wa_id.as_str(), by.as_str()), ("3460", "maria"));
        let long = "x".repeat(OperatorNote::MAX_CHARS + 1);
        let refused = parse(&[
            "conversation",
            "escalate",
            "1065",
            "3460",
            "--reason",
            &long,
        ]);
        assert!(refused.is_err(), "a reason past 256 characters is refused");
        assert!(matches!(
            parse(&["conversation", "list", "--mode", "escalated"])
                .unwrap()
                .command,
            Top::Conversation(ConversationCommand::List {
                mode: Some(ConversationMode::Escalated),
                limit: 50
            })
        ));
        assert!(parse(&["conversation", "list", "--mode", "robot"]).is_err());
        assert!(matches!(
            parse(&["contact", "opt-out", "1065", "3460"])
                .unwrap()
                .command,
            Top::Contact(ContactCommand::OptOut(_))
        ));
        assert!(
            parse(&["conversation", "resolve", "1065", ""]).is_err(),
            "empty wa_id"
        );
    }
}
