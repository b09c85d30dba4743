//! The rare rows of a delivery, one statement each: platform errors (idempotent per delivery
//! digest and position) and payload dead letters (unique per content, and per gateway session
//! for gateway payloads: the same bytes from two sessions are two deliveries).

use sha2::{Digest, Sha256};

use super::Tx;
use crate::domain::Origin;
use crate::store::{IngestUnit, StoreError};

pub(super) async fn insert_platform_errors(
    tx: &mut Tx<'_>,
    unit: &IngestUnit,
    now_ms: i64,
) -> Result<(), StoreError> {
    for (i, e) in unit.notification.platform_errors.iter().enumerate() {
        sqlx::query(
            "INSERT INTO platform_errors (phone_number_id, code, title, raw, received_at_ms, dedup_key)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(e.phone_number_id.as_ref().map(|p| p.as_str()))
        .bind(e.code)
        .bind(e.title.as_deref())
        .bind(&e.raw)
        .bind(now_ms)
        .bind(format!("{}:{i}", unit.delivery_digest))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Returns 1 when a new dead letter was written, 0 when the same content was already kept.
pub(super) async fn insert_dead_letter(
    tx: &mut Tx<'_>,
    origin: &Origin,
    error: &str,
    detail: &str,
    raw: &[u8],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let digest = hex::encode(Sha256::digest(raw));
    // The same bytes from two gateway sessions are two deliveries.
    let dedup_key = match origin.session() {
        None => format!("{error}:{digest}"),
        Some(session) => format!("{error}:{session}:{digest}"),
    };
    let done = sqlx::query(
        "INSERT INTO dead_letters (kind, provider, session_id, error, detail, raw, dedup_key, created_at_ms)
         VALUES ('payload', ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(origin.provider().as_str())
    .bind(origin.session().map(|s| s.as_str()))
    .bind(error)
    .bind(detail)
    .bind(raw)
    .bind(dedup_key)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
