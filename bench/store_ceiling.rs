//! The store's own ceiling for durable ingest: a bare batched insert loop on replyd's schema.
//!
//! Builds the very request stream `replyd simulate` sends (same generator, seed, duplicate
//! ratio), parses it with replyd's parser before the clock starts, then, on a fresh database
//! migrated by replyd (so the schema, indexes and pragmas are exactly the store's), writes what
//! ingest writes for each message — the inbound row (deduplicated by its unique key), its reply
//! job, the contact's window anchor — through SQLite's C API with prepared statements: one
//! writer, `BEGIN IMMEDIATE … COMMIT` per batch, WAL with `synchronous=FULL`. No HTTP, no
//! signature, no JSON, no thread hops: what any ingest path on this store can at best reach.
//!
//! Usage: `store_ceiling DB_PATH REQUESTS BATCH DUPLICATE_RATIO SEED`; prints one JSON line with
//! the keys of `replyd simulate --json` (latencies are per batch commit, from `BEGIN` to the
//! end of `COMMIT`).

use std::ffi::{CStr, CString, c_int};
use std::ptr;
use std::time::Instant;

use libsqlite3_sys as ffi;
use replyd::domain::Origin;
use replyd::domain::keywords::Keywords;
use replyd::store::{Store, StoreOptions};
use replyd::tools::simulate::feed::Generator;
use replyd::tools::simulate::payload::PayloadSpec;

struct Db(*mut ffi::sqlite3);

impl Db {
    fn open(path: &str) -> Self {
        let path = CString::new(path).unwrap();
        let mut db = ptr::null_mut();
        // SAFETY: a valid C string and out-pointer; the handle is closed in Drop.
        let rc = unsafe { ffi::sqlite3_open(path.as_ptr(), &mut db) };
        assert_eq!(rc, ffi::SQLITE_OK, "open");
        Self(db)
    }

    fn exec(&self, sql: &str) {
        let sql = CString::new(sql).unwrap();
        // SAFETY: an open handle and a valid C string.
        let rc = unsafe {
            ffi::sqlite3_exec(self.0, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
        };
        assert_eq!(rc, ffi::SQLITE_OK, "{}", self.error());
    }

    fn prepare(&self, sql: &str) -> Stmt<'_> {
        let sql = CString::new(sql).unwrap();
        let mut stmt = ptr::null_mut();
        // SAFETY: an open handle, a valid C string and out-pointer; finalized in Drop.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(self.0, sql.as_ptr(), -1, &mut stmt, ptr::null_mut())
        };
        assert_eq!(rc, ffi::SQLITE_OK, "{}", self.error());
        Stmt { stmt, db: self }
    }

    fn changes(&self) -> c_int {
        // SAFETY: an open handle.
        unsafe { ffi::sqlite3_changes(self.0) }
    }

    fn last_rowid(&self) -> i64 {
        // SAFETY: an open handle.
        unsafe { ffi::sqlite3_last_insert_rowid(self.0) }
    }

    fn error(&self) -> String {
        // SAFETY: SQLite returns a NUL-terminated message owned by the handle.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: every statement borrows the Db and is finalized before it.
        unsafe { ffi::sqlite3_close(self.0) };
    }
}

struct Stmt<'d> {
    stmt: *mut ffi::sqlite3_stmt,
    db: &'d Db,
}

enum Value<'v> {
    Int(i64),
    Text(&'v str),
    Null,
}

impl Stmt<'_> {
    /// Binds `values` (SQLite copies text), steps once to completion and resets.
    fn run(&mut self, values: &[Value<'_>]) {
        for (i, v) in values.iter().enumerate() {
            let at = c_int::try_from(i + 1).unwrap();
            // SAFETY: a live statement; text is copied by SQLite (SQLITE_TRANSIENT).
            let rc = unsafe {
                match v {
                    Value::Int(n) => ffi::sqlite3_bind_int64(self.stmt, at, *n),
                    Value::Text(s) => ffi::sqlite3_bind_text(
                        self.stmt,
                        at,
                        s.as_ptr().cast(),
                        c_int::try_from(s.len()).unwrap(),
                        ffi::SQLITE_TRANSIENT(),
                    ),
                    Value::Null => ffi::sqlite3_bind_null(self.stmt, at),
                }
            };
            assert_eq!(rc, ffi::SQLITE_OK, "bind");
        }
        // SAFETY: a live statement.
        let rc = unsafe { ffi::sqlite3_step(self.stmt) };
        assert_eq!(rc, ffi::SQLITE_DONE, "{}", self.db.error());
        // SAFETY: a live statement.
        unsafe { ffi::sqlite3_reset(self.stmt) };
    }
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: a statement prepared by this handle, finalized once.
        unsafe { ffi::sqlite3_finalize(self.stmt) };
    }
}

fn arg<T: std::str::FromStr>(i: usize, name: &str) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            panic!("usage: store_ceiling DB_PATH REQUESTS BATCH DUPLICATE_RATIO SEED ({name})")
        })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path: String = arg(1, "DB_PATH");
    let requests: u64 = arg(2, "REQUESTS");
    let batch: usize = arg(3, "BATCH");
    let ratio: f64 = arg(4, "DUPLICATE_RATIO");
    let seed: u64 = arg(5, "SEED");

    // The schema exactly as replyd creates it.
    let url: replyd::secret::DatabaseUrl = format!("sqlite://{path}").into();
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    drop(store);

    // The same stream `replyd simulate --seed SEED --duplicate-ratio RATIO` posts, parsed.
    let spec = PayloadSpec {
        seed,
        phone_number_id: "100000000000001".into(),
        senders: 1000,
        messages_per_payload: 1,
        status_ratio: 0.0,
        // `replyd simulate`'s default mix.
        mix: replyd::tools::simulate::mix::Mix::new(0.005, 0.10, 0.0).expect("a valid mix"),
    };
    let mut feed = Generator::new(spec, b"bench-secret", ratio, true);
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let keywords = Keywords::default();
    let messages: Vec<_> = (0..requests)
        .flat_map(|_| {
            let post = feed.next_post(now_unix);
            replyd::ingest::parse(&Origin::Cloud, &post.body, &keywords)
                .notification
                .messages
        })
        .collect();

    let db = Db::open(&path);
    db.exec(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768;
         PRAGMA temp_store = memory; PRAGMA foreign_keys = ON;",
    );
    let mut inbound = db.prepare(
        "INSERT INTO inbound_messages
             (provider, message_id, phone_number_id, wa_id, group_id, kind, body, payload_ts, received_at_ms, raw)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id, provider) DO NOTHING",
    );
    let mut job = db.prepare(
        "INSERT INTO jobs (inbound_id, provider, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    );
    let mut contact = db.prepare(
        "INSERT INTO contacts (provider, phone_number_id, wa_id, last_inbound_ts, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (provider, phone_number_id, wa_id) DO UPDATE SET
             last_inbound_ts = max(coalesce(contacts.last_inbound_ts, 0), excluded.last_inbound_ts),
             updated_at_ms = excluded.updated_at_ms",
    );

    let mut stored = 0u64;
    let mut commits = Vec::new();
    let started = Instant::now();
    for chunk in messages.chunks(batch.max(1)) {
        let t = Instant::now();
        let now_ms = i64::try_from(now_unix).unwrap() * 1000;
        db.exec("BEGIN IMMEDIATE");
        for m in chunk {
            let (provider, phone, wa) = (
                m.provider.as_str(),
                m.phone_number_id.as_str(),
                m.from.as_str(),
            );
            inbound.run(&[
                Value::Text(provider),
                Value::Text(m.id.as_str()),
                Value::Text(phone),
                Value::Text(wa),
                m.group
                    .as_ref()
                    .map_or(Value::Null, |g| Value::Text(g.as_str())),
                Value::Text(m.kind.as_str()),
                m.text.as_deref().map_or(Value::Null, Value::Text),
                Value::Int(m.timestamp),
                Value::Int(now_ms),
                Value::Text(&m.raw),
            ]);
            if db.changes() == 1 {
                stored += 1;
                let id = db.last_rowid();
                job.run(&[
                    Value::Int(id),
                    Value::Text(provider),
                    Value::Text(phone),
                    Value::Text(wa),
                    Value::Int(m.timestamp),
                    Value::Int(now_ms),
                ]);
                contact.run(&[
                    Value::Text(provider),
                    Value::Text(phone),
                    Value::Text(wa),
                    Value::Int(m.timestamp),
                    Value::Int(now_ms),
                ]);
            }
        }
        db.exec("COMMIT");
        commits.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    commits.sort_by(f64::total_cmp);
    let summary = serde_json::json!({
        "url": format!("store ceiling, batches of {batch}"),
        "seed": seed,
        "requests_sent": requests,
        "messages_sent": stored,
        "status_2xx": requests,
        "status_4xx": 0,
        "status_5xx": 0,
        "transport_errors": 0,
        "elapsed_s": elapsed,
        "requests_per_s": messages.len() as f64 / elapsed,
        "messages_per_s": stored as f64 / elapsed,
        "latency_p50_ms": percentile(&commits, 50.0),
        "latency_p99_ms": percentile(&commits, 99.0),
        "latency_max_ms": commits.last().copied().unwrap_or(0.0),
    });
    println!("{summary}");
}
