//! The real `replyd` binary as a user runs it: a clean environment (only what a test passes),
//! a working directory of the test's own; `serve` in the background with its output collected.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// `replyd args…` with no inherited `REPLYD_*` (nor anything else), in `cwd`, with `env`.
pub fn replyd(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_replyd"));
    command
        .args(args)
        .env_clear()
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs a command to its end off the async runtime (a server under test may share it).
pub async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("replyd runs"))
        .await
        .unwrap()
}

/// A free port on loopback, for a listen address two processes must agree on.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running `replyd serve`; killed when dropped.
pub struct Served {
    child: Child,
    pub address: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts `serve` and waits (bounded) until it logs its address.
    pub fn start(cwd: &Path, env: &[(&str, &str)]) -> Served {
        let mut child = replyd(cwd, env, &["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("replyd starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().unwrap();
        let collected = stdout.clone();
        let stdout_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut chunk) {
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let lines = stderr.clone();
        let err = child.stderr.take().unwrap();
        let stderr_reader = std::thread::spawn(move || {
            let address = regex::Regex::new(r"127\.0\.0\.1:\d+").unwrap();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("replyd listening") {
                    if let Some(found) = address.find(&line) {
                        let _ = address_tx.send(found.as_str().to_owned());
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut served = Served {
            child,
            address: String::new(),
            stdout,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        };
        served.address = address_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("serve never listened: {}", served.output()));
        served
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Everything it printed so far, stdout then stderr.
    pub fn output(&self) -> String {
        format!(
            "{}\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Stops it with SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) -> String {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                assert!(exit.success(), "{exit:?}: {}", self.output());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The pipes are closed: the readers end once they have the last lines.
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        self.output()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
