//! Reply benchmark: end-to-end latency (webhook POST → send arriving at the Cloud API) and
//! replies per second, `replyd serve` (release build, SQLite) against the in-process fake Cloud
//! API, beside a baseline measured in the same run: the same fake driven directly by the Cloud
//! API client at the same concurrency (the transport's own ceiling).
//!
//! Run with `bench/reply.sh` (builds the binary first). Scenarios:
//! - zero latency, rate limits raised: replies/s and p50/p99;
//! - 200 ms Cloud API latency, 80 msg/s per number enforced by the fake (130429 above it):
//!   the sustained rate must hold at 80/s without a single 130429.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use replyd::tools::fake_cloud_api::{FakeCloudApi, FakeCloudArgs};
use replyd::whatsapp::send::{CloudClient, TextReply};
use replyd::whatsapp::signature;
use serde_json::json;
use tokio::sync::Semaphore;

const SECRET: &str = "bench-secret";
const ADMIN: &str = "bench-admin";
const PHONE: &str = "100000000000001";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Row {
    scenario: String,
    side: &'static str,
    replies: usize,
    per_s: f64,
    p50: f64,
    p99: f64,
    rejected_130429: u64,
    peak_rss_mib: f64,
}

struct Scenario {
    name: &'static str,
    messages: usize,
    senders: usize,
    latency_ms: u64,
    max_mps: Option<u32>,
    replyd_rate: u32,
    worker_concurrency: usize,
    post_concurrency: usize,
    /// Offered load in messages/s (None = as fast as the posts go): latency is only meaningful
    /// below saturation, throughput only at it.
    post_rate: Option<u32>,
    /// Whether replyd marks each message read (with typing) before answering: the default.
    read_receipts: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

async fn start_replyd(s: &Scenario, fake: &FakeCloudApi, dir: &std::path::Path) -> (Child, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(
        std::env::var("BENCH_REPLYD_BIN").unwrap_or_else(|_| "target/release/replyd".into()),
    )
    .arg("serve")
    .env("REPLYD_LISTEN", format!("127.0.0.1:{port}"))
    .env(
        "REPLYD_DATABASE_URL",
        format!("sqlite://{}/replyd.db", dir.display()),
    )
    .env("REPLYD_SPOOL_DIR", dir.join("spool"))
    .env("REPLYD_APP_SECRET", SECRET)
    .env("REPLYD_ADMIN_TOKEN", ADMIN)
    .env("REPLYD_ACCESS_TOKEN", "bench-token")
    .env("REPLYD_GRAPH_BASE_URL", fake.base_url())
    .env("REPLYD_SEND_RATE_PER_SECOND", s.replyd_rate.to_string())
    .env("REPLYD_PAIR_BURST", "100000")
    .env(
        "REPLYD_WORKER_CONCURRENCY",
        s.worker_concurrency.to_string(),
    )
    .env("REPLYD_READ_RECEIPTS", s.read_receipts.to_string())
    .env("RUST_LOG", "error")
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("target/release/replyd (run bench/reply.sh)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/readyz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "replyd did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, base)
}

fn payload(i: usize, senders: usize) -> (String, Vec<u8>) {
    let id = format!("wamid.BENCH.{i}");
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "1555", "phone_number_id": PHONE},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": format!("34{:09}", i % senders)}],
            "messages": [{"from": format!("34{:09}", i % senders), "id": id, "timestamp": (now_ms() / 1000).to_string(),
                          "type": "text", "text": {"body": "hello, what are your hours?"}}]}}]}]});
    (id, body.to_string().into_bytes())
}

async fn run_replyd(s: &Scenario) -> Row {
    let fake = FakeCloudApi::start(FakeCloudArgs {
        latency: Duration::from_millis(s.latency_ms).into(),
        max_mps: s.max_mps,
        ..FakeCloudArgs::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_replyd(s, &fake, dir.path()).await;
    let payloads: Vec<(String, Vec<u8>)> = (0..s.messages).map(|i| payload(i, s.senders)).collect();
    let client = reqwest::Client::new();
    let permits = Arc::new(Semaphore::new(s.post_concurrency));
    let start = tokio::time::Instant::now();
    let posted: HashMap<String, i64> =
        join_all(payloads.into_iter().enumerate().map(|(i, (id, body))| {
            let (client, permits, url) =
                (client.clone(), permits.clone(), format!("{base}/webhook"));
            let due = s
                .post_rate
                .map(|rate| start + Duration::from_secs_f64(i as f64 / f64::from(rate)));
            async move {
                if let Some(due) = due {
                    tokio::time::sleep_until(due).await;
                }
                let _permit = permits.acquire_owned().await.unwrap();
                let sig = signature::sign(SECRET.as_bytes(), &body);
                let at = now_ms();
                let r = client
                    .post(url)
                    .header("X-Hub-Signature-256", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                (id, at)
            }
        }))
        .await
        .into_iter()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while fake.sends().len() < s.messages {
        assert!(
            Instant::now() < deadline,
            "only {} of {} replies arrived",
            fake.sends().len(),
            s.messages
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sends = fake.sends();
    let rss = peak_rss_mib(child.id());
    child.kill().ok();
    child.wait().ok();
    let mut latencies: Vec<f64> = sends
        .iter()
        .filter_map(|r| {
            Some((r.received_at_ms - posted.get(r.context_message_id.as_deref()?)?) as f64)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let first = sends.iter().map(|r| r.received_at_ms).min().unwrap();
    let last = sends.iter().map(|r| r.received_at_ms).max().unwrap();
    Row {
        scenario: s.name.into(),
        side: "replyd",
        replies: sends.len(),
        per_s: sends.len() as f64 / ((last - first).max(1) as f64 / 1000.0),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        rejected_130429: fake.throughput_rejections(),
        peak_rss_mib: rss,
    }
}

/// The same fake, driven directly by the Cloud API client at the same concurrency.
async fn run_baseline(s: &Scenario) -> Row {
    let fake = FakeCloudApi::start(FakeCloudArgs {
        latency: Duration::from_millis(s.latency_ms).into(),
        ..FakeCloudArgs::default()
    })
    .await
    .unwrap();
    let client = CloudClient::new(&fake.base_url(), Duration::from_secs(30));
    let permits = Arc::new(Semaphore::new(s.worker_concurrency));
    let started = Instant::now();
    let mut latencies: Vec<f64> = join_all((0..s.messages).map(|i| {
        let (client, permits) = (client.clone(), permits.clone());
        async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let (to, context, cb) = (
                format!("+34{:09}", i % s.senders),
                format!("wamid.BASE.{i}"),
                format!("b{i}"),
            );
            let t = Instant::now();
            let reply = TextReply {
                phone_number_id: PHONE,
                to: &to,
                body: "hi",
                context_message_id: &context,
                callback_data: &cb,
            };
            client.send_text("bench-token", &reply).await.unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        }
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Row {
        scenario: s.name.into(),
        side: "baseline",
        replies: s.messages,
        per_s: s.messages as f64 / elapsed,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        rejected_130429: 0,
        peak_rss_mib: f64::NAN,
    }
}

#[tokio::main]
async fn main() {
    let messages: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let scenarios = [
        Scenario {
            name: "A: 0 ms API, limits raised",
            messages,
            senders: 1000,
            latency_ms: 0,
            max_mps: None,
            replyd_rate: 1_000_000,
            worker_concurrency: 64,
            post_concurrency: 64,
            post_rate: None,
            read_receipts: true,
        },
        Scenario {
            name: "A-: A without read receipts",
            messages,
            senders: 1000,
            latency_ms: 0,
            max_mps: None,
            replyd_rate: 1_000_000,
            worker_concurrency: 64,
            post_concurrency: 64,
            post_rate: None,
            read_receipts: false,
        },
        Scenario {
            name: "A': 0 ms API, 500 msg/s offered",
            messages: 3000,
            senders: 1000,
            latency_ms: 0,
            max_mps: None,
            replyd_rate: 1_000_000,
            worker_concurrency: 64,
            post_concurrency: 64,
            post_rate: Some(500),
            read_receipts: true,
        },
        Scenario {
            name: "B: 200 ms API, 80/s enforced",
            messages: 1200,
            senders: 1000,
            latency_ms: 200,
            max_mps: Some(80),
            replyd_rate: 80,
            worker_concurrency: 64,
            post_concurrency: 64,
            post_rate: None,
            read_receipts: true,
        },
    ];
    // BENCH_SCENARIOS=A,B runs only the scenarios whose name starts with one of these.
    let only: Option<Vec<String>> = std::env::var("BENCH_SCENARIOS")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    // BENCH_ROUNDS alternating rounds (baseline, replyd) per scenario; medians are printed.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut rows: Vec<Vec<Row>> = Vec::new();
    for s in scenarios.iter().filter(|s| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|p| s.name.starts_with(p.as_str())))
    }) {
        let (mut baseline, mut replyd) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            eprintln!("running {}, round {round} …", s.name);
            baseline.push(run_baseline(s).await);
            replyd.push(run_replyd(s).await);
        }
        rows.push(baseline);
        rows.push(replyd);
    }
    println!(
        "{:<30} {:<9} {:>8} {:>10} {:>10} {:>10} {:>8} {:>9}",
        "scenario", "side", "replies", "replies/s", "p50 ms", "p99 ms", "130429", "RSS MiB"
    );
    for runs in rows {
        let median = |f: fn(&Row) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let r = &runs[0];
        println!(
            "{:<30} {:<9} {:>8} {:>10.0} {:>10.1} {:>10.1} {:>8} {:>9.1}",
            r.scenario,
            r.side,
            r.replies,
            median(|r| r.per_s),
            median(|r| r.p50),
            median(|r| r.p99),
            runs.iter().map(|r| r.rejected_130429).sum::<u64>(),
            median(|r| r.peak_rss_mib),
        );
    }
    println!(
        "medians of {rounds} alternating rounds; 130429 summed over rounds; latency: replyd = webhook POST sent → reply received by the fake Cloud API; baseline = one direct send"
    );
}
