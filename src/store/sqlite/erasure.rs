//! SQLite side of a contact's erasure. `inbound_messages` has no per-conversation index (it
//! would slow ingest), so the contact's rows are found first on the reader pool, without the
//! write lock; the erasure itself is then one short transaction by primary key. A message that
//! arrives between the two is not erased: it came after the request.

use super::replies::begin;
use super::{SqliteStore, Tx};
use crate::domain::ConversationKey;
use crate::store::StoreError;
use crate::store::retention::ErasureCounts;

impl SqliteStore {
    pub async fn erase_contact(
        &self,
        key: &ConversationKey,
        now_ms: i64,
    ) -> Result<ErasureCounts, StoreError> {
        let (provider, number, user) = (
            key.provider.as_str(),
            key.phone_number_id.as_str(),
            key.wa_id.as_str(),
        );
        // Every message of theirs, content or not: their ledger rows and dead letters hang on
        // the ids, whatever a prune already removed from the messages themselves.
        let inbound: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM inbound_messages WHERE provider = ? AND phone_number_id = ? AND wa_id = ?",
        )
        .bind(provider)
        .bind(number)
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        // Statuses of sends to them that replyd has no ledger row for (a human answering from
        // another tool): by recipient, on the reader too.
        let statuses: Vec<i64> = sqlx::query_scalar(
            "SELECT rowid FROM statuses
             WHERE provider = ? AND phone_number_id = ? AND recipient_id = ? AND raw <> ''",
        )
        .bind(provider)
        .bind(number)
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let ids = serde_json::to_string(&inbound).map_err(super::corrupt)?;
        let status_ids = serde_json::to_string(&statuses).map_err(super::corrupt)?;
        let mut tx = begin(&self.writer).await?;
        let mut c = ErasureCounts {
            messages: exec(
                &mut tx,
                "UPDATE inbound_messages SET body = NULL, raw = ''
                 WHERE id IN (SELECT value FROM json_each(?1)) AND (raw <> '' OR body IS NOT NULL)",
                &ids,
            )
            .await?,
            ..ErasureCounts::default()
        };
        c.display_name = sqlx::query(
            "UPDATE contacts SET display_name = NULL, updated_at_ms = ?
             WHERE provider = ? AND phone_number_id = ? AND wa_id = ? AND display_name IS NOT NULL",
        )
        .bind(now_ms)
        .bind(provider)
        .bind(number)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        // Statuses of replyd's replies to them (through the ledger's outbound ids) and any
        // other status addressed to them (found by recipient above).
        c.statuses = sqlx::query(
            "UPDATE statuses SET raw = '' WHERE raw <> '' AND (
               rowid IN (SELECT value FROM json_each(?2))
               OR (provider, message_id) IN (
                 SELECT l.provider, l.outbound_id FROM ledger l
                 WHERE l.inbound_id IN (SELECT value FROM json_each(?1))
                   AND l.outbound_id IS NOT NULL))",
        )
        .bind(&ids)
        .bind(&status_ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        c.reply_texts = exec(
            &mut tx,
            "UPDATE ledger SET reply_text = ''
             WHERE inbound_id IN (SELECT value FROM json_each(?1)) AND reply_text <> ''
               AND state NOT IN ('claimed', 'ambiguous')",
            &ids,
        )
        .await?;
        c.replies_in_flight = count_in(
            &mut tx,
            "SELECT count(*) FROM ledger WHERE inbound_id IN (SELECT value FROM json_each(?1))
               AND reply_text <> '' AND state IN ('claimed', 'ambiguous')",
            &ids,
        )
        .await?;
        c.dead_letters = exec(
            &mut tx,
            "UPDATE dead_letters SET raw = NULL
             WHERE inbound_id IN (SELECT value FROM json_each(?1)) AND raw IS NOT NULL",
            &ids,
        )
        .await?;
        tx.commit().await?;
        Ok(c)
    }
}

async fn exec(tx: &mut Tx<'_>, sql: &str, ids: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query(sql)
        .bind(ids)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

async fn count_in(tx: &mut Tx<'_>, sql: &str, ids: &str) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(sql)
        .bind(ids)
        .fetch_one(&mut **tx)
        .await?;
    Ok(n.max(0) as u64)
}
