-- Idempotency-Key: the first answer to a write, per API key and key, kept 24 hours.
CREATE TABLE idempotency_keys (
    api_key_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    task_id     TEXT,
    status      BIGINT,
    body        TEXT,
    location    TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, key)
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
