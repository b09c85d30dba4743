//! The numbers that show the promise holds, read the way an operator reads them: gauges and
//! counters in `/metrics`, JSON log lines from the real binary, and `replyd prune` run as a
//! command.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures::*;
use crate::helpers::*;
use crate::retention::{scalar, text_from_at};

const U1: &str = "34600000201";
const U2: &str = "34600000202";

#[tokio::test]
async fn pending_oldest_age_dead_letters_and_sweeps_are_in_metrics() {
    let app = spawn_app().await;
    assert_eq!(app.metric("replyd_pending_messages").await, 0.0);
    assert_eq!(app.metric("replyd_oldest_pending_age_seconds").await, 0.0);
    let (status, _) = app
        .admin_post(&format!("/contacts/{PHONE_NUMBER_ID}/{U1}/opt-out"), None)
        .await;
    assert_eq!(status, 200);
    let old = now_s() - 300;
    app.post_webhook(text_from_at(U1, "wamid.O.1", "hola", old))
        .await;
    app.post_webhook(text_from_at(U2, "wamid.O.2", "hola", old + 60))
        .await;
    app.post_webhook(br#"{"object":"whatsapp_business_account","entry":7}"#.to_vec())
        .await;

    assert_eq!(app.metric("replyd_pending_messages").await, 2.0);
    let age = app.metric("replyd_oldest_pending_age_seconds").await;
    assert!((300.0..360.0).contains(&age), "oldest pending age {age}");
    assert_eq!(app.metric("replyd_dead_letters_open").await, 1.0);
    assert_eq!(
        app.metric(r#"replyd_dead_letters_by_origin_total{origin="payload"}"#)
            .await,
        1.0
    );

    let (status, _) = app.admin_post("/sweep?dry_run=true", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.metric("replyd_sweep_runs_total").await,
        0.0,
        "a dry run decides nothing"
    );
    let (status, _) = app.admin_post("/sweep", None).await;
    assert_eq!(status, 200);
    assert_eq!(app.metric("replyd_sweep_runs_total").await, 1.0);
    let silent = r#"replyd_sweep_decisions_total{decision="silent",reason="opted_out"}"#;
    assert_eq!(app.metric(silent).await, 1.0);
    let skip = r#"replyd_sweep_decisions_total{decision="skip",reason="in_flight"}"#;
    assert_eq!(app.metric(skip).await, 1.0, "U2's job is queued");
    assert_eq!(app.metric("replyd_pending_messages").await, 1.0);
    let age = app.metric("replyd_oldest_pending_age_seconds").await;
    assert!((240.0..300.0).contains(&age), "now U2's message: {age}");
}

/// Runs `replyd` with `args` on the app's database (its other settings from the test config).
pub fn replyd(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_replyd"));
    command
        .args(args)
        .env_clear()
        .current_dir(app.dir.path())
        .env("NO_COLOR", "1")
        .env(
            "REPLYD_DATABASE_URL",
            format!("sqlite://{}", app.db_path().display()),
        )
        .env("REPLYD_SPOOL_DIR", app.dir.path().join("cli-spool"))
        .env("REPLYD_APP_SECRET", APP_SECRET)
        .env("REPLYD_VERIFY_TOKEN", VERIFY_TOKEN)
        .env("REPLYD_ADMIN_TOKEN", ADMIN_TOKEN);
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

#[tokio::test]
async fn replyd_prune_prints_its_counts_dry_and_for_real() {
    let app = spawn_replying_app(|_| {}).await;
    app.post_webhook(text_from_at(U1, "wamid.C.1", "to be pruned", now_s()))
        .await;
    app.settled().await;
    tokio::time::sleep(Duration::from_millis(20)).await; // older than the 1 ms retention
    let retention = [("REPLYD_RETENTION", "1ms")];

    let dry = replyd(&app, &["prune", "--dry-run"], &retention)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(out.contains("would remove"), "{out}");
    assert!(
        out.contains("         1  message bodies and payloads"),
        "{out}"
    );
    let with_body = "SELECT count(*) FROM inbound_messages WHERE body IS NOT NULL";
    assert_eq!(
        scalar(&app, with_body).await,
        1,
        "a dry run changes nothing"
    );

    let real = replyd(&app, &["prune"], &retention).output().unwrap();
    let out = String::from_utf8_lossy(&real.stdout);
    assert!(real.status.success(), "{out}");
    assert!(
        out.contains("removed") && out.contains("         1  reply texts"),
        "{out}"
    );
    assert_eq!(scalar(&app, with_body).await, 0);

    let refused = replyd(&app, &["prune"], &[("REPLYD_RETENTION", "0s")])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("retention must be longer than 0"), "{err}");
}

#[tokio::test]
async fn json_logs_are_one_json_object_per_line() {
    let app = spawn_app().await;
    let mut child = replyd(
        &app,
        &["serve"],
        &[
            ("REPLYD_LOG_FORMAT", "json"),
            ("REPLYD_LISTEN", "127.0.0.1:0"),
            ("REPLYD_WORKER_ENABLED", "false"),
            ("RUST_LOG", "info"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("replyd starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let listening = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break None;
        };
        let parsed: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            parsed["timestamp"].is_string() && parsed["level"].is_string(),
            "{line}"
        );
        lines.push(line);
        if parsed["message"] == "replyd listening" {
            break Some(parsed);
        }
    };
    child.kill().ok();
    child.wait().ok();
    let listening = listening.unwrap_or_else(|| panic!("no listening line in {lines:?}"));
    assert!(
        listening["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "fields are top-level keys: {listening}"
    );
    assert_eq!(listening["level"], "INFO");

    let bad = replyd(&app, &["migrate"], &[("REPLYD_LOG_FORMAT", "xml")])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an unknown log format is refused");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("log_format"));
}

#[tokio::test]
async fn replyd_dlq_replay_takes_many_ids_or_all_and_reports_each() {
    let app = spawn_app().await;
    for (i, user) in [U1, U2].into_iter().enumerate() {
        let id = format!("wamid.D.{i}");
        app.post_webhook(text_from_at(user, &id, "hola", now_s()))
            .await;
        let inbound = scalar(
            &app,
            &format!("SELECT id FROM inbound_messages WHERE message_id = '{id}'"),
        )
        .await;
        app.store
            .dead_letter_message(inbound, None, "cloud_api_131026", "undeliverable", 1, 1)
            .await
            .unwrap();
    }
    assert_eq!(app.dead_letters().await.len(), 2);

    let none = replyd(&app, &["dlq", "replay"], &[]).output().unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--all"));

    let all = replyd(&app, &["dlq", "replay", "--all"], &[])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&all.stdout);
    assert!(
        all.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert_eq!(
        out.matches("replayed: the message is queued again").count(),
        2,
        "{out}"
    );
    assert!(app.dead_letters().await.is_empty());

    let missing = replyd(&app, &["dlq", "replay", "1", "999"], &[])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "not every one was replayed");
    let out = String::from_utf8_lossy(&missing.stdout);
    assert!(
        out.contains("dead letter 1 is not open") && out.contains("no dead letter 999"),
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("2 of 2 dead letter(s) not replayed")
    );
}
