-- What the gateway noticed about a request it sent on anyway (a storage quota larger than the
-- repository's free space): a JSON array of strings, NULL for none.
ALTER TABLE tasks ADD COLUMN warnings TEXT;
