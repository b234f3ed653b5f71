-- The key that minted a key over the API: revoking a key revokes every key minted under it.
ALTER TABLE api_keys ADD COLUMN parent_id TEXT REFERENCES api_keys (id);

CREATE INDEX api_keys_by_parent ON api_keys (parent_id) WHERE parent_id IS NOT NULL;
