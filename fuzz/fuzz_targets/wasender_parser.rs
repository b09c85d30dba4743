//! Any bytes through the WASender event parser: never a panic, and every parsed message has
//! an id (a fallback key when the gateway gave none).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replyd::whatsapp::wasender::parse_event;

fuzz_target!(|body: &[u8]| {
    if let Ok(notification) = parse_event(body) {
        for message in &notification.messages {
            assert!(!message.id.as_str().is_empty());
        }
    }
});
