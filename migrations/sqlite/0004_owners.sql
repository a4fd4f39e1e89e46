-- Owners: every API key belongs to one (a team or a system); tasks and webhook subscriptions
-- belong to the owner whose key created them. Rows from before owners existed belong to
-- `default`, as do keys made without one, so existing keys keep seeing what they saw.
ALTER TABLE api_keys ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
ALTER TABLE webhooks ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';

CREATE INDEX tasks_by_owner ON tasks (owner, id);
CREATE INDEX webhooks_by_owner ON webhooks (owner, id);
