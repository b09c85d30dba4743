//! The fake's command line (`replyd fake-cloud-api --help`), also what tests start it from.

use std::net::SocketAddr;
use std::time::Duration;

/// Which id the fake's WASender `messages.update` webhooks carry as `data.key.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKeyId {
    /// The WhatsApp message key (`3EB0…`), as WASender does; `GET /api/messages/{msgId}/info`
    /// maps a send's `msgId` to it.
    #[default]
    Key,
    /// The `msgId` the send answered with — not what WASender does; for tests of a ledger that
    /// matches gateway statuses by `msgId`.
    MsgId,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FakeCloudArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub listen: SocketAddr,
    /// Delay added before answering every send (both APIs), e.g. `20ms`.
    #[arg(long, default_value = "0ms")]
    pub latency: humantime::Duration,
    /// Share of sends (0.0–1.0) answered 500 (code 131000) or 503 (code 131016 or 2); the
    /// gateway answers 500 or 503 with `{"success":false}`.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub error_5xx_ratio: f64,
    /// Share of sends (0.0–1.0) answered 429 (code 130429 or 80007; the gateway with
    /// `retry_after`) with `Retry-After: 1`.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub rate_limit_ratio: f64,
    /// Share of sends (0.0–1.0) accepted and recorded whose answer is held back by
    /// --timeout-delay: the dangerous case, sent (with its status webhooks) but unanswered.
    #[arg(long, alias = "timeout-after-ratio", default_value_t = 0.0, value_parser = ratio)]
    pub timeout_ratio: f64,
    /// Share of sends (0.0–1.0) that stall for --timeout-delay before anything goes out: not
    /// recorded, no status webhook, then answered 503 (if the client still waits).
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub timeout_before_ratio: f64,
    /// How long a held-back or stalled answer is delayed.
    #[arg(long, default_value = "30s")]
    pub timeout_delay: humantime::Duration,
    /// Answer every send with this Cloud API error code (e.g. 131026); the gateway answers 400
    /// `{"success":false}` with the code's title. `PATCH /faults` changes it.
    #[arg(long)]
    pub permanent_error_code: Option<i64>,
    /// Sends per second allowed per phone number id (and per gateway session); over it the
    /// Cloud API answers 400 with code 130429, the gateway 429 with `retry_after`.
    #[arg(long)]
    pub max_mps: Option<u32>,
    /// After each accepted Cloud API send, POST a signed `sent` status webhook to this URL.
    #[arg(long)]
    pub status_webhook_url: Option<String>,
    /// Follow each `sent` status webhook (both APIs) with a `delivered` one.
    #[arg(long)]
    pub delivered_status: bool,
    /// How long after an accepted send its status webhooks (both APIs) are posted.
    #[arg(long, default_value = "0ms")]
    pub status_delay: humantime::Duration,
    /// App secret that signs the status webhooks (X-Hub-Signature-256).
    #[arg(long, env = "REPLYD_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// Answer every read receipt (`"status":"read"` on the Cloud API send route) with HTTP 500;
    /// it is still listed in `GET /read-receipts`, flagged `failed`.
    #[arg(long)]
    pub mark_read_fails: bool,
    /// A WASender API key and the session it belongs to, `KEY=SESSION_ID` (repeatable). Once one
    /// is given, other keys are refused with 401; with none, every key belongs to
    /// --wasender-default-session.
    #[arg(long = "wasender-session", value_name = "KEY=SESSION_ID", value_parser = key_session)]
    pub wasender_sessions: Vec<(String, String)>,
    /// The session of API keys not listed with --wasender-session.
    #[arg(long, default_value = "wasender")]
    pub wasender_default_session: String,
    /// Start with the gateway's sessions disconnected: every `/api/send-message` is answered 503
    /// and nothing is recorded until `PATCH /faults {"wasender_connected": true}`.
    #[arg(long)]
    pub wasender_disconnected: bool,
    /// After each accepted gateway send, POST a `messages.update` webhook to this URL.
    #[arg(long)]
    pub wasender_webhook_url: Option<String>,
    /// Sent as `X-Webhook-Signature` on the gateway's webhooks (WASender sends the secret itself).
    #[arg(long, env = "REPLYD_WASENDER_SECRET", hide_env_values = true)]
    pub wasender_secret: Option<String>,
    /// Which id the gateway's `messages.update` webhooks carry in `data.key.id`.
    #[arg(long, value_enum, default_value_t = StatusKeyId::Key)]
    pub wasender_status_key: StatusKeyId,
    /// Seed for the fault draws; random when absent (logged at start).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Default for FakeCloudArgs {
    /// The CLI defaults, listening on a free port: what tests start from.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO.into(),
            error_5xx_ratio: 0.0,
            rate_limit_ratio: 0.0,
            timeout_ratio: 0.0,
            timeout_before_ratio: 0.0,
            timeout_delay: Duration::from_secs(30).into(),
            permanent_error_code: None,
            max_mps: None,
            status_webhook_url: None,
            delivered_status: false,
            status_delay: Duration::ZERO.into(),
            app_secret: None,
            mark_read_fails: false,
            wasender_sessions: Vec::new(),
            wasender_default_session: "wasender".into(),
            wasender_disconnected: false,
            wasender_webhook_url: None,
            wasender_secret: None,
            wasender_status_key: StatusKeyId::Key,
            seed: None,
        }
    }
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a number between 0.0 and 1.0")),
    }
}

fn key_session(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, session)) if !key.is_empty() && !session.is_empty() => {
            Ok((key.to_owned(), session.to_owned()))
        }
        _ => Err(format!("`{s}` is not KEY=SESSION_ID")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cli_arguments_parse_with_their_defaults() {
        use clap::{CommandFactory, Parser};
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: FakeCloudArgs,
        }
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["fake", "--latency", "20ms", "--max-mps", "80"]).unwrap();
        assert_eq!(cli.args.listen.to_string(), "127.0.0.1:9091");
        assert_eq!(Duration::from(cli.args.latency), Duration::from_millis(20));
        assert_eq!(
            Duration::from(cli.args.timeout_delay),
            Duration::from_secs(30)
        );
        assert_eq!(cli.args.max_mps, Some(80));
        assert_eq!(
            (cli.args.timeout_ratio, cli.args.timeout_before_ratio),
            (0.0, 0.0)
        );
        assert!(!cli.args.delivered_status);
        let cli = Cli::try_parse_from([
            "fake",
            "--timeout-before-ratio",
            "0.04",
            "--timeout-after-ratio",
            "0.05",
            "--delivered-status",
        ])
        .unwrap();
        assert_eq!(
            (cli.args.timeout_before_ratio, cli.args.timeout_ratio),
            (0.04, 0.05)
        );
        assert!(cli.args.delivered_status);
        assert!(!cli.args.mark_read_fails && !cli.args.wasender_disconnected);
        assert_eq!(cli.args.wasender_default_session, "wasender");
        assert_eq!(cli.args.wasender_status_key, StatusKeyId::Key);
        let cli = Cli::try_parse_from([
            "fake",
            "--wasender-session",
            "key-a=111",
            "--wasender-session",
            "key-b=222",
            "--wasender-webhook-url",
            "http://127.0.0.1:8080/webhook/wasender",
            "--wasender-secret",
            "s3cret",
            "--wasender-status-key",
            "msg-id",
            "--wasender-disconnected",
            "--mark-read-fails",
        ])
        .unwrap();
        assert_eq!(
            cli.args.wasender_sessions,
            [
                ("key-a".to_owned(), "111".to_owned()),
                ("key-b".to_owned(), "222".to_owned())
            ]
        );
        assert_eq!(cli.args.wasender_secret.as_deref(), Some("s3cret"));
        assert_eq!(cli.args.wasender_status_key, StatusKeyId::MsgId);
        assert!(cli.args.wasender_disconnected && cli.args.mark_read_fails);
        assert!(Cli::try_parse_from(["fake", "--wasender-session", "no-equals"]).is_err());
        assert!(Cli::try_parse_from(["fake", "--wasender-session", "=111"]).is_err());
        assert!(Cli::try_parse_from(["fake", "--timeout-before-ratio", "-1"]).is_err());
        assert!(Cli::try_parse_from(["fake", "--error-5xx-ratio", "1.5"]).is_err());
    }
}
