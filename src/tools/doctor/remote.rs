//! Doctor's checks of the APIs replyd sends through: each business number's token with a cheap
//! Cloud API read (`GET {graph_base_url}/{phone_number_id}?fields=id`), and each WASender
//! session's status. Reads only; nothing is sent.

use std::time::Duration;

use super::{Check, Subject};
use crate::config::Config;
use crate::whatsapp::send::WasenderClient;
use crate::whatsapp::send::wasender::SessionStatus;
use crate::whatsapp::{CloudClient, FailureClass, SendError};

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The sandbox, or one probe per business number (and one for the default token when no listed
/// number uses it).
pub(super) async fn cloud_api(config: &Config) -> Vec<Check> {
    if config.sandbox() {
        return vec![Check::warn(
            Subject::CloudApi,
            "sandbox: no access token, replies are recorded, not sent",
            "to send, set REPLYD_ACCESS_TOKEN (or `access_token` per [[numbers]] in replyd.toml)",
        )];
    }
    let client = CloudClient::new(&config.graph_base_url, PROBE_TIMEOUT);
    let default = config.access_token.expose();
    let mut checks = Vec::new();
    let mut default_probed = false;
    for number in &config.numbers {
        let id = &number.phone_number_id;
        let subject = Subject::CloudNumber(id.clone());
        let own = number
            .access_token
            .as_ref()
            .map(|t| t.expose())
            .filter(|t| !t.is_empty());
        let Some(token) = own.or(Some(default).filter(|t| !t.is_empty())) else {
            checks.push(Check::fail(
                subject,
                "no access token: its replies would be refused",
                format!(
                    "set `access_token` in the [[numbers]] entry of {id}, or REPLYD_ACCESS_TOKEN"
                ),
            ));
            continue;
        };
        default_probed |= own.is_none();
        checks.push(probe(&client, subject, token, id, config).await);
    }
    if !default.is_empty() && !default_probed {
        // No listed number uses the default token: `me` is the cheapest read it can answer.
        checks.push(probe(&client, Subject::CloudApi, default, "me", config).await);
    }
    checks
}

async fn probe(
    client: &CloudClient,
    subject: Subject,
    token: &str,
    node: &str,
    config: &Config,
) -> Check {
    let base = &config.graph_base_url;
    match client.probe(token, node).await {
        Ok(()) => Check::pass(
            subject,
            format!("token accepted by {base} (GET /{node}?fields=id)"),
        ),
        Err(e) => {
            let fix = match (&e, e.class()) {
                (SendError::NotSent(_) | SendError::Unknown(_), _) => format!(
                    "check that {base} is reachable from here (REPLYD_GRAPH_BASE_URL, proxy, DNS)"
                ),
                (_, FailureClass::HaltSender) => "the token was refused: create a system-user \
                    token with whatsapp_business_messaging for this number in Meta's Business \
                    settings and set it (REPLYD_ACCESS_TOKEN or `access_token` in [[numbers]])"
                    .to_owned(),
                _ => "check the phone_number_id (WhatsApp Manager → Phone numbers) and that the \
                    token has access to it"
                    .to_owned(),
            };
            Check::fail(subject, e.to_string(), fix)
        }
    }
}

/// One status read per configured WASender session.
pub(super) async fn gateways(config: &Config) -> Vec<Check> {
    let Ok(gateways) = config.gateway_sessions() else {
        // Already a failed configuration check.
        return Vec::new();
    };
    let mut checks = Vec::new();
    for g in gateways {
        let subject = Subject::Gateway(g.session_id.clone());
        let Some(key) = g.api_key.as_ref().filter(|k| !k.expose().is_empty()) else {
            checks.push(Check::warn(
                subject,
                "sandbox: no api_key, its replies are recorded, not sent",
                "to send, set the session's `api_key` (or REPLYD_WASENDER_API_KEY)",
            ));
            continue;
        };
        let client = WasenderClient::new(&g.base_url, PROBE_TIMEOUT);
        checks.push(match client.session_status(key.expose()).await {
            Ok(SessionStatus::Connected) => {
                Check::pass(subject, format!("session connected ({})", g.base_url))
            }
            Ok(SessionStatus::NotConnected(status)) => Check::fail(
                subject,
                format!("session is {status}: its replies wait until it reconnects"),
                "reconnect the session in the WASender dashboard (scan its QR code)",
            ),
            Err(e) => {
                let fix = match e.class() {
                    FailureClass::HaltSender => "the API key was refused: copy the session's API \
                        key from the WASender dashboard into `api_key`"
                        .to_owned(),
                    _ => format!(
                        "check that {} is reachable from here (`base_url`)",
                        g.base_url
                    ),
                };
                Check::fail(subject, e.to_string(), fix)
            }
        });
    }
    checks
}
