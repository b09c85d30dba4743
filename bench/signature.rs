//! Forged-signature benchmark: what a forged `POST /webhook` costs in the signature check, for
//! a 4 MiB ASCII body (one MAC over the raw bytes) against 4 MiB non-ASCII bodies (the raw MAC,
//! then the MAC over Meta's escaped-unicode form). A forgery must not cost more than a real
//! delivery: the target is non-ASCII within 2× of the ASCII path. `vs authentic` compares each
//! forgery with a genuine delivery of the same body, signed as Meta signs (the escaped form).
//!
//! Usage: `cargo run --release --example signature_bench` (or `bench/signature.sh`). Environment:
//!   BENCH_BYTES=4194304   body size
//!   BENCH_ROUNDS=15       rounds; each round times every body once, in turn (alternating), and
//!                         the table shows the median per body
//!
//! Bodies: `ascii` is webhook JSON with ASCII texts; `mixed` the same envelopes with texts in
//! several scripts (Latin with accents, Cyrillic, CJK, emoji: what real traffic holds);
//! `latin-1` texts made only of 2-byte characters and `emoji` only of 4-byte ones are the worst
//! cases (their escaped form is 3× the body: a MAC over 4× the bytes is the floor there; the
//! `MAC bytes ×` column is that floor for each body). The last row is the construction used
//! before (a `String` built char by char), for reference.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use replyd::whatsapp::signature::{self, SignatureError};

const SECRET: &[u8] = b"bench-app-secret";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Webhook envelopes, one text message each, until `size` bytes (padded to exactly `size`).
fn body(size: usize, texts: &[&str]) -> Vec<u8> {
    let mut out = String::from(r#"{"object":"whatsapp_business_account","entry":["#);
    let mut i = 0usize;
    while out.len() < size {
        let text = texts[i % texts.len()];
        out.push_str(&format!(
            r#"{{"id":"102290129340398","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},"contacts":[{{"profile":{{"name":"Ana"}},"wa_id":"34600{i:06}"}}],"messages":[{{"from":"34600{i:06}","id":"wamid.BENCH{i:012}","timestamp":"1700000000","type":"text","text":{{"body":"{text}"}}}}]}}}}]}},"#
        ));
        i += 1;
    }
    fit(out, size)
}

/// `text` cut to `size` bytes on a character boundary, padded with spaces.
fn fit(text: String, size: usize) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    bytes.truncate(size);
    if let Err(e) = std::str::from_utf8(&bytes) {
        bytes.truncate(e.valid_up_to());
    }
    bytes.resize(size, b' ');
    bytes
}

/// The escaped-form check as it was before: a `String` per body, a `format!` per character.
fn old_check(secret: &[u8], header: &[u8], body: &[u8]) -> bool {
    let expected = hex::decode(&header[7..]).unwrap();
    let mac = |bytes: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        m.update(bytes);
        m.verify_slice(&expected).is_ok()
    };
    if mac(body) {
        return true;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
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
    mac(out.as_bytes())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let size = env_num("BENCH_BYTES", 4 * 1024 * 1024);
    let rounds = env_num("BENCH_ROUNDS", 15).max(1);
    let ascii_texts = [
        "Hello, is the shop open on Sunday?",
        "ok thanks",
        "Order #1234 status",
    ];
    let mixed_texts = [
        "Hola, ¿está abierta la tienda el domingo?",
        "Grüße aus München, danke schön!",
        "Привет, когда доставка?",
        "你好，请问周日营业吗？",
        "ok 👍 see you 😮",
        "Order #1234 status",
    ];
    let latin = "äöåéèüßñçøæœ".repeat(20);
    let emoji = "😮👍🎉🙏🔥💬".repeat(20);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("ascii", body(size, &ascii_texts)),
        ("mixed", body(size, &mixed_texts)),
        (
            "latin-1 only",
            fit(latin.repeat(size / latin.len() + 1), size),
        ),
        (
            "emoji only",
            fit(emoji.repeat(size / emoji.len() + 1), size),
        ),
    ];
    let forged: Vec<String> = bodies
        .iter()
        .map(|(_, b)| signature::sign(b"not-the-secret", b))
        .collect();

    // What Meta sends: the signature over the escaped form (the raw body when all ASCII).
    let authentic: Vec<String> = bodies
        .iter()
        .map(|(_, b)| {
            let signed = signature::escape_unicode(b).unwrap_or_else(|| b.clone());
            signature::sign(SECRET, &signed)
        })
        .collect();

    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); bodies.len() + 1];
    let mut real: Vec<Vec<Duration>> = vec![Vec::new(); bodies.len()];
    for round in 0..=rounds {
        for (i, (_, b)) in bodies.iter().enumerate() {
            let started = Instant::now();
            let verdict = signature::verify(SECRET, Some(forged[i].as_bytes()), b);
            let took = started.elapsed();
            assert_eq!(verdict, Err(SignatureError::Mismatch));
            let started = Instant::now();
            let genuine = signature::verify(SECRET, Some(authentic[i].as_bytes()), b);
            let took_real = started.elapsed();
            assert_eq!(genuine, Ok(()));
            if round > 0 {
                times[i].push(took);
                real[i].push(took_real);
            }
        }
        let (_, latin_body) = &bodies[2];
        let started = Instant::now();
        assert!(!old_check(SECRET, forged[2].as_bytes(), latin_body));
        if round > 0 {
            times[bodies.len()].push(started.elapsed());
        }
    }

    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    let real: Vec<Duration> = real.into_iter().map(median).collect();
    let plain = medians[0].as_secs_f64();
    println!(
        "forged X-Hub-Signature-256, {} KiB bodies, median of {rounds} alternating rounds",
        size / 1024
    );
    println!(
        "{:<34} {:>12} {:>10} {:>12} {:>10} {:>10} {:>12} {:>14}",
        "body",
        "non-ASCII %",
        "escaped ×",
        "MAC bytes ×",
        "ms",
        "vs ascii",
        "authentic ms",
        "vs authentic"
    );
    let mut rows: Vec<(String, &[u8], Duration, Duration)> = bodies
        .iter()
        .zip(&medians)
        .zip(&real)
        .map(|(((name, b), m), r)| (name.to_string(), b.as_slice(), *m, *r))
        .collect();
    rows.push((
        "latin-1 only, old construction".into(),
        bodies[2].1.as_slice(),
        medians[bodies.len()],
        real[2],
    ));
    for (name, b, m, r) in rows {
        let non_ascii = b.iter().filter(|c| **c >= 0x7f).count() as f64 / b.len() as f64;
        let escaped = signature::escape_unicode(b).map(|e| e.len());
        let escaped_ratio = escaped.unwrap_or(b.len()) as f64 / b.len() as f64;
        // What a forged body makes the check hash: the raw body, plus its escaped form if any.
        let hashed = (b.len() + escaped.unwrap_or(0)) as f64 / b.len() as f64;
        println!(
            "{:<34} {:>11.1}% {:>10.2} {:>12.2} {:>10.2} {:>9.2}x {:>12.2} {:>13.2}x",
            name,
            100.0 * non_ascii,
            escaped_ratio,
            hashed,
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() / plain,
            r.as_secs_f64() * 1e3,
            m.as_secs_f64() / r.as_secs_f64()
        );
    }
}
