-- Ambiguous sends are settled by evidence (issue 7, item 6). Columns are only ever added here
-- (`ALTER TABLE … ADD COLUMN`), so this runs the same on the ledger as 0001/0002 created it or
-- as a later rebuild of it left it; it must run after any migration that rebuilds `ledger`.

-- How an ambiguous send was settled: `status` (a status webhook with its callback data: it went
-- out), `evidence` (statuses for later sends of the number, none for it: it did not go out and
-- was sent once more), `operator` (no evidence either way, or the `operator` setting: the dead
-- letter `ambiguous_send`). NULL for a send that was never ambiguous.
ALTER TABLE ledger ADD COLUMN resolved_by TEXT
    CHECK (resolved_by IS NULL OR resolved_by IN ('status', 'evidence', 'operator'));

-- When the first status webhook for one of this row's sends arrived: the row's own proof that
-- it went out, and for the number's other rows the evidence that sends claimed before it and
-- still unconfirmed did not go out.
ALTER TABLE ledger ADD COLUMN confirmed_at_ms INTEGER;

-- Status webhooks showing that an earlier attempt went out although the row was sent again.
ALTER TABLE ledger ADD COLUMN double_sends INTEGER NOT NULL DEFAULT 0;

-- "Did a send of this number claimed after mine get a status?": one index seek per ambiguous
-- row. A row enters it once, when its first status arrives.
CREATE INDEX ledger_confirmed_by_number ON ledger (phone_number_id, claimed_at_ms)
    WHERE confirmed_at_ms IS NOT NULL;

-- The lease skips a conversation whose message in progress is ambiguous (order is kept).
CREATE INDEX ledger_ambiguous_by_conversation ON ledger (phone_number_id, wa_id)
    WHERE state = 'ambiguous';
