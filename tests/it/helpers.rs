//! `TestApp`: the real server on a random port with a fresh SQLite database, and one helper
//! per endpoint.

use std::path::PathBuf;
use std::time::Duration;

use replyd::app::App;
use replyd::clock::Clock;
use replyd::config::Config;
use replyd::ingest::Ingestor;
use replyd::secret::Secret;
use replyd::store::Store;
use replyd::whatsapp::signature;
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const WASENDER_SECRET: &str = "test-wasender-secret";
/// The test gateway's session id: deliberately equal to the Cloud API number the fixtures use,
/// so every test that touches both providers checks that they stay apart.
pub const WASENDER_SESSION: &str = "111";

/// A Cloud API conversation (or contact) key.
pub fn cloud_key(phone_number_id: &str, wa_id: &str) -> replyd::domain::ConversationKey {
    key(replyd::domain::Provider::Cloud, phone_number_id, wa_id)
}

pub fn key(
    provider: replyd::domain::Provider,
    phone_number_id: &str,
    wa_id: &str,
) -> replyd::domain::ConversationKey {
    replyd::domain::ConversationKey {
        provider,
        phone_number_id: replyd::domain::PhoneNumberId::parse(phone_number_id).unwrap(),
        wa_id: replyd::domain::WaId::parse(wa_id).unwrap(),
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    ingestor: Option<Ingestor>,
    pub config: Config,
    pub dir: TempDir,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The configuration tests start from: every secret set, short lock timeouts, no background
/// spool replay unless a test asks for it.
pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        database_url: format!("sqlite://{}", dir.join("replyd.db").display()).into(),
        app_secret: Secret::new(APP_SECRET),
        verify_token: Secret::new(VERIFY_TOKEN),
        admin_token: Secret::new(ADMIN_TOKEN),
        wasender_secret: Secret::new(WASENDER_SECRET),
        wasender_session_id: Some(WASENDER_SESSION.into()),
        spool_dir: dir.join("spool"),
        spool_replay_interval: Duration::from_secs(3600),
        store_busy_timeout: Duration::from_millis(200),
        ingest_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// The app with ingest only: reply jobs stay queued, outcomes stay pending.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app with its reply workers (sandbox unless the test sets an access token).
pub async fn spawn_replying_app(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|c| {
        c.worker_enabled = true;
        adjust(c);
    })
    .await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    config.worker_enabled = false;
    adjust(&mut config);
    let app = App::build(config.clone(), Clock::system())
        .await
        .expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let (store, ingestor) = (app.store().clone(), app.ingestor().clone());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base,
        client: reqwest::Client::new(),
        store,
        ingestor: Some(ingestor),
        config,
        dir,
        shutdown,
        server: Some(server),
    }
}

impl TestApp {
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("replyd.db")
    }

    /// The app's ingest path (spool replay on demand).
    pub fn ingestor(&self) -> &Ingestor {
        self.ingestor.as_ref().expect("app is running")
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) -> TempDir {
        // The group-commit writer stops when its last handle is gone, ours included.
        self.ingestor = None;
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// POST /webhook signed with the app secret.
    pub async fn post_webhook(&self, body: impl Into<Vec<u8>>) -> reqwest::Response {
        let body = body.into();
        let sig = signature::sign(APP_SECRET.as_bytes(), &body);
        self.post_webhook_with(body, Some(&sig)).await
    }

    pub async fn post_webhook_with(
        &self,
        body: Vec<u8>,
        signature_header: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhook", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = signature_header {
            req = req.header("X-Hub-Signature-256", sig);
        }
        req.send().await.expect("request sent")
    }

    pub async fn post_wasender(
        &self,
        body: impl Into<Vec<u8>>,
        secret: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhook/wasender", self.base))
            .header("content-type", "application/json")
            .body(body.into());
        if let Some(secret) = secret {
            req = req.header("X-Webhook-Signature", secret);
        }
        req.send().await.expect("request sent")
    }

    pub async fn handshake(&self, mode: &str, token: &str, challenge: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/webhook", self.base))
            .query(&[
                ("hub.mode", mode),
                ("hub.verify_token", token),
                ("hub.challenge", challenge),
            ])
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent")
    }

    /// GET an admin route with the bearer token; returns status and JSON body.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn summary(&self) -> Value {
        let (status, body) = self.admin_get("/summary").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `GET /api/v1/messages/{id}`; `None` on 404.
    pub async fn message(&self, id: &str) -> Option<Value> {
        let (status, body) = self.admin_get(&format!("/messages/{id}")).await;
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("unexpected {other}: {body}"),
        }
    }

    /// Waits (bounded) until no inbound message is pending; returns the summary.
    pub async fn settled(&self) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let summary = self.summary().await;
            if summary["outcomes"]["pending"] == 0 {
                return summary;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "messages still pending: {summary}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POST an admin route with the bearer token and an optional JSON body.
    pub async fn admin_post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// One dead letter, its kept bytes included.
    pub async fn dead_letter(&self, id: i64) -> Value {
        let (status, body) = self.admin_get(&format!("/dead-letters/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn dead_letters(&self) -> Vec<Value> {
        let (status, body) = self.admin_get("/dead-letters").await;
        assert_eq!(status, 200, "{body}");
        body["dead_letters"].as_array().cloned().unwrap_or_default()
    }

    /// The value of one metric line (`name` or `name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
