//! The store conformance suite: every backend runs every case. A backend is added with one
//! `conformance!` line naming a function that opens a fresh, migrated, empty store.

use replyd::domain::{AmbiguousResolution, ResolvedBy};
use replyd::domain::{
    ContactProfile, ConversationMode, DeliveryStatus, InboundMessage, LedgerState, MessageId,
    MessageKind, Notification, Outcome, PhoneNumberId, Provider, RejectedItem, SilenceReason,
    StatusUpdate, WaId, callback_for_ledger,
};
use replyd::store::{
    AmbiguousSettlement, Claim, DeadLetterAction, IngestReport, IngestUnit, Store, StoreOptions,
    UndecodablePayload,
};
use replyd::whatsapp::PayloadError;
use tempfile::TempDir;

pub(crate) const NOW_MS: i64 = 1_700_000_000_000;

/// A fresh SQLite store in its own directory (kept alive by the guard).
pub async fn sqlite_store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display()).into();
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

macro_rules! conformance {
    ($backend:ident, $open:ident, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let (store, _guard) = super::$open().await;
                    super::$case(store).await;
                }
            )*
        }
    };
}
pub(crate) use conformance;

conformance!(
    sqlite,
    sqlite_store,
    [
        new_message_is_stored_with_one_job,
        duplicates_within_and_across_batches_store_once,
        statuses_are_unique_per_id_and_status,
        window_anchor_never_moves_backwards,
        dead_letters_are_unique_per_content,
        summary_counts_everything,
        migrate_is_idempotent,
        lease_hands_out_only_the_head_of_each_conversation,
        an_expired_lease_returns_the_job,
        the_ledger_row_is_claimed_once,
        claim_rechecks_the_gates,
        statuses_move_the_ledger_forward_only,
        a_status_with_our_callback_settles_an_ambiguous_send,
        quiet_ambiguous_sends_become_replayable_dead_letters,
        the_sweep_decides_each_pending_message_by_the_gates,
        sweep_batches_resume_after_their_cursor_and_add_up_to_one_run,
        the_sweep_lock_has_one_holder_until_released_or_expired,
    ]
);

pub(crate) fn msg(id: &str, from: &str, ts: i64) -> InboundMessage {
    InboundMessage {
        provider: Provider::Cloud,
        id: MessageId::parse(id).unwrap(),
        phone_number_id: PhoneNumberId::parse("111").unwrap(),
        from: WaId::parse(from).unwrap(),
        group: None,
        kind: MessageKind::Text,
        text: Some("hi".into()),
        timestamp: ts,
        raw: format!(r#"{{"id":"{id}"}}"#),
    }
}

pub(crate) fn status(id: &str, state: &str) -> StatusUpdate {
    StatusUpdate {
        provider: Provider::Cloud,
        message_id: MessageId::parse(id).unwrap(),
        status: DeliveryStatus::parse(state),
        phone_number_id: PhoneNumberId::parse("111").unwrap(),
        recipient_id: Some("1".into()),
        timestamp: 5,
        callback_data: None,
        error_code: None,
        raw: "{}".into(),
    }
}

pub(crate) fn unit(notification: Notification) -> IngestUnit {
    IngestUnit {
        origin: replyd::domain::Origin::Cloud,
        notification,
        undecodable: None,
        keyword_actions: Vec::new(),
        delivery_digest: "d".into(),
    }
}

pub(crate) fn messages(ms: Vec<InboundMessage>) -> IngestUnit {
    unit(Notification {
        messages: ms,
        ..Default::default()
    })
}

async fn new_message_is_stored_with_one_job(store: Store) {
    let reports = store
        .ingest_batch(&[messages(vec![msg("w1", "1", 10)])], NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        reports,
        vec![IngestReport {
            new_messages: 1,
            ..Default::default()
        }]
    );
    let m = store.message("w1").await.unwrap().unwrap();
    assert_eq!(
        (m.wa_id.as_str(), m.kind.as_str(), m.timestamp, m.outcome),
        ("1", "text", 10, None)
    );
    assert_eq!(store.queue_depth().await.unwrap(), 1);
    assert!(store.message("nope").await.unwrap().is_none());
}

async fn duplicates_within_and_across_batches_store_once(store: Store) {
    let batch = [
        messages(vec![msg("w1", "1", 10)]),
        messages(vec![msg("w1", "1", 10), msg("w2", "1", 11)]),
    ];
    let reports = store.ingest_batch(&batch, NOW_MS).await.unwrap();
    assert_eq!(
        (reports[0].new_messages, reports[0].duplicate_messages),
        (1, 0)
    );
    assert_eq!(
        (reports[1].new_messages, reports[1].duplicate_messages),
        (1, 1)
    );
    let again = store
        .ingest_batch(&[messages(vec![msg("w2", "1", 11)])], NOW_MS)
        .await
        .unwrap();
    assert_eq!(again[0].duplicate_messages, 1);
    // The same id from another provider is another message.
    let mut other = msg("w1", "1", 10);
    other.provider = Provider::Wasender;
    assert_eq!(
        store
            .ingest_batch(&[messages(vec![other])], NOW_MS)
            .await
            .unwrap()[0]
            .new_messages,
        1
    );
    let s = store.summary().await.unwrap();
    assert_eq!((s.inbound, s.duplicates, s.jobs_total), (3, 2, 3));
}

async fn statuses_are_unique_per_id_and_status(store: Store) {
    let n = Notification {
        statuses: vec![
            status("o1", "sent"),
            status("o1", "delivered"),
            status("o1", "sent"),
            status("o2", "sent"),
        ],
        ..Default::default()
    };
    let r = store.ingest_batch(&[unit(n)], NOW_MS).await.unwrap();
    assert_eq!((r[0].new_statuses, r[0].duplicate_statuses), (3, 1));
}

async fn window_anchor_never_moves_backwards(store: Store) {
    store
        .ingest_batch(&[messages(vec![msg("a", "7", 500)])], NOW_MS)
        .await
        .unwrap();
    store
        .ingest_batch(&[messages(vec![msg("b", "7", 100)])], NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        store
            .contact(&crate::helpers::cloud_key("111", "7"))
            .await
            .unwrap()
            .unwrap()
            .last_inbound_ts,
        Some(500)
    );
    store
        .ingest_batch(&[messages(vec![msg("c", "7", 900)])], NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        store
            .contact(&crate::helpers::cloud_key("111", "7"))
            .await
            .unwrap()
            .unwrap()
            .last_inbound_ts,
        Some(900)
    );
    let named = Notification {
        contacts: vec![ContactProfile {
            provider: Provider::Cloud,
            phone_number_id: PhoneNumberId::parse("111").unwrap(),
            wa_id: WaId::parse("7").unwrap(),
            name: Some("Ana".into()),
        }],
        ..Default::default()
    };
    store.ingest_batch(&[unit(named)], NOW_MS).await.unwrap();
    let c = store
        .contact(&crate::helpers::cloud_key("111", "7"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.display_name.as_deref(), c.last_inbound_ts, c.opted_out),
        (Some("Ana"), Some(900), false)
    );
}

async fn dead_letters_are_unique_per_content(store: Store) {
    let bad = |raw: &[u8]| IngestUnit {
        undecodable: Some(UndecodablePayload {
            error: PayloadError::Json("eof".into()),
            raw: raw.to_vec(),
        }),
        ..unit(Notification::default())
    };
    let item = unit(Notification {
        rejected: vec![RejectedItem {
            error: "message without an `id`".into(),
            raw: "{}".into(),
        }],
        ..Default::default()
    });
    let r = store
        .ingest_batch(&[bad(b"{"), bad(b"{"), bad(b"["), item.clone()], NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|r| r.dead_letters).collect::<Vec<_>>(),
        [1, 0, 1, 1]
    );
    store.ingest_batch(&[item], NOW_MS).await.unwrap();
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 3);
    assert!(
        letters.iter().all(|l| l.raw.is_none()),
        "listings carry no bytes"
    );
    let mut kept = Vec::new();
    for letter in letters.iter().filter(|l| l.error == "malformed_json") {
        assert_eq!(letter.raw_bytes, Some(1));
        kept.push(store.dead_letter(letter.id).await.unwrap().unwrap().raw);
    }
    kept.sort();
    assert_eq!(kept, [Some("[".to_owned()), Some("{".to_owned())]);
    assert!(
        letters.iter().any(|l| l.error == "malformed_item"
            && l.detail.as_deref() == Some("message without an `id`"))
    );
}

async fn summary_counts_everything(store: Store) {
    let empty = store.summary().await.unwrap();
    assert_eq!(
        (
            empty.inbound,
            empty.pending,
            empty.duplicates,
            empty.dead_letters_open
        ),
        (0, 0, 0, 0)
    );
    store
        .ingest_batch(
            &[messages(vec![
                msg("a", "1", 1),
                msg("b", "2", 1),
                msg("a", "1", 1),
            ])],
            NOW_MS,
        )
        .await
        .unwrap();
    let s = store.summary().await.unwrap();
    assert_eq!(
        (s.inbound, s.pending, s.duplicates, s.replied, s.dead),
        (2, 2, 1, 0, 0)
    );
    assert_eq!((s.jobs_available, s.jobs_total), (2, 2));
}

async fn migrate_is_idempotent(store: Store) {
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

/// Payload timestamps near NOW so the 24-hour window is open.
pub(crate) const TS: i64 = NOW_MS / 1000 - 60;

/// The message ids of leased jobs, sorted, with their inbound row ids.
async fn leased_ids(store: &Store, jobs: &[replyd::store::LeasedJob]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for job in jobs {
        let ctx = store.reply_context(job.inbound_id).await.unwrap().unwrap();
        out.push((ctx.message.message_id, job.inbound_id));
    }
    out.sort();
    out
}

async fn lease_hands_out_only_the_head_of_each_conversation(store: Store) {
    let batch = vec![
        msg("a3", "1", TS + 3),
        msg("a1", "1", TS + 1),
        msg("b1", "2", TS),
        msg("a2", "1", TS + 2),
    ];
    store
        .ingest_batch(&[messages(batch)], NOW_MS)
        .await
        .unwrap();
    let first = leased_ids(&store, &store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap()).await;
    let names: Vec<&str> = first.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        names,
        ["a1", "b1"],
        "only the oldest message of each conversation (payload time, not arrival)"
    );
    assert!(
        store
            .lease_jobs(NOW_MS, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "heads are leased, the rest wait"
    );
    store
        .finish_silent(first[0].1, SilenceReason::NoReply, NOW_MS)
        .await
        .unwrap();
    let next = leased_ids(&store, &store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap()).await;
    assert_eq!(
        next.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
        ["a2"]
    );
}

async fn an_expired_lease_returns_the_job(store: Store) {
    store
        .ingest_batch(&[messages(vec![msg("x", "1", TS)])], NOW_MS)
        .await
        .unwrap();
    let job = store.lease_jobs(NOW_MS, 1_000, 10).await.unwrap()[0];
    assert_eq!(job.attempts, 1);
    assert!(
        store
            .lease_jobs(NOW_MS + 500, 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.lease_jobs(NOW_MS + 1_000, 1_000, 10).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "a killed worker's job comes back when its lease runs out"
    );
    assert_eq!(
        (again[0].inbound_id, again[0].attempts),
        (job.inbound_id, 2)
    );
}

async fn the_ledger_row_is_claimed_once(store: Store) {
    store
        .ingest_batch(&[messages(vec![msg("x", "1", TS)])], NOW_MS)
        .await
        .unwrap();
    let job = store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap()[0];
    let Claim::Claimed {
        ledger_id,
        attempts: 1,
    } = store
        .claim_reply(job.inbound_id, "hi", NOW_MS)
        .await
        .unwrap()
    else {
        panic!("first claim")
    };
    assert_eq!(
        store
            .claim_reply(job.inbound_id, "hi", NOW_MS)
            .await
            .unwrap(),
        Claim::Silenced(SilenceReason::Answered)
    );
    // A refused send puts the row back to `unsent`: the retry may claim it again.
    store
        .retry_later(
            job.inbound_id,
            Some(ledger_id),
            NOW_MS + 10,
            "http_503",
            false,
        )
        .await
        .unwrap();
    let Claim::Claimed {
        ledger_id: again,
        attempts: 2,
    } = store
        .claim_reply(job.inbound_id, "hi", NOW_MS)
        .await
        .unwrap()
    else {
        panic!("reclaim after a refused send")
    };
    assert_eq!(again, ledger_id);
    store
        .mark_sent(job.inbound_id, ledger_id, "wamid.out", NOW_MS)
        .await
        .unwrap();
    let m = store.message("x").await.unwrap().unwrap();
    assert_eq!(m.outcome, Some(Outcome::Replied));
    let reply = m.reply.unwrap();
    assert_eq!(
        (reply.state, reply.outbound_id.as_deref(), reply.attempts),
        (LedgerState::Sent, Some("wamid.out"), 2)
    );
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    let s = store.summary().await.unwrap();
    assert_eq!((s.sends, s.first_attempt_sends), (1, 0));
}

async fn claim_rechecks_the_gates(store: Store) {
    store
        .ingest_batch(
            &[messages(vec![msg("x", "1", TS), msg("y", "2", TS)])],
            NOW_MS,
        )
        .await
        .unwrap();
    let jobs = store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap();
    // Operator actions land after the worker's decision, before its claim.
    store
        .set_opted_out(&crate::helpers::cloud_key("111", "1"), true, NOW_MS)
        .await
        .unwrap();
    store
        .set_conversation_mode(
            &crate::helpers::cloud_key("111", "2"),
            ConversationMode::Operator,
            Some("ana"),
            NOW_MS,
        )
        .await
        .unwrap();
    for job in jobs {
        let claim = store
            .claim_reply(job.inbound_id, "hi", NOW_MS)
            .await
            .unwrap();
        assert!(
            matches!(
                claim,
                Claim::Silenced(SilenceReason::OptedOut | SilenceReason::Operator)
            ),
            "{claim:?}"
        );
    }
    assert_eq!(
        store.message("x").await.unwrap().unwrap().outcome,
        Some(Outcome::Silent(SilenceReason::OptedOut))
    );
    assert_eq!(
        store.message("y").await.unwrap().unwrap().outcome,
        Some(Outcome::Silent(SilenceReason::Operator))
    );
    assert!(
        store.message("x").await.unwrap().unwrap().reply.is_none(),
        "no ledger row, no send"
    );
}

pub(crate) async fn status_update(store: &Store, out: &str, state: &str, callback: Option<String>) {
    let mut s = status(out, state);
    s.callback_data = callback;
    store
        .ingest_batch(
            &[unit(Notification {
                statuses: vec![s],
                ..Default::default()
            })],
            NOW_MS,
        )
        .await
        .unwrap();
}

/// Message "x" from user "1", ingested, leased and claimed: its job and ledger row.
pub(crate) async fn claimed_message(store: &Store) -> (replyd::store::LeasedJob, i64) {
    store
        .ingest_batch(&[messages(vec![msg("x", "1", TS)])], NOW_MS)
        .await
        .unwrap();
    let job = store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap()[0];
    let Claim::Claimed { ledger_id, .. } = store
        .claim_reply(job.inbound_id, "hi", NOW_MS)
        .await
        .unwrap()
    else {
        panic!("the first claim of a fresh message is ours")
    };
    (job, ledger_id)
}

async fn statuses_move_the_ledger_forward_only(store: Store) {
    let (job, ledger_id) = claimed_message(&store).await;
    store
        .mark_sent(job.inbound_id, ledger_id, "wamid.out", NOW_MS)
        .await
        .unwrap();
    let state = |store: Store| async move {
        store
            .message("x")
            .await
            .unwrap()
            .unwrap()
            .reply
            .unwrap()
            .state
    };
    status_update(&store, "wamid.out", "read", None).await;
    assert_eq!(state(store.clone()).await, LedgerState::Read);
    status_update(&store, "wamid.out", "delivered", None).await; // late: never moves it back
    assert_eq!(state(store.clone()).await, LedgerState::Read);
    status_update(&store, "wamid.out", "failed", None).await;
    assert_eq!(state(store.clone()).await, LedgerState::Failed);
    status_update(&store, "wamid.out", "played", None).await; // failed is final
    assert_eq!(state(store.clone()).await, LedgerState::Failed);
}

async fn a_status_with_our_callback_settles_an_ambiguous_send(store: Store) {
    let (job, ledger_id) = claimed_message(&store).await;
    store
        .mark_ambiguous(job.inbound_id, ledger_id, "timeout", NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        store.message("x").await.unwrap().unwrap().outcome,
        None,
        "pending until there is evidence"
    );
    // Someone else's status (no callback, unknown id) changes nothing.
    status_update(&store, "wamid.other", "sent", Some("their-data".into())).await;
    assert_eq!(store.message("x").await.unwrap().unwrap().outcome, None);
    status_update(
        &store,
        "wamid.out",
        "delivered",
        Some(callback_for_ledger(ledger_id)),
    )
    .await;
    let m = store.message("x").await.unwrap().unwrap();
    assert_eq!(m.outcome, Some(Outcome::Replied));
    let reply = m.reply.unwrap();
    assert_eq!(
        (reply.state, reply.outbound_id.as_deref()),
        (LedgerState::Delivered, Some("wamid.out"))
    );
    assert_eq!(reply.resolved_by, Some(ResolvedBy::Status));
    let settled = store
        .settle_ambiguous(0, NOW_MS + 1, AmbiguousResolution::Evidence)
        .await
        .unwrap();
    assert_eq!(
        settled,
        AmbiguousSettlement::default(),
        "nothing left to settle"
    );
}

async fn quiet_ambiguous_sends_become_replayable_dead_letters(store: Store) {
    let (job, ledger_id) = claimed_message(&store).await;
    store
        .mark_ambiguous(job.inbound_id, ledger_id, "timeout", NOW_MS)
        .await
        .unwrap();
    let evidence = AmbiguousResolution::Evidence;
    assert_eq!(
        store
            .settle_ambiguous(600_000, NOW_MS + 1_000, evidence)
            .await
            .unwrap(),
        AmbiguousSettlement::default(),
        "still inside the quiet period"
    );
    // No status traffic at all for the number: no evidence either way.
    assert_eq!(
        store
            .settle_ambiguous(600_000, NOW_MS + 600_000, evidence)
            .await
            .unwrap(),
        AmbiguousSettlement {
            resent: 0,
            dead_lettered: 1
        }
    );
    let reply = store.message("x").await.unwrap().unwrap().reply.unwrap();
    assert_eq!(reply.resolved_by, Some(ResolvedBy::Operator));
    assert_eq!(
        store.message("x").await.unwrap().unwrap().outcome,
        Some(Outcome::Dead("ambiguous_send".into()))
    );
    let letter = store
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.error == "ambiguous_send")
        .unwrap();
    assert_eq!(letter.message_id.as_deref(), Some("x"));
    assert_eq!(
        store.replay_dead_letter(letter.id, NOW_MS).await.unwrap(),
        DeadLetterAction::Replayed
    );
    assert_eq!(
        store.replay_dead_letter(letter.id, NOW_MS).await.unwrap(),
        DeadLetterAction::NotOpen
    );
    assert_eq!(
        store.message("x").await.unwrap().unwrap().outcome,
        None,
        "pending again"
    );
    let job = store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap()[0];
    assert!(matches!(
        store
            .claim_reply(job.inbound_id, "hi", NOW_MS)
            .await
            .unwrap(),
        Claim::Claimed { .. }
    ));
}

// ---- the reconcile sweep ----

/// The sweep runs a minute after ingest, with a 30 s grace period.
const SWEEP_MS: i64 = NOW_MS + 60_000;
const GRACE_MS: i64 = 30_000;

fn sweep_batch(
    mode: replyd::store::SweepMode,
    after: Option<replyd::store::SweepCursor>,
    limit: u32,
) -> replyd::store::SweepBatch {
    replyd::store::SweepBatch {
        mode,
        after,
        limit,
        now_ms: SWEEP_MS,
        grace_ms: GRACE_MS,
    }
}

async fn inbound_id_of(store: &Store, jobs: &[replyd::store::LeasedJob], id: &str) -> i64 {
    leased_ids(store, jobs)
        .await
        .into_iter()
        .find(|(m, _)| m == id)
        .unwrap_or_else(|| panic!("{id} leased"))
        .1
}

async fn the_sweep_decides_each_pending_message_by_the_gates(store: Store) {
    use replyd::store::{SweepAction, SweepMode};
    use std::collections::BTreeMap;
    let batch = vec![
        msg("lost", "1", TS),
        msg("opted", "2", TS),
        msg("held", "3", TS),
        msg("esc", "4", TS),
        msg("queued", "5", TS),
        msg("claimed", "6", TS),
        msg("old", "7", TS - 2 * 86_400),
        msg("h1", "8", TS),
        msg("h2", "8", TS + 10),
        msg("young", "9", TS + 100),
    ];
    store
        .ingest_batch(&[messages(batch)], NOW_MS)
        .await
        .unwrap();
    let all = store.lease_jobs(NOW_MS, 600_000, 100).await.unwrap();
    for id in ["lost", "h1"] {
        store
            .drop_job(inbound_id_of(&store, &all, id).await)
            .await
            .unwrap();
    }
    store
        .set_opted_out(&crate::helpers::cloud_key("111", "2"), true, NOW_MS)
        .await
        .unwrap();
    store
        .set_conversation_mode(
            &crate::helpers::cloud_key("111", "3"),
            ConversationMode::Operator,
            Some("ana"),
            NOW_MS,
        )
        .await
        .unwrap();
    store
        .set_conversation_mode(
            &crate::helpers::cloud_key("111", "4"),
            ConversationMode::Escalated,
            Some("angry"),
            NOW_MS,
        )
        .await
        .unwrap();
    let claimed = inbound_id_of(&store, &all, "claimed").await;
    assert!(matches!(
        store.claim_reply(claimed, "hi", NOW_MS).await.unwrap(),
        Claim::Claimed { .. }
    ));
    // h1's job is gone, so h2 heads its conversation once leased again; it gets answered.
    let h2 = store.lease_jobs(NOW_MS + 1, 600_000, 100).await.unwrap();
    let h2 = inbound_id_of(&store, &h2, "h2").await;
    let Claim::Claimed { ledger_id, .. } = store.claim_reply(h2, "hi", NOW_MS).await.unwrap()
    else {
        panic!("h2 claimed")
    };
    store
        .mark_sent(h2, ledger_id, "wamid.out.h2", NOW_MS)
        .await
        .unwrap();

    // Delivered late: old payload, arrived 10 s before the sweep (inside the grace period).
    let late_ms = SWEEP_MS - 10_000;
    store
        .ingest_batch(&[messages(vec![msg("late", "10", TS)])], late_ms)
        .await
        .unwrap();
    let late = store.lease_jobs(late_ms, 600_000, 100).await.unwrap();
    store
        .drop_job(inbound_id_of(&store, &late, "late").await)
        .await
        .unwrap();

    let expected = BTreeMap::from([
        ("claimed", SweepAction::Skip(SilenceReason::Answered)),
        ("esc", SweepAction::Silent(SilenceReason::Escalated)),
        ("h1", SweepAction::Silent(SilenceReason::Superseded)),
        ("held", SweepAction::Silent(SilenceReason::Operator)),
        ("late", SweepAction::Skip(SilenceReason::InFlight)),
        ("lost", SweepAction::Requeue),
        ("old", SweepAction::Silent(SilenceReason::WindowClosed)),
        ("opted", SweepAction::Silent(SilenceReason::OptedOut)),
        ("queued", SweepAction::Skip(SilenceReason::InFlight)),
    ]);
    let decided = |r: &replyd::store::SweepBatchResult| -> BTreeMap<&'static str, SweepAction> {
        r.decisions
            .iter()
            .map(|d| {
                (
                    *expected.keys().find(|k| **k == d.message_id).unwrap(),
                    d.action,
                )
            })
            .collect()
    };
    let depth = store.queue_depth().await.unwrap();
    let dry = store
        .sweep_batch(&sweep_batch(SweepMode::DryRun, None, 100))
        .await
        .unwrap();
    assert_eq!((dry.run_id, dry.next), (None, None));
    assert_eq!(
        decided(&dry),
        expected,
        "young (inside the grace period) and h2 (replied) are not candidates"
    );
    assert_eq!(
        store.message("opted").await.unwrap().unwrap().outcome,
        None,
        "a dry run writes nothing"
    );
    assert_eq!(store.queue_depth().await.unwrap(), depth);
    assert!(store.sweep_runs(10).await.unwrap().is_empty());

    let done = store
        .sweep_batch(&sweep_batch(SweepMode::Act { run_id: None }, None, 100))
        .await
        .unwrap();
    assert_eq!(
        done.decisions, dry.decisions,
        "the same snapshot, the same decisions"
    );
    let outcome = |id: &'static str| {
        let store = store.clone();
        async move { store.message(id).await.unwrap().unwrap().outcome }
    };
    for (id, action) in &expected {
        let want = match action {
            SweepAction::Silent(reason) => Some(Outcome::Silent(*reason)),
            _ => None,
        };
        assert_eq!(outcome(id).await, want, "{id}");
    }
    let s = store.summary().await.unwrap();
    // Left with a job: lost (re-enqueued), queued and claimed (untouched), young (its own).
    assert_eq!(
        s.jobs_total, 4,
        "silenced messages lose their jobs, skipped ones keep theirs"
    );
    let runs = store.sweep_runs(10).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(
        (Some(run.id), run.finished_at_ms, run.dry_run),
        (done.run_id, Some(SWEEP_MS), false)
    );
    assert_eq!((run.scanned, run.requeued), (9, 1));
    assert_eq!(run.counts.get(&SilenceReason::InFlight), Some(&2));
    assert_eq!(run.counts.values().sum::<u64>(), 8);
    let (_, recorded) = store.sweep_run(run.id).await.unwrap().unwrap();
    assert_eq!(recorded.len(), 9);
    assert!(recorded.iter().all(|d| done.decisions.contains(d)));

    // The next run finds the re-enqueued message in flight and changes nothing else.
    let again = store
        .sweep_batch(&sweep_batch(SweepMode::Act { run_id: None }, None, 100))
        .await
        .unwrap();
    let lost = again
        .decisions
        .iter()
        .find(|d| d.message_id == "lost")
        .unwrap();
    assert_eq!(lost.action, SweepAction::Skip(SilenceReason::InFlight));
    assert_eq!(again.decisions.len(), 4, "lost, queued, claimed, late");
    assert_eq!(
        store.summary().await.unwrap().jobs_total,
        4,
        "never a second job"
    );
}

async fn sweep_batches_resume_after_their_cursor_and_add_up_to_one_run(store: Store) {
    use replyd::store::{SweepAction, SweepMode};
    let batch: Vec<_> = (0..5)
        .map(|i| msg(&format!("p{i}"), &format!("{i}"), TS + i))
        .collect();
    store
        .ingest_batch(&[messages(batch)], NOW_MS)
        .await
        .unwrap();
    let all = store.lease_jobs(NOW_MS, 600_000, 100).await.unwrap();
    for job in &all {
        store.drop_job(job.inbound_id).await.unwrap();
    }
    let first = store
        .sweep_batch(&sweep_batch(SweepMode::Act { run_id: None }, None, 2))
        .await
        .unwrap();
    let run_id = first.run_id.expect("a run was started");
    let (run, _) = store.sweep_run(run_id).await.unwrap().unwrap();
    assert_eq!(run.finished_at_ms, None, "unfinished until its last batch");
    let mut seen: Vec<String> = first
        .decisions
        .iter()
        .map(|d| d.message_id.clone())
        .collect();
    let mut after = first.next;
    while let Some(cursor) = after {
        let next = store
            .sweep_batch(&sweep_batch(
                SweepMode::Act {
                    run_id: Some(run_id),
                },
                Some(cursor),
                2,
            ))
            .await
            .unwrap();
        assert_eq!(next.run_id, Some(run_id));
        assert!(
            next.decisions
                .iter()
                .all(|d| d.action == SweepAction::Requeue)
        );
        seen.extend(next.decisions.iter().map(|d| d.message_id.clone()));
        after = next.next;
    }
    assert_eq!(
        seen,
        ["p0", "p1", "p2", "p3", "p4"],
        "oldest payload first, each once"
    );
    let (run, decisions) = store.sweep_run(run_id).await.unwrap().unwrap();
    assert_eq!((run.scanned, run.requeued, decisions.len()), (5, 5, 5));
    assert_eq!(run.finished_at_ms, Some(SWEEP_MS));
    assert_eq!(store.summary().await.unwrap().jobs_total, 5);
}

async fn the_sweep_lock_has_one_holder_until_released_or_expired(store: Store) {
    assert!(store.try_lock("sweep", "a", 1_000, NOW_MS).await.unwrap());
    assert!(
        !store
            .try_lock("sweep", "b", 1_000, NOW_MS + 500)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lock("sweep", "a", 1_000, NOW_MS + 900)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !store
            .try_lock("sweep", "b", 1_000, NOW_MS + 1_500)
            .await
            .unwrap(),
        "renewed until +1900"
    );
    assert!(
        store.try_lock("other", "b", 1_000, NOW_MS).await.unwrap(),
        "locks are per name"
    );
    store.unlock("sweep", "b").await.unwrap(); // not b's: nothing happens
    assert!(
        !store
            .try_lock("sweep", "b", 1_000, NOW_MS + 1_800)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lock("sweep", "b", 1_000, NOW_MS + 1_900)
            .await
            .unwrap(),
        "an expired lease is free"
    );
    store.unlock("sweep", "b").await.unwrap();
    assert!(
        store
            .try_lock("sweep", "c", 1_000, NOW_MS + 1_901)
            .await
            .unwrap()
    );
}
