//! Headless Chromium for the console's browser test, driven over the W3C WebDriver protocol by
//! a few lines over `reqwest` (already a dependency, so the test builds nothing new; fantoccini
//! or Playwright would add a client stack or a Node toolchain to CI for the same ten commands).
//!
//! `chromedriver` is started on a free port with a fresh profile directory, and killed with its
//! browser when the [`Browser`] is dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:{port}/session/{id}`
    session: String,
    port: u16,
    session_id: String,
    /// Set once the session was ended by [`Browser::quit`].
    ended: bool,
    driver: std::process::Child,
    _profile: TempDir,
}

/// Where the browser and its driver are: `REPLYD_CHROMIUM` / `REPLYD_CHROMEDRIVER`, else
/// Debian's `chromium` and `chromium-driver` packages.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let pick = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    };
    let chromium = pick("REPLYD_CHROMIUM", "/usr/bin/chromium");
    let driver = pick("REPLYD_CHROMEDRIVER", "/usr/bin/chromedriver");
    (chromium.exists() && driver.exists()).then_some((chromium, driver))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width`×`height`. `None` (after a loud
    /// message) when they are not installed outside CI; in CI (`CI` set) their absence fails
    /// the test, since `scripts/test.sh` installs them.
    pub async fn launch(width: u32, height: u32) -> Option<Browser> {
        let Some((chromium, driver_bin)) = binaries() else {
            let how = "install them with `apt-get install -y chromium chromium-driver` \
                       (scripts/test.sh does), or point REPLYD_CHROMIUM / REPLYD_CHROMEDRIVER at them";
            assert!(
                std::env::var_os("CI").is_none(),
                "Chromium or chromedriver is missing: {how}"
            );
            eprintln!(
                "\n!!!!!!!!\n!!! SKIPPED: the console's browser test needs Chromium and chromedriver: {how}\n!!!!!!!!\n"
            );
            return None;
        };
        let port = crate::replies::free_port();
        let driver = std::process::Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(answer) = ready {
                let status: Value = answer.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
            }}}))
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"));
        let browser = Browser {
            session: format!("{base}/session/{id}"),
            port,
            session_id: id.to_owned(),
            ended: false,
            http,
            driver,
            _profile: profile,
        };
        // `find` waits this long for an element of a page still loading.
        browser.post("/timeouts", json!({"implicit": 10_000})).await;
        Some(browser)
    }

    /// One WebDriver command; its error object when it fails.
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("webdriver answers")
            .json()
            .await
            .unwrap();
        match answer["value"]["error"].is_null() {
            true => Ok(answer["value"].clone()),
            false => Err(answer["value"].clone()),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.try_command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    async fn get(&self, path: &str) -> Value {
        self.try_command(reqwest::Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    /// Polls (bounded) until `ready` holds for what `read` gives; errors while a page is being
    /// replaced (a stale body) count as "not yet". Clicks that submit a form return before the
    /// next page is there, so every check after one waits like this.
    async fn wait_until(
        &self,
        what: &str,
        read: impl AsyncFn() -> Result<String, Value>,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = read().await;
            match &seen {
                Ok(seen) if ready(seen) => return seen.clone(),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; last saw {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's visible text contains `needle`; returns the text.
    pub async fn wait_text(&self, needle: &str) -> String {
        let read = async || {
            let body = self
                .try_command(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": "body"})),
                )
                .await?;
            let id = body[ELEMENT].as_str().unwrap_or_default().to_owned();
            let text = self
                .try_command(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                .await?;
            Ok(text.as_str().unwrap_or_default().to_owned())
        };
        self.wait_until(&format!("text `{needle}`"), read, |t| t.contains(needle))
            .await
    }

    /// Waits until the address ends with `suffix`.
    pub async fn wait_url(&self, suffix: &str) -> String {
        let read = async || {
            let url = self.try_command(reqwest::Method::GET, "/url", None).await?;
            Ok(url.as_str().unwrap_or_default().to_owned())
        };
        self.wait_until(&format!("address `…{suffix}`"), read, |u| {
            u.ends_with(suffix)
        })
        .await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The first element matching a CSS selector (panics when there is none).
    pub async fn find(&self, css: &str) -> Element<'_> {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        Element {
            browser: self,
            id: found[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element `{css}`: {found}"))
                .to_owned(),
        }
    }

    /// How many elements match a CSS selector.
    pub async fn count(&self, css: &str) -> usize {
        self.post("/elements", json!({"using": "css selector", "value": css}))
            .await
            .as_array()
            .map_or(0, Vec::len)
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// Runs a script in the page (WebDriver's, not the page's: the console itself has none).
    pub async fn execute(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    pub async fn cookie(&self, name: &str) -> Value {
        self.get(&format!("/cookie/{name}")).await
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (the browser exits), then the driver (on drop).
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        self.ended = true;
    }
}

impl Drop for Browser {
    /// A test that failed never reached `quit`: the session is ended here (a blocking request:
    /// no runtime to await on in `drop`), so that the browser does not outlive its driver.
    fn drop(&mut self) {
        if !self.ended {
            end_session_blocking(self.port, &self.session_id);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn end_session_blocking(port: u16, session_id: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // The answer comes once the browser is gone; its first bytes are enough.
        let _ = stream.read(&mut [0; 512]);
    }
}

pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl Element<'_> {
    pub async fn click(&self) {
        self.browser
            .post(&format!("/element/{}/click", self.id), json!({}))
            .await;
    }

    pub async fn clear(&self) {
        self.browser
            .post(&format!("/element/{}/clear", self.id), json!({}))
            .await;
    }

    pub async fn type_text(&self, text: &str) {
        self.browser
            .post(
                &format!("/element/{}/value", self.id),
                json!({ "text": text }),
            )
            .await;
    }

    pub async fn text(&self) -> String {
        self.browser
            .get(&format!("/element/{}/text", self.id))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}
