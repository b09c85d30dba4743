//! Store conformance for providers kept apart (every backend runs every case): a WASender
//! session and a Cloud API number share the id `111` here, and nothing one provider's events
//! or operators do may touch the other's contact, conversation, statuses, ledger or holds.
//! Group messages and gateway session events are in here too.

use replyd::domain::keywords::KeywordAction;
use replyd::domain::{
    Channel, ConversationMode, GroupId, InboundMessage, Notification, Origin, Outcome,
    PhoneNumberId, Provider, SessionEvent, SessionState, SilenceReason, StatusUpdate,
};
use replyd::store::{Claim, IngestUnit, KeywordHit, Store, UndecodablePayload};
use replyd::whatsapp::PayloadError;

use crate::conformance::{NOW_MS, TS, conformance, msg, sqlite_store, status};
use crate::helpers::key;

conformance!(
    sqlite,
    sqlite_store,
    [
        a_gateway_stop_opts_out_only_the_gateway_contact,
        operator_modes_are_per_provider,
        statuses_and_ledger_matches_are_per_provider,
        send_holds_are_per_channel,
        a_group_message_of_a_gateway_that_does_not_answer_groups_is_silent_group,
        session_events_hold_and_resume_only_their_session,
        a_gateway_payload_dead_letter_keeps_its_session,
        a_gateway_status_settles_the_send_in_doubt_to_its_recipient,
    ]
);

const USER: &str = "34600000055";

fn session() -> PhoneNumberId {
    PhoneNumberId::parse("111").unwrap()
}

fn gateway() -> Origin {
    Origin::Wasender { session: session() }
}

fn gateway_msg(id: &str, from: &str, text: &str) -> InboundMessage {
    InboundMessage {
        provider: Provider::Wasender,
        text: Some(text.into()),
        ..msg(id, from, TS)
    }
}

fn gateway_unit(notification: Notification) -> IngestUnit {
    IngestUnit {
        origin: gateway(),
        notification,
        undecodable: None,
        keyword_actions: Vec::new(),
        delivery_digest: String::new(),
    }
}

fn cloud_unit(notification: Notification) -> IngestUnit {
    IngestUnit {
        origin: Origin::Cloud,
        ..gateway_unit(notification)
    }
}

async fn ingest(store: &Store, unit: IngestUnit) {
    store.ingest_batch(&[unit], NOW_MS).await.unwrap();
}

async fn a_gateway_stop_opts_out_only_the_gateway_contact(store: Store) {
    ingest(
        &store,
        cloud_unit(Notification {
            messages: vec![msg("c1", USER, TS)],
            ..Default::default()
        }),
    )
    .await;
    let mut stop = gateway_unit(Notification {
        messages: vec![gateway_msg("g1", USER, "STOP")],
        ..Default::default()
    });
    stop.keyword_actions = vec![KeywordHit {
        provider: Provider::Wasender,
        message_id: "g1".into(),
        action: KeywordAction::OptOut,
    }];
    ingest(&store, stop).await;
    let cloud = store
        .contact(&key(Provider::Cloud, "111", USER))
        .await
        .unwrap();
    let gateway = store
        .contact(&key(Provider::Wasender, "111", USER))
        .await
        .unwrap();
    assert!(
        !cloud.expect("cloud contact").opted_out,
        "the Cloud contact is untouched"
    );
    assert!(gateway.expect("gateway contact").opted_out);
}

async fn operator_modes_are_per_provider(store: Store) {
    ingest(
        &store,
        cloud_unit(Notification {
            messages: vec![msg("c1", USER, TS)],
            ..Default::default()
        }),
    )
    .await;
    ingest(
        &store,
        gateway_unit(Notification {
            messages: vec![gateway_msg("g1", USER, "hi")],
            ..Default::default()
        }),
    )
    .await;
    store
        .set_conversation_mode(
            &key(Provider::Wasender, "111", USER),
            ConversationMode::Operator,
            Some("ana"),
            NOW_MS,
        )
        .await
        .unwrap();
    let cloud = store
        .conversation(&key(Provider::Cloud, "111", USER), 10)
        .await
        .unwrap()
        .expect("known");
    assert_eq!(cloud.summary.mode, ConversationMode::Bot);
    let jobs = store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 2, "two conversations, one head each");
    for job in jobs {
        let claim = store
            .claim_reply(job.inbound_id, "hi", NOW_MS)
            .await
            .unwrap();
        let ctx_provider = store
            .reply_context(job.inbound_id)
            .await
            .unwrap()
            .unwrap()
            .message
            .provider;
        match ctx_provider {
            Provider::Cloud => assert!(matches!(claim, Claim::Claimed { .. }), "{claim:?}"),
            Provider::Wasender => {
                assert_eq!(claim, Claim::Silenced(SilenceReason::Operator));
            }
        }
    }
}

fn gateway_status(out: &str, state: &str) -> StatusUpdate {
    StatusUpdate {
        provider: Provider::Wasender,
        ..status(out, state)
    }
}

async fn statuses_and_ledger_matches_are_per_provider(store: Store) {
    ingest(
        &store,
        cloud_unit(Notification {
            messages: vec![msg("c1", USER, TS)],
            ..Default::default()
        }),
    )
    .await;
    let job = store.lease_jobs(NOW_MS, 60_000, 1).await.unwrap()[0];
    let Claim::Claimed { ledger_id, .. } = store
        .claim_reply(job.inbound_id, "hi", NOW_MS)
        .await
        .unwrap()
    else {
        panic!("claimed");
    };
    store
        .mark_sent(job.inbound_id, ledger_id, "OUT1", NOW_MS)
        .await
        .unwrap();
    // The gateway reports an outbound message that happens to have the same id: a different
    // message, not ours on the Cloud API, so it moves nothing there. (Unmatched gateway statuses
    // take nothing over: without callback data one of ours may go unmatched.)
    let mut foreign = gateway_status("OUT1", "delivered");
    foreign.recipient_id = Some(USER.into());
    let report = store
        .ingest_batch(
            &[gateway_unit(Notification {
                statuses: vec![foreign],
                ..Default::default()
            })],
            NOW_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        (report[0].new_statuses, report[0].duplicate_statuses),
        (1, 0)
    );
    let reply = store.message("c1").await.unwrap().unwrap().reply.unwrap();
    assert_eq!(
        reply.state.as_str(),
        "sent",
        "the Cloud ledger row did not move"
    );
    let cloud = store
        .conversation(&key(Provider::Cloud, "111", USER), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cloud.summary.mode, ConversationMode::Bot);
    let gateway = store
        .conversation(&key(Provider::Wasender, "111", USER), 10)
        .await
        .unwrap();
    assert!(gateway.is_none_or(|c| c.summary.mode == ConversationMode::Bot));
    // The same status on the Cloud API is new there, and moves the Cloud row.
    let report = store
        .ingest_batch(
            &[cloud_unit(Notification {
                statuses: vec![status("OUT1", "delivered")],
                ..Default::default()
            })],
            NOW_MS,
        )
        .await
        .unwrap();
    assert_eq!(report[0].new_statuses, 1);
    let reply = store.message("c1").await.unwrap().unwrap().reply.unwrap();
    assert_eq!(reply.state.as_str(), "delivered");
}

async fn send_holds_are_per_channel(store: Store) {
    let gateway = Channel::new(Provider::Wasender, session());
    let cloud = Channel::cloud(session());
    store
        .hold_sends(&gateway, "http_401", NOW_MS, NOW_MS + 60_000)
        .await
        .unwrap();
    let holds = store.send_holds().await.unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].channel, gateway);
    store.lift_hold(&cloud, NOW_MS).await.unwrap();
    assert_eq!(
        store.send_holds().await.unwrap().len(),
        1,
        "lifting the Cloud number lifts nothing else"
    );
    store.lift_hold(&gateway, NOW_MS).await.unwrap();
    assert!(store.send_holds().await.unwrap().is_empty());
}

async fn a_group_message_of_a_gateway_that_does_not_answer_groups_is_silent_group(store: Store) {
    let mut in_group = gateway_msg("g1", USER, "hi all");
    in_group.group = Some(GroupId::parse("120363040000000000").unwrap());
    ingest(
        &store,
        gateway_unit(Notification {
            messages: vec![in_group, gateway_msg("g2", "34600000066", "hi")],
            ..Default::default()
        }),
    )
    .await;
    for job in store.lease_jobs(NOW_MS, 60_000, 10).await.unwrap() {
        store
            .claim_reply(job.inbound_id, "hi", NOW_MS)
            .await
            .unwrap();
    }
    let group = store.message("g1").await.unwrap().unwrap();
    assert_eq!(group.outcome, Some(Outcome::Silent(SilenceReason::Group)));
    assert!(group.reply.is_none(), "no ledger row, no send");
    let direct = store.message("g2").await.unwrap().unwrap();
    assert!(direct.reply.is_some(), "a direct message is answered");
}

fn session_event(state: SessionState, timestamp: i64) -> IngestUnit {
    gateway_unit(Notification {
        session_events: vec![SessionEvent {
            session: session(),
            state,
            timestamp,
        }],
        ..Default::default()
    })
}

async fn session_events_hold_and_resume_only_their_session(store: Store) {
    let gateway = Channel::new(Provider::Wasender, session());
    let cloud = Channel::cloud(session());
    store
        .hold_sends(&cloud, "cloud_api_190", NOW_MS, NOW_MS + 60_000)
        .await
        .unwrap();
    ingest(&store, session_event(SessionState::Disconnected, 10)).await;
    let held = |store: Store, channel: Channel| async move {
        store
            .send_holds()
            .await
            .unwrap()
            .into_iter()
            .any(|h| h.channel == channel)
    };
    assert!(held(store.clone(), gateway.clone()).await);
    // An older CONNECTED delivered late changes nothing; CONNECTING changes nothing.
    ingest(&store, session_event(SessionState::Connected, 5)).await;
    ingest(&store, session_event(SessionState::Connecting, 11)).await;
    assert!(held(store.clone(), gateway.clone()).await);
    ingest(&store, session_event(SessionState::Connected, 20)).await;
    assert!(!held(store.clone(), gateway.clone()).await, "resumed");
    assert!(
        held(store.clone(), cloud).await,
        "the Cloud number's own hold stays"
    );
    // A hold an auth error put on the session is not lifted by CONNECTED.
    store
        .hold_sends(&gateway, "http_401", NOW_MS, NOW_MS + 60_000)
        .await
        .unwrap();
    ingest(&store, session_event(SessionState::Connected, 30)).await;
    assert!(held(store, gateway).await);
}

async fn a_gateway_payload_dead_letter_keeps_its_session(store: Store) {
    let mut bad = gateway_unit(Notification::default());
    bad.undecodable = Some(UndecodablePayload {
        error: PayloadError::Json("eof".into()),
        raw: b"{".to_vec(),
    });
    ingest(&store, bad.clone()).await;
    // The same bytes from another session are another delivery.
    bad.origin = Origin::Wasender {
        session: PhoneNumberId::parse("222").unwrap(),
    };
    ingest(&store, bad).await;
    let letters = store.dead_letters(10).await.unwrap();
    let mut sessions: Vec<_> = letters.iter().map(|l| l.session_id.clone()).collect();
    sessions.sort();
    assert_eq!(sessions, [Some("111".to_owned()), Some("222".to_owned())]);
    assert!(letters.iter().all(|l| l.provider == "wasender"));
}

async fn a_gateway_status_settles_the_send_in_doubt_to_its_recipient(store: Store) {
    ingest(
        &store,
        gateway_unit(Notification {
            messages: vec![gateway_msg("g1", USER, "hi")],
            ..Default::default()
        }),
    )
    .await;
    let job = store.lease_jobs(NOW_MS, 60_000, 1).await.unwrap()[0];
    let Claim::Claimed { ledger_id, .. } = store
        .claim_reply(job.inbound_id, "hi", NOW_MS)
        .await
        .unwrap()
    else {
        panic!("claimed");
    };
    // The send timed out: its fate is unknown, and the gateway never told us its id.
    store
        .mark_ambiguous(job.inbound_id, ledger_id, "timeout", NOW_MS)
        .await
        .unwrap();
    let status_to = |recipient: &str| {
        let mut s = gateway_status("3EB0KEY", "sent");
        s.recipient_id = Some(recipient.into());
        gateway_unit(Notification {
            statuses: vec![s],
            ..Default::default()
        })
    };
    // A status for someone else settles nothing; a Cloud status never settles a gateway send.
    ingest(&store, status_to("34600000099")).await;
    let mut cloud = status_to(USER);
    cloud.origin = Origin::Cloud;
    cloud.notification.statuses[0].provider = Provider::Cloud;
    cloud.notification.statuses[0].message_id =
        replyd::domain::MessageId::parse("wamid.X").unwrap();
    ingest(&store, cloud).await;
    assert_eq!(store.message("g1").await.unwrap().unwrap().outcome, None);
    // Its own recipient's status is the evidence that it went out: replied, once.
    let mut own = status_to(USER);
    own.notification.statuses[0].message_id = replyd::domain::MessageId::parse("3EB0OWN").unwrap();
    let report = store.ingest_batch(&[own], NOW_MS).await.unwrap();
    assert_eq!(report[0].ambiguous_confirmed, 1);
    let m = store.message("g1").await.unwrap().unwrap();
    assert_eq!(m.outcome, Some(Outcome::Replied));
    assert_eq!(m.reply.unwrap().outbound_id.as_deref(), Some("3EB0OWN"));
}
