-- Inbound messages: one row per (provider, message id), the store-level dedup guarantee.
-- `outcome` is NULL while pending, then exactly one of replied / silent / dead, never back.
CREATE TABLE inbound_messages (
    id              INTEGER PRIMARY KEY,
    provider        TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    body            TEXT,
    payload_ts      INTEGER NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    raw             TEXT    NOT NULL,
    outcome         TEXT,
    outcome_reason  TEXT,
    outcome_at_ms   INTEGER,
    -- message_id first: the same index answers lookups by message id alone.
    UNIQUE (message_id, provider)
);
-- No per-conversation index here: every ingest would dirty a random leaf of it (measured:
-- 8.5k → 13k durable messages/s without it). Conversation lookups live on small tables.
-- Only what still awaits an outcome: the reconcile sweep reads this, never the whole history.
CREATE INDEX inbound_pending ON inbound_messages (payload_ts) WHERE outcome IS NULL;

-- Reply jobs: the live queue, one row per inbound message awaiting its reply, written in the
-- same transaction as the message and deleted once the message has its outcome. Kept small, so
-- its per-conversation index stays cheap to maintain.
CREATE TABLE jobs (
    inbound_id      INTEGER PRIMARY KEY REFERENCES inbound_messages (id),
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    payload_ts      INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'available',
    attempts        INTEGER NOT NULL DEFAULT 0,
    run_at_ms       INTEGER NOT NULL,
    lease_until_ms  INTEGER,
    last_error      TEXT,
    created_at_ms   INTEGER NOT NULL
);
-- What ingest touches is append-like (new jobs carry recent payload times), so a backlog of
-- queued jobs costs ingest nothing extra. One conversation in order, one message at a time:
-- the lease takes due jobs oldest first, one per conversation, and skips a conversation that
-- has a leased job or an earlier job waiting to be retried — both small, partial indexes.
CREATE INDEX jobs_available ON jobs (payload_ts, inbound_id) WHERE state = 'available';
CREATE INDEX jobs_leased ON jobs (phone_number_id, wa_id) WHERE state = 'leased';
CREATE INDEX jobs_lease_expiry ON jobs (lease_until_ms) WHERE state = 'leased';
CREATE INDEX jobs_retrying ON jobs (phone_number_id, wa_id, payload_ts, inbound_id)
    WHERE state = 'available' AND attempts > 0;

-- Status webhooks for our outbound messages, one row per (message id, status).
CREATE TABLE statuses (
    message_id      TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    phone_number_id TEXT    NOT NULL,
    recipient_id    TEXT,
    payload_ts      INTEGER NOT NULL,
    callback_data   TEXT,
    error_code      INTEGER,
    raw             TEXT    NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (message_id, status)
);

-- One row per user of a business number: display name, consent, and the 24-hour window anchor.
CREATE TABLE contacts (
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    display_name    TEXT,
    last_inbound_ts INTEGER,
    opted_out       INTEGER NOT NULL DEFAULT 0,
    -- payload time of the message or action that last changed consent: an older STOP
    -- delivered late never overrides a newer START
    consent_ts      INTEGER,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (phone_number_id, wa_id)
);

-- Whatever could not be handled, with the error; unique per content so a replay adds nothing.
CREATE TABLE dead_letters (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    inbound_id      INTEGER REFERENCES inbound_messages (id),
    error           TEXT    NOT NULL,
    detail          TEXT,
    raw             BLOB,
    dedup_key       TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL DEFAULT 'open',
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL
);

-- Errors Meta reports at the notification level (`value.errors`).
CREATE TABLE platform_errors (
    id              INTEGER PRIMARY KEY,
    phone_number_id TEXT,
    code            INTEGER,
    title           TEXT,
    raw             TEXT    NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    -- digest of the delivery's body + position: a re-delivered payload adds no row
    dedup_key       TEXT    NOT NULL UNIQUE
);

-- Running totals that have no row of their own (duplicate deliveries).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('duplicate_messages', 0), ('duplicate_statuses', 0);
