//! The status webhooks the fake posts after each accepted send, from a task of their own, so
//! they can arrive before the send's answer — as they can from the real services.
//! - Cloud API: `sent`, then `delivered` when asked, in Meta's shape: the new outbound id plus
//!   the `biz_opaque_callback_data` the sender passed, signed like Meta signs (HMAC-SHA256 over
//!   the escaped-unicode body, `X-Hub-Signature-256`).
//! - WASender: `messages.update` with WASender's numeric status (2 sent, then 3 delivered when
//!   asked), the message's WhatsApp key in `data.key.id`, the session in `sessionId`, a
//!   millisecond `timestamp` (as WASender's own example shows) and the secret itself in
//!   `X-Webhook-Signature`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::RecordedSend;
use super::args::StatusKeyId;
use crate::whatsapp::{signature, wasender};

/// Attempts per webhook, with a doubling pause in between; Meta retries for days, the fake
/// only long enough to ride out a receiver that is starting up.
const ATTEMPTS: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const WABA_ID: &str = "900000000000001";
const DISPLAY_PHONE_NUMBER: &str = "15550000000";
/// WASender's `messages.update` status codes.
const GATEWAY_SENT: i64 = 2;
const GATEWAY_DELIVERED: i64 = 3;

/// Posts bodies to one URL with a few retries.
#[derive(Debug, Clone)]
struct Poster {
    url: String,
    http: reqwest::Client,
}

impl Poster {
    fn new(url: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("building a rustls HTTP client does not fail");
        Self { url, http }
    }

    /// Posts `bodies` in order after `delay`, in the background.
    fn spawn(&self, delay: Duration, bodies: Vec<Vec<u8>>, header: Header, message_id: String) {
        let poster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for body in bodies {
                let header = header.value(&body);
                poster.post(body, header, &message_id).await;
            }
        });
    }

    async fn post(&self, body: Vec<u8>, header: Option<(&'static str, String)>, message_id: &str) {
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some((name, value)) = &header {
                request = request.header(*name, value);
            }
            match request.send().await {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer) => tracing::debug!(
                    outbound.id = message_id,
                    attempt,
                    http_status = answer.status().as_u16(),
                    "status webhook refused"
                ),
                Err(error) => {
                    tracing::debug!(outbound.id = message_id, attempt, %error, "status webhook failed");
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        tracing::warn!(
            outbound.id = message_id,
            url = %self.url,
            "status webhook not delivered after {ATTEMPTS} attempts"
        );
    }
}

/// How a webhook proves where it comes from.
#[derive(Debug, Clone)]
enum Header {
    None,
    /// `X-Hub-Signature-256: sha256=<HMAC of the body>`.
    MetaSignature(Vec<u8>),
    /// `X-Webhook-Signature: <the secret>`.
    SharedSecret(String),
}

impl Header {
    fn value(&self, body: &[u8]) -> Option<(&'static str, String)> {
        match self {
            Header::None => None,
            Header::MetaSignature(secret) => {
                Some((signature::HEADER, signature::sign(secret, body)))
            }
            Header::SharedSecret(secret) => Some((wasender::SECRET_HEADER, secret.clone())),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct StatusWebhook {
    poster: Poster,
    app_secret: Option<Vec<u8>>,
    /// Follow `sent` with `delivered`.
    delivered: bool,
    /// Wait this long after the send before posting.
    pub delay: Duration,
}

impl StatusWebhook {
    pub fn new(url: String, app_secret: Option<String>, delivered: bool) -> Self {
        Self {
            poster: Poster::new(url),
            app_secret: app_secret.map(String::into_bytes),
            delivered,
            delay: Duration::ZERO,
        }
    }

    /// Posts the statuses of `send` in the background, `sent` first.
    pub fn spawn_post(&self, send: &RecordedSend) {
        let now = SystemTime::now();
        let mut bodies = vec![status_body(send, "sent", now)];
        if self.delivered {
            bodies.push(status_body(send, "delivered", now));
        }
        let header = match &self.app_secret {
            Some(secret) => Header::MetaSignature(secret.clone()),
            None => Header::None,
        };
        self.poster
            .spawn(self.delay, bodies, header, send.message_id.clone());
    }
}

#[derive(Debug, Clone)]
pub(super) struct GatewayWebhook {
    poster: Poster,
    secret: Option<String>,
    delivered: bool,
    pub delay: Duration,
}

impl GatewayWebhook {
    pub fn new(url: String, secret: Option<String>, delivered: bool) -> Self {
        Self {
            poster: Poster::new(url),
            secret,
            delivered,
            delay: Duration::ZERO,
        }
    }

    /// Posts `messages.update` events for a gateway send in the background, sent first.
    pub fn spawn_post(&self, send: &RecordedSend, key: StatusKeyId) {
        let now = SystemTime::now();
        let mut bodies = vec![gateway_status_body(send, key, GATEWAY_SENT, now)];
        if self.delivered {
            bodies.push(gateway_status_body(send, key, GATEWAY_DELIVERED, now));
        }
        let header = match &self.secret {
            Some(secret) => Header::SharedSecret(secret.clone()),
            None => Header::None,
        };
        self.poster
            .spawn(self.delay, bodies, header, send.message_id.clone());
    }
}

/// WASender's `messages.update` for one of our own (`fromMe`) messages.
pub(super) fn gateway_status_body(
    send: &RecordedSend,
    key: StatusKeyId,
    status: i64,
    now: SystemTime,
) -> Vec<u8> {
    let id = match (key, &send.key_id) {
        (StatusKeyId::Key, Some(key_id)) => key_id.as_str(),
        _ => send.message_id.as_str(),
    };
    let timestamp_ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    json!({
        "event": "messages.update",
        "timestamp": timestamp_ms,
        "sessionId": send.phone_number_id,
        "data": {
            "key": { "id": id, "fromMe": true, "remoteJid": jid(&send.to) },
            "update": { "status": status },
        },
    })
    .to_string()
    .into_bytes()
}

/// `+34600000001` → `34600000001@s.whatsapp.net`; a JID (`…@g.us`) stays as it is.
pub(super) fn jid(to: &str) -> String {
    if to.contains('@') {
        to.to_owned()
    } else {
        format!("{}@s.whatsapp.net", to.trim_start_matches('+'))
    }
}

/// A notification carrying one status (`sent`, `delivered`), non-ASCII escaped the way Meta
/// sends it.
pub(super) fn status_body(send: &RecordedSend, kind: &str, now: SystemTime) -> Vec<u8> {
    let timestamp = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string();
    let mut status = json!({
        "id": send.message_id,
        "status": kind,
        "timestamp": timestamp,
        "recipient_id": send.to.trim_start_matches('+'),
    });
    if let Some(callback_data) = &send.callback_data {
        status["biz_opaque_callback_data"] = json!(callback_data);
    }
    let root = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": WABA_ID,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": DISPLAY_PHONE_NUMBER,
                        "phone_number_id": send.phone_number_id,
                    },
                    "statuses": [status],
                },
            }],
        }],
    });
    let raw = root.to_string().into_bytes();
    signature::escape_unicode(&raw).unwrap_or(raw)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use tokio::sync::mpsc;

    use super::super::FakeCloudArgs;
    use super::super::tests::{TOKEN, reply, start};
    use super::*;
    use crate::domain::DeliveryStatus;
    use crate::whatsapp::cloud;
    use crate::whatsapp::send::{CloudClient, SendError, TextReply};

    /// A webhook receiver that forwards every (signature header, body) it gets.
    async fn receiver() -> (String, mpsc::UnboundedReceiver<(Option<String>, Bytes)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let router = Router::new().route(
            "/webhook",
            post(move |headers: HeaderMap, body: Bytes| async move {
                let signature = headers
                    .get(signature::HEADER)
                    .map(|v| v.to_str().unwrap().to_owned());
                tx.send((signature, body)).unwrap();
                "ok"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (format!("http://{addr}/webhook"), rx)
    }

    #[tokio::test]
    async fn accepted_sends_post_a_signed_sent_status_webhook() {
        let (url, mut webhooks) = receiver().await;
        let args = FakeCloudArgs {
            status_webhook_url: Some(url),
            app_secret: Some("app-secret".into()),
            ..FakeCloudArgs::default()
        };
        let (fake, client) = start(args).await;
        let accepted = client.send_text(TOKEN, &reply("héllo")).await.unwrap();
        let (header, body) = tokio::time::timeout(Duration::from_secs(5), webhooks.recv())
            .await
            .expect("a status webhook within 5 s")
            .unwrap();
        let verified =
            signature::verify(b"app-secret", header.as_deref().map(str::as_bytes), &body);
        assert_eq!(verified, Ok(()));
        let notification = cloud::parse_notification(&body).unwrap();
        let status = &notification.statuses[0];
        assert_eq!(status.message_id.as_str(), accepted.message_id);
        assert_eq!(status.status, DeliveryStatus::Sent);
        assert_eq!(status.callback_data.as_deref(), Some("ledger-1"));
        assert_eq!(status.phone_number_id.as_str(), "1001");

        // A held-back send still gets its webhook, before its answer.
        fake.set_timeout_ratio(1.0);
        let impatient = CloudClient::new(&fake.base_url(), Duration::from_millis(300));
        let held = TextReply {
            callback_data: "ledger-2",
            ..reply("hi")
        };
        assert!(matches!(
            impatient.send_text(TOKEN, &held).await,
            Err(SendError::Unknown(_))
        ));
        let (_, body) = tokio::time::timeout(Duration::from_secs(5), webhooks.recv())
            .await
            .unwrap()
            .unwrap();
        let notification = cloud::parse_notification(&body).unwrap();
        assert_eq!(
            notification.statuses[0].callback_data.as_deref(),
            Some("ledger-2")
        );
        assert_eq!(
            notification.statuses[0].message_id.as_str(),
            fake.sends()[1].message_id
        );
        fake.shutdown().await;
    }

    #[tokio::test]
    async fn delivered_follows_sent_when_asked() {
        let (url, mut webhooks) = receiver().await;
        let args = FakeCloudArgs {
            status_webhook_url: Some(url),
            delivered_status: true,
            ..FakeCloudArgs::default()
        };
        let (fake, client) = start(args).await;
        let accepted = client.send_text(TOKEN, &reply("hi")).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (_, body) = tokio::time::timeout(Duration::from_secs(5), webhooks.recv())
                .await
                .expect("a status webhook within 5 s")
                .unwrap();
            let status = cloud::parse_notification(&body).unwrap().statuses[0].clone();
            assert_eq!(status.message_id.as_str(), accepted.message_id);
            assert_eq!(status.callback_data.as_deref(), Some("ledger-1"));
            seen.push(status.status);
        }
        assert_eq!(seen, [DeliveryStatus::Sent, DeliveryStatus::Delivered]);
        fake.shutdown().await;
    }

    #[test]
    fn the_body_omits_absent_callback_data_and_the_plus_sign() {
        let send = RecordedSend {
            provider: crate::domain::Provider::Cloud,
            phone_number_id: "1001".into(),
            to: "+4915550001111".into(),
            body: "x".into(),
            context_message_id: None,
            callback_data: None,
            message_id: "wamid.FAKE.1".into(),
            key_id: None,
            authorization: None,
            received_at_ms: 0,
        };
        let body = status_body(
            &send,
            "sent",
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let status = &value["entry"][0]["changes"][0]["value"]["statuses"][0];
        assert_eq!(status["recipient_id"], "4915550001111");
        assert_eq!(status["timestamp"], "1700000000");
        assert!(status.get("biz_opaque_callback_data").is_none());
    }
}
