//! Any bytes through the WASender event parser: never a panic, every parsed message has an id
//! (a fallback key when the gateway gave none), and every row belongs to the configured session
//! whatever session the event names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replyd::domain::PhoneNumberId;
use replyd::whatsapp::wasender::parse_event;

fuzz_target!(|body: &[u8]| {
    let session = PhoneNumberId::parse("fuzz-session").expect("a valid id");
    if let Ok(event) = parse_event(body, &session) {
        let n = &event.notification;
        for message in &n.messages {
            assert!(!message.id.as_str().is_empty());
            assert_eq!(message.phone_number_id, session);
        }
        for status in &n.statuses {
            assert_eq!(status.phone_number_id, session);
        }
        for change in &n.session_events {
            assert_eq!(change.session, session);
        }
    }
});
