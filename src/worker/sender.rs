//! Where replies go: the Cloud API with the number's token, or — with no token configured —
//! the sandbox, which records the reply and sends nothing.

use std::collections::HashMap;

use crate::config::Config;
use crate::secret::Secret;
use crate::whatsapp::send::{Accepted, CloudClient, SendError, TextReply};

#[derive(Debug, Clone)]
pub enum Sender {
    Cloud {
        client: CloudClient,
        default_token: Secret,
        tokens: HashMap<String, Secret>,
    },
    Sandbox,
}

impl Sender {
    pub fn from_config(config: &Config) -> Self {
        if config.sandbox() {
            return Self::Sandbox;
        }
        let tokens = config
            .numbers
            .iter()
            .filter_map(|n| Some((n.phone_number_id.clone(), n.access_token.clone()?)))
            .filter(|(_, t)| !t.expose().is_empty())
            .collect();
        Self::Cloud {
            client: CloudClient::new(&config.graph_base_url, config.send_timeout),
            default_token: config.access_token.clone(),
            tokens,
        }
    }

    pub async fn send_text(&self, reply: &TextReply<'_>) -> Result<Accepted, SendError> {
        match self {
            Self::Sandbox => Ok(Accepted {
                message_id: format!("sandbox.{}", reply.callback_data),
            }),
            Self::Cloud { client, .. } => {
                client
                    .send_text(self.token(reply.phone_number_id), reply)
                    .await
            }
        }
    }

    /// Can this number send again? (Used to lift a halt.)
    pub async fn probe(&self, phone_number_id: &str) -> Result<(), SendError> {
        match self {
            Self::Sandbox => Ok(()),
            Self::Cloud { client, .. } => {
                client
                    .probe(self.token(phone_number_id), phone_number_id)
                    .await
            }
        }
    }

    fn token(&self, phone_number_id: &str) -> &str {
        match self {
            Self::Cloud {
                default_token,
                tokens,
                ..
            } => tokens
                .get(phone_number_id)
                .unwrap_or(default_token)
                .expose(),
            Self::Sandbox => "",
        }
    }
}

/// `to` for the send API: E.164 with `+` for phone numbers (without it Meta would prepend the
/// business number's country code); business-scoped user ids pass through.
pub fn recipient(wa_id: &str) -> String {
    if !wa_id.is_empty() && wa_id.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{wa_id}")
    } else {
        wa_id.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_get_a_plus_only_when_they_are_phone_numbers() {
        assert_eq!(recipient("34600000001"), "+34600000001");
        assert_eq!(recipient("US.1349"), "US.1349");
    }
}
