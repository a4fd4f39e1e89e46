-- Orphans are found from the small sessions table: the running tasks of a dead session, and
-- intents EM's answer never came for, each through its own partial index, instead of a walk
-- of every running task each poller tick.
CREATE INDEX tasks_running_by_session ON tasks (em_session_id, id) WHERE state = 'running';
CREATE INDEX tasks_unsent ON tasks (created_at) WHERE state = 'running' AND em_session_id IS NULL;

-- A running task's session must therefore be in the table. Sessions used to be registered by
-- heartbeats only; register any that are missing as alive now: their replica's heartbeats keep
-- them so, and if it is gone they turn dead after its missed heartbeats, as before.
INSERT INTO em_sessions (session_id, owner, slot, heartbeat_at)
SELECT t.em_session_id, MIN(COALESCE(t.em_owner, '')), 0,
       CAST(strftime('%s', 'now') AS INTEGER) * 1000
FROM tasks t
WHERE t.state = 'running' AND t.em_session_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM em_sessions s WHERE s.session_id = t.em_session_id)
GROUP BY t.em_session_id;
