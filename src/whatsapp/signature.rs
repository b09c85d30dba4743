//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body keyed by the app secret.
//!
//! Meta signs an escaped-unicode form of the payload (`\u00e4`, lowercase hex, UTF-16 units).
//! We verify the raw bytes first; only if that fails and the body holds non-ASCII bytes do we
//! retry once over the escaped form. Never parse-then-reserialize.
//!
//! Invariants: an empty key authenticates nothing (an HMAC keyed with nothing is a checksum
//! anyone can compute), so every check refuses it with [`SignatureError::NoSecret`]. The header
//! is parsed on its own ([`Expected::from_header`]) so a missing or malformed one is refused
//! before the body is read. A forged body costs no more than hashing it: the escaped form is
//! fed into the MAC in chunks as it is produced, never built as a string, and the prefix before
//! the first non-ASCII byte (the same in both forms) is hashed once.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER: &str = "x-hub-signature-256";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "no app secret is configured, so no signature can be trusted: set REPLYD_APP_SECRET \
         (Meta App Dashboard > Settings > Basic > App secret)"
    )]
    NoSecret,
    #[error("signature header is missing")]
    Missing,
    #[error("signature header is not `sha256=<64 hex digits>`")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// Label for the rejection metric.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoSecret => "secret_unset",
            Self::Missing => "signature_missing",
            Self::Malformed => "signature_malformed",
            Self::Mismatch => "signature_mismatch",
        }
    }
}

/// The header value Meta would send for `body`: `sha256=<lowercase hex>`.
///
/// Signing is for tools and tests; with an empty `secret` the result is refused by every check.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `header` against the raw `body` in constant time.
pub fn verify(secret: &[u8], header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
    Expected::from_header(secret, header)?.verify(secret, body)
}

/// The MAC a request claims, parsed from its header before its body is read.
#[derive(Clone, Copy)]
pub struct Expected([u8; 32]);

impl std::fmt::Debug for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expected(sha256)")
    }
}

impl Expected {
    /// Refuses an empty `secret` and a missing or malformed header; reads no body.
    pub fn from_header(secret: &[u8], header: Option<&[u8]>) -> Result<Self, SignatureError> {
        if secret.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_part = header
            .strip_prefix(b"sha256=")
            .or_else(|| header.strip_prefix(b"SHA256="))
            .ok_or(SignatureError::Malformed)?;
        let mut mac = [0u8; 32];
        hex::decode_to_slice(hex_part.trim_ascii(), &mut mac)
            .map_err(|_| SignatureError::Malformed)?;
        Ok(Self(mac))
    }

    /// The raw body first; then, for a body with non-ASCII bytes, Meta's escaped form.
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> Result<(), SignatureError> {
        if secret.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        let mut common = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        let Some(first) = body.iter().position(|b| needs_escape(*b)) else {
            common.update(body);
            return self.check(common);
        };
        common.update(&body[..first]);
        let mut raw = common.clone();
        raw.update(&body[first..]);
        if self.check(raw).is_ok() {
            return Ok(());
        }
        // The prefix is ASCII, so the body is UTF-8 exactly when the rest is.
        let Ok(rest) = std::str::from_utf8(&body[first..]) else {
            return Err(SignatureError::Mismatch);
        };
        let mut escaped = common;
        write_escaped(rest, |chunk| escaped.update(chunk));
        self.check(escaped)
    }

    fn check(&self, mac: HmacSha256) -> Result<(), SignatureError> {
        mac.verify_slice(&self.0)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// Meta leaves 0x00–0x7E as they are and escapes everything else.
fn needs_escape(byte: u8) -> bool {
    byte >= 0x7f
}

/// Meta's escaped form: every character outside 0x00–0x7E as `\uXXXX` (lowercase, UTF-16 units).
/// `None` when there is nothing to escape or the body is not UTF-8.
pub fn escape_unicode(body: &[u8]) -> Option<Vec<u8>> {
    if !body.iter().any(|b| needs_escape(*b)) {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut out = Vec::with_capacity(body.len() + 16);
    write_escaped(text, |chunk| out.extend_from_slice(chunk));
    Some(out)
}

/// Size of the stack buffer that gathers escapes and short runs between two `sink` calls.
const CHUNK: usize = 2048;

/// Writes the escaped form of `text` to `sink` in pieces: long ASCII runs straight from `text`,
/// escapes and short runs gathered in a stack buffer, so a MAC sees few, large updates.
fn write_escaped(text: &str, mut sink: impl FnMut(&[u8])) {
    let bytes = text.as_bytes();
    let mut buf = [0u8; CHUNK];
    let mut len = 0;
    let mut at = 0;
    while at < bytes.len() {
        let run = bytes[at..]
            .iter()
            .position(|b| needs_escape(*b))
            .unwrap_or(bytes.len() - at);
        if run > 0 {
            let piece = &bytes[at..at + run];
            at += run;
            if len + run > CHUNK {
                sink(&buf[..len]);
                len = 0;
            }
            if run > CHUNK {
                sink(piece);
            } else {
                buf[len..len + run].copy_from_slice(piece);
                len += run;
            }
        }
        // A run of escaped characters, decoded by hand: `text` is UTF-8, so every lead byte
        // is followed by its continuation bytes.
        while at < bytes.len() && needs_escape(bytes[at]) {
            if len + 12 > CHUNK {
                sink(&buf[..len]);
                len = 0;
            }
            let lead = bytes[at] as u32;
            let (code, width) = match lead {
                0x7f => (lead, 1),
                0xc0..=0xdf => (((lead & 0x1f) << 6) | cont(bytes[at + 1]), 2),
                0xe0..=0xef => (
                    ((lead & 0x0f) << 12) | (cont(bytes[at + 1]) << 6) | cont(bytes[at + 2]),
                    3,
                ),
                _ => (
                    ((lead & 0x07) << 18)
                        | (cont(bytes[at + 1]) << 12)
                        | (cont(bytes[at + 2]) << 6)
                        | cont(bytes[at + 3]),
                    4,
                ),
            };
            at += width;
            if code < 0x1_0000 {
                put_unit(&mut buf[len..len + 6], code);
                len += 6;
            } else {
                let above = code - 0x1_0000;
                put_unit(&mut buf[len..len + 6], 0xd800 | (above >> 10));
                put_unit(&mut buf[len + 6..len + 12], 0xdc00 | (above & 0x3ff));
                len += 12;
            }
        }
    }
    if len > 0 {
        sink(&buf[..len]);
    }
}

/// The payload bits of a UTF-8 continuation byte.
fn cont(byte: u8) -> u32 {
    u32::from(byte & 0x3f)
}

/// `\uXXXX` for one UTF-16 unit, lowercase hex.
fn put_unit(out: &mut [u8], unit: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.copy_from_slice(&[
        b'\\',
        b'u',
        HEX[(unit >> 12) as usize & 0xf],
        HEX[(unit >> 8) as usize & 0xf],
        HEX[(unit >> 4) as usize & 0xf],
        HEX[unit as usize & 0xf],
    ]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECRET: &[u8] = b"app-secret";

    /// The construction this module used before streaming: a `String` built char by char.
    fn escape_by_string(body: &[u8]) -> Option<Vec<u8>> {
        if body.iter().all(|b| *b < 0x7f) {
            return None;
        }
        let text = std::str::from_utf8(body).ok()?;
        let mut out = String::new();
        let mut units = [0u16; 2];
        for ch in text.chars() {
            if (ch as u32) < 0x7f {
                out.push(ch);
            } else {
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        Some(out.into_bytes())
    }

    #[test]
    fn signed_body_verifies_and_a_changed_byte_does_not() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(SECRET, body);
        assert_eq!(verify(SECRET, Some(header.as_bytes()), body), Ok(()));
        let mut changed = body.to_vec();
        changed[3] ^= 1;
        assert_eq!(
            verify(SECRET, Some(header.as_bytes()), &changed),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(header.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_empty_key_authenticates_nothing() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(b"", body);
        assert_eq!(
            verify(b"", Some(header.as_bytes()), body),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(verify(b"", None, body), Err(SignatureError::NoSecret));
        let expected = Expected::from_header(SECRET, Some(header.as_bytes())).unwrap();
        assert_eq!(expected.verify(b"", body), Err(SignatureError::NoSecret));
        let non_ascii = "{\"t\":\"ä\"}".as_bytes();
        let escaped_sig = sign(b"", &escape_unicode(non_ascii).unwrap());
        assert_eq!(
            verify(b"", Some(escaped_sig.as_bytes()), non_ascii),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        assert_eq!(verify(SECRET, None, b"{}"), Err(SignatureError::Missing));
        assert_eq!(
            verify(SECRET, Some(b"md5=abc"), b"{}"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some(b"sha256=zz"), b"{}"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some(b"sha256=abcd"), b"{}"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn escaped_unicode_form_is_accepted_for_non_ascii_bodies() {
        let raw = "{\"text\":\"äöå 😮\"}";
        let escaped = r#"{"text":"\u00e4\u00f6\u00e5 \ud83d\ude2e"}"#;
        assert_eq!(escape_unicode(raw.as_bytes()).unwrap(), escaped.as_bytes());
        let header = sign(SECRET, escaped.as_bytes());
        assert_eq!(
            verify(SECRET, Some(header.as_bytes()), raw.as_bytes()),
            Ok(())
        );
        assert_eq!(escape_unicode(escaped.as_bytes()), None);
        assert_eq!(
            escape_unicode("\u{7f}".as_bytes()).unwrap(),
            br"\u007f",
            "DEL is outside 0x00-0x7E"
        );
    }

    #[test]
    fn long_runs_cross_the_chunk_boundary_intact() {
        let mut text = "a".repeat(CHUNK - 3);
        text.push('é');
        text.push_str(&"b".repeat(3 * CHUNK));
        text.push_str(&"ü".repeat(CHUNK));
        text.push('z');
        let body = text.as_bytes();
        assert_eq!(escape_unicode(body), escape_by_string(body));
        let header = sign(SECRET, &escape_by_string(body).unwrap());
        assert_eq!(verify(SECRET, Some(header.as_bytes()), body), Ok(()));
    }

    fn text_with_runs() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[ -~]{0,40}",
            "\\PC{0,12}",
            Just("a".repeat(CHUNK + 7)),
            Just("\u{7f}😮ß".to_owned()),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn streamed_escaped_mac_equals_the_string_construction(text in text_with_runs()) {
            let body = text.as_bytes();
            prop_assert_eq!(escape_unicode(body), escape_by_string(body));
            let signed_over = escape_by_string(body).unwrap_or_else(|| body.to_vec());
            let header = sign(SECRET, &signed_over);
            prop_assert_eq!(verify(SECRET, Some(header.as_bytes()), body), Ok(()));
            let raw_header = sign(SECRET, body);
            prop_assert_eq!(verify(SECRET, Some(raw_header.as_bytes()), body), Ok(()));
            let forged = sign(b"not-the-secret", &signed_over);
            prop_assert_eq!(
                verify(SECRET, Some(forged.as_bytes()), body),
                Err(SignatureError::Mismatch)
            );
        }

        #[test]
        fn arbitrary_bytes_never_verify_under_a_forged_key(body in prop::collection::vec(any::<u8>(), 0..300)) {
            let forged = sign(b"not-the-secret", &body);
            prop_assert_eq!(
                verify(SECRET, Some(forged.as_bytes()), &body),
                Err(SignatureError::Mismatch)
            );
            let good = sign(SECRET, &body);
            prop_assert_eq!(verify(SECRET, Some(good.as_bytes()), &body), Ok(()));
        }
    }
}
