//! `replyd doctor` green against a configured setup (the fake Cloud API and gateway on port 0,
//! a migrated store, Redis), and red for a refused token, an unwritable data directory and an
//! unreachable store; the binary's exit code for one of each.
//!
//! Tests run as root, where permission bits stop no write: an "unwritable" directory here is a
//! path under a regular file, which no user can create or write (ENOTDIR).

#![cfg(unix)]

use std::path::Path;

use replyd::app::Core;
use replyd::clock::Clock;
use replyd::config::{Config, NumberConfig};
use replyd::secret::Secret;
use replyd::tools::doctor::{self, Report, Status, Subject};
use replyd::tools::fake_cloud_api::{FakeCloudApi, FakeCloudArgs};

use crate::binary::{output, replyd};
use crate::helpers::{ADMIN_TOKEN, APP_SECRET, VERIFY_TOKEN, WASENDER_SESSION, test_config};

const NUMBER: &str = "100000000000001";

/// Everything configured: a number with its own token, the default token, a gateway with its
/// API key, all against the fake; the store migrated; Redis on its usual port.
async fn configured(dir: &Path, fake: &FakeCloudApi) -> Config {
    let mut config = test_config(dir);
    config.data_dir = dir.to_owned();
    config.access_token = Secret::new("default-token");
    config.graph_base_url = fake.base_url();
    config.numbers = vec![NumberConfig {
        phone_number_id: NUMBER.into(),
        access_token: Some(Secret::new("number-token")),
        responder: None,
        send_rate_per_second: None,
        read_receipts: None,
    }];
    config.wasender_api_key = Secret::new("gateway-key");
    config.wasender_base_url = fake.gateway_base_url();
    config.redis_url = Some("redis://127.0.0.1:6379".into());
    drop(Core::open_offline(&config, Clock::system()).await.unwrap());
    config
}

fn status(report: &Report, subject: &Subject) -> Status {
    report
        .get(subject)
        .unwrap_or_else(|| panic!("no {subject} check in\n{}", report.render()))
        .status
}

fn failed_with_fix(report: &Report, subject: &Subject) -> String {
    let check = report.get(subject).expect("checked");
    assert_eq!(check.status, Status::Fail, "{}", report.render());
    assert!(!report.ok());
    let fix = check.fix.clone().expect("a failure says how to fix it");
    assert!(!fix.is_empty());
    format!("{} / {fix}", check.detail)
}

#[tokio::test]
async fn green_when_everything_is_configured() {
    let fake = FakeCloudApi::start(FakeCloudArgs::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = configured(dir.path(), &fake).await;
    let report = doctor::run(&config).await;
    assert!(report.ok(), "{}", report.render());
    for subject in [
        Subject::Configuration,
        Subject::DataDirectory,
        Subject::SecretsFile,
        Subject::AppSecret,
        Subject::VerifyToken,
        Subject::AdminToken,
        Subject::Store,
        Subject::Spool,
        Subject::CloudNumber(NUMBER.into()),
        Subject::CloudApi,
        Subject::Gateway(WASENDER_SESSION.into()),
        Subject::Broker,
    ] {
        assert_eq!(status(&report, &subject), Status::Pass, "{subject}");
    }
    // The shared Redis may run without AOF: a warning, never a failure.
    assert_ne!(status(&report, &Subject::BrokerPersistence), Status::Fail);
    let shown = report.render();
    for secret in [
        APP_SECRET,
        VERIFY_TOKEN,
        ADMIN_TOKEN,
        "number-token",
        "gateway-key",
    ] {
        assert!(!shown.contains(secret), "never prints a secret: {shown}");
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_or_a_disconnected_session_is_red() {
    let fake = FakeCloudApi::start(FakeCloudArgs::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = configured(dir.path(), &fake).await;
    fake.set_halt(Some(190));
    let report = doctor::run(&config).await;
    let shown = failed_with_fix(&report, &Subject::CloudNumber(NUMBER.into()));
    assert!(shown.contains("401"), "{shown}");
    assert!(shown.contains("token was refused"), "{shown}");
    assert_eq!(status(&report, &Subject::Store), Status::Pass);

    fake.set_halt(None);
    fake.set_wasender_connected(false);
    let report = doctor::run(&config).await;
    assert_eq!(
        status(&report, &Subject::CloudNumber(NUMBER.into())),
        Status::Pass
    );
    let shown = failed_with_fix(&report, &Subject::Gateway(WASENDER_SESSION.into()));
    assert!(shown.contains("disconnected"), "{shown}");
    fake.shutdown().await;
}

#[tokio::test]
async fn an_unwritable_data_directory_is_red() {
    let fake = FakeCloudApi::start(FakeCloudArgs::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = configured(dir.path(), &fake).await;
    let file = dir.path().join("a-regular-file");
    std::fs::write(&file, "").unwrap();
    config.data_dir = file.join("data");
    let report = doctor::run(&config).await;
    let shown = failed_with_fix(&report, &Subject::DataDirectory);
    assert!(shown.contains("is not a directory"), "{shown}");
    assert!(shown.contains("REPLYD_DATA_DIR"), "{shown}");

    config.data_dir = dir.path().to_owned();
    config.spool_dir = file.join("spool");
    let report = doctor::run(&config).await;
    assert_eq!(status(&report, &Subject::DataDirectory), Status::Pass);
    failed_with_fix(&report, &Subject::Spool);
    fake.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_or_unmigrated_store_is_red() {
    let fake = FakeCloudApi::start(FakeCloudArgs::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = configured(dir.path(), &fake).await;
    let file = dir.path().join("a-regular-file");
    std::fs::write(&file, "").unwrap();

    config.database_url = format!("sqlite://{}", file.join("replyd.db").display()).into();
    let shown = failed_with_fix(&doctor::run(&config).await, &Subject::Store);
    assert!(shown.contains("cannot reach"), "{shown}");

    let port = crate::binary::free_port();
    config.database_url = format!("postgres://replyd:pw@127.0.0.1:{port}/replyd").into();
    let shown = failed_with_fix(&doctor::run(&config).await, &Subject::Store);
    assert!(
        !shown.contains(":pw@"),
        "the password stays hidden: {shown}"
    );

    let fresh = dir.path().join("fresh.db");
    config.database_url = format!("sqlite://{}", fresh.display()).into();
    let shown = failed_with_fix(&doctor::run(&config).await, &Subject::Store);
    assert!(shown.contains("replyd migrate"), "{shown}");
    assert!(!fresh.exists(), "doctor creates no database");
    fake.shutdown().await;
}

#[tokio::test]
async fn the_binary_exits_zero_when_green_and_non_zero_when_red() {
    let fake = FakeCloudApi::start(FakeCloudArgs::default()).await.unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let env = [
        ("REPLYD_APP_SECRET", APP_SECRET),
        ("REPLYD_VERIFY_TOKEN", VERIFY_TOKEN),
        ("REPLYD_ADMIN_TOKEN", ADMIN_TOKEN),
        ("REPLYD_ACCESS_TOKEN", "default-token"),
        ("REPLYD_GRAPH_BASE_URL", base.as_str()),
    ];
    let migrated = output(replyd(cwd.path(), &env, &["migrate"])).await;
    assert!(migrated.status.success(), "{migrated:?}");
    let green = output(replyd(cwd.path(), &env, &["doctor"])).await;
    let printed = String::from_utf8_lossy(&green.stdout);
    assert!(green.status.success(), "{printed}");
    assert!(printed.contains("✓ store"), "{printed}");
    assert!(printed.contains(" 0 failed"), "{printed}");

    let file = cwd.path().join("a-regular-file");
    std::fs::write(&file, "").unwrap();
    let data_dir = file.join("data");
    let mut red_env = env.to_vec();
    red_env.push(("REPLYD_DATA_DIR", data_dir.to_str().unwrap()));
    let red = output(replyd(cwd.path(), &red_env, &["doctor"])).await;
    let printed = String::from_utf8_lossy(&red.stdout);
    assert_eq!(red.status.code(), Some(1), "{printed}");
    assert!(printed.contains("✗ data directory"), "{printed}");
    assert!(printed.contains("fix: "), "{printed}");
    assert!(
        String::from_utf8_lossy(&red.stderr).contains("doctor found"),
        "{red:?}"
    );
    fake.shutdown().await;
}
