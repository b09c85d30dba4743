//! Webhook routes: Meta's verification handshake, Cloud API notifications and the WASender
//! gateway. Signature first (nothing is stored for a forged request), then the ingestor makes
//! the delivery durable and only then is it acknowledged.
//!
//! A gateway event belongs to the session whose secret it carries; an event that names another
//! session (`sessionId`) is refused, so one session can never write into another's rows.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::domain::Origin;
use crate::ingest::{self, Acceptance};
use crate::store::IngestUnit;
use crate::whatsapp::{signature, wasender};

/// `GET /webhook?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`
pub async fn verify_handshake(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mode_ok = q.get("hub.mode").is_some_and(|m| m == "subscribe");
    let token_ok = q
        .get("hub.verify_token")
        .is_some_and(|t| state.config.verify_token.matches(t.as_bytes()));
    match (mode_ok && token_ok, q.get("hub.challenge")) {
        (true, Some(challenge)) => (StatusCode::OK, challenge.clone()).into_response(),
        _ => {
            state.metrics.reject("verify_token");
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

/// `POST /webhook`: Cloud API notifications, `X-Hub-Signature-256` over the raw body.
///
/// The header (and a configured secret) is checked before the body is read: a request that
/// cannot be authentic is refused without costing its body.
pub async fn receive_cloud(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let secret = state.config.app_secret.expose().as_bytes();
    let presented = request
        .headers()
        .get(signature::HEADER)
        .map(|v| v.as_bytes());
    let expected = match signature::Expected::from_header(secret, presented) {
        Ok(expected) => expected,
        Err(e) => return refuse_signature(&state, e, 0),
    };
    let body = match read_body(&state, request).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(e) = expected.verify(secret, &body) {
        return refuse_signature(&state, e, body.len());
    }
    let unit = state.ingestor.parse(&Origin::Cloud, &body);
    accept(&state, unit, body, started).await
}

fn refuse_signature(state: &AppState, e: signature::SignatureError, bytes: usize) -> Response {
    state.metrics.reject(e.reason());
    tracing::debug!(reason = e.reason(), bytes, "webhook refused");
    (StatusCode::UNAUTHORIZED, e.to_string()).into_response()
}

/// `POST /webhook/wasender`: gateway events, authenticated by the shared secret header
/// (checked before the body is read), attributed to the session that secret belongs to.
pub async fn receive_wasender(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    if state.gateways.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "no WASender gateway is configured ([[gateways]] or REPLYD_WASENDER_*)",
        )
            .into_response();
    }
    let presented = request
        .headers()
        .get(wasender::SECRET_HEADER)
        .map(|v| v.as_bytes());
    let Some(session) = presented.and_then(|p| state.gateways.by_secret(p)).cloned() else {
        state.metrics.reject(if presented.is_some() {
            "signature_mismatch"
        } else {
            "signature_missing"
        });
        return (
            StatusCode::UNAUTHORIZED,
            "wrong or missing X-Webhook-Signature",
        )
            .into_response();
    };
    let body = match read_body(&state, request).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let parsed = wasender::parse_event(&body, &session);
    if let Some(named) = parsed.as_ref().ok().and_then(|e| e.session_id.as_deref()) {
        if !state.gateways.names(&session, named) {
            let known = state.gateways.is_configured(named);
            state.metrics.reject(if known {
                "session_mismatch"
            } else {
                "unknown_session"
            });
            tracing::debug!(session = %session, "gateway event names another session; refused");
            return (
                StatusCode::UNAUTHORIZED,
                "the event names a session its secret does not belong to",
            )
                .into_response();
        }
    }
    let origin = Origin::Wasender { session };
    let unit = ingest::unit_from(
        origin,
        parsed.map(|e| e.notification),
        &body,
        state.ingestor.keywords(),
    );
    accept(&state, unit, body, started).await
}

/// A body over the size limit is refused with 413 before anything is read into the store.
async fn read_body(state: &AppState, request: Request) -> Result<Bytes, BytesRejection> {
    Bytes::from_request(request, state)
        .await
        .inspect_err(|rejection| {
            let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "body_unreadable"
            };
            state.metrics.reject(reason);
        })
}

async fn accept(state: &AppState, unit: IngestUnit, body: Bytes, started: Instant) -> Response {
    state
        .metrics
        .webhooks
        .get_or_create(&[("provider", unit.origin.provider().as_str())])
        .inc();
    let response = match state.ingestor.accept_unit(unit, body).await {
        Ok(Acceptance::Stored(_) | Acceptance::Spooled) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "webhook could not be made durable");
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable").into_response()
        }
    };
    state
        .metrics
        .ingest_latency
        .observe(started.elapsed().as_secs_f64());
    response
}
