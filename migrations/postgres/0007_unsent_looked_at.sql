-- Intents EM's answer never came for that a replica has looked at (`lease_until` is set), apart
-- from the fresh ones: each poller tick looks at these and at the intents written since its last
-- look, instead of stepping over an index entry for every intent written since `tasks` was last
-- vacuumed (1.3–8 ms a look after a burst of 100,000 creates, most of a tick's database time).
CREATE INDEX tasks_unsent_looked_at ON tasks (lease_until)
WHERE state = 'running' AND em_session_id IS NULL AND lease_until IS NOT NULL;
