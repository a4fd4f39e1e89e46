-- Timestamps are Unix milliseconds (BIGINT) and ids are text, so that one set of queries serves
-- Postgres and SQLite alike.

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT
);

CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    operation     TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    target_id     TEXT,
    request       TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    em_task_id    TEXT,
    em_session_id TEXT,
    em_owner      TEXT,
    resource_type TEXT,
    resource_id   TEXT,
    message       TEXT,
    api_key_id    TEXT,
    lease_owner   TEXT,
    lease_until   BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT
);

CREATE INDEX tasks_running_by_owner ON tasks (em_owner) WHERE state = 'running';
CREATE INDEX tasks_by_state ON tasks (state, id);
CREATE INDEX tasks_by_operation ON tasks (operation, id);

-- Which replica holds which EM logon session. A task whose session is lost, or whose replica
-- stopped heartbeating, is settled by looking at EM's objects.
CREATE TABLE em_sessions (
    session_id   TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    slot         BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lost_at      BIGINT
);
