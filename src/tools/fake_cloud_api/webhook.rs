//! The `sent` status webhook the fake posts after each accepted send, in the Cloud API's shape:
//! the new outbound id plus the `biz_opaque_callback_data` the sender passed, signed like Meta
//! signs (HMAC-SHA256 over the escaped-unicode body). Posted from a task of its own, so it can
//! arrive before the send's answer — as it can from Meta.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::RecordedSend;
use crate::whatsapp::signature;

/// Attempts per webhook, with a doubling pause in between; Meta retries for days, the fake
/// only long enough to ride out a receiver that is starting up.
const ATTEMPTS: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const WABA_ID: &str = "900000000000001";
const DISPLAY_PHONE_NUMBER: &str = "15550000000";

#[derive(Debug, Clone)]
pub(super) struct StatusWebhook {
    url: String,
    app_secret: Option<Vec<u8>>,
    http: reqwest::Client,
}

impl StatusWebhook {
    pub fn new(url: String, app_secret: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("building a rustls HTTP client does not fail");
        Self {
            url,
            app_secret: app_secret.map(String::into_bytes),
            http,
        }
    }

    /// Posts the `sent` status for `send` in the background.
    pub fn spawn_post(&self, send: &RecordedSend) {
        let hook = self.clone();
        let body = sent_status_body(send, SystemTime::now());
        let message_id = send.message_id.clone();
        tokio::spawn(async move { hook.post(body, &message_id).await });
    }

    async fn post(&self, body: Vec<u8>, message_id: &str) {
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(secret) = &self.app_secret {
                request = request.header(signature::HEADER, signature::sign(secret, &body));
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

/// A notification carrying one `sent` status, non-ASCII escaped the way Meta sends it.
pub(super) fn sent_status_body(send: &RecordedSend, now: SystemTime) -> Vec<u8> {
    let timestamp = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string();
    let mut status = json!({
        "id": send.message_id,
        "status": "sent",
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
