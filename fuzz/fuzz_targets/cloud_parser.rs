//! Any bytes through the Cloud API notification parser: never a panic, and whatever parses
//! keeps the model's invariants (every message has an id; ids are within their bounds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replyd::whatsapp::cloud::parse_notification;

fuzz_target!(|body: &[u8]| {
    if let Ok(notification) = parse_notification(body) {
        for message in &notification.messages {
            assert!(!message.id.as_str().is_empty());
        }
        for status in &notification.statuses {
            assert!(!status.message_id.as_str().is_empty());
        }
    }
});
