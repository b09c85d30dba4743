//! Property tests over the real handler: whatever bytes arrive, the server answers with a
//! deliberate status (never a 5xx), and keeps serving.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::*;

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9.]{0,12}".prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("object".to_owned()),
                    Just("entry".to_owned()),
                    Just("changes".to_owned()),
                    Just("value".to_owned()),
                    Just("messages".to_owned()),
                    Just("statuses".to_owned()),
                    Just("id".to_owned()),
                    Just("from".to_owned()),
                    Just("timestamp".to_owned()),
                    Just("type".to_owned()),
                    Just("metadata".to_owned()),
                    Just("phone_number_id".to_owned()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Payloads shaped like notifications whose inner values are arbitrary.
fn notification_like() -> impl Strategy<Value = Value> {
    (arbitrary_json(), arbitrary_json(), arbitrary_json()).prop_map(|(value, message, status)| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": "messages", "value": value},
            {"field": "messages", "value": {"metadata": {"phone_number_id": "1"},
                "messages": [message], "statuses": [status]}}
        ]}]})
    })
}

#[test]
fn signed_arbitrary_bytes_and_json_never_get_a_server_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(bytes in prop::collection::vec(any::<u8>(), 0..1024))| {
        let status = rt.block_on(app.post_webhook(bytes)).status();
        prop_assert_eq!(status, 200);
    });
    proptest!(config, |(payload in prop_oneof![arbitrary_json(), notification_like()])| {
        let status = rt.block_on(app.post_webhook(payload.to_string())).status();
        prop_assert_eq!(status, 200);
    });
    proptest!(config, |(bytes in prop::collection::vec(any::<u8>(), 0..512))| {
        let status = rt.block_on(app.post_wasender(bytes, Some(WASENDER_SECRET))).status();
        prop_assert_eq!(status, 200);
        let unsigned = rt.block_on(app.post_webhook_with(b"{}".to_vec(), None)).status();
        prop_assert_eq!(unsigned, 401);
    });
    assert_eq!(rt.block_on(app.get("/readyz")).status(), 200);
}
