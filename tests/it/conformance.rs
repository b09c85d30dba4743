//! The store conformance suite: every backend runs every case. A backend is added with one
//! `conformance!` line naming a function that opens a fresh, migrated, empty store.

use replyd::domain::{
    ContactProfile, DeliveryStatus, InboundMessage, MessageId, MessageKind, Notification,
    PhoneNumberId, Provider, RejectedItem, StatusUpdate, WaId,
};
use replyd::store::{IngestReport, IngestUnit, Store, StoreOptions, UndecodablePayload};
use replyd::whatsapp::PayloadError;
use tempfile::TempDir;

const NOW_MS: i64 = 1_700_000_000_000;

/// A fresh SQLite store in its own directory (kept alive by the guard).
pub async fn sqlite_store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
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
    ]
);

fn msg(id: &str, from: &str, ts: i64) -> InboundMessage {
    InboundMessage {
        provider: Provider::Cloud,
        id: MessageId::parse(id).unwrap(),
        phone_number_id: PhoneNumberId::parse("111").unwrap(),
        from: WaId::parse(from).unwrap(),
        kind: MessageKind::Text,
        text: Some("hi".into()),
        timestamp: ts,
        raw: format!(r#"{{"id":"{id}"}}"#),
    }
}

fn status(id: &str, state: &str) -> StatusUpdate {
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

fn unit(notification: Notification) -> IngestUnit {
    IngestUnit {
        provider: Provider::Cloud,
        notification,
        undecodable: None,
        delivery_digest: "d".into(),
    }
}

fn messages(ms: Vec<InboundMessage>) -> IngestUnit {
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
            .contact("111", "7")
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
            .contact("111", "7")
            .await
            .unwrap()
            .unwrap()
            .last_inbound_ts,
        Some(900)
    );
    let named = Notification {
        contacts: vec![ContactProfile {
            phone_number_id: PhoneNumberId::parse("111").unwrap(),
            wa_id: WaId::parse("7").unwrap(),
            name: Some("Ana".into()),
        }],
        ..Default::default()
    };
    store.ingest_batch(&[unit(named)], NOW_MS).await.unwrap();
    let c = store.contact("111", "7").await.unwrap().unwrap();
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
        letters
            .iter()
            .any(|l| l.error == "malformed_json" && l.raw.as_deref() == Some("["))
    );
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
