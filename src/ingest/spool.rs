//! The local spool: where an authentic payload goes when the store cannot take it.
//!
//! An append-only file of checksummed records, each fsync'd before the sender is answered:
//! `magic "RSP1" | provider u8 | body length u32 LE | crc32(provider, body) u32 LE | body`.
//! Replay claims the active file by renaming it (new payloads start a fresh file meanwhile),
//! re-ingests every record through the normal path — dedup makes a repeated replay harmless —
//! and deletes the file only when every record is in the store. A torn record (a crash mid-write)
//! fails its checksum or runs past the end: it is counted and skipped, never fatal, and the
//! reader resynchronises on the next magic.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::domain::Provider;

const MAGIC: &[u8; 4] = b"RSP1";
const HEADER_LEN: usize = 4 + 1 + 4 + 4;
const ACTIVE: &str = "active.spool";
const CLAIMED_SUFFIX: &str = ".replaying";

/// One spooled delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub provider: Provider,
    pub body: Vec<u8>,
}

/// What reading one spool file found.
#[derive(Debug, Default)]
pub struct SpoolContents {
    pub records: Vec<SpoolRecord>,
    /// Bytes skipped because a record was torn or corrupt.
    pub torn_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    active: Arc<Mutex<Option<File>>>,
}

impl Spool {
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            active: Arc::new(Mutex::new(None)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record and fsyncs it. Blocking: call from `spawn_blocking`.
    pub fn append(&self, provider: Provider, body: &[u8]) -> io::Result<()> {
        let record = encode(provider, body)?;
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.is_none() {
            *active = Some(open_active(&self.dir.join(ACTIVE))?);
        }
        let file = active.as_mut().expect("opened above");
        file.write_all(&record)?;
        file.sync_data()
    }

    /// Renames the active file aside for replay and lists every file awaiting replay (including
    /// ones an interrupted replay left behind), oldest first.
    pub fn claim_for_replay(&self) -> io::Result<Vec<PathBuf>> {
        {
            let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            let path = self.dir.join(ACTIVE);
            if path.exists() {
                *active = None;
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                fs::rename(&path, self.dir.join(format!("{stamp:032}{CLAIMED_SUFFIX}")))?;
                sync_dir(&self.dir)?;
            }
        }
        let mut claimed: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(CLAIMED_SUFFIX))
            .collect();
        claimed.sort();
        Ok(claimed)
    }

    /// A replayed file whose every record is now in the store.
    pub fn finish(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)?;
        sync_dir(&self.dir)
    }

    /// Bytes waiting to be replayed (active plus claimed files).
    pub fn pending_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name == ACTIVE || name.ends_with(CLAIMED_SUFFIX)
                    })
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

pub fn read_file(path: &Path) -> io::Result<SpoolContents> {
    Ok(decode_all(&fs::read(path)?).0)
}

/// Opens the active file for appending, first cutting off a torn tail a crash left behind so
/// new records never follow garbage.
fn open_active(path: &Path) -> io::Result<File> {
    if let Ok(bytes) = fs::read(path) {
        let (_, valid_end) = decode_all(&bytes);
        if valid_end < bytes.len() {
            tracing::warn!(path = %path.display(), torn_bytes = bytes.len() - valid_end, "spool: cutting a torn tail");
            OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(valid_end as u64)?;
        }
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(file)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn provider_byte(provider: Provider) -> u8 {
    match provider {
        Provider::Cloud => 1,
        Provider::Wasender => 2,
    }
}

fn provider_from(byte: u8) -> Option<Provider> {
    match byte {
        1 => Some(Provider::Cloud),
        2 => Some(Provider::Wasender),
        _ => None,
    }
}

pub fn encode(provider: Provider, body: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::other("payload too large for the spool"))?;
    let tag = provider_byte(provider);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[tag]);
    crc.update(body);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.push(tag);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Decodes every intact record; returns them and the end offset of the last intact one.
pub fn decode_all(bytes: &[u8]) -> (SpoolContents, usize) {
    let mut contents = SpoolContents::default();
    let (mut pos, mut valid_end) = (0, 0);
    while pos < bytes.len() {
        match decode_at(&bytes[pos..]) {
            Some((record, used)) => {
                contents.records.push(record);
                pos += used;
                valid_end = pos;
            }
            None => {
                // Resynchronise on the next magic; everything skipped is torn.
                let next = bytes[pos + 1..]
                    .windows(MAGIC.len())
                    .position(|w| w == MAGIC)
                    .map_or(bytes.len(), |i| pos + 1 + i);
                contents.torn_bytes += next - pos;
                pos = next;
            }
        }
    }
    (contents, valid_end)
}

fn decode_at(bytes: &[u8]) -> Option<(SpoolRecord, usize)> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return None;
    }
    let provider = provider_from(bytes[4])?;
    let len = u32::from_le_bytes(bytes[5..9].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[9..13].try_into().ok()?);
    let body = bytes.get(HEADER_LEN..HEADER_LEN + len)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[4..5]);
    hasher.update(body);
    (hasher.finalize() == crc).then(|| {
        (
            SpoolRecord {
                provider,
                body: body.to_vec(),
            },
            HEADER_LEN + len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn append_claim_read_finish_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(Provider::Cloud, b"one").unwrap();
        spool.append(Provider::Wasender, b"two").unwrap();
        assert!(spool.pending_bytes() > 0);
        let files = spool.claim_for_replay().unwrap();
        assert_eq!(files.len(), 1);
        spool.append(Provider::Cloud, b"three").unwrap(); // lands in a fresh active file
        let contents = read_file(&files[0]).unwrap();
        assert_eq!(
            contents
                .records
                .iter()
                .map(|r| r.body.as_slice())
                .collect::<Vec<_>>(),
            [b"one".as_slice(), b"two"]
        );
        assert_eq!(contents.records[1].provider, Provider::Wasender);
        spool.finish(&files[0]).unwrap();
        assert_eq!(spool.claim_for_replay().unwrap().len(), 1);
    }

    #[test]
    fn torn_tail_is_skipped_then_cut_before_new_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode(Provider::Cloud, b"kept").unwrap();
        let torn = encode(Provider::Cloud, b"torn in half").unwrap();
        bytes.extend_from_slice(&torn[..torn.len() - 4]);
        fs::write(dir.path().join(ACTIVE), &bytes).unwrap();

        let (contents, valid_end) = decode_all(&bytes);
        assert_eq!(contents.records.len(), 1);
        assert_eq!(contents.torn_bytes, torn.len() - 4);
        assert_eq!(valid_end, bytes.len() - (torn.len() - 4));

        let spool = Spool::open(dir.path()).unwrap();
        spool.append(Provider::Cloud, b"after").unwrap();
        let files = spool.claim_for_replay().unwrap();
        let contents = read_file(&files[0]).unwrap();
        assert_eq!(contents.records.len(), 2);
        assert_eq!(contents.torn_bytes, 0);
    }

    #[test]
    fn corrupt_record_in_the_middle_is_skipped_and_the_rest_read() {
        let mut bytes = encode(Provider::Cloud, b"a").unwrap();
        let mut bad = encode(Provider::Cloud, b"bbbb").unwrap();
        *bad.last_mut().unwrap() ^= 0xff;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&encode(Provider::Cloud, b"c").unwrap());
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
                bytes.extend_from_slice(&encode(Provider::Cloud, body).unwrap());
            }
            let cut = cut.min(bytes.len());
            let (contents, _) = decode_all(&bytes[..cut]);
            let all = decode_all(&bytes).0.records;
            prop_assert_eq!(&contents.records[..], &all[..contents.records.len()]);
        }
    }
}
