//! Gateway sessions' `session.status` events, applied in the ingest transaction: the latest
//! event of a session (by its own timestamp, whatever the arrival order) decides whether the
//! session's sends are held. A session gone (DISCONNECTED, LOGGED_OUT, NEED_SCAN, EXPIRED) holds
//! its sends under `session_disconnected` (the gateway would answer 503 meanwhile); CONNECTED
//! lifts that hold — never one an auth or account error put there — and makes the session's
//! waiting jobs due at once.

use sqlx::Row;

use super::Tx;
use crate::domain::{SessionEvent, SessionState};
use crate::store::{IngestUnit, StoreError};

/// The hold a gone session puts on its sends.
pub(crate) const SESSION_HOLD: &str = "session_disconnected";

pub(super) async fn apply_session_events(
    tx: &mut Tx<'_>,
    units: &[IngestUnit],
    now_ms: i64,
    probe_after_ms: i64,
) -> Result<(), StoreError> {
    let mut events: Vec<(&IngestUnit, &SessionEvent)> = units
        .iter()
        .flat_map(|u| u.notification.session_events.iter().map(move |e| (u, e)))
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    events.sort_by_key(|(_, e)| e.timestamp);
    for (unit, event) in events {
        let provider = unit.origin.provider().as_str();
        let session = event.session.as_str();
        // Only a newer (or equally new) event replaces the state.
        sqlx::query(
            "INSERT INTO gateway_sessions (provider, session_id, state, event_ts, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (provider, session_id) DO UPDATE SET state = excluded.state,
                 event_ts = excluded.event_ts, updated_at_ms = excluded.updated_at_ms
             WHERE excluded.event_ts >= gateway_sessions.event_ts",
        )
        .bind(provider)
        .bind(session)
        .bind(event.state.as_str())
        .bind(event.timestamp)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        let state: String = sqlx::query(
            "SELECT state FROM gateway_sessions WHERE provider = ?1 AND session_id = ?2",
        )
        .bind(provider)
        .bind(session)
        .fetch_one(&mut **tx)
        .await?
        .try_get("state")?;
        let allowed = SessionState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("gateway session state `{state}`")))?
            .sends_allowed();
        match allowed {
            Some(false) => {
                sqlx::query(
                    "INSERT INTO send_holds (provider, phone_number_id, error_code, since_ms, next_probe_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (provider, phone_number_id) DO NOTHING",
                )
                .bind(provider)
                .bind(session)
                .bind(SESSION_HOLD)
                .bind(now_ms)
                .bind(now_ms.saturating_add(probe_after_ms))
                .execute(&mut **tx)
                .await?;
            }
            Some(true) => {
                let lifted = sqlx::query(
                    "DELETE FROM send_holds WHERE provider = ?1 AND phone_number_id = ?2 AND error_code = ?3",
                )
                .bind(provider)
                .bind(session)
                .bind(SESSION_HOLD)
                .execute(&mut **tx)
                .await?;
                if lifted.rows_affected() > 0 {
                    super::operators::make_waiting_jobs_due(tx, provider, session, now_ms).await?;
                }
            }
            None => {}
        }
    }
    Ok(())
}
