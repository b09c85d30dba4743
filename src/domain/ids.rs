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
    /// A user's id that is neither a phone-number id nor a business-scoped user id.
    #[error("{kind} is neither a phone number id nor a business-scoped user id: {why}")]
    NotASenderId {
        kind: &'static str,
        why: &'static str,
    },
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
        id_newtype!($(#[$doc])* $name, $kind, $max, |_| Ok(()));
    };
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $format:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check($kind, &raw, $max)?;
                let format: fn(&str) -> Result<(), IdError> = $format;
                format(&raw)?;
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
    /// Who a user is to a business: a phone-number id (`wa_id`: 1–20 ASCII digits, no `+`), or,
    /// when the payload gives no phone number, Meta's business-scoped user id (BSUID). Nothing
    /// else is a sender: see [`check_sender_id`].
    WaId,
    "wa_id",
    WA_ID_MAX,
    check_sender_id
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

/// Longest accepted [`WaId`]: a BSUID's country code, dot and a generous tail (Meta's examples
/// carry 20 characters after the dot).
/// A BSUID is a country code, a dot, an optional `ENT.` and up to 128 characters.
const WA_ID_MAX: usize = 2 + 1 + 4 + 128;
/// Longest phone-number id: E.164 allows 15 digits; wa_ids "may not match" the number, so slack.
const PHONE_ID_MAX_DIGITS: usize = 20;

/// The two shapes a user id takes on the WhatsApp Business Platform:
///
/// * a phone-number id: 1–20 ASCII digits (`34600000001`), no `+`, no spaces;
/// * a business-scoped user id (BSUID, Cloud API v25 `user_id` / `from_user_id`): an ISO 3166-1
///   alpha-2 country code in capitals, a dot, then ASCII letters and digits
///   (`US.13491208655302741918`); a parent BSUID has `ENT.` after the country code
///   (`US.ENT.11815799212886844830`). At most [`WA_ID_MAX`] bytes in all.
///
/// Anything else (a gateway JID such as `…@s.whatsapp.net`, a `+` number, free text) is refused
/// at the edge: a message whose sender is malformed is a dead letter, never a conversation
/// keyed by a string no reply could be addressed to.
fn check_sender_id(raw: &str) -> Result<(), IdError> {
    let refuse = |why| Err(IdError::NotASenderId { kind: "wa_id", why });
    let bytes = raw.as_bytes();
    if bytes.iter().all(u8::is_ascii_digit) {
        return match bytes.len() {
            n if n > PHONE_ID_MAX_DIGITS => refuse("a phone number id has more than 20 digits"),
            _ => Ok(()),
        };
    }
    if raw.starts_with('+') {
        return refuse("a phone number id is written without `+`");
    }
    if raw.contains('@') {
        return refuse("a gateway address (JID), not a user id");
    }
    if raw.starts_with(|c: char| c.is_ascii_digit()) {
        return refuse("a phone number id holds digits only");
    }
    let Some((country, rest)) = raw.split_once('.') else {
        return refuse("no country code and dot before the user id");
    };
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return refuse("a user id starts with a two-letter country code in capitals");
    }
    let rest = rest.strip_prefix("ENT.").unwrap_or(rest);
    if rest.is_empty() {
        return refuse("nothing after the user id's country code");
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return refuse("a user id holds only letters and digits after its country code");
    }
    Ok(())
}

impl WaId {
    /// Whether this is a business-scoped user id rather than a phone-number id.
    pub fn is_user_id(&self) -> bool {
        !self.0.bytes().all(|b| b.is_ascii_digit())
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// A sending identity: a Cloud API business number, or a WASender gateway session. Send holds,
/// pacing and responders are per channel; the provider keeps equal ids of the two apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel {
    pub provider: Provider,
    pub id: PhoneNumberId,
}

impl Channel {
    pub fn new(provider: Provider, id: PhoneNumberId) -> Self {
        Self { provider, id }
    }

    pub fn cloud(id: PhoneNumberId) -> Self {
        Self::new(Provider::Cloud, id)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.id)
    }
}

/// Where a verified delivery came from: Meta's webhook, or a configured gateway session (whose
/// events are attributed to it, never to a number made up from the payload).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    Cloud,
    Wasender { session: PhoneNumberId },
}

impl Origin {
    pub fn provider(&self) -> Provider {
        match self {
            Self::Cloud => Provider::Cloud,
            Self::Wasender { .. } => Provider::Wasender,
        }
    }

    /// The gateway session, for gateway deliveries.
    pub fn session(&self) -> Option<&PhoneNumberId> {
        match self {
            Self::Cloud => None,
            Self::Wasender { session } => Some(session),
        }
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
    fn sender_ids_are_phone_numbers_or_business_scoped_user_ids() {
        for good in [
            "1",
            "34600000001",
            "12345678901234567890",
            "US.13491208655302741918",
            "MX.0987654321",
            "BR.AbC123",
            "US.ENT.11815799212886844830",
        ] {
            let id = WaId::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(id.is_user_id(), !good.bytes().all(|b| b.is_ascii_digit()));
        }
        for (bad, why) in [
            ("123456789012345678901", "more than 20 digits"),
            ("+34600000001", "without `+`"),
            ("34600000001@s.whatsapp.net", "JID"),
            ("120363@g.us", "JID"),
            ("346 0000 0001", "digits only"),
            ("34-600", "digits only"),
            ("A", "country code and dot"),
            ("user-1", "country code and dot"),
            ("us.1349", "two-letter country code in capitals"),
            ("USA.1349", "two-letter country code in capitals"),
            ("US.", "nothing after"),
            ("US.ENT.", "nothing after"),
            ("US.13-49", "only letters and digits"),
            ("US.1349.77", "only letters and digits"),
            ("US.1349 ", "only letters and digits"),
            ("ES.ñ1", "only letters and digits"),
        ] {
            match WaId::parse(bad) {
                Err(e @ IdError::NotASenderId { .. }) => {
                    assert!(e.to_string().contains(why), "{bad}: {e}");
                }
                other => panic!("{bad} gave {other:?}"),
            }
        }
        assert!(matches!(
            WaId::parse(format!("US.ENT.{}", "7".repeat(129))),
            Err(IdError::TooLong { max: 135, .. })
        ));
        assert!(WaId::parse(format!("US.ENT.{}", "7".repeat(128))).is_ok());
        // Through serde as well: a stored or configured id is held to the same rule.
        assert!(serde_json::from_str::<WaId>("\"34600000001\"").is_ok());
        assert!(serde_json::from_str::<WaId>("\"nobody\"").is_err());
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
