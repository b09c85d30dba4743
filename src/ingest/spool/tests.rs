use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::domain::PhoneNumberId;

fn gateway() -> Origin {
    Origin::Wasender {
        session: PhoneNumberId::parse("5511").unwrap(),
    }
}

fn bodies(path: &Path) -> Vec<Vec<u8>> {
    decode_all(&fs::read(path).unwrap())
        .0
        .records
        .into_iter()
        .map(|r| r.body)
        .collect()
}

#[test]
fn append_claim_read_finish_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    spool.append(&Origin::Cloud, b"one").unwrap();
    spool.append(&gateway(), b"two").unwrap();
    assert!(spool.pending_bytes() > 0);
    let files = spool.claim_for_replay().unwrap();
    assert_eq!(files.len(), 1);
    spool.append(&Origin::Cloud, b"three").unwrap(); // lands in a fresh active file
    let contents = decode_all(&fs::read(&files[0]).unwrap()).0;
    assert_eq!(bodies(&files[0]), [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(contents.records[1].origin, gateway());
    spool.finish(&files[0]).unwrap();
    assert_eq!(spool.claim_for_replay().unwrap().len(), 1);
}

#[test]
fn torn_tail_is_skipped_then_cut_before_new_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = encode(&Origin::Cloud, b"kept").unwrap();
    let torn = encode(&Origin::Cloud, b"torn in half").unwrap();
    bytes.extend_from_slice(&torn[..torn.len() - 4]);
    fs::write(dir.path().join(ACTIVE), &bytes).unwrap();

    let (contents, valid_end) = decode_all(&bytes);
    assert_eq!(contents.records.len(), 1);
    assert_eq!(contents.torn_bytes, torn.len() - 4);
    assert_eq!(valid_end, bytes.len() - (torn.len() - 4));

    let spool = Spool::open(dir.path()).unwrap();
    spool.append(&Origin::Cloud, b"after").unwrap();
    let files = spool.claim_for_replay().unwrap();
    let contents = decode_all(&fs::read(&files[0]).unwrap()).0;
    assert_eq!(contents.records.len(), 2);
    assert_eq!(contents.torn_bytes, 0);
}

#[test]
fn an_append_after_the_file_was_renamed_or_removed_starts_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let active = dir.path().join(ACTIVE);
    spool.append(&Origin::Cloud, b"first").unwrap();
    let moved = dir.path().join("moved.bak");
    fs::rename(&active, &moved).unwrap();
    spool.append(&Origin::Cloud, b"second").unwrap();
    assert_eq!(bodies(&moved), [b"first".to_vec()]);
    assert_eq!(bodies(&active), [b"second".to_vec()]);

    fs::remove_file(&active).unwrap();
    spool.append(&Origin::Cloud, b"third").unwrap();
    assert_eq!(bodies(&active), [b"third".to_vec()]);
}

#[test]
fn a_second_owner_is_refused_until_the_first_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let first = Spool::open(dir.path()).unwrap();
    let clone = first.clone();
    drop(first);
    match Spool::open(dir.path()) {
        Err(SpoolError::Owned { dir: d, holder }) => {
            assert_eq!(d, dir.path());
            assert_eq!(holder, format!("pid {}", std::process::id()));
        }
        other => panic!("a second owner must be refused, got {other:?}"),
    }
    drop(clone);
    Spool::open(dir.path()).expect("free once every handle is dropped");
}

#[test]
fn an_unowned_handle_measures_but_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Spool::open(dir.path()).unwrap();
    owner.append(&Origin::Cloud, b"x").unwrap();
    let offline = Spool::unowned(dir.path());
    assert_eq!(offline.pending_bytes(), owner.pending_bytes());
    assert!(offline.append(&Origin::Cloud, b"y").is_err());
    assert!(offline.claim_for_replay().is_err());
    assert_eq!(bodies(&dir.path().join(ACTIVE)), [b"x".to_vec()]);
}

#[test]
fn retained_records_are_picked_up_by_the_next_claim() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let kept = [SpoolRecord {
        origin: gateway(),
        body: b"again".to_vec(),
    }];
    let path = spool.retain(&kept).unwrap();
    assert_eq!(
        spool.claim_for_replay().unwrap(),
        std::slice::from_ref(&path)
    );
    assert_eq!(decode_all(&fs::read(&path).unwrap()).0.records, kept);
}

#[test]
fn directory_is_private_and_files_are_owner_only() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("a/spool");
    let spool = Spool::open(&dir).unwrap();
    spool.append(&Origin::Cloud, b"x").unwrap();
    spool
        .retain(&[SpoolRecord {
            origin: Origin::Cloud,
            body: b"y".to_vec(),
        }])
        .unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}
