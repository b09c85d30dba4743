-- Providers kept apart (issue 8): the provider is part of every key that names a contact, a
-- conversation, a status, a send hold and a ledger match, so a WASender session id and a Cloud
-- API phone number id that happen to be equal never share consent, mode or statuses. Group
-- messages keep their group; `group` becomes a silence reason.
--
-- Existing rows move: a contact or conversation row goes to every provider that has inbound
-- messages under its key (to `cloud` when none has: that is where the admin API put them),
-- statuses to the provider they were received from, jobs and ledger rows to their message's.
-- Rebuilt tables keep their rows and rowids; this runs with foreign keys off, as 0004 does.

CREATE TABLE inbound_messages_new (
    id              INTEGER PRIMARY KEY,
    provider        TEXT    NOT NULL CHECK (provider IN ('cloud', 'wasender')),
    message_id      TEXT    NOT NULL,
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    -- the group chat a gateway message was written in (`wa_id` is then the participant)
    group_id        TEXT,
    kind            TEXT    NOT NULL,
    body            TEXT,
    payload_ts      INTEGER NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    raw             TEXT    NOT NULL,
    outcome         TEXT CHECK (
        outcome IS NULL
        OR outcome = 'replied'
        OR (outcome = 'silent' AND coalesce(outcome_reason IN ('opted_out', 'operator',
            'escalated', 'answered', 'window_closed', 'in_flight', 'superseded', 'no_reply',
            'group'), 0))
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

-- Which providers each old (number, user) key was used by.
CREATE TEMP TABLE key_providers AS
    SELECT DISTINCT provider, phone_number_id, wa_id FROM inbound_messages;

CREATE TABLE contacts_new (
    provider        TEXT    NOT NULL CHECK (provider IN ('cloud', 'wasender')),
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    display_name    TEXT,
    last_inbound_ts INTEGER,
    opted_out       INTEGER NOT NULL DEFAULT 0 CHECK (opted_out IN (0, 1)),
    consent_ts      INTEGER,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (provider, phone_number_id, wa_id)
);
INSERT INTO contacts_new (provider, phone_number_id, wa_id, display_name, last_inbound_ts,
        opted_out, consent_ts, updated_at_ms)
    SELECT coalesce(k.provider, 'cloud'), c.phone_number_id, c.wa_id, c.display_name,
        c.last_inbound_ts, c.opted_out, c.consent_ts, c.updated_at_ms
    FROM contacts c
    LEFT JOIN key_providers k ON k.phone_number_id = c.phone_number_id AND k.wa_id = c.wa_id;
DROP TABLE contacts;
ALTER TABLE contacts_new RENAME TO contacts;

CREATE TABLE conversations_new (
    provider          TEXT    NOT NULL CHECK (provider IN ('cloud', 'wasender')),
    phone_number_id   TEXT    NOT NULL,
    wa_id             TEXT    NOT NULL,
    mode              TEXT    NOT NULL DEFAULT 'bot'
                              CHECK (mode IN ('bot', 'operator', 'escalated')),
    taken_by          TEXT,
    escalation_reason TEXT,
    updated_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (provider, phone_number_id, wa_id)
);
INSERT INTO conversations_new (provider, phone_number_id, wa_id, mode, taken_by,
        escalation_reason, updated_at_ms)
    SELECT coalesce(k.provider, 'cloud'), c.phone_number_id, c.wa_id, c.mode, c.taken_by,
        c.escalation_reason, c.updated_at_ms
    FROM conversations c
    LEFT JOIN key_providers k ON k.phone_number_id = c.phone_number_id AND k.wa_id = c.wa_id;
DROP TABLE conversations;
ALTER TABLE conversations_new RENAME TO conversations;
DROP TABLE key_providers;

CREATE TABLE statuses_new (
    provider        TEXT    NOT NULL CHECK (provider IN ('cloud', 'wasender')),
    message_id      TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    phone_number_id TEXT    NOT NULL,
    recipient_id    TEXT,
    payload_ts      INTEGER NOT NULL,
    callback_data   TEXT,
    error_code      INTEGER,
    raw             TEXT    NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (provider, message_id, status)
);
-- The rowid is kept: ingest finds its new statuses above the previous largest rowid.
INSERT INTO statuses_new (rowid, provider, message_id, status, phone_number_id, recipient_id,
        payload_ts, callback_data, error_code, raw, received_at_ms)
    SELECT rowid, provider, message_id, status, phone_number_id, recipient_id,
        payload_ts, callback_data, error_code, raw, received_at_ms
    FROM statuses;
DROP TABLE statuses;
ALTER TABLE statuses_new RENAME TO statuses;

CREATE TABLE send_holds_new (
    provider        TEXT    NOT NULL CHECK (provider IN ('cloud', 'wasender')),
    phone_number_id TEXT    NOT NULL,
    error_code      TEXT    NOT NULL,
    since_ms        INTEGER NOT NULL,
    next_probe_ms   INTEGER NOT NULL,
    PRIMARY KEY (provider, phone_number_id)
);
INSERT INTO send_holds_new (provider, phone_number_id, error_code, since_ms, next_probe_ms)
    SELECT 'cloud', phone_number_id, error_code, since_ms, next_probe_ms FROM send_holds;
DROP TABLE send_holds;
ALTER TABLE send_holds_new RENAME TO send_holds;

-- The last `session.status` of each gateway session (later events win, whatever the order
-- they arrive in); a session that is not connected holds its sends.
CREATE TABLE gateway_sessions (
    provider        TEXT    NOT NULL CHECK (provider IN ('wasender')),
    session_id      TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('CONNECTED', 'CONNECTING', 'DISCONNECTED',
                            'LOGGED_OUT', 'NEED_SCAN', 'EXPIRED')),
    event_ts        INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (provider, session_id)
);

-- Jobs and ledger rows carry their message's provider: the lease keeps a conversation in
-- order per provider, and a status matches a ledger row of its own provider only.
ALTER TABLE jobs ADD COLUMN provider TEXT NOT NULL DEFAULT 'cloud'
    CHECK (provider IN ('cloud', 'wasender'));
UPDATE jobs SET provider = (SELECT m.provider FROM inbound_messages m WHERE m.id = jobs.inbound_id);
DROP INDEX jobs_leased;
DROP INDEX jobs_retrying;
CREATE INDEX jobs_leased ON jobs (phone_number_id, wa_id, provider) WHERE state = 'leased';
CREATE INDEX jobs_retrying ON jobs (phone_number_id, wa_id, provider, payload_ts, inbound_id)
    WHERE state = 'available' AND attempts > 0;

ALTER TABLE ledger ADD COLUMN provider TEXT NOT NULL DEFAULT 'cloud'
    CHECK (provider IN ('cloud', 'wasender'));
UPDATE ledger SET provider = (SELECT m.provider FROM inbound_messages m WHERE m.id = ledger.inbound_id);
DROP INDEX ledger_by_outbound;
CREATE INDEX ledger_by_outbound ON ledger (outbound_id, provider) WHERE outbound_id IS NOT NULL;

-- A gateway payload kept as a dead letter is re-parsed under the session it was received for.
ALTER TABLE dead_letters ADD COLUMN session_id TEXT;

CREATE TABLE sweep_decisions_new (
    run_id          INTEGER NOT NULL REFERENCES sweep_runs (id),
    inbound_id      INTEGER NOT NULL REFERENCES inbound_messages (id),
    message_id      TEXT    NOT NULL,
    decision        TEXT    NOT NULL CHECK (decision IN ('requeue', 'silent', 'skip')),
    reason          TEXT CHECK (reason IS NULL OR reason IN ('opted_out', 'operator',
                        'escalated', 'answered', 'window_closed', 'in_flight', 'superseded',
                        'no_reply', 'group')),
    PRIMARY KEY (run_id, inbound_id)
) WITHOUT ROWID;
INSERT INTO sweep_decisions_new (run_id, inbound_id, message_id, decision, reason)
    SELECT run_id, inbound_id, message_id, decision, reason FROM sweep_decisions;
DROP TABLE sweep_decisions;
ALTER TABLE sweep_decisions_new RENAME TO sweep_decisions;
CREATE INDEX sweep_decisions_by_inbound ON sweep_decisions (inbound_id);
