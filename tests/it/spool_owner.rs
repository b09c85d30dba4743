//! One process owns a spool directory: the running server holds its lock, so neither
//! `replyd spool replay` nor a second server can rename or delete files under it, and an append
//! notices a file moved behind its back.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use replyd::app::App;
use replyd::clock::Clock;
use replyd::config::Config;
use replyd::ingest::spool::decode_all;

use crate::helpers::*;
use crate::spool::spool_deliveries;

fn replyd(config: &Config, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replyd"))
        .args(args)
        .env("REPLYD_DATABASE_URL", config.database_url.expose())
        .env("REPLYD_SPOOL_DIR", &config.spool_dir)
        .env("REPLYD_DATA_DIR", &config.data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The message ids in a spool file, in order.
fn spooled_ids(path: &Path) -> Vec<String> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode_all(&bytes)
        .0
        .records
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            body["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The repro: `serve` running, a webhook spooled, `spool replay` run next to it. The
/// command used to claim and delete the server's active file, so the next spooled webhook was
/// appended to a deleted file and lost.
#[tokio::test]
async fn spool_replay_command_is_refused_while_the_server_owns_the_spool() {
    let app = spawn_app().await;
    spool_deliveries(&app, &["wamid.OWN.1"]).await;

    let out = replyd(&app.config, &["spool", "replay"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused; stderr: {stderr}");
    let dir = app.config.spool_dir.display().to_string();
    assert!(
        stderr.contains(&dir)
            && stderr.contains("owned by a running replyd server")
            && stderr.contains("POST /api/v1/spool/replay"),
        "{stderr}"
    );
    assert_eq!(
        spooled_ids(&app.config.spool_dir.join("active.spool")),
        ["wamid.OWN.1"],
        "the server's spool is untouched"
    );
    assert!(app.message("wamid.OWN.1").await.is_none());

    // The store is locked again and the next webhook spooled: nothing may be lost.
    spool_deliveries(&app, &["wamid.OWN.2"]).await;
    let (status, report) = app.admin_post("/spool/replay", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["new_messages"], 2, "{report}");
    for id in ["wamid.OWN.1", "wamid.OWN.2"] {
        assert!(app.message(id).await.is_some(), "{id}");
    }
}

#[tokio::test]
async fn an_append_after_the_active_file_was_moved_or_removed_lands_in_a_fresh_file() {
    let app = spawn_app().await;
    let dir = &app.config.spool_dir;
    let active = dir.join("active.spool");
    spool_deliveries(&app, &["wamid.MV.1"]).await;
    // Claimed behind the server's back, as `spool replay` from another process used to do.
    let claimed = dir.join(format!("{:032}.replaying", 1));
    fs::rename(&active, &claimed).unwrap();
    spool_deliveries(&app, &["wamid.MV.2"]).await;
    assert_eq!(spooled_ids(&claimed), ["wamid.MV.1"]);
    assert_eq!(spooled_ids(&active), ["wamid.MV.2"], "a fresh active file");

    // Removed (a copy is kept aside so nothing of the test's own doing is lost).
    fs::copy(&active, dir.join(format!("{:032}.replaying", 2))).unwrap();
    fs::remove_file(&active).unwrap();
    spool_deliveries(&app, &["wamid.MV.3"]).await;
    assert_eq!(spooled_ids(&active), ["wamid.MV.3"], "a fresh active file");

    let (status, report) = app.admin_post("/spool/replay", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["records"], &report["new_messages"]),
        (&3.into(), &3.into()),
        "{report}"
    );
    for i in 1..=3 {
        assert!(app.message(&format!("wamid.MV.{i}")).await.is_some());
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_spool_directory_refuses_to_start() {
    let app = spawn_app().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let config = Config {
        spool_dir: app.config.spool_dir.clone(),
        ..test_config(elsewhere.path())
    };
    let refused = App::build(config.clone(), Clock::system())
        .await
        .err()
        .expect("a second owner is refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains(&app.config.spool_dir.display().to_string())
            && message.contains("owned by another running replyd process")
            && message.contains("REPLYD_SPOOL_DIR"),
        "{message}"
    );
    assert!(
        !elsewhere.path().join("replyd.db").exists(),
        "refused before touching its store"
    );

    // Once the first server has stopped, the directory is free.
    let dir = app.stop().await;
    let second = App::build(config, Clock::system()).await;
    assert!(second.is_ok(), "{:#}", second.err().unwrap());
    drop(dir);
}

#[tokio::test]
async fn spool_directory_is_0700_and_its_files_0600() {
    let app = spawn_app().await;
    spool_deliveries(&app, &["wamid.MODE.1"]).await;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = &app.config.spool_dir;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 2, "the lock and the active file: {files:?}");
    for path in files {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}
