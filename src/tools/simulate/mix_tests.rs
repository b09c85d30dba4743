//! The generator's mix, read back from the bytes it puts on the wire: each share within
//! tolerance of what was asked, and the counts it reports equal to what it sent.

use serde_json::Value;

use super::mix::{Kind, KindCounts, Mix};
use super::payload::{KEYWORDS, PayloadSpec, build};

fn spec(messages_per_payload: u32, status_ratio: f64) -> PayloadSpec {
    PayloadSpec {
        seed: 7,
        phone_number_id: "100000000000001".into(),
        senders: 50,
        messages_per_payload,
        status_ratio,
        mix: Mix::new(0.005, 0.1, 0.05).unwrap(),
    }
}

/// What a message on the wire is, read back from the JSON the way a receiver sees it.
fn wire_kind(m: &Value) -> Kind {
    match m["type"].as_str().unwrap() {
        "text" if KEYWORDS.contains(&m["text"]["body"].as_str().unwrap()) => Kind::Keyword,
        "text" => Kind::Text,
        "image" | "audio" | "document" | "video" => Kind::Media,
        "reaction" => Kind::Reaction,
        "interactive" => Kind::Interactive,
        "location" => Kind::Location,
        other => panic!("unexpected type {other}"),
    }
}

#[test]
fn the_generated_mix_matches_the_configured_shares() {
    // (keyword, media, reaction, status) shares; 4 000 payloads of 3 messages each.
    for (keyword, media, reaction, status) in [
        (0.005, 0.10, 0.0, 0.0),
        (0.0, 0.10, 0.0, 0.0),
        (0.08, 0.25, 0.05, 0.2),
        (1.0, 0.0, 0.0, 0.0),
    ] {
        let s = PayloadSpec {
            seed: 11,
            mix: Mix::new(keyword, media, reaction).unwrap(),
            ..spec(3, status)
        };
        let (payloads, mut counted, mut with_statuses) = (4000u64, KindCounts::default(), 0);
        let mut claimed = KindCounts::default();
        for n in 0..payloads {
            let p = build(&s, n, 1);
            claimed.merge(&p.kinds);
            with_statuses += u64::from(p.statuses > 0);
            let v: Value = serde_json::from_slice(&p.body).unwrap();
            for m in v["entry"][0]["changes"][0]["value"]["messages"]
                .as_array()
                .unwrap()
            {
                counted.count(wire_kind(m));
            }
        }
        assert_eq!(claimed, counted, "the counts say what went on the wire");
        let total = counted.total() as f64;
        assert_eq!(total, 12_000.0);
        // Within four standard deviations of a binomial draw (and exact at 0 and 1).
        let close = |seen: u64, share: f64, n: f64, what: &str| {
            let sd = (n * share * (1.0 - share)).sqrt();
            let expected = n * share;
            assert!(
                (seen as f64 - expected).abs() <= 4.0 * sd + 1e-9,
                "{what}: {seen} of {n}, expected {expected:.0} ± {:.0}",
                4.0 * sd
            );
        };
        close(counted.keyword, keyword, total, "keywords");
        close(counted.media, media, total, "media");
        close(counted.reaction, reaction, total, "reactions");
        close(
            with_statuses,
            status,
            payloads as f64,
            "payloads with statuses",
        );
        let rest = 1.0 - keyword - media - reaction;
        close(counted.text, rest * 0.85, total, "texts");
    }
}
