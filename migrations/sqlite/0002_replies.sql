-- Who is in charge of a conversation: the bot, a human operator, or escalated.
CREATE TABLE conversations (
    phone_number_id   TEXT    NOT NULL,
    wa_id             TEXT    NOT NULL,
    mode              TEXT    NOT NULL DEFAULT 'bot',
    taken_by          TEXT,
    escalation_reason TEXT,
    updated_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (phone_number_id, wa_id)
);

-- The reply ledger: one row per inbound message, claimed before the send. The unique key is what
-- makes a second send for the same message impossible.
CREATE TABLE ledger (
    id              INTEGER PRIMARY KEY,
    inbound_id      INTEGER NOT NULL UNIQUE REFERENCES inbound_messages (id),
    phone_number_id TEXT    NOT NULL,
    wa_id           TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    -- forward-only rank of delivery statuses: sent 1 < delivered 2 < read 3 < played 4; failed 9
    status_rank     INTEGER NOT NULL DEFAULT 0,
    outbound_id     TEXT,
    reply_text      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- 1 when the reply went out on its first attempt
    first_attempt   INTEGER NOT NULL DEFAULT 0,
    error_code      TEXT,
    claimed_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
-- A conversation's replies: history for responders, and the sweep's `superseded` gate.
CREATE INDEX ledger_by_conversation ON ledger (phone_number_id, wa_id, inbound_id);
CREATE INDEX ledger_by_outbound ON ledger (outbound_id) WHERE outbound_id IS NOT NULL;
CREATE INDEX ledger_unsettled ON ledger (updated_at_ms) WHERE state IN ('claimed', 'ambiguous');

-- Business numbers whose sends are paused by a halt-class error, until a probe succeeds.
CREATE TABLE send_holds (
    phone_number_id TEXT PRIMARY KEY,
    error_code      TEXT    NOT NULL,
    since_ms        INTEGER NOT NULL,
    next_probe_ms   INTEGER NOT NULL
);

CREATE INDEX dead_letters_by_inbound ON dead_letters (inbound_id) WHERE inbound_id IS NOT NULL;
