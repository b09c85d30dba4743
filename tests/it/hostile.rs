//! Slow and hostile clients over raw TCP: headers sent slowly, half a body, more connections
//! or requests than allowed, a body that could not be authentic, and shutdown with a request
//! still half-sent. Timeouts are shrunk through the configuration; bounds have generous slack.

use std::time::{Duration, Instant};

use replyd::config::Config;
use replyd::secret::Secret;
use replyd::whatsapp::signature;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures::*;
use crate::helpers::*;

/// Bounds for anything that "happens promptly": far above the configured timeouts, far below
/// the defaults a broken server would fall back to.
const PROMPT: Duration = Duration::from_secs(5);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.strip_prefix("http://").expect("http base");
    TcpStream::connect(addr).await.expect("connects")
}

/// Reads until the server closes (or `within` passes); returns what arrived and when it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&seen).into(),
                    Some(started.elapsed()),
                );
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into(), None),
        }
    }
}

/// The request line and headers of a webhook POST announcing `length` body bytes.
fn webhook_head(length: usize, signature: Option<&str>) -> String {
    let mut head = format!(
        "POST /webhook HTTP/1.1\r\nhost: replyd\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n"
    );
    if let Some(sig) = signature {
        head.push_str(&format!("x-hub-signature-256: {sig}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Waits until a limited route answers 503: proof that the in-flight slot is taken.
async fn until_saturated(app: &TestApp) {
    let deadline = Instant::now() + PROMPT;
    while app.get("/readyz").await.status() != 503 {
        assert!(
            Instant::now() < deadline,
            "the in-flight slot was never taken"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn tight(c: &mut Config) {
    c.header_read_timeout = Duration::from_millis(300);
    c.body_read_timeout = Duration::from_millis(300);
}

#[tokio::test]
async fn a_client_sending_headers_slowly_is_cut_within_the_header_timeout() {
    let app = spawn_app_with(tight).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nhost: replyd\r\n")
        .await
        .unwrap();
    let (mut read, mut write) = stream.split();
    let dribble = async {
        // One header byte every 50 ms, never finishing the headers.
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if write.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let closed_after = tokio::select! {
        after = closed => after,
        () = dribble => panic!("the slow client was never cut"),
    };
    assert!(
        closed_after >= Duration::from_millis(250) && closed_after < PROMPT,
        "cut after {closed_after:?}, header timeout 300 ms"
    );
    // An idle connection that never sends anything is closed as well.
    let mut idle = connect(&app).await;
    let (_, closed) = read_until_closed(&mut idle, PROMPT).await;
    assert!(closed.is_some(), "an idle connection stays open");
}

#[tokio::test]
async fn a_client_sending_half_a_body_is_cut_within_the_body_timeout() {
    let app = spawn_app_with(tight).await;
    let body = text_notification("wamid.SLOW.1", "half of me");
    let sig = signature::sign(APP_SECRET.as_bytes(), &body);
    let mut stream = connect(&app).await;
    stream
        .write_all(webhook_head(body.len(), Some(&sig)).as_bytes())
        .await
        .unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    let (answer, closed) = read_until_closed(&mut stream, PROMPT).await;
    let closed = closed.expect("the connection was closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed >= Duration::from_millis(250), "cut after {closed:?}");
    assert!(app.message("wamid.SLOW.1").await.is_none());
    assert_eq!(app.summary().await["inbound"], 0);
}

#[tokio::test]
async fn connections_beyond_the_maximum_are_not_served_until_one_closes() {
    let app = spawn_app_with(|c| c.max_connections = 2).await;
    let first = connect(&app).await;
    let _second = connect(&app).await;
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: replyd\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(400), third.read(&mut buf)).await;
    assert!(early.is_err(), "a third connection was served: {early:?}");
    drop(first);
    let n = tokio::time::timeout(PROMPT, third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn requests_beyond_the_in_flight_maximum_get_503_with_retry_after() {
    let app = spawn_app_with(|c| c.max_in_flight = 1).await;
    let body = text_notification("wamid.FLIGHT.1", "held open");
    let sig = signature::sign(APP_SECRET.as_bytes(), &body);
    let mut held = connect(&app).await;
    held.write_all(webhook_head(body.len(), Some(&sig)).as_bytes())
        .await
        .unwrap();
    held.write_all(&body[..10]).await.unwrap();
    until_saturated(&app).await;

    let refused = app
        .post_webhook(text_notification("wamid.FLIGHT.2", "x"))
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let (status, _) = app.admin_get("/summary").await;
    assert_eq!(status, 503, "the admin API shares the bound");
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness stays outside it"
    );

    held.write_all(&body[10..]).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(PROMPT, held.read(&mut buf))
        .await
        .expect("the held request completes")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    assert_eq!(
        app.get("/readyz").await.status(),
        200,
        "the slot is free again"
    );
    assert!(app.message("wamid.FLIGHT.1").await.is_some());
    assert!(app.message("wamid.FLIGHT.2").await.is_none());
}

#[tokio::test]
async fn an_unauthenticated_body_is_refused_before_it_is_sent() {
    for (secret, header) in [
        (Secret::new(APP_SECRET), None),
        (Secret::new(APP_SECRET), Some("sha256=not-hex")),
        (Secret::new(APP_SECRET), Some("md5=abc")),
        (Secret::default(), Some(&*signature::sign(b"", b"{}"))),
    ] {
        let app = spawn_app_with(|c| {
            c.app_secret = secret.clone();
            c.body_read_timeout = Duration::from_secs(60);
        })
        .await;
        let mut stream = connect(&app).await;
        // 4 MiB announced, none of it sent.
        stream
            .write_all(webhook_head(4 * 1024 * 1024, header).as_bytes())
            .await
            .unwrap();
        let (answer, closed) = read_until_closed(&mut stream, PROMPT).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{header:?}: {answer}");
        assert!(
            closed.is_some(),
            "{header:?}: the connection is closed, the body unread"
        );
    }
}

#[tokio::test]
async fn shutdown_with_a_half_sent_request_finishes_within_the_deadline() {
    let app = spawn_app_with(|c| {
        c.max_in_flight = 1;
        c.body_read_timeout = Duration::from_secs(60);
        c.shutdown_deadline = Duration::from_millis(500);
    })
    .await;
    // Acknowledged before shutdown: must be durable after it.
    assert_eq!(
        app.post_webhook(text_notification("wamid.BEFORE.1", "ack"))
            .await
            .status(),
        200
    );
    let body = text_notification("wamid.HALF.1", "never finished");
    let sig = signature::sign(APP_SECRET.as_bytes(), &body);
    let mut half = connect(&app).await;
    half.write_all(webhook_head(body.len(), Some(&sig)).as_bytes())
        .await
        .unwrap();
    half.write_all(&body[..body.len() / 2]).await.unwrap();
    until_saturated(&app).await;

    let started = Instant::now();
    let store = app.store.clone();
    let _dir = tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .expect("shutdown finished");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(10),
        "shutdown took {took:?} with a 500 ms deadline"
    );
    let (_, closed) = read_until_closed(&mut half, PROMPT).await;
    assert!(
        closed.is_some(),
        "the half-sent request's connection was closed"
    );
    assert!(store.message("wamid.BEFORE.1").await.unwrap().is_some());
    assert!(store.message("wamid.HALF.1").await.unwrap().is_none());
}
