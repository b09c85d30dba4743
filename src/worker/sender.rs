//! Where replies go: back through the provider and channel each message came from. Cloud API
//! messages are answered with the number's token; WASender messages through their gateway
//! session's API key. Without a credential a channel is in the sandbox: the reply is recorded,
//! nothing is sent. A gateway message whose session is no longer configured is never sent
//! anywhere else: its channel is halted (held, probed, never resolved until configured again).

use std::collections::HashMap;

use crate::config::{Config, ConfigError};
use crate::domain::{Channel, PhoneNumberId, Provider};
use crate::secret::Secret;
use crate::whatsapp::send::wasender::WasenderClient;
use crate::whatsapp::send::{Accepted, CloudClient, SendError, TextReply};

/// The Cloud API side: a client with the tokens, or the sandbox.
#[derive(Debug, Clone)]
enum CloudRoute {
    Api {
        client: CloudClient,
        default_token: Secret,
        tokens: HashMap<String, Secret>,
    },
    Sandbox,
}

/// One gateway session: its client and API key, or the sandbox.
#[derive(Debug, Clone)]
enum GatewayRoute {
    Api {
        client: WasenderClient,
        api_key: Secret,
    },
    Sandbox,
}

#[derive(Debug, Clone)]
pub struct Sender {
    cloud: CloudRoute,
    gateways: HashMap<String, GatewayRoute>,
}

/// One reply, addressed by channel.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingReply<'a> {
    pub channel: &'a Channel,
    /// The user (or, for a group the gateway answers in, the group) as the send API wants it.
    pub to: &'a str,
    pub body: &'a str,
    /// The inbound message answered (quoted on the Cloud API).
    pub context_message_id: &'a str,
    /// Ours, echoed by Cloud API status webhooks (`biz_opaque_callback_data`).
    pub callback_data: &'a str,
}

impl Sender {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let cloud = if config.sandbox() {
            CloudRoute::Sandbox
        } else {
            CloudRoute::Api {
                client: CloudClient::new(&config.graph_base_url, config.send_timeout),
                default_token: config.access_token.clone(),
                tokens: config
                    .numbers
                    .iter()
                    .filter_map(|n| Some((n.phone_number_id.clone(), n.access_token.clone()?)))
                    .filter(|(_, t)| !t.expose().is_empty())
                    .collect(),
            }
        };
        let gateways = config
            .gateway_sessions()?
            .into_iter()
            .map(|g| {
                let route = match g.api_key.clone().filter(|k| !k.expose().is_empty()) {
                    Some(api_key) => GatewayRoute::Api {
                        client: WasenderClient::new(&g.base_url, config.send_timeout),
                        api_key,
                    },
                    None => GatewayRoute::Sandbox,
                };
                (g.session_id, route)
            })
            .collect();
        Ok(Self { cloud, gateways })
    }

    /// Whether a channel's replies are only recorded.
    pub fn is_sandbox(&self, channel: &Channel) -> bool {
        match channel.provider {
            Provider::Cloud => matches!(self.cloud, CloudRoute::Sandbox),
            Provider::Wasender => matches!(
                self.gateways.get(channel.id.as_str()),
                Some(GatewayRoute::Sandbox)
            ),
        }
    }

    pub async fn send_text(&self, reply: &OutgoingReply<'_>) -> Result<Accepted, SendError> {
        let sandboxed = || Accepted {
            message_id: format!("sandbox.{}", reply.callback_data),
        };
        match reply.channel.provider {
            Provider::Cloud => match &self.cloud {
                CloudRoute::Sandbox => Ok(sandboxed()),
                CloudRoute::Api { client, .. } => {
                    let text = TextReply {
                        phone_number_id: reply.channel.id.as_str(),
                        to: reply.to,
                        body: reply.body,
                        context_message_id: reply.context_message_id,
                        callback_data: reply.callback_data,
                    };
                    client
                        .send_text(self.cloud_token(&reply.channel.id), &text)
                        .await
                }
            },
            Provider::Wasender => match self.gateway(&reply.channel.id)? {
                GatewayRoute::Sandbox => Ok(sandboxed()),
                GatewayRoute::Api { client, api_key } => {
                    let accepted = client
                        .send_text(api_key.expose(), reply.to, reply.body)
                        .await?;
                    Ok(gateway_outbound_id(client, api_key, accepted).await)
                }
            },
        }
    }

    /// Marks a Cloud API message read with the typing indicator. Gateways have no such call;
    /// the sandbox marks nothing.
    pub async fn mark_read(
        &self,
        channel: &Channel,
        message_id: &str,
    ) -> Result<MarkRead, SendError> {
        match (channel.provider, &self.cloud) {
            (Provider::Cloud, CloudRoute::Api { client, .. }) => {
                client
                    .mark_read(
                        self.cloud_token(&channel.id),
                        channel.id.as_str(),
                        message_id,
                        true,
                    )
                    .await?;
                Ok(MarkRead::Marked)
            }
            _ => Ok(MarkRead::NotApplicable),
        }
    }

    /// Can this channel send again? (Used to lift a halt.)
    pub async fn probe(&self, channel: &Channel) -> Result<(), SendError> {
        match channel.provider {
            Provider::Cloud => match &self.cloud {
                CloudRoute::Sandbox => Ok(()),
                CloudRoute::Api { client, .. } => {
                    client
                        .probe(self.cloud_token(&channel.id), channel.id.as_str())
                        .await
                }
            },
            Provider::Wasender => match self.gateway(&channel.id)? {
                GatewayRoute::Sandbox => Ok(()),
                GatewayRoute::Api { client, api_key } => client.probe(api_key.expose()).await,
            },
        }
    }

    fn cloud_token(&self, phone_number_id: &PhoneNumberId) -> &str {
        match &self.cloud {
            CloudRoute::Api {
                default_token,
                tokens,
                ..
            } => tokens
                .get(phone_number_id.as_str())
                .unwrap_or(default_token)
                .expose(),
            CloudRoute::Sandbox => "",
        }
    }

    /// The configured session, or a halt: its messages wait, held, until it is configured again.
    fn gateway(&self, session: &PhoneNumberId) -> Result<&GatewayRoute, SendError> {
        self.gateways
            .get(session.as_str())
            .ok_or_else(|| SendError::NoRoute(format!("no gateway is configured for session `{session}`; add it to [[gateways]] (its messages wait until then)")))
    }
}

/// The id the gateway's status webhooks will carry for an accepted send. Its send answer gives
/// only WASender's own `msgId`; the WhatsApp key its `messages.update` events carry comes from
/// one `GET /api/messages/{msgId}/info`. When that is not known yet (still queued) or the call
/// fails, the send stays recorded under its `msgId`: it was accepted, which is what `replied`
/// rests on; only its later statuses will not be tied to it.
async fn gateway_outbound_id(
    client: &WasenderClient,
    api_key: &Secret,
    accepted: Accepted,
) -> Accepted {
    match client
        .message_info(api_key.expose(), &accepted.message_id)
        .await
    {
        Ok(info) => match info.key_id {
            Some(key) => Accepted { message_id: key },
            None => accepted,
        },
        Err(e) => {
            tracing::debug!(outbound.id = %accepted.message_id, error = %e, "gateway message key not known yet");
            accepted
        }
    }
}

/// What a mark-read call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkRead {
    Marked,
    /// Not a Cloud API message, or the sandbox.
    NotApplicable,
}

/// `to` for the Cloud API: E.164 with `+` for phone numbers (without it Meta would prepend the
/// business number's country code); business-scoped user ids pass through.
pub fn recipient(wa_id: &str) -> String {
    if !wa_id.is_empty() && wa_id.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{wa_id}")
    } else {
        wa_id.to_owned()
    }
}

/// `to` for a gateway reply: the user's number in international format, or the group's JID when
/// the gateway answers in the group the message was written in.
pub fn gateway_recipient(wa_id: &str, group: Option<&str>) -> String {
    match group {
        Some(group) => format!("{group}@g.us"),
        None => recipient(wa_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_get_a_plus_only_when_they_are_phone_numbers() {
        assert_eq!(recipient("34600000001"), "+34600000001");
        assert_eq!(recipient("US.1349"), "US.1349");
        assert_eq!(gateway_recipient("34600000001", None), "+34600000001");
        assert_eq!(
            gateway_recipient("34600000001", Some("120363040000000000")),
            "120363040000000000@g.us"
        );
    }
}
