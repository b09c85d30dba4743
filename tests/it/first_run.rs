//! A first run as a new user makes it: the real binary in an empty directory with no
//! configuration generates its secrets once, reuses them, lets configured values win, and
//! `replyd serve` then `replyd simulate` (no flags) gets every message answered in the sandbox.

#![cfg(unix)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::binary::{Served, free_port, output, replyd};

fn stored(data_dir: &Path) -> toml_like::Secrets {
    toml_like::read(&data_dir.join("secrets.toml"))
}

/// Reads the three values back the way a user's script would, without replyd's own parser.
mod toml_like {
    use std::path::Path;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Secrets {
        pub app_secret: String,
        pub verify_token: String,
        pub admin_token: String,
    }

    pub fn read(path: &Path) -> Secrets {
        let text = std::fs::read_to_string(path).unwrap();
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{key} in {text}"))
                .to_owned()
        };
        Secrets {
            app_secret: value("app_secret"),
            verify_token: value("verify_token"),
            admin_token: value("admin_token"),
        }
    }
}

async fn admin_status(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/summary"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn handshake(base: &str, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{base}/webhook"))
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", token),
            ("hub.challenge", "ch-42"),
        ])
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_first_run_generates_private_secrets_once_and_configured_values_win() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("replyd-data");
    let env = [("REPLYD_LISTEN", "127.0.0.1:0")];

    let first = Served::start(cwd.path(), &env);
    let secrets = stored(&data);
    assert_eq!(
        std::fs::metadata(data.join("secrets.toml")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o777, 0o700);
    assert!(
        data.join("replyd.db").exists(),
        "the store follows the data dir"
    );
    let notice = first.stdout();
    assert!(notice.contains("./replyd-data/secrets.toml"), "{notice}");
    assert!(
        notice.contains(&secrets.admin_token),
        "shown once: {notice}"
    );
    assert!(!notice.contains(&secrets.app_secret));
    assert_eq!(admin_status(&first.base(), &secrets.admin_token).await, 200);
    assert_eq!(admin_status(&first.base(), "wrong").await, 401);
    assert_eq!(
        handshake(&first.base(), &secrets.verify_token).await,
        (200, "ch-42".to_owned())
    );
    let first_output = first.stop().await;
    assert!(
        !first_output
            .lines()
            .filter(|l| !notice.contains(*l))
            .any(|l| l.contains(&secrets.admin_token)),
        "the values appear in the notice only"
    );

    let second = Served::start(cwd.path(), &env);
    assert_eq!(stored(&data), secrets, "reused, not regenerated");
    assert_eq!(
        admin_status(&second.base(), &secrets.admin_token).await,
        200
    );
    let logs = second.stop().await;
    for value in [
        &secrets.app_secret,
        &secrets.verify_token,
        &secrets.admin_token,
    ] {
        assert!(
            !logs.contains(value.as_str()),
            "a later run shows no value: {logs}"
        );
    }
    assert!(logs.contains("secrets.toml"), "it names the file: {logs}");

    let configured = Served::start(
        cwd.path(),
        &[
            ("REPLYD_LISTEN", "127.0.0.1:0"),
            ("REPLYD_ADMIN_TOKEN", "configured-admin-token"),
        ],
    );
    let base = configured.base();
    assert_eq!(admin_status(&base, "configured-admin-token").await, 200);
    assert_eq!(admin_status(&base, &secrets.admin_token).await, 401);
    assert_eq!(
        handshake(&base, &secrets.verify_token).await.0,
        200,
        "the others still come from the file"
    );
    configured.stop().await;
    assert_eq!(
        stored(&data),
        secrets,
        "a configured value never rewrites the file"
    );
}

#[tokio::test]
async fn a_secrets_file_others_may_read_stops_serve_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("replyd-data");
    std::fs::create_dir(&data).unwrap();
    let path = data.join("secrets.toml");
    let text = "app_secret = \"a\"\nverify_token = \"b\"\nadmin_token = \"c\"\n";
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = output(replyd(
        cwd.path(),
        &[("REPLYD_LISTEN", "127.0.0.1:0")],
        &["serve"],
    ))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "never regenerated"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, "app_secret = \"a\"\n").unwrap();
    let out = output(replyd(
        cwd.path(),
        &[("REPLYD_LISTEN", "127.0.0.1:0")],
        &["serve"],
    ))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`verify_token` is missing"), "{stderr}");
}

/// THE sequence of issue 12: `replyd serve`, then `replyd simulate --requests 100
/// --keyword-ratio 0` in the same directory → 100 messages stored, each `replied`.
#[tokio::test]
async fn serve_then_simulate_with_no_flags_gets_every_message_replied() {
    let cwd = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [("REPLYD_LISTEN", listen.as_str())];
    let served = Served::start(cwd.path(), &env);

    let simulated = output(replyd(
        cwd.path(),
        &env,
        &["simulate", "--requests", "100", "--keyword-ratio", "0"],
    ))
    .await;
    let printed = String::from_utf8_lossy(&simulated.stdout).into_owned();
    assert!(
        simulated.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    assert!(printed.contains("2xx 100 "), "{printed}");
    let seed: u64 = printed
        .lines()
        .find_map(|l| l.strip_prefix("seed"))
        .and_then(|s| s.trim().parse().ok())
        .expect("the summary prints its seed");

    let token = stored(&cwd.path().join("replyd-data")).admin_token;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let request = client
            .get(format!("{}/api/v1{path}", served.base()))
            .bearer_auth(&token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let summary = loop {
        let summary = get("/summary".into()).await;
        if summary["outcomes"]["pending"] == 0 {
            break summary;
        }
        assert!(Instant::now() < deadline, "still pending: {summary}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(summary["inbound"], 100, "{summary}");
    assert_eq!(summary["outcomes"]["replied"], 100, "{summary}");
    for n in 0..100 {
        let message = get(format!("/messages/wamid.SIM.{seed}.{n}.0")).await;
        assert_eq!(message["outcome"], "replied", "{message}");
    }
    // And visible in the console, logged in with the generated admin token.
    let http = crate::console::plain_client();
    let session = crate::console::log_in_to(&served.base(), &token, &http).await;
    let page = |path: &'static str| {
        let request = http
            .get(format!("{}{path}", served.base()))
            .header(reqwest::header::COOKIE, &session);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let overview = page("/console").await;
    assert!(overview.contains("replied"), "{overview}");
    assert!(
        overview.contains(">100<"),
        "100 replied on the overview: {overview}"
    );
    let conversations = page("/console/conversations").await;
    let first = get(format!("/messages/wamid.SIM.{seed}.0.0")).await;
    let sender = first["from"].as_str().unwrap().to_owned();
    assert!(conversations.contains(&sender), "{sender} in the list");
    served.stop().await;
}
