//! Ingest: an authentic webhook body becomes durable store rows, or a spool record when the
//! store cannot take it. The HTTP handlers verify the sender; everything after that lives here.

mod replay;
pub mod spool;
pub mod writer;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::domain::keywords::Keywords;
use crate::domain::{MessageKind, Notification, Origin, PhoneNumberId, Provider};
use crate::metrics::Metrics;
use crate::store::{
    DeadLetterAction, IngestReport, IngestUnit, KeywordHit, Store, StoreError, UndecodablePayload,
};
use crate::whatsapp::{PayloadError, cloud, wasender};
pub use replay::{ReplayError, ReplayReport};
pub use spool::{Spool, SpoolError};
pub use writer::{GroupCommitWriter, WriteError};

/// How a delivery was made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    Stored(IngestReport),
    /// The store could not take it in time; it is in the spool and will be replayed.
    Spooled,
}

#[derive(Debug, thiserror::Error)]
#[error("the store is unavailable and the spool could not be written: {0}")]
pub struct IngestError(#[source] io::Error);

/// What replaying a dead letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterReplay {
    /// A message is pending again with a fresh job; the gates decide anew.
    MessageQueued,
    /// A payload parsed this time and was ingested.
    PayloadIngested,
    /// The payload still does not parse (or could not be made durable): the dead letter stays open.
    StillMalformed(String),
    NotFound,
    NotOpen,
}

#[derive(Debug, Clone)]
pub struct Ingestor {
    writer: GroupCommitWriter,
    spool: Spool,
    metrics: Arc<Metrics>,
    commit_timeout: Duration,
    keywords: Arc<Keywords>,
    /// One spool replay at a time in this process (background replayer, admin request).
    replaying: Arc<tokio::sync::Mutex<()>>,
}

/// The origin a payload dead letter was received from. Gateway payloads kept before sessions
/// were recorded carry none: they were stored under the session `wasender` then, and are
/// replayed under it. Anything unreadable is `None`, never a guess.
fn letter_origin(provider: &str, session: Option<&str>) -> Option<Origin> {
    match (Provider::parse(provider)?, session) {
        (Provider::Cloud, _) => Some(Origin::Cloud),
        (Provider::Wasender, session) => Some(Origin::Wasender {
            session: PhoneNumberId::parse(session.unwrap_or(LEGACY_GATEWAY_SESSION)).ok()?,
        }),
    }
}

/// The session gateway events were attributed to before gateways were configured by session.
pub const LEGACY_GATEWAY_SESSION: &str = "wasender";

/// Parses a verified body into what the store keeps. Never fails: an unparseable payload
/// becomes a dead letter holding the raw bytes and the error.
pub fn parse(origin: &Origin, body: &[u8], keywords: &Keywords) -> IngestUnit {
    let parsed = match origin {
        Origin::Cloud => cloud::parse_notification(body),
        Origin::Wasender { session } => {
            wasender::parse_event(body, session).map(|e| e.notification)
        }
    };
    unit_from(origin.clone(), parsed, body, keywords)
}

/// What the store keeps of a verified body already parsed (the gateway route parses first, to
/// check the session the event names).
pub fn unit_from(
    origin: Origin,
    parsed: Result<Notification, PayloadError>,
    body: &[u8],
    keywords: &Keywords,
) -> IngestUnit {
    let (notification, undecodable) = match parsed {
        Ok(n) => (n, None),
        Err(error) => (
            Default::default(),
            Some(UndecodablePayload {
                error,
                raw: body.to_vec(),
            }),
        ),
    };
    // Only per-delivery rows (platform errors) need the body's digest; skip hashing otherwise.
    let delivery_digest = if notification.platform_errors.is_empty() {
        String::new()
    } else {
        hex::encode(&Sha256::digest(body)[..16])
    };
    let keyword_actions = keyword_hits(&notification, keywords);
    IngestUnit {
        origin,
        notification,
        undecodable,
        keyword_actions,
        delivery_digest,
    }
}

fn keyword_hits(
    notification: &crate::domain::Notification,
    keywords: &Keywords,
) -> Vec<KeywordHit> {
    notification
        .messages
        .iter()
        // A "stop" written in a group chat is said to the group, not a consent instruction.
        .filter(|m| m.group.is_none())
        .filter(|m| {
            m.kind == MessageKind::Text
                || m.kind == MessageKind::Button
                || m.kind == MessageKind::Interactive
        })
        .filter_map(|m| {
            let action = keywords.classify(m.text.as_deref()?)?;
            Some(KeywordHit {
                provider: m.provider,
                message_id: m.id.as_str().to_owned(),
                action,
            })
        })
        .collect()
}

impl Ingestor {
    pub fn new(
        writer: GroupCommitWriter,
        spool: Spool,
        metrics: Arc<Metrics>,
        commit_timeout: Duration,
        keywords: Keywords,
    ) -> Self {
        Self {
            writer,
            spool,
            metrics,
            commit_timeout,
            keywords: Arc::new(keywords),
            replaying: Arc::default(),
        }
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Whether the group-commit writer task is up (readiness).
    pub fn writer_running(&self) -> bool {
        self.writer.is_running()
    }

    /// What a body would be stored as (with this ingestor's keywords).
    pub fn parse(&self, origin: &Origin, body: &[u8]) -> IngestUnit {
        parse(origin, body, &self.keywords)
    }

    pub fn keywords(&self) -> &Keywords {
        &self.keywords
    }

    /// Makes a verified delivery durable: committed to the store, or else fsync'd to the spool.
    pub async fn accept(&self, origin: &Origin, body: Bytes) -> Result<Acceptance, IngestError> {
        self.accept_unit(self.parse(origin, &body), body).await
    }

    /// [`Ingestor::accept`] for a body already parsed into `unit`.
    pub async fn accept_unit(
        &self,
        unit: IngestUnit,
        body: Bytes,
    ) -> Result<Acceptance, IngestError> {
        let origin = unit.origin.clone();
        match tokio::time::timeout(self.commit_timeout, self.writer.write(unit)).await {
            Ok(Ok(report)) => {
                self.count(&report);
                Ok(Acceptance::Stored(report))
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no commit within {:?}", self.commit_timeout),
                };
                tracing::warn!(error = %why, provider = %origin.provider(), bytes = body.len(), "store unavailable, spooling");
                let spool = self.spool.clone();
                tokio::task::spawn_blocking(move || spool.append(&origin, &body))
                    .await
                    .map_err(io::Error::other)
                    .and_then(|r| r)
                    .map_err(IngestError)?;
                self.metrics.spooled.inc();
                Ok(Acceptance::Spooled)
            }
        }
    }

    /// Replays an open dead letter: a message goes back through the gates with a new job; a
    /// payload is parsed again (after a fix) and ingested, and stays open if it still fails.
    pub async fn replay_dead_letter(
        &self,
        store: &Store,
        id: i64,
        now_ms: i64,
    ) -> Result<DeadLetterReplay, StoreError> {
        match store.replay_dead_letter(id, now_ms).await? {
            DeadLetterAction::Replayed => Ok(DeadLetterReplay::MessageQueued),
            DeadLetterAction::NotFound => Ok(DeadLetterReplay::NotFound),
            DeadLetterAction::NotOpen | DeadLetterAction::Discarded => {
                Ok(DeadLetterReplay::NotOpen)
            }
            DeadLetterAction::ReingestPayload => {
                let Some(letter) = store.dead_letter(id).await? else {
                    return Ok(DeadLetterReplay::NotFound);
                };
                let Some(origin) = letter_origin(&letter.provider, letter.session_id.as_deref())
                else {
                    return Ok(DeadLetterReplay::StillMalformed(format!(
                        "dead letter {id} names an unreadable provider or session ({:?}, {:?})",
                        letter.provider, letter.session_id
                    )));
                };
                let raw = letter.raw.unwrap_or_default().into_bytes();
                let unit = self.parse(&origin, &raw);
                if let Some(bad) = &unit.undecodable {
                    return Ok(DeadLetterReplay::StillMalformed(bad.error.to_string()));
                }
                if let Some(item) = unit.notification.rejected.first() {
                    return Ok(DeadLetterReplay::StillMalformed(item.error.clone()));
                }
                match self.accept_unit(unit, raw.into()).await {
                    Ok(_) => {
                        store.mark_dead_letter_replayed(id).await?;
                        Ok(DeadLetterReplay::PayloadIngested)
                    }
                    Err(e) => Ok(DeadLetterReplay::StillMalformed(e.to_string())),
                }
            }
        }
    }

    fn count(&self, r: &IngestReport) {
        self.metrics.inbound_messages.inc_by(r.new_messages);
        self.metrics.duplicate_messages.inc_by(r.duplicate_messages);
        self.metrics.statuses.inc_by(r.new_statuses);
        self.metrics.dead_lettered("payload", r.dead_letters);
        self.metrics
            .ambiguous_resolved(crate::domain::ResolvedBy::Status, r.ambiguous_confirmed);
        self.metrics.double_sends.inc_by(r.double_sends);
    }
}
