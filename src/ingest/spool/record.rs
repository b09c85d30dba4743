//! The spool's record format and its one decoder.
//!
//! `magic "RSP1" | origin u8 | payload length u32 LE | crc32(origin, payload) u32 LE | payload`.
//! The origin is 1 (Cloud API: the payload is the body) or 3 (a gateway session: the payload is
//! `session length u8 | session | body`, so a replay attributes it to the same session). 2 is a
//! gateway body spooled before sessions were recorded: it replays under the session `wasender`,
//! where that version stored such events.
//! [`RecordReader`] streams records from any seekable reader, one at a time, so replaying a
//! large spool file never holds more than one record (plus a read buffer) in memory. A torn or
//! corrupt record (a crash mid-write, a flipped bit) fails its checksum or runs past the end: it
//! is counted in `torn_bytes` and skipped, and the reader resynchronises on the next magic.
//! [`decode_all`] is the same decoder over a byte slice.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Seek, SeekFrom};
use std::path::Path;

use crate::domain::{Origin, PhoneNumberId};
use crate::ingest::LEGACY_GATEWAY_SESSION;

const MAGIC: &[u8; 4] = b"RSP1";
const HEADER_LEN: usize = 4 + 1 + 4 + 4;
/// Far above any webhook body (Meta sends up to 3 MB, the default limit is 4 MiB); a length
/// beyond it can only be corruption, and refusing it bounds what one record can allocate.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// One spooled delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub origin: Origin,
    pub body: Vec<u8>,
}

/// What reading a whole spool file found.
#[derive(Debug, Default)]
pub struct SpoolContents {
    pub records: Vec<SpoolRecord>,
    /// Bytes skipped because a record was torn or corrupt.
    pub torn_bytes: usize,
}

const CLOUD: u8 = 1;
const LEGACY_GATEWAY: u8 = 2;
const GATEWAY: u8 = 3;

fn known_tag(byte: u8) -> bool {
    matches!(byte, CLOUD | LEGACY_GATEWAY | GATEWAY)
}

/// The record's origin and body from its tag and checked payload; `None` if they do not parse.
fn split_payload(tag: u8, mut payload: Vec<u8>) -> Option<SpoolRecord> {
    let origin = match tag {
        CLOUD => Origin::Cloud,
        LEGACY_GATEWAY => Origin::Wasender {
            session: PhoneNumberId::parse(LEGACY_GATEWAY_SESSION).ok()?,
        },
        GATEWAY => {
            let len = usize::from(*payload.first()?);
            let session = std::str::from_utf8(payload.get(1..1 + len)?).ok()?;
            let session = PhoneNumberId::parse(session).ok()?;
            payload.drain(..1 + len);
            Origin::Wasender { session }
        }
        _ => return None,
    };
    Some(SpoolRecord {
        origin,
        body: payload,
    })
}

fn checksum(tag: u8, body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[tag]);
    crc.update(body);
    crc.finalize()
}

pub fn encode(origin: &Origin, body: &[u8]) -> io::Result<Vec<u8>> {
    let (tag, prefix) = match origin {
        Origin::Cloud => (CLOUD, Vec::new()),
        Origin::Wasender { session } => {
            let session = session.as_str().as_bytes();
            let len = u8::try_from(session.len())
                .map_err(|_| io::Error::other("a gateway session id is at most 255 bytes"))?;
            let mut prefix = Vec::with_capacity(1 + session.len());
            prefix.push(len);
            prefix.extend_from_slice(session);
            (GATEWAY, prefix)
        }
    };
    let payload_len = prefix.len() + body.len();
    if payload_len > MAX_RECORD_BYTES {
        return Err(io::Error::other(format!(
            "a {}-byte payload is too large for the spool (at most {MAX_RECORD_BYTES})",
            body.len()
        )));
    }
    let len = u32::try_from(payload_len).expect("bounded by MAX_RECORD_BYTES");
    let mut out = Vec::with_capacity(HEADER_LEN + payload_len);
    out.extend_from_slice(MAGIC);
    out.push(tag);
    out.extend_from_slice(&len.to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&prefix);
    out.extend_from_slice(body);
    let crc = checksum(tag, &out[HEADER_LEN..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes every intact record of `bytes`; returns them and the end offset of the last intact one.
pub fn decode_all(bytes: &[u8]) -> (SpoolContents, usize) {
    let mut reader = RecordReader::new(Cursor::new(bytes)).expect("a slice is seekable");
    let mut contents = SpoolContents::default();
    while let Some(record) = reader.next_record().expect("reading a slice cannot fail") {
        contents.records.push(record);
    }
    contents.torn_bytes = reader.torn_bytes() as usize;
    (contents, reader.valid_end() as usize)
}

/// Streams the records of one spool file.
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
    /// Offset of the next byte to decode; the reader is positioned there between records.
    pos: u64,
    len: u64,
    valid_end: u64,
    torn_bytes: u64,
}

impl RecordReader<BufReader<File>> {
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::new(BufReader::with_capacity(64 * 1024, File::open(path)?))
    }
}

impl<R: BufRead + Seek> RecordReader<R> {
    pub fn new(mut inner: R) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(Self {
            inner,
            pos: 0,
            len,
            valid_end: 0,
            torn_bytes: 0,
        })
    }

    /// The next intact record, skipping (and counting) torn bytes before it.
    pub fn next_record(&mut self) -> io::Result<Option<SpoolRecord>> {
        while self.pos < self.len {
            if let Some((record, used)) = self.decode_here()? {
                self.pos += used;
                self.valid_end = self.pos;
                return Ok(Some(record));
            }
            let next = self.find_magic(self.pos + 1)?;
            self.torn_bytes += next - self.pos;
            self.pos = next;
        }
        Ok(None)
    }

    /// Up to `max_records` records or about `max_bytes` of bodies, whichever comes first
    /// (at least one record unless the file is exhausted).
    pub fn next_chunk(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<SpoolRecord>> {
        let (mut chunk, mut bytes) = (Vec::new(), 0);
        while chunk.len() < max_records && bytes < max_bytes {
            let Some(record) = self.next_record()? else {
                break;
            };
            bytes += record.body.len();
            chunk.push(record);
        }
        Ok(chunk)
    }

    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// End offset of the last intact record read so far.
    pub fn valid_end(&self) -> u64 {
        self.valid_end
    }

    /// Decodes the record starting at `pos`, or `None` when none starts there. On `None` the
    /// reader may be left anywhere: the caller seeks.
    fn decode_here(&mut self) -> io::Result<Option<(SpoolRecord, u64)>> {
        let remaining = self.len - self.pos;
        if remaining < HEADER_LEN as u64 {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        self.inner.read_exact(&mut header)?;
        let tag = header[4];
        let len = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
        let used = (HEADER_LEN + len) as u64;
        if !(known_tag(tag)
            && &header[..4] == MAGIC
            && len <= MAX_RECORD_BYTES
            && used <= remaining)
        {
            return Ok(None);
        }
        let mut payload = vec![0u8; len];
        self.inner.read_exact(&mut payload)?;
        if checksum(tag, &payload) != crc {
            return Ok(None);
        }
        Ok(split_payload(tag, payload).map(|record| (record, used)))
    }

    /// Offset of the first magic at or after `from` (the file's length if there is none), with
    /// the reader positioned there.
    fn find_magic(&mut self, from: u64) -> io::Result<u64> {
        self.inner.seek(SeekFrom::Start(from))?;
        // `window` holds the bytes from file offset `start`; a magic may straddle two reads.
        let (mut start, mut window) = (from, Vec::new());
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(self.len);
            }
            let n = buf.len();
            window.extend_from_slice(buf);
            self.inner.consume(n);
            if let Some(i) = window.windows(MAGIC.len()).position(|w| w == MAGIC) {
                let at = (start + i as u64).min(self.len);
                self.inner.seek(SeekFrom::Start(at))?;
                return Ok(at);
            }
            let keep_from = window.len().saturating_sub(MAGIC.len() - 1);
            start += keep_from as u64;
            window.drain(..keep_from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gateway(session: &str) -> Origin {
        Origin::Wasender {
            session: PhoneNumberId::parse(session).unwrap(),
        }
    }

    #[test]
    fn a_gateway_record_keeps_its_session_and_a_legacy_one_gets_the_old_session() {
        let mut bytes = encode(&gateway("5511"), b"{}").unwrap();
        // An earlier version's gateway record: tag 2, the body alone.
        let legacy_body = b"{\"event\":\"x\"}";
        let mut legacy = encode(&Origin::Cloud, legacy_body).unwrap();
        legacy[4] = LEGACY_GATEWAY;
        let crc = checksum(LEGACY_GATEWAY, legacy_body).to_le_bytes();
        legacy[9..13].copy_from_slice(&crc);
        bytes.extend_from_slice(&legacy);
        let (contents, _) = decode_all(&bytes);
        assert_eq!(
            contents.records,
            [
                SpoolRecord {
                    origin: gateway("5511"),
                    body: b"{}".to_vec()
                },
                SpoolRecord {
                    origin: gateway(LEGACY_GATEWAY_SESSION),
                    body: legacy_body.to_vec()
                },
            ]
        );
        assert_eq!(contents.torn_bytes, 0);
    }

    #[test]
    fn corrupt_record_in_the_middle_is_skipped_and_the_rest_read() {
        let mut bytes = encode(&Origin::Cloud, b"a").unwrap();
        let mut bad = encode(&Origin::Cloud, b"bbbb").unwrap();
        *bad.last_mut().unwrap() ^= 0xff;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&encode(&Origin::Cloud, b"c").unwrap());
        let (contents, _) = decode_all(&bytes);
        assert_eq!(
            contents
                .records
                .iter()
                .map(|r| r.body.clone())
                .collect::<Vec<_>>(),
            [b"a".to_vec(), b"c".to_vec()]
        );
        assert_eq!(contents.torn_bytes, bad.len());
    }

    #[test]
    fn a_magic_straddling_read_buffers_is_found() {
        // Garbage longer than the read buffer, then a record: resynchronisation reads across
        // buffer boundaries with a tiny buffer.
        let mut bytes = vec![b'x'; 37];
        bytes.extend_from_slice(&encode(&gateway("s1"), b"found").unwrap());
        for capacity in 1..8 {
            let mut reader =
                RecordReader::new(BufReader::with_capacity(capacity, Cursor::new(&bytes))).unwrap();
            let record = reader
                .next_record()
                .unwrap()
                .expect("the record after garbage");
            assert_eq!(record.body, b"found");
            assert_eq!(reader.torn_bytes(), 37);
            assert!(reader.next_record().unwrap().is_none());
        }
    }

    #[test]
    fn a_corrupt_length_is_refused_without_allocating_it() {
        let mut bytes = encode(&Origin::Cloud, b"x").unwrap();
        bytes[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        let (contents, end) = decode_all(&bytes);
        assert!(contents.records.is_empty());
        assert_eq!((contents.torn_bytes, end), (bytes.len(), 0));
        assert!(encode(&Origin::Cloud, &vec![0; MAX_RECORD_BYTES + 1]).is_err());
    }

    #[test]
    fn chunks_are_bounded_by_count_and_bytes() {
        let mut bytes = Vec::new();
        for _ in 0..10 {
            bytes.extend_from_slice(&encode(&Origin::Cloud, &[7; 100]).unwrap());
        }
        let mut reader = RecordReader::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(reader.next_chunk(4, usize::MAX).unwrap().len(), 4);
        assert_eq!(reader.next_chunk(100, 250).unwrap().len(), 3);
        assert_eq!(reader.next_chunk(100, usize::MAX).unwrap().len(), 3);
        assert!(reader.next_chunk(100, usize::MAX).unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (contents, end) = decode_all(&bytes);
            prop_assert!(end <= bytes.len());
            prop_assert!(contents.torn_bytes <= bytes.len());
        }

        #[test]
        fn any_prefix_of_a_good_file_yields_a_prefix_of_its_records(cut in 0usize..200) {
            let mut bytes = Vec::new();
            for body in [&b"first"[..], b"second record", b"3"] {
                bytes.extend_from_slice(&encode(&Origin::Cloud, body).unwrap());
            }
            let cut = cut.min(bytes.len());
            let (contents, _) = decode_all(&bytes[..cut]);
            let all = decode_all(&bytes).0.records;
            prop_assert_eq!(&contents.records[..], &all[..contents.records.len()]);
        }

        #[test]
        fn good_records_survive_garbage_between_them(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6),
            garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 6),
        ) {
            let mut bytes = Vec::new();
            for (body, junk) in bodies.iter().zip(&garbage) {
                // Garbage without a magic can only ever be skipped.
                let junk: Vec<u8> = junk.iter().map(|b| if *b == b'R' { b'r' } else { *b }).collect();
                bytes.extend_from_slice(&junk);
                bytes.extend_from_slice(&encode(&Origin::Cloud, body).unwrap());
            }
            let (contents, end) = decode_all(&bytes);
            let read: Vec<Vec<u8>> = contents.records.into_iter().map(|r| r.body).collect();
            prop_assert_eq!(&read, &bodies);
            prop_assert_eq!(end, bytes.len());
        }
    }
}
