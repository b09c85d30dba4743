//! The HTTP exchange both send clients share: one request, the whole answer read, and every
//! transport failure sorted into "never written" ([`SendError::NotSent`]) or "may have gone out"
//! ([`SendError::Unknown`]). What an error answer means is left to the caller, who knows its
//! provider's error body.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::RequestBuilder;
use reqwest::header::RETRY_AFTER;

use super::SendError;
use super::answer::parse_retry_after;
use crate::domain::Provider;

/// A connect gets at most half the request budget (and never more than this), so a slow connect
/// is reported by the connector as `NotSent` rather than by the overall timeout as ambiguous.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `timeout` bounds each call from connect to the last byte of the answer. Redirects are never
/// followed, so a client never replays a POST on its own.
pub(super) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout((timeout / 2).min(MAX_CONNECT_TIMEOUT))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("replyd/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("building a rustls HTTP client does not fail")
}

/// A non-2xx answer, as received.
pub(super) struct Refusal<'a> {
    pub http_status: u16,
    /// From the `Retry-After` header, when it was readable.
    pub retry_after: Option<Duration>,
    /// Empty when the body could not be read.
    pub body: &'a [u8],
}

/// Sends, reads the whole answer, and hands anything but a 2xx to `refused`. Records
/// `http_status` and `duration_ms` on the current span.
pub(super) async fn exchange(
    request: RequestBuilder,
    provider: Provider,
    refused: impl FnOnce(Refusal<'_>) -> SendError,
) -> Result<Bytes, SendError> {
    let span = tracing::Span::current();
    let started = Instant::now();
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, provider));
    span.record("duration_ms", started.elapsed().as_millis() as u64);
    let response = response?;
    let status = response.status();
    span.record("http_status", status.as_u16());
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = response.bytes().await;
    span.record("duration_ms", started.elapsed().as_millis() as u64);
    if status.is_success() {
        // The API answered 2xx, so the message was accepted even if the rest was lost.
        return body.map_err(|e| SendError::Unknown(described(provider, &e)));
    }
    let body = body.unwrap_or_default();
    Err(refused(Refusal {
        http_status: status.as_u16(),
        retry_after,
        body: &body,
    }))
}

/// Connect-phase failures (including the connect timeout) never wrote the request; anything
/// later, the overall timeout included, may have.
fn transport_error(error: &reqwest::Error, provider: Provider) -> SendError {
    if error.is_connect() || error.is_builder() {
        SendError::NotSent(described(provider, error))
    } else {
        SendError::Unknown(described(provider, error))
    }
}

/// `<upstream>: <error>: <cause>: …`
fn described(provider: Provider, error: &dyn std::error::Error) -> String {
    let mut out = format!("{}: {error}", upstream_name(provider));
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// How errors name the service that answered (or did not).
pub fn upstream_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Cloud => "Cloud API",
        Provider::Wasender => "WASender gateway",
    }
}
