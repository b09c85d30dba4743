-- Gates fail closed: every enum-valued column accepts only the values replyd writes, so an
-- unreadable mode, state or outcome cannot be stored in the first place (and one that is found
-- anyway is an error on read, never a default). SQLite adds a CHECK only by rebuilding the
-- table: each is created anew with its constraints, its rows copied (ids and rowids kept),
-- the old one dropped, the new one renamed, and its indexes made again. The migration runs
-- with foreign-key enforcement off (SQLite's documented way to rebuild a table others refer
-- to); the store checks every foreign key once it has run.
--
-- The value lists mirror the Rust enums (`ConversationMode`, `LedgerState`, `SilenceReason`,
-- `Provider`…); a test inserts every enum value and a wrong one, so the two cannot drift.

CREATE TABLE inbound_messages_new (
    id              INTEGER PRIMARY KEY,
    provider        TEXT    NOT NULL CHECK (provider IN ('cloud', 'wasender')),
    message_id      TEXT    NOT NULL,
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    body            TEXT,
    payload_ts      INTEGER NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    raw             TEXT    NOT NULL,
    outcome         TEXT CHECK (
        outcome IS NULL
        OR outcome = 'replied'
        -- (a NULL reason makes `IN` NULL, which a CHECK would let through: hence coalesce)
        OR (outcome = 'silent' AND coalesce(outcome_reason IN ('opted_out', 'operator',
            'escalated', 'answered', 'window_closed', 'in_flight', 'superseded', 'no_reply'), 0))
        OR (outcome = 'dead' AND outcome_reason IS NOT NULL)
    ),
    outcome_reason  TEXT,
    outcome_at_ms   INTEGER,
    UNIQUE (message_id, provider)
);
INSERT INTO inbound_messages_new (id, provider, message_id, phone_number_id, wa_id, kind, body,
        payload_ts, received_at_ms, raw, outcome, outcome_reason, outcome_at_ms)
    SELECT id, provider, message_id, phone_number_id, wa_id, kind, body,
        payload_ts, received_at_ms, raw, outcome, outcome_reason, outcome_at_ms
    FROM inbound_messages;
DROP TABLE inbound_messages;
ALTER TABLE inbound_messages_new RENAME TO inbound_messages;
CREATE INDEX inbound_pending ON inbound_messages (payload_ts) WHERE outcome IS NULL;

CREATE TABLE jobs_new (
    inbound_id      INTEGER PRIMARY KEY REFERENCES inbound_messages (id),
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    payload_ts      INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'available' CHECK (state IN ('available', 'leased')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    run_at_ms       INTEGER NOT NULL,
    lease_until_ms  INTEGER,
    last_error      TEXT,
    created_at_ms   INTEGER NOT NULL
);
INSERT INTO jobs_new (inbound_id, phone_number_id, wa_id, payload_ts, state, attempts, run_at_ms,
        lease_until_ms, last_error, created_at_ms)
    SELECT inbound_id, phone_number_id, wa_id, payload_ts, state, attempts, run_at_ms,
        lease_until_ms, last_error, created_at_ms
    FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_available ON jobs (payload_ts, inbound_id) WHERE state = 'available';
CREATE INDEX jobs_leased ON jobs (phone_number_id, wa_id) WHERE state = 'leased';
CREATE INDEX jobs_lease_expiry ON jobs (lease_until_ms) WHERE state = 'leased';
CREATE INDEX jobs_retrying ON jobs (phone_number_id, wa_id, payload_ts, inbound_id)
    WHERE state = 'available' AND attempts > 0;

CREATE TABLE statuses_new (
    message_id      TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    provider        TEXT    NOT NULL CHECK (provider IN ('cloud', 'wasender')),
    phone_number_id TEXT    NOT NULL,
    recipient_id    TEXT,
    payload_ts      INTEGER NOT NULL,
    callback_data   TEXT,
    error_code      INTEGER,
    raw             TEXT    NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (message_id, status)
);
-- The rowid is kept: ingest finds its new statuses above the previous largest rowid.
INSERT INTO statuses_new (rowid, message_id, status, provider, phone_number_id, recipient_id,
        payload_ts, callback_data, error_code, raw, received_at_ms)
    SELECT rowid, message_id, status, provider, phone_number_id, recipient_id,
        payload_ts, callback_data, error_code, raw, received_at_ms
    FROM statuses;
DROP TABLE statuses;
ALTER TABLE statuses_new RENAME TO statuses;

CREATE TABLE contacts_new (
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    display_name    TEXT,
    last_inbound_ts INTEGER,
    opted_out       INTEGER NOT NULL DEFAULT 0 CHECK (opted_out IN (0, 1)),
    consent_ts      INTEGER,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (phone_number_id, wa_id)
);
INSERT INTO contacts_new (phone_number_id, wa_id, display_name, last_inbound_ts, opted_out,
        consent_ts, updated_at_ms)
    SELECT phone_number_id, wa_id, display_name, last_inbound_ts, opted_out,
        consent_ts, updated_at_ms
    FROM contacts;
DROP TABLE contacts;
ALTER TABLE contacts_new RENAME TO contacts;

CREATE TABLE dead_letters_new (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('payload', 'message')),
    provider        TEXT    NOT NULL CHECK (provider IN ('cloud', 'wasender')),
    inbound_id      INTEGER REFERENCES inbound_messages (id),
    error           TEXT    NOT NULL,
    detail          TEXT,
    raw             BLOB,
    dedup_key       TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL DEFAULT 'open'
                            CHECK (state IN ('open', 'replayed', 'discarded')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL
);
INSERT INTO dead_letters_new (id, kind, provider, inbound_id, error, detail, raw, dedup_key,
        state, attempts, created_at_ms)
    SELECT id, kind, provider, inbound_id, error, detail, raw, dedup_key,
        state, attempts, created_at_ms
    FROM dead_letters;
DROP TABLE dead_letters;
ALTER TABLE dead_letters_new RENAME TO dead_letters;
CREATE INDEX dead_letters_by_inbound ON dead_letters (inbound_id) WHERE inbound_id IS NOT NULL;

CREATE TABLE conversations_new (
    phone_number_id   TEXT    NOT NULL,
    wa_id             TEXT    NOT NULL,
    mode              TEXT    NOT NULL DEFAULT 'bot'
                              CHECK (mode IN ('bot', 'operator', 'escalated')),
    taken_by          TEXT,
    escalation_reason TEXT,
    updated_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (phone_number_id, wa_id)
);
INSERT INTO conversations_new (phone_number_id, wa_id, mode, taken_by, escalation_reason,
        updated_at_ms)
    SELECT phone_number_id, wa_id, mode, taken_by, escalation_reason, updated_at_ms
    FROM conversations;
DROP TABLE conversations;
ALTER TABLE conversations_new RENAME TO conversations;

CREATE TABLE ledger_new (
    id              INTEGER PRIMARY KEY,
    inbound_id      INTEGER NOT NULL UNIQUE REFERENCES inbound_messages (id),
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('claimed', 'ambiguous', 'sent',
                            'delivered', 'read', 'played', 'failed', 'unsent')),
    status_rank     INTEGER NOT NULL DEFAULT 0 CHECK (status_rank BETWEEN 0 AND 9),
    outbound_id     TEXT,
    reply_text      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    first_attempt   INTEGER NOT NULL DEFAULT 0 CHECK (first_attempt IN (0, 1)),
    error_code      TEXT,
    claimed_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
INSERT INTO ledger_new (id, inbound_id, phone_number_id, wa_id, state, status_rank, outbound_id,
        reply_text, attempts, first_attempt, error_code, claimed_at_ms, updated_at_ms)
    SELECT id, inbound_id, phone_number_id, wa_id, state, status_rank, outbound_id,
        reply_text, attempts, first_attempt, error_code, claimed_at_ms, updated_at_ms
    FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_new RENAME TO ledger;
CREATE INDEX ledger_by_conversation ON ledger (phone_number_id, wa_id, inbound_id);
CREATE INDEX ledger_by_outbound ON ledger (outbound_id) WHERE outbound_id IS NOT NULL;
CREATE INDEX ledger_unsettled ON ledger (updated_at_ms) WHERE state IN ('claimed', 'ambiguous');
CREATE INDEX ledger_by_conversation_claimed ON ledger (phone_number_id, wa_id, claimed_at_ms);

CREATE TABLE sweep_runs_new (
    id              INTEGER PRIMARY KEY,
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    dry_run         INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1)),
    scanned         INTEGER NOT NULL DEFAULT 0,
    requeued        INTEGER NOT NULL DEFAULT 0,
    counts          TEXT    NOT NULL DEFAULT '{}'
);
INSERT INTO sweep_runs_new (id, started_at_ms, finished_at_ms, dry_run, scanned, requeued, counts)
    SELECT id, started_at_ms, finished_at_ms, dry_run, scanned, requeued, counts FROM sweep_runs;
DROP TABLE sweep_runs;
ALTER TABLE sweep_runs_new RENAME TO sweep_runs;

CREATE TABLE sweep_decisions_new (
    run_id          INTEGER NOT NULL REFERENCES sweep_runs (id),
    inbound_id      INTEGER NOT NULL REFERENCES inbound_messages (id),
    message_id      TEXT    NOT NULL,
    decision        TEXT    NOT NULL CHECK (decision IN ('requeue', 'silent', 'skip')),
    reason          TEXT CHECK (reason IS NULL OR reason IN ('opted_out', 'operator',
                        'escalated', 'answered', 'window_closed', 'in_flight', 'superseded',
                        'no_reply')),
    PRIMARY KEY (run_id, inbound_id)
) WITHOUT ROWID;
INSERT INTO sweep_decisions_new (run_id, inbound_id, message_id, decision, reason)
    SELECT run_id, inbound_id, message_id, decision, reason FROM sweep_decisions;
DROP TABLE sweep_decisions;
ALTER TABLE sweep_decisions_new RENAME TO sweep_decisions;
CREATE INDEX sweep_decisions_by_inbound ON sweep_decisions (inbound_id);

-- The readiness probe's scratch row: inserted and rolled back (it only proves that the
-- database can grow), never kept. Its committed part bumps a counter.
CREATE TABLE write_probes (
    id              INTEGER PRIMARY KEY,
    pad             BLOB    NOT NULL
);
INSERT INTO counters (name, value) VALUES ('write_probes', 0);
