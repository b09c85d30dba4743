//! The real `replyd serve` binary under SIGTERM with a request still half-sent: it stops
//! accepting, closes what is open at the shutdown deadline and exits cleanly, and what it
//! acknowledged before is in the database afterwards.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use replyd::store::{Store, StoreOptions};
use replyd::whatsapp::signature;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures::*;
use crate::helpers::*;

/// Kills the child if the test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request over its own connection; returns the status line.
async fn request(addr: &str, head: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn webhook_head(length: usize, sig: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: replyd\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nx-hub-signature-256: {sig}\r\n\r\n"
    )
}

#[tokio::test]
async fn sigterm_with_a_half_sent_request_exits_within_the_shutdown_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("replyd.db").display());
    let child = Command::new(env!("CARGO_BIN_EXE_replyd"))
        .arg("serve")
        .env_clear()
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("REPLYD_LISTEN", "127.0.0.1:0")
        .env("REPLYD_DATABASE_URL", &db_url)
        .env("REPLYD_SPOOL_DIR", dir.path().join("spool"))
        .env("REPLYD_APP_SECRET", APP_SECRET)
        .env("REPLYD_VERIFY_TOKEN", VERIFY_TOKEN)
        .env("REPLYD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("REPLYD_WORKER_ENABLED", "false")
        .env("REPLYD_MAX_IN_FLIGHT", "1")
        .env("REPLYD_BODY_READ_TIMEOUT", "120s")
        .env("REPLYD_SHUTDOWN_DEADLINE", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replyd starts");
    let mut child = Running(child);

    // The log names the bound address; keep reading so the pipe never fills.
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (address_tx, address_rx) = mpsc::channel();
    let stderr = child.0.stderr.take().unwrap();
    let log_lines = log.clone();
    std::thread::spawn(move || {
        let address = regex::Regex::new(r"127\.0\.0\.1:\d+").unwrap();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("replyd listening") {
                if let Some(found) = address.find(&line) {
                    let _ = address_tx.send(found.as_str().to_owned());
                }
            }
            log_lines.lock().unwrap().push(line);
        }
    });
    let addr = address_rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("no address logged: {:?}", log.lock().unwrap()));

    let acked = text_notification("wamid.TERM.ACK", "acknowledged before SIGTERM");
    let sig = signature::sign(APP_SECRET.as_bytes(), &acked);
    let status = request(&addr, &webhook_head(acked.len(), &sig), &acked).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    let half = text_notification("wamid.TERM.HALF", "never finished");
    let sig = signature::sign(APP_SECRET.as_bytes(), &half);
    let mut held = TcpStream::connect(&addr).await.unwrap();
    held.write_all(webhook_head(half.len(), &sig).as_bytes())
        .await
        .unwrap();
    held.write_all(&half[..half.len() / 2]).await.unwrap();
    // The one in-flight slot is taken once the half-sent request is being handled.
    let saturated_by = Instant::now() + Duration::from_secs(15);
    loop {
        let status = request(
            &addr,
            "GET /readyz HTTP/1.1\r\nhost: replyd\r\nconnection: close\r\n\r\n",
            b"",
        )
        .await;
        if status.starts_with("HTTP/1.1 503") {
            break;
        }
        assert!(Instant::now() < saturated_by, "never in flight: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM (deadline 1 s): {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit:?}: {:?}", log.lock().unwrap());
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM with a 1 s deadline"
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), held.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the held connection was closed"
    );

    let store = Store::connect(&db_url.clone().into(), &StoreOptions::default())
        .await
        .unwrap();
    assert!(store.message("wamid.TERM.ACK").await.unwrap().is_some());
    assert!(store.message("wamid.TERM.HALF").await.unwrap().is_none());
}
