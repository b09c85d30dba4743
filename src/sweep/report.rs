//! What one sweep did (or, in a dry run, would do): totals, counts per reason, every decision;
//! as the admin API's JSON and as the CLI's table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::SilenceReason;
use crate::store::{SweepAction, SweepDecision};

/// What a sweep did, as `POST /api/v1/sweep` answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SweepReport)]
pub struct SweepReportAnswer {
    /// Null for a dry run (not recorded).
    pub run_id: Option<i64>,
    pub dry_run: bool,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub scanned: u64,
    pub requeued: u64,
    /// Silent and skip decisions per reason.
    pub counts: BTreeMap<String, u64>,
    pub decisions: Vec<SweepDecisionAnswer>,
}

/// One decision of a sweep.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SweepDecision)]
pub struct SweepDecisionAnswer {
    pub message_id: String,
    /// `requeue`, `silent` or `skip`.
    pub decision: &'static str,
    /// The gate that decided; null for `requeue`.
    pub reason: Option<&'static str>,
}

impl From<&SweepDecision> for SweepDecisionAnswer {
    fn from(d: &SweepDecision) -> Self {
        Self {
            message_id: d.message_id.clone(),
            decision: d.action.kind(),
            reason: d.action.reason().map(SilenceReason::as_str),
        }
    }
}

/// Counts keyed by reason name, as the API shows them.
pub fn counts_by_name(counts: &BTreeMap<SilenceReason, u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .map(|(r, n)| (r.as_str().to_owned(), *n))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// The recorded run (`None` for a dry run, which is not recorded).
    pub run_id: Option<i64>,
    pub dry_run: bool,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// Pending messages looked at.
    pub scanned: u64,
    /// Messages given a job again.
    pub requeued: u64,
    /// Silent and skip decisions per reason.
    pub counts: BTreeMap<SilenceReason, u64>,
    /// In the order they were decided (oldest payload first).
    pub decisions: Vec<SweepDecision>,
}

impl SweepReport {
    pub fn new(dry_run: bool, started_at_ms: i64) -> Self {
        Self {
            run_id: None,
            dry_run,
            started_at_ms,
            finished_at_ms: started_at_ms,
            scanned: 0,
            requeued: 0,
            counts: BTreeMap::new(),
            decisions: Vec::new(),
        }
    }

    /// Adds one batch's decisions.
    pub fn add(&mut self, run_id: Option<i64>, decisions: Vec<SweepDecision>) {
        self.run_id = self.run_id.or(run_id);
        for d in &decisions {
            self.scanned += 1;
            match d.action.reason() {
                None => self.requeued += 1,
                Some(reason) => *self.counts.entry(reason).or_default() += 1,
            }
        }
        self.decisions.extend(decisions);
    }

    /// Messages whose outcome the run wrote.
    pub fn silenced(&self) -> u64 {
        self.decisions
            .iter()
            .filter(|d| matches!(d.action, SweepAction::Silent(_)))
            .count() as u64
    }

    /// Did the run change anything (a job written, an outcome recorded)?
    pub fn acted(&self) -> bool {
        self.requeued > 0 || self.silenced() > 0
    }

    /// The body of `POST /api/v1/sweep`.
    pub fn answer(&self) -> SweepReportAnswer {
        SweepReportAnswer {
            run_id: self.run_id,
            dry_run: self.dry_run,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            scanned: self.scanned,
            requeued: self.requeued,
            counts: counts_by_name(&self.counts),
            decisions: self
                .decisions
                .iter()
                .map(SweepDecisionAnswer::from)
                .collect(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.answer()).expect("a report serializes")
    }

    /// The decisions as a table, then the totals (what `replyd sweep [--dry-run]` prints).
    pub fn table(&self) -> String {
        let width = self
            .decisions
            .iter()
            .map(|d| d.message_id.chars().count())
            .chain(["message".len()])
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(out, "{:<width$}  {:<8}  reason", "message", "decision");
        for d in &self.decisions {
            let reason = d.action.reason().map_or("-", SilenceReason::as_str);
            let _ = writeln!(
                out,
                "{:<width$}  {:<8}  {reason}",
                d.message_id,
                d.action.kind()
            );
        }
        let verb = if self.dry_run {
            "dry run, nothing changed"
        } else {
            "done"
        };
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "{} scanned, {} {}re-enqueued{}{} ({verb}, {} ms)",
            self.scanned,
            self.requeued,
            if self.dry_run { "to be " } else { "" },
            if counts.is_empty() { "" } else { "; " },
            counts.join(", "),
            self.finished_at_ms - self.started_at_ms,
        );
        out
    }

    pub fn print_table(&self) {
        print!("{}", self.table());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(id: i64, message_id: &str, action: SweepAction) -> SweepDecision {
        SweepDecision {
            inbound_id: id,
            message_id: message_id.into(),
            action,
        }
    }

    #[test]
    fn totals_count_every_decision_once() {
        let mut report = SweepReport::new(true, 1_000);
        report.add(
            None,
            vec![
                decision(1, "wamid.A", SweepAction::Requeue),
                decision(2, "wamid.B", SweepAction::Silent(SilenceReason::OptedOut)),
            ],
        );
        report.add(
            None,
            vec![decision(
                3,
                "wamid.C",
                SweepAction::Skip(SilenceReason::InFlight),
            )],
        );
        assert_eq!(
            (report.scanned, report.requeued, report.silenced()),
            (3, 1, 1)
        );
        assert_eq!(
            report.counts,
            BTreeMap::from([(SilenceReason::OptedOut, 1), (SilenceReason::InFlight, 1)])
        );
        assert!(report.acted());
        let json = report.to_json();
        assert_eq!(json["counts"]["opted_out"], 1);
        assert_eq!(json["decisions"][0]["reason"], Value::Null);
        assert_eq!(json["decisions"][2]["decision"], "skip");
        let table = report.table();
        assert!(table.contains("wamid.B  silent    opted_out"), "{table}");
        assert!(
            table.contains("3 scanned, 1 to be re-enqueued; opted_out 1, in_flight 1 (dry run")
        );
    }

    #[test]
    fn a_run_that_only_skips_did_nothing() {
        let mut report = SweepReport::new(false, 0);
        report.add(
            Some(7),
            vec![decision(1, "w", SweepAction::Skip(SilenceReason::Answered))],
        );
        assert!(!report.acted());
        assert_eq!(report.run_id, Some(7));
    }
}
