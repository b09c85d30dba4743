//! The signature check over arbitrary secrets, headers and bodies: never a panic; a body
//! signed with a non-empty secret verifies, one byte changed does not, and nothing verifies
//! under an empty secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replyd::whatsapp::signature::{sign, verify};

fuzz_target!(|input: (&[u8], &[u8], &[u8])| {
    let (secret, header, body) = input;
    let forged = verify(secret, Some(header), body);
    if secret.is_empty() {
        assert!(forged.is_err(), "an empty secret authenticates nothing");
        return;
    }
    let signed = sign(secret, body);
    assert!(verify(secret, Some(signed.as_bytes()), body).is_ok());
    if let Some((first, rest)) = body.split_first() {
        let mut changed = vec![first ^ 0x01];
        changed.extend_from_slice(rest);
        assert!(verify(secret, Some(signed.as_bytes()), &changed).is_err());
    }
});
