//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body keyed by the app secret.
//!
//! Meta signs an escaped-unicode form of the payload (`\u00e4`, lowercase hex, UTF-16 units).
//! We verify the raw bytes first; only if that fails and the body holds non-ASCII bytes do we
//! retry once over the escaped form. Never parse-then-reserialize.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER: &str = "x-hub-signature-256";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
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
            Self::Missing => "signature_missing",
            Self::Malformed => "signature_malformed",
            Self::Mismatch => "signature_mismatch",
        }
    }
}

/// The header value Meta would send for `body`: `sha256=<lowercase hex>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `header` against the raw `body` in constant time.
pub fn verify(secret: &[u8], header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_part = header
        .strip_prefix(b"sha256=")
        .or_else(|| header.strip_prefix(b"SHA256="))
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_part.trim_ascii()).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    if mac_matches(secret, body, &expected) {
        return Ok(());
    }
    match escape_unicode(body) {
        Some(escaped) if mac_matches(secret, &escaped, &expected) => Ok(()),
        _ => Err(SignatureError::Mismatch),
    }
}

fn mac_matches(secret: &[u8], body: &[u8], expected: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(expected).is_ok()
}

/// Meta's escaped form: every character outside 0x00–0x7E as `\uXXXX` (lowercase, UTF-16 units).
/// `None` when there is nothing to escape or the body is not UTF-8.
pub fn escape_unicode(body: &[u8]) -> Option<Vec<u8>> {
    if body.iter().all(|b| *b < 0x7f) {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::with_capacity(body.len() + 16);
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"app-secret";

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
    }
}
