//! Gates fail closed. The schema refuses every value of an enum-valued column that replyd never
//! writes (and accepts every one it does, so the CHECKs and the Rust enums cannot drift apart);
//! a row that holds one anyway — written around the CHECK, as a hand edit or an old bug would —
//! stops the send instead of reading as "bot"; rows written before the CHECKs existed migrate.

use replyd::domain::{ConversationMode, LedgerState, Provider, SilenceReason};
use replyd::store::{Claim, Store, StoreOptions, SweepBatch, SweepMode};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

use crate::conformance::sqlite_store;
use crate::fixtures::{PHONE_NUMBER_ID, USER, now_s, text_notification};
use crate::helpers::spawn_app;
use crate::write_path::big_text;

async fn raw(dir: &std::path::Path, file: &str) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(dir.join(file))
        .create_if_missing(true)
        .foreign_keys(true);
    SqliteConnection::connect_with(&options).await.unwrap()
}

/// Runs `sql`; `Err` with SQLite's message when refused.
async fn run(conn: &mut SqliteConnection, sql: &str) -> Result<(), String> {
    sqlx::query(sql)
        .execute(conn)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn refused(conn: &mut SqliteConnection, sql: &str) {
    let error = run(conn, sql).await.expect_err(sql);
    assert!(error.contains("CHECK constraint failed"), "{sql}: {error}");
}

const MODES: [ConversationMode; 3] = [
    ConversationMode::Bot,
    ConversationMode::Operator,
    ConversationMode::Escalated,
];

#[tokio::test]
async fn enum_columns_take_exactly_the_values_replyd_writes() {
    let (_store, dir) = sqlite_store().await;
    let mut db = raw(dir.path(), "conformance.db").await;
    for (n, provider) in [Provider::Cloud, Provider::Wasender]
        .into_iter()
        .enumerate()
    {
        run(&mut db, &format!(
            "INSERT INTO inbound_messages (id, provider, message_id, phone_number_id, wa_id, kind, payload_ts, received_at_ms, raw)
             VALUES ({n}, '{provider}', 'm{n}', '1', '2', 'text', 0, 0, '{{}}')"
        )).await.unwrap();
    }
    refused(&mut db, "INSERT INTO inbound_messages (provider, message_id, phone_number_id, wa_id, kind, payload_ts, received_at_ms, raw)
                      VALUES ('telegram', 'm9', '1', '2', 'text', 0, 0, '{}')").await;
    for reason in SilenceReason::ALL {
        run(&mut db, &format!("UPDATE inbound_messages SET outcome = 'silent', outcome_reason = '{reason}' WHERE id = 0")).await.unwrap();
    }
    for (outcome, reason) in [
        ("replied", "NULL"),
        ("dead", "'cloud_api_131026'"),
        ("NULL", "NULL"),
    ] {
        run(
            &mut db,
            &format!(
                "UPDATE inbound_messages SET outcome = {}, outcome_reason = {reason} WHERE id = 0",
                if outcome == "NULL" {
                    outcome.to_owned()
                } else {
                    format!("'{outcome}'")
                }
            ),
        )
        .await
        .unwrap();
    }
    for bad in [
        "outcome = 'sent'",
        "outcome = 'silent', outcome_reason = 'bored'",
        "outcome = 'silent', outcome_reason = NULL",
        "outcome = 'dead', outcome_reason = NULL",
    ] {
        refused(
            &mut db,
            &format!("UPDATE inbound_messages SET {bad} WHERE id = 0"),
        )
        .await;
    }

    for mode in MODES {
        run(&mut db, &format!("INSERT INTO conversations (provider, phone_number_id, wa_id, mode, updated_at_ms) VALUES ('cloud', '1', '{m}', '{m}', 0)", m = mode.as_str())).await.unwrap();
    }
    for bad in ["robot", "Bot", ""] {
        refused(&mut db, &format!("UPDATE conversations SET mode = '{bad}'")).await;
    }
    refused(&mut db, "INSERT INTO contacts (provider, phone_number_id, wa_id, opted_out, updated_at_ms) VALUES ('cloud', '1', '2', 2, 0)").await;
    // Every key's provider, and a gateway session's state, take only what replyd writes.
    for table in ["contacts", "conversations"] {
        refused(&mut db, &format!("INSERT INTO {table} (provider, phone_number_id, wa_id, updated_at_ms) VALUES ('telegram', '1', '2', 0)")).await;
    }
    refused(&mut db, "INSERT INTO send_holds (provider, phone_number_id, error_code, since_ms, next_probe_ms) VALUES ('telegram', '1', 'x', 0, 0)").await;
    refused(&mut db, "INSERT INTO jobs (inbound_id, provider, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms) VALUES (0, 'telegram', '1', '2', 0, 0, 0)").await;
    for state in [
        "CONNECTED",
        "CONNECTING",
        "DISCONNECTED",
        "LOGGED_OUT",
        "NEED_SCAN",
        "EXPIRED",
    ] {
        run(&mut db, &format!("INSERT OR REPLACE INTO gateway_sessions (provider, session_id, state, event_ts, updated_at_ms) VALUES ('wasender', 's', '{state}', 0, 0)")).await.unwrap();
    }
    refused(&mut db, "UPDATE gateway_sessions SET state = 'ONLINE'").await;
    refused(&mut db, "INSERT INTO gateway_sessions (provider, session_id, state, event_ts, updated_at_ms) VALUES ('cloud', 't', 'CONNECTED', 0, 0)").await;

    for state in LedgerState::ALL {
        run(&mut db, &format!("INSERT OR REPLACE INTO ledger (id, inbound_id, phone_number_id, wa_id, state, reply_text, claimed_at_ms, updated_at_ms)
                               VALUES (1, 0, '1', '2', '{}', 'hi', 0, 0)", state.as_str())).await.unwrap();
    }
    refused(&mut db, "UPDATE ledger SET state = 'maybe_sent'").await;
    refused(&mut db, "UPDATE ledger SET status_rank = 10").await;

    for state in ["available", "leased"] {
        run(&mut db, &format!("INSERT OR REPLACE INTO jobs (inbound_id, phone_number_id, wa_id, payload_ts, state, run_at_ms, created_at_ms)
                               VALUES (0, '1', '2', 0, '{state}', 0, 0)")).await.unwrap();
    }
    refused(&mut db, "UPDATE jobs SET state = 'done'").await;

    for (i, (kind, state)) in [
        ("payload", "open"),
        ("message", "replayed"),
        ("message", "discarded"),
    ]
    .into_iter()
    .enumerate()
    {
        run(
            &mut db,
            &format!(
                "INSERT INTO dead_letters (kind, provider, error, dedup_key, state, created_at_ms)
                               VALUES ('{kind}', 'cloud', 'e', 'k{i}', '{state}', 0)"
            ),
        )
        .await
        .unwrap();
    }
    refused(&mut db, "UPDATE dead_letters SET kind = 'status'").await;
    refused(&mut db, "UPDATE dead_letters SET state = 'closed'").await;
    refused(&mut db, "UPDATE dead_letters SET provider = 'sms'").await;
    refused(&mut db, "INSERT INTO statuses (message_id, status, provider, phone_number_id, payload_ts, raw, received_at_ms)
                      VALUES ('o', 'sent', 'fax', '1', 0, '{}', 0)").await;

    run(
        &mut db,
        "INSERT INTO sweep_runs (id, started_at_ms) VALUES (1, 0)",
    )
    .await
    .unwrap();
    run(&mut db, "INSERT INTO sweep_decisions (run_id, inbound_id, message_id, decision) VALUES (1, 0, 'm', 'requeue')").await.unwrap();
    for reason in SilenceReason::ALL {
        for decision in ["silent", "skip"] {
            run(
                &mut db,
                &format!("UPDATE sweep_decisions SET decision = '{decision}', reason = '{reason}'"),
            )
            .await
            .unwrap();
        }
    }
    refused(&mut db, "INSERT INTO sweep_decisions (run_id, inbound_id, message_id, decision) VALUES (1, 1, 'm', 'maybe')").await;
    refused(&mut db, "INSERT INTO sweep_decisions (run_id, inbound_id, message_id, decision, reason) VALUES (1, 1, 'm', 'silent', 'tired')").await;
}

#[tokio::test]
async fn an_unreadable_conversation_mode_stops_the_send() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_webhook(text_notification("wamid.held", "hello?"))
            .await
            .status(),
        200
    );
    // A little ahead of the job's due time (the server's clock at ingest).
    let now_ms = (now_s() + 2) * 1000;
    let jobs = app.store.lease_jobs(now_ms, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let inbound_id = jobs[0].inbound_id;

    let mut db = raw(app.dir.path(), "replyd.db").await;
    let corrupt = format!(
        "INSERT INTO conversations (provider, phone_number_id, wa_id, mode, taken_by, updated_at_ms)
         VALUES ('cloud', '{PHONE_NUMBER_ID}', '{USER}', 'operatr', 'ana', 0)"
    );
    refused(&mut db, &corrupt).await;
    // Around the CHECK, as a hand edit would: the row the gates must not read as "bot".
    run(&mut db, "PRAGMA ignore_check_constraints = ON")
        .await
        .unwrap();
    run(&mut db, &corrupt).await.unwrap();

    let error = app
        .store
        .reply_context(inbound_id)
        .await
        .expect_err("unreadable");
    assert!(
        error.is_corrupt() && error.to_string().contains("operatr"),
        "{error}"
    );
    let claim = app.store.claim_reply(inbound_id, "hi!", now_ms).await;
    assert!(
        matches!(&claim, Err(e) if e.is_corrupt()),
        "the claim refuses instead of sending: {claim:?}"
    );
    let message = app.message("wamid.held").await.unwrap();
    assert!(
        message["reply"].is_null(),
        "no ledger row, nothing sent: {message}"
    );
    assert_eq!(message["outcome"], "pending", "retried later: {message}");

    let swept = app
        .store
        .sweep_batch(&SweepBatch {
            mode: SweepMode::Act { run_id: None },
            after: None,
            limit: 10,
            now_ms: now_ms + 600_000,
            grace_ms: 0,
        })
        .await
        .unwrap();
    assert!(
        swept.decisions.is_empty(),
        "left alone: {:?}",
        swept.decisions
    );

    // Corrected, the same job goes on to its claim.
    run(&mut db, "UPDATE conversations SET mode = 'bot'")
        .await
        .unwrap();
    let claim = app
        .store
        .claim_reply(inbound_id, "hi!", now_ms)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Claimed { .. }), "{claim:?}");
}

#[tokio::test]
async fn rows_written_before_the_checks_migrate_with_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for name in ["0001_ingest.sql", "0002_replies.sql", "0003_sweep.sql"] {
        std::fs::copy(all.join(name), old.join(name)).unwrap();
    }
    let mut db = raw(dir.path(), "old.db").await;
    run(&mut db, "PRAGMA journal_mode = WAL").await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&mut db)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO inbound_messages (id, provider, message_id, phone_number_id, wa_id, kind, payload_ts, received_at_ms, raw, outcome, outcome_reason)
         VALUES (5, 'cloud', 'wamid.a', '1', '2', 'text', 100, 0, '{}', NULL, NULL),
                (6, 'cloud', 'wamid.b', '1', '2', 'text', 101, 0, '{}', 'silent', 'operator')",
        "INSERT INTO jobs (inbound_id, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms) VALUES (5, '1', '2', 100, 0, 0)",
        "INSERT INTO ledger (id, inbound_id, phone_number_id, wa_id, state, reply_text, claimed_at_ms, updated_at_ms)
         VALUES (3, 6, '1', '2', 'unsent', 'hi', 0, 0)",
        "INSERT INTO conversations (phone_number_id, wa_id, mode, updated_at_ms) VALUES ('1', '2', 'operator', 0)",
        "INSERT INTO contacts (phone_number_id, wa_id, last_inbound_ts, opted_out, updated_at_ms) VALUES ('1', '2', 101, 0, 0)",
        // A gateway user of the same session id: their rows must move to the gateway's side.
        "INSERT INTO inbound_messages (id, provider, message_id, phone_number_id, wa_id, kind, payload_ts, received_at_ms, raw)
         VALUES (7, 'wasender', 'K1', '1', '3', 'text', 102, 0, '{}')",
        "INSERT INTO contacts (phone_number_id, wa_id, last_inbound_ts, opted_out, updated_at_ms) VALUES ('1', '3', 102, 1, 0)",
        "INSERT INTO statuses (message_id, status, provider, phone_number_id, payload_ts, raw, received_at_ms)
         VALUES ('out.1', 'sent', 'cloud', '1', 100, '{}', 0)",
        "INSERT INTO dead_letters (kind, provider, inbound_id, error, dedup_key, created_at_ms)
         VALUES ('message', 'cloud', 6, 'e', 'k', 0)",
        "INSERT INTO sweep_runs (id, started_at_ms) VALUES (1, 0)",
        "INSERT INTO sweep_decisions (run_id, inbound_id, message_id, decision, reason) VALUES (1, 6, 'wamid.b', 'silent', 'operator')",
    ] {
        run(&mut db, sql).await.unwrap();
    }
    let indexes = "SELECT name FROM sqlite_schema WHERE type = 'index' ORDER BY name";
    let before: Vec<String> = sqlx::query_scalar(indexes)
        .fetch_all(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();

    let url = format!("sqlite://{}", dir.path().join("old.db").display()).into();
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.expect("existing rows migrate");

    let mut db = raw(dir.path(), "old.db").await;
    let after: Vec<String> = sqlx::query_scalar(indexes)
        .fetch_all(&mut db)
        .await
        .unwrap();
    // Every index is back (later migrations may add more).
    let missing: Vec<&String> = before.iter().filter(|i| !after.contains(i)).collect();
    assert!(missing.is_empty(), "indexes lost: {missing:?}");
    let summary = store.summary().await.unwrap();
    assert_eq!(
        (
            summary.inbound,
            summary.pending,
            summary.jobs_total,
            summary.dead_letters_open
        ),
        (3, 2, 1, 1)
    );
    // Providers apart: the Cloud user's rows are Cloud rows, the gateway user's gateway rows.
    let keys: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT provider, wa_id, opted_out FROM contacts ORDER BY wa_id")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(
        keys,
        [
            ("cloud".into(), "2".into(), 0),
            ("wasender".into(), "3".into(), 1)
        ]
    );
    let b = store.message("wamid.b").await.unwrap().unwrap();
    assert_eq!(
        b.reply.map(|r| (r.ledger_id, r.state)),
        Some((3, LedgerState::Unsent))
    );
    let (provider, mode): (String, String) =
        sqlx::query_as("SELECT provider, mode FROM conversations")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((provider.as_str(), mode.as_str()), ("cloud", "operator"));
    refused(&mut db, "UPDATE conversations SET mode = 'robot'").await;
    // The foreign keys still point at the rebuilt tables.
    let orphan = run(&mut db, "INSERT INTO jobs (inbound_id, provider, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms) VALUES (99, 'cloud', '1', '2', 0, 0, 0)").await;
    assert!(orphan.unwrap_err().contains("FOREIGN KEY"));
    let jobs = store.lease_jobs(1_000, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
}

/// One poisoned write in a reply batch (a claim that meets an unreadable mode) costs only
/// itself: the `mark_sent` of a reply that really went out, in the same batch, is kept. Both are
/// queued before the batcher runs (one thread: `join!` enqueues both before it yields).
#[tokio::test]
async fn a_poisoned_write_in_a_batch_keeps_the_others() {
    let app = spawn_app().await;
    for (id, user) in [("wamid.sent", 1), ("wamid.poisoned", 2)] {
        assert_eq!(app.post_webhook(big_text(id, user)).await.status(), 200);
    }
    let now_ms = (now_s() + 2) * 1000;
    let jobs = app.store.lease_jobs(now_ms, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let (sent, poisoned) = (jobs[0].inbound_id, jobs[1].inbound_id);
    let Claim::Claimed { ledger_id, .. } = app.store.claim_reply(sent, "hi", now_ms).await.unwrap()
    else {
        panic!("claimable");
    };
    let mut db = raw(app.dir.path(), "replyd.db").await;
    run(&mut db, "PRAGMA ignore_check_constraints = ON")
        .await
        .unwrap();
    run(
        &mut db,
        &format!(
            "INSERT INTO conversations (provider, phone_number_id, wa_id, mode, updated_at_ms)
         VALUES ('cloud', '{PHONE_NUMBER_ID}', '34600000002', 'robot', 0)"
        ),
    )
    .await
    .unwrap();

    let (kept, refused) = tokio::join!(
        app.store.mark_sent(sent, ledger_id, "wamid.out.1", now_ms),
        app.store.claim_reply(poisoned, "hi", now_ms),
    );
    kept.expect("the sent reply is recorded");
    assert!(matches!(&refused, Err(e) if e.is_corrupt()), "{refused:?}");
    let message = app.message("wamid.sent").await.unwrap();
    assert_eq!(message["outcome"], "replied", "{message}");
    assert!(app.message("wamid.poisoned").await.unwrap()["reply"].is_null());
}
