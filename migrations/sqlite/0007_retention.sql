-- Retention (issue 12, item 4). Only indexes are added: no table is rebuilt.
--
-- Inbound messages that still have their content, by arrival: the prune walks this instead of
-- the whole history, and a row leaves it once its body and raw payload are gone (pruned or
-- erased), so a run costs what there is to prune, not the size of the store. Entries are
-- appended at the right edge (arrival times only grow), so ingest pays one append per message,
-- never a random leaf. Reply texts are pruned with their message (through the ledger's unique
-- `inbound_id`), so the ledger needs no index of its own.
CREATE INDEX inbound_with_content ON inbound_messages (received_at_ms) WHERE raw <> '';
-- Statuses are pruned oldest first. The rowid is not arrival order for this purpose (a rebuilt
-- table kept old rowids), so the walk reads arrival time.
CREATE INDEX statuses_by_arrival ON statuses (received_at_ms);
