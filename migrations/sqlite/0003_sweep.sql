-- The reconcile sweep: what each run did and why, and the lock that keeps it to one at a time.
-- Candidates are read through `inbound_pending` (0001), so a run costs what is pending, not the
-- whole history.

-- One row per run that acted (a dry run is computed and returned, not recorded, so `dry_run`
-- is 0 for every row written today). `finished_at_ms` stays NULL for a run that died half-way.
CREATE TABLE sweep_runs (
    id              INTEGER PRIMARY KEY,
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    dry_run         INTEGER NOT NULL DEFAULT 0,
    scanned         INTEGER NOT NULL DEFAULT 0,
    requeued        INTEGER NOT NULL DEFAULT 0,
    -- {reason: n} over the run's silent and skip decisions
    counts          TEXT    NOT NULL DEFAULT '{}'
);

-- Every decision of a run: `requeue` (a job was written), `silent` (outcome silent:<reason>),
-- `skip` (in_flight or answered: the job or the ledger row owns that message's outcome).
CREATE TABLE sweep_decisions (
    run_id          INTEGER NOT NULL REFERENCES sweep_runs (id),
    inbound_id      INTEGER NOT NULL REFERENCES inbound_messages (id),
    message_id      TEXT    NOT NULL,
    decision        TEXT    NOT NULL,
    reason          TEXT,
    PRIMARY KEY (run_id, inbound_id)
) WITHOUT ROWID;
-- A message's sweep history (why was this one re-enqueued, or left alone?).
CREATE INDEX sweep_decisions_by_inbound ON sweep_decisions (inbound_id);

-- The `superseded` gate asks: does a newer message of this conversation already have a reply?
-- A newer message was claimed after it arrived, so no earlier than the candidate's payload time
-- less any clock skew (taken as under 24 h): this index lets the check read only the
-- conversation's recent replies, not its whole history. Ledger rows are written at reply rate,
-- so one more index there costs the reply path little (ingest is untouched).
CREATE INDEX ledger_by_conversation_claimed ON ledger (phone_number_id, wa_id, claimed_at_ms);

-- Named leases shared by every process on this store: taken by one statement that succeeds only
-- when the lock is free or its holder's lease ran out (a killed holder cannot keep it).
CREATE TABLE locks (
    name            TEXT    PRIMARY KEY,
    holder          TEXT    NOT NULL,
    until_ms        INTEGER NOT NULL
);
