//! Store conformance for the console's reads (every backend runs every case): arrivals per
//! minute, the oldest pending message, finding conversations, dead-letter previews.

use replyd::domain::{
    ContactProfile, ConversationMode, Notification, PhoneNumberId, Provider, SilenceReason, WaId,
};
use replyd::store::{ConversationQuery, IngestUnit, MinuteCount, Store, UndecodablePayload};
use replyd::whatsapp::PayloadError;

use crate::conformance::{NOW_MS, conformance, messages, msg, sqlite_store, unit};
use crate::helpers::cloud_key;

conformance!(
    sqlite,
    sqlite_store,
    [
        arrivals_are_counted_per_minute_of_their_commit,
        the_oldest_pending_message_is_the_one_with_the_oldest_payload_time,
        conversations_are_found_by_mode_consent_and_number,
        dead_letter_previews_are_bounded_and_name_their_conversation,
    ]
);

const MINUTE: i64 = 60_000;
/// The start of the minute `NOW_MS` falls in.
const M0: i64 = NOW_MS / MINUTE * MINUTE;

async fn arrivals_are_counted_per_minute_of_their_commit(store: Store) {
    let window = |since, until| {
        let store = store.clone();
        async move { store.inbound_per_minute(since, until).await.unwrap() }
    };
    let counts = |minutes: Vec<MinuteCount>| minutes.iter().map(|m| m.messages).collect::<Vec<_>>();
    assert_eq!(
        counts(window(M0, M0 + 2 * MINUTE).await),
        [0, 0, 0],
        "empty store"
    );

    let batch = |ids: &[&str]| messages(ids.iter().map(|id| msg(id, "1", 10)).collect());
    store
        .ingest_batch(&[batch(&["a1", "a2"]), batch(&["a3"])], M0 + 1_000)
        .await
        .unwrap();
    store
        .ingest_batch(&[batch(&["a1", "a2"])], M0 + 30_000)
        .await
        .unwrap(); // duplicates add no arrival
    store
        .ingest_batch(&[batch(&["c1", "c2"])], M0 + 2 * MINUTE + 5_000)
        .await
        .unwrap();
    store
        .ingest_batch(&[batch(&["f1"])], M0 + 5 * MINUTE)
        .await
        .unwrap();

    let minutes = window(M0 - MINUTE + 1, M0 + 2 * MINUTE + 59_999).await;
    assert_eq!(
        minutes
            .iter()
            .map(|m| m.minute_start_ms)
            .collect::<Vec<_>>(),
        [M0 - MINUTE, M0, M0 + MINUTE, M0 + 2 * MINUTE]
    );
    assert_eq!(counts(minutes), [0, 3, 0, 2]);
    assert_eq!(
        counts(window(M0 + 3 * MINUTE, M0 + 6 * MINUTE).await),
        [0, 0, 1, 0]
    );
    assert_eq!(
        counts(window(M0, M0 + 5 * MINUTE).await)
            .iter()
            .sum::<u64>(),
        6,
        "every stored message counted once"
    );

    // Busier minutes, several commits each (the lookups gallop and bisect inside them).
    let per_minute = [0u64, 1, 7, 0, 33, 2, 64];
    for (i, n) in per_minute.iter().enumerate() {
        let start = M0 + (10 + i as i64) * MINUTE;
        for commit in 0..*n {
            let id = format!("b{i}.{commit}");
            store
                .ingest_batch(&[batch(&[id.as_str()])], start + commit as i64 * 100)
                .await
                .unwrap();
        }
    }
    assert_eq!(
        counts(window(M0 + 10 * MINUTE, M0 + 16 * MINUTE).await),
        per_minute
    );
    assert_eq!(
        counts(window(M0 + 5 * MINUTE, M0 + 10 * MINUTE).await),
        [1, 0, 0, 0, 0, 0]
    );
}

async fn the_oldest_pending_message_is_the_one_with_the_oldest_payload_time(store: Store) {
    assert_eq!(store.oldest_pending().await.unwrap(), None);
    store
        .ingest_batch(
            &[messages(vec![
                msg("late", "1", 50),
                msg("early", "2", 10),
                msg("middle", "3", 30),
            ])],
            NOW_MS,
        )
        .await
        .unwrap();
    let head = store.oldest_pending().await.unwrap().unwrap();
    assert_eq!(
        (
            head.message_id.as_str(),
            head.payload_ts,
            head.received_at_ms,
            head.provider
        ),
        ("early", 10, NOW_MS, Provider::Cloud)
    );
    // Once it has its outcome, the next oldest pending one is the head.
    let jobs = store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap();
    for job in jobs {
        let context = store.reply_context(job.inbound_id).await.unwrap().unwrap();
        if context.message.message_id == "early" {
            store
                .finish_silent(job.inbound_id, SilenceReason::NoReply, NOW_MS)
                .await
                .unwrap();
        }
    }
    let head = store.oldest_pending().await.unwrap().unwrap();
    assert_eq!(head.message_id, "middle");
}

async fn conversations_are_found_by_mode_consent_and_number(store: Store) {
    let profile = |wa_id: &str, name: &str| ContactProfile {
        provider: Provider::Cloud,
        phone_number_id: PhoneNumberId::parse("111").unwrap(),
        wa_id: WaId::parse(wa_id).unwrap(),
        name: Some(name.into()),
    };
    let notification = Notification {
        messages: vec![
            msg("m1", "34600000001", 10),
            msg("m2", "34600000002", 11),
            msg("m3", "44700000003", 12),
        ],
        contacts: vec![
            profile("34600000001", "Ana Pérez"),
            profile("34600000002", "Bruno"),
            profile("44700000003", "Carla"),
        ],
        ..Default::default()
    };
    store
        .ingest_batch(&[unit(notification)], NOW_MS)
        .await
        .unwrap();
    let ana = cloud_key("111", "34600000001");
    store
        .set_conversation_mode(&ana, ConversationMode::Operator, Some("ops"), NOW_MS + 1)
        .await
        .unwrap();
    store
        .set_opted_out(&cloud_key("111", "34600000002"), true, NOW_MS + 2)
        .await
        .unwrap();
    // Known to an operator before the contact ever wrote.
    store
        .set_conversation_mode(
            &cloud_key("111", "15550000009"),
            ConversationMode::Escalated,
            Some("vip"),
            NOW_MS + 3,
        )
        .await
        .unwrap();

    let find = |mode, opted_out, number: Option<&str>| {
        let store = store.clone();
        let query = ConversationQuery {
            mode,
            opted_out,
            number: number.map(str::to_owned),
        };
        async move {
            let found = store.find_conversations(&query, 100).await.unwrap();
            found.into_iter().map(|c| c.wa_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        find(None, false, None).await,
        ["15550000009", "34600000002", "34600000001", "44700000003"],
        "newest activity first"
    );
    assert_eq!(
        find(Some(ConversationMode::Operator), false, None).await,
        ["34600000001"]
    );
    assert_eq!(
        find(Some(ConversationMode::Escalated), false, None).await,
        ["15550000009"]
    );
    assert_eq!(
        find(Some(ConversationMode::Bot), false, None).await,
        ["34600000002", "44700000003"]
    );
    assert_eq!(
        find(None, true, None).await,
        ["34600000002"],
        "opted out only"
    );
    assert_eq!(
        find(None, false, Some("3460")).await,
        ["34600000002", "34600000001"]
    );
    assert_eq!(find(None, false, Some("0003")).await, ["44700000003"]);
    assert_eq!(
        find(None, false, Some("ana pé")).await,
        ["34600000001"],
        "by name, any case"
    );
    assert_eq!(
        find(None, false, Some("111")).await.len(),
        4,
        "by business number"
    );
    assert!(find(None, false, Some("999")).await.is_empty());
    assert!(
        find(Some(ConversationMode::Operator), true, None)
            .await
            .is_empty()
    );
}

async fn dead_letter_previews_are_bounded_and_name_their_conversation(store: Store) {
    let big = format!("{{\"object\": \"{}", "x".repeat(5_000));
    let payload = IngestUnit {
        undecodable: Some(UndecodablePayload {
            error: PayloadError::Json("eof".into()),
            raw: big.clone().into_bytes(),
        }),
        ..unit(Notification::default())
    };
    store
        .ingest_batch(
            &[payload, messages(vec![msg("w1", "34600000001", 10)])],
            NOW_MS,
        )
        .await
        .unwrap();
    let job = store.lease_jobs(NOW_MS, 60_000, 1).await.unwrap()[0];
    store
        .dead_letter_message(
            job.inbound_id,
            None,
            "cloud_api_131026",
            "not on WhatsApp",
            1,
            NOW_MS,
        )
        .await
        .unwrap();

    assert_eq!(
        store.summary().await.unwrap().dead_errors,
        [("cloud_api_131026".to_owned(), 1)],
        "dead outcomes are counted per error"
    );
    let previews = store.dead_letter_previews(10, 600).await.unwrap();
    assert_eq!(previews.len(), 2);
    let (message, payload) = (&previews[0], &previews[1]);
    assert_eq!(message.letter.error, "cloud_api_131026");
    assert_eq!(message.letter.message_id.as_deref(), Some("w1"));
    assert_eq!(
        message.conversation,
        Some(("111".to_owned(), "34600000001".to_owned()))
    );
    assert_eq!(payload.letter.raw_bytes, Some(big.len() as u64));
    assert_eq!(
        payload.letter.raw.as_deref(),
        Some(&big[..600]),
        "the preview is cut"
    );
    assert_eq!(payload.conversation, None);

    store.discard_dead_letter(payload.letter.id).await.unwrap();
    assert_eq!(
        store.dead_letter_previews(10, 600).await.unwrap().len(),
        1,
        "open ones only"
    );
}
