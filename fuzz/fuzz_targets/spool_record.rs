//! Any bytes as a spool file: decoding never panics, what it keeps plus what it skips never
//! exceeds the input (a torn or corrupt record is skipped, never invented), and the records it
//! keeps, written out again, decode to themselves with nothing torn.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replyd::ingest::spool::{decode_all, encode};

fuzz_target!(|bytes: &[u8]| {
    let (contents, valid_end) = decode_all(bytes);
    assert!(valid_end <= bytes.len());
    assert!(contents.torn_bytes <= bytes.len());
    let mut kept = 0;
    for record in &contents.records {
        let encoded = encode(record.provider, &record.body).expect("a decoded record re-encodes");
        kept += encoded.len();
    }
    assert!(kept + contents.torn_bytes <= bytes.len());
    // A clean file of those records decodes to the same records, nothing torn.
    let mut clean = Vec::with_capacity(kept);
    for record in &contents.records {
        clean.extend(encode(record.provider, &record.body).unwrap());
    }
    let (again, end) = decode_all(&clean);
    assert_eq!(again.records, contents.records);
    assert_eq!((again.torn_bytes, end), (0, clean.len()));
});
