-- Intents EM's answer never came for: when a replica first looked at one. Each poller tick looks
-- at the intents written since its last look and at those looked at before (this index), instead
-- of stepping over an index entry for every intent written since the last vacuum (on Postgres,
-- 1.3-8 ms a look after a burst of 100,000 creates: most of a tick's database time). A column of
-- its own, written once: the lease columns stay out of every index, so that a lease taken or
-- given up is a HOT update.
ALTER TABLE tasks ADD COLUMN unsent_looked_at BIGINT;
UPDATE tasks SET unsent_looked_at = lease_until
WHERE state = 'running' AND em_session_id IS NULL AND lease_until IS NOT NULL;
CREATE INDEX tasks_unsent_looked_at ON tasks (unsent_looked_at)
WHERE state = 'running' AND em_session_id IS NULL AND unsent_looked_at IS NOT NULL;
