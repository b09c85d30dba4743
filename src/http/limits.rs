//! Request limits that keep slow or hostile clients from costing more than they are worth:
//! requests in flight are bounded (beyond the bound: 503 with `Retry-After`, never a queue that
//! grows), and a request's body must arrive within a deadline counted from its headers.
//!
//! The body deadline is a total, not an idle timeout between chunks: a client that trickles one
//! byte just before each idle timeout would otherwise hold its request open indefinitely
//! (`tower_http`'s `RequestBodyTimeout` resets per frame, hence this wrapper).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// Seconds a client is asked to wait when every in-flight slot is taken.
const RETRY_AFTER_S: &str = "1";

/// What the limit middlewares share, built once per router from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    in_flight: Arc<Semaphore>,
    body_read_timeout: Duration,
}

impl Limits {
    pub fn new(max_in_flight: usize, body_read_timeout: Duration) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            body_read_timeout,
        }
    }
}

/// Takes an in-flight slot for the whole handling of the request, or answers 503 at once.
pub async fn limit_in_flight(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_slot) = limits.in_flight.try_acquire_owned() else {
        tracing::debug!("request refused: every in-flight slot is taken");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER_S)],
            "too many requests in flight; retry shortly",
        )
            .into_response();
    };
    next.run(request).await
}

/// Gives the request body a deadline; a body not received by then fails to read and the
/// request is answered 408 with `Connection: close` (the rest of it is never read).
pub async fn body_deadline(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limits.body_read_timeout)),
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    if expired.load(Ordering::Acquire) {
        tracing::debug!(
            timeout_ms = limits.body_read_timeout.as_millis() as u64,
            "request body not received in time"
        );
        return (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            "the request body was not received within the body read timeout",
        )
            .into_response();
    }
    response
}

#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within the body read timeout")]
pub struct BodyReadTimeout;

/// A body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
