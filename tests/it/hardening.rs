//! Small holes closed at the edge: bounded operator notes, database passwords kept out of
//! errors and logs, a log line per ignored duplicate delivery.

use std::process::Command;

use serde_json::json;

use crate::fixtures::*;
use crate::helpers::*;

#[tokio::test]
async fn operator_notes_past_256_characters_are_refused_with_422() {
    let app = spawn_app().await;
    let path = |action: &str| format!("/conversations/{PHONE_NUMBER_ID}/{USER}/{action}");
    let long = "é".repeat(257);
    let (status, body) = app
        .admin_post(&path("takeover"), Some(json!({ "by": long })))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("256"), "{body}");
    let (status, body) = app
        .admin_post(&path("escalate"), Some(json!({ "reason": long })))
        .await;
    assert_eq!(status, 422, "{body}");
    // Nothing changed: the conversation is still the bot's.
    let (status, listed) = app.admin_get("/conversations?mode=bot").await;
    assert_eq!(status, 200);
    assert!(
        listed["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["mode"] == "bot"),
        "{listed}"
    );
    let most = "é".repeat(256);
    let (status, body) = app
        .admin_post(&path("takeover"), Some(json!({ "by": most })))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_database_password_never_reaches_errors_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_replyd"))
        .arg("migrate")
        .current_dir(dir.path())
        .env(
            "REPLYD_DATABASE_URL",
            "postgres://replyd:hunter2@127.0.0.1:1/replyd",
        )
        .env("REPLYD_SPOOL_DIR", dir.path().join("spool"))
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
    assert!(
        said.contains("postgres://replyd:***@127.0.0.1:1/replyd"),
        "{said}"
    );
}

/// Collects what `tracing` writes while a test runs on the current thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the writer task and the handlers run where the capturing subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn every_ignored_duplicate_delivery_is_logged_by_message_id_without_the_number() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = spawn_app().await;
    let body = text_notification("wamid.DUP.LOG.1", "secret words");
    for _ in 0..3 {
        assert_eq!(app.post_webhook(body.clone()).await.status(), 200);
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("duplicate delivery ignored"))
        .collect();
    assert_eq!(lines.len(), 2, "{logs}");
    for line in lines {
        assert!(line.contains("INFO"), "{line}");
        assert!(line.contains("wamid.DUP.LOG.1"), "{line}");
        assert!(!line.contains(USER), "{line}");
        assert!(!line.contains("secret words"), "{line}");
    }
}
