//! Store conformance for ambiguous sends settled by evidence (every backend runs every case):
//! the quiet-period pass, the attempt-named status matching, and conversation order while a
//! send's fate is unknown. Time is the `now_ms` each call is given; nothing sleeps.

use replyd::domain::{
    AmbiguousResolution, LedgerState, Notification, Outcome, ResolvedBy, SendRef,
};
use replyd::store::{AmbiguousSettlement, Claim, IngestReport, LeasedJob, Store};

use crate::conformance::{NOW_MS, TS, conformance, messages, msg, sqlite_store, status, unit};

conformance!(
    sqlite,
    sqlite_store,
    [
        an_unconfirmed_send_is_sent_again_once_later_sends_of_the_number_are_confirmed,
        a_late_status_for_the_first_attempt_after_the_resend_is_a_double_send,
        a_late_status_before_the_resend_settles_it_and_cancels_the_resend,
        the_operator_setting_leaves_every_ambiguous_send_to_an_operator,
        an_ambiguous_message_holds_back_its_conversation_only,
        a_dead_lettered_send_confirmed_late_is_replied_when_replayed,
    ]
);

const QUIET_MS: i64 = 60_000;

fn callback(ledger_id: i64, attempt: u32) -> Option<String> {
    Some(
        SendRef {
            ledger_id,
            attempt: Some(attempt),
        }
        .callback_data(),
    )
}

async fn post_status(
    store: &Store,
    out: &str,
    state: &str,
    callback: Option<String>,
) -> IngestReport {
    let mut s = status(out, state);
    s.callback_data = callback;
    let notification = Notification {
        statuses: vec![s],
        ..Default::default()
    };
    store
        .ingest_batch(&[unit(notification)], NOW_MS)
        .await
        .unwrap()
        .remove(0)
}

async fn claim(store: &Store, job: LeasedJob, now_ms: i64) -> (i64, u32) {
    match store
        .claim_reply(job.inbound_id, "hi", now_ms)
        .await
        .unwrap()
    {
        Claim::Claimed {
            ledger_id,
            attempts,
        } => (ledger_id, attempts),
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// Message "x" from A claimed at `NOW_MS` and timed out (ambiguous); message "y" from B claimed
/// 10 ms later, sent, and confirmed by its `sent` status. Returns x's job and ledger id.
async fn ambiguous_with_a_later_confirmed_send(store: &Store) -> (LeasedJob, i64) {
    store
        .ingest_batch(
            &[messages(vec![msg("x", "1", TS), msg("y", "2", TS)])],
            NOW_MS,
        )
        .await
        .unwrap();
    let jobs = store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let (x, y) = (jobs[0], jobs[1]);
    let (x_ledger, x_attempt) = claim(store, x, NOW_MS).await;
    assert_eq!(x_attempt, 1);
    store
        .mark_ambiguous(x.inbound_id, x_ledger, "timeout", NOW_MS)
        .await
        .unwrap();
    let (y_ledger, y_attempt) = claim(store, y, NOW_MS + 10).await;
    store
        .mark_sent(y.inbound_id, y_ledger, "wamid.y1", NOW_MS + 20)
        .await
        .unwrap();
    post_status(store, "wamid.y1", "sent", callback(y_ledger, y_attempt)).await;
    (x, x_ledger)
}

async fn reply(store: &Store, id: &str) -> replyd::store::ReplyRecord {
    store.message(id).await.unwrap().unwrap().reply.unwrap()
}

async fn an_unconfirmed_send_is_sent_again_once_later_sends_of_the_number_are_confirmed(
    store: Store,
) {
    let (_, x_ledger) = ambiguous_with_a_later_confirmed_send(&store).await;
    let evidence = AmbiguousResolution::Evidence;
    let early = store
        .settle_ambiguous(QUIET_MS, NOW_MS + QUIET_MS - 1, evidence)
        .await
        .unwrap();
    assert_eq!(
        early,
        AmbiguousSettlement::default(),
        "inside the quiet period"
    );
    let settled = store
        .settle_ambiguous(QUIET_MS, NOW_MS + QUIET_MS, evidence)
        .await
        .unwrap();
    assert_eq!(
        settled,
        AmbiguousSettlement {
            resent: 1,
            dead_lettered: 0
        }
    );
    let x = store.message("x").await.unwrap().unwrap();
    assert_eq!(x.outcome, None, "pending: it goes out once more");
    let r = x.reply.unwrap();
    assert_eq!(
        (r.state, r.resolved_by),
        (LedgerState::Unsent, Some(ResolvedBy::Evidence))
    );
    // The message has its job back and the same ledger row takes the new attempt.
    let jobs = store
        .lease_jobs(NOW_MS + QUIET_MS, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let (ledger, attempt) = claim(&store, jobs[0], NOW_MS + QUIET_MS).await;
    assert_eq!((ledger, attempt), (x_ledger, 2));
    // Nothing is left for another pass: it is not sent a third time.
    let again = store
        .settle_ambiguous(QUIET_MS, NOW_MS + 10 * QUIET_MS, evidence)
        .await
        .unwrap();
    assert_eq!(again, AmbiguousSettlement::default());
}

async fn a_late_status_for_the_first_attempt_after_the_resend_is_a_double_send(store: Store) {
    let (x, x_ledger) = ambiguous_with_a_later_confirmed_send(&store).await;
    let later = NOW_MS + QUIET_MS;
    store
        .settle_ambiguous(QUIET_MS, later, AmbiguousResolution::Evidence)
        .await
        .unwrap();
    let job = store.lease_jobs(later, 60_000, 10).await.unwrap()[0];
    assert_eq!(job.inbound_id, x.inbound_id);
    let (_, attempt) = claim(&store, job, later).await;
    store
        .mark_sent(x.inbound_id, x_ledger, "wamid.x2", later + 5)
        .await
        .unwrap();
    let own = post_status(&store, "wamid.x2", "sent", callback(x_ledger, attempt)).await;
    assert_eq!(own.double_sends, 0, "the resend's own status");

    // The first attempt had gone out after all: its status arrives late.
    let late = post_status(&store, "wamid.x1", "sent", callback(x_ledger, 1)).await;
    assert_eq!(late.double_sends, 1);
    let more = post_status(&store, "wamid.x1", "delivered", callback(x_ledger, 1)).await;
    assert_eq!(more.double_sends, 0, "one double send, counted once");
    let r = reply(&store, "x").await;
    assert_eq!(r.double_sends, 1);
    assert_eq!(
        (r.state, r.outbound_id.as_deref()),
        (LedgerState::Sent, Some("wamid.x2")),
        "the resend's row is not moved by the other send's statuses"
    );
    assert_eq!(
        store.message("x").await.unwrap().unwrap().outcome,
        Some(Outcome::Replied)
    );
}

async fn a_late_status_before_the_resend_settles_it_and_cancels_the_resend(store: Store) {
    let (_, x_ledger) = ambiguous_with_a_later_confirmed_send(&store).await;
    let later = NOW_MS + QUIET_MS;
    store
        .settle_ambiguous(QUIET_MS, later, AmbiguousResolution::Evidence)
        .await
        .unwrap();
    let report = post_status(&store, "wamid.x1", "sent", callback(x_ledger, 1)).await;
    assert_eq!(
        (report.double_sends, report.ambiguous_confirmed),
        (0, 0),
        "caught before anything went out twice"
    );
    let x = store.message("x").await.unwrap().unwrap();
    assert_eq!(x.outcome, Some(Outcome::Replied));
    let r = x.reply.unwrap();
    assert_eq!(
        (r.state, r.outbound_id.as_deref(), r.resolved_by),
        (
            LedgerState::Sent,
            Some("wamid.x1"),
            Some(ResolvedBy::Status)
        )
    );
    assert!(
        store
            .lease_jobs(later, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "the resend is cancelled"
    );
}

async fn the_operator_setting_leaves_every_ambiguous_send_to_an_operator(store: Store) {
    ambiguous_with_a_later_confirmed_send(&store).await;
    let settled = store
        .settle_ambiguous(QUIET_MS, NOW_MS + QUIET_MS, AmbiguousResolution::Operator)
        .await
        .unwrap();
    assert_eq!(
        settled,
        AmbiguousSettlement {
            resent: 0,
            dead_lettered: 1
        }
    );
    let x = store.message("x").await.unwrap().unwrap();
    assert_eq!(x.outcome, Some(Outcome::Dead("ambiguous_send".into())));
    assert_eq!(x.reply.unwrap().resolved_by, Some(ResolvedBy::Operator));
    let letters = store.dead_letters(10).await.unwrap();
    assert!(letters.iter().any(|l| l.error == "ambiguous_send"));
}

/// The status of a send left to an operator arrives after its dead letter: the send happened.
/// Replaying that dead letter records `replied` (once); it must not leave the message pending
/// behind the `answered` gate, nor send it again.
async fn a_dead_lettered_send_confirmed_late_is_replied_when_replayed(store: Store) {
    let (x, x_ledger) = ambiguous_with_a_later_confirmed_send(&store).await;
    store
        .settle_ambiguous(QUIET_MS, NOW_MS + QUIET_MS, AmbiguousResolution::Operator)
        .await
        .unwrap();
    post_status(&store, "wamid.x1", "sent", callback(x_ledger, 1)).await;
    let letter = store
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.error == "ambiguous_send")
        .unwrap();
    store
        .replay_dead_letter(letter.id, NOW_MS + QUIET_MS + 1)
        .await
        .unwrap();
    let replayed = store.message("x").await.unwrap().unwrap();
    assert_eq!(replayed.outcome, Some(Outcome::Replied));
    assert_eq!(replayed.reply.unwrap().state, LedgerState::Sent);
    let later = NOW_MS + 10 * QUIET_MS;
    let jobs = store.lease_jobs(later, 60_000, 10).await.unwrap();
    assert!(
        jobs.iter().all(|j| j.inbound_id != x.inbound_id),
        "nothing left to do for x: {jobs:?}"
    );
}

async fn an_ambiguous_message_holds_back_its_conversation_only(store: Store) {
    store
        .ingest_batch(
            &[messages(vec![
                msg("a1", "1", TS),
                msg("a2", "1", TS + 1),
                msg("b1", "2", TS + 2),
            ])],
            NOW_MS,
        )
        .await
        .unwrap();
    let jobs = store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 2, "the heads of A and B");
    let a1 = jobs[0];
    let (a1_ledger, _) = claim(&store, a1, NOW_MS).await;
    store
        .mark_ambiguous(a1.inbound_id, a1_ledger, "timeout", NOW_MS)
        .await
        .unwrap();
    let b1 = jobs[1];
    let (b1_ledger, b1_attempt) = claim(&store, b1, NOW_MS + 10).await;
    store
        .mark_sent(b1.inbound_id, b1_ledger, "wamid.b1", NOW_MS + 10)
        .await
        .unwrap();
    post_status(&store, "wamid.b1", "sent", callback(b1_ledger, b1_attempt)).await;
    store
        .ingest_batch(&[messages(vec![msg("b2", "2", TS + 3)])], NOW_MS + 20)
        .await
        .unwrap();

    // a1's fate is unknown: a2 waits, B goes on.
    let jobs = store.lease_jobs(NOW_MS + 30, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "only B's next message: {jobs:?}");
    let (b2_ledger, _) = claim(&store, jobs[0], NOW_MS + 30).await;
    assert_eq!(reply(&store, "b2").await.ledger_id, b2_ledger);
    store
        .mark_sent(jobs[0].inbound_id, b2_ledger, "wamid.b2", NOW_MS + 30)
        .await
        .unwrap();
    assert!(
        store
            .lease_jobs(NOW_MS + 40, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "a2 still waits behind a1"
    );

    // Settled by evidence: a1 is the conversation's head again, then a2 follows it.
    store
        .settle_ambiguous(QUIET_MS, NOW_MS + QUIET_MS, AmbiguousResolution::Evidence)
        .await
        .unwrap();
    let jobs = store
        .lease_jobs(NOW_MS + QUIET_MS, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].inbound_id, a1.inbound_id, "a1 before a2");
    let (ledger, attempt) = claim(&store, jobs[0], NOW_MS + QUIET_MS).await;
    assert_eq!((ledger, attempt), (a1_ledger, 2));
    store
        .mark_sent(a1.inbound_id, a1_ledger, "wamid.a1", NOW_MS + QUIET_MS)
        .await
        .unwrap();
    let jobs = store
        .lease_jobs(NOW_MS + QUIET_MS, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let a2 = store.message("a2").await.unwrap().unwrap();
    assert_eq!(a2.outcome, None);
    assert_ne!(jobs[0].inbound_id, a1.inbound_id, "now a2");
}
