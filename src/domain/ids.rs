//! Identifier newtypes, parsed once at the edge so that no raw string travels past a handler.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} bytes")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains a control character")]
    ControlCharacter { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooManyCharacters { kind: &'static str, max: usize },
}

fn check(kind: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if raw.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if raw.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter { kind });
    }
    Ok(())
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check($kind, &raw, $max)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_newtype!(
    /// A provider's message id (a `wamid.…` on the Cloud API, `key.id` on WASender).
    /// Meta documents wamids as at most 128 characters; we allow some slack for gateways.
    MessageId,
    "message id",
    256
);
id_newtype!(
    /// The user's WhatsApp id (digits, no `+`), or a business-scoped user id when no phone is given.
    WaId,
    "wa_id",
    128
);
id_newtype!(
    /// The business phone number id that a notification was addressed to; replies go out from it.
    PhoneNumberId,
    "phone_number_id",
    128
);

id_newtype!(
    /// A group chat's id (WASender `remoteJid` of a `…@g.us` chat, without the suffix).
    GroupId,
    "group id",
    128
);

/// Free text an operator gives: who took a conversation over, why it was escalated. Shown in
/// the console, the API and the CLI, so it is bounded and kept to one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OperatorNote(String);

impl OperatorNote {
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
        const KIND: &str = "operator note";
        let raw = raw.into();
        if raw.trim().is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(IdError::TooManyCharacters {
                kind: KIND,
                max: Self::MAX_CHARS,
            });
        }
        if raw.chars().any(char::is_control) {
            return Err(IdError::ControlCharacter { kind: KIND });
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an inbound message came from. Dedup is per (provider, message id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Cloud,
    Wasender,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cloud => "cloud",
            Provider::Wasender => "wasender",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "cloud" => Some(Provider::Cloud),
            "wasender" => Some(Provider::Wasender),
            _ => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_empty_long_and_control() {
        assert!(MessageId::parse("wamid.abc").is_ok());
        assert_eq!(
            MessageId::parse(""),
            Err(IdError::Empty { kind: "message id" })
        );
        assert!(matches!(
            MessageId::parse("x".repeat(300)),
            Err(IdError::TooLong { .. })
        ));
        assert!(matches!(
            WaId::parse("12\n3"),
            Err(IdError::ControlCharacter { .. })
        ));
    }

    #[test]
    fn operator_notes_are_bounded_in_characters() {
        let most = "é".repeat(OperatorNote::MAX_CHARS);
        assert!(OperatorNote::parse(most.clone()).is_ok());
        assert!(matches!(
            OperatorNote::parse(format!("{most}x")),
            Err(IdError::TooManyCharacters { max: 256, .. })
        ));
        assert!(OperatorNote::parse("  ").is_err());
        assert!(OperatorNote::parse("maria\nadmin").is_err());
    }

    #[test]
    fn provider_round_trips() {
        for p in [Provider::Cloud, Provider::Wasender] {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
    }
}
