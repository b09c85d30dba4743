//! `replyd simulate --until-settled` against the real server: it waits for the outcomes and
//! reports them (replied, silent by reason, dead, pending), and fails when they do not settle.

use serde_json::Value;

use crate::binary::{output, replyd};
use crate::helpers::{ADMIN_TOKEN, APP_SECRET, spawn_app, spawn_replying_app};

async fn simulate(base: &str, extra: &[&str]) -> (bool, Value, String) {
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("{base}/webhook");
    let mut args = vec![
        "simulate",
        "--url",
        &url,
        "--secret",
        APP_SECRET,
        "--admin-token",
        ADMIN_TOKEN,
        "--until-settled",
        "--json",
        "--seed",
        "42",
        "--connections",
        "8",
    ];
    args.extend_from_slice(extra);
    let out = output(replyd(cwd.path(), &[], &args)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), summary, stderr)
}

#[tokio::test]
async fn until_settled_reports_the_outcomes_of_the_mix() {
    let app = spawn_replying_app(|_| {}).await;
    let (ok, summary, stderr) = simulate(
        &app.base,
        &[
            "--requests",
            "200",
            "--senders",
            "1000000",
            "--keyword-ratio",
            "0.1",
            "--reaction-ratio",
            "0.1",
            "--media-ratio",
            "0.2",
        ],
    )
    .await;
    assert!(ok, "{summary}\n{stderr}");
    let kinds = &summary["kinds"];
    let outcomes = &summary["outcomes"];
    assert_eq!(outcomes["settled"], true, "{summary}");
    assert_eq!(outcomes["pending"], 0);
    assert_eq!(outcomes["inbound"], 200);
    assert_eq!(outcomes["dead"], 0);
    let (keywords, reactions) = (kinds["keyword"].as_u64(), kinds["reaction"].as_u64());
    assert!(keywords > Some(5) && reactions > Some(5), "{kinds}");
    // One message per sender: each keyword opts out only itself, each reaction goes unanswered.
    assert_eq!(
        outcomes["silent"]["opted_out"].as_u64(),
        keywords,
        "{summary}"
    );
    assert_eq!(
        outcomes["silent"]["no_reply"].as_u64(),
        reactions,
        "{summary}"
    );
    assert_eq!(
        outcomes["replied"].as_u64().unwrap(),
        200 - keywords.unwrap() - reactions.unwrap(),
        "{summary}"
    );
    // The server agrees.
    let server = app.summary().await;
    assert_eq!(server["outcomes"]["replied"], outcomes["replied"]);
    assert_eq!(summary["mix"]["keyword"], 0.1);
}

#[tokio::test]
async fn until_settled_fails_when_messages_stay_pending() {
    // Ingest only: no worker decides anything.
    let app = spawn_app().await;
    let (ok, summary, stderr) = simulate(
        &app.base,
        &["--requests", "20", "--settle-timeout", "300ms"],
    )
    .await;
    assert!(!ok, "{summary}");
    assert!(
        stderr.contains("not settled: 20 message(s) still pending"),
        "{stderr}"
    );
    assert_eq!(summary["outcomes"]["settled"], false);
    assert_eq!(summary["outcomes"]["pending"], 20);
    assert!(summary["outcomes"]["waited_s"].as_f64().unwrap() >= 0.3);
}

#[tokio::test]
async fn until_settled_with_a_wrong_admin_token_sends_nothing() {
    let app = spawn_app().await;
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("{}/webhook", app.base);
    let out = output(replyd(
        cwd.path(),
        &[],
        &[
            "simulate",
            "--url",
            &url,
            "--secret",
            APP_SECRET,
            "--admin-token",
            "wrong",
            "--until-settled",
            "--requests",
            "5",
        ],
    ))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the token (401)"), "{stderr}");
    assert_eq!(
        app.summary().await["inbound"],
        0,
        "checked before any traffic"
    );
}
