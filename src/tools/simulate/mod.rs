//! `replyd simulate`: signed, realistic Cloud API webhook traffic against any URL.
//!
//! Payloads are built and signed before the clock starts whenever the run fits in memory, so
//! the timed loop only clones bytes, sends, and times each request from send to the last byte
//! of the answer. `run` fails only on setup problems; every answer, good or bad, is counted.
//! With no `--url`/`--secret` it targets the configured server with the data directory's
//! secrets ([`target`]); `--until-settled` then reports the outcomes ([`settle`]).

pub mod feed;
pub mod mix;
#[cfg(test)]
mod mix_tests;
pub mod payload;
pub mod settle;
mod summary;
mod tally;
pub mod target;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::task::JoinSet;
use tokio::time::Instant;

use feed::{Feed, Generator, Post};
use mix::Mix;
use payload::PayloadSpec;
use settle::AdminApi;
pub use summary::Summary;
use tally::Tally;
pub use target::Target;

/// Above this estimate of payload bytes, posts are built on demand instead of ahead of time.
const PREBUILD_BUDGET_BYTES: f64 = 512.0 * 1024.0 * 1024.0;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-hub-signature-256");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Webhook URL to POST notifications to [default: http://<REPLYD_LISTEN>/webhook, from the
    /// same configuration `replyd serve` reads, i.e. http://127.0.0.1:8080/webhook]
    #[arg(long)]
    pub url: Option<String>,
    /// App secret that signs every body (X-Hub-Signature-256) [default: the configured one, else
    /// the one `replyd serve` generated in the data directory's secrets.toml]
    #[arg(long, env = "REPLYD_APP_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Total POSTs to send (ignored when --duration is given).
    #[arg(long, default_value_t = 10_000)]
    pub requests: u64,
    /// Send for this long instead of a fixed count, e.g. `10s` or `2m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Target POSTs per second overall; 0 sends as fast as the connections allow.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Concurrent in-flight requests (one worker and one pooled connection each).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Share of POSTs (0.0–1.0) that re-send, byte-identical, a payload sent before.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub duplicate_ratio: f64,
    /// Inbound messages in each payload.
    #[arg(long, default_value_t = 1)]
    pub messages_per_payload: u32,
    /// Share of messages (0.0–1.0) that are a whole-message opt-out keyword (STOP, BAJA…);
    /// each opts its sender out, so later messages of that sender end `silent:opted_out` too.
    #[arg(long, default_value_t = 0.005, value_parser = ratio)]
    pub keyword_ratio: f64,
    /// Share of messages (0.0–1.0) that are media: photos, voice notes, documents, videos.
    #[arg(long, default_value_t = 0.10, value_parser = ratio)]
    pub media_ratio: f64,
    /// Share of messages (0.0–1.0) that are reactions. The built-in rules leave reactions
    /// unanswered (`silent:no_reply`), so the default keeps every other message answerable.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub reaction_ratio: f64,
    /// Share of payloads (0.0–1.0) that also carry status updates for outbound messages. They
    /// name messages replyd did not send, which a server with human_reply_takeover on reads as
    /// a person answering from another tool (the conversation goes to operator mode).
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub status_ratio: f64,
    /// Distinct users (wa_id) the messages come from.
    #[arg(long, default_value_t = 1000)]
    pub senders: u32,
    /// Business phone number id put in `metadata.phone_number_id`.
    #[arg(long, default_value = "100000000000001")]
    pub phone_number_id: String,
    /// Seed for payload contents and duplicate picks; random when absent (see the summary).
    #[arg(long)]
    pub seed: Option<u64>,
    /// After sending, wait until the server has every acknowledged message and none is
    /// pending, then report the outcomes (replied, silent by reason, dead, pending) from its
    /// admin API (`GET /api/v1/summary`). Exits non-zero when --settle-timeout passes first.
    #[arg(long)]
    pub until_settled: bool,
    /// How long --until-settled waits at most, e.g. `30s` or `5m`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub settle_timeout: Duration,
    /// Bearer token of the admin API, for --until-settled [default: the configured one, else
    /// the one in the data directory's secrets.toml]
    #[arg(long, env = "REPLYD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Print the summary as one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a number between 0.0 and 1.0")),
    }
}

/// `replyd simulate`: resolves the target, runs, prints the summary. Fails when
/// `--until-settled` found the server still unsettled at the timeout.
pub async fn command(args: SimulateArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    let target = Target::resolve(&args, config_path)?;
    let json = args.json;
    let summary = run(args, target).await?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        summary.print_table();
    }
    match &summary.outcomes {
        Some(o) if !o.settled => bail!(
            "not settled: {} message(s) still pending after {:.1} s",
            o.pending,
            o.waited_s
        ),
        _ => Ok(()),
    }
}

/// Sends the run described by `args` and counts every answer.
pub async fn run(args: SimulateArgs, target: Target) -> anyhow::Result<Summary> {
    let url =
        Url::parse(&target.url).with_context(|| format!("--url `{}` is not a URL", target.url))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--url `{}` must be http or https", target.url);
    }
    let mix = Mix::new(args.keyword_ratio, args.media_ratio, args.reaction_ratio)
        .map_err(|e| anyhow::anyhow!(e))?;
    if args.connections == 0 || args.messages_per_payload == 0 || args.senders == 0 {
        bail!("--connections, --messages-per-payload and --senders must be at least 1");
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate must be a number >= 0");
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let spec = PayloadSpec {
        seed,
        phone_number_id: args.phone_number_id.clone(),
        senders: args.senders,
        messages_per_payload: args.messages_per_payload,
        status_ratio: args.status_ratio,
        mix,
    };
    let secret = target.secret.as_bytes();
    let ratio = args.duplicate_ratio;
    // A counted run, or a paced timed one, knows its posts in advance: build them before the
    // clock starts when they fit in memory. An unpaced timed run builds them as it goes.
    let planned = match args.duration {
        None => Some(args.requests),
        Some(d) if args.rate > 0.0 => Some((args.rate * d.as_secs_f64()).ceil() as u64),
        Some(_) => None,
    };
    let feed = match planned {
        Some(count) if prebuilt_bytes(count, &args) <= PREBUILD_BUDGET_BYTES => {
            Feed::prebuilt(Generator::new(spec, secret, ratio, true), count, unix_now())
        }
        _ => {
            let limit = args.duration.is_none().then_some(args.requests);
            Feed::live(Generator::new(spec, secret, ratio, false), limit)
        }
    };
    let client = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(args.connections)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    // Asked before sending: a wrong token or address fails the run before any traffic.
    let settle = match (&target.admin_token, args.until_settled) {
        (Some(token), true) => {
            let api = AdminApi::new(client.clone(), &url, token.clone())?;
            let before = api.counts().await?;
            Some((api, before))
        }
        _ => None,
    };
    let progress = progress_bar(&args);

    let start = Instant::now();
    let plan = Arc::new(Plan {
        feed,
        client,
        url,
        start,
        rate: (args.rate > 0.0).then_some(args.rate),
        deadline: args.duration.map(|d| start + d),
        progress: progress.clone(),
        error_logged: AtomicBool::new(false),
    });
    let mut workers = JoinSet::new();
    for _ in 0..args.connections {
        workers.spawn(worker(Arc::clone(&plan)));
    }
    let mut tally = Tally::default();
    while let Some(done) = workers.join_next().await {
        tally.merge(done.context("a simulate worker panicked")?);
    }
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    let mut summary = tally.into_summary(target.url, seed, mix, elapsed);
    if let Some((api, before)) = settle {
        let acknowledged = summary.messages_acknowledged;
        if shows_progress(&args) {
            eprintln!(
                "sent; waiting up to {} for the outcomes…",
                humantime::format_duration(args.settle_timeout)
            );
        }
        summary.outcomes =
            Some(settle::until_settled(&api, &before, acknowledged, args.settle_timeout).await?);
    }
    Ok(summary)
}

/// Everything the workers share for one run.
struct Plan {
    feed: Feed,
    client: reqwest::Client,
    url: Url,
    start: Instant,
    rate: Option<f64>,
    deadline: Option<Instant>,
    progress: ProgressBar,
    error_logged: AtomicBool,
}

/// One connection's loop: take the next post, wait for its slot when paced, send, count.
async fn worker(plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::default();
    loop {
        if plan.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let Some((i, post)) = plan.feed.next() else {
            break;
        };
        if let Some(rate) = plan.rate {
            // Post i is due at i / rate: an open schedule shared by all workers.
            let due = plan.start + Duration::from_secs_f64(i as f64 / rate);
            if plan.deadline.is_some_and(|d| due >= d) {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        let fresh = post.fresh;
        tally.count_post(fresh);
        let sent_at = Instant::now();
        match send(&plan, post).await {
            Ok(status) => tally.count_answer(status, fresh, sent_at.elapsed()),
            Err(error) => {
                if !plan.error_logged.swap(true, Ordering::Relaxed) {
                    let error = anyhow::Error::from(error);
                    tracing::warn!("first transport error (the rest are only counted): {error:#}");
                }
                tally.transport_errors += 1;
            }
        }
        plan.progress.inc(1);
    }
    tally
}

/// Sends one post and reads the whole answer.
async fn send(plan: &Plan, post: Post) -> reqwest::Result<StatusCode> {
    let response = plan
        .client
        .post(plan.url.clone())
        .header(CONTENT_TYPE, APPLICATION_JSON)
        .header(SIGNATURE_HEADER, post.signature)
        .body(post.body)
        .send()
        .await?;
    let status = response.status();
    response.bytes().await?;
    Ok(status)
}

/// Rough memory a prebuilt run needs; duplicates share their original's bytes.
fn prebuilt_bytes(count: u64, args: &SimulateArgs) -> f64 {
    let per_payload =
        400.0 + 450.0 * f64::from(args.messages_per_payload) + 600.0 * args.status_ratio;
    count as f64 * (1.0 - args.duplicate_ratio) * per_payload
}

fn shows_progress(args: &SimulateArgs) -> bool {
    !(args.no_progress || args.json || !std::io::stderr().is_terminal())
}

fn progress_bar(args: &SimulateArgs) -> ProgressBar {
    if !shows_progress(args) {
        return ProgressBar::hidden();
    }
    let (bar, template) = match args.duration {
        Some(_) => (
            ProgressBar::new_spinner(),
            "{spinner} {elapsed_precise} {pos} requests ({rate})",
        ),
        None => (
            ProgressBar::new(args.requests),
            "{elapsed_precise} [{wide_bar}] {pos}/{len} ({rate}, eta {eta})",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} req/s", state.per_sec());
            },
        );
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        assert_eq!(ratio("0.5"), Ok(0.5));
        assert!(ratio("1.5").is_err());
        assert!(ratio("-0.1").is_err());
        assert!(ratio("half").is_err());
    }
}
