//! Sweep benchmark: the time of one reconcile sweep over a fixed set of pending candidates, with
//! a small and a large answered history beside them (SQLite). The sweep must cost what is
//! pending, not what is stored: its time should be flat across history sizes. As a baseline
//! from the same run, the table shows a plain scan for pending messages that ignores the index.
//!
//! Usage: `cargo run --release --example sweep_bench` (or `bench/sweep.sh`). Environment:
//!   BENCH_HISTORY=100000,5000000   answered messages of history, one database each
//!   BENCH_PENDING=1000             pending candidates
//!   BENCH_PER_CONVERSATION=20      history messages per conversation
//!   BENCH_RUNS=7                   measured runs per size (after one warm-up); medians shown
//!   BENCH_DIR=                     where the databases go (default: a temp dir, removed after)
//!
//! The candidates mix every path (per 20): 1 has its job (in_flight), 1 opted out, 1 held by an
//! operator, 1 superseded by a newer answered message, 1 with a newer message that was not
//! answered and five answered ones earlier that day (the superseded check reads those replies
//! and finds none newer: its slow path), 15 lost jobs (re-enqueued). History and candidates are written with SQL, not through ingest;
//! between runs the candidates are put back to pending without the jobs the sweep wrote.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{Connection, Executor, SqliteConnection};

use replyd::clock::Clock;
use replyd::secret::DatabaseUrl;
use replyd::store::{Store, StoreOptions};
use replyd::sweep::{SweepReport, SweepSettings, Sweeper};

const DAY_S: i64 = 86_400;

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct Params {
    history: i64,
    pending: i64,
    per_conversation: i64,
    runs: usize,
}

struct Row {
    history: i64,
    generate: Duration,
    db_mib: f64,
    sweep_ms: Vec<f64>,
    dry_ms: Vec<f64>,
    scan_ms: Vec<f64>,
    scanned: u64,
    requeued: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<i64> = std::env::var("BENCH_HISTORY")
        .unwrap_or_else(|_| "100000,5000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .context("BENCH_HISTORY: comma-separated counts")
        })
        .collect::<anyhow::Result<_>>()?;
    let (pending, per_conversation) = (
        env_num("BENCH_PENDING", 1000),
        env_num("BENCH_PER_CONVERSATION", 20),
    );
    let runs = env_num("BENCH_RUNS", 7).max(1) as usize;
    let temp = tempfile::tempdir()?;
    let dir = std::env::var("BENCH_DIR").map_or_else(|_| temp.path().to_owned(), Into::into);
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for history in sizes {
        let params = Params {
            history,
            pending,
            per_conversation,
            runs,
        };
        let db = dir.join(format!("sweep-{history}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        eprintln!("history {history}: generating…");
        rows.push(measure(&db, &params).await?);
    }
    print_table(&rows, pending, per_conversation, runs);
    Ok(())
}

async fn measure(db: &Path, p: &Params) -> anyhow::Result<Row> {
    let url: DatabaseUrl = format!("sqlite://{}", db.display()).into();
    let store = Store::connect(&url, &StoreOptions::default()).await?;
    store.migrate().await?;
    let mut conn = SqliteConnection::connect(url.expose()).await?;
    let now_s = Clock::system().now_s();
    let started = Instant::now();
    let first_candidate = generate(&mut conn, p, now_s).await?;
    let generate = started.elapsed();
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "history {}: generated in {:.1} s; sweeping…",
        p.history,
        generate.as_secs_f64()
    );
    let settings = SweepSettings {
        grace: Duration::from_secs(120),
        ..SweepSettings::default()
    };
    let sweeper = Sweeper::new(store, Clock::system(), settings, Arc::default());
    let mut row = Row {
        history: p.history,
        generate,
        db_mib: size as f64 / (1024.0 * 1024.0),
        sweep_ms: Vec::new(),
        dry_ms: Vec::new(),
        scan_ms: Vec::new(),
        scanned: 0,
        requeued: 0,
    };
    for run in 0..=p.runs {
        let (dry, dry_ms) = timed(sweeper.run_once(true)).await?;
        let (report, sweep_ms) = timed(sweeper.run_once(false)).await?;
        anyhow::ensure!(
            report.decisions == dry.decisions,
            "the dry run and the sweep disagree"
        );
        anyhow::ensure!(
            report.scanned == p.pending as u64,
            "scanned {} of {} candidates",
            report.scanned,
            p.pending
        );
        let scan = Instant::now();
        let cutoff = now_s - 120;
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM inbound_messages NOT INDEXED WHERE outcome IS NULL AND payload_ts <= ?",
        )
        .bind(cutoff)
        .fetch_one(&mut conn)
        .await?;
        let scan_ms = scan.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(pending > 0, "the baseline found no pending message");
        reset(&mut conn, first_candidate, p.pending).await?;
        if run > 0 {
            row.sweep_ms.push(sweep_ms);
            row.dry_ms.push(dry_ms);
            row.scan_ms.push(scan_ms);
        }
        (row.scanned, row.requeued) = (report.scanned, report.requeued);
    }
    Ok(row)
}

async fn timed(
    sweep: impl Future<Output = Result<SweepReport, replyd::sweep::SweepError>>,
) -> anyhow::Result<(SweepReport, f64)> {
    let started = Instant::now();
    let report = sweep.await?;
    Ok((report, started.elapsed().as_secs_f64() * 1000.0))
}

/// Writes the history (answered, with ledger rows) and the candidates; returns the first
/// candidate's row id.
async fn generate(conn: &mut SqliteConnection, p: &Params, now_s: i64) -> anyhow::Result<i64> {
    let conversations = (p.history / p.per_conversation.max(1)).max(p.pending);
    conn.execute(
        "PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000; PRAGMA temp_store = memory",
    )
    .await?;
    let mut tx = conn.begin().await?;
    // History: one message a second, ending two days ago, spread over the conversations.
    let history_start = now_s - 2 * DAY_S - p.history;
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
         INSERT INTO inbound_messages (id, provider, message_id, phone_number_id, wa_id, kind, body,
                                       payload_ts, received_at_ms, raw, outcome, outcome_at_ms)
         SELECT i, 'cloud', 'wamid.H' || i, '111', 'u' || (i % ?2), 'text', 'hola', ?3 + i,
                (?3 + i) * 1000 + 400, '{}', 'replied', (?3 + i) * 1000 + 900 FROM seq",
    )
    .bind(p.history)
    .bind(conversations)
    .bind(history_start)
    .execute(&mut *tx)
    .await?;
    insert_ledger_rows(&mut tx, 0).await?;
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1 - 1)
         INSERT INTO contacts (phone_number_id, wa_id, last_inbound_ts, opted_out, updated_at_ms)
         SELECT '111', 'u' || i, ?2, 0, 0 FROM seq",
    )
    .bind(conversations)
    .bind(now_s - 2 * DAY_S)
    .execute(&mut *tx)
    .await?;
    // Candidates: ten minutes old (past the grace period, inside the window), one per
    // conversation (7919 is prime: k * 7919 mod n visits distinct conversations).
    let first: i64 = p.history + 1;
    let last = first + p.pending - 1;
    let candidate_ts = now_s - 600;
    sqlx::query(
        "WITH RECURSIVE seq(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM seq WHERE k < ?1 - 1)
         INSERT INTO inbound_messages (id, provider, message_id, phone_number_id, wa_id, kind, body,
                                       payload_ts, received_at_ms, raw)
         SELECT ?2 + k, 'cloud', 'wamid.P' || k, '111', 'u' || (k * 7919 % ?3), 'text', 'hola',
                ?4, ?4 * 1000, '{}' FROM seq",
    )
    .bind(p.pending)
    .bind(first)
    .bind(conversations)
    .bind(candidate_ts)
    .execute(&mut *tx)
    .await?;
    let kind = |k: i64| format!("id BETWEEN {first} AND {last} AND (id - {first}) % 20 = {k}");
    let statements = [
        // Each candidate anchors its contact's window; kinds 3 and 4 have a newer message.
        format!(
            "UPDATE contacts SET last_inbound_ts = {candidate_ts} + CASE
                 WHEN (SELECT (m.id - {first}) % 20 FROM inbound_messages m
                       WHERE m.id BETWEEN {first} AND {last} AND m.wa_id = contacts.wa_id) IN (3, 4)
                 THEN 60 ELSE 0 END
             WHERE wa_id IN (SELECT wa_id FROM inbound_messages WHERE id BETWEEN {first} AND {last})"
        ),
        format!(
            "INSERT INTO jobs (inbound_id, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms)
             SELECT id, phone_number_id, wa_id, payload_ts, received_at_ms, received_at_ms
             FROM inbound_messages WHERE {}",
            kind(0)
        ),
        format!(
            "UPDATE contacts SET opted_out = 1
             WHERE wa_id IN (SELECT wa_id FROM inbound_messages WHERE {})",
            kind(1)
        ),
        format!(
            "INSERT INTO conversations (phone_number_id, wa_id, mode, taken_by, updated_at_ms)
             SELECT phone_number_id, wa_id, 'operator', 'bench', 0 FROM inbound_messages WHERE {}",
            kind(2)
        ),
        format!(
            "INSERT INTO inbound_messages (provider, message_id, phone_number_id, wa_id, kind, body,
                                           payload_ts, received_at_ms, raw, outcome, outcome_at_ms)
             SELECT 'cloud', 'wamid.N' || id, phone_number_id, wa_id, 'text', 'hola', payload_ts + 60,
                    (payload_ts + 60) * 1000, '{{}}', 'replied', (payload_ts + 60) * 1000
             FROM inbound_messages WHERE {}",
            kind(4)
        ),
        format!(
            "WITH RECURSIVE r(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM r WHERE j < 5)
             INSERT INTO inbound_messages (provider, message_id, phone_number_id, wa_id, kind, body,
                                           payload_ts, received_at_ms, raw, outcome, outcome_at_ms)
             SELECT 'cloud', 'wamid.R' || id || '.' || j, phone_number_id, wa_id, 'text', 'hola',
                    payload_ts - 600 * j, (payload_ts - 600 * j) * 1000, '{{}}', 'replied',
                    (payload_ts - 600 * j) * 1000
             FROM inbound_messages, r WHERE {}",
            kind(3)
        ),
    ];
    for sql in &statements {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    insert_ledger_rows(&mut tx, last).await?;
    tx.commit().await?;
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    Ok(first)
}

/// A delivered reply for every answered message above `after_id`.
async fn insert_ledger_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    after_id: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ledger (inbound_id, phone_number_id, wa_id, state, status_rank, outbound_id,
                             reply_text, attempts, first_attempt, claimed_at_ms, updated_at_ms)
         SELECT id, phone_number_id, wa_id, 'delivered', 2, 'wamid.O' || id, 'ok', 1, 1,
                received_at_ms, received_at_ms
         FROM inbound_messages WHERE id > ? AND outcome = 'replied'",
    )
    .bind(after_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The candidates pending again, without the jobs the sweep wrote (kind 0 keeps its own).
async fn reset(conn: &mut SqliteConnection, first: i64, pending: i64) -> anyhow::Result<()> {
    let last = first + pending - 1;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "UPDATE inbound_messages SET outcome = NULL, outcome_reason = NULL, outcome_at_ms = NULL
         WHERE id BETWEEN ?1 AND ?2",
    )
    .bind(first)
    .bind(last)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM jobs WHERE inbound_id BETWEEN ?1 AND ?2 AND (inbound_id - ?1) % 20 <> 0",
    )
    .bind(first)
    .bind(last)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn print_table(rows: &[Row], pending: i64, per_conversation: i64, runs: usize) {
    println!(
        "replyd sweep bench (SQLite): {pending} pending candidates, {per_conversation} history \
         messages per conversation, median of {runs} runs (min–max)"
    );
    println!(
        "{:>10}  {:>8}  {:>10}  {:>18}  {:>9}  {:>20}  {:>8}  {:>8}",
        "history",
        "db MiB",
        "generate s",
        "sweep ms",
        "dry ms",
        "baseline: scan ms",
        "scanned",
        "requeued"
    );
    for r in rows {
        let (min, max) = r
            .sweep_ms
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), x| {
                (lo.min(*x), hi.max(*x))
            });
        println!(
            "{:>10}  {:>8.0}  {:>10.1}  {:>18}  {:>9.1}  {:>20.1}  {:>8}  {:>8}",
            r.history,
            r.db_mib,
            r.generate.as_secs_f64(),
            format!("{:.1} ({min:.1}–{max:.1})", median(&r.sweep_ms)),
            median(&r.dry_ms),
            median(&r.scan_ms),
            r.scanned,
            r.requeued,
        );
    }
    println!(
        "sweep = one real run (lock, decide, re-enqueue, record, unlock; fsync on every commit); \
         dry = the same decisions, read-only; baseline = count pending rows without the index"
    );
}
