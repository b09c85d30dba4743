//! `--until-settled`: wait, bounded, until the server has every acknowledged message and none
//! is pending, then report what became of the traffic, read from `GET /api/v1/summary`.
//!
//! Outcomes are the server's counts after the run minus those before it: this run's traffic
//! (plus whatever else the server received meanwhile). `pending` is the server's whole backlog,
//! so "settled" means nothing at all is left to decide.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

const POLL_EVERY: Duration = Duration::from_millis(100);

/// The admin API of the server the traffic went to (same origin as the webhook URL).
pub struct AdminApi {
    client: reqwest::Client,
    summary_url: Url,
    token: String,
}

/// The server's totals at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub inbound: u64,
    pub duplicates: u64,
    pub pending: u64,
    pub replied: u64,
    pub silent: BTreeMap<String, u64>,
    pub dead: u64,
}

/// What became of a run's traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settled {
    /// Every acknowledged message arrived and none is pending (else the timeout passed first).
    pub settled: bool,
    pub waited_s: f64,
    /// New inbound messages the server stored during the run.
    pub inbound: u64,
    pub replied: u64,
    /// Deliberately unanswered, by reason.
    pub silent: BTreeMap<String, u64>,
    pub dead: u64,
    /// Messages without an outcome on the server at the end (all of them, not only this run's).
    pub pending: u64,
}

impl AdminApi {
    pub fn new(client: reqwest::Client, webhook_url: &Url, token: String) -> anyhow::Result<Self> {
        let summary_url = webhook_url
            .join("/api/v1/summary")
            .context("the admin API's URL")?;
        Ok(Self {
            client,
            summary_url,
            token,
        })
    }

    pub async fn counts(&self) -> anyhow::Result<Counts> {
        let response = self
            .client
            .get(self.summary_url.clone())
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("asking {} for the outcomes", self.summary_url))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => bail!(
                "the admin API refused the token (401): pass --admin-token or set \
                 REPLYD_ADMIN_TOKEN to the server's admin token (a server started without one \
                 keeps its generated token in its data directory's secrets.toml)"
            ),
            other => bail!("{} answered {other}", self.summary_url),
        }
        let body: Value = response.json().await.context("reading the summary")?;
        parse_counts(&body).with_context(|| format!("an unexpected summary: {body}"))
    }
}

fn parse_counts(v: &Value) -> Option<Counts> {
    let n = |v: &Value| v.as_u64();
    let outcomes = &v["outcomes"];
    Some(Counts {
        inbound: n(&v["inbound"])?,
        duplicates: n(&v["duplicates"])?,
        pending: n(&outcomes["pending"])?,
        replied: n(&outcomes["replied"])?,
        dead: n(&outcomes["dead"])?,
        silent: outcomes["silent"]
            .as_object()?
            .iter()
            .map(|(reason, count)| Some((reason.clone(), n(count)?)))
            .collect::<Option<_>>()?,
    })
}

/// Polls until every acknowledged message has arrived (as new or duplicate) and nothing is
/// pending, or `timeout` passes; then the difference from `before`.
pub async fn until_settled(
    api: &AdminApi,
    before: &Counts,
    acknowledged: u64,
    timeout: Duration,
) -> anyhow::Result<Settled> {
    let start = Instant::now();
    loop {
        let now = api.counts().await?;
        let arrived = (now.inbound + now.duplicates)
            .saturating_sub(before.inbound + before.duplicates)
            >= acknowledged;
        let settled = arrived && now.pending == 0;
        if settled || start.elapsed() >= timeout {
            return Ok(difference(before, &now, settled, start.elapsed()));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn difference(before: &Counts, after: &Counts, settled: bool, waited: Duration) -> Settled {
    let silent = after
        .silent
        .iter()
        .map(|(reason, n)| {
            let was = before.silent.get(reason).copied().unwrap_or(0);
            (reason.clone(), n.saturating_sub(was))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    Settled {
        settled,
        waited_s: waited.as_secs_f64(),
        inbound: after.inbound.saturating_sub(before.inbound),
        replied: after.replied.saturating_sub(before.replied),
        silent,
        dead: after.dead.saturating_sub(before.dead),
        pending: after.pending,
    }
}

impl Settled {
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let silent: u64 = self.silent.values().sum();
        let reasons: Vec<String> = self
            .silent
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        vec![
            (
                "settled",
                if self.settled {
                    format!("yes, after {:.1} s", self.waited_s)
                } else {
                    format!(
                        "NO: still {} pending after {:.1} s",
                        self.pending, self.waited_s
                    )
                },
            ),
            (
                "outcomes",
                format!(
                    "{} new inbound: replied {}  silent {}{}  dead {}  pending {}",
                    self.inbound,
                    self.replied,
                    silent,
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", reasons.join(", "))
                    },
                    self.dead,
                    self.pending
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_difference_counts_only_what_changed() {
        let summary = |inbound, pending, replied, stop, dead| {
            json!({
                "inbound": inbound, "duplicates": 1,
                "outcomes": { "pending": pending, "replied": replied,
                              "silent": { "opted_out": stop, "no_reply": 2 }, "dead": dead },
                "duplicate_ratio": 0.0, "first_attempt_send_ratio": 1.0, "dead_letters": 0,
            })
        };
        let before = parse_counts(&summary(10, 0, 7, 1, 0)).unwrap();
        let after = parse_counts(&summary(110, 3, 100, 4, 1)).unwrap();
        let settled = difference(&before, &after, false, Duration::from_secs(2));
        assert_eq!(
            (
                settled.inbound,
                settled.replied,
                settled.dead,
                settled.pending
            ),
            (100, 93, 1, 3)
        );
        assert_eq!(
            settled.silent,
            BTreeMap::from([("opted_out".to_owned(), 3)])
        );
        assert!(parse_counts(&json!({"inbound": 1})).is_none());
    }
}
